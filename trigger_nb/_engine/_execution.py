"""One execution of a run: the replay of the job body against the stored task records.

Theory of operation (SPEC §4, v2 §1.2 and §2.4). The runner loads every task record of the run
once, then calls the body from the top. Each ``io.*`` call arrives here as
:meth:`Execution.run_task` with a :class:`TaskSpec`:

1. the idempotency key is derived from ``(run_id, parent task id, cache key)``; a key seen
   twice in one execution raises :class:`DuplicateTaskKeyError`;
2. a COMPLETED record is **replayed**: its stored output is decoded and returned, the callback
   is not called;
3. an ERRORED record raises :class:`TaskError` again (a manual retry of a failed run instead
   re-runs it: deliberate fix of v2 #912);
4. otherwise the task runs (or waits): delays, retry delays and callbacks that cannot finish now
   raise :class:`Suspend`, which ends the execution; the runner schedules the next one.

Every state change is persisted before the caller sees its effect, so a process killed at any
instant loses no completed task (a RUNNING task simply runs again: at-least-once, as v2).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

from .._exceptions import (
    CallbackTimeoutError,
    DuplicateTaskKeyError,
    RunBusyError,
    TaskError,
    TaskOutputError,
)
from .._keys import display_key, idempotency_key, task_id_for
from .._numbers import epoch
from .._serde import DEFAULT_OUTPUT_LIMIT, error_record, jsonable_for_display
from .._store import Lease, Repository
from ..retry import calculate_retry_at
from ._bus import Notice, NoticeBus
from ._control import Canceled, ControlFlow, ExecutionClosing, Suspend
from ._fingerprint import FIELD as CODE_FIELD
from ._fingerprint import code_changed, fingerprint
from ._journal import failure_entry
from ._outputs import prepare_output, stored_output
from ._reach import CODE_CHANGED
from ._records import TaskRecords
from ._spec import TaskHandle, TaskSpec
from ._states import TASK_FINISHED, TaskStatus, advance_task
from ._threads import run_sync_callback

#: The id of the task whose callback is running: parent of any task started inside it (v2 §2.9).
current_parent: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "trigger_nb_parent_task", default=None
)

CALLBACK_TIMEOUT_MESSAGE = "Remote callback timeout - no requests received"  # v2's wording

#: Seconds after which a still-running task is written to the store as RUNNING.
RUNNING_WRITE_DELAY = 0.05


_ARITY_CACHE: dict[Any, tuple[int, bool]] = {}


def _calling_convention(fn: Callable[..., Any]) -> tuple[int, bool]:
    """(how many of ``task, io`` to pass, is it a coroutine function), cached per code object."""
    code = getattr(fn, "__code__", None) or type(fn)
    cached = _ARITY_CACHE.get(code)
    if cached is not None:
        return cached
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        arity = 2
    else:
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            arity = 2
        else:
            arity = min(
                2, sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
            )
    target = fn.__call__ if not inspect.isroutine(fn) and callable(fn) else fn  # type: ignore[operator]
    result = (arity, inspect.iscoroutinefunction(target))
    if len(_ARITY_CACHE) < 4096:
        _ARITY_CACHE[code] = result
    return result


class Execution:
    """The state of one execution of one run. Created and driven by the runner."""

    def __init__(
        self,
        run: dict[str, Any],
        tasks: list[dict[str, Any]] | dict[str, str],
        *,
        repo: Repository,
        bus: NoticeBus,
        number: int,
        reset_errored: bool = False,
        rerun_changed: bool = False,
        intercept: Callable[[TaskSpec], TaskSpec] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        default_serializer: str = "json",
        callback_url: Callable[[str, str], str] | None = None,
        start_operation: Callable[[dict[str, Any], Callable[[Any], Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
        lease: Lease | None = None,
    ) -> None:
        self.run = run
        #: The lease this execution holds: every write is fenced by it (SPEC §10). ``lost``
        #: is set once a write or a renewal found it taken over: nothing more runs or writes.
        self.lease = lease
        self.lost: RunBusyError | None = None
        self.run_id: str = run["id"]
        self.repo = repo
        self.bus = bus
        self.number = number
        self.reset_errored = reset_errored
        self.rerun_changed = rerun_changed  # SPEC §2 --rerun-changed
        self.intercept = intercept  # a test seam: may replace each TaskSpec (trigger_nb.testing)
        self.output_limit = output_limit
        self.default_serializer = default_serializer
        self.make_callback_url = callback_url
        self.start_operation = start_operation
        self.clock = clock
        self.records = TaskRecords(tasks, lambda key, exc: repo.undecodable(run["id"], key, exc))
        self.visited: set[str] = set()
        #: What happened to each task in this execution, in order: ``(task_id, outcome,
        #: attempts, *notes)`` with outcome ``ran | replayed | failed | retry | waiting``;
        #: notes (``_journal``): the error *then* for failed/retry, ``"code_changed"`` for a
        #: task replayed although its function's code changed (tuples: the garbage collector
        #: stops tracking them).
        self.journal: list[tuple[Any, ...]] = []
        self.started_at = clock()
        self.suspensions: list[Suspend] = []
        self.closing = False
        self.canceled = False
        self._inflight = 0
        self._idle: asyncio.Event | None = None
        self._running: dict[str, dict[str, Any]] = {}  # task id -> record, while its fn runs
        self._sweeper: asyncio.TimerHandle | None = None
        self.io: Any = None  # the IO object handed to callbacks taking (task, io)

    # -- public to the io layer ---------------------------------------------------------
    async def run_task(self, spec: TaskSpec) -> Any:
        """Run, replay or suspend on one task. See the module docstring."""
        if self.lost is not None:
            raise self.lost
        if self.canceled:
            raise Canceled()
        if self.closing:
            raise ExecutionClosing()
        if self.intercept is not None:
            spec = self.intercept(spec)
        parent_id = current_parent.get()
        key = idempotency_key(self.run_id, parent_id, spec.cache_key)
        if key in self.visited:
            shown = spec.display_key or display_key(spec.cache_key)
            raise DuplicateTaskKeyError(
                f'Task with cache key "{shown}" has already been executed in this run. Each task '
                "must have a unique cache key: inside a loop, include the loop variable, e.g. "
                f'io.run_task(f"{shown}-{{i}}", ...) or a list key ["{shown}", i].'
            )
        self.visited.add(key)
        record = self.records.get(key)
        if record is not None:
            status = record["status"]
            changed = status == TaskStatus.COMPLETED and code_changed(record, spec.user_fn)
            if status == TaskStatus.COMPLETED and not (changed and self.rerun_changed):
                notes = (CODE_CHANGED,) if changed else ()  # SPEC §2 "Changed code"
                self.journal.append((record["id"], "replayed", record["attempts"], *notes))
                if self.bus.active:
                    self.bus.emit(Notice("task", self.run_id, task=record, data={"replayed": True}))
                return self._stored_output(record, spec.parse_output)
            if status == TaskStatus.ERRORED and not self.reset_errored:
                self.journal.append(failure_entry(record, "failed"))
                raise self._task_error(record, None)
        self._inflight += 1
        try:
            return await self._advance(spec, record, key, parent_id)
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._idle is not None:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Return when no task of this execution is in flight (SPEC §4.4)."""
        while self._inflight:
            self._idle = asyncio.Event()
            await self._idle.wait()

    # -- the task lifecycle -------------------------------------------------------------
    async def _advance(
        self, spec: TaskSpec, record: dict[str, Any] | None, key: str, parent_id: str | None
    ) -> Any:
        now = self.clock()
        if record is None or record["status"] in TASK_FINISHED:  # re-opened: see _open
            return await self._start(spec, self._open(spec, record, key, parent_id, now), now)
        if record["status"] == TaskStatus.WAITING:
            return await self._continue_waiting(spec, record, now)
        if record["status"] == TaskStatus.PENDING:
            advance_task(record, TaskStatus.RUNNING)
        # RUNNING: the process that ran it died, or a child suspended it: run it again.
        return await self._call(spec, record)

    def _open(
        self, spec: TaskSpec, old: dict[str, Any] | None, key: str, parent_id: str | None, now: float
    ) -> dict[str, Any]:
        """A fresh record for a new task, or for one re-opened with the new-task rules while
        keeping its place in the log: a canceled task asked for again (v2 §2.5), a failed one on
        a manual retry (fix of v2 #912), a completed one whose code changed with rerun_changed —
        a fetch is sent again, a callback or event wait re-armed, and attempts continue."""
        if old is None:
            return self._new_record(spec, key, parent_id, now)
        record = self._new_record(spec, key, parent_id, now, seq=old.get("seq"))
        # COMPLETED stays final in the state table: a completed task re-run is a new record.
        record["status"] = None if old["status"] == TaskStatus.COMPLETED else old["status"]
        if old["status"] != TaskStatus.CANCELED:
            record["attempts"] = old["attempts"] + 1
        return record

    async def _start(self, spec: TaskSpec, record: dict[str, Any], now: float) -> Any:
        """The new-task rules (v2 §2.5): wait for a delay, an operation, an external event or
        a callback; complete a noop at once; otherwise run the function."""
        if spec.delay_until is not None and spec.delay_until > now:
            advance_task(record, TaskStatus.WAITING)
            record["delay_until"] = spec.delay_until
            self._save(record)
            self._suspend(record, spec.delay_until, "delay")
        if spec.operation is not None:
            advance_task(record, TaskStatus.WAITING)
            record["operation_pending"] = True
            return self._begin_operation(spec, record)
        if spec.external is not None:
            advance_task(record, TaskStatus.WAITING)
            record["external_pending"] = True
            timeout = float(spec.external.get("timeout_in_seconds", 3600))
            record["external_timeout_at"] = now + timeout if timeout > 0 else None
            self._save(record)
            return self._await_external(spec, record, parse_output=spec.parse_output)
        if spec.callback and spec.callback.get("enabled", True):
            advance_task(record, TaskStatus.WAITING)
            self._arm_callback(record, spec.callback, now)
            return await self._hand_out_callback(spec, record)
        if spec.noop:
            return self._complete(record, spec, None)
        advance_task(record, TaskStatus.RUNNING)
        return await self._call(spec, record)

    async def _continue_waiting(self, spec: TaskSpec, record: dict[str, Any], now: float) -> Any:
        """A WAITING task reached again: time out, re-arm, suspend again, or run (when due)."""
        if record.get("operation_pending") and spec.operation is not None:
            return self._begin_operation(spec, record)
        if record.get("external_pending"):
            timeout_at = record.get("external_timeout_at")
            if timeout_at is not None and timeout_at <= now:
                message = (spec.external or {}).get("timeout_message", CALLBACK_TIMEOUT_MESSAGE)
                return self._fail(record, CallbackTimeoutError(message))
            return self._await_external(spec, record, parse_output=spec.parse_output)
        if record.get("callback_secret") and record.get("callback_pending"):
            timeout_at = record.get("callback_timeout_at")
            if timeout_at is not None and timeout_at <= now:
                return self._fail(record, CallbackTimeoutError(CALLBACK_TIMEOUT_MESSAGE))
            self._refresh_callback_url(record)  # the receiver may listen elsewhere now (§9)
            return await self._hand_out_callback(spec, record)
        due = record.get("retry_at") or record.get("delay_until")
        if due is not None and due > now:
            self._suspend(record, due, "retry" if record.get("retry_at") else "delay")
        if spec.noop and not record.get("retry_at"):
            return self._complete(record, spec, None)
        advance_task(record, TaskStatus.RUNNING)
        if record.pop("retry_at", None) is not None:
            record["attempts"] += 1
        return await self._call(spec, record)

    async def _call(self, spec: TaskSpec, record: dict[str, Any]) -> Any:
        if self.canceled:
            raise Canceled()
        self.ensure_lease()  # a side effect follows: never in a process that lost the run
        if self.bus.active:
            self.bus.emit(Notice("task", self.run_id, task=record))
        handle = TaskHandle(record)
        token = current_parent.set(record["id"])
        self._running[record["id"]] = record
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(RUNNING_WRITE_DELAY, self._sweep)
        try:
            result = await self._invoke(spec.fn, handle)
        except ControlFlow:
            raise
        except TaskError as child:  # a child task failed: it fails this parent (v2 §2.9, #159)
            return self._fail(record, child, original=child.original or child)
        except Exception as exc:
            return await self._on_error(spec, record, handle, exc)
        finally:
            self._running.pop(record["id"], None)
            current_parent.reset(token)
        record["output_properties"] = handle.output_properties
        return self._complete(record, spec, result)

    def _sweep(self) -> None:
        """Store tasks still running since the last sweep as RUNNING, so other processes and
        a post-crash log show them in flight. Quick tasks never get this extra write: they
        cost one write each (SPEC §13)."""
        for record in list(self._running.values()):
            if record["status"] == TaskStatus.RUNNING and not record.get("running_stored"):
                record["running_stored"] = True
                self._save(record)
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(RUNNING_WRITE_DELAY, self._sweep) if self._running else None

    async def _invoke(self, fn: Callable[..., Any] | None, handle: TaskHandle) -> Any:
        if fn is None:
            return None
        arity, is_async = _calling_convention(fn)
        args = (handle, self.io)[:arity]
        if is_async:
            return await fn(*args)
        # Sync callbacks run in a worker thread so the loop (views, receiver, other runs)
        # stays responsive (SPEC §4.6); the context is copied, so output still lands in the
        # right notebook cell. See _threads for the cheap hand-off, and for running a function
        # known to return in microseconds inline (the hand-off would cost more than it).
        result = await run_sync_callback(fn, *args)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _complete(self, record: dict[str, Any], spec: TaskSpec, value: Any) -> Any:
        try:
            output = prepare_output(
                value,
                serializer=spec.serializer or self.default_serializer,
                limit=self.output_limit,
                cache_key=record["display_key"],
            )
        except TaskOutputError as exc:
            # Retrying cannot make an output serialisable: fail at once.
            return self._fail(record, exc)
        record.update(output.fields)
        advance_task(record, TaskStatus.COMPLETED)
        record["completed_at"] = self.clock()
        record["ran_in"] = self.number
        record["error"] = None
        record.pop("callback_pending", None)
        self._save(record, blob=output.blob)
        self.journal.append((record["id"], "ran", record["attempts"]))
        value = output.value
        return spec.parse_output(value) if spec.parse_output is not None else value

    async def _on_error(
        self, spec: TaskSpec, record: dict[str, Any], handle: TaskHandle, exc: Exception
    ) -> Any:
        """SPEC §5 / v2 §3.4: on_error may replace the error, retry at a time, or skip retrying."""
        error: BaseException = exc
        skip_retrying = False
        retry_at: float | None = None
        if spec.on_error is not None:
            try:
                verdict = spec.on_error(exc, handle, self.io)
                if inspect.isawaitable(verdict):  # awaited: deliberate fix of v2 #909
                    verdict = await verdict
                if isinstance(verdict, BaseException):
                    error = verdict
                elif isinstance(verdict, dict):
                    skip_retrying = bool(verdict.get("skip_retrying", verdict.get("skipRetrying")))
                    when = verdict.get("retry_at", verdict.get("retryAt"))
                    if when is not None and not skip_retrying:
                        # A non-finite or out-of-range date fails the task (ConfigError) instead of
                        # being stored (SPEC §10).
                        retry_at = epoch(when, "on_error's retry_at")
                        if isinstance(verdict.get("error"), BaseException):
                            error = verdict["error"]
            except ControlFlow:
                raise
            except Exception as inner:  # on_error itself failed: that error replaces the original
                error = inner
        if retry_at is None and spec.retry is not None and not skip_retrying:
            retry_at = calculate_retry_at(spec.retry, record["attempts"] - 1, now=self.clock())
        if retry_at is None:
            return self._fail(record, error)
        advance_task(record, TaskStatus.WAITING)
        record["retry_at"], record["retry_limit"] = retry_at, (spec.retry or {}).get("limit")  # "attempt N of M"
        record["error"] = error_record(error)
        self._save(record)
        self._suspend(record, retry_at, "retry")

    def _fail(
        self,
        record: dict[str, Any],
        error: BaseException,
        *,
        original: BaseException | None = None,
    ) -> Any:
        """Record a final failure (any retry decision was made before) and raise TaskError."""
        original = original or error
        if isinstance(error, TaskError) and error.error:
            record["error"] = dict(error.error)
        else:
            record["error"] = error_record(error)
        advance_task(record, TaskStatus.ERRORED)
        record["completed_at"] = self.clock()
        record["ran_in"] = self.number
        record.pop("callback_pending", None)
        self._save(record)
        self.journal.append(failure_entry(record, "failed"))
        raise self._task_error(record, original) from original

    def _task_error(self, record: dict[str, Any], original: BaseException | None) -> TaskError:
        error = record.get("error") or {"name": "Error", "message": "Task errored", "stack": ""}
        message = (
            f"Task {record['display_key']!r} ({record['name']}) failed after "
            f"{record['attempts']} attempt(s): {error.get('name')}: {error.get('message')}"
        )
        return TaskError(message, task=dict(record), original=original, error=error)

    # -- callbacks (SPEC §6.1, v2 §4) ---------------------------------------------------
    def _arm_callback(self, record: dict[str, Any], options: dict[str, Any], now: float) -> None:
        timeout = float(options.get("timeout_in_seconds", options.get("timeoutInSeconds", 3600)))
        record["callback_secret"] = secrets.token_urlsafe(24)  # 192 bits (SPEC §9: >= 128)
        record["callback_pending"] = True
        record["callback_timeout_at"] = now + timeout if timeout > 0 else None
        self._refresh_callback_url(record)

    def _refresh_callback_url(self, record: dict[str, Any]) -> None:
        if self.make_callback_url is None:
            raise RuntimeError("callback tasks need a receiver; none is configured")
        record["callback_url"] = self.make_callback_url(record["id"], record["callback_secret"])

    async def _hand_out_callback(self, spec: TaskSpec, record: dict[str, Any]) -> Any:
        """Run the callback once to hand the URL on, then suspend until the POST (v2 §4)."""
        self._save(record, index_callback=True)
        if self.bus.active:
            self.bus.emit(Notice("task", self.run_id, task=record))
        if spec.fn is not None:
            self.ensure_lease()
            handle = TaskHandle(record)
            token = current_parent.set(record["id"])
            try:
                if spec.pass_url_only:
                    result = spec.fn(record["callback_url"])
                    if inspect.isawaitable(result):
                        await result
                else:
                    await self._invoke(spec.fn, handle)
            except ControlFlow:
                raise
            except Exception as exc:
                return self._fail(record, exc)
            finally:
                current_parent.reset(token)
            if handle.output_properties is not None:
                record["output_properties"] = handle.output_properties
                # Only while still waiting: the POST may already have completed it.
                self._fenced(
                    self.repo.update_task,
                    record,
                    lambda stored: stored["status"] == TaskStatus.WAITING,
                    {"output_properties": handle.output_properties},
                    lease=self.lease,
                )
        self._suspend(record, record.get("callback_timeout_at"), "callback")

    def _await_external(
        self, spec: TaskSpec, record: dict[str, Any], *, parse_output: Callable[[Any], Any] | None
    ) -> Any:
        """(Re-)register an external wait; return at once if that resolved it, else suspend."""
        register = (spec.external or {}).get("register")
        if register is not None:
            self.ensure_lease()  # a store write outside the task record: never after a takeover
            register(dict(record))
            stored = self.repo.load_task(self.run_id, record["idempotency_key"])
            if stored is not None and stored["status"] == TaskStatus.COMPLETED:
                self.records[record["idempotency_key"]] = stored
                self.journal.append((stored["id"], "ran", stored["attempts"]))
                return self._stored_output(stored, parse_output)
            if stored is not None and stored["status"] == TaskStatus.ERRORED:
                self.records[record["idempotency_key"]] = stored
                self.journal.append(failure_entry(stored, "failed"))
                raise self._task_error(stored, None)
        self._suspend(record, record.get("external_timeout_at"), "external")

    def _begin_operation(self, spec: TaskSpec, record: dict[str, Any]) -> Any:
        """Persist the waiting task, hand its operation to the runner, suspend (v2 §5.4)."""
        self._save(record)
        self.ensure_lease()
        if self.start_operation is None:
            raise RuntimeError("background operations need a runner")
        assert spec.operation is not None
        self.start_operation(record, spec.operation)
        self._suspend(record, None, "operation")

    # -- helpers ------------------------------------------------------------------------
    def _new_record(
        self, spec: TaskSpec, key: str, parent_id: str | None, now: float, *, seq: int | None = None
    ) -> dict[str, Any]:
        if seq is None:
            seq = self.records.new_seq(key)
        cache_key = spec.cache_key
        record: dict[str, Any] = {
            "id": task_id_for(key),
            "run_id": self.run_id,
            "idempotency_key": key,
            "cache_key": cache_key if isinstance(cache_key, str) else jsonable_for_display(cache_key),
            "display_key": spec.display_key or display_key(cache_key),
            "parent_id": parent_id,
            "name": spec.name,
            "icon": spec.icon,
            "description": spec.description,
            "properties": spec.properties,
            "params": None if spec.params is None else jsonable_for_display(spec.params),
            "style": spec.style,
            "redact": spec.redact,
            "kind": spec.kind,
            "noop": spec.noop,
            "status": None,
            "attempts": 1,
            "seq": seq,
            "first_execution": self.number,
            "started_at": now,
            "completed_at": None,
            "output_json": None,
            "output_encoding": None,
            "error": None,
            "callback_url": None,
            "output_properties": None,
            CODE_FIELD: fingerprint(spec.user_fn),  # SPEC §2 "Changed code"
        }
        if spec.extra:
            record.update(spec.extra)
        self.records[key] = record
        return record

    def cancel_unfinished(self) -> None:
        """The run was canceled: store every task still waiting or running as CANCELED."""
        for record in self.records.all():
            if record["status"] in (TaskStatus.WAITING, TaskStatus.RUNNING, TaskStatus.PENDING):
                advance_task(record, TaskStatus.CANCELED)
                record.pop("callback_pending", None)
                self.repo.save_task(record)

    def _save(
        self,
        record: dict[str, Any],
        *,
        blob: bytes | Iterator[bytes] | None = None,
        index_callback: bool = False,
    ) -> None:
        new = self.records.first_write(record["idempotency_key"])
        self._fenced(
            self.repo.save_task,
            record,
            blob=blob,
            index_callback=index_callback,
            job_id=self.run.get("job_id"),
            lease=self.lease,
            new=new,
        )
        if self.bus.active:
            self.bus.emit(Notice("task", self.run_id, task=record))

    def _fenced(self, write: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A store write checked against the lease; a refusal stops the whole execution."""
        try:
            return write(*args, **kwargs)
        except RunBusyError as lost:
            self.lost = lost
            raise

    def ensure_lease(self) -> None:
        """Before a side effect (a task's function, a callback hand-out, an operation): raise
        :class:`RunBusyError` if the lease was lost. Free while the lease is fresh (the keeper
        renews it every third of its life); past half its life — the process was stopped, the
        loop starved the keeper — a fenced renewal asks the store."""
        if self.lost is not None:
            raise self.lost
        lease = self.lease
        if lease is None or time.time() < lease.expires_at - self.repo.lease_ttl / 2:
            return
        if not self.repo.renew_lease(lease):
            self.lost = lease.lost(self.repo.load_run(self.run_id))
            raise self.lost

    def _suspend(self, record: dict[str, Any], due_at: float | None, reason: str) -> None:
        signal = Suspend(record["id"], due_at, reason)
        self.suspensions.append(signal)
        waiting = (record["id"], "waiting", record["attempts"])
        self.journal.append(failure_entry(record, "retry") if reason == "retry" else waiting)
        raise signal

    def _stored_output(self, record: dict[str, Any], parse_output: Callable[[Any], Any] | None) -> Any:
        value = stored_output(self.repo, record)
        return parse_output(value) if parse_output is not None else value
