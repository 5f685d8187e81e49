"""The static logs (text and HTML): alignment, nesting, fonts, long names, history."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from typing import Any

import pytest

from trigger_nb import TriggerClient
from trigger_nb._notebook._display import OUTCOME_MARKS

#: Drawn as empty boxes by default fonts in JupyterLab (seen on Debian Chromium).
BOX_PRONE = "⏸⟳⌛⧗⏳⏵⏹"
#: Every non-ASCII character the log itself may use (user data aside).
SAFE = set("✓↺✗↻○·─→…°")


def _run(client: TriggerClient) -> Any:
    @client.define_job(id="long-names")
    async def job(payload: Any, io: Any, ctx: Any) -> Any:
        async def parent(task: Any, io: Any) -> Any:
            async def inner(task: Any, io: Any) -> Any:
                return await io.run_task("leaf", lambda: 1)

            await io.run_task("inner", inner)
            return await io.run_task("fetch 127.0.0.1/repos", lambda: {"x": 1}, name="fetch 127.0.0.1/repos")

        await io.run_task("parent", parent, name="Parent")
        await io.store.job.set("cursor", "cursor", 1)
        await io.wait("nap", 0.2)
        return "done"

    run = client.invoke_sync("long-names", {})
    run.wait_sync(10)
    return run


class _Cells(HTMLParser):
    """Collects each task row's cells: (style, title, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str, str]]] = []
        self.tables: list[str] = []
        self._cell: list[Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.tables.append(a.get("style") or "")
        if tag == "tr" and a.get("class") == "trigger-nb-task":
            self.rows.append([])
        if tag == "td" and self.rows is not None:
            self._cell = [a.get("style") or "", a.get("title") or "", ""]

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[2] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            if self.rows and len(self._cell[0]) and "colspan" not in self._cell[0]:
                self.rows[-1].append(tuple(self._cell))  # type: ignore[arg-type]
            self._cell = None


def test_html_cells_are_left_aligned_nested_and_clip_long_names(mem_client: TriggerClient) -> None:
    html = _run(mem_client)._repr_html_()
    parser = _Cells()
    parser.feed(html)
    assert parser.tables and "table-layout:auto" in parser.tables[0] and "margin:4px 0" in parser.tables[0]
    rows = [row for row in parser.rows if row]
    assert rows
    for row in rows:
        assert all("text-align:left" in style for style, _, _ in row), row
    keys = {cells[1][2]: cells[1] for cells in rows}
    depth = {key: int(re.search(r"padding-left:(\d+)ch", style).group(1)) for key, (style, _, _) in keys.items()}  # type: ignore[union-attr]
    assert depth["parent"] == 0 and depth["inner"] == 2 and depth["leaf"] == 4 and depth["fetch 127.0.0.1/repos"] == 2
    names = {cells[2][2]: cells[2] for cells in rows}
    for name in ("Key-Value Store Set", "fetch 127.0.0.1/repos"):
        style, title, _ = names[name]
        assert title == name
        assert "text-overflow:ellipsis" in style and "white-space:nowrap" in style and "max-width" in style


def test_no_box_prone_glyphs_and_the_word_beside_each_symbol(mem_client: TriggerClient) -> None:
    run = _run(mem_client)
    for text in (run._repr_html_(), run.log()):
        assert not set(text) & set(BOX_PRONE)
        unusual = {ch for ch in text if ord(ch) > 127} - SAFE
        assert not unusual, unusual
    for symbol, word in OUTCOME_MARKS.values():
        assert symbol in SAFE and word.isalpha()
    assert "↺ replayed" in run._repr_html_() and "○ waiting" in run._repr_html_()


@pytest.mark.skipif(shutil.which("fc-list") is None, reason="fontconfig's fc-list is not installed")
def test_outcome_symbols_are_in_dejavu_sans_mono() -> None:
    """JupyterLab's code font falls back to DejaVu Sans Mono on Linux: it must draw them."""
    for symbol, _ in OUTCOME_MARKS.values():
        fonts = subprocess.run(
            ["fc-list", f":charset={ord(symbol):x}", "family"], capture_output=True, text=True
        ).stdout
        assert "DejaVu Sans Mono" in fonts, symbol


def test_text_log_columns_line_up_whatever_the_nesting_and_names(mem_client: TriggerClient) -> None:
    log = _run(mem_client).log()
    rows = [line for line in log.splitlines() if line.startswith("  ") and not line.startswith("  Error")]
    assert rows
    # the name column starts at the same place on every row, nested or not, long name or not
    pairs = {"parent": "Parent", "inner": "Task", "leaf": "Task", "fetch 127.0.0.1/repos": "fetch 127.0.0.1/rep…",
             "cursor": "Key-Value Store Set", "nap": "wait"}
    starts = set()
    for line in rows:
        key = next(k for k in pairs if f" {k}  " in line)
        starts.add(line.index(pairs[key], line.index(f" {key}  ") + len(key) + 1))
    assert len(starts) == 1, log
    leaf = next(line for line in rows if "leaf" in line)
    inner = next(line for line in rows if "inner" in line)
    assert leaf.index("leaf") == inner.index("inner") + 2


def test_an_earlier_executions_wait_row_shows_no_stale_countdown(mem_client: TriggerClient) -> None:
    log = _run(mem_client).log()
    first = log.split("── execution 2")[0]
    assert "○ waiting" in first and "the run suspended here" in first
    assert "resumes in" not in log and "due in" not in log
