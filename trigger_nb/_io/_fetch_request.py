"""Pure helpers of ``background_fetch`` / ``background_poll``: requests and timeouts (SPEC §6.5,
§6.6; v2 §5.4, §5.5).

No I/O here: ``request_init`` validation (secrets in headers stay ``RedactedString`` until
:meth:`RequestPlan.materialize`), v2's timeout clamping, the task name, response-body parsing.
Retry policy is ``trigger_nb._io._fetch_retry``; the network side is ``trigger_nb._io._fetch``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError
from .._numbers import is_real
from .._redact import RedactedString, conceal, reveal, secrets_in
from ..retry import js_round, normalize_retry_options

if TYPE_CHECKING:  # httpx is imported when an HTTP task is first described (issue 10: ~40 ms)
    import httpx

#: ``(default, minimum, maximum)`` request timeout of a fetch, in ms (v2 §5.4: 120 s, 1–300 s).
FETCH_TIMEOUT_MS = (120_000, 1_000, 300_000)
#: ``(default, minimum, maximum)`` timeout of one poll request, in ms (v2 §5.5: 5 s, 1–5 s).
POLL_REQUEST_TIMEOUT_MS = (5_000, 1_000, 5_000)
#: Poll interval bounds in seconds: v2's 10 s minimum was a platform limit (SPEC §6.6).
POLL_INTERVAL_RANGE = (0.1, 600.0)
#: Overall poll timeout bounds in seconds: v2's 30 s minimum was a platform limit (SPEC §6.6).
POLL_TIMEOUT_RANGE = (1.0, 3600.0)


# --- timeouts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeoutPlan:
    """A request timeout after clamping, and the retry options for a timed-out request."""

    duration_ms: int
    retry: Mapping[str, Any] | None = None

    @property
    def seconds(self) -> float:
        return self.duration_ms / 1000

    @property
    def message(self) -> str:
        return f"Fetch timed out after {self.duration_ms}ms"  # v2's wording

    def display(self) -> dict[str, Any]:
        return {
            "duration_in_ms": self.duration_ms,
            "retry": None if self.retry is None else dict(self.retry),
        }


def clamp_timeout_ms(duration_ms: float | None, bounds: tuple[int, int, int]) -> int:
    """v2: ``min(max(duration ?? default, minimum), maximum)``, rounded to whole ms."""
    default, minimum, maximum = bounds
    chosen = default if duration_ms is None else duration_ms
    return int(js_round(min(max(chosen, minimum), maximum)))


def normalize_timeout(
    timeout: Any, bounds: tuple[int, int, int], *, what: str = "timeout"
) -> TimeoutPlan:
    """Validate ``{"duration_in_ms": ms, "retry": {...}}`` (v2's ``durationInMs`` accepted) and
    clamp the duration to ``bounds`` (default, min, max). ``None`` → the default, no retry."""
    if timeout is None:
        return TimeoutPlan(clamp_timeout_ms(None, bounds))
    if not isinstance(timeout, Mapping):
        raise ConfigError(
            f'{what} must be a dict like {{"duration_in_ms": 5000, "retry": {{"limit": 3}}}} '
            f"(milliseconds, as in v2), not {type(timeout).__name__} {timeout!r}."
        )
    unknown = sorted(set(timeout) - {"duration_in_ms", "durationInMs", "retry"})
    if unknown:
        raise ConfigError(f"{what}: unknown option(s) {unknown}; use duration_in_ms and retry.")
    if "duration_in_ms" in timeout and "durationInMs" in timeout:
        raise ConfigError(f"{what}: duration_in_ms is given twice (snake_case and camelCase).")
    duration = timeout.get("duration_in_ms", timeout.get("durationInMs"))
    # A huge int (10**400) is clamped like +inf (v2 clamps); only NaN and non-numbers are refused.
    if duration is not None and (not is_real(duration) or duration != duration):
        raise ConfigError(
            f"{what}: duration_in_ms must be a number of milliseconds, not {duration!r}."
        )
    return TimeoutPlan(
        clamp_timeout_ms(duration, bounds), normalize_retry_options(timeout.get("retry"))
    )


# --- requests ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class RequestPlan:
    """A validated request. Header values (and a body) may hold ``RedactedString`` values:
    :meth:`materialize` reveals them, :meth:`display` conceals them."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    has_body: bool = False
    given: frozenset[str] = frozenset()

    @property
    def body_is_json(self) -> bool:
        return self.has_body and not isinstance(self.body, (str, bytes))

    def secrets(self) -> tuple[str, ...]:
        return secrets_in([list(self.headers), self.body])

    @property
    def secret_header_names(self) -> frozenset[str]:
        """Lower-cased names of the headers built with ``redact_string``: never sent to
        another origin on a redirect (httpx itself only drops ``Authorization``)."""
        return frozenset(
            name.lower() for name, value in self.headers if isinstance(value, RedactedString)
        )

    def display(self) -> dict[str, Any]:
        """``request_init`` for the task's params: secrets shown as ``********``."""
        shown: dict[str, Any] = {"method": self.method}
        if "headers" in self.given:
            shown["headers"] = {name: conceal(value) for name, value in self.headers}
        if self.has_body:
            body = self.body
            shown["body"] = f"<{len(body)} bytes>" if isinstance(body, bytes) else conceal(body)
        return shown

    def materialize(self) -> tuple[str, str, list[tuple[str, str]], bytes | None]:
        """``(method, url, headers, content)`` with the real values: call only to send."""
        headers = [(name, reveal(value)) for name, value in self.headers]
        content: bytes | None = None
        if self.has_body:
            if isinstance(self.body, bytes):
                content = self.body
            elif isinstance(self.body, str):
                content = reveal(self.body).encode("utf-8")
            else:
                content = json.dumps(reveal(self.body), separators=(",", ":")).encode("utf-8")
                if not any(name.lower() == "content-type" for name, _ in headers):
                    headers.append(("content-type", "application/json"))
        return self.method, self.url, headers, content


def check_url(url: Any, *, what: str = "url") -> httpx.URL:
    """Parse an http(s) URL or raise ``ConfigError``."""
    import httpx

    if isinstance(url, RedactedString):
        raise ConfigError(
            f"{what} cannot be a redact_string: URLs are stored in the task's params. Send the "
            "secret in a header instead, e.g. headers={'Authorization': redact_string('Bearer {}', key)}."
        )
    if not isinstance(url, str):
        raise ConfigError(
            f"{what} must be a str such as 'https://api.example.com/items', not {type(url).__name__}."
        )
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ConfigError(f"{what} {url!r} is not a valid URL ({exc}).") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"{what} {url!r} must be an absolute http:// or https:// URL.")
    return parsed


def task_name(verb: str, url: str) -> str:
    """v2's task name: ``"fetch <host><path>"`` / ``"poll <host><path>"``."""
    import httpx

    parsed = httpx.URL(url)
    return f"{verb} {parsed.host}{parsed.path}"


def prepare_request(url: Any, request_init: Any, *, what: str = "request_init") -> RequestPlan:
    """Validate ``url`` and ``request_init = {"method", "headers", "body"}`` (v2
    ``FetchRequestInit``); raise ``ConfigError`` with a message that never shows a secret.

    ``headers`` values are ``str`` or ``redact_string(...)``. ``body`` is a ``str`` (sent as
    is), ``bytes``, or JSON data (sent as JSON, with ``content-type: application/json`` unless
    a content type is given); GET and HEAD take no body.
    """
    check_url(url)
    if request_init is None:
        request_init = {}
    if not isinstance(request_init, Mapping):
        raise ConfigError(
            f'{what} must be a dict like {{"method": "POST", "headers": {{...}}, "body": ...}}, '
            f"not {type(request_init).__name__}."
        )
    unknown = sorted(set(request_init) - {"method", "headers", "body"})
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {unknown}; use method, headers and body.")
    method = request_init.get("method") or "GET"
    if not isinstance(method, str) or not _TOKEN.fullmatch(method):
        raise ConfigError(f"{what}: method must be an HTTP method such as 'POST', not {method!r}.")
    method = method.upper()
    headers = _check_headers(request_init.get("headers"), what)
    has_body = request_init.get("body") is not None
    body = request_init.get("body")
    if has_body:
        if method in ("GET", "HEAD"):
            raise ConfigError(
                f"{what}: a {method} request cannot have a body; use method 'POST' or 'PUT'."
            )
        if not isinstance(body, (str, bytes)):
            try:
                json.dumps(reveal(body), allow_nan=False)
            except (TypeError, ValueError) as exc:
                reason = type(exc).__name__
                raise ConfigError(
                    f"{what}: body must be a str, bytes or JSON data (dict, list, str, number, "
                    f"bool, None); this one cannot be encoded as JSON ({reason})."
                ) from None
    return RequestPlan(
        method=method,
        url=url,
        headers=headers,
        body=body,
        has_body=has_body,
        given=frozenset(k for k in ("headers",) if request_init.get(k) is not None),
    )


def _check_headers(headers: Any, what: str) -> tuple[tuple[str, str], ...]:
    if headers is None:
        return ()
    if not isinstance(headers, Mapping):
        raise ConfigError(
            f"{what}: headers must be a dict of name to value, not {type(headers).__name__}."
        )
    checked: list[tuple[str, str]] = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ConfigError(f"{what}: {name!r} is not a valid header name.")
        if not isinstance(value, str):
            raise ConfigError(
                f"{what}: header {name!r} must be a str or redact_string(...), not "
                f"{type(value).__name__}."
            )
        real = reveal(value)
        # Never echo the value: it may be a secret. httpx/h11 would (LocalProtocolError).
        if any(c in real for c in "\r\n\0"):
            raise ConfigError(f"{what}: header {name!r} contains a line break or NUL character.")
        if not real.isascii():
            raise ConfigError(
                f"{what}: header {name!r} must be ASCII text (encode other characters)."
            )
        checked.append((name, value))
    return tuple(checked)


def parse_body(text: str) -> tuple[Any, bool]:
    """``(value, is_json)`` for a response body: parsed JSON, else the text (``None`` if empty).

    Like JavaScript's ``JSON.parse``: ``NaN``/``Infinity`` are not JSON.
    """
    if not text or not text.strip():
        return None, False
    try:
        return json.loads(text, parse_constant=_reject_constant), True
    except ValueError:
        return text, False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


__all__ = [
    "FETCH_TIMEOUT_MS",
    "POLL_INTERVAL_RANGE",
    "POLL_REQUEST_TIMEOUT_MS",
    "POLL_TIMEOUT_RANGE",
    "RequestPlan",
    "TimeoutPlan",
    "check_url",
    "clamp_timeout_ms",
    "normalize_timeout",
    "parse_body",
    "prepare_request",
    "task_name",
]
