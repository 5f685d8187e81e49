"""Encoding and decoding of stored records.

Records are encoded without NaN or infinities (``allow_nan=False``): ``Infinity`` is not JSON,
and a record holding it could not be read back (SPEC §10) — values are validated where users
give them, this is the last line.

Task records are decoded with orjson when it is available (about 5x faster than the stdlib on
the replay hot path, SPEC §13), and records are encoded with it (about 10x faster; every task
write encodes its record) when that is exact: orjson writes NaN and infinities as ``null``
without a word, so text holding ``null`` must decode back to a record equal to the value (a NaN
or an infinity would have come back as ``None``, which equals neither); else the strict stdlib
encoder has the last word. A run record holds several ``null``: the round trip costs ~3 µs
against ~9 µs for the stdlib, and runs are saved twice per execution.

orjson refuses integers beyond 64 bits (a user's params may hold one) and turns large ones into
floats when decoding, so such a record falls back to the stdlib, and user values that must stay
exact (outputs) are kept inside task records as JSON *text* and decoded with the stdlib; run
records (payloads) are always decoded with the stdlib.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .._exceptions import StoreError

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def encode_record(key: str, value: Any) -> str:
    """``value`` as compact JSON text; :class:`StoreError` if it holds NaN or an infinity."""
    if _fast_dumps is not None:
        try:
            data = _fast_dumps(value)
        except TypeError:  # an integer beyond 64 bits, a key that is not a str: the stdlib
            pass
        else:
            if b"null" not in data or _fast_loads(data) == value:  # no NaN or inf became null
                return data.decode()
    try:
        return _dumps(value)
    except ValueError as exc:
        raise StoreError(
            f"Refused to store {key!r}: it holds a number that is not finite ({exc}). Such values "
            "are refused where they are given; this one slipped through, please report it."
        ) from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_exact(text: str) -> Any:
    """The stdlib decoder, refusing ``NaN``/``Infinity`` as orjson does."""
    return json.loads(text, parse_constant=_no_constants)


try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the stdlib still works
    loads_record: Callable[[str], Any] = loads_exact
    _fast_dumps: Callable[[Any], bytes] | None = None
else:
    _fast_dumps = orjson.dumps
    _fast_loads = orjson.loads

    def loads_record(text: str) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return loads_exact(text)  # an integer beyond 64 bits; or really not JSON: raises
