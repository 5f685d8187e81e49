"""The run's task log as text and as a static HTML table, and the live notebook display.

Pure rendering from stored records (``render_text``/``render_html``), used by ``Run.log()``,
``_repr_pretty_``, ``_repr_html_`` (nbconvert, frontends without widgets), the CLI and
``trigger-nb demo``. ``show_live`` displays a run in a notebook and re-renders it (throttled)
when the engine publishes changes — through ``update_display``, never ``with output:``, so
background resumptions never write into another cell.
"""

from __future__ import annotations

import copy
import html
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from ._engine import RUN_FINISHED

if TYPE_CHECKING:
    from ._run import Run

#: outcome in an execution → (symbol, word shown)
OUTCOME_MARKS = {
    "ran": ("✓", "ran"),
    "replayed": ("↺", "replayed"),
    "failed": ("✗", "failed"),
    "retry": ("⟳", "retrying"),
    "waiting": ("⏸", "waiting"),
}
STATUS_COLOURS = {
    "SUCCESS": "#1a7f37",
    "COMPLETED": "#1a7f37",
    "FAILURE": "#cf222e",
    "ERRORED": "#cf222e",
    "WAITING": "#9a6700",
    "EXECUTING": "#0969da",
    "RUNNING": "#0969da",
    "CANCELED": "#6e7781",
    "QUEUED": "#6e7781",
}


def redact_paths(value: Any, paths: list[str] | None) -> Any:
    """v2's redactor (§2.11): replace the value at each dotted path with ``"[REDACTED]"``."""
    if not paths or not value:
        return value
    value = copy.deepcopy(value)
    for path in paths:
        parts = str(path).split(".")
        node = value
        for i, part in enumerate(parts):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                key: Any = int(part)
            elif isinstance(node, dict) and part in node:
                key = part
            else:
                break
            if i == len(parts) - 1:
                node[key] = "[REDACTED]"
            else:
                node = node[key]
    return value


def _output_of(task: dict[str, Any]) -> Any:
    if task.get("output_encoding") == "pickle":
        return "<pickled output>"
    if task.get("output_in_blob"):
        return f"<large output: {task['output_in_blob']:,} bytes of JSON>"
    text = task.get("output_json")
    value = None if text is None else json.loads(text)
    return redact_paths(value, (task.get("redact") or {}).get("paths"))


def _shows_output(task: dict[str, Any]) -> bool:
    """Noop tasks (waits, logs) have no meaningful output (v2 §5.1)."""
    return not task.get("noop") and (
        task.get("output_json") is not None
        or task.get("output_encoding") == "pickle"
        or bool(task.get("output_in_blob"))
    )


def _run_output_text(run: dict[str, Any]) -> str:
    text = run.get("output_json")
    return "null" if text is None else json.dumps(json.loads(text), ensure_ascii=False)


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _depths(tasks: list[dict[str, Any]]) -> dict[str, int]:
    by_id = {t["id"]: t for t in tasks}
    depths: dict[str, int] = {}

    def depth(task: dict[str, Any]) -> int:
        if task["id"] in depths:
            return depths[task["id"]]
        parent = by_id.get(task.get("parent_id") or "")
        depths[task["id"]] = 0 if parent is None else depth(parent) + 1
        return depths[task["id"]]

    for task in tasks:
        depth(task)
    return depths


def summary_line(run: dict[str, Any]) -> str:
    """One line: run id, job, status, executions, total time."""
    end = run.get("completed_at") or run.get("updated_at")
    took = _ms((end - run["started_at"]) if run.get("started_at") and end else None)
    parts = [
        f"Run {run['id']}",
        f"job {run['job_id']} {run.get('job_version', '')}".rstrip(),
        run["status"],
        f"{run.get('executions', 0)} execution{'s' if run.get('executions', 0) != 1 else ''}",
    ]
    if took:
        parts.append(took)
    if run["status"] == "WAITING" and run.get("wake_at"):
        parts.append(f"resumes in {max(0.0, run['wake_at'] - time.time()):.1f} s")
    return " · ".join(parts)


Journals = dict[int, list[Any]]


def _execution_rows(
    run: dict[str, Any], tasks: list[dict[str, Any]], journals: Journals
) -> list[tuple[dict[str, Any], list[tuple[dict[str, Any], str, int]]]]:
    """Per recorded execution: its summary and the rows of the tasks it visited."""
    by_id = {t["id"]: t for t in tasks}
    sections = []
    for entry in run.get("history") or []:
        rows = [
            (by_id[task_id], outcome, attempts)
            for task_id, outcome, attempts in journals.get(entry["n"], [])
            if task_id in by_id
        ]
        rows.sort(key=lambda row: row[0].get("seq", 0))
        sections.append((entry, rows))
    return sections


def current_statuses(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The current value of each ``io.create_status`` status of a run, oldest status first.

    Every create/update is a task whose output is the whole status after it (SPEC §6.11); the
    current one is the update with the longest history (ties: the last created).
    """
    latest: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
    for task in tasks:
        if task.get("kind") != "status" or task.get("status") != "COMPLETED" or not task.get("output_json"):
            continue
        value = json.loads(task["output_json"])
        status_id = str(task.get("status_id") or value.get("id"))
        rank = (len(value.get("history") or []), task.get("seq", 0))
        if status_id not in latest or rank > latest[status_id][0]:
            latest[status_id] = (rank, value)
    return [value for _, value in latest.values()]


def status_text(status: dict[str, Any]) -> str:
    """``label [state] {data}`` on one line."""
    parts = [str(status.get("label") or status.get("id"))]
    if status.get("state"):
        parts.append(f"[{status['state']}]")
    if status.get("data"):
        parts.append(_short(status["data"], 60))
    return " ".join(parts)


def render_text(run: dict[str, Any], tasks: list[dict[str, Any]], journals: Journals | None = None) -> str:
    """The task log as plain text: header, one section per execution, output or error."""
    journals = journals or {}
    depths = _depths(tasks)
    lines = [summary_line(run), *(f"Status: {status_text(st)}" for st in current_statuses(tasks))]
    for entry, rows in _execution_rows(run, tasks, journals):
        counts = {k: sum(1 for _, o, _ in rows if o == k) for k in ("ran", "replayed")}
        lines.append(
            f"── execution {entry['n']} · {entry['status']} · {counts['ran']} ran, "
            f"{counts['replayed']} replayed · {_ms(entry['ended_at'] - entry['started_at'])}"
        )
        for task, outcome, attempts in rows:
            symbol, word = OUTCOME_MARKS.get(outcome, ("·", outcome))
            indent = "  " * (depths.get(task["id"], 0) + 1)
            detail = ""
            if outcome in ("failed", "retry") and task.get("error"):
                err = task["error"]
                detail = f"  {err.get('name')}: {_short(err.get('message'), 60)}"
            elif outcome == "waiting":
                detail = _waiting_detail(task)
            elif outcome in ("ran", "replayed") and _shows_output(task):
                detail = f"  → {_short(_output_of(task), 50)}"
            shows_attempt = not task.get("noop") and (attempts > 1 or outcome not in ("replayed", "ran"))
            attempt_text = f"attempt {attempts}" if shows_attempt else ""
            lines.append(
                f"{indent}{symbol} {task['display_key']:<24} {task['name']:<14} {word:<9}"
                f" {attempt_text:<10}{detail}".rstrip()
            )
    if run["status"] == "SUCCESS":
        lines.append(f"Output: {_run_output_text(run)}")
    error = run.get("error")
    if error and run["status"] == "FAILURE":
        where = f" in task {error['task']!r}" if error.get("task") else ""
        lines.append(f"Error{where}: {error.get('name')}: {error.get('message')}")
        stack = (error.get("stack") or "").rstrip()
        if stack:
            lines.extend("  " + line for line in stack.splitlines())
    return "\n".join(lines)


def _waiting_detail(task: dict[str, Any]) -> str:
    now = time.time()
    due = task.get("retry_at") or task.get("delay_until")
    if task.get("callback_pending"):
        return f"  callback: {task.get('callback_url')}"
    if due:
        return f"  due in {max(0.0, due - now):.1f} s"
    return ""


def render_html(run: dict[str, Any], tasks: list[dict[str, Any]], journals: Journals | None = None) -> str:
    """A static HTML table of the log (for nbconvert and frontends without widgets)."""
    journals = journals or {}
    esc = html.escape
    depths = _depths(tasks)
    colour = STATUS_COLOURS.get(run["status"], "#333")
    out = [
        '<div class="trigger-nb-log" style="font-family: var(--jp-code-font-family, monospace);'
        ' font-size: 12px">',
        f'<div><b>{esc(summary_line(run))}</b> <span class="trigger-nb-status" '
        f'style="color:{colour};font-weight:bold">{esc(run["status"])}</span></div>',
        *(f'<div class="trigger-nb-run-status">Status: {esc(status_text(st))}</div>' for st in current_statuses(tasks)),
        '<table style="border-collapse:collapse">',
        "<tr><th align=left>task</th><th align=left>name</th><th align=left>status</th>"
        "<th align=left>outcome</th><th align=left>attempts</th><th align=left>detail</th></tr>",
    ]
    for entry, rows in _execution_rows(run, tasks, journals):
        out.append(
            f'<tr><td colspan=6 style="border-top:1px solid #ccc"><i>execution {entry["n"]} · '
            f'{esc(entry["status"])}</i></td></tr>'
        )
        for task, outcome, attempts in rows:
            symbol, word = OUTCOME_MARKS.get(outcome, ("·", outcome))
            pad = "&nbsp;" * 4 * depths.get(task["id"], 0)
            detail = ""
            if task.get("error") and outcome in ("failed", "retry"):
                detail = f"{task['error'].get('name')}: {task['error'].get('message')}"
            elif _shows_output(task):
                detail = _short(_output_of(task), 120)
            tcol = STATUS_COLOURS.get(task["status"], "#333")
            out.append(
                f"<tr><td>{pad}{esc(symbol)} {esc(str(task['display_key']))}</td>"
                f"<td>{esc(str(task['name']))}</td><td style=\"color:{tcol}\">{esc(task['status'])}</td>"
                f"<td>{esc(word)}</td><td>{attempts}</td><td>{esc(detail)}</td></tr>"
            )
    out.append("</table>")
    error = run.get("error")
    if error and run["status"] == "FAILURE":
        out.append(
            f'<pre style="color:#cf222e">{esc(str(error.get("name")))}: {esc(str(error.get("message")))}\n'
            f'{esc(str(error.get("stack") or ""))}</pre>'
        )
    elif run["status"] == "SUCCESS":
        out.append(f"<div>Output: <code>{esc(_run_output_text(run))}</code></div>")
    out.append("</div>")
    return "".join(out)


def _bundle(run: Run, quiet: bool) -> dict[str, str]:
    record = run.record
    if quiet:
        return {"text/plain": summary_line(record)}
    tasks = run._client.repo.load_tasks(run.id)
    journals = run._client.repo.load_journals(run.id)
    return {
        "text/plain": render_text(record, tasks, journals),
        "text/html": render_html(record, tasks, journals),
    }


class _LiveView:
    """Re-renders one displayed run when the engine publishes a change.

    Throttled: at most one render per ``max(MIN_INTERVAL, 10 x the last render's cost)``, so a
    1,000-task run spends at most ~10% of its time re-rendering its log (SPEC §13). The final
    state is always rendered.
    """

    MIN_INTERVAL = 0.2

    def __init__(self, run: Run, handle: Any, quiet: bool) -> None:
        self.run, self.handle, self.quiet = run, handle, quiet
        self._lock = threading.Lock()
        self._last = 0.0
        self._interval = self.MIN_INTERVAL
        self._pending = False
        self.unsubscribe = run._client.bus.subscribe(self.on_notice, run_id=run.id)

    def on_notice(self, notice: Any) -> None:
        final = notice.kind == "run" and notice.data.get("status") in RUN_FINISHED
        with self._lock:
            wait = self._interval - (time.monotonic() - self._last)
            if wait > 0 and not final:
                if not self._pending:
                    self._pending = True
                    timer = threading.Timer(wait, self._flush)
                    timer.daemon = True
                    timer.start()
                return
        self._flush()
        if final:
            self.unsubscribe()

    def _flush(self) -> None:
        started = time.monotonic()
        try:
            self.handle.update(_bundle(self.run, self.quiet), raw=True)
        except Exception:  # the store may be closed when a kernel shuts down
            self.unsubscribe()
        with self._lock:
            self._pending = False
            self._last = time.monotonic()
            self._interval = max(self.MIN_INTERVAL, 10 * (self._last - started))


def show_live(run: Run, *, quiet: bool = False) -> None:
    """Display ``run`` in the current cell; keep it updated while the run is not finished."""
    from IPython.display import display

    handle = display(_bundle(run, quiet), raw=True, display_id=True)
    # Live updates only where a frontend replaces the display in place (a kernel): terminal
    # IPython would print the whole log again on every change.
    if handle is not None and not run.finished and _in_kernel():
        _LiveView(run, handle, quiet)


def _in_kernel() -> bool:
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def runs_table(runs: list[dict[str, Any]]) -> str:
    """A text table of runs (``%job list``, ``trigger-nb runs``), newest first."""
    if not runs:
        return "No runs."
    header = f"{'run id':<30} {'job':<20} {'status':<10} {'exec':>4}  created"
    lines = [header, "-" * len(header)]
    # Local time per minute, seconds appended: one strftime per minute instead of per row (a
    # list of 10,000 runs must cost little more than reading them, SPEC §13). Offsets change
    # on whole minutes, so this is exact.
    minutes: dict[int, str] = {}
    row = "%-30s %-20s %-10s %4s  %s:%02d"
    for run in runs:
        seconds = int(run.get("created_at") or 0)
        minute, second = divmod(seconds, 60)
        prefix = minutes.get(minute)
        if prefix is None:
            prefix = minutes[minute] = time.strftime("%Y-%m-%d %H:%M", time.localtime(minute * 60))
        lines.append(row % (run["id"], run["job_id"], run["status"], run.get("executions", 0), prefix, second))
    return "\n".join(lines)
