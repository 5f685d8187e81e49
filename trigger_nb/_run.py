"""The ``Run`` handle (SPEC §3): a live view of one stored run, plus its controls."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from ._engine import RUN_FINISHED, RunStatus, code_changed_ids, unreached_tasks
from ._engine._bus import Listener
from ._exceptions import ConfigError, RunCanceledError, RunFailedError, RunTimeoutError
from ._serde import iso


class RunControls(Protocol):
    """What a :class:`Run` handle needs: read its records, wait for it, control it, hear of it.

    The client implements it (``TriggerClient.run_controls``); a handle never sees the client.
    """

    def load_run(self, run_id: str) -> dict[str, Any] | None: ...
    def load_tasks(self, run_id: str) -> list[dict[str, Any]]: ...
    def load_journal(self, run_id: str, execution: int) -> list[Any]: ...
    def load_journals(self, run_id: str) -> dict[int, list[Any]]: ...
    def load_blob(self, task: dict[str, Any]) -> bytes | None: ...
    async def wait_finished(self, run_id: str, timeout: float | None) -> None: ...
    def wait_finished_sync(self, run_id: str, timeout: float | None) -> None: ...
    async def retry(self, run_id: str) -> Run: ...
    async def cancel(self, run_id: str) -> Run: ...
    async def resume(self, run_id: str) -> Run: ...
    def invalidate(self, run_id: str, task_id: str) -> Run: ...
    async def complete(self, run_id: str, task_id: str, value: Any) -> Run: ...
    async def send_event(self, event: dict[str, Any]) -> dict[str, Any]: ...
    def subscribe(self, listener: Listener, *, run_id: str) -> Callable[[], None]: ...


class RunRecords(NamedTuple):
    """A run's raw records, read together: what a view renders."""

    run: dict[str, Any]
    tasks: list[dict[str, Any]]
    journals: dict[int, list[Any]]

#: Fields of ``Run.tasks`` entries, in display order (SPEC §3).
TASK_FIELDS = (
    "id",
    "idempotency_key",
    "cache_key",
    "display_key",
    "parent_id",
    "name",
    "icon",
    "status",
    "attempts",
    "params",
    "output",
    "error",
    "callback_url",
    "started_at",
    "completed_at",
    "replayed",
)


def outcomes(journal: list[Any]) -> dict[str, str]:
    """task id → what an execution did with it (ran, replayed, failed, retry, waiting)."""
    return {entry[0]: entry[1] for entry in journal}


def was_replayed(task: dict[str, Any], outcome: str | None, executions: int) -> bool:
    """Did the last execution take this task's result from the store?

    A task the last execution did not visit (the child of a replayed parent) counts as
    replayed when it completed in an earlier execution.
    """
    if outcome is not None:
        return outcome == "replayed"
    return task.get("status") == "COMPLETED" and (task.get("ran_in") or 0) < executions


def public_task(
    task: dict[str, Any],
    replayed: bool,
    output: Any,
    *,
    code_changed: bool = False,
    not_reached: bool = False,
) -> dict[str, Any]:
    """A task as ``Run.tasks`` shows it: the SPEC §3 fields, plus what views need —
    ``code_changed`` (the latest execution replayed it although its function changed) and
    ``not_reached`` (the latest, successful, execution no longer reaches it; see
    ``trigger_nb._engine._reach``)."""
    view = {name: task.get(name) for name in TASK_FIELDS}
    view["output"] = output
    view["started_at"] = iso(task.get("started_at"))
    view["completed_at"] = iso(task.get("completed_at"))
    view["replayed"] = replayed
    view["kind"] = task.get("kind", "task")
    view["description"] = task.get("description")
    view["output_properties"] = task.get("output_properties")
    view["redact"] = task.get("redact")
    view["code_changed"] = code_changed
    view["not_reached"] = not_reached
    return view


class Run:
    """Handle of one run. Attributes read the store each time, so they are always current."""

    def __init__(self, controls: RunControls, run_id: str, *, record: dict[str, Any] | None = None) -> None:
        self._controls = controls
        self.id = run_id
        self._record = record
        #: In a notebook, show only the one-line summary instead of the task log (``--quiet``).
        self.quiet = False

    # -- data -----------------------------------------------------------------------------
    @property
    def record(self) -> dict[str, Any]:
        """The raw stored run record (fresh from the store)."""
        record = self._controls.load_run(self.id)
        if record is None:
            raise ConfigError(f"Run {self.id} is no longer in the store (forgotten?).")
        self._record = record
        return record

    @property
    def snapshot(self) -> dict[str, Any]:
        """The run record as last read (by ``client.runs()`` or an attribute), without reading
        the store again; :attr:`record` reads it fresh."""
        return self._record if self._record is not None else self.record

    @property
    def job_id(self) -> str:
        return str((self._record or self.record)["job_id"])

    @property
    def status(self) -> str:
        return str(self.record["status"])

    @property
    def output(self) -> Any:
        text = self.record.get("output_json")
        return None if text is None else json.loads(text)

    @property
    def error(self) -> dict[str, Any] | None:
        return self.record.get("error")

    @property
    def executions(self) -> int:
        return int(self.record["executions"])

    @property
    def payload(self) -> Any:
        return self.record.get("payload")

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Task records in first-seen order (see SPEC §3 for the fields; also
        ``code_changed`` and ``not_reached``, see :func:`public_task`)."""
        run = self.record
        controls = self._controls
        journal = controls.load_journal(self.id, run["executions"])
        last = outcomes(journal)
        changed = code_changed_ids(journal)
        tasks = controls.load_tasks(self.id)
        unreached = {task["id"] for task in unreached_tasks(run, tasks, journal)}
        views = []
        for task in tasks:
            replayed = was_replayed(task, last.get(task["id"]), run["executions"])
            views.append(
                public_task(
                    task,
                    replayed,
                    _task_output(controls, task),
                    code_changed=task["id"] in changed,
                    not_reached=task["id"] in unreached,
                )
            )
        return views

    def executions_log(self) -> list[dict[str, Any]]:
        """One entry per recorded execution (the last 20): ``n``, ``status``, ``started_at``,
        ``ended_at``, and ``tasks`` = ``[task_id, outcome, attempts]`` in the order visited."""
        journals = self._controls.load_journals(self.id)
        return [
            {**summary, "tasks": journals.get(summary["n"], [])}
            for summary in self.record.get("history") or []
        ]

    # -- waiting --------------------------------------------------------------------------
    async def wait(self, timeout: float | None = None) -> Run:
        """Wait until the run is finished (SUCCESS, FAILURE, CANCELED, TIMED_OUT).

        Raises :class:`RunTimeoutError` after ``timeout`` seconds (the run goes on).
        """
        try:
            await self._controls.wait_finished(self.id, timeout)
        except TimeoutError:
            raise RunTimeoutError(
                f"Run {self.id} is still {self.status} after {timeout} s; it goes on in the "
                "background (wait again, or cancel it)."
            ) from None
        return self

    def wait_sync(self, timeout: float | None = None) -> Run:
        """Blocking :meth:`wait`, usable from sync code and from a notebook cell."""
        try:
            self._controls.wait_finished_sync(self.id, timeout)
        except TimeoutError:
            raise RunTimeoutError(
                f"Run {self.id} is still {self.status} after {timeout} s; it goes on in the "
                "background (wait again, or cancel it)."
            ) from None
        return self

    def result(self, timeout: float | None = None) -> Any:
        """Block until finished and return the output; raise if the run did not succeed:
        :class:`RunFailedError` (FAILURE), :class:`RunTimeoutError` (TIMED_OUT),
        :class:`RunCanceledError` (CANCELED)."""
        self.wait_sync(timeout)
        run = self.record
        if run["status"] == RunStatus.CANCELED:
            raise RunCanceledError(f"Run {self.id} was canceled.")
        self.raise_for_status(run)
        return self.output

    def raise_for_status(self, record: dict[str, Any] | None = None) -> None:
        """Raise :class:`RunFailedError` if the run FAILED (:class:`RunTimeoutError` if it
        TIMED_OUT); return for every other status. The message names the failed task and the
        original exception (SPEC §2: a failed run fails its cell)."""
        run = record if record is not None else self.record
        status = run["status"]
        if status not in (RunStatus.FAILURE, RunStatus.TIMED_OUT):
            return
        error = run.get("error") or {}
        where = f" in task {error['task']!r}" if error.get("task") else ""
        message = f"Run {self.id} ({run['job_id']}) failed{where}: {error.get('name')}: {error.get('message')}"
        if status == RunStatus.TIMED_OUT:
            raise RunTimeoutError(message)
        raise RunFailedError(message, error=error)

    # -- controls -------------------------------------------------------------------------
    async def retry(self) -> Run:
        """Execute again: ERRORED tasks run again, completed ones replay."""
        return await self._controls.retry(self.id)

    async def cancel(self) -> Run:
        return await self._controls.cancel(self.id)

    async def resume(self) -> Run:
        """Resume a waiting run now: waits and retry delays become due (``client.resume``)."""
        return await self._controls.resume(self.id)

    def invalidate(self, task_id: str) -> Run:
        """Forget a COMPLETED task so the next execution runs it again (``client.invalidate``)."""
        return self._controls.invalidate(self.id, task_id)

    async def complete(self, task_id: str, value: Any) -> Run:
        """Give a failed task ``value`` as its output and continue (``client.complete``)."""
        return await self._controls.complete(self.id, task_id, value)

    async def send_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Send an event through this run's client (``client.send_event``): what the log's
        Send event does for a task waiting for one."""
        return await self._controls.send_event(event)

    @property
    def finished(self) -> bool:
        return self.status in RUN_FINISHED

    # -- views ----------------------------------------------------------------------------
    def log(self) -> str:
        """The task log as plain text (executions separated, replayed tasks marked)."""
        from ._notebook._display import render_text

        return render_text(*self.records())

    def summary(self) -> str:
        from ._notebook._display import summary_line

        return summary_line(self.record)

    def _repr_html_(self) -> str:
        from ._notebook._display import render_html

        return render_html(*self.records())

    # -- for views --------------------------------------------------------------------------
    def records(self) -> RunRecords:
        """The run's raw records (run, tasks in first-seen order, journals by execution)."""
        return RunRecords(
            self.record, self._controls.load_tasks(self.id), self._controls.load_journals(self.id)
        )

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(notice)`` (from the engine's thread) whenever this run or one of its
        tasks changes; returns the function that unsubscribes. Views use it to re-render."""
        return self._controls.subscribe(listener, run_id=self.id)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.summary() if self.quiet else self.log())

    def _ipython_display_(self) -> None:
        from ._notebook._views import display_run

        # In a kernel: the live task-log widget (SPEC §8); elsewhere text / static HTML.
        if self.quiet or not display_run(self):
            from ._notebook._display import show_live

            show_live(self, quiet=self.quiet)

    def __repr__(self) -> str:
        try:
            return f"<Run {self.id} job={self.job_id} status={self.status}>"
        except Exception:
            return f"<Run {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.id == self.id and other._controls is self._controls

    def __hash__(self) -> int:
        return hash(self.id)


def _task_output(controls: RunControls, task: dict[str, Any]) -> Any:
    from ._engine._outputs import stored_output

    return stored_output(controls, task)


def duration_ms(start: float | None, end: float | None) -> float | None:
    if start is None:
        return None
    return ((end if end is not None else time.time()) - start) * 1000.0
