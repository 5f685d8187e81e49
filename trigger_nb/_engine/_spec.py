"""What a task is to the code around the engine: the :class:`TaskSpec` an ``io`` method hands
to :meth:`Execution.run_task`, and the :class:`TaskHandle` a task's function receives."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskSpec:
    """What an ``io`` method asks the engine to do: one task, fully described."""

    cache_key: Any
    fn: Callable[..., Any] | None = None
    name: str = "Task"
    icon: str | None = None
    description: str | None = None
    display_key: str | None = None
    properties: list[dict[str, Any]] | None = None
    params: Any = None
    style: dict[str, Any] | None = None
    redact: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None
    delay_until: float | None = None
    callback: dict[str, Any] | None = None
    parse_output: Callable[[Any], Any] | None = None
    serializer: str | None = None
    on_error: Callable[..., Any] | None = None
    #: The user's function (not the library's): its code fingerprint is stored with the task.
    user_fn: Callable[..., Any] | None = None
    noop: bool = False
    kind: str = "task"
    #: For callback tasks: replaces the function call with ``fn(url)`` (wait_for_request).
    pass_url_only: bool = False
    #: A background operation (fetch, poll): ``async operation(ctx) -> output`` runs on the
    #: home loop while the task WAITS; its result completes the task like a callback POST.
    operation: Callable[[Any], Any] | None = None
    #: An external wait: ``{"timeout_in_seconds": float, "register": fn(record)}``. The task
    #: WAITS (``external_pending``) until someone calls ``Runner.resolve_task(...,
    #: pending_flag="external_pending")``; ``register`` is called on every execution that
    #: reaches the waiting task (idempotent: it may resolve at once, e.g. an event lookback).
    external: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TaskHandle:
    """The ``task`` object handed to callbacks (SPEC §4.6; v2 ``ServerTask``).

    ``output_properties`` is writable: set it to a list of ``{"label", "text"}`` to show them
    in the log next to the output.
    """

    def __init__(self, record: dict[str, Any]) -> None:
        self._record = record
        self.output_properties: list[dict[str, Any]] | None = record.get("output_properties")

    id = property(lambda self: self._record["id"])
    idempotency_key = property(lambda self: self._record["idempotency_key"])
    attempts = property(lambda self: self._record["attempts"])
    callback_url = property(lambda self: self._record.get("callback_url"))
    name = property(lambda self: self._record["name"])
    status = property(lambda self: self._record["status"])
    params = property(lambda self: self._record.get("params"))
    parent_id = property(lambda self: self._record.get("parent_id"))
    cache_key = property(lambda self: self._record.get("cache_key"))

    @property
    def started_at(self) -> _dt.datetime | None:
        ts = self._record.get("started_at")
        return None if ts is None else _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)

    def __repr__(self) -> str:
        return f"<task {self.name!r} key={self._record['display_key']!r} attempt={self.attempts}>"
