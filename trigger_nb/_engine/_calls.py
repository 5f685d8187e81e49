"""What a task's function is given and how it is called (SPEC §4.6; v2 ``ServerTask``).

``TaskHandle`` is the ``task`` argument; :func:`calling_convention` says how many of
``(task, io)`` a function takes and whether it is a coroutine function. Sync functions then go
to a worker thread (``_threads``).
"""

from __future__ import annotations

import datetime as _dt
import inspect
from collections.abc import Callable
from typing import Any


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


_ARITY_CACHE: dict[Any, tuple[int, bool]] = {}


def calling_convention(fn: Callable[..., Any]) -> tuple[int, bool]:
    """(how many of ``task, io`` to pass, is it a coroutine function), cached per code object."""
    code = getattr(fn, "__code__", None) or type(fn)
    cached = _ARITY_CACHE.get(code)
    if cached is not None:
        return cached
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        arity = 2
    else:
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            arity = 2
        else:
            arity = min(
                2, sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
            )
    target = fn.__call__ if not inspect.isroutine(fn) and callable(fn) else fn  # type: ignore[operator]
    result = (arity, inspect.iscoroutinefunction(target))
    if len(_ARITY_CACHE) < 4096:
        _ARITY_CACHE[code] = result
    return result
