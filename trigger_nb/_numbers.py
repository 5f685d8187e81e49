"""Validation of the times and durations users hand to ``io`` methods and options (SPEC §10).

A number that is not finite (NaN, ±inf), or so large that it is no date (``10**400``,
``1e20``), must be refused where it is given: stored, it would break the run for good
(``Infinity`` is not JSON; a date past year 9999 cannot be shown) or wait forever. Every
helper raises the error class its caller names (``ConfigError`` for options, ``PayloadError``
for event fields), with the name of the value and what would be accepted.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from ._exceptions import ConfigError

_UTC = _dt.timezone.utc
#: The epoch seconds a date can have (years 1 to 9999, what ``datetime`` represents).
MIN_EPOCH = _dt.datetime(1, 1, 2, tzinfo=_UTC).timestamp()
MAX_EPOCH = _dt.datetime(9999, 12, 30, tzinfo=_UTC).timestamp()
#: The longest duration accepted anywhere (about 300 years): longer is surely a mistake, and
#: now + it must still be a date.
MAX_SECONDS = 1e10


def is_real(value: Any) -> bool:
    """True for an ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def seconds(
    value: Any,
    what: str,
    *,
    positive: bool = False,
    allow_negative: bool = False,
    error: type[Exception] = ConfigError,
) -> float:
    """``value`` as a finite number of seconds of at most :data:`MAX_SECONDS`.

    ``positive``: must be > 0 (a timeout: 0 or less would wait forever or never); otherwise
    >= 0, or anything down to ``-MAX_SECONDS`` with ``allow_negative`` (a wait, where "not
    positive" means "now"). Raises ``error`` naming ``what``.
    """
    if not is_real(value):
        raise error(f"{what} must be a number of seconds, got {value!r}.")
    low = -MAX_SECONDS if allow_negative else 0.0
    # Compared before float(): a huge int (10**400) has no float and would raise OverflowError.
    if not (low <= value <= MAX_SECONDS) or (positive and value <= 0) or math.isnan(value):
        bound = "> 0" if positive else ">= 0" if not allow_negative else "finite"
        raise error(
            f"{what} must be a {bound} number of seconds (at most {MAX_SECONDS:g}), got {value!r}."
        )
    return float(value)


def wait_limit(value: Any, what: str) -> float | None:
    """How long to wait for something: ``None`` stays ``None`` (its caller's default),
    ``math.inf`` means for ever, anything else goes through :func:`seconds` (NaN or a negative
    would wait for ever or not at all, by accident)."""
    if value is None or (is_real(value) and value == math.inf):
        return value
    return seconds(value, what)


def epoch(when: Any, what: str, *, error: type[Exception] = ConfigError) -> float:
    """A ``datetime`` (naive = local time) or epoch seconds as finite epoch seconds of a date
    in years 1 to 9999. Raises ``error`` naming ``what``."""
    if isinstance(when, _dt.datetime):
        try:
            return (when if when.tzinfo else when.astimezone()).timestamp()
        except (OverflowError, ValueError, OSError):
            raise error(f"{what} {when!r} is out of the range of dates.") from None
    if not is_real(when):
        raise error(f"{what} must be a datetime or epoch seconds, got {type(when).__name__}.")
    if not (MIN_EPOCH <= when <= MAX_EPOCH):  # also false for NaN
        raise error(
            f"{what} must be finite epoch seconds of a date in years 1 to 9999, got {when!r}."
        )
    return float(when)


def finite(value: Any, what: str, *, error: type[Exception] = ConfigError) -> float:
    """``value`` as a finite float (a huge int such as ``10**400`` has none)."""
    if not is_real(value):
        raise error(f"{what} must be a number, got {value!r}.")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise error(f"{what} must be a finite number, got {value!r}.")
    return number


def iso_utc(when: _dt.datetime, what: str, *, error: type[Exception] = ConfigError) -> str:
    """``when`` (naive = UTC) as an ISO 8601 UTC string; ``error`` if it has no UTC date
    (``9999-12-31T23:59:59-01:00`` is past year 9999 in UTC)."""
    moment = when if when.tzinfo else when.replace(tzinfo=_UTC)
    try:
        return moment.astimezone(_UTC).isoformat()
    except (OverflowError, ValueError):
        raise error(f"{what} {when.isoformat()!r} is out of the range of dates.") from None
