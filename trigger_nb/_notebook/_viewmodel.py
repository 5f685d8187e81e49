"""The task log's view model: stored records in, one JSON-able dict out (SPEC §8).

Pure and fast (no store, no widget): :func:`run_view` turns a run record, its task records and
its execution journals into exactly what the widget draws and what the static HTML fallback
summarises, so both show the same thing and tests can check it without a browser.

What it decides, so the front end does not have to (rows and groups are built in ``_rows``):

- **rows**: tasks nested under their parents (``depth``), with status, symbol, attempts,
  duration, the *replayed* mark, why a task waits and until when (absolute epoch times: the
  browser ticks the countdowns), the error with the user's frames, and which controls apply;
- **groups**: a run of five or more sibling tasks with the same name becomes one row
  (``"item × 1,000"``) with counts by status; members that need attention (failed, waiting,
  running) stay visible under it; the group opens on request (``open_groups``), listing 500
  members and a ``"more"`` row that lists 500 more (``group_pages``);
- **history**: ``execution=n`` (an earlier one) shows what that execution did *then* — status,
  attempt and error from its journal — never today's record (the journal's 4th element);
- **details**: rows in ``expanded`` carry params, output, properties (``redact`` paths shown as
  ``[REDACTED]``; ``redact_string`` secrets are stored as ``********`` already);
- **changed code** (SPEC §2, rules in ``_engine._reach``): a task the execution shown replayed
  although its function's code changed has ``code_changed`` (groups count them) and, in the
  latest execution, the **Invalidate** control; **not reached**: the stored tasks the latest
  execution no longer reaches are listed apart (``not_reached``, at most :data:`MAX_UNREACHED`),
  each with Invalidate when it is COMPLETED.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .._engine import (
    RUN_FINISHED,
    RunStatus,
    TaskStatus,
    code_changed_ids,
    unreached_tasks,
)
from ._display import current_statuses
from ._rows import TaskRows, cut, error_view

#: Not-reached tasks listed at most (the rest are counted).
MAX_UNREACHED = 200

#: status → symbol shown with the word (all in DejaVu Sans, the default fallback font).
SYMBOLS = {
    "COMPLETED": "✓",
    "SUCCESS": "✓",
    "ERRORED": "✗",
    "FAILURE": "✗",
    "WAITING": "○",
    "RUNNING": "↻",
    "EXECUTING": "↻",
    "PENDING": "·",
    "QUEUED": "·",
    "CANCELED": "·",
    "TIMED_OUT": "✗",
}

def pending_invalidations(run: dict[str, Any], tasks: list[dict[str, Any]]) -> list[str]:
    """Display keys invalidated by hand that no execution has run again yet."""
    present = {task.get("display_key") for task in tasks}
    return [key for key in run.get("invalidated") or [] if key not in present]


def run_controls(run: dict[str, Any], invalidated: list[str]) -> list[str]:
    """Run-level controls: Retry a finished-unsuccessful (or invalidated) run, Cancel one
    that is not finished."""
    status = run["status"]
    controls = []
    if status in (RunStatus.FAILURE, RunStatus.CANCELED, RunStatus.TIMED_OUT) or (
        status == RunStatus.SUCCESS and invalidated
    ):
        controls.append("retry")
    if status not in RUN_FINISHED:
        controls.append("cancel")
    return controls


def _times(run: dict[str, Any], now: float) -> tuple[float, float]:
    """(active seconds: the executions' durations summed, wall-clock span)."""
    history = run.get("history") or []
    active = sum(max(0.0, (h.get("ended_at") or 0) - (h.get("started_at") or 0)) for h in history)
    if run["status"] == RunStatus.EXECUTING and run.get("updated_at"):
        active += max(0.0, now - run["updated_at"])
    start = run.get("started_at") or run.get("created_at") or now
    end = run.get("completed_at") if run["status"] in RUN_FINISHED else None
    return active, max(0.0, (end or now) - start)


def _execution_views(run: dict[str, Any], journals: dict[int, list[Any]]) -> list[dict[str, Any]]:
    views = []
    for entry in run.get("history") or []:
        journal = journals.get(entry["n"], [])
        views.append(
            {
                "n": entry["n"],
                "status": entry["status"],
                "ran": sum(1 for item in journal if item[1] == "ran"),
                "replayed": sum(1 for item in journal if item[1] == "replayed"),
                "failed": sum(1 for item in journal if item[1] == "failed"),
                "retrying": sum(1 for item in journal if item[1] == "retry"),
                "code_changed": len(code_changed_ids(journal)),
                "started_at": entry.get("started_at"),
                "ended_at": entry.get("ended_at"),
            }
        )
    return views


def run_view(
    run: dict[str, Any],
    tasks: list[dict[str, Any]],
    journals: dict[int, list[Any]],
    *,
    execution: int | None = None,
    open_groups: Iterable[str] = (),
    expanded: Iterable[str] = (),
    group_pages: Mapping[str, int] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Everything the task log shows for ``run`` (see the module docstring).

    ``execution``: the number of an earlier execution to show as it was then (``None`` or the
    latest: the current records). ``open_groups``/``expanded``: group and task ids the user
    opened; ``group_pages``: group id -> pages of ``_rows.GROUP_PAGE`` members an open group lists
    (default 1; a ``"more"`` row under the group offers the next page).
    """
    now = time.time() if now is None else now
    executions = _execution_views(run, journals)
    latest = run.get("executions", 0)
    shown = execution if execution is not None and execution in journals and execution != latest else None
    history = None
    if shown is not None:
        history = {item[0]: item for item in journals[shown]}
    latest_journal = journals.get(latest) if (run.get("history") or [{}])[-1].get("n") == latest else None
    latest_outcomes = {item[0]: item[1] for item in latest_journal or []}
    unreached = unreached_tasks(run, tasks, latest_journal) if latest_journal is not None and shown is None else []
    if unreached:  # listed apart, under the log; the rows and the progress are what the code uses
        apart = {task["id"] for task in unreached}
        used = [task for task in tasks if task["id"] not in apart]
    else:
        used = tasks
    rows = TaskRows(
        run,
        used,
        now=now,
        history=history,
        latest_outcomes=latest_outcomes,
        changed=code_changed_ids(latest_journal or []),
        open_groups=set(open_groups),
        expanded=set(expanded),
        group_pages=group_pages or {},
    ).build()
    counted = [t for t in used if t.get("kind") != "attempt"]
    done = sum(1 for t in counted if t["status"] in (TaskStatus.COMPLETED, TaskStatus.ERRORED, TaskStatus.CANCELED))
    active, span = _times(run, now)
    invalidated = pending_invalidations(run, tasks)
    error = run.get("error") if run["status"] == RunStatus.FAILURE else None
    output = None
    if run["status"] == RunStatus.SUCCESS and run.get("output_json") is not None:
        output = cut(json.dumps(json.loads(run["output_json"]), ensure_ascii=False), 4000)
    return {
        "kind": "run",
        "now": now,
        "run": {
            "id": run["id"],
            "job_id": run["job_id"],
            "job_version": run.get("job_version"),
            "status": run["status"],
            "symbol": SYMBOLS.get(run["status"], "·"),
            "executions": latest,
            "active": round(active, 3),
            "span": round(span, 3),
            "started_at": run.get("started_at"),
            "completed_at": run.get("completed_at"),
            "wake_at": run.get("wake_at") if run["status"] == RunStatus.WAITING else None,
            "statuses": [
                {"label": s.get("label") or s.get("id"), "state": s.get("state"), "data": s.get("data")}
                for s in current_statuses(tasks)
            ],
            "progress": {"done": done, "seen": len(counted)},
            "error": None if error is None else {**(error_view(error) or {}), "task": error.get("task")},
            "output": output,
            "invalidated": invalidated,
            "controls": run_controls(run, invalidated),
        },
        "executions": executions,
        "shown": shown if shown is not None else latest,
        "latest": latest,
        "rows": rows,
        "not_reached": _unreached_rows(run, tasks, unreached),
        "not_reached_total": len(unreached),
    }


def _unreached_rows(
    run: dict[str, Any], tasks: list[dict[str, Any]], unreached: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows of the stored tasks the latest execution no longer reaches (greyed under the
    log), at most :data:`MAX_UNREACHED`; Invalidate (which deletes them) on COMPLETED ones."""
    if not unreached:
        return []
    depth: dict[str, int] = {}
    for task in tasks:  # parents come first (first-seen order)
        depth[task["id"]] = depth.get(task.get("parent_id") or "", -1) + 1
    busy = run["status"] in (RunStatus.EXECUTING, RunStatus.QUEUED)
    rows = [
        {
            "type": "task",
            "id": task["id"],
            "depth": depth.get(task["id"], 0),
            "name": task["name"],
            "key": str(task.get("display_key", "")),
            "icon": task.get("icon"),
            "kind": task.get("kind", "task"),
            "status": task["status"],
            "controls": ["invalidate"] if task["status"] == TaskStatus.COMPLETED and not busy else [],
        }
        for task in unreached[:MAX_UNREACHED]
    ]
    return rows


def runs_view(
    runs: list[dict[str, Any]], *, title: str | None = None, note: str | None = None, limit: int = 500
) -> dict[str, Any]:
    """The runs table (``%job list``, trigger cells): newest first, at most ``limit``."""
    now = time.time()
    rows = []
    for run in runs[:limit]:
        active, span = _times(run, now)
        rows.append(
            {
                "id": run["id"],
                "job_id": run["job_id"],
                "status": run["status"],
                "symbol": SYMBOLS.get(run["status"], "·"),
                "created_at": run.get("created_at"),
                "started_at": run.get("started_at"),
                "executions": run.get("executions", 0),
                "active": round(active, 3),
                "span": round(span, 3),
            }
        )
    return {
        "kind": "runs",
        "now": now,
        "title": title,
        "note": note,
        "runs": rows,
        "total": len(runs),
        "jobs": sorted({r["job_id"] for r in runs}),
        "statuses": sorted({r["status"] for r in runs}),
    }
