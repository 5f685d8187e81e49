"""Durable events: sending, delayed delivery, cancelation, waiters (SPEC §6.4, §6.9, §9; v2 §5.3, §5.9).

Theory of operation
-------------------
Every event is a record in the store. *Sending* validates it and stores it with the time it is
due; *delivering* it (at once, or when it falls due) happens exactly once, in a store
transaction that marks it delivered, and does two things:

1. for every event-triggered job whose rule matches, it creates a run (QUEUED, payload = the
   event's payload, ``event`` = the event) whose id is derived from ``(job id, event id)`` — so
   an event can never start a second run of a job — plus a ``start/`` marker;
2. it completes every ``wait_for_event`` waiter that matches, through
   :meth:`Runner.resolve_task` (first resolution wins, so the first matching event wins).

The rules of event-triggered jobs are stored too (``trigger/``), so *any* process can deliver:
``trigger-nb serve`` receiving ``POST /events`` while the kernel that defines the job runs
elsewhere, or while no kernel runs at all. The ``start/`` marker is how the run reaches the
process that defines its job: that process's scheduler takes it (at once when local, else
within its 0.5 s watch) and executes the run; a run created while no kernel ran starts when the
job is next defined. Waiters resolved by another process resume through the runner's durable
``wake/`` marker. An event due while no process ran is delivered by the first client that
opens the store (its scheduler's watch delivers every due ``evpending/`` event).

Layout (JSON records)::

    event/{event_id}       the event (times as epoch seconds) and the runs it started
    evpending/{event_id}   {"deliver_at"}: not delivered yet, not canceled
    evwait/{task_id}       a waiting wait_for_event task: its rule, run id, idempotency key
    trigger/{job_id}       the rule of an event-triggered job (written when it is defined)
    start/{run_id}         a run created by a trigger, to be executed by its job's process

Deviations from v2, all deliberate: the default id of an event sent by ``io.send_event`` is
derived from the task's idempotency key (a task that runs again after a crash does not send a
second event); ``cancel_event`` after delivery changes nothing (v2 set ``cancelledAt`` anyway);
a canceled event is never revived by a debounce update.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from .._engine import JobDefinition, TaskStatus, new_run_record
from .._exceptions import PayloadError
from .._keys import canonical_json
from .._numbers import epoch, is_real, iso_utc, seconds
from .._serde import iso
from ._triggers import EventTrigger, event_matches

if TYPE_CHECKING:
    from .._store import Repository

#: ``resolve_task(run_id, idempotency_key, *, output, pending_flag, resolved_by, check)``: how a
#: delivered event completes a waiting task (``Runner.resolve_task``); returns the outcome.
ResolveTask = Callable[..., str]

log = logging.getLogger("trigger_nb")

EVENT_PREFIX = "event/"
PENDING_PREFIX = "evpending/"
WAITER_PREFIX = "evwait/"
TRIGGER_PREFIX = "trigger/"
START_PREFIX = "start/"

DEFAULT_SOURCE = "trigger.dev"  # v2's default source
#: v2 §5.9: re-sending an event id only updates it while its delivery is at least this far off.
DEBOUNCE_SECONDS = 5.0
#: A ``start/`` marker claimed by a process that has not started the run for this long is free.
CLAIM_TTL = 60.0

_EVENT_KEYS = ("id", "name", "payload", "context", "timestamp", "source")


def trigger_run_id(job_id: str, kind: str, key: str) -> str:
    """The id of the run that trigger ``kind`` starts for ``key`` (an event id, a schedule
    time): the same inputs always give the same run, so nothing starts a run twice."""
    material = f"{job_id}\n{kind}\n{key}"
    return "run_" + hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def job_meta(job_id: str, name: str | None, version: str | None) -> JobDefinition:
    """What :func:`new_run_record` needs of a job defined in another process (or not yet)."""
    return cast(
        JobDefinition, SimpleNamespace(id=job_id, name=name or job_id, version=version or "0.0.1")
    )


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


# -- validation -------------------------------------------------------------------------------


def _json_value(value: Any, what: str) -> Any:
    try:
        canonical_json(value)
    except PayloadError as exc:
        raise PayloadError(f"The event's {what} is not JSON: {exc}") from None
    return json.loads(json.dumps(value))


def _timestamp(value: Any, now: float) -> str:
    if value is None:
        return _iso(now)
    if isinstance(value, _dt.datetime):
        return iso_utc(value, "The event's timestamp", error=PayloadError)
    if is_real(value):
        return _iso(epoch(value, "The event's timestamp", error=PayloadError))
    if isinstance(value, str):
        try:
            parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PayloadError(
                f"The event's timestamp {value!r} is not an ISO 8601 date, e.g. '2024-05-01T12:00:00Z'."
            ) from None
        return _timestamp(parsed, now)
    raise PayloadError(
        f"The event's timestamp must be a datetime, ISO string or epoch seconds, got {value!r}."
    )


def normalize_event(event: Any, *, now: float, default_id: str | None = None) -> dict[str, Any]:
    """Validate ``event`` (v2 ``RawEventSchema``) and fill in v2's defaults.

    ``name`` is required; ``payload`` defaults to ``{}``, ``id`` to ``default_id`` or a new
    unique id, ``timestamp`` to now, ``source`` to ``"trigger.dev"``; ``context`` is optional.
    Raises :class:`PayloadError` (nothing stored) for anything malformed or not JSON.
    """
    example = 'e.g. {"name": "issue.opened", "payload": {"number": 42}}'
    if not isinstance(event, Mapping):
        raise PayloadError(f"An event must be a dict, {example}; got {type(event).__name__}.")
    unknown = sorted(str(k) for k in event if k not in _EVENT_KEYS)
    if unknown:
        raise PayloadError(
            f"Unknown event field(s) {unknown}; an event has {', '.join(_EVENT_KEYS)}."
        )
    name = event.get("name")
    if not isinstance(name, str) or not name:
        raise PayloadError(f'An event needs a "name" (a non-empty string), {example}.')
    event_id = event.get("id")
    if event_id is None:
        event_id = default_id or new_event_id()
    elif not isinstance(event_id, str) or not event_id:
        raise PayloadError(f"An event id must be a non-empty string, got {event_id!r}.")
    source = event.get("source")
    if source is None:
        source = DEFAULT_SOURCE
    elif not isinstance(source, str) or not source:
        raise PayloadError(f"An event source must be a non-empty string, got {source!r}.")
    payload = event.get("payload")
    return {
        "id": event_id,
        "name": name,
        "source": source,
        "payload": {} if payload is None else _json_value(payload, "payload"),
        "context": None
        if event.get("context") is None
        else _json_value(event["context"], "context"),
        "timestamp": _timestamp(event.get("timestamp"), now),
    }


def delivery_time(deliver_at: Any, deliver_after: Any, now: float) -> float:
    """When to deliver: ``deliver_at`` (datetime or epoch) wins over ``deliver_after``
    (seconds from now, v2 §5.9); neither means now. Raises :class:`PayloadError` (they are
    part of what is sent: a ``400`` at the receiver) for a value that is no date or duration."""
    if deliver_at is not None:
        return epoch(deliver_at, "deliver_at", error=PayloadError)
    if deliver_after is not None:
        return now + seconds(deliver_after, "deliver_after", error=PayloadError)
    return now


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat()


def event_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a waiter and ``ctx.event`` get: ``{id, name, source, payload, context, timestamp}``."""
    return {
        key: record.get(key) for key in ("id", "name", "source", "payload", "context", "timestamp")
    }


def public_event(record: Mapping[str, Any]) -> dict[str, Any]:
    """The event as the API returns it (v2 ``ApiEventLog`` in snake_case; times as ISO)."""
    return {
        **event_view(record),
        "deliver_at": iso(record.get("deliver_at")),
        "delivered_at": iso(record.get("delivered_at")),
        "cancelled_at": iso(record.get("cancelled_at")),
        "created_at": iso(record.get("created_at")),
        "updated_at": iso(record.get("updated_at")),
        "runs": list(record.get("runs") or []),
        "resumed": list(record.get("resumed") or []),
    }


def event_state(record: Mapping[str, Any]) -> str:
    if record.get("cancelled_at") is not None:
        return "canceled"
    if record.get("delivered_at") is not None:
        return "delivered"
    return "pending"


# -- the event log --------------------------------------------------------------------------------


class EventLog:
    """Events of one store. Thread-safe: every multi-record change is one store transaction.

    Collaborators, handed over by the composition root: ``repo`` (the store's records),
    ``jobs`` (the jobs defined in this process, a live mapping), ``resolve_task`` (completes a
    waiting task: :data:`ResolveTask`), and three thread-safe timer hooks of the scheduler —
    ``arm_event(event_id, due)`` (deliver later), ``disarm_event(event_id)`` (a canceled
    delivery) and ``start_queued()`` (runs were queued: start those of defined jobs).
    """

    def __init__(
        self,
        repo: Repository,
        jobs: Mapping[str, JobDefinition],
        *,
        resolve_task: ResolveTask,
        arm_event: Callable[[str, float], None],
        disarm_event: Callable[[str], None],
        start_queued: Callable[[], None],
    ) -> None:
        self._repo = repo
        self._store = repo.store
        self._jobs = jobs
        self._resolve_task = resolve_task
        self._arm_event = arm_event
        self._disarm_event = disarm_event
        self._start_queued = start_queued

    # -- sending, reading, canceling ------------------------------------------------------
    def send(
        self,
        event: Any,
        *,
        deliver_at: Any = None,
        deliver_after: Any = None,
        default_id: str | None = None,
    ) -> dict[str, Any]:
        """Store ``event`` and deliver it now or when due; returns :func:`public_event`.

        Idempotent by id (v2 §5.9): an existing id is updated (payload, context, delivery
        time) only while its delivery is at least 5 s away — the debounce case; otherwise the
        stored event is returned unchanged and is not delivered again.
        """
        now = time.time()
        fields = normalize_event(event, now=now, default_id=default_id)
        due = delivery_time(deliver_at, deliver_after, now)
        store = self._store
        key = EVENT_PREFIX + fields["id"]
        with store.transaction():
            record = store.get(key)
            if record is None:
                record = {
                    **fields,
                    "deliver_at": due,
                    "delivered_at": None,
                    "cancelled_at": None,
                    "created_at": now,
                    "updated_at": now,
                    "runs": [],
                    "resumed": [],
                }
            elif (
                record.get("delivered_at") is None
                and record.get("cancelled_at") is None
                and record["deliver_at"] >= now + DEBOUNCE_SECONDS
            ):
                record.update(
                    payload=fields["payload"],
                    context=fields["context"],
                    deliver_at=due,
                    updated_at=now,
                )
            else:
                return public_event(record)
            store.put(key, record)
            store.put(PENDING_PREFIX + fields["id"], {"deliver_at": due})
            if due > now:
                store.notify("event")  # every process arms a timer; the first to fire delivers
        if due <= now:
            delivered = self.deliver(fields["id"])
            if delivered is not None:
                record = delivered
        else:
            self._arm_event(fields["id"], due)
        return public_event(record)

    def get(self, event_id: str) -> dict[str, Any] | None:
        """The event with the runs it started (``{id, job_id, status, started_at,
        completed_at}`` each), or ``None`` if there is no such event."""
        record = self._store.get(EVENT_PREFIX + str(event_id))
        if record is None:
            return None
        view = public_event(record)
        runs = []
        for run_id in view["runs"]:
            run = self._repo.load_run(run_id)
            if run is not None:
                runs.append(
                    {
                        "id": run_id,
                        "job_id": run["job_id"],
                        "status": run["status"],
                        "started_at": iso(run.get("started_at")),
                        "completed_at": iso(run.get("completed_at")),
                    }
                )
        view["runs"] = runs
        return view

    def cancel(self, event_id: str) -> dict[str, Any] | None:
        """Cancel a pending delivery (v2 §5.9). Idempotent; an event already delivered is
        returned unchanged. Returns :func:`public_event`, or ``None`` for an unknown id."""
        store = self._store
        key = EVENT_PREFIX + str(event_id)
        with store.transaction():
            record = store.get(key)
            if record is None:
                return None
            if record.get("delivered_at") is None and record.get("cancelled_at") is None:
                record["cancelled_at"] = record["updated_at"] = time.time()
                store.put(key, record)
                store.delete(PENDING_PREFIX + str(event_id))
        self._disarm_event(str(event_id))
        return public_event(record)

    def list_events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Stored events (raw records), newest first, optionally only those named ``name``."""
        records = [
            r for _, r in self._store.scan(EVENT_PREFIX) if name is None or r.get("name") == name
        ]
        records.sort(key=lambda r: r.get("created_at", 0), reverse=True)
        return records

    def pending(self) -> list[tuple[str, float]]:
        """``(event id, deliver_at)`` of every event not yet delivered nor canceled."""
        return [
            (key[len(PENDING_PREFIX) :], rec["deliver_at"])
            for key, rec in self._store.scan(PENDING_PREFIX)
        ]

    # -- delivery -------------------------------------------------------------------------
    def deliver(self, event_id: str) -> dict[str, Any] | None:
        """Deliver the event if it is due and was neither delivered nor canceled (else do
        nothing); returns the stored record. Safe to call from any thread and process,
        any number of times: the store transaction lets exactly one call deliver."""
        store = self._store
        key = EVENT_PREFIX + event_id
        now = time.time()
        queued: list[str] = []
        with store.transaction():
            record = store.get(key)
            if (
                record is None
                or record.get("delivered_at") is not None
                or record.get("cancelled_at") is not None
            ):
                store.delete(PENDING_PREFIX + event_id)
                return record
            if record["deliver_at"] > now:
                return record  # not due (re-sent with a later time): its timer delivers it
            record["delivered_at"] = now
            view = event_view(record)
            for job_id, (job, rule) in self._event_rules().items():
                if not event_matches(rule, record):
                    continue
                run_id = trigger_run_id(job_id, "event", event_id)
                if self._repo.load_run(run_id) is None:
                    self._repo.save_run(
                        new_run_record(run_id, job, record["payload"], event=view)
                    )
                    queue_run(store, run_id, job_id)
                    queued.append(run_id)
                if run_id not in record["runs"]:
                    record["runs"].append(run_id)
            store.put(key, record)
            store.delete(PENDING_PREFIX + event_id)
        resumed = self._resolve_waiters(record)
        if resumed:
            with store.transaction():
                stored = store.get(key) or record
                stored["resumed"] = [*stored.get("resumed", []), *resumed]
                store.put(key, stored)
                record = stored
        if queued:
            self._start_queued()
        return record

    def _event_rules(self) -> dict[str, tuple[JobDefinition, dict[str, Any]]]:
        """job id → (what ``new_run_record`` needs of the job, its rule): the stored rules,
        overridden by the jobs defined in this process (their definition is the newest)."""
        rules: dict[str, tuple[JobDefinition, dict[str, Any]]] = {}
        for _, entry in self._store.scan(TRIGGER_PREFIX):
            meta = job_meta(entry["job_id"], entry.get("name"), entry.get("version"))
            rules[entry["job_id"]] = (meta, entry["rule"])
        for job in list(self._jobs.values()):
            if isinstance(job.trigger, EventTrigger):
                rules[job.id] = (job, job.trigger.rule())
        return rules

    # -- event-triggered jobs ---------------------------------------------------------------
    def job_defined(self, job: JobDefinition) -> None:
        """Store (or drop) the job's event rule so that every process delivers to it."""
        store = self._store
        key = TRIGGER_PREFIX + job.id
        if isinstance(job.trigger, EventTrigger):
            store.put(
                key,
                {
                    "job_id": job.id,
                    "name": job.name,
                    "version": job.version,
                    "rule": job.trigger.rule(),
                    "defined_at": time.time(),
                },
            )
        elif store.get(key) is not None:
            store.delete(key)

    # -- waiters (wait_for_event) -----------------------------------------------------------
    def register_waiter(
        self, task: Mapping[str, Any], rule: Mapping[str, Any], *, lookback_seconds: float
    ) -> None:
        """Record a waiting ``wait_for_event`` task (idempotent), then resolve it at once with
        the first matching event delivered since the wait began (minus ``lookback_seconds``):
        that closes the gap between storing the task and registering it, and is the lookback.
        """
        store = self._store
        key = WAITER_PREFIX + task["id"]
        since = task["started_at"] - lookback_seconds
        entry = {
            **rule,
            "task_id": task["id"],
            "run_id": task["run_id"],
            "idempotency_key": task["idempotency_key"],
            "since": since,
            "timeout_at": task.get("external_timeout_at"),
        }
        with store.transaction():
            stored = store.get(key)
            # Kept as is on replays (its registration time orders the waiters); replaced when
            # the wait was armed again (a manual retry gives it a new start and timeout).
            if stored is None or {k: stored.get(k) for k in entry} != entry:
                store.put(key, {**entry, "registered_at": time.time()})
        candidates = [
            record
            for _, record in store.scan(EVENT_PREFIX)
            if record.get("delivered_at") is not None
            and record["delivered_at"] >= since
            and event_matches(rule, record)
        ]
        if candidates:
            first = min(candidates, key=lambda r: r["delivered_at"])
            if self._resolve(entry, first) != "vetoed":
                store.delete(key)

    def _resolve_waiters(self, record: dict[str, Any]) -> list[str]:
        """Complete every registered waiter the delivered ``record`` matches; returns the
        ids of the runs resumed."""
        store = self._store
        resumed = []
        waiters = sorted(store.scan(WAITER_PREFIX), key=lambda kv: kv[1].get("registered_at", 0))
        for key, waiter in waiters:
            if waiter.get("since", 0) > record["delivered_at"] or not event_matches(waiter, record):
                continue
            outcome = self._resolve(waiter, record)
            if outcome == "accepted":
                resumed.append(waiter["run_id"])
            store.delete(key)  # resolved now, or already resolved / timed out / forgotten
        return resumed

    def _resolve(self, waiter: Mapping[str, Any], record: Mapping[str, Any]) -> str:
        def check(task: dict[str, Any]) -> str | None:
            timeout_at = task.get("external_timeout_at")
            if (
                task["status"] == TaskStatus.WAITING
                and timeout_at is not None
                and timeout_at <= time.time()
            ):
                return "timed_out"  # its run's timer fails it (v2: the dispatcher expired)
            return None

        try:
            return self._resolve_task(
                waiter["run_id"],
                waiter["idempotency_key"],
                output=event_view(record),
                pending_flag="external_pending",
                resolved_by="event",
                check=check,
            )
        except Exception:  # one broken waiter must not stop the delivery to the others
            log.exception(
                "trigger_nb: delivering event %s to run %s failed",
                record.get("id"),
                waiter.get("run_id"),
            )
            return "vetoed"


# -- queued runs (runs created by triggers, started by the process defining their job) --------


def queue_run(store: Any, run_id: str, job_id: str, *, claimed_by: str | None = None) -> None:
    """Mark ``run_id`` to be started by the process that defines ``job_id``."""
    store.put(
        START_PREFIX + run_id,
        {
            "job_id": job_id,
            "claimed_by": claimed_by,
            "claimed_at": time.time() if claimed_by else None,
        },
    )
    if claimed_by is None:  # claimed: its own process starts it
        store.notify("start")


def claim_queued_runs(store: Any, holder: str, job_ids: set[str]) -> list[tuple[str, str]]:
    """Claim the queued runs of ``job_ids`` that nobody is starting; ``[(run_id, job_id)]``.

    A marker whose run is no longer QUEUED (it was executed) is removed; one claimed by a
    process that did not start the run within :data:`CLAIM_TTL` is taken over.
    """
    claimed: list[tuple[str, str]] = []
    now = time.time()
    entries = store.scan(START_PREFIX)
    if not entries:
        return claimed
    with store.transaction():
        for key, marker in entries:
            if marker.get("job_id") not in job_ids:
                continue
            marker = store.get(key)
            if marker is None:
                continue
            run_id = key[len(START_PREFIX) :]
            run = store.get(f"run/{run_id}")
            if run is None or run.get("status") != "QUEUED":
                store.delete(key)
                continue
            if marker.get("claimed_by") and (marker.get("claimed_at") or 0) > now - CLAIM_TTL:
                continue
            marker.update(claimed_by=holder, claimed_at=now)
            store.put(key, marker)
            claimed.append((run_id, marker["job_id"]))
    return claimed


def release_queued_run(store: Any, run_id: str) -> None:
    store.delete(START_PREFIX + run_id)
