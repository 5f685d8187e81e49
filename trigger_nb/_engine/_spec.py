"""``TaskSpec``: what an ``io`` method asks the engine to do — the contract between ``_io`` and
the engine's :class:`~trigger_nb._engine._execution.Execution`."""

from __future__ import annotations

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
