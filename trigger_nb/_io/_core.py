"""The core of ``io``: ``run_task`` and the primitives built directly on it (SPEC §6.1–6.3, §6.12)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._engine import Execution, JobDefinition, TaskSpec, is_control_flow
from .._exceptions import ConfigError
from .._numbers import seconds as _seconds
from .._serde import epoch_seconds
from ..retry import normalize_retry_options

if TYPE_CHECKING:
    from .._events._eventlog import EventLog


def _check_cache_key(key: Any) -> None:
    if isinstance(key, str):
        if not key:
            raise ConfigError("A task's cache key must not be empty, e.g. io.run_task('fetch-user', ...).")
        return
    if isinstance(key, (list, tuple)) and key:
        return
    raise ConfigError(
        f"A task's cache key must be a non-empty string or list, got {type(key).__name__}: {key!r}."
    )


def _callback_options(callback: Any) -> dict[str, Any] | None:
    if callback is None or callback is False:
        return None
    if callback is True:
        return {"enabled": True, "timeout_in_seconds": 3600}
    if not isinstance(callback, Mapping):
        raise ConfigError('callback must be a dict like {"enabled": True, "timeout_in_seconds": 3600}.')
    unknown = set(callback) - {"enabled", "timeout_in_seconds", "timeoutInSeconds"}
    if unknown:
        raise ConfigError(f"Unknown callback option(s) {sorted(unknown)}; use enabled, timeout_in_seconds.")
    if not callback.get("enabled", True):
        return None
    timeout = callback.get("timeout_in_seconds", callback.get("timeoutInSeconds", 3600))
    return {"enabled": True, "timeout_in_seconds": _seconds(timeout, "callback timeout_in_seconds", positive=True)}


class CoreIO:
    """``run_task`` and friends. Every method is a task (SPEC §6)."""

    def __init__(
        self, execution: Execution, job: JobDefinition, *, event_log: EventLog
    ) -> None:
        self._execution = execution
        self._job = job
        self._event_log = event_log

    @property
    def run_id(self) -> str:
        return self._execution.run_id

    async def run_task(
        self,
        key: Any,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        icon: str | None = None,
        description: str | None = None,
        display_key: str | None = None,
        properties: list[dict[str, Any]] | None = None,
        params: Any = None,
        style: dict[str, Any] | None = None,
        redact: dict[str, Any] | None = None,
        retry: Mapping[str, Any] | None = None,
        delay_until: Any = None,
        callback: Mapping[str, Any] | bool | None = None,
        parse_output: Callable[[Any], Any] | None = None,
        serializer: str | None = None,
        on_error: Callable[..., Any] | None = None,
    ) -> Any:
        """Run ``fn`` once as a task; on later executions return its stored output.

        ``fn`` may be sync or async and take 0, 1 (``task``) or 2 (``task, io``) arguments.
        Its return value is JSON round-tripped (also the first time) unless
        ``serializer="pickle"``. ``retry`` (v2 options) retries with backoff; ``on_error``
        may return an exception, ``{"retry_at": datetime}`` or ``{"skip_retrying": True}``.
        ``callback={"enabled": True, "timeout_in_seconds": N}`` gives ``task.callback_url``;
        the first JSON body POSTed to it becomes the output.

        Raises ``TaskError`` when the task fails for good, ``DuplicateTaskKeyError`` when
        ``key`` was already used under the same parent in this execution.
        """
        _check_cache_key(key)
        if not callable(fn):
            raise ConfigError(f"io.run_task({key!r}, fn): fn must be callable, got {type(fn).__name__}.")
        if serializer is not None and serializer not in ("json", "pickle"):
            raise ConfigError(f"serializer must be 'json' or 'pickle', got {serializer!r}.")
        spec = TaskSpec(
            cache_key=key,
            fn=fn,
            name=name or "Task",
            icon=icon,
            description=description,
            display_key=display_key,
            properties=properties,
            params=params,
            style=style,
            redact=redact,
            retry=normalize_retry_options(retry),
            delay_until=epoch_seconds(delay_until, "delay_until"),
            callback=_callback_options(callback),
            parse_output=parse_output,
            serializer=serializer,
            on_error=on_error,
            user_fn=fn,  # its code fingerprint: changed-code detection (SPEC §2)
        )
        return await self._execution.run_task(spec)

    async def wait(self, key: Any, seconds: float) -> None:
        """Suspend the run for ``seconds`` (fractions allowed; ``<= 0`` completes at once).

        The deadline is fixed at the first execution (v2 §5.1): replays do not extend it.
        """
        _check_cache_key(key)
        duration = _seconds(seconds, f"io.wait({key!r}, seconds): seconds", allow_negative=True)
        await self._execution.run_task(
            TaskSpec(
                cache_key=key,
                name="wait",
                icon="clock",
                params={"seconds": seconds},
                style={"style": "minimal"},
                delay_until=time.time() + duration if duration > 0 else None,
                noop=True,
                kind="wait",
            )
        )

    async def wait_for_request(
        self, key: Any, fn: Callable[[str], Any], *, timeout_in_seconds: float = 3600
    ) -> Any:
        """Hand ``fn`` a URL, suspend, and return the first JSON body POSTed to it (v2 §5.2)."""
        _check_cache_key(key)
        if not callable(fn):
            raise ConfigError("io.wait_for_request(key, fn): fn must be callable and take the URL.")
        return await self._execution.run_task(
            TaskSpec(
                cache_key=key,
                fn=fn,
                name="Wait for Request",
                icon="clock",
                callback=_callback_options({"timeout_in_seconds": timeout_in_seconds}),
                pass_url_only=True,
                kind="wait_for_request",
            )
        )

    async def try_(
        self, try_fn: Callable[[], Awaitable[Any]], catch_fn: Callable[[BaseException], Any]
    ) -> Any:
        """v2 ``io.try``: run ``try_fn``; on an error (not engine control flow) run ``catch_fn``.

        A task that failed and was caught stays ERRORED: on replay ``catch_fn`` receives a
        ``TaskError`` rebuilt from the store, so do not depend on the error's identity.
        """
        try:
            return await try_fn()
        except BaseException as exc:
            if is_control_flow(exc) or not isinstance(exc, Exception):
                raise
            result = catch_fn(exc)
            if hasattr(result, "__await__"):
                result = await result
            return result
