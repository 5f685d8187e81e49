"""The task log as static HTML, rendered from the view model (SPEC §8 fallbacks).

What nbconvert, GitHub's notebook viewer and frontends without widgets show, and what the
widget's display bundle carries beside the widget view. Left-aligned, nesting visible, readable
with long names, and bounded: a 1,000-task run is summarised by its groups (``item × 1,000``),
so a saved notebook grows by a few KB per run, not by a row per task.
"""

from __future__ import annotations

import html
import time
from typing import Any

from ._display import (
    CODE_CHANGED_COLOUR,
    CODE_CHANGED_TEXT,
    NOT_REACHED_COLOUR,
    NOT_REACHED_TEXT,
    STATUS_COLOURS,
)

#: Rows listed at most; the rest are counted ("… and N more rows").
MAX_ROWS = 200

SYMBOLS = {"COMPLETED": "✓", "ERRORED": "✗", "WAITING": "○", "RUNNING": "↻", "CANCELED": "·", "PENDING": "·"}


def seconds_text(seconds: float | None) -> str:
    """``812 ms``, ``4.1 s``, ``1 min 12 s``, ``2 h 5 min``."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def _badge(status: str, text: str | None = None) -> str:
    colour = STATUS_COLOURS.get(status, "#333")
    return (
        f'<span style="color:{colour};font-weight:600">{html.escape(text or status)}</span>'
    )


def _code_changed_html(text: str) -> str:
    # the class is what tests and user CSS find; the colour shows without any stylesheet
    return f'<b class="trigger-nb-code-changed" style="color:{CODE_CHANGED_COLOUR}">{html.escape(text)}</b>'


def _not_reached_title(view: dict[str, Any]) -> str:
    run = view["run"]
    return (
        f"{NOT_REACHED_TEXT} by execution {run['executions']}: stored, no longer used by the code "
        f"(`%job prune {run['id']}` deletes them)"
    )


def wait_text(wait: dict[str, Any] | None, now: float) -> str:
    """Why a task waits, as one line (countdowns as of ``now``)."""
    if not wait:
        return ""

    def left(at: float | None) -> str:
        return "—" if at is None else seconds_text(max(0.0, at - now))

    kind = wait["kind"]
    if kind == "callback":
        timeout = f" · times out in {left(wait['timeout_at'])}" if wait.get("timeout_at") else ""
        return f"waiting for a POST to {wait.get('url')}{timeout}"
    if kind == "retry":
        limit = f" of {wait['limit']}" if wait.get("limit") else ""
        return f"attempt {wait['attempt']}{limit}, next in {left(wait['due_at'])}"
    if kind == "delay":
        return f"resumes in {left(wait['due_at'])}"
    if kind == "event":
        names = " | ".join(wait.get("names") or [])
        flt = f" matching {wait['filter']}" if wait.get("filter") else ""
        return f"waiting for event {names}{flt}"
    if kind == "operation":
        return f"in the background · {wait.get('attempts', 0)} attempt(s) so far"
    return "waiting"


def _more_text(row: dict[str, Any]) -> str:
    return f"{row['hidden']:,} more in this group (the live log lists {row['next']:,} more per click)"


def _task_cells(row: dict[str, Any], now: float) -> str:
    esc = html.escape
    pad = 1.2 * row["depth"]
    if row["type"] == "more":
        return f'<td colspan=5 style="padding-left:{pad}em;text-align:left">… {_more_text(row)}</td>'
    if row["type"] == "group":
        counts = ", ".join(f"{n:,} {s.lower()}" for s, n in sorted(row["counts"].items()))
        name = f"<b>{esc(row['name'])}</b> × {row['count']:,}"
        replayed = f" · {row['replayed']:,} replayed" if row["replayed"] else ""
        if row.get("code_changed"):
            changed = f"{row['code_changed']:,} {CODE_CHANGED_TEXT}"
            replayed += f" · {_code_changed_html(changed)}"
        status = _badge(row["status"], f"{SYMBOLS.get(row['status'], '·')} {counts}")
        attempts = "{}–{}".format(*row["attempts"]) if row["attempts"][0] != row["attempts"][1] else str(row["attempts"][0])
        return (
            f'<td style="padding-left:{pad}em;text-align:left">{name}{replayed}</td>'
            f'<td style="text-align:left">{status}</td><td style="text-align:left">{attempts}</td>'
            f'<td style="text-align:left">{seconds_text(row["ms"] / 1000)}</td><td></td>'
        )
    replayed = ' <i style="color:#6e7781">replayed</i>' if row["replayed"] else ""
    if row.get("code_changed"):
        replayed += " " + _code_changed_html(CODE_CHANGED_TEXT)
    key = f' <code>{esc(row["key"])}</code>' if row["key"] and row["key"] != row["name"] else ""
    detail = ""
    if row.get("error"):
        detail = f'<span style="color:#cf222e">{esc(row["error"]["name"])}: {esc(row["error"]["message"][:200])}</span>'
    if row.get("wait"):
        detail = (detail + " " if detail else "") + esc(wait_text(row["wait"], now))
    status = _badge(row["status"], f"{SYMBOLS.get(row['status'], '·')} {row['status']}")
    ms = None if row["ms"] is None else row["ms"] / 1000
    return (
        f'<td style="padding-left:{pad}em;text-align:left"><b>{esc(row["name"])}</b>{key}{replayed}</td>'
        f'<td style="text-align:left">{status}</td><td style="text-align:left">{row["attempts"]}</td>'
        f'<td style="text-align:left">{seconds_text(ms) if ms is not None else "—"}</td>'
        f'<td style="text-align:left">{detail}</td>'
    )


def render_run_html(view: dict[str, Any]) -> str:
    """The static task log of one run from :func:`run_view`'s dict."""
    esc = html.escape
    run = view["run"]
    now = view.get("now") or time.time()
    progress = run["progress"]
    head = (
        f'<b>{esc(run["job_id"])}</b> <code>{esc(run["id"])}</code> '
        f'{_badge(run["status"], run["symbol"] + " " + run["status"])} · '
        f'{run["executions"]} execution{"s" if run["executions"] != 1 else ""} · '
        f'active {seconds_text(run["active"])} · span {seconds_text(run["span"])} · '
        f'{progress["done"]:,} of {progress["seen"]:,} tasks finished'
    )
    out = [
        '<div class="trigger-nb-log" style="font-family:var(--jp-ui-font-family,sans-serif);'
        'font-size:13px;text-align:left">',
        f"<div>{head}</div>",
    ]
    for status in run["statuses"]:
        state = f" [{esc(str(status['state']))}]" if status.get("state") else ""
        out.append(f"<div>Status: {esc(str(status['label']))}{state}</div>")
    if view["executions"]:
        strip = " · ".join(
            f"#{e['n']} {esc(e['status'])} ({e['ran']} ran, {e['replayed']} replayed)" for e in view["executions"]
        )
        out.append(f'<div style="color:#57606a">Executions: {strip}</div>')
    out.append(
        '<table style="border-collapse:collapse;margin:4px 0"><tr>'
        + "".join(f'<th style="text-align:left;padding-right:1em">{h}</th>' for h in ("task", "status", "attempts", "duration", ""))
        + "</tr>"
    )
    rows = view["rows"]
    for row in rows[:MAX_ROWS]:
        out.append(f"<tr>{_task_cells(row, now)}</tr>")
    if len(rows) > MAX_ROWS:
        out.append(f'<tr><td colspan=5 style="text-align:left">… and {len(rows) - MAX_ROWS:,} more rows</td></tr>')
    unreached = view.get("not_reached") or []
    if unreached:
        out.append(
            f'<tr><td colspan=5 style="text-align:left;color:{NOT_REACHED_COLOUR};font-style:italic;'
            f'padding-top:4px">── {esc(_not_reached_title(view))}</td></tr>'
        )
    for row in unreached:
        out.append(
            f'<tr class="trigger-nb-not-reached" style="color:{NOT_REACHED_COLOUR}">'
            f'<td style="padding-left:{1.2 * row["depth"]}em;text-align:left">{esc(row["name"])} '
            f'<code>{esc(row["key"])}</code></td><td style="text-align:left">· {NOT_REACHED_TEXT}</td>'
            f'<td></td><td></td><td style="text-align:left">{esc(row["status"])}</td></tr>'
        )
    more = view.get("not_reached_total", 0) - len(unreached)
    if more > 0:
        out.append(f'<tr><td colspan=5 style="text-align:left;color:{NOT_REACHED_COLOUR}">… and {more:,} more</td></tr>')
    out.append("</table>")
    error = run.get("error")
    if error:
        where = f" in task {esc(str(error['task']))}" if error.get("task") else ""
        out.append(
            f'<pre style="color:#cf222e;text-align:left">Error{where}: {esc(error["name"])}: '
            f'{esc(error["message"])}\n{esc(error.get("stack") or "")}</pre>'
        )
    if run.get("output") is not None:
        out.append(f'<div>Output: <code>{esc(run["output"][:2000])}</code></div>')
    out.append("</div>")
    return "".join(out)


def render_runs_html(view: dict[str, Any]) -> str:
    """The static runs table from :func:`runs_view`'s dict."""
    esc = html.escape
    out = ['<div class="trigger-nb-runs" style="font-size:13px;text-align:left">']
    if view.get("title"):
        out.append(f"<div><b>{esc(view['title'])}</b></div>")
    if view.get("note"):
        out.append(f"<div>{esc(view['note'])}</div>")
    if not view["runs"]:
        out.append("<div>No runs.</div></div>")
        return "".join(out)
    out.append('<table style="border-collapse:collapse"><tr>')
    out.extend(f'<th style="text-align:left;padding-right:1em">{h}</th>' for h in ("job", "run id", "status", "started", "executions", "active"))
    out.append("</tr>")
    for run in view["runs"][:MAX_ROWS]:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.get("started_at") or run.get("created_at") or 0))
        out.append(
            f'<tr><td style="text-align:left">{esc(run["job_id"])}</td><td style="text-align:left"><code>{esc(run["id"])}</code></td>'
            f'<td style="text-align:left">{_badge(run["status"], run["symbol"] + " " + run["status"])}</td>'
            f'<td style="text-align:left">{started}</td><td style="text-align:left">{run["executions"]}</td>'
            f'<td style="text-align:left">{seconds_text(run["active"])}</td></tr>'
        )
    out.append("</table>")
    if view["total"] > MAX_ROWS:
        out.append(f"<div>… and {view['total'] - MAX_ROWS:,} more runs</div>")
    out.append("</div>")
    return "".join(out)


def render_run_text(view: dict[str, Any]) -> str:
    """The task log as text from the view model: what the widget's display bundle carries as
    ``text/plain`` (grouped like the widget, so it stays small for large runs)."""
    run = view["run"]
    now = view.get("now") or time.time()
    progress = run["progress"]
    lines = [
        f"Run {run['id']} · job {run['job_id']} {run.get('job_version') or ''} · {run['status']} · "
        f"{run['executions']} execution{'s' if run['executions'] != 1 else ''} · active "
        f"{seconds_text(run['active'])} · span {seconds_text(run['span'])} · "
        f"{progress['done']} of {progress['seen']} tasks finished",
        *(f"Status: {s['label']}" + (f" [{s['state']}]" if s.get("state") else "") for s in run["statuses"]),
        *(
            f"── execution {e['n']} · {e['status']} · {e['ran']} ran, {e['replayed']} replayed"
            + "".join(f", {e[k]} {k.replace('_', ' ')}" for k in ("failed", "retrying", "code_changed") if e.get(k))
            for e in view["executions"]
        ),
    ]
    for row in view["rows"][:MAX_ROWS]:
        indent = "  " * (row["depth"] + 1)
        if row["type"] == "more":
            lines.append(f"{indent}… {_more_text(row)}")
            continue
        symbol = SYMBOLS.get(row["status"], "·")
        if row["type"] == "group":
            counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(row["counts"].items()))
            replayed = f", {row['replayed']} replayed" if row["replayed"] else ""
            if row.get("code_changed"):
                replayed += f", {row['code_changed']} {CODE_CHANGED_TEXT}"
            lines.append(f"{indent}{symbol} {row['name']} × {row['count']}  ({counts}{replayed})")
            continue
        mark = "replayed" if row["replayed"] else (row.get("outcome") or "")
        attempts = "" if row["noop"] else f"attempt {row['attempts']}"
        changed = f"  {CODE_CHANGED_TEXT}" if row.get("code_changed") else ""
        lines.append(
            f"{indent}{symbol} {row['key']:<24} {row['name']:<14} {row['status']:<9} {mark:<9} {attempts}{changed}".rstrip()
        )
        if row.get("error"):
            lines.append(f"{indent}    {row['error']['name']}: {row['error']['message']}")
        if row.get("wait"):
            lines.append(f"{indent}    {wait_text(row['wait'], now)}")
    if len(view["rows"]) > MAX_ROWS:
        lines.append(f"  … and {len(view['rows']) - MAX_ROWS} more rows")
    unreached = view.get("not_reached") or []
    if unreached:
        lines.append(f"── {_not_reached_title(view)}")
    for row in unreached:
        indent = "  " * (row["depth"] + 1)
        lines.append(f"{indent}· {row['key']:<24} {row['name']:<14} {NOT_REACHED_TEXT:<11} {row['status']}")
    if view.get("not_reached_total", 0) > len(unreached):
        lines.append(f"  … and {view['not_reached_total'] - len(unreached)} more not reached")
    if run.get("output") is not None:
        lines.append(f"Output: {run['output']}")
    error = run.get("error")
    if error:
        where = f" in task {error['task']!r}" if error.get("task") else ""
        lines.append(f"Error{where}: {error['name']}: {error['message']}")
        lines.extend("  " + line for line in (error.get("stack") or "").splitlines())
    return "\n".join(lines)
