"""The retry policy of ``background_fetch`` (SPEC §6.5; v2 §5.4 ``FetchRetryOptions``).

No I/O here: v2's status patterns and their matching order, retry strategies, reset-header
parsing. Requests and timeouts are ``trigger_nb._io._fetch_request``; the network side is
``trigger_nb._io._fetch``.

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
was 12); a pattern that can never match in v2 (``"5XX"`` — patterns are case-sensitive —
``"abc"``, ``"401,5xx"``) is a ``ConfigError`` instead of a silent no-match.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._events._filters import event_filter_matches, validate_event_filter
from .._exceptions import ConfigError, FetchError
from ..retry import calculate_retry_at, normalize_retry_options

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
    """Return ``pattern`` trimmed, or raise ``ConfigError`` for one that v2 would never match.

    Case matters, as in v2 (``range.endsWith("xx")``): ``"5XX"`` never matched there, so it is
    refused here with the spelling that works."""
    if not isinstance(pattern, str):
        raise ConfigError(
            f'retry keys are status patterns (strings such as "429" or "5xx"), not '
            f"{type(pattern).__name__} {pattern!r}."
        )
    text = pattern.strip()
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
    hint = f' (v2 patterns are case-sensitive: write {text.lower()!r})' if text.lower() != text else ""
    raise ConfigError(
        f"Unknown retry status pattern {pattern!r}{hint}. It would never match: use \"all\", an "
        'exact code "429", a list "401,403" (exact codes only), a range "500-599", "5xx" or a '
        'prefix like "40x".'
    )


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness of a JSON value: only ``false``, ``0``, ``""`` and ``null`` are
    falsy (an empty object or array is truthy, unlike in Python)."""
    if isinstance(value, (dict, list)):
        return True
    return bool(value)


def status_matches(pattern: str, status: int) -> bool:
    """Whether ``status`` falls under ``pattern`` (v2 ``isStatusCodeInRange``).

    ``pattern`` should be valid (see :func:`validate_status_pattern`); anything else never
    matches.
    """
    text = pattern.strip()
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
        # v2: `if (!body) continue` — no JSON body, or a falsy one (false, 0, "", null), no
        # match; {} and [] are truthy in JavaScript.
        return body_is_json and js_truthy(body) and event_filter_matches(body, self.body_filter)

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


__all__ = [
    "HEADERS_STRATEGY_MAX_ATTEMPTS",
    "RESET_FORMATS",
    "FetchError",
    "RetryStrategy",
    "display_retry",
    "js_key_order",
    "normalize_fetch_retry",
    "normalize_strategy",
    "parse_reset",
    "select_strategy",
    "status_matches",
    "validate_status_pattern",
]
