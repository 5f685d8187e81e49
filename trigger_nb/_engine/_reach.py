"""What the latest execution of a run made of its stored tasks: changed code, unreached tasks.

Pure functions over stored records (the run, its tasks, its execution journals), shared by the
views (``Run.tasks``, the text and HTML logs, the widget) and by ``client.prune``.

**Code changed** (SPEC §2): the latest execution replayed the task although the code of its
function differs from the code that produced the stored output (the journal entry carries
``"code_changed"``, see ``Execution.journal``). A task run again with ``rerun_changed`` is not
marked: its output is fresh.

**Not reached** (SPEC §2): a stored task that the code no longer uses — a renamed key, a
deleted step. Precisely, a task is *not reached* when

1. the latest execution **succeeded** (the body returned): only then did the body get the
   chance to reach every task it still calls. An execution that suspended (a wait, a retry
   delay, a callback) or failed stopped early, so the tasks after that point are legitimately
   unvisited; a run that is executing, waiting, failed or canceled has no unreached tasks;
2. the latest execution did not visit it; and
3. its parent, if it has one, was itself not reached, or **ran** in that execution (its
   function was called, to the end, and did not call this child). A child of a parent that
   was replayed (or failed) is never "not reached": the parent's callback did not run, so its
   children could not be visited, and the parent's stored output still stands for them.
"""

from __future__ import annotations

from typing import Any

from .._store import Repository

#: The note an execution's journal puts after ``[task_id, "replayed", attempts]``.
CODE_CHANGED = "code_changed"


def code_changed_ids(journal: list[Any]) -> set[str]:
    """Ids of the tasks an execution replayed although their function's code changed."""
    return {entry[0] for entry in journal if len(entry) > 3 and CODE_CHANGED in entry[3:]}


def latest_succeeded(run: dict[str, Any]) -> bool:
    """Whether the run's latest execution ended with the body returning (rule 1 above)."""
    history = run.get("history") or []
    return bool(history) and history[-1].get("n") == run.get("executions") and history[-1].get(
        "status"
    ) == "SUCCESS"


def unreached_tasks(
    run: dict[str, Any], tasks: list[dict[str, Any]], latest_journal: list[Any]
) -> list[dict[str, Any]]:
    """The stored tasks the latest execution did not reach (module docstring), in ``tasks``'
    order. ``latest_journal`` is the journal of execution ``run["executions"]``."""
    if not latest_succeeded(run):
        return []
    outcome = {entry[0]: entry[1] for entry in latest_journal}
    by_id = {task["id"]: task for task in tasks}
    verdicts: dict[str, bool] = {}

    def unreached(task: dict[str, Any]) -> bool:
        task_id = task["id"]
        if task_id not in verdicts:
            parent = by_id.get(task.get("parent_id") or "")
            if task_id in outcome:
                verdicts[task_id] = False
            elif parent is None:
                verdicts[task_id] = True  # a top-level task (or one whose parent is gone)
            else:
                verdicts[task_id] = unreached(parent) or outcome.get(parent["id"]) == "ran"
        return verdicts[task_id]

    return [task for task in tasks if unreached(task)]


def prune_unreached(repo: Repository, run_id: str) -> list[dict[str, Any]]:
    """Delete the run's stored tasks that :func:`unreached_tasks` lists, in one transaction,
    and return ``{"id", "display_key", "name", "status"}`` for each. :class:`RunBusyError`
    while another process executes the run; ``[]`` for a run no longer stored."""
    with repo.store.transaction():
        run = repo.load_run(run_id)
        if run is None:
            return []
        repo.raise_if_busy(run)
        journal = repo.load_journal(run_id, run["executions"])
        pruned = unreached_tasks(run, repo.load_tasks(run_id), journal)
        for task in pruned:
            repo.delete_task(task)
    return [{k: task.get(k) for k in ("id", "display_key", "name", "status")} for task in pruned]
