"""The task log's view model: stored records in, one JSON-able dict out (SPEC §8).

Pure and fast (no store, no widget): :func:`run_view` turns a run record, its task records and
its execution journals into exactly what the widget draws and what the static HTML fallback
summarises, so both show the same thing and tests can check it without a browser.

What it decides, so the front end does not have to:

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
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .._engine import (
    RUN_FINISHED,
    RunStatus,
    TaskStatus,
    code_changed_ids,
    error_then,
    unreached_tasks,
)
from ._display import current_statuses, redact_paths

#: Siblings with one name, this many or more in a row, collapse into a group.
GROUP_MIN = 5
#: An open group lists this many members at first, and this many more per "show more".
GROUP_PAGE = 500
#: Details (params, output, error) are cut to this many characters each.
DETAIL_CHARS = 20_000
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

#: What an earlier execution's outcome means as a status, for the history view.
OUTCOME_STATUS = {
    "ran": "COMPLETED",
    "replayed": "COMPLETED",
    "failed": "ERRORED",
    "retry": "WAITING",
    "waiting": "WAITING",
}

#: Frames from these paths are the engine's, not the user's (hidden from error stacks).
_ENGINE_FRAME = re.compile(r"[/\\](trigger_nb|asyncio|concurrent|site-packages|dist-packages)[/\\]")


def user_frames(stack: str | None) -> str:
    """The frames of a Python traceback text that are the user's: without the "Traceback"
    line, the final exception line (shown as the error's name and message) and the frames
    of trigger_nb, asyncio and installed libraries."""
    if not stack:
        return ""
    out: list[str] = []
    keep = False
    for line in stack.rstrip().splitlines():
        if line.startswith('  File "'):
            keep = not _ENGINE_FRAME.search(line)
        elif not line.startswith("    "):
            keep = False  # "Traceback ...", the exception line, chained-exception headers
        if keep:
            out.append(line)
    return "\n".join(out)


def _cut(text: str, limit: int = DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pretty(value: Any) -> str:
    return _cut(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _error_view(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if not error:
        return None
    return {
        "name": error.get("name") or "Error",
        "message": _cut(str(error.get("message") or ""), 2000),
        "stack": _cut(user_frames(error.get("stack")), 4000),
    }


def _output_value(task: dict[str, Any]) -> Any:
    if task.get("output_encoding") == "pickle":
        return "<pickled output>"
    text = task.get("output_json")
    value = None if text is None else json.loads(text)
    return redact_paths(value, (task.get("redact") or {}).get("paths"))


def _duration(task: dict[str, Any], now: float) -> float | None:
    start = task.get("started_at")
    if start is None or task.get("status") == TaskStatus.WAITING:
        return None
    end = task.get("completed_at") or (now if task.get("status") == TaskStatus.RUNNING else None)
    return None if end is None else max(0.0, end - start)


def _wait_view(task: dict[str, Any], children: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Why a WAITING task waits, and until when (epoch seconds; the browser counts down)."""
    if task.get("status") != TaskStatus.WAITING:
        return None
    if task.get("callback_pending"):
        return {"kind": "callback", "url": task.get("callback_url"), "timeout_at": task.get("callback_timeout_at")}
    if task.get("retry_at"):
        return {
            "kind": "retry",
            "due_at": task["retry_at"],
            "attempt": task.get("attempts", 1) + 1,
            "limit": task.get("retry_limit"),
        }
    if task.get("external_pending"):
        params = task.get("params") or {}
        return {
            "kind": "event",
            "names": params.get("names") or [],
            "filter": params.get("filter"),
            "source": params.get("source"),
            "timeout_at": task.get("external_timeout_at"),
        }
    if task.get("operation_pending"):
        attempts = sum(1 for child in children if child.get("kind") == "attempt")
        return {"kind": "operation", "what": task.get("kind"), "attempts": attempts}
    if task.get("delay_until"):
        return {"kind": "delay", "due_at": task["delay_until"]}
    return {"kind": "other"}


def _task_controls(task: dict[str, Any], run_status: str, wait: dict[str, Any] | None) -> list[str]:
    """The controls that apply to one task now (SPEC §8: shown only where they apply)."""
    if run_status in (RunStatus.EXECUTING, RunStatus.QUEUED):
        return []
    status = task.get("status")
    if status == TaskStatus.ERRORED:
        return ["retry", "complete"] if run_status == RunStatus.FAILURE else ["complete"]
    if status == TaskStatus.COMPLETED and task.get("kind") != "attempt" and not task.get("noop"):
        return ["invalidate"]
    if wait is None or run_status != RunStatus.WAITING:
        return []
    return {
        "callback": ["send"],
        "retry": ["retry_now", "complete"],
        "delay": ["resume_now"],
        "event": ["send_event"],
    }.get(wait["kind"], [])


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


def _tree(tasks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(roots, children by parent id), both in first-seen order."""
    ids = {t["id"] for t in tasks}
    roots: list[dict[str, Any]] = []
    children: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        parent = task.get("parent_id")
        if parent and parent in ids:
            children.setdefault(parent, []).append(task)
        else:
            roots.append(task)
    return roots, children


def _runs_of_siblings(siblings: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    """Consecutive siblings with the same name, as lists (a list of one for a lone task)."""
    current: list[dict[str, Any]] = []
    for task in siblings:
        if current and current[-1]["name"] == task["name"] and current[-1].get("kind") == task.get("kind"):
            current.append(task)
        else:
            if current:
                yield current
            current = [task]
    if current:
        yield current


class _Facts(NamedTuple):
    """What a task row and its group's row both show: ``then`` when from an earlier
    execution's journal (``status`` … ``error`` as they were then), else from the record."""

    status: str
    outcome: str | None
    attempts: int
    error: dict[str, Any] | None
    replayed: bool
    changed: bool
    ms: float | None
    start: float | None
    end: float | None
    then: bool


class _Builder:
    def __init__(
        self,
        run: dict[str, Any],
        tasks: list[dict[str, Any]],
        *,
        now: float,
        history: dict[str, list[Any]] | None,
        latest_outcomes: dict[str, str],
        changed: set[str],
        open_groups: set[str],
        expanded: set[str],
        group_pages: Mapping[str, int],
    ) -> None:
        self.run = run
        self.now = now
        self.history = history  # task id -> journal entry of the execution shown, or None (latest)
        self.latest_outcomes = latest_outcomes
        self.changed = changed  # latest execution: ids replayed although their code changed
        self.open_groups = open_groups
        self.expanded = expanded
        self.group_pages = group_pages
        if history is not None:
            tasks = [t for t in tasks if t["id"] in history]
        self.roots, self.children = _tree(tasks)
        self.rows: list[dict[str, Any]] = []

    def build(self) -> list[dict[str, Any]]:
        self._siblings(self.roots, 0)
        return self.rows

    def _siblings(self, siblings: list[dict[str, Any]], depth: int) -> None:
        for run_of in _runs_of_siblings(siblings):
            if len(run_of) < GROUP_MIN:
                for task in run_of:
                    self._task(task, depth)
            else:
                self._group(run_of, depth)

    def _task(self, task: dict[str, Any], depth: int) -> None:
        self.rows.append(self._row(task, depth))
        kids = self.children.get(task["id"])
        if kids:
            self._siblings(kids, depth + 1)

    def _group(self, members: list[dict[str, Any]], depth: int) -> None:
        group_id = f"g:{members[0]['id']}"
        # Every member counts in the group's row; only those listed get a row of their own
        # (a collapsed group of 5,000 lists a handful: SPEC §13, the log's cost per render).
        facts = [self._facts(task) for task in members]
        counts: dict[str, int] = {}
        for fact in facts:
            counts[fact.status] = counts.get(fact.status, 0) + 1
        starts = [f.start for f in facts if f.start is not None]
        ends = [f.end for f in facts if f.end is not None]
        attempts = [f.attempts for f in facts]
        is_open = group_id in self.open_groups
        limit = GROUP_PAGE * self.group_pages.get(group_id, 1) if is_open else 0
        self.rows.append(
            {
                "type": "group",
                "id": group_id,
                "depth": depth,
                "name": members[0]["name"],
                "icon": members[0].get("icon"),
                "count": len(members),
                "counts": counts,
                "status": _group_status(counts),
                "replayed": sum(1 for f in facts if f.replayed),
                "code_changed": sum(1 for f in facts if f.changed),
                "attempts": [min(attempts), max(attempts)],
                "ms": sum(f.ms or 0 for f in facts),
                "start": min(starts) if starts else None,
                "end": max(ends) if ends else None,
                "open": is_open,
            }
        )
        listed = 0
        for task, fact in zip(members, facts, strict=True):
            # Collapsed, a group still lists the members that need attention (SPEC §8).
            if listed < limit or fact.status != TaskStatus.COMPLETED:
                listed += 1
                row = self._row(task, depth + 1, fact)
                row["group"] = group_id
                self.rows.append(row)
                kids = self.children.get(task["id"])
                if kids:
                    self._siblings(kids, depth + 2)
        if is_open and listed < len(members):
            # The open group's next page: a row the user clicks for GROUP_PAGE more.
            hidden = len(members) - listed
            self.rows.append(
                {"type": "more", "id": f"more:{group_id}", "group": group_id, "depth": depth + 1,
                 "hidden": hidden, "next": min(hidden, GROUP_PAGE)}
            )

    def _facts(self, task: dict[str, Any]) -> _Facts:
        entry = self.history.get(task["id"]) if self.history is not None else None
        if entry is not None:
            outcome: str | None = entry[1]
            status = OUTCOME_STATUS.get(entry[1], task["status"])
            attempts = entry[2]
            error = error_then(entry)
            replayed = outcome == "replayed"
            changed = bool(code_changed_ids([entry]))  # in that execution, as it was then
        else:
            outcome = self.latest_outcomes.get(task["id"])
            status = task["status"]
            attempts = task.get("attempts", 1)
            error = task.get("error") if status in (TaskStatus.ERRORED, TaskStatus.WAITING) else None
            replayed = (
                outcome == "replayed"
                if outcome is not None
                else status == TaskStatus.COMPLETED and (task.get("ran_in") or 0) < self.run["executions"]
            )
            changed = task["id"] in self.changed
        ms = _duration(task, self.now)
        return _Facts(
            status=status,
            outcome=outcome,
            attempts=attempts,
            error=error,
            replayed=replayed,
            changed=changed,
            ms=None if ms is None else round(ms * 1000, 1),
            start=task.get("started_at"),
            end=task.get("completed_at") if status != TaskStatus.WAITING else None,
            then=entry is not None,
        )

    def _row(self, task: dict[str, Any], depth: int, fact: _Facts | None = None) -> dict[str, Any]:
        if fact is None:
            fact = self._facts(task)
        if fact.then:  # an earlier execution, as it was: nothing to wait for or click
            wait = None
            controls: list[str] = []
        else:
            wait = _wait_view(task, self.children.get(task["id"], []))
            controls = _task_controls(task, self.run["status"], wait)
        row: dict[str, Any] = {
            "type": "task",
            "id": task["id"],
            "depth": depth,
            "name": task["name"],
            "key": str(task.get("display_key", "")),
            "icon": task.get("icon"),
            "kind": task.get("kind", "task"),
            "status": fact.status,
            "outcome": fact.outcome,
            "attempts": fact.attempts,
            "noop": bool(task.get("noop")),
            "replayed": fact.replayed,
            "code_changed": fact.changed,
            "ms": fact.ms,
            "start": fact.start,
            "end": fact.end,
            "wait": wait,
            "error": _error_view(fact.error),
            "controls": controls,
            "resolved_by": task.get("resolved_by"),
        }
        if task["id"] in self.expanded:
            row["detail"] = _detail(task, show_output=fact.status == TaskStatus.COMPLETED)
        return row


def _group_status(counts: dict[str, int]) -> str:
    for status in ("ERRORED", "RUNNING", "WAITING", "CANCELED", "PENDING"):
        if counts.get(status):
            return status
    return "COMPLETED"


def _detail(task: dict[str, Any], *, show_output: bool) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "idempotency_key": task.get("idempotency_key"),
        "params": None if task.get("params") is None else _pretty(task["params"]),
        "properties": task.get("properties") or [],
        "output_properties": task.get("output_properties") or [],
        "description": task.get("description"),
        "redacted": (task.get("redact") or {}).get("paths") or [],
    }
    if show_output and not task.get("noop"):
        detail["output"] = _pretty(_output_value(task))
    return detail


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
    opened; ``group_pages``: group id -> pages of GROUP_PAGE members an open group lists
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
    rows = _Builder(
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
        output = _cut(json.dumps(json.loads(run["output_json"]), ensure_ascii=False), 4000)
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
            "error": None if error is None else {**(_error_view(error) or {}), "task": error.get("task")},
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
