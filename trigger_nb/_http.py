"""Pure helpers of ``background_fetch`` / ``background_poll`` (SPEC §6.5, §6.6; v2 §5.4, §5.5).

No I/O here: argument validation, v2's status patterns and their matching order, retry
strategies, reset-header parsing and timeout clamping. The network side is
``trigger_nb._io._http``.

Retry option of a fetch (v2 ``FetchRetryOptions``): a dict mapping a **status pattern** to a
**strategy**. Patterns (v2 ``isStatusCodeInRange``)::

    "all"         any status
    "401,403"     a comma list of exact codes
    "500-599"     an inclusive range
    "5xx"         the hundreds digit
    "4x", "40x"   a prefix of the code's digits
    "429"         one exact code

Keys are tried in JavaScript ``Object.keys`` order — integer-like keys (``"429"``) first in
ascending order, then the others in insertion order — and the first match wins; a strategy with
a ``body_filter`` matches only when the body is JSON and passes the EventFilter. Strategies:

- ``{"strategy": "backoff", limit, factor, min_timeout_in_ms, max_timeout_in_ms, randomize}``:
  v2 ``calculateRetryAt`` with v2's defaults; ``limit`` is the total number of requests.
- ``{"strategy": "headers", "reset_header": name, "reset_format": fmt}``: retry when the reset
  header says. v2 had no attempt limit; here it stops after
  :data:`HEADERS_STRATEGY_MAX_ATTEMPTS` requests, so a server that keeps answering 429 cannot
  keep a run waiting forever. A missing or unreadable header means no retry (v2).

v2's camelCase option names (``resetHeader``, ``bodyFilter``, ``minTimeoutInMs``, ...) are
accepted too; a strategy without ``"strategy"`` is a backoff.

Small, documented differences from v2: ``unix_timestamp`` / ``unix_timestamp_in_ms`` accept a
decimal fraction (v2's ``parseInt`` dropped it) and reject trailing garbage (``parseInt("12abc")``
was 12); a pattern that can never match (``"5XX "``, ``"abc"``, ``"401,5xx"``) is a
``ConfigError`` instead of a silent no-match.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._exceptions import ConfigError, FetchError
from ._filters import event_filter_matches, validate_event_filter
from ._redact import RedactedString, conceal, reveal, secrets_in
from .retry import calculate_retry_at, js_round, normalize_retry_options

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
#: A ``headers`` strategy stops retrying after this many requests (v2 had no limit).
HEADERS_STRATEGY_MAX_ATTEMPTS = 100

RESET_FORMATS = (
    "unix_timestamp",
    "unix_timestamp_in_ms",
    "iso_8601",
    "iso_8601_duration_openai_variant",
)


# --- status patterns ---------------------------------------------------------------------------

_EXACT = re.compile(r"\d{3}")
_RANGE = re.compile(r"(\d{3})\s*-\s*(\d{3})")
_HUNDREDS = re.compile(r"\dxx")
_PREFIX = re.compile(r"\d{1,2}x")
_ARRAY_INDEX = re.compile(r"0|[1-9]\d*")


def validate_status_pattern(pattern: Any) -> str:
    """Return ``pattern`` normalised (trimmed, lower case) or raise ``ConfigError``."""
    if not isinstance(pattern, str):
        raise ConfigError(
            f'retry keys are status patterns (strings such as "429" or "5xx"), not '
            f"{type(pattern).__name__} {pattern!r}."
        )
    text = pattern.strip().lower()
    if (
        text == "all"
        or _EXACT.fullmatch(text)
        or _HUNDREDS.fullmatch(text)
        or _PREFIX.fullmatch(text)
    ):
        return text
    ranged = _RANGE.fullmatch(text)
    if ranged:
        if int(ranged.group(1)) > int(ranged.group(2)):
            raise ConfigError(f"retry status range {pattern!r} starts after it ends.")
        return text
    if "," in text and all(_EXACT.fullmatch(item.strip()) for item in text.split(",")):
        return text
    raise ConfigError(
        f'Unknown retry status pattern {pattern!r}. Use "all", an exact code "429", a list '
        '"401,403" (exact codes only), a range "500-599", "5xx" or a prefix like "40x".'
    )


def status_matches(pattern: str, status: int) -> bool:
    """Whether ``status`` falls under ``pattern`` (v2 ``isStatusCodeInRange``).

    ``pattern`` should be valid (see :func:`validate_status_pattern`); anything else never
    matches.
    """
    text = pattern.strip().lower()
    if text == "all":
        return True
    if "," in text:  # v2 compares the items as strings: exact codes only
        return str(status) in {item.strip() for item in text.split(",")}
    ranged = _RANGE.fullmatch(text)
    if ranged:
        return int(ranged.group(1)) <= status <= int(ranged.group(2))
    if _HUNDREDS.fullmatch(text):
        return str(status // 100) == text[0]
    if _PREFIX.fullmatch(text):
        return str(status).startswith(text[:-1])
    return bool(_EXACT.fullmatch(text)) and status == int(text)


def js_key_order(keys: Iterable[str]) -> list[str]:
    """``keys`` in JavaScript ``Object.keys`` order: canonical array indices (``"0"``,
    ``"429"``; not ``"0429"`` nor ``" 429"``) ascending, then the rest in insertion order."""
    keys = list(keys)
    indices = [k for k in keys if _ARRAY_INDEX.fullmatch(k) and int(k) < 2**32 - 1]
    others = [k for k in keys if k not in set(indices)]
    return sorted(indices, key=int) + others


# --- strategies --------------------------------------------------------------------------------

_ALIASES = {
    "bodyFilter": "body_filter",
    "resetHeader": "reset_header",
    "resetFormat": "reset_format",
    "limitHeader": "limit_header",
    "remainingHeader": "remaining_header",
    "minTimeoutInMs": "min_timeout_in_ms",
    "maxTimeoutInMs": "max_timeout_in_ms",
}
_BACKOFF_OPTIONS = ("limit", "factor", "min_timeout_in_ms", "max_timeout_in_ms", "randomize")
_STRATEGY_KEYS = {
    "backoff": {"strategy", "body_filter", *_BACKOFF_OPTIONS},
    "headers": {
        "strategy",
        "body_filter",
        "reset_header",
        "reset_format",
        "limit_header",
        "remaining_header",
    },
}


@dataclass(frozen=True)
class RetryStrategy:
    """One normalised strategy of a fetch's ``retry`` option."""

    pattern: str
    kind: str  # "backoff" | "headers"
    backoff: Mapping[str, Any] | None = None
    reset_header: str | None = None
    reset_format: str = "unix_timestamp"
    body_filter: Mapping[str, Any] | None = None

    def display(self) -> dict[str, Any]:
        """The strategy as JSON for the task's params, with every default filled in."""
        shown: dict[str, Any] = {"strategy": self.kind}
        if self.kind == "backoff":
            shown.update(self.backoff or {})
        else:
            shown.update(reset_header=self.reset_header, reset_format=self.reset_format)
        if self.body_filter is not None:
            shown["body_filter"] = self.body_filter
        return shown

    def matches(self, status: int, body: Any, body_is_json: bool) -> bool:
        """Status in the pattern, and the body filter (if any) passes on a JSON body (v2)."""
        if not status_matches(self.pattern, status):
            return False
        if self.body_filter is None:
            return True
        # v2: `if (!body) continue` — no JSON body, no match.
        return body_is_json and body is not None and event_filter_matches(body, self.body_filter)

    def retry_at(
        self,
        *,
        attempt: int,
        headers: Mapping[str, str],
        now: float,
        random: Callable[[], float] | None = None,
    ) -> float | None:
        """When to send request ``attempt + 1`` (epoch seconds), or ``None`` for no retry.

        ``attempt`` is the number of requests made so far (1 after the first); ``headers``
        those of the last response (any case).
        """
        if self.kind == "backoff":
            assert self.backoff is not None
            extra = {} if random is None else {"random": random}
            # v2: calculateRetryAt(strategy, task.attempts.length - 1)
            return calculate_retry_at(self.backoff, attempt - 1, now=now, **extra)
        if attempt >= HEADERS_STRATEGY_MAX_ATTEMPTS:
            return None
        assert self.reset_header is not None
        wanted = self.reset_header.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
        return parse_reset(value, self.reset_format, now=now)


def _strategy_options(pattern: str, strategy: Any) -> dict[str, Any]:
    where = f"retry[{pattern!r}]"
    if not isinstance(strategy, Mapping):
        raise ConfigError(
            f'{where} must be a strategy dict like {{"strategy": "backoff", "limit": 5}} or '
            f'{{"strategy": "headers", "reset_header": "x-ratelimit-reset"}}, not '
            f"{type(strategy).__name__}."
        )
    options: dict[str, Any] = {}
    for key, value in strategy.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: option names are strings, not {key!r}.")
        name = _ALIASES.get(key, key)
        if name in options:
            raise ConfigError(
                f"{where}: option {name!r} is given twice (snake_case and camelCase)."
            )
        options[name] = value
    kind = options.setdefault("strategy", "backoff")
    if kind not in _STRATEGY_KEYS:
        raise ConfigError(f'{where}: "strategy" must be "backoff" or "headers", not {kind!r}.')
    unknown = sorted(set(options) - _STRATEGY_KEYS[kind])
    if unknown:
        allowed = ", ".join(sorted(_STRATEGY_KEYS[kind]))
        raise ConfigError(
            f"{where}: unknown option(s) {unknown} for a {kind} strategy; use {allowed}."
        )
    return options


def normalize_strategy(pattern: Any, strategy: Any) -> RetryStrategy:
    """Validate one ``pattern: strategy`` entry (``ConfigError`` / ``EventFilterError``)."""
    text = validate_status_pattern(pattern)
    options = _strategy_options(str(pattern), strategy)
    body_filter = options.get("body_filter")
    if body_filter is not None:
        validate_event_filter(body_filter, where=f"retry[{pattern!r}].body_filter")
    if options["strategy"] == "backoff":
        backoff = normalize_retry_options({k: options[k] for k in _BACKOFF_OPTIONS if k in options})
        return RetryStrategy(text, "backoff", backoff=backoff, body_filter=body_filter)
    reset_header = options.get("reset_header")
    if not isinstance(reset_header, str) or not reset_header.strip():
        raise ConfigError(
            f"retry[{pattern!r}]: a headers strategy needs reset_header, the name of the "
            'response header that says when to retry (e.g. "x-ratelimit-reset").'
        )
    reset_format = options.get("reset_format") or "unix_timestamp"
    if reset_format not in RESET_FORMATS:
        raise ConfigError(
            f"retry[{pattern!r}]: reset_format must be one of {', '.join(RESET_FORMATS)}, "
            f"not {reset_format!r}."
        )
    return RetryStrategy(
        text,
        "headers",
        reset_header=reset_header.strip(),
        reset_format=reset_format,
        body_filter=body_filter,
    )


def normalize_fetch_retry(retry: Any) -> tuple[RetryStrategy, ...] | None:
    """Validate a fetch's ``retry`` option; return its strategies in v2's matching order.

    ``None`` means no retry for any status (v2). Raises ``ConfigError`` (or
    ``EventFilterError`` for a bad ``body_filter``) naming the bad entry.
    """
    if retry is None:
        return None
    if not isinstance(retry, Mapping):
        raise ConfigError(
            'retry must map status patterns to strategies, e.g. {"5xx": {"strategy": "backoff", '
            f'"limit": 5}}}}, not {type(retry).__name__}.'
        )
    for key in retry:
        validate_status_pattern(key)
    return tuple(normalize_strategy(key, retry[key]) for key in js_key_order(list(retry)))


def display_retry(strategies: Iterable[RetryStrategy] | None) -> dict[str, Any] | None:
    """A fetch's ``retry`` option for its params: patterns in matching order, defaults filled."""
    if strategies is None:
        return None
    return {strategy.pattern: strategy.display() for strategy in strategies}


def select_strategy(
    strategies: Iterable[RetryStrategy] | None, status: int, body: Any, body_is_json: bool
) -> RetryStrategy | None:
    """The first strategy (in v2 order) that matches the response, or ``None``."""
    for strategy in strategies or ():
        if strategy.matches(status, body, body_is_json):
            return strategy
    return None


# --- reset headers -----------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_OPENAI_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?")


def parse_reset(value: str | None, reset_format: str, *, now: float) -> float | None:
    """When a rate limit resets, as epoch seconds, from a reset header (v2 ``calculateResetAt``).

    Formats: ``unix_timestamp`` (seconds), ``unix_timestamp_in_ms``, ``iso_8601`` (a date-time;
    ``Z`` and offsets accepted, no offset = local time as in JavaScript, a bare date = UTC) and
    ``iso_8601_duration_openai_variant`` (``"1d2h3m4.5s6ms"``, added to ``now``). Returns
    ``None`` for an empty or unreadable value. Never raises for a string ``value``.
    """
    if not value or not value.strip():
        return None
    text = value.strip()
    if reset_format in ("unix_timestamp", "unix_timestamp_in_ms"):
        if not _NUMBER.fullmatch(text):
            return None
        number = float(text)
        return number if reset_format == "unix_timestamp" else number / 1000
    if reset_format == "iso_8601":
        return _parse_iso(text)
    if reset_format == "iso_8601_duration_openai_variant":
        match = _OPENAI_DURATION.fullmatch(text)
        if match is None:
            return None
        days, hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
        return now + days * 86400 + hours * 3600 + minutes * 60 + seconds + millis / 1000
    return None


def _parse_iso(text: str) -> float | None:
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        if len(text) == 10:  # a bare date is UTC midnight in JavaScript
            day = _dt.date.fromisoformat(text)
            return _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.timezone.utc).timestamp()
        moment = _dt.datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.astimezone()
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):
        return None


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
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, (int, float)) or math.isnan(duration)
    ):
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
    "HEADERS_STRATEGY_MAX_ATTEMPTS",
    "POLL_INTERVAL_RANGE",
    "POLL_REQUEST_TIMEOUT_MS",
    "POLL_TIMEOUT_RANGE",
    "RESET_FORMATS",
    "FetchError",
    "RequestPlan",
    "RetryStrategy",
    "TimeoutPlan",
    "check_url",
    "clamp_timeout_ms",
    "display_retry",
    "js_key_order",
    "normalize_fetch_retry",
    "normalize_strategy",
    "normalize_timeout",
    "parse_body",
    "parse_reset",
    "prepare_request",
    "select_strategy",
    "status_matches",
    "task_name",
    "validate_status_pattern",
]
