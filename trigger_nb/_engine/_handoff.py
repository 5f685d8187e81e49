"""Run ids handed from any thread to the home loop in batches (SPEC §13: 1,000 callbacks/s).

The receiver resolves callbacks on its own thread; each resolved run must resume on the loop.
One ``call_soon_threadsafe`` per callback wakes the loop (and trades the interpreter lock) once
per callback; here the first id of a batch schedules one drain, later ones just join the batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Handoff:
    """``add(run_id)`` from any thread; ``deliver(run_id)`` runs on the loop, once per id per
    batch (a run resolved twice before the drain resumes once)."""

    def __init__(self, host: Any, deliver: Callable[[str], None]) -> None:
        self._host = host
        self._deliver = deliver
        self._pending: list[str] = []
        self._lock = threading.Lock()

    def add(self, run_id: str) -> None:
        with self._lock:
            first = not self._pending
            self._pending.append(run_id)
        if first:  # otherwise a drain is already scheduled and will take this one too
            self._host.call_soon(self._drain)

    def _drain(self) -> None:
        with self._lock:
            run_ids, self._pending = self._pending, []
        for run_id in dict.fromkeys(run_ids):
            self._deliver(run_id)
