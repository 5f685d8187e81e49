"""A run's records as the live task log renders them, kept current from bus notices.

Why (SPEC §13: a 1,000-task run with the log attached costs ≤ 1.2× without): reading every task
record back from the store for each render made the view's cost grow with the run, in the
middle of the execution it watches. Here a render *during* an execution reads nothing from the
store: each ``task`` notice carries its record (a copy is kept), and the run record is read
alone (one key) when an execution begins. Everything else — an execution's end, a run that
finished, waits or was edited by hand (invalidate, complete, prune: run notices), a click in
the log — makes the next render read the run whole, so what a finished execution shows is
exactly what the store holds.

Thread safety: notices arrive in the engine's thread, renders run in a timer thread or the
engine's; the caches are swapped under one lock. A task notice that arrives while the run is
being read is applied on top at the next render (the engine saves a record, then notifies).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .._engine import RunStatus

if TYPE_CHECKING:
    from ._controls import Run


class LiveRecords:
    """``snapshot()`` → ``(run record, tasks in first-seen order, journals)`` of ``run``."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._lock = threading.Lock()
        self._record: dict[str, Any] | None = None
        self._tasks: dict[str, dict[str, Any]] = {}
        self._journals: dict[int, list[Any]] = {}
        self._updates: dict[str, dict[str, Any]] = {}  # task notices since the last snapshot
        self._stale = True  # read everything at the next snapshot
        self._run_stale = False  # read the run record at the next snapshot
        #: Store reads so far, whole runs and run records alone (tests, the benchmark).
        self.reads = {"run": 0, "record": 0}

    def on_notice(self, notice: Any) -> None:
        """Fold one bus notice of this run in (called from the engine's thread)."""
        with self._lock:
            if notice.kind == "task" and notice.task is not None:
                self._updates[notice.task["id"]] = dict(notice.task)
            elif notice.kind == "run" and notice.data.get("status") == RunStatus.EXECUTING:
                self._run_stale = True  # an execution begins: its tasks will all be notified
            elif notice.kind != "execution" or notice.data.get("event") == "end":
                self._stale = True

    def invalidate(self) -> None:
        """Read everything at the next snapshot (a click; a change made in another process)."""
        with self._lock:
            self._stale = True

    def snapshot(self) -> tuple[dict[str, Any], list[dict[str, Any]], dict[int, list[Any]]]:
        with self._lock:
            full, self._stale = self._stale or self._record is None, False
            record_only, self._run_stale = self._run_stale and not full, False
            if full:
                self._updates = {}  # the store holds them already (saved, then notified)
        if full:
            try:
                record, tasks, journals = self.run.records()
            except BaseException:
                self.invalidate()  # (a run forgotten meanwhile: the caller shows that)
                raise
            self.reads["run"] += 1
            with self._lock:
                self._record, self._journals = record, journals
                self._tasks = {task["id"]: task for task in tasks}
        elif record_only:
            record = self.run.record
            self.reads["record"] += 1
            with self._lock:
                self._record = record
        with self._lock:
            if self._updates:
                self._tasks.update(self._updates)  # a new id goes last: first-seen order
                self._updates = {}
            assert self._record is not None
            return self._record, list(self._tasks.values()), self._journals
