"""One object per run id, kept only while someone uses it.

The runner serialises work on a run with an ``asyncio.Lock`` and wakes ``wait_finished`` callers
with an ``asyncio.Event``, one per run. Kept in plain dicts, they piled up for every run a
long-lived kernel (or ``trigger-nb serve``) ever touched; here an entry is dropped when its last
user is done. Home-loop only: not thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class PerRun(Generic[T]):
    """``with per_run.use(run_id) as obj``: the run's object (made by ``factory`` for its first
    user), shared by every concurrent user and forgotten after the last one."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._entries: dict[str, tuple[T, list[int]]] = {}

    @contextmanager
    def use(self, run_id: str) -> Iterator[T]:
        entry = self._entries.get(run_id)
        if entry is None:
            entry = self._entries[run_id] = (self._factory(), [0])
        obj, users = entry
        users[0] += 1
        try:
            yield obj
        finally:
            users[0] -= 1
            if not users[0]:
                del self._entries[run_id]

    def get(self, run_id: str) -> T | None:
        """The run's object if someone uses it now (never creates one)."""
        entry = self._entries.get(run_id)
        return None if entry is None else entry[0]

    def __len__(self) -> int:
        return len(self._entries)
