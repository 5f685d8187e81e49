"""An execution's view of its run's task records (SPEC §4, §13).

Records arrive as stored JSON text (``Repository.load_task_texts``: one read per execution) and
are decoded only when their task is reached. A replayed COMPLETED record is decoded, used and
dropped; a record that may still change (waiting, running, failed) is kept decoded. So replaying
a run of 50,000 tasks never holds 50,000 dicts for the garbage collector to walk, and a pure
replay never decodes a record twice. An undecodable record raises the ``StoreError`` that
``undecodable(key, error)`` builds, naming the run (SPEC §10: that run fails, no other).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .._exceptions import StoreError
from .._store._codec import loads_record
from ._states import TaskStatus


class TaskRecords:
    """Task records by idempotency key; also hands out ``seq`` numbers and remembers which
    records were created here and never stored (their first write can be an insert)."""

    def __init__(
        self,
        stored: dict[str, str] | list[dict[str, Any]],
        undecodable: Callable[[str, BaseException], StoreError],
    ) -> None:
        self._records: dict[str, dict[str, Any] | str] = (
            dict(stored) if isinstance(stored, dict) else {t["idempotency_key"]: t for t in stored}
        )
        self._undecodable = undecodable
        self._next_seq: int | None = None  # computed when the first new task needs one
        self._unstored: set[str] = set()
        #: The StoreError raised for an undecodable record, if any (the runner re-raises it).
        self.corrupt: StoreError | None = None

    def get(self, key: str) -> dict[str, Any] | None:
        record = self._records.get(key)
        if record is None or isinstance(record, dict):
            return record
        decoded = self._decode(key, record)
        if decoded["status"] != TaskStatus.COMPLETED:
            self._records[key] = decoded  # it may change in this execution: keep it
        return decoded

    def __setitem__(self, key: str, record: dict[str, Any]) -> None:
        self._records[key] = record

    def all(self) -> Iterator[dict[str, Any]]:
        """Every record, decoded (records still stored as text are decoded, not kept)."""
        for key, record in list(self._records.items()):
            yield self._decode(key, record) if isinstance(record, str) else record

    def new_seq(self, key: str) -> int:
        """The next ``seq`` (first-seen order) for a new task ``key``, never stored yet."""
        if self._next_seq is None:
            self._next_seq = max((r.get("seq", 0) for r in self.all()), default=0) + 1
        seq = self._next_seq
        self._next_seq += 1
        self._unstored.add(key)
        return seq

    def first_write(self, key: str) -> bool:
        """True once, for the first write of a record created by :meth:`new_seq`."""
        if key in self._unstored:
            self._unstored.discard(key)
            return True
        return False

    def _decode(self, key: str, text: str) -> dict[str, Any]:
        try:
            decoded: dict[str, Any] = loads_record(text)
            return decoded
        except ValueError as exc:
            self.corrupt = self._undecodable(key, exc)
            raise self.corrupt from None
