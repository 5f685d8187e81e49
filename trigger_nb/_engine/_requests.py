"""Store-only changes to a run that leave its execution to the process defining its job.

Executing a run needs its job's function, which only the process that defined the job has
(a kernel that ran the cell). A process without it (the CLI) changes the stored records and
leaves a wake-up marker, durably; the defining process's :meth:`Runner.watch` takes the marker
within 0.5 s, or the next process that defines the job does when it starts watching.
Imports only the store and the engine's state table.
"""

from __future__ import annotations

import time
from typing import Any

from .._exceptions import ConfigError
from .._store import Repository
from ._states import RunStatus, TaskStatus

#: Statuses a retry executes again (ERRORED tasks run again, completed ones replay).
RETRYABLE = frozenset({RunStatus.FAILURE, RunStatus.CANCELED, RunStatus.TIMED_OUT})


def wants_execution(run: dict[str, Any]) -> bool:
    """Should a wake-up execute this run? A waiting run, or a finished one whose retry was
    requested by a process that could not execute it (:func:`request_retry`)."""
    return run["status"] == RunStatus.WAITING or (
        bool(run.get("retry_requested")) and run["status"] in RETRYABLE
    )


def make_due(repo: Repository, run_id: str) -> int:
    """Store only: the run's pending waits and retry delays become due now; how many."""
    now = time.time()
    count = 0
    with repo.store.transaction():
        for task in repo.load_tasks(run_id):
            if task["status"] != TaskStatus.WAITING:
                continue
            changes = {f: now for f in ("delay_until", "retry_at") if (task.get(f) or 0) > now}
            if changes:
                task.update(changes)
                repo.save_task(task)
                count += 1
    return count


def request_resume(repo: Repository, run_id: str) -> int:
    """Make a WAITING run's waits and retry delays due now and mark it for wake-up.

    Returns how many waits/delays became due (0: it waits only for callbacks or events,
    which this cannot complete; nothing is marked then). ``ConfigError`` if the run does
    not exist or is not WAITING.
    """
    with repo.store.transaction():
        run = _load_for_request(repo, run_id)
        if run["status"] != RunStatus.WAITING:
            hint = " (retry executes a failed or canceled run again)" if run["status"] in RETRYABLE else ""
            raise ConfigError(f"Run {run_id} is {run['status']}, not WAITING: there is nothing to resume{hint}.")
        count = make_due(repo, run_id)
        if count:
            repo.mark_wake(run_id, time.time())
    return count

def request_retry(repo: Repository, run_id: str) -> None:
    """Mark a FAILURE/CANCELED/TIMED_OUT run for retry and for wake-up: the process that
    defines its job executes it again as :meth:`Runner.execute` does (ERRORED tasks run again,
    attempts continue; completed tasks replay). ``ConfigError`` for any other status."""
    with repo.store.transaction():
        run = _load_for_request(repo, run_id)
        if run["status"] not in RETRYABLE:
            hint = {
                RunStatus.SUCCESS: "it succeeded; re-executing its cell replays it",
                RunStatus.WAITING: "it is waiting; resume makes its waits due now",
            }.get(run["status"], "it has not finished")
            raise ConfigError(f"Run {run_id} is {run['status']}: there is nothing to retry ({hint}).")
        run["retry_requested"] = True
        repo.save_run(run)
        repo.mark_wake(run_id, time.time())

def _load_for_request(repo: Repository, run_id: str) -> dict[str, Any]:
    run = repo.load_run(run_id)
    if run is None:
        raise ConfigError(f"No run {run_id!r} in the store at {repo.store.location}.")
    return run
