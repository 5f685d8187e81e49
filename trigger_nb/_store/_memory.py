"""An in-memory :class:`Store` for fast unit tests (also exported by ``trigger_nb.testing``)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._base import Store
from ._codec import encode_record


class MemoryStore(Store):
    """A process-local store. Records are JSON round-tripped so tests see what disk would."""

    def __init__(self) -> None:
        self.location = "<memory>"
        self._data: dict[str, Any] = {}
        self._lock = threading.RLock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            raw = self._data.get(key)
        return None if raw is None or isinstance(raw, bytes) else json.loads(raw)

    def scan(self, prefix: str, *, decode: Callable[[str], Any] = json.loads) -> list[tuple[str, Any]]:
        with self._lock:
            items = [(k, v) for k, v in self._data.items() if k.startswith(prefix)]
        return [(k, decode(v)) for k, v in items if not isinstance(v, bytes)]

    def put(self, key: str, value: Any) -> None:
        raw = encode_record(key, value)
        with self._lock:
            self._data[key] = raw

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._data.pop(key, None) is not None

    def get_blob(self, key: str) -> bytes | None:
        with self._lock:
            raw = self._data.get(key)
        return copy.copy(raw) if isinstance(raw, bytes) else None

    def put_blob(self, key: str, data: bytes) -> None:
        with self._lock:
            self._data[key] = bytes(data)

    def keys(self, prefix: str) -> list[str]:
        with self._lock:
            return [k for k in self._data if k.startswith(prefix)]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            yield
