"""How a task's output is stored in its record (or beside it) and read back (SPEC §4.5, §13).

A small output is JSON text inside the task record. A large one (its JSON at least
:data:`LARGE_OUTPUT` long) goes to the task's blob, streamed in chunks, and the record only says
how long it is (``output_in_blob``): embedding it would escape it again and hold it twice more.
A large *str* output is never even encoded whole (``encode_large_string``): storing a 100 MiB
string costs the string plus a chunk. A pickled output is the blob.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .._serde import encode_large_string, encode_output, loads_json

#: Outputs whose JSON is at least this long (characters = bytes: the JSON text is ASCII), or
#: str outputs this long, are stored in the blob instead of inside the task record.
LARGE_OUTPUT = 1 << 20
#: Characters per chunk written to the store.
OUTPUT_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class PreparedOutput:
    """``fields`` to set on the task record, the ``blob`` to store beside it (bytes, chunks or
    ``None``), and the ``value`` to hand user code (what a replay would return)."""

    fields: dict[str, Any]
    blob: bytes | Iterator[bytes] | None
    value: Any


def prepare_output(value: Any, *, serializer: str, limit: int, cache_key: str) -> PreparedOutput:
    """Encode a task's output for the store; raises ``TaskOutputError`` as ``encode_output``."""
    if type(value) is str and len(value) >= LARGE_OUTPUT:
        size, chunks = encode_large_string(value, limit=limit, cache_key=cache_key, chunk=OUTPUT_CHUNK)
        fields = {"output_json": None, "output_encoding": "json", "output_in_blob": size}
        return PreparedOutput(fields, chunks(), value)  # a str round-trips JSON unchanged
    encoded = encode_output(value, serializer=serializer, limit=limit, cache_key=cache_key)
    data = encoded.data
    if encoded.encoding == "pickle":
        blob = data if isinstance(data, bytes) else data.encode()
        return PreparedOutput({"output_json": None, "output_encoding": "pickle"}, blob, encoded.value)
    assert isinstance(data, str)
    if len(data) >= LARGE_OUTPUT:
        fields = {"output_json": None, "output_encoding": "json", "output_in_blob": len(data)}
        return PreparedOutput(fields, _ascii_chunks(data), encoded.value)
    return PreparedOutput({"output_json": data, "output_encoding": "json"}, None, encoded.value)


def stored_output(repo: Any, record: dict[str, Any]) -> Any:
    """The output of a completed task record: inline JSON text, a large JSON output in its
    blob, or a pickled output in its blob. ``repo``: anything with ``load_blob(record)`` (a
    ``Repository``, a run's controls)."""
    if record.get("output_encoding") == "pickle":
        data = repo.load_blob(record)
        return None if data is None else pickle.loads(data)
    if record.get("output_in_blob"):
        data = repo.load_blob(record)
        return None if data is None else json.loads(data)
    text = record.get("output_json")
    return None if text is None else loads_json(text)


def _ascii_chunks(text: str) -> Iterator[bytes]:
    for start in range(0, len(text), OUTPUT_CHUNK):
        yield text[start : start + OUTPUT_CHUNK].encode("ascii")
