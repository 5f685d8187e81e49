"""Text views of durable events: what ``%job send`` and ``%job events`` print."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .._events._eventlog import event_state


def sent_summary(event: Mapping[str, Any]) -> str:
    """One line about an event just sent (a :func:`public_event`)."""
    state = (
        "canceled"
        if event.get("cancelled_at")
        else "delivered"
        if event.get("delivered_at")
        else (f"to be delivered at {event.get('deliver_at')}")
    )
    runs = event.get("runs") or []
    started = f"; started {len(runs)} run(s): {', '.join(runs)}" if runs else "; no job matched"
    resumed = event.get("resumed") or []
    woke = f"; resumed {len(resumed)} waiting run(s)" if resumed else ""
    return f"Event {event['id']} ({event['name']}, source {event.get('source')}): {state}" + (
        started + woke if event.get("delivered_at") else ""
    )


def events_table(records: list[dict[str, Any]]) -> str:
    """A text table of stored events, newest first (``%job events``)."""
    if not records:
        return "No events."
    header = f"{'event id':<32} {'name':<24} {'source':<14} {'state':<10} {'sent':<19} runs"
    lines = [header, "-" * len(header)]
    for record in records:
        sent = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("created_at", 0)))
        state = event_state(record)
        if state == "pending":
            state = f"due {max(0.0, record['deliver_at'] - time.time()):.0f}s"
        runs = ", ".join(record.get("runs") or []) or "-"
        if record.get("resumed"):
            runs += f" (+{len(record['resumed'])} resumed)"
        lines.append(
            f"{record['id']:<32} {record['name']:<24} {record.get('source', ''):<14} {state:<10} {sent:<19} {runs}"
        )
    return "\n".join(lines)
