"""The receiver's request handling (SPEC §9), as pure code: a request in, a `Response` out.

Theory of operation
-------------------

`handle_request` sees one complete HTTP request — method, path, headers and the body bytes —
and returns the `Response` to send. It never touches a socket: the HTTP server adapter
(`_server.py`) reads the request, calls this function and writes what it returns, so every route
and status code can be tested without a network (the h11 way: pure code decides, one driver
does the I/O).

What the receiver *does* with a callback or an event is not decided here either: that is the
`ReceiverBackend`'s job (the engine implements it). This module only validates the request,
asks the backend, and maps the answer to a status code.

`handle_request` is a coroutine because resolving a callback is awaited: the engine batches
callbacks that arrive together into one store transaction (SPEC §13). Everything else is
decided at once by the synchronous `decide`, which the server also uses where it cannot wait
(a request refused before its body is read).

The checks run in a fixed order, so that a request that is wrong in several ways gets the most
useful error: unknown path (404) → wrong method (405) → missing token (401, ``/events`` only)
→ body over the limit (413) → body not JSON (400) → the backend's answer.

Responses never contain the callback secret, the events token, or the requested path (which may
hold a secret): a response is safe to show in a log or a notebook cell.
"""

from __future__ import annotations

import enum
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

from .._exceptions import EventFilterError, PayloadError
from .._serde import MAX_JSON_DEPTH, json_depth_exceeds

__all__ = [
    "CallbackOutcome",
    "CallbackPost",
    "ReceiverBackend",
    "Response",
    "decide",
    "error_response",
    "handle_request",
    "render",
]

logger = logging.getLogger("trigger_nb.receiver")


class CallbackOutcome(enum.Enum):
    """What the backend did with a POST to a callback URL."""

    ACCEPTED = "accepted"
    """The task was waiting: it is now COMPLETED with the body as its output."""
    ALREADY_RESOLVED = "already_resolved"
    """The task already got its callback; nothing changed (the first POST wins, as in v2)."""
    NOT_FOUND = "not_found"
    """No such task id, or the secret is wrong; nothing changed. The two are not told apart."""
    TIMED_OUT = "timed_out"
    """The task stopped waiting (its timeout elapsed); nothing changed."""


class ReceiverBackend(Protocol):
    """What the receiver needs from the engine.

    Every method is called from the receiver's own thread; the backend is responsible for its
    own thread-safety with respect to the rest of the program.
    """

    async def complete_callback(self, task_id: str, secret: str, body: Any) -> CallbackOutcome:
        """Resolve the task waiting at ``/callbacks/{task_id}/{secret}`` with ``body``.

        ``body`` is the parsed JSON of the request. Must compare the secret in constant time.
        Awaited on the receiver's loop, so several callbacks may be in flight at once (the
        backend may batch them); it must not block that loop for long.
        """
        ...

    def send_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Send ``event`` (a JSON object with a string ``name``) and return the stored record.

        Raises `PayloadError` or `EventFilterError` for an event it refuses; the receiver then
        answers ``400`` with the exception's message.
        """
        ...

    def events_token(self) -> str:
        """The token a POST to ``/events`` must carry as ``Authorization: Bearer <token>``
        (``""``: none yet, every request is refused). Called for every such request, before
        anything else: it must not write (a stranger's requests must not cost store writes)."""
        ...


@dataclass(frozen=True)
class Response:
    """A status code, a JSON object for the body and extra ``(name, value)`` headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


def error_response(
    status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    """The one shape of every error: ``{"ok": false, "error": message}``."""
    return Response(status, {"ok": False, "error": message}, headers)


class _Reject(Exception):
    """Ends handling early with an error response (internal control flow of this module)."""

    def __init__(
        self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.response = error_response(status, message, headers)


_OK = Response(200, {"ok": True})

_CALLBACK_ROUTE = "/callbacks/{task_id}/{secret}"
_EVENTS_ROUTE = "/events"
_HEALTH_ROUTE = "/health"

_UNKNOWN_PATH = (
    "no such endpoint: the receiver serves POST /callbacks/{task_id}/{secret}, "
    "POST /events and GET /health"
)
INTERNAL_ERROR = (
    "the receiver failed to handle this request because of an internal error; "
    "the details are in the log of the process running the receiver"
)
_UNAUTHORIZED = (
    "POST /events needs the header 'Authorization: Bearer <token>' with this store's events "
    "token (shown by `%job server`); the token was missing or wrong"
)
_NOT_AN_EVENT = (
    'an event must be a JSON object with a string "name", '
    'e.g. {"name": "order.paid", "payload": {"id": 1}}'
)

_CALLBACK_RESPONSES: dict[CallbackOutcome, Response] = {
    CallbackOutcome.ACCEPTED: _OK,
    CallbackOutcome.ALREADY_RESOLVED: Response(200, {"ok": True, "accepted": False}),
    CallbackOutcome.NOT_FOUND: error_response(
        404,
        "no task waits for a callback at this URL: check the task id and the secret against "
        "the task's callback_url",
    ),
    CallbackOutcome.TIMED_OUT: error_response(
        410,
        "this task stopped waiting for its callback because its timeout elapsed; "
        "nothing was changed — rerun the task to get a new callback URL",
    ),
}


@dataclass(frozen=True)
class CallbackPost:
    """A well-formed POST to a callback URL: what the backend must resolve."""

    task_id: str
    secret: str
    body: Any


def decide(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    backend: ReceiverBackend,
    *,
    max_body_bytes: int,
) -> Response | CallbackPost:
    """Everything `handle_request` decides without waiting: the response, or the callback
    POST for the backend to resolve (only a POST to a callback URL with a JSON body within
    the limit gets that far). Never raises, like `handle_request`."""
    try:
        segments = _path_segments(path)
        if len(segments) == 3 and segments[0] == "callbacks":
            _require_method(method, "POST", _CALLBACK_ROUTE)
            return CallbackPost(segments[1], segments[2], _parse_json(body, max_body_bytes))
        if segments == ["events"]:
            _require_method(method, "POST", _EVENTS_ROUTE)
            _require_token(headers, backend)
            event = _parse_json(body, max_body_bytes)
            if not isinstance(event, dict) or not isinstance(event.get("name"), str):
                raise _Reject(400, _NOT_AN_EVENT)
            record = backend.send_event(event)
            return Response(200, {"ok": True, "event": record})
        if segments == ["health"]:
            _require_method(method, "GET", _HEALTH_ROUTE)
            return _OK
        return error_response(404, _UNKNOWN_PATH)
    except _Reject as reject:
        return reject.response
    except (PayloadError, EventFilterError) as exc:
        return error_response(400, str(exc))
    except Exception:
        return _internal_error(method)


async def handle_request(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    backend: ReceiverBackend,
    *,
    max_body_bytes: int,
) -> Response:
    """Decide the response to one HTTP request (SPEC §9).

    ``path`` may carry a query string (ignored); ``headers`` may be any mapping — names are
    matched case-insensitively. A body longer than ``max_body_bytes`` gets ``413`` without
    being parsed: an adapter that stops buffering may pass just the first
    ``max_body_bytes + 1`` bytes.

    Never raises: an exception from the backend that is not a `PayloadError` or an
    `EventFilterError` is logged (logger ``trigger_nb.receiver``) and becomes a ``500``
    with a generic message.
    """
    decided = decide(method, path, headers, body, backend, max_body_bytes=max_body_bytes)
    if isinstance(decided, Response):
        return decided
    try:
        outcome = await backend.complete_callback(decided.task_id, decided.secret, decided.body)
        return _CALLBACK_RESPONSES[outcome]
    except Exception:
        return _internal_error(method)


def _internal_error(method: str) -> Response:
    # Not one of ours: a bug in the backend or here. The client gets a generic message (the
    # exception text may hold internals); the log gets the traceback.
    logger.exception("receiver: %s request failed", method)
    return error_response(500, INTERNAL_ERROR)


def render(response: Response) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
    """Encode ``response`` for the wire: status, all headers, JSON body bytes.

    A body that cannot be encoded as JSON (say, a backend's event record holding a
    ``datetime``) becomes a generic ``500`` instead of an exception in the server.
    """
    try:
        payload = json.dumps(response.body, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        logger.exception("receiver: a %d response body is not JSON", response.status)
        return render(error_response(500, INTERNAL_ERROR))
    headers = (("Content-Type", "application/json; charset=utf-8"), *response.headers)
    return response.status, headers, payload.encode("utf-8")


def _path_segments(path: str) -> list[str]:
    """``/callbacks/a/b?x=1`` → ``["callbacks", "a", "b"]``; ``[]`` for any malformed path."""
    path = path.partition("?")[0]
    if not path.startswith("/"):
        return []
    segments = [unquote(segment) for segment in path[1:].split("/")]
    # An empty segment (``//``, trailing ``/``) or one that decoded into a ``/`` is no route.
    if any(not segment or "/" in segment for segment in segments):
        return []
    return segments


def _require_method(method: str, allowed: str, route: str) -> None:
    if method != allowed:
        raise _Reject(
            405,
            f"{route} accepts only {allowed} requests; retry with {allowed}",
            (("Allow", allowed),),
        )


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name``, matched case-insensitively; ``None`` if absent."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def _require_token(headers: Mapping[str, str], backend: ReceiverBackend) -> None:
    scheme, _, token = (header_value(headers, "Authorization") or "").strip().partition(" ")
    expected = backend.events_token()
    # An empty expected token would let "Bearer " in: refuse instead. Compare bytes, as
    # compare_digest only takes ASCII str; constant time so the token cannot be guessed
    # byte by byte from response times.
    if (
        scheme.lower() != "bearer"
        or not expected
        or not hmac.compare_digest(token.strip().encode("utf-8"), expected.encode("utf-8"))
    ):
        raise _Reject(401, _UNAUTHORIZED, (("WWW-Authenticate", "Bearer"),))


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; they are not JSON and no other client reads them.
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(body: bytes, max_body_bytes: int) -> Any:
    if len(body) > max_body_bytes:
        raise _Reject(
            413,
            f"the body is over the receiver's limit of {max_body_bytes} bytes; send a smaller "
            "body (store big data elsewhere and send a reference) or raise max_body_bytes",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Reject(
            400, "the body is not UTF-8 text; send a JSON document encoded as UTF-8"
        ) from None
    if not text.strip():
        raise _Reject(400, "the body is empty; send a JSON document (null for no value)")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        problem = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:  # NaN or Infinity, from _reject_constant
        problem = str(exc)
    except RecursionError:
        problem = f"nested too deeply: more than {MAX_JSON_DEPTH} levels"
    else:
        if json_depth_exceeds(value, MAX_JSON_DEPTH):
            # Parsed here on a shallow stack, such a body could still fail to be stored or
            # replayed deeper in a kernel: accept only what the engine can keep (SPEC §9).
            problem = f"nested too deeply: more than {MAX_JSON_DEPTH} levels"
        else:
            return value
    raise _Reject(400, f"the body is not valid JSON ({problem}); send a JSON document")
