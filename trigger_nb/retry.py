"""Retry options for tasks, v2's presets, and the exact v2 backoff formula (SPEC §5, v2 §3).

Usage::

    from trigger_nb import retry

    await io.run_task("call-api", call_api, retry=retry.standard_backoff)
    await io.run_task("flaky", flaky, retry={**retry.exponential_backoff, "limit": 3})
    await io.run_task("other", other, retry={})   # retries with every default

Options (all optional; missing ones take ``DEFAULT_RETRY_OPTIONS``):

- ``limit``: the **total number of attempts**, not of retries (v2 §3.2): ``limit=5`` runs the
  callback at most 5 times; 0 or 1 means no retry.
- ``factor``, ``min_timeout_in_ms``, ``max_timeout_in_ms``, ``randomize``: the delay before
  retry ``n`` is ``round(r * max(min, 1) * factor ** max(n - 2, 0))`` ms, capped at ``max``, where
  ``r`` is uniform in [1, 2) with ``randomize`` and 1 without. The first two retries wait the same.
  v2's camelCase ``minTimeoutInMs`` / ``maxTimeoutInMs`` are accepted too.

No ``retry`` option at all means no retry (v2 §3.3). Delays with ``randomize`` off::

    >>> retry_delays(DEFAULT_RETRY_OPTIONS)
    [1000, 1000, 1800, 3240]
    >>> retry_delays(standard_backoff)
    [500, 500, 900, 1620, 2916, 5249, 9448]
"""

from __future__ import annotations

import difflib
import math
import random as _random
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ._exceptions import ConfigError

DEFAULT_RETRY_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "limit": 5,
        "factor": 1.8,
        "min_timeout_in_ms": 1000,
        "max_timeout_in_ms": 60000,
        "randomize": True,
    }
)
"""v2's defaults for any option left out (CORERETRY ``DEFAULT_RETRY_OPTIONS``)."""

standard_backoff: Mapping[str, Any] = MappingProxyType(
    {
        "limit": 8,
        "factor": 1.8,
        "min_timeout_in_ms": 500,
        "max_timeout_in_ms": 30000,
        "randomize": True,
    }
)
"""v2's ``retry.standardBackoff``: 8 attempts, 0.5 s growing ×1.8 up to 30 s."""

exponential_backoff: Mapping[str, Any] = MappingProxyType(
    {
        "limit": 8,
        "factor": 2,
        "min_timeout_in_ms": 1000,
        "max_timeout_in_ms": 30000,
        "randomize": True,
    }
)
"""v2's ``retry.exponentialBackoff``: 8 attempts, 1 s doubling up to 30 s."""

_ALIASES = {"minTimeoutInMs": "min_timeout_in_ms", "maxTimeoutInMs": "max_timeout_in_ms"}


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but `factor=True` is a mistake, not a number.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(name: str, value: Any) -> None:
    if name == "limit":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(
                f"retry limit must be a whole number >= 0 (the total number of attempts; 0 or 1 "
                f"means no retry), not {value!r}."
            )
    elif name == "factor":
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"retry factor must be a number > 0, not {value!r}.")
    elif name == "randomize":
        if not isinstance(value, bool):
            raise ConfigError(f"retry randomize must be True or False, not {value!r}.")
    elif not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"retry {name} must be a number of milliseconds >= 0, not {value!r}.")


def _unknown_key(key: Any) -> ConfigError:
    valid = sorted(DEFAULT_RETRY_OPTIONS)
    close = difflib.get_close_matches(str(key), [*valid, *_ALIASES], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(
        f"Unknown retry option {key!r}.{hint} Valid options: {', '.join(valid)} "
        f"(v2's minTimeoutInMs / maxTimeoutInMs are accepted too)."
    )


def normalize_retry_options(options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validate ``options`` and fill in v2's defaults; ``None`` (no retry) stays ``None``.

    Returns a new dict with exactly the five snake_case keys. Options set to ``None`` count as
    left out (v2 let an explicit ``undefined`` override a default and produce NaN delays: not
    copied, v2 §3.2). Raises ``ConfigError`` for an unknown option (listing the valid ones), an
    option given twice (snake_case and camelCase), or a value of the wrong type or range.
    """
    return None if options is None else _merge(options)


def _merge(options: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise ConfigError(
            f"retry must be a dict of options (for example retry.standard_backoff) or None, "
            f"not {type(options).__name__}."
        )
    given: dict[str, Any] = {}
    for key, value in options.items():
        name = _ALIASES.get(key, key)
        if name not in DEFAULT_RETRY_OPTIONS:
            raise _unknown_key(key)
        if value is None:
            continue
        if name in given:
            raise ConfigError(f"retry option {name!r} is given twice (snake_case and camelCase).")
        _check(name, value)
        given[name] = value
    return {**DEFAULT_RETRY_OPTIONS, **given}


def js_round(x: float) -> int:
    """JavaScript ``Math.round``: halves round up (``2.5`` → 3, ``-2.5`` → -2), not to even.

    This is ``math.floor(x + 0.5)`` without its one double-rounding error (0.49999999999999994,
    where ``x + 0.5`` rounds up to 1.0 while ``Math.round`` gives 0).
    """
    floor = math.floor(x)
    return floor + 1 if x - floor >= 0.5 else floor


def _delay_ms(options: Mapping[str, Any], attempts: int, r: float) -> float | None:
    """v2's ``calculateRetryAt`` minus the clock (v2 §3.2); ``options`` already normalised."""
    retry_count = attempts + 1  # == task.attempts: 1 after the first failure
    if retry_count >= options["limit"]:
        return None
    try:
        growth = options["factor"] ** max(attempts - 1, 0)
    except OverflowError:  # JS gives Infinity here, and the cap below applies
        growth = math.inf
    raw = r * max(options["min_timeout_in_ms"], 1) * growth
    if not math.isfinite(raw):
        return float(options["max_timeout_in_ms"])
    cap: float = options["max_timeout_in_ms"]
    # The random factor applies before the cap: max_timeout_in_ms is a hard ceiling.
    return min(js_round(raw), cap)


def calculate_retry_at(
    options: Mapping[str, Any],
    attempts: int,
    *,
    now: float,
    random: Callable[[], float] = _random.random,
) -> float | None:
    """When to retry, as epoch seconds, or ``None`` when no attempt is left.

    Exactly v2's ``calculateRetryAt(options, attempts)`` (v2 §3.2), which v2 calls with
    ``attempts = task.attempts - 1``; so do callers here. ``options`` may be raw (it is
    normalised; ``ConfigError`` if invalid); ``now`` is the current epoch time in seconds;
    ``random`` returns a float in [0, 1) and is injectable for tests.
    """
    opts = _merge(options)
    r = random() + 1 if opts["randomize"] else 1
    delay = _delay_ms(opts, attempts, r)
    return None if delay is None else now + delay / 1000


def retry_delays(options: Mapping[str, Any]) -> list[float]:
    """The delays in ms before retry 1, 2, ... with ``randomize`` off, until the attempts run out.

    The list has ``limit - 1`` entries (none for ``limit`` 0 or 1). For documentation and tests.
    """
    opts = _merge(options)
    delays: list[float] = []
    while (delay := _delay_ms(opts, len(delays), 1)) is not None:
        delays.append(delay)
    return delays


__all__ = [
    "DEFAULT_RETRY_OPTIONS",
    "calculate_retry_at",
    "exponential_backoff",
    "js_round",
    "normalize_retry_options",
    "retry_delays",
    "standard_backoff",
]
