"""Items handed from any thread to the home loop in batches (SPEC §13: 1,000 callbacks/s).

A callback POST is resolved (and its run resumed) on the loop. One ``call_soon_threadsafe`` per
item would wake the loop (and trade the interpreter lock) once per item; here the first item of
a batch schedules one drain, later ones just join the batch, and the drain delivers them all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    """``add(item)`` from any thread; ``deliver(items)`` gets every item added since the last
    drain, in order. The drain is scheduled on the home loop (``host.call_soon``) by the first
    item of a batch; ``drain()`` may also be called from any thread to deliver there, now
    (each item is delivered once, by whichever drain takes it)."""

    def __init__(self, host: Any, deliver: Callable[[list[T]], None]) -> None:
        self._host = host
        self._deliver = deliver
        self._pending: list[T] = []
        self._lock = threading.Lock()

    def add(self, item: T) -> None:
        """Queue ``item``; ``RuntimeError`` if the home loop is closed (the item stays queued
        for a later ``drain``)."""
        with self._lock:
            first = not self._pending
            self._pending.append(item)
        if first:  # otherwise a drain is already scheduled and will take this one too
            self._host.call_soon(self.drain)

    def drain(self) -> None:
        with self._lock:
            items, self._pending = self._pending, []
        if items:
            self._deliver(items)
