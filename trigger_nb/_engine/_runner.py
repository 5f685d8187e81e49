"""The runner: drives executions of runs, one at a time per run, and wakes suspended runs.

It owns no loop of its own: every coroutine here runs on the client's home loop (see
``trigger_nb._loop``). Per run it

1. takes the in-process lock and the cross-process lease (``RunBusyError`` if someone else
   executes it),
2. loads the run's task records once and builds an :class:`Execution`,
3. calls the job body and waits until every concurrent branch has finished or suspended,
4. stores the outcome (SUCCESS / FAILURE / WAITING / CANCELED) with a summary of the execution,
   releases the lease, and schedules the next execution when the run is waiting for a time.

Everything external (a callback POST, a manual resume, a due timer) ends in :meth:`resume`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from .._exceptions import ConfigError, RunBusyError, StoreError, TaskError, TaskOutputError
from .._numbers import wait_limit
from .._serde import DEFAULT_OUTPUT_LIMIT, encode_output, error_record
from .._store import Lease, Repository
from ._bus import Notice, NoticeBus
from ._callback_queue import CallbackQueue
from ._control import Canceled, ControlFlow
from ._execution import Execution, TaskSpec, current_parent
from ._handoff import Handoff
from ._heartbeat import LeaseKeeper
from ._jobs import JobDefinition, make_context
from ._operations import Operations
from ._orphans import OrphanFinder, is_orphaned
from ._per_run import PerRun
from ._requests import make_due, wants_execution
from ._resolutions import Resolutions
from ._states import RUN_FINISHED, RunStatus, TaskStatus, advance_run, advance_task

log = logging.getLogger("trigger_nb")

#: How many execution summaries a run record keeps (older ones are dropped).
HISTORY_LIMIT = 20


Wanted = Callable[[dict[str, Any]], bool] | None  # which runs an execution is for (None: any)


class Runner:
    """Executes runs of the jobs in ``jobs`` against ``repo``, publishing to ``bus``."""

    def __init__(
        self,
        repo: Repository,
        bus: NoticeBus,
        jobs: Mapping[str, JobDefinition],
        *,
        make_io: Callable[[Execution, JobDefinition], Any],
        loop_host: Any,
        callback_url: Callable[[str, str], str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> None:
        self.repo = repo
        self.bus = bus
        self.jobs = jobs
        self.make_io = make_io
        self.host = loop_host
        self.callback_url = callback_url
        self.output_limit = output_limit
        self._locks: PerRun[asyncio.Lock] = PerRun(asyncio.Lock)  # one execution per run here
        self._active: dict[str, Execution] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._changed: PerRun[asyncio.Event] = PerRun(asyncio.Event)  # wakes wait_finished
        self._background: set[asyncio.Task[Any]] = set()
        self._resuming: set[str] = set()  # runs with a resume scheduled but not yet executing
        self._leases = LeaseKeeper(repo)
        busy = lambda run_id: run_id in self._active or run_id in self._resuming  # noqa: E731
        resume = lambda run_id: self.spawn(self.resume(run_id, wanted=is_orphaned))  # noqa: E731
        self.orphans = OrphanFinder(repo, jobs, busy=busy, resume=resume)
        #: A test seam (``testing.JobTester``): may replace each task's spec (a mocked output).
        self.intercept_task: Callable[[TaskSpec], TaskSpec] | None = None
        resumes: Handoff[str] = Handoff(loop_host, self._resume_all)  # resolved runs, in batches
        resolutions = Resolutions(repo, bus, jobs, resume=resumes.add)
        #: Complete a WAITING task from outside (operations, events): see `Resolutions`.
        self.resolve_task = resolutions.resolve_task
        self.complete_callback = resolutions.complete_callback
        self.complete_callbacks = resolutions.complete_callbacks
        #: Callback POSTs, resolved on the home loop a batch per transaction (the receiver's).
        self.callbacks = CallbackQueue(loop_host, self.complete_callbacks)
        self.operations = Operations(repo, bus, spawn=self.spawn, resolve_task=self.resolve_task)

    # -- executing ------------------------------------------------------------------------
    async def execute(
        self, run_id: str, *, busy_timeout: float | None = None, rerun_changed: bool = False
    ) -> dict[str, Any]:
        """Execute the run once (until it finishes or suspends); returns the run record.

        Whatever its status: a finished run replays, a failed or canceled one is retried
        (ERRORED tasks run again), a waiting one replays up to its wait. ``busy_timeout``: if
        another process holds the run, wait up to this long for it (``None``: raise
        :class:`RunBusyError` at once). ``rerun_changed``: completed tasks whose function's
        code changed since they ran run again instead of replaying (SPEC §2).
        """
        busy_timeout = wait_limit(busy_timeout, "busy_timeout")
        async with self._lock(run_id):
            return await self._execute_locked(run_id, busy_timeout, rerun_changed=rerun_changed)

    @asynccontextmanager
    async def _lock(self, run_id: str) -> AsyncIterator[None]:
        """Hold the run's lock: one execution (or cancel) of a run at a time in this process."""
        with self._locks.use(run_id) as lock:
            async with lock:
                yield

    async def _execute_locked(
        self, run_id: str, busy_timeout: float | None, *, wanted: Wanted = None, rerun_changed: bool = False
    ) -> dict[str, Any]:
        self._cancel_timer(run_id)
        deadline = None if busy_timeout is None else time.monotonic() + busy_timeout
        while True:
            try:
                begun = self._begin(run_id, wanted=wanted)
                break
            except RunBusyError:
                if deadline is None or time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.1)
        if begun is None:  # nothing to do (resume of a run that is not waiting, or not ours)
            run = self.repo.load_run(run_id)
            assert run is not None
            return run
        run, job, reset_errored, lease = begun
        try:
            return await self._execute_leased(run, job, reset_errored, lease, rerun_changed)
        except BaseException:
            self.repo.release_lease(lease)  # _finish releases it on every normal path
            raise

    def _begin(
        self, run_id: str, *, wanted: Wanted
    ) -> tuple[dict[str, Any], JobDefinition, bool, Lease] | None:
        """One transaction: take the lease, load the run, mark it EXECUTING (SPEC §10)."""
        with self.repo.store.transaction():
            run = self.repo.load_run(run_id)
            if run is None:
                raise ConfigError(f"No run {run_id!r} in the store at {self.repo.store.location}.")
            stored = {"status": run["status"], "wake_at": run.get("wake_at")}  # for save_run
            job = self.jobs.get(run["job_id"])
            if wanted is not None and (job is None or not wanted(run)):
                return None  # a job not defined here is picked up when its cell is executed
            if job is None:
                raise ConfigError(
                    f"Run {run_id} belongs to job {run['job_id']!r}, which is not defined in this "
                    "process: execute the job's cell (or define_job) first."
                )
            lease = self.repo.take_lease(run)  # saved with the run below
            self.repo.clear_wake(run_id)
            self.repo.mark_executing(run_id)
            run.pop("retry_requested", None)  # this execution is the retry
            if run["status"] == RunStatus.EXECUTING:
                # We hold the lease, so whoever executed it died mid-execution: that execution
                # ends as interrupted; its RUNNING task (if any) runs again, at least once.
                advance_run(run, RunStatus.WAITING)
                run["history"] = [
                    *run.get("history", [])[-(HISTORY_LIMIT - 1) :],
                    {"n": run["executions"], "started_at": run.get("updated_at"),
                     "ended_at": time.time(), "status": "INTERRUPTED", "ran": 0, "replayed": 0},
                ]
            reset_errored = run["status"] in (RunStatus.FAILURE, RunStatus.CANCELED, RunStatus.TIMED_OUT)
            now = time.time()
            advance_run(run, RunStatus.EXECUTING)
            run["executions"] += 1
            run["is_retry"] = bool(run.get("is_retry")) or reset_errored  # persists: fix of v2 #216
            run["started_at"] = run.get("started_at") or now
            run["updated_at"] = now
            run["wake_at"] = None
            run["cancel_requested"] = False
            if reset_errored:
                run["error"] = None
            self.repo.save_run(run, stored=stored)
        self._notify_run(run)
        return run, job, reset_errored, lease

    async def _execute_leased(
        self,
        run: dict[str, Any],
        job: JobDefinition,
        reset_errored: bool,
        lease: Lease,
        rerun_changed: bool = False,
    ) -> dict[str, Any]:
        run_id = run["id"]
        execution = Execution(
            run,
            self.repo.load_task_texts(run_id),
            repo=self.repo,
            bus=self.bus,
            number=run["executions"],
            reset_errored=reset_errored,
            rerun_changed=rerun_changed,
            intercept=self.intercept_task,
            output_limit=self.output_limit,
            default_serializer=job.serializer,
            callback_url=self.callback_url,
            start_operation=self.operations.start,
            lease=lease,
        )
        execution.io = self.make_io(execution, job)
        self.bus.emit(Notice("execution", run_id, data={"event": "start", "n": execution.number}))
        self._active[run_id] = execution

        self._leases.hold(lease, execution)
        try:
            outcome, value = await self._drive(execution, job, run)
        finally:
            self._leases.drop(lease)
            self._active.pop(run_id, None)
        execution.io = None  # io refers back to it: no cycle left for the full collection to free
        return self._finish(run, execution, outcome, value)

    async def _drive(
        self, execution: Execution, job: JobDefinition, run: dict[str, Any]
    ) -> tuple[str, Any]:
        ctx = make_context(job, run, execution.number)
        outcome: str
        value: Any = None
        # The body starts at the top level, whatever context resumed it: a timer armed inside a
        # task (io.send_event(..., deliver_after=...)) carries that task as current parent, and
        # an execution it resumes would otherwise nest every task under it, with new keys.
        top_level = current_parent.set(None)
        try:
            value = await job.fn(run.get("payload"), execution.io, ctx)
            outcome = "success"
        except Canceled:
            outcome = "canceled"
        except ControlFlow:
            outcome = "suspended"
        except Exception as exc:
            outcome, value = "failure", exc
        except BaseException as exc:  # KeyboardInterrupt in a cell: record, then let it go on
            execution.closing = True
            self._finish(run, execution, "failure", exc)
            raise
        finally:
            current_parent.reset(top_level)
        execution.closing = True
        await execution.wait_idle()  # every concurrent branch finished or suspended (SPEC §4.4)
        if execution.records.corrupt is not None:
            raise execution.records.corrupt  # an undecodable record: the caller gets StoreError
        if execution.canceled:
            outcome = "canceled"
        elif outcome == "success" and execution.suspensions:
            outcome = "suspended"  # the body swallowed a suspension: the task still waits
        return outcome, value

    def _finish(
        self, run: dict[str, Any], execution: Execution, outcome: str, value: Any
    ) -> dict[str, Any]:
        """One transaction: store the outcome, the execution's journal, release the lease —
        if the lease is still ours (else :class:`RunBusyError`, nothing written)."""
        now = time.time()
        with self.repo.store.transaction():
            lease = execution.lease
            stored = self.repo.check_lease(lease) if lease else self.repo.load_run(run["id"])
            if stored is not None and stored.get("cancel_requested"):
                outcome = "canceled"  # another process (or handle) asked while we executed
            if outcome == "success":
                try:
                    encoded = encode_output(value, serializer="json", limit=self.output_limit)
                    run["output_json"] = encoded.data
                    advance_run(run, RunStatus.SUCCESS)
                except TaskOutputError as exc:
                    # The run's output is always JSON (SPEC §2): --pickle is for task outputs.
                    # serde says "...: <what and where>. <remedy>": keep only what and where.
                    reason = str(exc).split(":", 1)[-1].split(". ", 1)[0].strip()
                    outcome, value = "failure", TaskOutputError(
                        f"The job's return value cannot be stored as JSON ({reason}). Return JSON "
                        "data (dicts, lists, strings, numbers, booleans, None); keep other objects "
                        "in task outputs with serializer='pickle'."
                    )
            if outcome == "failure":
                if isinstance(value, TaskError):
                    run["error"] = {**value.error, "task": value.task.get("display_key")}
                else:
                    run["error"] = error_record(value)
                advance_run(run, RunStatus.FAILURE)
            elif outcome == "suspended":
                advance_run(run, RunStatus.WAITING)
                dues = [s.due_at for s in execution.suspensions if s.due_at is not None]
                run["wake_at"] = min(dues) if dues else None
            elif outcome == "canceled":
                advance_run(run, RunStatus.CANCELED)
                execution.cancel_unfinished()
            if run["status"] in RUN_FINISHED:
                run["completed_at"] = now
            run["updated_at"] = now
            run["cancel_requested"] = False
            journal = execution.journal
            summary = {
                "n": execution.number,
                "started_at": execution.started_at,
                "ended_at": now,
                "status": run["status"],
                "ran": sum(1 for entry in journal if entry[1] != "replayed"),
                "replayed": sum(1 for entry in journal if entry[1] == "replayed"),
            }
            run["history"] = [*run.get("history", [])[-(HISTORY_LIMIT - 1) :], summary]
            self.repo.drop_lease(run)  # released with the same write
            if run["status"] != RunStatus.EXECUTING:
                self.repo.clear_executing(run["id"])
            self.repo.save_run(run, stored=stored)
            self.repo.save_journal(run["id"], execution.number, journal, keep=HISTORY_LIMIT)
        self._notify_run(run)
        self.bus.emit(Notice("execution", run["id"], data={"event": "end", "n": execution.number}))
        if run["status"] == RunStatus.WAITING and run["wake_at"] is not None:
            self.schedule(run["id"], run["wake_at"])
        return run

    def _save_run(self, run: dict[str, Any]) -> None:
        self.repo.save_run(run)
        self._notify_run(run)

    def _notify_run(self, run: dict[str, Any]) -> None:
        event = self._changed.get(run["id"])
        if event is not None:
            event.set()
        self.bus.emit(Notice("run", run["id"], data={"status": run["status"]}))

    # -- waking, retrying, canceling --------------------------------------------------------
    def schedule(self, run_id: str, due_at: float) -> None:
        """Resume ``run_id`` at ``due_at`` (epoch seconds). Call on the home loop."""
        self._cancel_timer(run_id)
        loop = asyncio.get_running_loop()
        delay = max(0.0, due_at - time.time())
        self._timers[run_id] = loop.call_later(delay, self._wake, run_id)

    def _cancel_timer(self, run_id: str) -> None:
        timer = self._timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()

    def _wake(self, run_id: str) -> None:
        self._timers.pop(run_id, None)
        self.spawn(self.resume(run_id))

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` in the background on the home loop, keeping a reference to it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def resume(self, run_id: str, *, wanted: Wanted = None) -> dict[str, Any] | None:
        """Execute a WAITING run now (a timer, a callback, ``%job resume``), or an orphan.

        Takes the run's lock *before* looking at its status: a callback that lands while an
        execution is still under way must resume the run once that execution has suspended.
        """
        self._resuming.add(run_id)
        try:
            async with self._lock(run_id):
                self._resuming.discard(run_id)
                return await self._execute_locked(run_id, None, wanted=wanted or wants_execution)
        except RunBusyError:
            self.schedule(run_id, time.time() + 1.0)  # the other process will finish or die
        except Exception:
            log.exception("trigger_nb: resuming run %s failed", run_id)
        finally:
            self._resuming.discard(run_id)
        return self.repo.load_run(run_id)

    def resume_due(self) -> int:
        """Wake every stored WAITING run of a defined job whose time has come (or schedule it)."""
        count = 0
        # The status index, not every run (SPEC §13); a stale entry only schedules a no-op.
        for run_id, job_id, wake_at in self.repo.waiting_runs():
            if job_id in self.jobs and wake_at is not None:
                if run_id in self._timers or run_id in self._active:
                    continue
                self.schedule(run_id, wake_at)
                count += 1
        return count

    async def resume_now(self, run_id: str) -> dict[str, Any] | None:
        """Make the run's pending waits and retry delays due now, then execute it (SPEC §2
        ``%job resume``, the log's "Resume now"/"Retry now"). Callbacks and event waits still
        wait for their POST or event."""
        make_due(self.repo, run_id)
        return await self.execute(run_id)

    def process_wakeups(self) -> int:
        """Resume runs that another process marked for wake-up (a callback stored by
        ``trigger-nb serve``, another kernel). Returns how many were taken."""
        taken = 0
        for run_id in self.repo.pending_wakes():
            if run_id in self._resuming or run_id in self._active:
                continue  # this process resumes it already (the marker clears when it does)
            try:
                run = self.repo.load_run(run_id)
            except StoreError as exc:  # one undecodable run must not stop the others
                log.warning("%s", exc)
                run = None
            if run is None:
                self.repo.clear_wake(run_id)
                continue
            if run["job_id"] not in self.jobs:
                continue  # another process (or a later cell) will take it
            self.repo.clear_wake(run_id)
            self._cancel_timer(run_id)
            self.spawn(self.resume(run_id))
            taken += 1
        return taken

    async def watch(self, interval: float = 0.5) -> None:
        """Every ``interval`` seconds: take wake-up markers, due runs and orphans (forever)."""
        while True:
            try:
                self.process_wakeups()
                self.orphans.scan()
            except Exception:
                log.exception("trigger_nb: watching the store failed")
            await asyncio.sleep(interval)

    async def cancel(self, run_id: str) -> dict[str, Any] | None:
        """Cancel a run: a running execution stops at its next task; waiting tasks are canceled."""
        self._cancel_timer(run_id)
        active = self._active.get(run_id)
        if active is not None:
            active.canceled = True
            with self.repo.store.transaction():
                run = self.repo.load_run(run_id)
                if run is not None:
                    run["cancel_requested"] = True
                    self.repo.save_run(run)
            return run
        async with self._lock(run_id):
            try:
                lease = self.repo.acquire_lease(run_id)
            except RunBusyError:  # a live process executes it: it cancels at the end of it
                with self.repo.store.transaction():
                    run = self.repo.load_run(run_id)
                    if run is not None and run["status"] not in RUN_FINISHED:
                        run["cancel_requested"] = True
                        self.repo.save_run(run)
                return run
            if lease is None:
                return None
            try:
                return self._cancel_leased(lease)
            finally:
                self.repo.release_lease(lease)

    def _cancel_leased(self, lease: Lease) -> dict[str, Any] | None:
        with self.repo.store.transaction():
            run = self.repo.check_lease(lease)
            if run["status"] in RUN_FINISHED:
                return run
            self.repo.clear_executing(run_id := lease.run_id)
            # EXECUTING here means its executor died (we hold the lease): cancel it too.
            advance_run(run, RunStatus.CANCELED)
            run["completed_at"] = run["updated_at"] = time.time()
            for task in self.repo.load_tasks(run_id):
                if task["status"] in (TaskStatus.WAITING, TaskStatus.RUNNING):
                    advance_task(task, TaskStatus.CANCELED)
                    task.pop("callback_pending", None)
                    self.repo.save_task(task)
            self._save_run(run)
        return run

    def _resume_all(self, run_ids: list[str]) -> None:
        for run_id in dict.fromkeys(run_ids):  # a run resolved twice in one batch resumes once
            self._resume_soon(run_id)

    def _resume_soon(self, run_id: str) -> None:
        self._cancel_timer(run_id)
        self._resuming.add(run_id)
        self.spawn(self.resume(run_id))

    # -- waiting for a run --------------------------------------------------------------
    async def wait_finished(self, run_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Return the run record once it is finished (polls the store for other processes)."""
        timeout = wait_limit(timeout, "timeout")  # NaN would wait for ever (SPEC §10)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed.use(run_id) as event:
            while True:
                run = self.repo.load_run(run_id)
                if run is None:
                    raise ConfigError(f"No run {run_id!r} in the store at {self.repo.store.location}.")
                if run["status"] in RUN_FINISHED:
                    return run
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(run_id)
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), min(0.25, remaining or 0.25))
                except asyncio.TimeoutError:
                    pass

    def is_active(self, run_id: str) -> bool:
        return run_id in self._active

    def close(self) -> None:
        """Cancel timers and background tasks (call on the home loop, or after it stopped)."""
        self._leases.stop()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._background):
            task.cancel()

    async def aclose(self) -> None:
        """:meth:`close`, then let the canceled background tasks finish canceling (on the home
        loop), so none is left pending when a private loop stops."""
        self.close()
        if self._background:
            await asyncio.wait(list(self._background), timeout=2)
