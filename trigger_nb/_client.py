"""``TriggerClient``: the library API (SPEC §3). The magics are a thin layer over it."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._config import Config
from ._engine import Execution, JobDefinition, Runner, RunStatus, new_run_record
from ._events import EventBus
from ._exceptions import ConfigError, TriggerNbError
from ._keys import canonical_json, derive_run_id, new_run_id, slugify_job_id, validate_version
from ._kv import ClientKeyValueStore
from ._loop import LoopHost
from ._run import Run
from ._store import Repository, Store, open_store

if TYPE_CHECKING:
    from ._eventlog import EventLog
    from ._scheduler import Scheduler
    from ._triggers import TriggerView

_LOG_LEVELS = ("log", "error", "warn", "info", "debug")


class TriggerClient:
    """Defines jobs and runs them against a durable store.

    All arguments are optional: ``dir`` (store directory, default ``TRIGGER_NB_DIR`` or
    ``./.trigger_nb``), ``host``/``port``/``public_url`` (the callback receiver), ``storage``
    (a :class:`~trigger_nb.testing.MemoryStore` or another backend instead of the directory),
    ``output_limit`` (bytes per task output, default 64 MiB), ``max_body_bytes`` (receiver).

    Nothing is opened or started until first needed; :meth:`close` stops what was started.
    """

    def __init__(
        self,
        dir: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        public_url: str | None = None,
        storage: Store | None = None,
        output_limit: int | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        self.config = Config.from_env(
            dir=dir,
            host=host,
            port=port,
            public_url=public_url,
            output_limit=output_limit,
            max_body_bytes=max_body_bytes,
        )
        self.jobs: dict[str, JobDefinition] = {}
        self.bus = EventBus()
        self._storage = storage
        self._repo: Repository | None = None
        self._runner: Runner | None = None
        self._receiver: Any = None
        self._host = LoopHost()
        self._lock = threading.RLock()
        self._started = False
        self._event_log: Any = None  # see "# -- events and triggers"
        self._scheduler: Any = None

    # -- lazily opened parts --------------------------------------------------------------
    @property
    def storage(self) -> Store:
        """The record store (opened on first use; raises ``StoreError`` if unusable)."""
        with self._lock:
            if self._storage is None:
                self._storage = open_store(self.config.dir)
            return self._storage

    @property
    def repo(self) -> Repository:
        with self._lock:
            if self._repo is None:
                self._repo = Repository(self.storage)
            return self._repo

    @property
    def runner(self) -> Runner:
        with self._lock:
            if self._runner is None:
                from ._io import IO

                def make_io(execution: Execution, job: JobDefinition) -> Any:
                    return IO(execution, job, client=self)

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
                from ._backend import ClientReceiverBackend
                from ._receiver import Receiver

                receiver = Receiver(
                    ClientReceiverBackend(self),
                    host=self.config.host,
                    port=self.config.port,
                    public_url=self.config.public_url,
                    max_body_bytes=self.config.max_body_bytes,
                )
                receiver.start()
                self._receiver = receiver
            return self._receiver

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
        self._check_trigger(job)
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
        self, job_id: str, payload: Any = None, *, run_id: str | None = None, busy_timeout: float | None = None
    ) -> Run:
        """Start a run of ``job_id`` (or continue run ``run_id``) and execute it until it
        finishes or first suspends. Returns its :class:`Run` handle.

        With the id of an existing run this continues that run exactly as re-executing its
        cell does: completed tasks replay, a failed run is retried, a waiting run keeps
        waiting. Raises ``PayloadError`` (nothing stored) for a payload that is not JSON,
        ``RunBusyError`` if another process executes the run (unless ``busy_timeout``).
        """
        run_id = self._prepare_run(job_id, payload, run_id)
        await self._host.run_async(self.runner.execute(run_id, busy_timeout=busy_timeout))
        return Run(self, run_id)

    def invoke_sync(
        self, job_id: str, payload: Any = None, *, run_id: str | None = None, busy_timeout: float | None = None
    ) -> Run:
        """Blocking :meth:`invoke` for sync code (the magic, scripts)."""
        run_id = self._prepare_run(job_id, payload, run_id)
        self._host.run_sync(self.runner.execute(run_id, busy_timeout=busy_timeout))
        return Run(self, run_id)

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
        watching the store for work other processes left (a callback via ``trigger-nb serve``)."""
        if self._started:
            return
        self._started = True
        runner = self.runner

        def start() -> None:
            runner.resume_due()
            runner.spawn(runner.watch())
            self.scheduler.start()  # events and schedules: see "# -- events and triggers"

        self._host.call_soon(start)

    def get_run(self, run_id: str) -> Run:
        """The handle of a stored run; ``ConfigError`` if there is none."""
        if self.repo.load_run(run_id) is None:
            raise ConfigError(f"No run {run_id!r} in the store at {self.storage.location}.")
        return Run(self, run_id)

    def runs(self, job_id: str | None = None, status: str | None = None) -> list[Run]:
        """Stored runs, newest first, optionally filtered by job id and status."""
        if status is not None and status.upper() not in vars(RunStatus).values():
            raise ConfigError(f"Unknown status {status!r}; use one of SUCCESS, FAILURE, WAITING, ...")
        wanted_job = slugify_job_id(job_id) if job_id else None
        # Filters read through the run indexes: the cost is that of the runs returned.
        records = self.repo.list_runs(job_id=wanted_job, status=status.upper() if status else None)
        records.sort(key=lambda r: r.get("created_at", 0), reverse=True)
        return [Run(self, r["id"], record=r) for r in records]

    def forget(self, run_id: str) -> int:
        """Delete a stored run and all its records; returns how many records were deleted."""
        if self._runner is not None and self._runner.is_active(run_id):
            raise TriggerNbError(f"Run {run_id} is executing right now; cancel it before forgetting it.")
        return self.repo.forget(run_id)

    async def retry(self, run_id: str) -> Run:
        """Execute a run again: ERRORED tasks run again (attempts continue), others replay."""
        self.get_run(run_id)
        await self._host.run_async(self.runner.execute(run_id))
        return Run(self, run_id)

    async def resume(self, run_id: str) -> Run:
        """Resume a waiting run now: its pending waits and retry delays become due at once
        (callbacks and event waits keep waiting for their POST or event)."""
        self.get_run(run_id)
        await self._host.run_async(self.runner.resume_now(run_id))
        return Run(self, run_id)

    async def cancel(self, run_id: str) -> Run:
        """Cancel a run (a running execution stops at its next task)."""
        self.get_run(run_id)
        await self._host.run_async(self.runner.cancel(run_id))
        return Run(self, run_id)

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
                from ._eventlog import EventLog

                self._event_log = EventLog(self)
            return self._event_log

    @property
    def scheduler(self) -> Scheduler:
        """Timers for delayed events and schedules, and the starter of triggered runs."""
        with self._lock:
            if self._scheduler is None:
                from ._scheduler import Scheduler

                self._scheduler = Scheduler(self, self.event_log)
            return self._scheduler

    def _check_trigger(self, job: JobDefinition) -> None:
        from ._triggers import check_trigger

        check_trigger(job.trigger, job.id)

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

    def trigger_view(self, job_id: str) -> TriggerView:
        """What a ``%%job --on/--every/--cron`` cell shows: the definition and its runs, live."""
        from ._triggers import TriggerView

        return TriggerView(self, slugify_job_id(job_id))

    def close(self) -> None:
        """Stop the receiver, timers and any private loop thread; close the store."""
        if self._scheduler is not None:
            self._scheduler.close()
        if self._receiver is not None:
            self._receiver.stop()
            self._receiver = None
        if self._runner is not None and self._host.started:
            runner = self._runner
            try:
                self._host.run_sync(_call(runner.close), timeout=5)
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
        return f"<TriggerClient dir={self.config.dir!r} jobs={sorted(self.jobs)}>"


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


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
