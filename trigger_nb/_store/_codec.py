"""Encoding and decoding of stored records.

Task records are decoded with orjson when it is available (about 5x faster than the stdlib on
the replay hot path, SPEC §13). orjson turns integers beyond 64 bits into floats, so it is only
used for task records, whose user values that must stay exact (outputs) are kept inside them as
JSON *text* and decoded with the stdlib; run records (payloads) always use the stdlib.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

loads_exact: Callable[[str], Any] = json.loads

# One stdlib encoder for every record: json.dumps(separators=...) would build one per call.
_dumps_exact = json.JSONEncoder(separators=(",", ":")).encode

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the stdlib still works
    loads_record: Callable[[str], Any] = json.loads
    dumps_record: Callable[[Any], str] = _dumps_exact
else:
    loads_record = orjson.loads
    # Whatever orjson would encode differently from the stdlib (an int beyond 64 bits, a
    # non-str key, a subclass of str/int/dict, a datetime or dataclass) makes it raise, and
    # the stdlib encodes the record instead: the stored text means the same either way.
    _PASSTHROUGH = (
        orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_SUBCLASS
    )
    _orjson_dumps = orjson.dumps
    _orjson_error = orjson.JSONEncodeError

    def dumps_record(value: Any) -> str:
        """A record as compact JSON text (orjson, ~5x the stdlib; the stdlib when orjson
        would differ)."""
        try:
            return _orjson_dumps(value, option=_PASSTHROUGH).decode()
        except (TypeError, _orjson_error):
            return _dumps_exact(value)
