"""Background HTTP tasks: ``background_fetch``, ``background_fetch_response``,
``background_poll`` (SPEC §6.5, §6.6; v2 §5.4, §5.5).

In v2 the *server* performed these requests while the run waited. Here each one is a task with
a background operation (``TaskSpec(operation=...)``): the task WAITS, the request runs on the
home loop (``Runner.start_operation``), its result completes the task and the run resumes by
replay, so a completed fetch is never sent again — not on replay, not from another client on the
same store. After a kernel restart, replaying a task that was still waiting starts its operation
again (at-least-once, as v2); attempt numbers continue from the store.

Every request attempt is stored as a child log entry (``ctx.record_attempt``). Secrets given as
``redact_string(...)`` header values are revealed only inside :func:`_send`; params, attempt
entries and error messages hold the redacted form, and error messages and attempt entries are
also scrubbed of any secret an exception or a server might have echoed.

Pure validation and v2's rules live in ``trigger_nb._io._fetch_retry``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._engine import TaskSpec, TaskStatus
from .._events._filters import HttpResponse, response_filter_matches, validate_response_filter
from .._exceptions import ConfigError
from .._redact import scrub
from .._serde import jsonable_for_display
from ..retry import calculate_retry_at
from ._core import _check_cache_key
from ._fetch_request import (
    FETCH_TIMEOUT_MS,
    POLL_INTERVAL_RANGE,
    POLL_REQUEST_TIMEOUT_MS,
    POLL_TIMEOUT_RANGE,
    RequestPlan,
    TimeoutPlan,
    normalize_timeout,
    parse_body,
    prepare_request,
    task_name,
)
from ._fetch_retry import (
    FetchError,
    RetryStrategy,
    display_retry,
    normalize_fetch_retry,
    select_strategy,
)

if TYPE_CHECKING:
    import httpx

    from .._engine import Execution
    from .._engine._operations import OperationContext

#: Poll attempt entries keep at most this much of a response body (characters of its JSON or
#: text); the task's output always gets the whole body.
ATTEMPT_BODY_LIMIT = 16 * 1024

_POLL_KEYS = {
    "url": "url",
    "request_init": "request_init",
    "requestInit": "request_init",
    "interval": "interval",
    "timeout": "timeout",
    "response_filter": "response_filter",
    "responseFilter": "response_filter",
    "request_timeout": "request_timeout",
    "requestTimeout": "request_timeout",
}


class HttpIO:
    """``io.background_fetch`` and friends (mixed into ``IO``)."""

    _execution: Execution

    async def background_fetch(
        self,
        key: Any,
        url: str,
        request_init: Mapping[str, Any] | None = None,
        *,
        retry: Mapping[str, Any] | None = None,
        timeout: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send an HTTP request in the background and return its parsed JSON body.

        The run waits while the request (and its retries) runs; on later executions the stored
        body is returned and nothing is sent. Returns the JSON body, or the text when the body
        is not JSON (``None`` when empty).

        ``request_init = {"method": "GET", "headers": {...}, "body": ...}``: header values are
        ``str`` or ``trigger_nb.redact_string("Bearer {}", key)`` (sent in full, stored as
        ``Bearer ********``); ``body`` is a ``str``, ``bytes`` or JSON data (sent as JSON).

        ``retry`` maps status patterns (``"429"``, ``"401,403"``, ``"500-599"``, ``"5xx"``,
        ``"4x"``, ``"all"``) to ``{"strategy": "backoff", "limit", "factor",
        "min_timeout_in_ms", "max_timeout_in_ms", "randomize", "body_filter"}`` or
        ``{"strategy": "headers", "reset_header", "reset_format", "body_filter"}``; keys are
        tried in v2's order (integer-like keys ascending, then the rest as given). Without
        ``retry`` no status is retried.

        ``timeout = {"duration_in_ms": 120000, "retry": {...}}``: per request, clamped to
        1 s–300 s; a timed-out request is retried with ``retry`` (v2 backoff options) or fails.

        Raises ``TaskError`` when the task fails: an error status with no retry left (message:
        the JSON body, else ``Fetch failed with status N``), a timeout (``Fetch timed out after
        Nms``) or a network error. Raises ``ConfigError`` / ``EventFilterError`` for bad
        arguments, before anything is stored.
        """
        return await self._fetch_task(key, url, request_init, retry, timeout, response=False)

    async def background_fetch_response(
        self,
        key: Any,
        url: str,
        request_init: Mapping[str, Any] | None = None,
        *,
        retry: Mapping[str, Any] | None = None,
        timeout: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Like :meth:`background_fetch`, returning ``{"status", "headers", "data"}``
        (``headers`` lower-cased, repeated headers joined with ``", "``; ``data`` as the body
        :meth:`background_fetch` returns)."""
        result: dict[str, Any] = await self._fetch_task(
            key, url, request_init, retry, timeout, response=True
        )
        return result

    async def _fetch_task(
        self, key: Any, url: Any, request_init: Any, retry: Any, timeout: Any, *, response: bool
    ) -> Any:
        _check_cache_key(key)
        request = prepare_request(url, request_init)
        strategies = normalize_fetch_retry(retry)
        timeout_plan = normalize_timeout(timeout, FETCH_TIMEOUT_MS)
        params = {
            "url": request.url,
            "request_init": request.display(),
            "retry": display_retry(strategies),
            "timeout": timeout_plan.display(),
        }
        operation = functools.partial(
            _run_fetch,
            request=request,
            strategies=strategies,
            timeout_plan=timeout_plan,
            response=response,
        )
        kind = "fetch-response" if response else "fetch"
        return await self._background_task(key, "fetch", "background", kind, request.url, params, operation)

    async def background_poll(self, key: Any, options: Mapping[str, Any]) -> Any:
        """Poll a URL in the background until a response matches; return its JSON body.

        ``options = {"url", "request_init", "interval": 10, "timeout": 600,
        "response_filter": {"status": [...], "headers": {...}, "body": EventFilter},
        "request_timeout": {"duration_in_ms": 5000, "retry": {...}}}`` (v2's camelCase keys
        accepted). A request is sent every ``interval`` seconds (≥ 0.1) until the response
        passes ``response_filter`` — status in the list, headers and body matching, all
        required (the intended v2 behaviour, SPEC §12) — and its body (JSON, else text) is
        returned. Each request is a child entry ``poll attempt`` in the log. ``request_timeout``
        is clamped to 1–5 s (v2).

        Raises ``TaskError`` after ``timeout`` seconds (≥ 1) with ``Task timed out after N
        seconds``, or when a request times out with no retry left; ``EventFilterError`` for a
        malformed ``response_filter`` and ``ConfigError`` for other bad options, when called.
        """
        _check_cache_key(key)
        poll = _poll_options(options)
        request = prepare_request(
            poll.get("url"), poll.get("request_init"), what="options['request_init']"
        )
        response_filter = poll.get("response_filter")
        if response_filter is None:
            raise ConfigError(
                "background_poll needs a response_filter saying which response ends the poll, "
                'e.g. {"status": [200], "body": {"state": ["done"]}}.'
            )
        validate_response_filter(response_filter)
        interval = _bounded_number(poll.get("interval", 10), POLL_INTERVAL_RANGE, "interval")
        timeout = _bounded_number(poll.get("timeout", 600), POLL_TIMEOUT_RANGE, "timeout")
        request_timeout = normalize_timeout(
            poll.get("request_timeout"), POLL_REQUEST_TIMEOUT_MS, what="request_timeout"
        )
        params = {
            "url": request.url,
            "request_init": request.display(),
            "interval": interval,
            "timeout": timeout,
            "response_filter": jsonable_for_display(response_filter),
            "request_timeout": request_timeout.display(),
        }
        operation = functools.partial(
            _run_poll,
            request=request,
            response_filter=response_filter,
            interval=interval,
            timeout=timeout,
            request_timeout=request_timeout,
        )
        return await self._background_task(key, "poll", "clock-bolt", "fetch-poll", request.url, params, operation)

    async def _background_task(
        self, key: Any, verb: str, icon: str, kind: str, url: str, params: Any, operation: Any
    ) -> Any:
        """A task whose HTTP work runs in the background while the run waits (v2 §5.4)."""
        spec = TaskSpec(
            cache_key=key, name=task_name(verb, url), icon=icon, params=params, operation=operation, kind=kind
        )
        return await self._execution.run_task(spec)


def _poll_options(options: Any) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise ConfigError(
            'background_poll(key, options): options must be a dict like {"url": ..., '
            '"response_filter": {...}, "interval": 10, "timeout": 600}.'
        )
    poll: dict[str, Any] = {}
    for name, value in options.items():
        canonical = _POLL_KEYS.get(name)
        if canonical is None:
            raise ConfigError(
                f"background_poll: unknown option {name!r}; use url, request_init, interval, "
                "timeout, response_filter, request_timeout."
            )
        if canonical in poll:
            raise ConfigError(
                f"background_poll: option {canonical!r} is given twice (snake_case and camelCase)."
            )
        poll[canonical] = value
    if "url" not in poll:
        raise ConfigError("background_poll needs a url.")
    return poll


def _bounded_number(value: Any, bounds: tuple[float, float], name: str) -> float:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(
            f"background_poll: {name} must be a number of seconds from {low:g} to {high:g}, not {value!r}."
        )
    return float(value)


# --- the operations (run on the home loop by the runner) -----------------------------------------


class _TimedOut(Exception):
    """A request took longer than its timeout."""


async def _send(
    http: httpx.AsyncClient, request: RequestPlan, timeout: TimeoutPlan
) -> httpx.Response:
    """Send ``request`` once, with its secrets revealed; the whole exchange within the timeout.

    Raises ``_TimedOut``, or ``FetchError`` for any other failure, with a message scrubbed of
    secrets and no chained exception (an httpx/h11 message may quote a header value).
    """
    import httpx

    method, url, headers, content = request.materialize()
    try:
        return await asyncio.wait_for(
            http.request(method, url, headers=headers, content=content, timeout=timeout.seconds),
            timeout.seconds,
        )
    except (asyncio.TimeoutError, httpx.TimeoutException):
        raise _TimedOut() from None
    except Exception as exc:
        message = scrub(f"Fetch failed: {type(exc).__name__}: {exc}", request.secrets())
    # Raised outside the except block on purpose: no __context__ to carry the original message.
    raise FetchError(message)


def _http_client(request: RequestPlan) -> httpx.AsyncClient:
    """The client of one operation: follows redirects, but sends the headers built with
    ``redact_string`` to the request's own origin only (scheme, host and port)."""
    import httpx  # only when a request is sent: a job without HTTP tasks never imports it

    origin = httpx.URL(request.url)
    hidden = request.secret_header_names

    async def drop_secrets_elsewhere(outgoing: httpx.Request) -> None:
        url = outgoing.url
        if (url.scheme, url.host, url.port) != (origin.scheme, origin.host, origin.port):
            for name in hidden:
                outgoing.headers.pop(name, None)

    hooks = {"request": [drop_secrets_elsewhere]} if hidden else {}
    return httpx.AsyncClient(follow_redirects=True, event_hooks=hooks)


def _still_waiting(ctx: OperationContext) -> bool:
    """Is the task still waiting for this operation? (Not canceled, not resolved elsewhere.)"""
    task = ctx.task
    stored = ctx.repo.load_task(task["run_id"], task["idempotency_key"])
    return bool(
        stored and stored["status"] == TaskStatus.WAITING and stored.get("operation_pending")
    )


def _record(
    ctx: OperationContext, name: str, number: int, params: dict[str, Any], secrets: tuple[str, ...]
) -> None:
    ctx.attempts = number - 1  # record_attempt numbers its child keys from this counter
    ctx.record_attempt(name, scrub(params, secrets))


def _set_attempts(ctx: OperationContext, attempts: int) -> None:
    """Show the number of requests on the waiting task (the log's attempts column)."""
    ctx.repo.update_task(
        ctx.task,
        lambda stored: (
            stored["status"] == TaskStatus.WAITING and bool(stored.get("operation_pending"))
        ),
        {"attempts": attempts},
    )


async def _sleep_until(when: float) -> None:
    await asyncio.sleep(max(0.0, when - time.time()))


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat()


def _failure(status: int, body: Any, is_json: bool, secrets: tuple[str, ...]) -> FetchError:
    # v2 §5.4: the task's error output is the JSON body, else {message: "Fetch failed ..."}.
    if is_json and body is not None:
        message = json.dumps(body, ensure_ascii=False)
    else:
        message = f"Fetch failed with status {status}"
    return FetchError(scrub(message, secrets), status=status, body=body)


async def _run_fetch(
    ctx: OperationContext,
    *,
    request: RequestPlan,
    strategies: tuple[RetryStrategy, ...] | None,
    timeout_plan: TimeoutPlan,
    response: bool,
) -> Any:
    """Send until a 2xx, retrying as ``strategies`` / ``timeout_plan.retry`` say (v2 §5.4)."""
    secrets = request.secrets()
    attempt = int(ctx.task.get("attempts") or 1)  # continues after a kernel restart
    async with _http_client(request) as http:
        while True:
            if not _still_waiting(ctx):
                return None  # canceled or resolved meanwhile: nothing to report
            now = time.time()
            try:
                reply = await _send(http, request, timeout_plan)
            except _TimedOut:
                retry = timeout_plan.retry
                # v2 shares the attempt count between status and timeout retries.
                retry_at = None if retry is None else _retry_at(retry, attempt, now)
                entry: dict[str, Any] = {"attempt": attempt, "error": timeout_plan.message}
                if retry_at is None:
                    _record(ctx, "fetch attempt", attempt, entry, secrets)
                    raise FetchError(timeout_plan.message) from None
            except FetchError as exc:
                _record(
                    ctx, "fetch attempt", attempt, {"attempt": attempt, "error": str(exc)}, secrets
                )
                raise
            else:
                status = reply.status_code
                headers = dict(reply.headers)
                body, is_json = parse_body(reply.text)
                entry = {"attempt": attempt, "status": status}
                if 200 <= status < 300:
                    _record(ctx, "fetch attempt", attempt, entry, secrets)
                    if response:
                        # A server may echo a request header back (a debug echo, a proxy):
                        # never into the stored output (SPEC §8).
                        return {"status": status, "headers": scrub(headers, secrets), "data": body}
                    return body
                strategy = select_strategy(strategies, status, body, is_json)
                retry_at = (
                    None
                    if strategy is None
                    else strategy.retry_at(attempt=attempt, headers=headers, now=time.time())
                )
                if retry_at is None:
                    _record(ctx, "fetch attempt", attempt, entry, secrets)
                    raise _failure(status, body, is_json, secrets)
            entry["retry_at"] = _iso(retry_at)
            _record(ctx, "fetch attempt", attempt, entry, secrets)
            attempt += 1
            _set_attempts(ctx, attempt)
            await _sleep_until(retry_at)


def _retry_at(retry: Mapping[str, Any], attempt: int, now: float) -> float | None:
    return calculate_retry_at(retry, attempt - 1, now=now)


def _existing_attempts(ctx: OperationContext) -> int:
    """How many attempt entries the task already has (the operation restarted)."""
    task = ctx.task
    return sum(
        1 for t in ctx.repo.load_tasks(task["run_id"]) if t.get("parent_id") == task["id"]
    )


def _attempt_body(body: Any, is_json: bool) -> Any:
    text = json.dumps(body, ensure_ascii=False) if is_json else body
    if isinstance(text, str) and len(text) > ATTEMPT_BODY_LIMIT:
        return text[:ATTEMPT_BODY_LIMIT] + f"… ({len(text):,} characters)"
    return body


async def _run_poll(
    ctx: OperationContext,
    *,
    request: RequestPlan,
    response_filter: Mapping[str, Any],
    interval: float,
    timeout: float,
    request_timeout: TimeoutPlan,
) -> Any:
    """Request every ``interval`` s until a response passes the filter (v2 §5.5, fixed)."""
    secrets = request.secrets()
    deadline = float(ctx.task.get("started_at") or time.time()) + timeout  # survives restarts
    number = _existing_attempts(ctx)
    timeouts = 0
    async with _http_client(request) as http:
        while True:
            if not _still_waiting(ctx):
                return None
            if time.time() > deadline:
                raise FetchError(f"Task timed out after {timeout:g} seconds")  # v2's wording
            number += 1
            try:
                reply = await _send(http, request, request_timeout)
            except _TimedOut:
                timeouts += 1
                retry = request_timeout.retry
                retry_at = None if retry is None else _retry_at(retry, timeouts, time.time())
                _record(ctx, "poll attempt", number, {"error": request_timeout.message}, secrets)
                if retry_at is None:
                    raise FetchError(request_timeout.message) from None
                await _sleep_until(retry_at)
                continue
            except FetchError as exc:
                _record(ctx, "poll attempt", number, {"error": str(exc)}, secrets)
                raise
            headers = dict(reply.headers)
            body, is_json = parse_body(reply.text)
            entry: dict[str, Any] = {"status": reply.status_code, "headers": headers}
            if body is not None:
                entry["body"] = _attempt_body(body, is_json)
            _record(ctx, "poll attempt", number, entry, secrets)
            seen = HttpResponse(
                status=reply.status_code,
                headers=headers,
                # A non-JSON body is text, which fails any body filter (v2); a JSON string may match.
                body=body if is_json else (body or ""),
                body_is_json=is_json,
            )
            if response_filter_matches(seen, response_filter):
                return body
            await asyncio.sleep(max(0.0, min(interval, deadline - time.time())))


__all__ = ["FetchError", "HttpIO"]
