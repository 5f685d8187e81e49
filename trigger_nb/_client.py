"""``TriggerClient``: the library API (SPEC §3) and the composition root.

The client is the one module that knows every part. It builds the store, the repository, the
runner, the event log, the scheduler and the receiver — each lazily, on first use — and hands
each exactly the collaborators it uses; no part imports this module or reaches back into it.
The magics are a thin layer over it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._config import Config
from ._engine import (
    Execution,
    JobDefinition,
    Runner,
    RunStatus,
    new_run_record,
    prune_unreached,
    request_resume,
    request_retry,
)
from ._engine import _overrides as overrides
from ._engine._bus import NoticeBus
from ._exceptions import ConfigError, StoreError, TriggerNbError
from ._io._kv import ClientKeyValueStore
from ._keys import canonical_json, derive_run_id, new_run_id, slugify_job_id, validate_version
from ._loop import LoopHost
from ._run import Run, RunControls
from ._store import Repository, Store, open_store

if TYPE_CHECKING:
    from ._events._eventlog import EventLog
    from ._events._scheduler import Scheduler

T = TypeVar("T")

_LOG_LEVELS = ("log", "error", "warn", "info", "debug")

log = logging.getLogger("trigger_nb")


class TriggerClient:
    """Defines jobs and runs them against a durable store.

    All arguments are optional: ``dir`` (store directory, default ``TRIGGER_NB_DIR`` or
    ``./.trigger_nb``), ``store`` (a ``postgresql://`` URL: the team store of SPEC §10, default
    ``TRIGGER_NB_STORE``, which wins over ``TRIGGER_NB_DIR``), ``host``/``port``/``public_url`` (the callback receiver), ``storage``
    (a :class:`~trigger_nb.testing.MemoryStore` or another backend instead of the directory),
    ``output_limit`` (bytes per task output, default 64 MiB), ``max_body_bytes`` (receiver).

    Nothing is opened or started until first needed; :meth:`close` stops what was started.
    """

    def __init__(
        self,
        dir: str | None = None,
        *,
        store: str | None = None,
        host: str | None = None,
        port: int | None = None,
        public_url: str | None = None,
        storage: Store | None = None,
        output_limit: int | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        self.config = Config.from_env(
            dir=dir,
            store=store,
            host=host,
            port=port,
            public_url=public_url,
            output_limit=output_limit,
            max_body_bytes=max_body_bytes,
        )
        self.jobs: dict[str, JobDefinition] = {}
        self.bus = NoticeBus()
        self._storage = storage
        self._repo: Repository | None = None
        self._runner: Runner | None = None
        self._receiver: Any = None
        self._host = LoopHost()
        self._lock = threading.RLock()
        self._started = False
        self._event_log: EventLog | None = None  # see "# -- events and triggers"
        self._scheduler: Scheduler | None = None
        self._run_controls: RunControls | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._orphan_notice = asyncio.Event()  # a run started executing elsewhere (pushed stores)
        self._closed = False

    # -- lazily opened parts --------------------------------------------------------------
    @property
    def storage(self) -> Store:
        """The record store (opened on first use; raises ``StoreError`` if unusable)."""
        with self._lock:
            if self._storage is None:
                self._storage = open_store(self.config.store or self.config.dir)
            return self._storage

    @property
    def repo(self) -> Repository:
        with self._lock:
            if self._repo is None:
                self._repo = Repository(self.storage, lease_ttl=self.config.lease_ttl)
            return self._repo

    @property
    def runner(self) -> Runner:
        with self._lock:
            if self._runner is None:
                from ._io import IO

                def make_io(execution: Execution, job: JobDefinition) -> Any:
                    return IO(execution, job, event_log=self.event_log)

                self._runner = Runner(
                    self.repo,
                    self.bus,
                    self.jobs,
                    make_io=make_io,
                    loop_host=self._host,
                    callback_url=self._callback_url,
                    output_limit=self.config.output_limit,
                )
            return self._runner

    def _callback_url(self, task_id: str, secret: str) -> str:
        return self.receiver.callback_url(task_id, secret)

    @property
    def receiver(self) -> Any:
        """The HTTP receiver for callback URLs and events, started on first use (SPEC §9)."""
        with self._lock:
            if self._receiver is None:
                from ._receiver import Receiver
                from ._receiver._backend import EngineBackend

                backend = EngineBackend(
                    self.storage,
                    submit_callback=self.runner.callbacks.submit,
                    drain_callbacks=self.runner.callbacks.drain,
                    send_event=self.send_event_sync,
                )
                receiver = Receiver(
                    backend,
                    host=self.config.host,
                    port=self.config.port,
                    public_url=self.config.public_url,
                    max_body_bytes=self.config.max_body_bytes,
                )
                receiver.start()
                self._receiver = receiver
            return self._receiver

    @property
    def receiver_started(self) -> bool:
        """Whether the receiver runs (reading this never starts it)."""
        receiver = self._receiver
        return receiver is not None and bool(receiver.running)

    # -- jobs -----------------------------------------------------------------------------
    def define_job(
        self,
        *,
        id: str,
        name: str | None = None,
        version: str = "0.0.1",
        trigger: Any = None,
        log_level: str = "info",
        serializer: str = "json",
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering ``async def run(payload, io, ctx)`` as job ``id``.

        ``id`` is slugified as in v2; ``version`` must look like ``1.2.3``. Defining an id again
        replaces the previous definition (re-executing a cell).
        """

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add_job(
                JobDefinition(
                    id=id,
                    fn=fn,
                    name=name or id,
                    version=version,
                    trigger=trigger,
                    log_level=log_level,
                    serializer=serializer,
                )
            )
            return fn

        return decorator

    def add_job(self, job: JobDefinition) -> JobDefinition:
        """Register (or replace) a job definition after validating it."""
        if not inspect.iscoroutinefunction(job.fn):
            raise ConfigError(f"Job {job.id!r}: the body must be an `async def run(payload, io, ctx)`.")
        job.id = slugify_job_id(job.id)
        job.version = validate_version(job.version)
        job.name = job.name or job.id
        if job.log_level not in _LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(_LOG_LEVELS)}; got {job.log_level!r}.")
        if job.serializer not in ("json", "pickle"):
            raise ConfigError(f"serializer must be 'json' or 'pickle', got {job.serializer!r}.")
        from ._events._triggers import check_trigger

        check_trigger(job.trigger, job.id)
        self.jobs[job.id] = job
        self._job_defined(job)
        if self._started:  # runs of this job may be waiting in the store: take them now
            runner = self.runner
            self._host.call_soon(lambda: (runner.resume_due(), runner.process_wakeups()))
        return job

    # -- runs -------------------------------------------------------------------------------
    def run_id_for(self, job_id: str, payload: Any) -> str:
        """The run id the ``%%job`` magic uses by default: job id + canonical payload."""
        return derive_run_id(slugify_job_id(job_id), payload)

    async def invoke(
        self,
        job_id: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        busy_timeout: float | None = None,
        rerun_changed: bool = False,
    ) -> Run:
        """Start a run of ``job_id`` (or continue run ``run_id``) and execute it until it
        finishes or first suspends. Returns its :class:`Run` handle.

        With the id of an existing run this continues that run exactly as re-executing its
        cell does: completed tasks replay, a failed run is retried, a waiting run keeps
        waiting. ``rerun_changed=True`` (``%%job --rerun-changed``): completed tasks whose
        function's code changed since they ran run again, in this execution, instead of
        replaying (their attempts continue); the others still replay. Raises ``PayloadError``
        (nothing stored) for a payload that is not JSON, ``RunBusyError`` if another process
        executes the run (unless ``busy_timeout``). The handle's :attr:`Run.snapshot` is the
        record as this execution left it; its attributes read the store (another process may
        be executing the run by then).
        """
        run_id = self._prepare_run(job_id, payload, run_id)
        execute = self.runner.execute(run_id, busy_timeout=busy_timeout, rerun_changed=rerun_changed)
        record = await self._host.run_async(execute)
        return Run(self.run_controls, run_id, record=record)

    def invoke_sync(
        self,
        job_id: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        busy_timeout: float | None = None,
        rerun_changed: bool = False,
    ) -> Run:
        """Blocking :meth:`invoke` for sync code (the magic, scripts)."""
        invoke = self.invoke(job_id, payload, run_id=run_id, busy_timeout=busy_timeout, rerun_changed=rerun_changed)
        return self._host.run_sync(invoke)

    def _prepare_run(self, job_id: str, payload: Any, run_id: str | None) -> str:
        job_id = slugify_job_id(job_id)
        job = self.jobs.get(job_id)
        if job is None:
            known = ", ".join(sorted(self.jobs)) or "none yet"
            raise ConfigError(f"No job {job_id!r} is defined (defined: {known}). Define it first.")
        payload = {} if payload is None else payload
        canonical_json(payload)  # PayloadError (with the path) before anything is stored
        run_id = run_id or new_run_id()
        with self.storage.transaction():
            existing = self.repo.load_run(run_id)
            if existing is None:
                self.repo.save_run(new_run_record(run_id, job, payload))
            elif existing["job_id"] != job_id:
                raise ConfigError(
                    f"Run {run_id} belongs to job {existing['job_id']!r}, not {job_id!r}; "
                    "pick another run id or use --new."
                )
        self._ensure_started()
        return run_id

    def _ensure_started(self) -> None:
        """Once per client: schedule stored WAITING runs of defined jobs (SPEC §10) and start
        watching the store for work other processes left (a callback via ``trigger-nb serve``):
        by its notices on a store that pushes them (PostgreSQL), else by polling."""
        if self._started:
            return
        self._started = True
        runner = self.runner
        storage = self.storage

        def start() -> None:
            runner.resume_due()
            if storage.pushes_notices:
                # The listener's first callback(None) does the first look at the store.
                self._unsubscribe = storage.subscribe(
                    lambda topic: self._host.call_soon(self._store_notice, topic)
                )
                runner.spawn(runner.orphans.watch(self._orphan_notice))
            else:
                runner.spawn(runner.watch())
            self.scheduler.start()  # events and schedules: see "# -- events and triggers"

        self._host.call_soon(start)

    def _store_notice(self, topic: str | None) -> None:
        """On the home loop: another process left work (``None``: maybe, after a reconnection)."""
        if self._closed:
            return
        try:
            if topic in ("wake", None):
                self.runner.process_wakeups()
            if topic in ("start", "event", None):
                self.scheduler.poll()
            if topic in ("exec", None):
                self._orphan_notice.set()
        except Exception:
            log.exception("trigger_nb: handling a store notice (%s) failed", topic)

    def get_run(self, run_id: str) -> Run:
        """The handle of a stored run; ``ConfigError`` if there is none."""
        if self.repo.load_run(run_id) is None:
            raise ConfigError(f"No run {run_id!r} in the store at {self.storage.location}.")
        return Run(self.run_controls, run_id)

    def runs(self, job_id: str | None = None, status: str | None = None) -> list[Run]:
        """Stored runs, newest first, optionally filtered by job id and status."""
        if status is not None and status.upper() not in vars(RunStatus).values():
            raise ConfigError(f"Unknown status {status!r}; use one of SUCCESS, FAILURE, WAITING, ...")
        wanted_job = slugify_job_id(job_id) if job_id else None
        # Filters read through the run indexes: the cost is that of the runs returned.
        records = self.repo.list_runs(job_id=wanted_job, status=status.upper() if status else None)
        records.sort(key=lambda r: r.get("created_at", 0), reverse=True)
        return [Run(self.run_controls, r["id"], record=r) for r in records]

    def forget(self, run_id: str) -> int:
        """Delete a stored run and all its records; returns how many records were deleted.

        Raises ``TriggerNbError`` if this process executes the run right now and
        ``RunBusyError`` if another live process does (cancel it first).
        """
        if self._runner is not None and self._runner.is_active(run_id):
            raise TriggerNbError(f"Run {run_id} is executing right now; cancel it before forgetting it.")
        try:
            self.repo.acquire_lease(run_id)  # RunBusyError while another process executes it
        except StoreError:
            pass  # an undecodable run record holds no lease to honour: forget it (SPEC §10)
        return self.repo.forget(run_id)

    def prune(self, run_id: str) -> list[dict[str, Any]]:
        """Delete the run's stored tasks that its latest execution no longer reaches (a
        renamed key, a deleted step) and return what was deleted: ``{"id", "display_key",
        "name", "status"}`` per task, in first-seen order.

        "Not reached" is decided as the log shows it (``trigger_nb._engine._reach``): only
        after an execution that **succeeded**, so nothing is deleted while the run waits,
        failed or was canceled (tasks after a wait or a failure are unvisited, not unused); a
        child task counts only when its parent ran without calling it. The rest of the run is
        untouched: its output, the other tasks and their replays. Raises ``ConfigError`` for an
        unknown run, ``RunBusyError`` while another process executes it, ``TriggerNbError``
        while this one does.
        """
        self.get_run(run_id)
        if self._runner is not None and self._runner.is_active(run_id):
            raise TriggerNbError(f"Run {run_id} is executing right now; prune it once it has finished.")
        return prune_unreached(self.repo, run_id)

    async def retry(self, run_id: str) -> Run:
        """Execute a run again here: ERRORED tasks run again (attempts continue), others replay.

        Needs the run's job defined in this client (``ConfigError`` otherwise, nothing changed);
        from a process without it, :meth:`request_retry` leaves the retry to the one with it.
        """
        self._check_job_defined(self.get_run(run_id), "request_retry")
        await self._host.run_async(self.runner.execute(run_id))
        return Run(self.run_controls, run_id)

    async def resume(self, run_id: str) -> Run:
        """Resume a waiting run now: its pending waits and retry delays become due at once
        (callbacks and event waits keep waiting for their POST or event), then it executes.

        Needs the run's job defined in this client (``ConfigError`` otherwise, nothing changed);
        from a process without it, :meth:`request_resume` leaves it to the one with it.
        """
        self._check_job_defined(self.get_run(run_id), "request_resume")
        await self._host.run_async(self.runner.resume_now(run_id))
        return Run(self.run_controls, run_id)

    def request_retry(self, run_id: str) -> Run:
        """Mark a FAILURE/CANCELED/TIMED_OUT run for retry, for the process that defines its
        job: a client that has invoked that job (a kernel that executed its cell) retries it
        within a second; otherwise it is retried when the job next runs there. For processes
        without the job's code (``trigger-nb retry``). ``ConfigError`` for other statuses."""
        request_retry(self.repo, run_id)
        return Run(self.run_controls, run_id)

    def request_resume(self, run_id: str) -> int:
        """Make a WAITING run's waits and retry delays due now and leave its execution to the
        process that defines its job (as :meth:`request_retry`). Returns how many became due;
        0 means it waits only for callbacks or events, and nothing was changed. ``ConfigError``
        if the run is not WAITING."""
        return request_resume(self.repo, run_id)

    def _check_job_defined(self, run: Run, alternative: str) -> None:
        if run.job_id not in self.jobs:
            raise ConfigError(
                f"Run {run.id} belongs to job {run.job_id!r}, which is not defined in this "
                f"process: execute the job's cell (or define_job) first, or use "
                f"client.{alternative}(run_id) to leave it to the process that defines it."
            )

    async def cancel(self, run_id: str) -> Run:
        """Cancel a run (a running execution stops at its next task)."""
        self.get_run(run_id)
        await self._host.run_async(self.runner.cancel(run_id))
        return Run(self.run_controls, run_id)

    @property
    def run_controls(self) -> RunControls:
        """What :class:`Run` handles of this client use: records, waiting, retry and cancel,
        notices. ``Run(client.run_controls, run_id)`` is a handle of a run that need not be
        stored yet (a view attached before the run starts)."""
        with self._lock:
            if self._run_controls is None:
                from ._run_controls import RunControlsImpl

                self._run_controls = RunControlsImpl(
                    repo=lambda: self.repo, runner=lambda: self.runner, host=self._host, bus=self.bus,
                    retry=self.retry, cancel=self.cancel, resume=self.resume,
                    invalidate=self.invalidate, complete=self.complete, send_event=self.send_event,
                )
            return self._run_controls

    def call_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine of this client (``retry``, ``resume``, ``cancel``…) to completion on
        its home loop, from sync code (the magics, scripts); ``TimeoutError`` after
        ``timeout`` seconds."""
        return self._host.run_sync(coro, timeout)

    def invalidate(self, run_id: str, task_id: str) -> Run:
        """Forget a COMPLETED task: the next execution runs it again (the log's **Invalidate**;
        ``_engine/_overrides``). ``ConfigError``, ``RunBusyError`` (it executes)."""
        overrides.invalidate(self.runner, run_id, task_id)
        return self.get_run(run_id)

    async def complete(self, run_id: str, task_id: str, value: Any) -> Run:
        """Give a failed task output ``value`` and continue the run (the log's **Complete with
        value**). ``ConfigError``, ``TaskOutputError`` (not JSON), ``RunBusyError``."""
        await self._host.run_async(overrides.complete(self.runner, run_id, task_id, value))
        return self.get_run(run_id)

    # -- key-value store ----------------------------------------------------------------------
    @property
    def store(self) -> ClientKeyValueStore:
        """The key-value store outside runs (SPEC §3): ``client.store.env`` and
        ``client.store.job(job_id)`` (and ``.run(run_id)``), each with synchronous
        ``get(key)``, ``set(key, value)``, ``delete(key)``, ``has(key)`` — no cache key. The
        same records as ``io.store`` inside runs."""
        return ClientKeyValueStore(lambda: self.storage)

    # -- events and triggers ------------------------------------------------------------------
    @property
    def event_log(self) -> EventLog:
        """The store's durable events (SPEC §6.9); used by ``io`` and the methods below."""
        with self._lock:
            if self._event_log is None:
                from ._events._eventlog import EventLog

                # The scheduler delivers events and the event log arms the scheduler's timers:
                # the log gets the timers as callables, so the scheduler is built only on use.
                self._event_log = EventLog(
                    self.repo,
                    self.jobs,
                    resolve_task=self.runner.resolve_task,
                    arm_event=lambda event_id, due: self.scheduler.arm_event(event_id, due),
                    disarm_event=lambda event_id: self.scheduler.disarm_event(event_id),
                    start_queued=lambda: self.scheduler.start_queued(),
                )
            return self._event_log

    @property
    def scheduler(self) -> Scheduler:
        """Timers for delayed events and schedules, and the starter of triggered runs."""
        with self._lock:
            if self._scheduler is None:
                from ._events._scheduler import Scheduler

                self._scheduler = Scheduler(
                    self.repo,
                    self.jobs,
                    host=self._host,
                    runner=self.runner,
                    bus=self.bus,
                    event_log=self.event_log,
                )
            return self._scheduler

    def _job_defined(self, job: JobDefinition) -> None:
        """Store the job's event rule / replace its schedule (re-defining never duplicates a
        schedule); triggered jobs start the background work at once (SPEC §2 --on/--every)."""
        self.scheduler.job_defined(job)
        if job.trigger is not None and job.trigger.kind != "invoke":
            self._ensure_started()

    async def send_event(
        self, event: dict[str, Any], *, deliver_at: Any = None, deliver_after: float | None = None
    ) -> dict[str, Any]:
        """Send an event (SPEC §3, §6.9; v2 §5.9) and return the stored event.

        ``event``: ``{"name" (required), "payload" (default {}), "context", "id" (default a new
        unique id), "timestamp" (default now), "source" (default "trigger.dev")}``. Each
        event-triggered job it matches gets one run (one per event id, ever); waiting
        ``wait_for_event`` tasks that match resume. ``deliver_at`` (datetime or epoch seconds)
        wins over ``deliver_after`` (seconds). An id sent again is only updated while its
        delivery is at least 5 s away; otherwise the stored event is returned unchanged.
        Raises ``PayloadError`` (nothing stored) for a malformed event.
        """
        return self.send_event_sync(event, deliver_at=deliver_at, deliver_after=deliver_after)

    async def send_events(
        self, events: list[dict[str, Any]], *, deliver_at: Any = None, deliver_after: float | None = None
    ) -> list[dict[str, Any]]:
        """Send several events (each as :meth:`send_event`); returns them in order."""
        return [self.send_event_sync(e, deliver_at=deliver_at, deliver_after=deliver_after) for e in events]

    async def get_event(self, id: str) -> dict[str, Any] | None:
        """The stored event with the runs it started, or ``None`` if there is no such id."""
        return self.event_log.get(id)

    async def cancel_event(self, id: str) -> dict[str, Any] | None:
        """Cancel an event's pending delivery (no effect once delivered); ``None`` if unknown."""
        return self.event_log.cancel(id)

    def send_event_sync(
        self, event: dict[str, Any], *, deliver_at: Any = None, deliver_after: float | None = None
    ) -> dict[str, Any]:
        """Blocking :meth:`send_event`; thread-safe (the receiver calls it for ``POST /events``)."""
        self._ensure_started()
        return self.event_log.send(event, deliver_at=deliver_at, deliver_after=deliver_after)

    def close(self) -> None:
        """Stop the receiver, timers and any private loop thread; close the store."""
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._scheduler is not None:
            self._scheduler.close()
        if self._receiver is not None:
            self._receiver.stop()
            self._receiver = None
        if self._runner is not None and self._host.started:
            runner = self._runner
            try:
                self._host.run_sync(runner.aclose(), timeout=5)
            except Exception:
                runner.close()
        self._host.stop()
        if self._storage is not None:
            self._storage.close()

    def __enter__(self) -> TriggerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TriggerClient store={self.config.location!r} jobs={sorted(self.jobs)}>"


_default: TriggerClient | None = None
_default_lock = threading.Lock()


def default_client() -> TriggerClient:
    """The client the magics of this kernel use (created on first call from the environment)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TriggerClient()
        return _default


def set_default_client(client: TriggerClient | None) -> None:
    """Replace the default client (``%job config --dir``; tests)."""
    global _default
    with _default_lock:
        _default = client
