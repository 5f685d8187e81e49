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
import re
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from .._engine import RUN_FINISHED, code_changed_ids, error_then, unreached_tasks


class Run(Protocol):
    """What the live display needs of a run handle (``trigger_nb.Run`` has it). A protocol, not
    an import: ``Run`` draws itself with this module, so this module must not import it."""

    id: str

    @property
    def record(self) -> dict[str, Any]: ...
    @property
    def finished(self) -> bool: ...
    def records(self) -> tuple[dict[str, Any], list[dict[str, Any]], dict[int, list[Any]]]: ...
    def subscribe(self, listener: Callable[[Any], None]) -> Callable[[], None]: ...

#: outcome in an execution → (symbol, word shown). Symbols are ones that common monospace
#: fonts draw (DejaVu Sans Mono, Menlo, Consolas's fallback Segoe UI Symbol): ⏸ and ⟳ render
#: as empty boxes in JupyterLab with default fonts. The word is always shown beside the symbol.
OUTCOME_MARKS = {
    "ran": ("✓", "ran"),
    "replayed": ("↺", "replayed"),
    "failed": ("✗", "failed"),
    "retry": ("↻", "retrying"),
    "waiting": ("○", "waiting"),
}
#: colour of each outcome's mark (HTML)
OUTCOME_COLOURS = {
    "ran": "#1a7f37",
    "replayed": "#8250df",
    "failed": "#cf222e",
    "retry": "#9a6700",
    "waiting": "#9a6700",
}
#: Longest task key / name shown in full; longer ones end in "…" (the HTML's title has it all).
KEY_WIDTH = 28
NAME_WIDTH = 20
#: How the log marks a task replayed although its function's code changed, and a stored task
#: the latest execution no longer reaches (SPEC §2; the rules: ``trigger_nb._engine._reach``).
CODE_CHANGED_TEXT = "code changed"
NOT_REACHED_TEXT = "not reached"
CODE_CHANGED_COLOUR = "#9a6700"
NOT_REACHED_COLOUR = "#8c959f"
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
    "PENDING": "#6e7781",
    "TIMED_OUT": "#cf222e",
}


_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def redact_paths(value: Any, paths: list[str] | None) -> Any:
    """v2's redactor (§2.11): replace the value at each dotted path with ``"[REDACTED]"``."""
    if not paths or not value:
        return value
    value = copy.deepcopy(value)
    for path in paths:
        parts = str(path).split(".")
        node = value
        for i, part in enumerate(parts):
            # Only a canonical index ("1", not "01", " 1" or "١") names an array item in JS.
            if isinstance(node, list) and _ARRAY_INDEX.fullmatch(part) and int(part) < len(node):
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
    """Per recorded execution: its summary and the rows of the tasks it visited. A failed or
    retrying row carries the error the journal recorded *then* (history is immutable, SPEC §8),
    not the task's latest."""
    by_id = {t["id"]: t for t in tasks}
    sections = []
    for entry in run.get("history") or []:
        rows = [
            (by_id[task_id] if error is None else {**by_id[task_id], "error": error}, outcome, attempts)
            for task_id, outcome, attempts, error in (
                (item[0], item[1], item[2], error_then(item)) for item in journals.get(entry["n"], [])
            )
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


def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in "…" when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _row_detail(task: dict[str, Any], outcome: str, latest: bool, limit: int) -> str:
    """What a row says after its columns: the error, why it waits, or the output."""
    if outcome in ("failed", "retry") and task.get("error"):
        err = task["error"]
        return f"{err.get('name')}: {_short(err.get('message'), limit)}"
    if outcome == "waiting":
        return _waiting_detail(task, latest)
    if outcome in ("ran", "replayed") and _shows_output(task):
        return f"→ {_short(_output_of(task), limit)}"
    return ""


def _waiting_detail(task: dict[str, Any], latest: bool) -> str:
    """Why a task waits. Countdowns only while it still waits in the latest execution: an
    earlier execution's row shows what happened then (the run suspended), not today's clock."""
    if not (latest and task.get("status") == "WAITING"):
        return "the run suspended here"
    if task.get("callback_pending"):
        return f"callback: {task.get('callback_url')}"
    due = task.get("retry_at") or task.get("delay_until")
    if due:
        verb = "next attempt" if task.get("retry_at") else "resumes"
        return f"{verb} in {max(0.0, due - time.time()):.1f} s"
    return ""


def _attempt_text(task: dict[str, Any], outcome: str, attempts: int) -> str:
    shows = not task.get("noop") and (attempts > 1 or outcome not in ("replayed", "ran"))
    return f"attempt {attempts}" if shows else ""


def _sections(
    run: dict[str, Any], tasks: list[dict[str, Any]], journals: Journals, executions: Collection[int] | None
) -> list[tuple[dict[str, Any], list[tuple[dict[str, Any], str, int]]]]:
    sections = _execution_rows(run, tasks, journals)
    if executions is not None:
        sections = [(entry, rows) for entry, rows in sections if entry["n"] in executions]
    return sections


def execution_heading(entry: dict[str, Any], rows: list[tuple[dict[str, Any], str, int]]) -> str:
    """``execution N · STATUS · R ran, P replayed · duration``."""
    counts = {k: sum(1 for _, o, _ in rows if o == k) for k in ("ran", "replayed")}
    return (
        f"execution {entry['n']} · {entry['status']} · {counts['ran']} ran, "
        f"{counts['replayed']} replayed · {_ms(entry['ended_at'] - entry['started_at'])}"
    )


def render_text(
    run: dict[str, Any],
    tasks: list[dict[str, Any]],
    journals: Journals | None = None,
    *,
    executions: Collection[int] | None = None,
) -> str:
    """The task log as plain text: header, one section per execution, output or error.

    Each row: outcome (symbol and word), the task's key indented under its parent, its name,
    the attempt when it matters, then the output, the error or why it waits. Columns line up
    whatever the nesting; keys and names longer than :data:`KEY_WIDTH`/:data:`NAME_WIDTH` end
    in "…". ``executions``: only these execution numbers (default all recorded).
    """
    journals = journals or {}
    depths = _depths(tasks)
    latest = run.get("executions", 0)
    lines = [summary_line(run), *(f"Status: {status_text(st)}" for st in current_statuses(tasks))]
    sections = _sections(run, tasks, journals, executions)
    unreached = _unreached(run, tasks, journals, executions)
    cells = [
        (
            _fit("  " * depths.get(task["id"], 0) + str(task["display_key"]), KEY_WIDTH),
            _fit(str(task["name"]), NAME_WIDTH),
        )
        for task in [*(task for _, rows in sections for task, _, _ in rows), *unreached]
    ]
    key_width = max((len(key) for key, _ in cells), default=0)
    name_width = max((len(name) for _, name in cells), default=0)
    attempt_width = max(
        (len(_attempt_text(task, o, a)) + 2 for _, rows in sections for task, o, a in rows), default=2
    )
    word_width = len(NOT_REACHED_TEXT) if unreached else 8
    for entry, rows in sections:
        lines.append(f"── {execution_heading(entry, rows)}")
        changed = code_changed_ids(journals.get(entry["n"], []))
        for task, outcome, attempts in rows:
            symbol, word = OUTCOME_MARKS.get(outcome, ("·", outcome))
            key = _fit("  " * depths.get(task["id"], 0) + str(task["display_key"]), KEY_WIDTH)
            name = _fit(str(task["name"]), NAME_WIDTH)
            detail = _row_detail(task, outcome, entry["n"] == latest, 60)
            if task["id"] in changed:
                detail = f"{CODE_CHANGED_TEXT}  {detail}"
            lines.append(
                f"  {symbol} {word:<{word_width}}  {key:<{key_width}}  {name:<{name_width}}"
                f"{_attempt_text(task, outcome, attempts):>{attempt_width}}  {detail}".rstrip()
            )
    if unreached:
        lines.append(f"── {_not_reached_title(run)}")
    for task in unreached:
        key = _fit("  " * depths.get(task["id"], 0) + str(task["display_key"]), KEY_WIDTH)
        name = _fit(str(task["name"]), NAME_WIDTH)
        detail = f"→ {_short(_output_of(task), 60)}" if _shows_output(task) else task["status"]
        lines.append(
            f"  · {NOT_REACHED_TEXT}  {key:<{key_width}}  {name:<{name_width}}"
            f"{'':>{attempt_width}}  {detail}".rstrip()
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


def _unreached(
    run: dict[str, Any], tasks: list[dict[str, Any]], journals: Journals, executions: Collection[int] | None
) -> list[dict[str, Any]]:
    """The stored tasks the latest execution no longer reaches, when the log shows it."""
    latest = run.get("executions", 0)
    if executions is not None and latest not in executions:
        return []
    return unreached_tasks(run, tasks, journals.get(latest, []))


def _not_reached_title(run: dict[str, Any]) -> str:
    return (
        f"not reached by execution {run.get('executions')}: stored, no longer used by the code "
        f"(`%job prune {run['id']}` deletes them)"
    )


# Inline styles only: notebook frontends strip <style> elements from outputs or scope them, and
# JupyterLab's own table rules (cells right-aligned, `table-layout: fixed`, centred tables)
# would otherwise hide the nesting. Every cell states its alignment.
_TABLE_STYLE = (
    "border-collapse:collapse;table-layout:auto;margin:4px 0;width:auto;"
    "font-family:var(--jp-code-font-family, monospace);font-size:12px"
)
_CELL = "text-align:left;vertical-align:top;padding:1px 10px 1px 0;border:none;white-space:nowrap"
_CLIPPED = "overflow:hidden;text-overflow:ellipsis;max-width:{width}ch"
_WRAPPED = "text-align:left;vertical-align:top;padding:1px 0;border:none;white-space:normal;overflow-wrap:anywhere;min-width:20ch;max-width:60ch"


def render_html(
    run: dict[str, Any],
    tasks: list[dict[str, Any]],
    journals: Journals | None = None,
    *,
    executions: Collection[int] | None = None,
) -> str:
    """A static HTML table of the log (nbconvert, GitHub, frontends without widgets).

    Left-aligned cells; a child task's key is indented under its parent; long keys and names
    are cut with an ellipsis (the full text in the cell's ``title``); the detail column wraps.
    """
    journals = journals or {}
    esc = html.escape
    depths = _depths(tasks)
    latest = run.get("executions", 0)
    colour = STATUS_COLOURS.get(run["status"], "#333")
    out = [
        '<div class="trigger-nb-log" style="font-family:var(--jp-code-font-family, monospace);'
        'font-size:12px;text-align:left">',
        f'<div><span class="trigger-nb-status" style="color:{colour};font-weight:bold">'
        f'{esc(run["status"])}</span> <b>{esc(summary_line(run))}</b></div>',
        *(f'<div class="trigger-nb-run-status">Status: {esc(status_text(st))}</div>' for st in current_statuses(tasks)),
        f'<table class="trigger-nb-tasks" style="{_TABLE_STYLE}">',
    ]
    for entry, rows in _sections(run, tasks, journals, executions):
        out.append(
            f'<tr><td colspan="5" style="{_CELL};padding-top:6px;color:#57606a;font-style:italic">'
            f"── {esc(execution_heading(entry, rows))}</td></tr>"
        )
        changed = code_changed_ids(journals.get(entry["n"], []))
        for task, outcome, attempts in rows:
            symbol, word = OUTCOME_MARKS.get(outcome, ("·", outcome))
            depth = depths.get(task["id"], 0)
            key, name = str(task["display_key"]), str(task["name"])
            detail = _row_detail(task, outcome, entry["n"] == latest, 200)
            mark = (
                f'<b class="trigger-nb-code-changed" style="color:{CODE_CHANGED_COLOUR}">'
                f"{CODE_CHANGED_TEXT}</b> "
                if task["id"] in changed
                else ""
            )
            out.append(
                f'<tr class="trigger-nb-task" data-depth="{depth}">'
                f'<td style="{_CELL};color:{OUTCOME_COLOURS.get(outcome, "#333")}">{esc(symbol)} {esc(word)}</td>'
                f'<td style="{_CELL};{_CLIPPED.format(width=KEY_WIDTH + 2 * depth)};padding-left:{2 * depth}ch"'
                f' title="{esc(key)}">{esc(key)}</td>'
                f'<td style="{_CELL};{_CLIPPED.format(width=NAME_WIDTH)}" title="{esc(name)}">{esc(name)}</td>'
                f'<td style="{_CELL}">{esc(_attempt_text(task, outcome, attempts))}</td>'
                f'<td style="{_WRAPPED}">{mark}{esc(detail)}</td></tr>'
            )
    unreached = _unreached(run, tasks, journals, executions)
    if unreached:
        out.append(
            f'<tr><td colspan="5" style="{_CELL};padding-top:6px;color:{NOT_REACHED_COLOUR};'
            f'font-style:italic">── {esc(_not_reached_title(run))}</td></tr>'
        )
    for task in unreached:
        depth = depths.get(task["id"], 0)
        key, name = str(task["display_key"]), str(task["name"])
        detail = f"→ {_short(_output_of(task), 200)}" if _shows_output(task) else task["status"]
        out.append(
            f'<tr class="trigger-nb-not-reached" data-depth="{depth}" style="color:{NOT_REACHED_COLOUR}">'
            f'<td style="{_CELL}">· {NOT_REACHED_TEXT}</td>'
            f'<td style="{_CELL};{_CLIPPED.format(width=KEY_WIDTH + 2 * depth)};padding-left:{2 * depth}ch"'
            f' title="{esc(key)}">{esc(key)}</td>'
            f'<td style="{_CELL};{_CLIPPED.format(width=NAME_WIDTH)}" title="{esc(name)}">{esc(name)}</td>'
            f'<td style="{_CELL}"></td><td style="{_WRAPPED}">{esc(detail)}</td></tr>'
        )
    out.append("</table>")
    error = run.get("error")
    if error and run["status"] == "FAILURE":
        out.append(
            f'<pre style="color:#cf222e;text-align:left;white-space:pre-wrap">'
            f'{esc(str(error.get("name")))}: {esc(str(error.get("message")))}\n'
            f'{esc(str(error.get("stack") or ""))}</pre>'
        )
    elif run["status"] == "SUCCESS":
        out.append(
            '<div style="white-space:normal;overflow-wrap:anywhere">'
            f"Output: <code>{esc(_run_output_text(run))}</code></div>"
        )
    out.append("</div>")
    return "".join(out)


def _bundle(run: Run, quiet: bool) -> dict[str, str]:
    if quiet:
        return {"text/plain": summary_line(run.record)}
    record, tasks, journals = run.records()
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
        self.unsubscribe = run.subscribe(self.on_notice)

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
