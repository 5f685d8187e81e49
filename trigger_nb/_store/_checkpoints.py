"""WAL checkpoints of a diskcache store, done by a thread of their own.

In WAL mode SQLite appends every commit to the ``-wal`` file, and by default the commit that
takes the WAL past 1,000 pages also copies it into the database and waits for two fsyncs —
measured 5-10 ms, once every ~100 callback resumes, mostly on the kernel's event loop (SPEC
§13: 1,000 callbacks/s; a new task's first write pays its share too). The store's connections
turn that off (``wal_autocheckpoint=0``) and this thread checkpoints instead: a commit is as
durable either way (it is in the WAL, which every reader sees), only the copying moves.

Every ``INTERVAL_S`` the thread looks at the WAL's modification time (one ``stat``) and, if any
process wrote to it since, runs a ``PASSIVE`` checkpoint, which never blocks readers or writers.
An idle store costs a ``stat`` per interval. Each process that writes runs its own thread (a
forked child starts one when it first connects); two checkpointing at once is harmless.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref

log = logging.getLogger("trigger_nb")

#: How often the WAL is looked at: it holds at most about this much of the store's writes.
INTERVAL_S = 0.1


class Checkpointer:
    """Checkpoints ``database``'s WAL from a daemon thread until `stop` (or until ``owner`` is
    garbage collected: a store dropped without ``close`` must not leave a thread ticking)."""

    def __init__(self, database: str, owner: object) -> None:
        self._database = database
        self._stopping = threading.Event()
        self.pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="trigger_nb-checkpoint", daemon=True)
        self._thread.start()
        weakref.finalize(owner, self._stopping.set)

    def stop(self) -> None:
        """Stop the thread, after its checkpoint in progress (if any)."""
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        wal = self._database + "-wal"
        seen: int | None = None
        connection: sqlite3.Connection | None = None
        try:
            while not self._stopping.wait(INTERVAL_S):
                try:
                    written = os.stat(wal).st_mtime_ns
                except OSError:  # no WAL yet, or SQLite removed it (last connection closed)
                    continue
                if written == seen:
                    continue
                try:
                    if connection is None:
                        connection = sqlite3.connect(self._database, timeout=1, isolation_level=None)
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    seen = written
                except sqlite3.Error as exc:  # busy, or the store went away: try again later
                    log.debug("trigger_nb: WAL checkpoint of %s failed: %s", self._database, exc)
        finally:
            if connection is not None:
                connection.close()
