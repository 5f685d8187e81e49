"""``io`` methods for events (SPEC §6.4, §6.9; v2 §5.3, §5.9): every one is a task.

Sending, reading and canceling events are ordinary tasks whose function calls the client's
event log, so their results are pinned at the first execution like any task. ``wait_for_event``
is an *external* wait: the task WAITS until the event log resolves it with the first matching
event delivered after the wait began (or up to ``lookback_seconds`` before), or errors with
:class:`~trigger_nb.CallbackTimeoutError` at its timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .._engine import Execution, TaskSpec
from .._events._eventlog import EventLog, normalize_event
from .._events._triggers import apply_schema, event_rule
from .._exceptions import ConfigError, PayloadError
from .._numbers import seconds as _seconds
from .._serde import epoch_seconds
from ._core import _check_cache_key

_WAIT_KEYS = ("name", "filter", "source", "context_filter", "schema")


def _event_id_for(task: Any, index: int | None = None) -> str:
    """Default event id inside a task: derived from its idempotency key, so a task that runs
    again (after a crash, at least once) re-sends the *same* event and is deduplicated."""
    base = "evt_" + str(task.idempotency_key)[:24]
    return base if index is None else f"{base}_{index}"


def _send_params(
    event: Any, deliver_at: Any, deliver_after: Any
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    normalize_event(event, now=time.time(), default_id="-")  # PayloadError now: nothing stored
    # Delivery options are part of the event sent (the receiver's 400), hence PayloadError.
    when = epoch_seconds(deliver_at, "deliver_at", error=PayloadError)
    if deliver_after is not None:
        _seconds(deliver_after, "deliver_after", error=PayloadError)
    properties = [{"label": "name", "text": event["name"]}]
    if event.get("id"):
        properties.append({"label": "ID", "text": str(event["id"])})
    if when is not None or deliver_after is not None:
        properties.append(
            {
                "label": "deliver",
                "text": f"at {when}" if when is not None else f"after {deliver_after} s",
            }
        )
    return {"event": dict(event), "deliver_at": when, "deliver_after": deliver_after}, properties


class EventsIO:
    """``send_event``, ``send_events``, ``get_event``, ``cancel_event``, ``wait_for_event``."""

    _execution: Execution
    _event_log: EventLog

    async def send_event(
        self,
        key: Any,
        event: Mapping[str, Any],
        *,
        deliver_at: Any = None,
        deliver_after: float | None = None,
    ) -> dict[str, Any]:
        """Send ``event`` (``{"name", "payload", "context", "id", "timestamp", "source"}``) as a
        task; returns the stored event (v2 ``ApiEventLog``, times as ISO strings).

        ``deliver_at`` (datetime or epoch) wins over ``deliver_after`` (seconds). Without an
        ``id`` the event gets one derived from this task, so it is sent at most once. Raises
        ``PayloadError`` (nothing stored) for a malformed event.
        """
        _check_cache_key(key)
        params, properties = _send_params(event, deliver_at, deliver_after)
        events = self._event_log

        def send(task: Any) -> Any:
            return events.send(
                event,
                deliver_at=deliver_at,
                deliver_after=deliver_after,
                default_id=_event_id_for(task),
            )

        return await self._execution.run_task(
            TaskSpec(
                cache_key=key,
                fn=send,
                name="Send Event",
                icon="send",
                params=params,
                properties=properties,
                kind="send_event",
            )
        )

    async def send_events(
        self,
        key: Any,
        events: list[Mapping[str, Any]],
        *,
        deliver_at: Any = None,
        deliver_after: float | None = None,
    ) -> list[dict[str, Any]]:
        """Send several events in one task; returns the stored events in order."""
        _check_cache_key(key)
        if not isinstance(events, (list, tuple)):
            raise PayloadError(f"io.send_events({key!r}, events): events must be a list of events.")
        for event in events:
            _send_params(event, deliver_at, deliver_after)
        log = self._event_log

        def send(task: Any) -> Any:
            return [
                log.send(
                    e,
                    deliver_at=deliver_at,
                    deliver_after=deliver_after,
                    default_id=_event_id_for(task, i),
                )
                for i, e in enumerate(events)
            ]

        return await self._execution.run_task(
            TaskSpec(
                cache_key=key,
                fn=send,
                name="Send Multiple Events",
                icon="send",
                params={
                    "events": [dict(e) for e in events],
                    "deliver_at": epoch_seconds(deliver_at, "deliver_at", error=PayloadError),
                    "deliver_after": deliver_after,
                },
                properties=[{"label": "Total Events", "text": str(len(events))}],
                kind="send_events",
            )
        )

    async def get_event(self, key: Any, id: str) -> dict[str, Any] | None:
        """The stored event ``id`` with the runs it started (``None`` if unknown), as a task."""
        _check_cache_key(key)
        log = self._event_log
        return await self._execution.run_task(
            TaskSpec(
                cache_key=key,
                fn=lambda: log.get(id),
                name="getEvent",
                params={"id": id},
                properties=[{"label": "id", "text": str(id)}],
                kind="get_event",
            )
        )

    async def cancel_event(self, key: Any, id: str) -> dict[str, Any] | None:
        """Cancel the delivery of event ``id`` if it has not happened yet (v2 §5.9), as a task."""
        _check_cache_key(key)
        log = self._event_log
        return await self._execution.run_task(
            TaskSpec(
                cache_key=key,
                fn=lambda: log.cancel(id),
                name="cancelEvent",
                params={"id": id},
                properties=[{"label": "id", "text": str(id)}],
                kind="cancel_event",
            )
        )

    async def wait_for_event(
        self,
        key: Any,
        event: Mapping[str, Any],
        *,
        timeout_in_seconds: float = 3600,
        lookback_seconds: float = 0,
    ) -> dict[str, Any]:
        """Suspend until a matching event is delivered; return ``{id, name, source, payload,
        context, timestamp}`` (SPEC §6.4, v2 §5.3).

        ``event``: ``{"name": str | list, "filter": EventFilter, "source": str | None,
        "context_filter": EventFilter, "schema": callable | None}``. No ``source`` matches any
        source. The first matching event wins. ``lookback_seconds > 0`` also matches an event
        delivered up to that long before the wait began. ``schema`` parses the payload on every
        execution; when it does not fit, the run fails with ``PayloadError``.

        Raises ``EventFilterError`` / ``ConfigError`` (nothing stored) for a malformed spec; the
        task errors with ``CallbackTimeoutError`` when no event came within the timeout.
        """
        _check_cache_key(key)
        if not isinstance(event, Mapping):
            raise ConfigError(
                'io.wait_for_event(key, event): event must be a dict like {"name": "order.paid"}.'
            )
        unknown = sorted(str(k) for k in event if k not in _WAIT_KEYS)
        if unknown:
            raise ConfigError(
                f"Unknown wait_for_event option(s) {unknown}; use {', '.join(_WAIT_KEYS)}."
            )
        rule = event_rule(
            event.get("name"),
            filter=event.get("filter"),
            source=event.get("source"),
            context_filter=event.get("context_filter"),
            where="wait_for_event",
        )
        schema = event.get("schema")
        if schema is not None and not callable(schema):
            raise ConfigError(
                f"wait_for_event: schema must be callable (e.g. MyModel.model_validate), got {schema!r}."
            )
        timeout = _seconds(timeout_in_seconds, "timeout_in_seconds", positive=True)
        lookback = _seconds(lookback_seconds, "lookback_seconds", positive=False)
        log = self._event_log

        def register(record: dict[str, Any]) -> None:
            log.register_waiter(record, rule, lookback_seconds=lookback)

        properties = [{"label": "event", "text": " | ".join(rule["names"])}]
        if rule["source"]:
            properties.append({"label": "source", "text": rule["source"]})
        return await self._execution.run_task(
            TaskSpec(
                cache_key=key,
                name="Wait for Event",
                icon="custom-event",
                params={**rule, "timeout_in_seconds": timeout, "lookback_seconds": lookback},
                properties=properties,
                external={
                    "timeout_in_seconds": timeout,
                    "register": register,
                    "timeout_message": (
                        f"Wait for Event timeout - no matching event {' | '.join(rule['names'])!r} "
                        f"received within {timeout:g} s"
                    ),
                },
                parse_output=None if schema is None else _payload_parser(schema, key),
                kind="wait_for_event",
            )
        )


def _payload_parser(schema: Callable[[Any], Any], key: Any) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        try:
            payload = apply_schema(schema, value.get("payload"))
        except Exception as exc:
            raise PayloadError(
                f"wait_for_event {key!r}: the payload of event {value.get('id')!r} does not fit "
                f"the schema ({type(exc).__name__}: {exc})."
            ) from exc
        return {**value, "payload": payload}

    return parse
