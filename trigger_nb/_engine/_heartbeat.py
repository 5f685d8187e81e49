"""Renewal of the leases of this process's executions, from a thread of its own (SPEC §10).

Why a thread: the loop that runs job bodies can be blocked for minutes by a cell's own code
(heavy pandas between two tasks). The process is alive and will go on; its lease must not expire
under it, or another process would take the run over. A thread keeps renewing while the loop is
blocked; a *stopped* process (SIGSTOP, a laptop asleep) stops this thread too, so its lease does
expire and the run can be taken over — and then fencing (``Repository.check_lease``) makes sure
the old holder never writes again when it wakes up.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .._store import Lease, Repository

log = logging.getLogger("trigger_nb")


class LeaseKeeper:
    """Renews every held lease each ``repo.lease_ttl / 3`` seconds; reports a lost one."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._held: dict[int, tuple[Lease, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, lease: Lease, execution: Any) -> None:
        """Keep ``lease`` renewed until :meth:`drop`; if a renewal finds it taken over, the
        ``RunBusyError`` is put in ``execution.lost`` (from the keeper's thread) and the
        execution stops at its next task or write."""
        with self._lock:
            self._held[id(lease)] = (lease, execution)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="trigger_nb-leases", daemon=True
                )
                self._thread.start()

    def drop(self, lease: Lease) -> None:
        with self._lock:
            self._held.pop(id(lease), None)

    def stop(self) -> None:
        """Stop the thread (idempotent); leases are no longer renewed."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.repo.lease_ttl / 3):
            with self._lock:
                held = list(self._held.values())
            for lease, execution in held:
                try:
                    if not self.repo.renew_lease(lease):
                        self.drop(lease)
                        execution.lost = lease.lost(self.repo.load_run(lease.run_id))
                except Exception:  # a store hiccup: try again at the next beat
                    log.exception("trigger_nb: renewing the lease of run %s failed", lease.run_id)
