"""Finding runs left EXECUTING by a process that died (SPEC §10: orphans are resumed).

Whatever started a run — a cell, ``invoke``, an event, a schedule, a timer — the transaction
that makes it EXECUTING also writes an ``exec/{run_id}`` marker, and the one that ends the
execution deletes it, so a key scan finds every run under way without reading any record. A run
whose marker stays while its lease is free (expired, or its holder provably dead) is an orphan:
the next started client that has its job defined resumes it — at once for a holder seen dead on
this host, else at the lease's expiry. A polled store is scanned every half second; a store
that pushes notices is scanned when another process starts executing a run and at the earliest
lease expiry seen (:attr:`OrphanFinder.next_due`), never on a fixed period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._exceptions import StoreError
from .._store import Repository
from ._states import RunStatus

log = logging.getLogger("trigger_nb")


def is_orphaned(run: dict[str, Any]) -> bool:
    """What an orphan's resumption executes: a run still EXECUTING once its lease is ours."""
    return bool(run["status"] == RunStatus.EXECUTING)


class OrphanFinder:
    """``scan()`` hands each orphan of a defined job to ``resume(run_id)``; runs for which
    ``busy(run_id)`` is true (executing or being resumed here) are left alone."""

    def __init__(
        self,
        repo: Repository,
        jobs: Mapping[str, Any],
        *,
        busy: Callable[[str], bool],
        resume: Callable[[str], object],
    ) -> None:
        self.repo = repo
        self.jobs = jobs
        self.busy = busy
        self.resume = resume
        self._next_look: dict[str, float] = {}  # run id -> when to read its record again
        self.next_due: float | None = None
        """After :meth:`scan`: when a run marked EXECUTING elsewhere may next be an orphan."""

    def scan(self) -> int:
        """Resume the orphans found now; returns how many."""
        now = time.time()
        later = now + self.repo.lease_ttl
        taken = 0
        looks: list[float] = []
        for run_id in self.repo.executing_runs():
            if self.busy(run_id):
                continue
            if self._next_look.get(run_id, 0.0) > now:
                looks.append(self._next_look[run_id])
                continue
            try:
                run = self.repo.load_run(run_id)
            except StoreError as exc:  # one undecodable run must not stop the others
                log.warning("%s", exc)
                self._next_look[run_id] = later
                continue
            if run is None or run["status"] != RunStatus.EXECUTING or run["job_id"] not in self.jobs:
                self._next_look[run_id] = later  # finished meanwhile, or not a job of ours
            elif not self.repo.lease_is_free(run, now):
                self._next_look[run_id] = run["lease"]["expires_at"]  # alive, or not provably dead
            else:
                # Not again before a lease's time: an execution that keeps crashing must not spin.
                self._next_look[run_id] = later
                self.resume(run_id)
                taken += 1
            looks.append(self._next_look[run_id])
        self.next_due = min(looks, default=None)
        return taken

    async def watch(self, notice: asyncio.Event) -> None:
        """For a store that pushes notices (no polling): scan when ``notice`` is set (a run
        started executing elsewhere, a reconnection) and at :attr:`next_due`; runs forever."""
        while True:
            try:
                self.scan()
            except Exception:
                log.exception("trigger_nb: looking for orphaned runs failed")
            due = self.next_due
            delay = self.repo.lease_ttl if due is None else max(0.05, due - time.time() + 0.05)
            notice.clear()
            try:
                await asyncio.wait_for(notice.wait(), delay)
            except TimeoutError:
                pass
