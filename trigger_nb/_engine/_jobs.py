"""Jobs and what a run starts from: the job definition, a new run record, the ``ctx`` object."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from ._states import RunStatus, advance_run


@dataclass
class JobDefinition:
    """A job: its id (slugified), display name, version, body and options."""

    id: str
    fn: Callable[..., Any]
    name: str = ""
    version: str = "0.0.1"
    trigger: Any = None
    log_level: str = "info"
    serializer: str = "json"
    options: dict[str, Any] = field(default_factory=dict)


def _datetime(ts: float | None) -> _dt.datetime | None:
    return None if ts is None else _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)


def _parse_iso(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


def make_context(job: JobDefinition, run: dict[str, Any], execution: int) -> SimpleNamespace:
    """The ``ctx`` argument of a job body (SPEC §2, v2 §6.3 in snake_case)."""
    event = run.get("event")
    event_ns = None
    if event:
        event_ns = SimpleNamespace(
            id=event.get("id"),
            name=event.get("name"),
            payload=event.get("payload"),
            context=event.get("context"),
            timestamp=_parse_iso(event.get("timestamp")),  # a datetime, as v2's Date
        )
    return SimpleNamespace(
        job=SimpleNamespace(id=job.id, version=job.version, name=job.name),
        run=SimpleNamespace(
            id=run["id"],
            started_at=_datetime(run.get("started_at")),
            is_retry=bool(run.get("is_retry")),
            execution=execution,
        ),
        event=event_ns,
    )


def new_run_record(
    run_id: str, job: JobDefinition, payload: Any, *, event: dict[str, Any] | None = None
) -> dict[str, Any]:
    now = time.time()
    record: dict[str, Any] = {
        "id": run_id,
        "job_id": job.id,
        "job_name": job.name,
        "job_version": job.version,
        "payload": payload,
        "status": None,
        "output_json": None,
        "error": None,
        "executions": 0,
        "created_at": now,
        "started_at": None,
        "updated_at": now,
        "completed_at": None,
        "is_retry": False,
        "wake_at": None,
        "event": event,
        "history": [],
    }
    advance_run(record, RunStatus.QUEUED)
    return record
