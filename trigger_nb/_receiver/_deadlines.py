"""Time limits for slow clients: a request whose headers or body do not arrive in time is cut.

Why not tornado's own timeouts (``idle_connection_timeout``, ``body_timeout``): tornado wraps
every header read in a timeout future, and every body read in a task and a timeout future —
measured ~40 µs of the receiver's CPU per request, about a tenth of what a callback costs it
(SPEC §13: 1,000 callbacks/s). Here a request costs a few dict writes, and a sweep runs once
a second while any request is being read.

Single-threaded: every method is called on the receiver's event loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

#: How often overdue requests are looked for: a stalled request is cut between its limit and
#: its limit plus this.
SWEEP_S = 1.0


class Watched(Protocol):
    def stalled(self) -> None:
        """The time limit passed: close the connection."""

    def gone(self) -> bool:
        """Its connection is closed (a client may close a kept-alive connection while it is
        watched for its next request's headers, and tornado tells no delegate of that)."""


class Deadlines:
    """``watch(request, seconds)`` starts (or restarts) ``request``'s limit; ``forget`` ends it;
    past the limit, ``request.stalled()`` is called, once. A request whose connection is gone
    is dropped at the next sweep (so at most a second's worth of closed ones are held)."""

    def __init__(self) -> None:
        self._due: dict[Watched, float] = {}
        self._sweep: asyncio.TimerHandle | None = None

    def watch(self, request: Watched, seconds: float) -> None:
        self._due[request] = time.monotonic() + seconds
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_S, self._cut_overdue)

    def forget(self, request: Watched) -> None:
        self._due.pop(request, None)

    def close(self) -> None:
        """Stop sweeping (the server is stopping)."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._due.clear()

    def _cut_overdue(self) -> None:
        self._sweep = None
        now = time.monotonic()
        for request, due in list(self._due.items()):
            if request.gone():
                del self._due[request]
            elif due <= now:
                del self._due[request]
                request.stalled()
        if self._due:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_S, self._cut_overdue)
