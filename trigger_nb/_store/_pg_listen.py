"""``LISTEN`` on the store's channel in a background thread, surviving dropped connections.

Theory of operation: one thread holds one dedicated connection that ``LISTEN``\\ s on the
store's channel and waits in ``select()`` on that connection's socket and on a self-pipe (so
:meth:`Listener.stop` wakes it at once, without a round trip to a server that may be gone).
Every notification's payload goes to the callback. When the connection drops (server restart,
``pg_terminate_backend``, a network cut found by TCP keepalives or by the heartbeat query), the
thread reconnects with a bounded backoff and then calls ``callback(None)``: notices sent while
it was away are lost by PostgreSQL, so the subscriber re-checks the durable records — nothing
is missed, only coalesced. It calls ``callback(None)`` after the first connection too, which
closes the gap between a subscriber's first look at the store and ``LISTEN`` taking effect.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("trigger_nb")

#: Seconds without traffic after which the connection is probed with ``SELECT 1``.
HEARTBEAT = 15.0
#: Reconnection backoff bounds, seconds.
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0
#: TCP keepalives for the listening connection (a silent network cut is found in ~30 s).
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3"}


class Listener:
    """Delivers notifications on ``channel`` to ``callback`` until :meth:`stop`.

    ``connect()`` opens an autocommit connection (raising on failure); ``callback(payload)``
    runs on the listener thread and must be quick (hand work to a loop); ``payload`` is
    ``None`` after each (re)connection.
    """

    def __init__(self, connect: Callable[[], Any], channel: str, callback: Callable[[str | None], None]) -> None:
        self._connect = connect
        self._channel = channel
        self._callback = callback
        self._stopped = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="trigger_nb-listen", daemon=True)
        #: How many times a LISTEN connection was established (tests watch reconnections).
        self.connections = 0
        #: The server PID of the current listening connection (tests terminate it).
        self.backend_pid: int | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (it closes its connection) and wait for it."""
        self._stopped.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _run(self) -> None:
        from psycopg import sql

        backoff = BACKOFF_FIRST
        while not self._stopped.is_set():
            try:
                conn = self._connect()
            except Exception as exc:
                log.debug("trigger_nb: LISTEN connection failed (%s); retrying in %.2f s", exc, backoff)
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            try:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                self.connections += 1
                self.backend_pid = conn.info.backend_pid
                backoff = BACKOFF_FIRST
                self._deliver(None)  # (re)connected: whatever was sent meanwhile, look now
                self._listen(conn)
            except Exception as exc:
                if not self._stopped.is_set():
                    log.warning("trigger_nb: the store's LISTEN connection dropped (%s); reconnecting", exc)
                    self._stopped.wait(backoff)
            finally:
                self.backend_pid = None
                conn.close()

    def _listen(self, conn: Any) -> None:
        fd = conn.fileno()
        while not self._stopped.is_set():
            ready, _, _ = select.select([fd, self._wake_r], [], [], HEARTBEAT)
            if self._wake_r in ready:
                return
            notices = list(conn.notifies(timeout=0)) if ready else []
            if not notices:
                # Quiet (heartbeat) or readable without a notification (a server message, or
                # the connection closing): a query finds out which, raising if it is gone.
                conn.execute("SELECT 1")
                notices = list(conn.notifies(timeout=0))
            for notice in notices:
                self._deliver(notice.payload)

    def _deliver(self, payload: str | None) -> None:
        try:
            self._callback(payload)
        except Exception:
            log.exception("trigger_nb: handling a store notice failed")
