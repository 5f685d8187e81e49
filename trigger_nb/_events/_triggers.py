"""Triggers: what starts a job's runs (SPEC §2 ``--on/--every/--cron``, §3; v2 §6.2).

* :func:`event_trigger` — each matching event (SPEC §6.9, ``POST /events``) starts a run whose
  payload is the event's payload;
* :func:`interval_trigger` / :func:`cron_trigger` — scheduled runs while the kernel lives,
  payload ``{"ts": ISO, "last_timestamp": ISO | None}``;
* :func:`invoke_trigger` — runs start only when invoked (the default).

Triggers are frozen values, validated when they are built, so a malformed filter or cron
expression is reported where the job is defined (SPEC §7), never at delivery. The rule an event
trigger applies is also a plain JSON dict (:meth:`EventTrigger.rule`): it is stored, so that a
process that does not define the job (``trigger-nb serve``) can still decide which runs an event
starts. :func:`event_matches` applies such a rule; ``wait_for_event`` waiters use it too.

Deliberate deviations from v2 (SPEC §12):

* no ``source`` means *any* source (v2 required ``"trigger.dev"`` on triggers and waits);
* ``interval_trigger`` accepts any interval of at least 1 s (v2's 20 s minimum and 30-day
  maximum were limits of its hosted platform, not of the model);
* cron expressions are exactly 5 fields and always UTC, as v2; they are checked with croniter.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import ConfigError
from .._numbers import MAX_SECONDS, is_real
from ._filters import event_filter_matches, validate_event_filter

__all__ = [
    "CronTrigger",
    "EventTrigger",
    "IntervalTrigger",
    "InvokeTrigger",
    "apply_schema",
    "cron_trigger",
    "event_matches",
    "event_rule",
    "event_trigger",
    "interval_trigger",
    "invoke_trigger",
]


def _names(name: Any, *, where: str) -> tuple[str, ...]:
    if isinstance(name, str):
        names: tuple[Any, ...] = (name,)
    elif isinstance(name, (list, tuple)) and name:
        names = tuple(name)
    else:
        raise ConfigError(
            f"{where}: the event name must be a string or a non-empty list of strings, got "
            f'{name!r}. Example: event_trigger(name="issue.opened").'
        )
    for item in names:
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{where}: event names must be non-empty strings, got {item!r}.")
    return names


def event_rule(
    name: Any,
    *,
    filter: Any = None,
    source: Any = None,
    context_filter: Any = None,
    where: str = "event_trigger",
) -> dict[str, Any]:
    """Validate and return the JSON rule ``{"names", "source", "filter", "context_filter"}``.

    Raises :class:`ConfigError` for a bad name or source and
    :class:`~trigger_nb.EventFilterError` for a malformed filter (SPEC §7).
    """
    names = _names(name, where=where)
    if source is not None and (not isinstance(source, str) or not source):
        raise ConfigError(
            f"{where}: source must be a non-empty string or None (any source), got {source!r}."
        )
    if filter is not None:
        validate_event_filter(filter, where="filter")
    if context_filter is not None:
        validate_event_filter(context_filter, where="context_filter")
    return {
        "names": list(names),
        "source": source,
        "filter": filter,
        "context_filter": context_filter,
    }


def event_matches(rule: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether ``event`` (a stored event record) satisfies ``rule`` (see :func:`event_rule`).

    The name must be one of ``rule["names"]`` exactly; the source must equal ``rule["source"]``
    unless that is ``None`` (any source: a deliberate fix of v2); ``filter`` is matched against
    the payload and ``context_filter`` against the context with v2's EventFilter rules.
    """
    if event.get("name") not in rule["names"]:
        return False
    source = rule.get("source")
    if source is not None and event.get("source") != source:
        return False
    if rule.get("filter") is not None and not event_filter_matches(
        event.get("payload"), rule["filter"]
    ):
        return False
    context_filter = rule.get("context_filter")
    return context_filter is None or event_filter_matches(event.get("context"), context_filter)


@dataclass(frozen=True)
class EventTrigger:
    """Runs start when a matching event is sent (v2 ``eventTrigger``). Build with
    :func:`event_trigger`."""

    name: str | tuple[str, ...]
    filter: dict[str, Any] | None = field(default=None, hash=False)
    source: str | None = None
    schema: Callable[[Any], Any] | None = field(default=None, compare=False)
    context_filter: dict[str, Any] | None = field(default=None, hash=False)

    kind = "event"

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,) if isinstance(self.name, str) else self.name

    def rule(self) -> dict[str, Any]:
        """The JSON rule stored for other processes (see :func:`event_matches`)."""
        return {
            "names": list(self.names),
            "source": self.source,
            "filter": self.filter,
            "context_filter": self.context_filter,
        }

    def matches(self, event: Mapping[str, Any]) -> bool:
        return event_matches(self.rule(), event)

    def describe(self) -> str:
        names = " | ".join(self.names)
        parts = [f"on event {names}"]
        parts.append(f"source {self.source}" if self.source else "any source")
        if self.filter:
            parts.append(f"filter {_compact(self.filter)}")
        if self.context_filter:
            parts.append(f"context filter {_compact(self.context_filter)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class IntervalTrigger:
    """A run every ``seconds`` while the kernel lives (v2 ``intervalTrigger``)."""

    seconds: float

    kind = "interval"

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "seconds": self.seconds}

    def next_after(self, due: float, now: float) -> float:
        """The first slot on this interval's grid (anchored at ``due``) later than ``now``.

        Missed slots are skipped, not replayed in a burst: after a long blocking cell the
        schedule runs once, late, then keeps its rhythm.
        """
        if due > now:
            return due
        steps = math.floor((now - due) / self.seconds) + 1
        return due + steps * self.seconds

    def first_due(self, now: float) -> float:
        return now + self.seconds

    def describe(self) -> str:
        return f"every {self.seconds:g} s"


@dataclass(frozen=True)
class CronTrigger:
    """Runs at the times of a 5-field cron expression, in UTC (v2 ``cronTrigger``)."""

    cron: str

    kind = "cron"

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "cron": self.cron}

    def _next(self, after: float) -> float:
        from croniter import croniter

        start = _dt.datetime.fromtimestamp(after, _dt.timezone.utc)
        return float(croniter(self.cron, start).get_next(float))

    def next_after(self, due: float, now: float) -> float:
        return self._next(max(due, now))

    def first_due(self, now: float) -> float:
        return self._next(now)

    def describe(self) -> str:
        return f"cron {self.cron} (UTC)"


@dataclass(frozen=True)
class InvokeTrigger:
    """Runs start only when invoked (``client.invoke``, a ``%%job`` cell): v2 ``invokeTrigger``."""

    schema: Callable[[Any], Any] | None = field(default=None, compare=False)

    kind = "invoke"

    def describe(self) -> str:
        return "on invoke"


ScheduleTrigger = IntervalTrigger | CronTrigger


def event_trigger(
    name: str | list[str],
    *,
    filter: dict[str, Any] | None = None,
    source: str | None = None,
    schema: Callable[[Any], Any] | None = None,
    context_filter: dict[str, Any] | None = None,
) -> EventTrigger:
    """A trigger that starts a run for each matching event (SPEC §2 ``--on``, v2 §6.2).

    ``name``: an event name or a list of names (exact, case-sensitive). ``filter``: an
    EventFilter on the payload (SPEC §7); ``context_filter`` the same on the event's context.
    ``source``: only events with exactly this source; ``None`` (default) accepts any source.
    ``schema``: a callable applied to the payload before the run starts (e.g.
    ``MyModel.model_validate``); its result, when JSON, becomes the run's payload; if it raises,
    the run fails with ``PayloadError`` without running the body.

    Raises :class:`~trigger_nb.EventFilterError` for a malformed filter and
    :class:`~trigger_nb.ConfigError` for a bad name, source or schema.
    """
    rule = event_rule(name, filter=filter, source=source, context_filter=context_filter)
    if schema is not None and not callable(schema):
        raise ConfigError(
            f"event_trigger: schema must be callable (e.g. MyModel.model_validate), got {schema!r}."
        )
    names = rule["names"]
    return EventTrigger(
        name=names[0] if isinstance(name, str) else tuple(names),
        filter=filter,
        source=source,
        schema=schema,
        context_filter=context_filter,
    )


def interval_trigger(seconds: float) -> IntervalTrigger:
    """A run every ``seconds`` (≥ 1) while the kernel lives (SPEC §2 ``--every``).

    The first run is one interval after the job is defined; re-defining the job keeps the
    rhythm. Raises :class:`~trigger_nb.ConfigError` for anything but a number ≥ 1.
    """
    if not is_real(seconds) or not (1 <= seconds <= MAX_SECONDS):  # also false for NaN
        raise ConfigError(
            f"interval_trigger(seconds=...) needs a number of seconds from 1 to {MAX_SECONDS:g}, "
            f"got {seconds!r}."
        )
    return IntervalTrigger(
        seconds=float(seconds) if not float(seconds).is_integer() else int(seconds)
    )


def cron_trigger(cron: str) -> CronTrigger:
    """Runs at the times of a standard 5-field cron expression, in UTC (SPEC §2 ``--cron``).

    Raises :class:`~trigger_nb.ConfigError` (with an example) for anything else.
    """
    example = 'Example: cron_trigger("*/5 * * * *") runs every 5 minutes (UTC).'
    if not isinstance(cron, str):
        raise ConfigError(f"A cron expression must be a string, got {cron!r}. {example}")
    expression = " ".join(cron.split())
    fields = expression.split(" ") if expression else []
    if len(fields) != 5:
        raise ConfigError(
            f"A cron expression needs exactly 5 fields (minute hour day-of-month month "
            f"day-of-week), got {len(fields)} in {cron!r}. {example}"
        )
    from croniter import croniter

    if not croniter.is_valid(expression):
        raise ConfigError(f"{cron!r} is not a valid cron expression. {example}")
    return CronTrigger(cron=expression)


def invoke_trigger(schema: Callable[[Any], Any] | None = None) -> InvokeTrigger:
    """The default trigger: runs start only when invoked (v2 ``invokeTrigger``)."""
    if schema is not None and not callable(schema):
        raise ConfigError(f"invoke_trigger: schema must be callable, got {schema!r}.")
    return InvokeTrigger(schema=schema)


TRIGGER_TYPES = (EventTrigger, IntervalTrigger, CronTrigger, InvokeTrigger)


def apply_schema(schema: Callable[[Any], Any], value: Any) -> Any:
    """Parse ``value`` with a user's schema: a pydantic-style model class (``model_validate``)
    or any callable that returns the parsed value and raises when it does not fit."""
    validate = getattr(schema, "model_validate", None)
    return validate(value) if callable(validate) else schema(value)


def check_trigger(trigger: Any, job_id: str) -> None:
    """Raise :class:`ConfigError` unless ``trigger`` is ``None`` or one of ours."""
    if trigger is not None and not isinstance(trigger, TRIGGER_TYPES):
        raise ConfigError(
            f"Job {job_id!r}: trigger must come from event_trigger(), interval_trigger(), "
            f"cron_trigger() or invoke_trigger(), got {trigger!r}."
        )


def _compact(value: Any) -> str:
    import json

    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= 80 else text[:77] + "..."
