"""Time limits for slow clients: a connection whose request head or body does not arrive in
time is cut.

Why a sweep and not a timer per read (tornado's way, which this replaced): a timeout future per
header read and a task and a timeout future per body read measured ~40 µs of the receiver's CPU
per request, about a tenth of what a callback costs it (SPEC §13: 1,000 callbacks/s). Here a
request costs a few dict writes, and a sweep runs once a second while anything is watched.

Single-threaded: every method is called on the receiver's event loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

#: How often overdue connections are looked for: a stalled one is cut between its limit and
#: its limit plus this.
SWEEP_S = 1.0


class Watched(Protocol):
    def stalled(self) -> None:
        """The time limit passed: close the connection."""

    def gone(self) -> bool:
        """Its connection is closed (dropped at the next sweep, should nobody have said
        ``forget``)."""


class Deadlines:
    """``watch(connection, seconds)`` starts (or restarts) its limit; ``forget`` ends it; past
    the limit, ``connection.stalled()`` is called, once. A connection that is gone is dropped
    at the next sweep (so at most a second's worth of closed ones are held)."""

    def __init__(self) -> None:
        self._due: dict[Watched, float] = {}
        self._sweep: asyncio.TimerHandle | None = None

    def watch(self, watched: Watched, seconds: float) -> None:
        self._due[watched] = time.monotonic() + seconds
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_S, self._cut_overdue)

    def forget(self, watched: Watched) -> None:
        self._due.pop(watched, None)

    def close(self) -> None:
        """Stop sweeping (the server is stopping)."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._due.clear()

    def _cut_overdue(self) -> None:
        self._sweep = None
        now = time.monotonic()
        for watched, due in list(self._due.items()):
            if watched.gone():
                del self._due[watched]
            elif due <= now:
                del self._due[watched]
                watched.stalled()
        if self._due:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_S, self._cut_overdue)
