"""Helpers for users' own tests of jobs: an in-memory store, a ready client, and a job tester.

The job tester is v2's ``createJobTester`` (``@trigger.dev/testing``): run a job in a pytest
test with task outputs mocked by cache key, then assert which tasks ran, with which params,
and what the run returned::

    from trigger_nb.testing import JobTester
    from myproject.jobs import sync_issue        # an `async def run(payload, io, ctx)`

    def test_sync_issue():
        with JobTester() as tester:
            run = tester.run(sync_issue, {"number": 42}, job_id="sync-issue",
                             tasks={"fetch": {"title": "Crash on start"}})
        run.assert_succeeded()
        assert run.output == {"title": "Crash on start"}
        assert run.task("fetch").mocked and run.task("notify").params == {"channel": "#bugs"}

A mocked task is recorded like any other (its params, its place in the log) but its function
is not called: its output is the mock — or, when the mock is an exception, it fails with it
(its ``retry`` options still apply). Every other task runs for real. Waits and retry delays
are made due at once (``fast_forward``), so a job that waits an hour is tested in
milliseconds; a run waiting for a callback POST or an event is returned ``WAITING``.

    from trigger_nb.testing import memory_client

    with memory_client() as client:
        @client.define_job(id="my-job")
        async def my_job(payload, io, ctx): ...
        run = client.invoke_sync("my-job", {"x": 1})
        assert run.result(timeout=5) == ...
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from ._client import TriggerClient
from ._engine import JobDefinition, RunStatus, TaskSpec, TaskStatus
from ._exceptions import ConfigError
from ._keys import display_key, new_run_id, slugify_job_id
from ._run import Run
from ._store import MemoryStore

#: Most executions :meth:`JobTester.run` drives one run through (waits and retries fast-forwarded).
MAX_EXECUTIONS = 100


def memory_client() -> TriggerClient:
    """A :class:`TriggerClient` on a fresh in-memory store (use it as a context manager)."""
    return TriggerClient(storage=MemoryStore())


@dataclasses.dataclass(frozen=True)
class TaskCall:
    """One task of a tested run, as the job called it.

    ``key`` is the cache key as shown in the log (a list key joined with ``-``); ``mocked``
    says whether its output came from the tester's mocks (its function was not called);
    ``parent`` is the key of the task it was started in, if any.
    """

    key: str
    cache_key: Any
    name: str
    params: Any
    output: Any
    error: dict[str, Any] | None
    status: str
    attempts: int
    mocked: bool
    parent: str | None


@dataclasses.dataclass(frozen=True)
class JobTestRun:
    """What a tested run did: a snapshot taken when :meth:`JobTester.run` returned.

    ``status`` is the run's (``SUCCESS``, ``FAILURE``, ``WAITING``…), ``output`` what the job
    returned, ``error`` ``None`` or ``{"name", "message", "stack", "task"}``; ``calls`` every
    task in first-seen order and ``tasks`` the same by key; ``unused_mocks`` the mocked keys
    no task used (a typo, or a step that no longer exists); ``handle`` the live :class:`Run`.
    """

    handle: Run
    status: str
    output: Any
    error: dict[str, Any] | None
    calls: list[TaskCall]
    unused_mocks: list[str]

    @property
    def tasks(self) -> dict[str, TaskCall]:
        return {call.key: call for call in self.calls}

    def task(self, key: Any) -> TaskCall:
        """The task with cache key ``key`` (a string or a list, as the job passed it);
        ``KeyError`` naming the keys there are."""
        wanted = display_key(list(key) if isinstance(key, tuple) else key)
        for call in self.calls:
            if call.key == wanted:
                return call
        raise KeyError(f"No task {wanted!r} in this run; its tasks: {[c.key for c in self.calls]}")

    def log(self) -> str:
        """The run's task log as text (what ``Run.log()`` shows)."""
        return self.handle.log()

    def assert_succeeded(self) -> None:
        """v2's ``toHaveSucceeded``: ``AssertionError`` with the run's log unless it succeeded."""
        if self.status != RunStatus.SUCCESS:
            raise AssertionError(f"the run is {self.status}, not SUCCESS:\n{self.log()}")

    def assert_failed(self, error: str | None = None) -> None:
        """``AssertionError`` unless the run failed — with an error whose class name is
        ``error`` or whose message contains it, when given."""
        if self.status != RunStatus.FAILURE:
            raise AssertionError(f"the run is {self.status}, not FAILURE:\n{self.log()}")
        found = self.error or {}
        if error is not None and error != found.get("name") and error not in str(found.get("message")):
            raise AssertionError(
                f"the run failed with {found.get('name')}: {found.get('message')}, not {error!r}"
            )


class JobTester:
    """Runs jobs on an in-memory store with task outputs mocked by cache key (see the module
    docstring). Use it as a context manager, or call :meth:`close`."""

    def __init__(self, *, client: TriggerClient | None = None) -> None:
        self.client = client if client is not None else memory_client()
        self._mocks: dict[str, Any] = {}
        self._used: set[str] = set()
        self.client.runner.intercept_task = self._intercept

    def run(
        self,
        job: Callable[..., Any] | JobDefinition,
        payload: Any = None,
        *,
        tasks: Mapping[Any, Any] | None = None,
        job_id: str | None = None,
        version: str = "0.0.1",
        run_id: str | None = None,
        fast_forward: bool = True,
        timeout: float = 30.0,
    ) -> JobTestRun:
        """Run ``job`` with ``payload`` until it finishes (or waits for something only the
        test can provide) and return what it did.

        ``job``: the job's ``async def run(payload, io, ctx)`` (defined in a module, decorated
        with ``define_job`` or not) or a :class:`JobDefinition` (``client.jobs[id]``); its
        trigger is ignored. ``job_id`` (default: the definition's, or the function's name)
        and ``version`` are what ``ctx.job`` shows. ``tasks``: cache key (string, or tuple
        for a list key) → mocked output, or an exception the task fails with. ``run_id``:
        continue that run (a second ``run`` with the same id replays, as re-executing a cell
        does); default a new run. ``fast_forward``: make waits and retry delays due at once.
        ``timeout``: most seconds to wait for background fetches and polls.
        """
        definition = self._definition(job, job_id, version)
        self._mocks = {display_key(list(k) if isinstance(k, tuple) else k): v for k, v in (tasks or {}).items()}
        self._used = set()
        self.client.add_job(definition)
        handle = self.client.invoke_sync(definition.id, payload, run_id=run_id or new_run_id())
        if fast_forward:
            self._drive(handle, time.monotonic() + timeout)
        return self._snapshot(handle)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> JobTester:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _definition(job: Any, job_id: str | None, version: str) -> JobDefinition:
        if isinstance(job, JobDefinition):
            return dataclasses.replace(job, id=job_id or job.id, trigger=None)
        if not callable(job):
            raise ConfigError(f"JobTester.run needs a job's run function or JobDefinition, got {job!r}.")
        name = job_id or slugify_job_id(getattr(job, "__name__", "job").replace("_", "-"))
        return JobDefinition(id=name, fn=job, name=name, version=version)

    def _intercept(self, spec: TaskSpec) -> TaskSpec:
        """The engine's test seam: a mocked task gets a function returning (or raising) its
        mock and loses what would make it wait (a delay, a callback, a background request)."""
        key = display_key(spec.cache_key)
        if key not in self._mocks:
            return spec
        self._used.add(key)
        mock = self._mocks[key]

        async def mocked() -> Any:
            if isinstance(mock, BaseException):
                raise mock
            return mock

        return dataclasses.replace(
            spec,
            fn=mocked,
            user_fn=None,
            noop=False,
            delay_until=None,
            callback=None,
            operation=None,
            external=None,
            pass_url_only=False,
            extra={**spec.extra, "mocked": True},
        )

    def _drive(self, handle: Run, deadline: float) -> None:
        """Resume the run while it waits for time (waits, retry delays) or for a background
        operation, up to :data:`MAX_EXECUTIONS` executions and the deadline."""
        client = self.client
        for _ in range(MAX_EXECUTIONS):
            record = handle.record
            if record["status"] != RunStatus.WAITING:
                return
            waiting = [t for t in client.repo.load_tasks(handle.id) if t["status"] == TaskStatus.WAITING]
            if any(t.get("retry_at") or t.get("delay_until") for t in waiting):
                client.call_sync(client.resume(handle.id))
            elif any(t.get("operation_pending") for t in waiting):
                executions = record["executions"]
                while handle.record["executions"] == executions and time.monotonic() < deadline:
                    time.sleep(0.01)  # the operation resolves the task, then the run resumes
                if time.monotonic() >= deadline:
                    return
            else:
                return  # a callback POST or an event: only the test can provide it

    def _snapshot(self, handle: Run) -> JobTestRun:
        record = handle.record
        views = handle.tasks
        keys = {view["id"]: view["display_key"] for view in views}
        stored = {task["id"]: task for task in self.client.repo.load_tasks(handle.id)}
        calls = [
            TaskCall(
                key=view["display_key"],
                cache_key=view["cache_key"],
                name=view["name"],
                params=view["params"],
                output=view["output"],
                error=view["error"],
                status=view["status"],
                attempts=view["attempts"],
                mocked=bool(stored.get(view["id"], {}).get("mocked")),
                parent=keys.get(view["parent_id"] or ""),
            )
            for view in views
        ]
        return JobTestRun(
            handle=handle,
            status=record["status"],
            output=handle.output,
            error=record.get("error"),
            calls=calls,
            unused_mocks=sorted(set(self._mocks) - self._used),
        )


__all__ = ["JobTestRun", "JobTester", "MemoryStore", "TaskCall", "memory_client"]
