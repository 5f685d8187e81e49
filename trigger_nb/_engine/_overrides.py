"""Hand edits of a run's stored tasks: invalidate a completed task, complete a failed one.

What the task log's **Invalidate** and **Complete with value** controls do (SPEC §3, §8),
as plain operations on the store. Both hold the run's lease while they write, so they never
race an execution in this or another process (``RunBusyError`` instead); neither executes
the run — the caller decides (``TriggerClient.complete`` continues it at once,
``TriggerClient.invalidate`` leaves it for the next execution).
"""

from __future__ import annotations

import time
from typing import Any

from .._exceptions import ConfigError, RunBusyError
from .._serde import encode_output
from .._store import Repository
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


def _leased(repo: Repository, run_id: str, executing_here: bool) -> dict[str, Any]:
    """Load the run and take its lease (the caller releases it)."""
    if executing_here:
        raise RunBusyError(
            f"Run {run_id} is executing right now; wait until it finishes or suspends.",
            holder=repo.holder,
        )
    if repo.load_run(run_id) is None:
        raise ConfigError(f"No run {run_id!r} in the store at {repo.store.location}.")
    repo.acquire_lease(run_id)
    run = repo.load_run(run_id)
    assert run is not None
    return run


def invalidate_task(repo: Repository, run_id: str, task_id: str, *, executing_here: bool) -> dict[str, Any]:
    """Forget COMPLETED task ``task_id`` and the tasks started inside it, so the next
    execution runs it again. Returns the run record, which lists the display key under
    ``invalidated`` until that execution begins. Raises ``ConfigError`` for an unknown or
    unfinished task, ``RunBusyError`` while the run executes."""
    _leased(repo, run_id, executing_here)
    try:
        with repo.store.transaction():
            run = repo.load_run(run_id)
            assert run is not None
            tasks = repo.load_tasks(run_id)
            task = _find(tasks, run_id, task_id)
            if task["status"] != TaskStatus.COMPLETED:
                raise ConfigError(
                    f"Task {task['display_key']!r} is {task['status']}: only a COMPLETED task can be "
                    "invalidated (retry a failed one, or complete it with a value)."
                )
            for forgotten in [task, *_descendants(tasks, task_id)]:
                repo.delete_task(forgotten)
            run["invalidated"] = [*(run.get("invalidated") or []), task["display_key"]]
            run["updated_at"] = time.time()
            repo.save_run(run)
    finally:
        repo.release_lease(run_id)
    return run


def complete_task(
    repo: Repository, run_id: str, task_id: str, value: Any, *, executing_here: bool
) -> dict[str, Any]:
    """Give failed task ``task_id`` (ERRORED, or WAITING for its next retry) ``value`` as its
    output: it becomes COMPLETED, and replays with that output from then on. Returns the task
    record. Raises ``ConfigError`` for an unknown task or one that did not fail,
    ``TaskOutputError`` (from serde) for a value that cannot be stored as JSON, ``RunBusyError`` while the
    run executes."""
    _leased(repo, run_id, executing_here)
    try:
        with repo.store.transaction():
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
        repo.release_lease(run_id)
    return task
