"""Decoding of stored records.

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

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the stdlib still works
    loads_record: Callable[[str], Any] = json.loads
else:
    loads_record = orjson.loads
