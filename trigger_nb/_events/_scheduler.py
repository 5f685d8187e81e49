"""Timers on the client's home loop: delayed events, schedules, and runs queued by triggers.

Theory of operation
-------------------
One :class:`Scheduler` per client, started with the client's other background work
(``TriggerClient._ensure_started``) and stopped by ``client.close()``. It never runs a loop of
its own: timers are ``loop.call_later`` handles on the home loop and runs execute through the
runner (SPEC §2: schedules run *while the kernel lives*).

* **Delayed events** (SPEC §6.9): a timer per pending event delivers it when due. A watch every
  0.5 s also delivers every due ``evpending/`` event — those sent by another process
  (``trigger-nb serve``) and those that fell due while no process ran.
* **Queued runs**: runs created by a trigger (an event, a schedule tick) carry a ``start/``
  marker; the watch claims the markers of jobs defined here and executes those runs, so an
  event POSTed to another process starts its run here within about a second.
* **Schedules** (``--every`` / ``--cron``): one timer per job id — defining a job again replaces
  its timer, never adds a second one. Each tick runs under ``schedule/{job_id}``, a record with
  the next due time and the last tick's time, updated in the same transaction that creates the
  tick's run; the run id is derived from ``(job id, tick time)``, so two processes defining the
  same job, or a replayed timer, never run a tick twice. A tick that fell due while no kernel
  ran is run once when the store is next opened: by the process that defines the job again
  (its timer is due at once), or, if the job is not defined yet, queued by the first client to
  start, provided the process that held the schedule is gone. Missed ticks are not replayed one
  by one: the schedule runs once, late, and keeps its rhythm (see ``IntervalTrigger.next_after``).

Layout::

    schedule/{job_id}   {"job_id", "name", "version", "spec", "next_due", "last_timestamp", "holder"}
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from .._engine import JobDefinition, Runner, RunStatus, new_run_record
from .._engine._bus import Notice, NoticeBus
from .._engine._states import advance_run
from .._exceptions import PayloadError, RunBusyError
from .._keys import canonical_json
from .._loop import LoopHost
from .._serde import error_record, iso
from .._store import Repository, holder_dead
from ._eventlog import (
    EventLog,
    claim_queued_runs,
    job_meta,
    queue_run,
    release_queued_run,
    trigger_run_id,
)
from ._triggers import CronTrigger, EventTrigger, IntervalTrigger, apply_schema

log = logging.getLogger("trigger_nb")

SCHEDULE_PREFIX = "schedule/"


def _scheduled(job: JobDefinition | None) -> IntervalTrigger | CronTrigger | None:
    trigger = job.trigger if job is not None else None
    return trigger if isinstance(trigger, (IntervalTrigger, CronTrigger)) else None


class Scheduler:
    """Delayed events, schedules and queued runs of one client (see the module docstring).

    ``arm_event``, ``disarm_event``, ``start_queued``, ``job_defined`` and ``close`` are
    thread-safe; everything else runs on the home loop. Collaborators, handed over by the
    composition root: ``repo`` (records, and this process's holder id), ``jobs`` (the jobs
    defined here, a live mapping), ``host`` (the home loop), ``runner`` (executes runs),
    ``bus`` (run notices) and ``event_log`` (what is pending, delivery).
    """

    WATCH_INTERVAL = 0.5

    def __init__(
        self,
        repo: Repository,
        jobs: Mapping[str, JobDefinition],
        *,
        host: LoopHost,
        runner: Runner,
        bus: NoticeBus,
        event_log: EventLog,
    ) -> None:
        self._repo = repo
        self._store = repo.store
        self._jobs = jobs
        self._host = host
        self._runner = runner
        self._bus = bus
        self._events = event_log
        self._started = False
        self._closed = False
        self._event_timers: dict[str, asyncio.TimerHandle] = {}
        self._schedule_timers: dict[str, asyncio.TimerHandle] = {}
        self._watcher: asyncio.Task[Any] | None = None

    # -- thread-safe entry points ---------------------------------------------------------
    def arm_event(self, event_id: str, due: float) -> None:
        """Deliver ``event_id`` at ``due`` (epoch seconds)."""
        if not self._closed:
            self._host.call_soon(self._arm_event, event_id, due)

    def disarm_event(self, event_id: str) -> None:
        if not self._closed and event_id in self._event_timers:
            self._host.call_soon(self._disarm_event, event_id)

    def start_queued(self) -> None:
        """Start (soon, on the home loop) the queued runs of the jobs defined here."""
        if not self._closed:
            self._host.call_soon(self._start_queued)

    def job_defined(self, job: JobDefinition) -> None:
        """A job was defined or re-defined: store its event rule, replace its schedule."""
        self._events.job_defined(job)
        trigger = _scheduled(job)
        if trigger is None:
            store = self._store
            if store.get(SCHEDULE_PREFIX + job.id) is not None:
                store.delete(SCHEDULE_PREFIX + job.id)
            if job.id in self._schedule_timers and not self._closed:
                self._host.call_soon(self._disarm_schedule, job.id)
        elif not self._closed:
            due = self._store_schedule(job, trigger)
            self._host.call_soon(self._arm_schedule, job.id, due)
        if self._started:  # runs queued for this job (by an event, a missed tick) start now
            self.start_queued()

    def next_due(self, job_id: str) -> float | None:
        """When the job's schedule runs next (epoch seconds), if it has one."""
        record = self._store.get(SCHEDULE_PREFIX + job_id)
        return None if record is None else record.get("next_due")

    def close(self) -> None:
        """Cancel every timer and the watch; give up this process's hold on schedules."""
        if self._closed:
            return
        self._closed = True
        host = self._host
        if host.started and not host.in_home_thread():
            try:
                host.call_sync(self._cancel_all, timeout=5)
            except Exception:
                self._cancel_all()
        else:
            self._cancel_all()
        storage = self._store
        holder = self._repo.holder
        try:
            with storage.transaction():
                for key, record in storage.scan(SCHEDULE_PREFIX):
                    if record.get("holder") == holder:
                        record["holder"] = None  # a clean stop: the next client may catch up
                        storage.put(key, record)
        except Exception:
            log.exception("trigger_nb: releasing schedules failed")

    # -- on the home loop -------------------------------------------------------------------
    def start(self) -> None:
        """Start the watch, arm the schedules of defined jobs, catch up on orphaned ones."""
        if self._started or self._closed:
            return
        self._started = True
        self._catch_up_orphans()
        for job in list(self._jobs.values()):
            trigger = _scheduled(job)
            if trigger is not None:
                self._arm_schedule(job.id, self._store_schedule(job, trigger))
        self.poll()
        if not self._store.pushes_notices:  # else the client calls poll on the store's notices
            self._watcher = self._runner.spawn(self._watch())

    def poll(self) -> None:
        """Deliver due events (arming timers for those due before the next poll: all of them
        when the store pushes notices, as no periodic poll follows); start queued runs."""
        if self._closed or not self._started:
            return
        now = time.time()
        horizon = float("inf") if self._store.pushes_notices else 2 * self.WATCH_INTERVAL
        for event_id, due in self._events.pending():
            if due <= now:
                self._deliver(event_id)
            elif due - now < horizon and event_id not in self._event_timers:
                self._arm_event(event_id, due)
        self._start_queued()

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.WATCH_INTERVAL)
            try:
                self.poll()
            except Exception:
                log.exception("trigger_nb: watching events and queued runs failed")

    def _cancel_all(self) -> None:
        for timer in [*self._event_timers.values(), *self._schedule_timers.values()]:
            timer.cancel()
        self._event_timers.clear()
        self._schedule_timers.clear()
        if self._watcher is not None:
            self._watcher.cancel()

    # -- events ---------------------------------------------------------------------------
    def _arm_event(self, event_id: str, due: float) -> None:
        if self._closed:
            return
        self._disarm_event(event_id)
        loop = asyncio.get_running_loop()
        self._event_timers[event_id] = loop.call_later(
            max(0.0, due - time.time()), self._fire_event, event_id
        )

    def _disarm_event(self, event_id: str) -> None:
        timer = self._event_timers.pop(event_id, None)
        if timer is not None:
            timer.cancel()

    def _fire_event(self, event_id: str) -> None:
        self._event_timers.pop(event_id, None)
        if not self._closed:
            self._deliver(event_id)

    def _deliver(self, event_id: str) -> None:
        try:
            self._events.deliver(event_id)
        except Exception:
            log.exception("trigger_nb: delivering event %s failed", event_id)

    # -- queued runs ------------------------------------------------------------------------
    def _start_queued(self) -> None:
        if self._closed:
            return
        jobs = set(self._jobs)
        if not jobs:
            return
        runner = self._runner
        for run_id, job_id in claim_queued_runs(
            self._store, self._repo.holder, jobs
        ):
            runner.spawn(self._start_run(run_id, job_id))

    async def _start_run(self, run_id: str, job_id: str) -> None:
        try:
            job = self._jobs.get(job_id)
            trigger = job.trigger if job is not None else None
            if isinstance(trigger, EventTrigger) and trigger.schema is not None:
                if not self._parse_payload(run_id, job_id, trigger):
                    return
            await self._runner.execute(run_id)
        except RunBusyError:
            pass  # another process executes it
        except Exception:
            log.exception("trigger_nb: starting run %s failed", run_id)
        finally:
            try:
                release_queued_run(self._store, run_id)
            except Exception:  # the store closed under us (client.close())
                pass

    def _parse_payload(self, run_id: str, job_id: str, trigger: EventTrigger) -> bool:
        """v2 §6.1: an event trigger's schema parses the payload before the run starts; when
        it does not fit, the run fails (v2: INVALID_PAYLOAD) without running the body."""
        repo = self._repo
        run = repo.load_run(run_id)
        if run is None or run["status"] != RunStatus.QUEUED:
            return True
        assert trigger.schema is not None
        try:
            parsed = apply_schema(trigger.schema, run["payload"])
        except Exception as exc:
            event_id = (run.get("event") or {}).get("id")
            error = PayloadError(
                f"The payload of event {event_id!r} does not fit the schema of job {job_id!r} "
                f"({type(exc).__name__}: {exc}); the run did not start. Fix the schema or the event."
            )
            advance_run(run, RunStatus.EXECUTING)
            advance_run(run, RunStatus.FAILURE)
            run["error"] = error_record(error)
            run["completed_at"] = run["updated_at"] = time.time()
            repo.save_run(run)
            self._bus.emit(Notice("run", run_id, data={"status": run["status"]}))
            return False
        try:
            canonical_json(parsed)
        except PayloadError:
            return True  # not JSON (a model instance): the run keeps the raw payload
        run["payload"] = parsed
        repo.save_run(run)
        return True

    # -- schedules --------------------------------------------------------------------------
    def _store_schedule(self, job: JobDefinition, trigger: IntervalTrigger | CronTrigger) -> float:
        """Create or keep the job's schedule record; returns when it is next due. The same
        spec keeps its rhythm (and a tick missed while no kernel ran is due at once); a new
        spec starts one interval (or the next cron match) from now."""
        now = time.time()
        store = self._store
        key = SCHEDULE_PREFIX + job.id
        with store.transaction():
            record = store.get(key)
            if (
                record is None
                or record.get("spec") != trigger.spec()
                or record.get("next_due") is None
            ):
                record = {
                    "job_id": job.id,
                    "spec": trigger.spec(),
                    "next_due": trigger.first_due(now),
                    "last_timestamp": record.get("last_timestamp") if record else None,
                }
            record.update(name=job.name, version=job.version, holder=self._repo.holder)
            store.put(key, record)
        return float(record["next_due"])

    def _arm_schedule(self, job_id: str, due: float) -> None:
        """The one timer of ``job_id``: replaces any previous one."""
        self._disarm_schedule(job_id)
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        self._schedule_timers[job_id] = loop.call_later(
            max(0.0, due - time.time()), self._tick, job_id, due
        )

    def _disarm_schedule(self, job_id: str) -> None:
        timer = self._schedule_timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    def _tick(self, job_id: str, due: float) -> None:
        self._schedule_timers.pop(job_id, None)
        job = self._jobs.get(job_id)
        trigger = _scheduled(job)
        if self._closed or trigger is None or job is None:
            return
        now = time.time()
        store = self._store
        repo = self._repo
        key = SCHEDULE_PREFIX + job_id
        run_id = None
        try:
            with store.transaction():
                record = store.get(key)
                if record is None or record.get("spec") != trigger.spec():
                    return  # re-defined meanwhile: that definition armed its own timer
                if record.get("next_due") != due:  # another process took this tick
                    next_due = record.get("next_due") or trigger.first_due(now)
                else:
                    ts = iso(due)
                    assert ts is not None
                    run_id = trigger_run_id(job_id, "schedule", ts)
                    if repo.load_run(run_id) is None:
                        payload = {"ts": ts, "last_timestamp": record.get("last_timestamp")}
                        repo.save_run(new_run_record(run_id, job, payload))
                        queue_run(store, run_id, job_id, claimed_by=repo.holder)
                    else:
                        run_id = None
                    next_due = trigger.next_after(due, now)
                    record.update(last_timestamp=ts, next_due=next_due, holder=repo.holder)
                    store.put(key, record)
        except Exception:
            log.exception("trigger_nb: schedule tick of job %s failed", job_id)
            next_due = trigger.next_after(due, now)
        self._arm_schedule(job_id, next_due)
        if run_id is not None:
            self._runner.spawn(self._start_run(run_id, job_id))

    def _catch_up_orphans(self) -> None:
        """Queue one run for each schedule that fell due while no process held it, for jobs
        not defined here yet (their next definition starts it and re-arms the schedule)."""
        now = time.time()
        store = self._store
        repo = self._repo
        for key, record in store.scan(SCHEDULE_PREFIX):
            if record.get("job_id") in self._jobs or not self._orphan_due(record, now):
                continue
            with store.transaction():
                record = store.get(key)
                if record is None or not self._orphan_due(record, now):
                    continue
                ts = iso(record["next_due"])
                assert ts is not None
                job_id = record["job_id"]
                run_id = trigger_run_id(job_id, "schedule", ts)
                if repo.load_run(run_id) is None:
                    meta = job_meta(job_id, record.get("name"), record.get("version"))
                    repo.save_run(
                        new_run_record(
                            run_id, meta, {"ts": ts, "last_timestamp": record.get("last_timestamp")}
                        )
                    )
                    queue_run(store, run_id, job_id)
                record.update(last_timestamp=ts, next_due=None, holder=None)
                store.put(key, record)

    @staticmethod
    def _orphan_due(record: dict[str, Any], now: float) -> bool:
        due = record.get("next_due")
        if due is None or due > now:
            return False
        holder = record.get("holder")
        return not holder or holder_dead(holder)
