"""Hand edits of a run's stored tasks: invalidate a completed task, complete a failed one.

What the task log's **Invalidate** and **Complete with value** controls do (SPEC §3, §8).
Both hold the run's lease while they write, so they never race an execution in this or
another process (``RunBusyError`` instead). :func:`invalidate` leaves the run for its next
execution (the run record lists the forgotten display keys under ``invalidated``; views show
those that have not run again yet; a task the latest execution no longer reaches is deleted
and not listed: no execution will run it again); :func:`complete` continues the run at once. They use the
runner's public side only (``repo``, ``bus``, ``is_active``, ``execute``).
"""

from __future__ import annotations

import time
from typing import Any

from .._exceptions import ConfigError, RunBusyError
from .._serde import encode_output
from .._store import Lease, Repository
from ._bus import Notice
from ._reach import unreached_tasks
from ._states import TaskStatus, advance_task


def _find(tasks: list[dict[str, Any]], run_id: str, task_id: str) -> dict[str, Any]:
    for task in tasks:
        if task["id"] == task_id:
            return task
    raise ConfigError(f"Run {run_id} has no task {task_id!r} (see run.tasks for the task ids).")


def _descendants(tasks: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    children: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        if task.get("parent_id"):
            children.setdefault(task["parent_id"], []).append(task)
    found, todo = [], [task_id]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child["id"])
    return found


def _leased(repo: Repository, run_id: str, executing_here: bool) -> Lease:
    """Take the run's lease (the caller releases it); its writes check it (fenced, SPEC §10)."""
    if executing_here:
        raise RunBusyError(
            f"Run {run_id} is executing right now; wait until it finishes or suspends.",
            holder=repo.holder,
        )
    lease = repo.acquire_lease(run_id)
    if lease is None:
        raise ConfigError(f"No run {run_id!r} in the store at {repo.store.location}.")
    return lease


def invalidate_task(repo: Repository, run_id: str, task_id: str, *, executing_here: bool) -> dict[str, Any]:
    """Forget COMPLETED task ``task_id`` and the tasks started inside it, so the next
    execution runs it again. Returns the run record, which lists the display key under
    ``invalidated`` until that execution begins (unless the latest execution no longer reached
    the task, SPEC §2 "Not reached": then it is only deleted). Raises ``ConfigError`` for an unknown or
    unfinished task, ``RunBusyError`` while the run executes."""
    lease = _leased(repo, run_id, executing_here)
    try:
        with repo.store.transaction():
            run = repo.check_lease(lease)
            tasks = repo.load_tasks(run_id)
            task = _find(tasks, run_id, task_id)
            if task["status"] != TaskStatus.COMPLETED:
                raise ConfigError(
                    f"Task {task['display_key']!r} is {task['status']}: only a COMPLETED task can be "
                    "invalidated (retry a failed one, or complete it with a value)."
                )
            latest = repo.load_journal(run_id, run.get("executions", 0))
            unused = any(t["id"] == task_id for t in unreached_tasks(run, tasks, latest))
            for forgotten in [task, *_descendants(tasks, task_id)]:
                repo.delete_task(forgotten)
            # the keys still forgotten (a key that ran again since is no longer listed)
            present = {t["display_key"] for t in tasks}
            earlier = [key for key in run.get("invalidated") or [] if key not in present]
            run["invalidated"] = earlier if unused else [*earlier, task["display_key"]]
            run["updated_at"] = time.time()
            repo.save_run(run)
    finally:
        repo.release_lease(lease)
    return run


def complete_task(
    repo: Repository, run_id: str, task_id: str, value: Any, *, executing_here: bool
) -> dict[str, Any]:
    """Give failed task ``task_id`` (ERRORED, or WAITING for its next retry) ``value`` as its
    output: it becomes COMPLETED, and replays with that output from then on. Returns the task
    record. Raises ``ConfigError`` for an unknown task or one that did not fail,
    ``TaskOutputError`` (from serde) for a value that cannot be stored as JSON, ``RunBusyError`` while the
    run executes."""
    lease = _leased(repo, run_id, executing_here)
    try:
        with repo.store.transaction():
            repo.check_lease(lease)
            task = _find(repo.load_tasks(run_id), run_id, task_id)
            failed = task["status"] == TaskStatus.ERRORED or (
                task["status"] == TaskStatus.WAITING and task.get("retry_at") is not None
            )
            if not failed:
                raise ConfigError(
                    f"Task {task['display_key']!r} is {task['status']}: only a failed task (ERRORED, "
                    "or waiting to retry) can be completed with a value."
                )
            encoded = encode_output(value, cache_key=task["display_key"])
            task["output_json"] = encoded.data
            task["output_encoding"] = "json"
            advance_task(task, TaskStatus.COMPLETED)
            task["completed_at"] = time.time()
            task["resolved_by"] = "manual"
            task["error"] = None  # the error it replaces stays in the journals (history)
            task.pop("retry_at", None)
            repo.save_task(task)
    finally:
        repo.release_lease(lease)
    return task


def invalidate(runner: Any, run_id: str, task_id: str) -> dict[str, Any]:
    """:func:`invalidate_task` for ``runner``'s run, then tell the views (a run notice)."""
    run = invalidate_task(runner.repo, run_id, task_id, executing_here=runner.is_active(run_id))
    runner.bus.emit(Notice("run", run_id, data={"status": run["status"]}))
    return run


async def complete(runner: Any, run_id: str, task_id: str, value: Any) -> dict[str, Any]:
    """:func:`complete_task`, then continue the run: the task replays its new output."""
    complete_task(runner.repo, run_id, task_id, value, executing_here=runner.is_active(run_id))
    return dict(await runner.execute(run_id))
