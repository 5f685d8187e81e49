"""The task log's rows (SPEC §8): each task as the log shows it, nested under its parent, runs
of siblings with one name grouped. Pure, like the view model that assembles them
(:func:`._viewmodel.run_view`).

A group's row counts every member, but only the members it lists get a row of their own: a
collapsed group of 5,000 completed tasks lists none, and the log renders while the execution
runs (SPEC §13: with the log attached ≤ 1.2× without).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .._engine import RunStatus, TaskStatus, code_changed_ids, error_then
from ._display import redact_paths

#: Siblings with one name, this many or more in a row, collapse into a group.
GROUP_MIN = 5
#: An open group lists this many members at first, and this many more per "show more".
GROUP_PAGE = 500
#: Details (params, output, error) are cut to this many characters each.
DETAIL_CHARS = 20_000

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


def cut(text: str, limit: int = DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pretty(value: Any) -> str:
    return cut(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def error_view(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if not error:
        return None
    return {
        "name": error.get("name") or "Error",
        "message": cut(str(error.get("message") or ""), 2000),
        "stack": cut(user_frames(error.get("stack")), 4000),
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


class TaskRows:
    """``TaskRows(run, tasks, ...).build()``: the log's rows. ``history`` (task id -> journal
    entry) shows an earlier execution as it was, ``None`` the records; ``latest_outcomes`` and
    ``changed`` describe the latest execution; the rest is what the user opened (``run_view``)."""

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
            "error": error_view(fact.error),
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
