"""The live task log: one ``anywidget`` model (SPEC §8); the runs table reuses it.

Why one model and not a tree of stock ipywidgets: measured here, 1,000 rows of stock widgets
(an HBox of four per row) cost 2.0 s, 14,005 comm messages and 9.5 MB to create, while one
model with the rows in a synced JSON trait costs 4.5 ms, 2 messages and 97 KB; updating every
row is one message. The front end is an inline ES module and stylesheet shipped in this
package (``tasklog.js``, ``tasklog.css``): no build step, no network fetch at render time.

A view, not a part of the engine: it *observes* the notices the engine publishes on the
client's bus and acts only through the public client API (:mod:`._controls`). Updates are
batched (:class:`Throttle`): a burst of notices is one re-render, at most every ``max(0.25 s,
20 x the last render's cost)``; the end of an execution renders at once. Nothing is written into any cell's output from background code:
the trait update goes over the widget's comm, and the static HTML beside it in the display
bundle is replaced through its display id.
"""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from .._engine import RUN_FINISHED
from .._exceptions import ConfigError
from . import _controls
from ._live import LiveRecords
from ._static import render_run_html, render_run_text
from ._viewmodel import run_view

if TYPE_CHECKING:
    from ._controls import Run

_HERE = pathlib.Path(__file__).parent
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class Throttle:
    """Calls ``render`` after notices, batched: never in the notifying (engine) thread, at
    most every ``interval`` seconds, where the interval adapts to ``COST_FACTOR`` x the last
    render's cost (so rendering takes at most ~5 % of a long run); the first render of a
    burst waits ``FIRST_DELAY`` to batch what follows — so an execution shorter than that is
    drawn once, at its end (measured: a mid-execution render cost a 1,000-task, 150 ms
    execution 7 %). ``now=True`` (the end of an execution) renders at once."""

    MIN_INTERVAL = 0.25
    FIRST_DELAY = 0.25
    COST_FACTOR = 20

    def __init__(self, render: Callable[[], None]) -> None:
        self._render = render
        self._lock = threading.Lock()
        self._rendering = threading.Lock()  # one render at a time: a later one never lands first
        self._last = 0.0
        self._interval = self.MIN_INTERVAL
        self._pending = False

    def poke(self, *, now: bool = False) -> None:
        if now:
            self.flush()
            return
        with self._lock:
            if self._pending:
                return
            self._pending = True
            wait = max(self.FIRST_DELAY, self._interval - (time.monotonic() - self._last))
        timer = threading.Timer(wait, self._timed_flush)
        timer.daemon = True
        timer.start()

    def _timed_flush(self) -> None:
        with self._lock:
            if not self._pending:  # a final render came first
                return
        self.flush()

    def flush(self) -> None:
        with self._rendering:
            started = time.monotonic()
            with self._lock:
                self._pending = False
            self._render()
        with self._lock:
            self._last = time.monotonic()
            self._interval = max(self.MIN_INTERVAL, self.COST_FACTOR * (self._last - started))


class LogWidget(anywidget.AnyWidget):
    """The one model: ``state`` is the whole view (see ``_viewmodel``)."""

    _esm = _HERE / "tasklog.js"
    _css = _HERE / "tasklog.css"
    state = traitlets.Dict().tag(sync=True)


class RunPage:
    """One run's log: its UI state (execution shown, open groups, expanded rows) and view,
    rendered from records kept current by :meth:`on_notice` (:mod:`._live`)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.execution: int | None = None
        self.open_groups: set[str] = set()
        self.group_pages: dict[str, int] = {}  # group id -> pages listed while open
        self.expanded: set[str] = set()
        self.live = LiveRecords(run)

    def on_notice(self, notice: Any) -> None:
        self.live.on_notice(notice)

    def view(self) -> dict[str, Any]:
        try:
            record, tasks, journals = self.live.snapshot()
        except ConfigError:  # forgotten meanwhile
            return {"kind": "gone", "run_id": self.run.id}
        return run_view(
            record,
            tasks,
            journals,
            execution=self.execution,
            open_groups=self.open_groups,
            expanded=self.expanded,
            group_pages=self.group_pages,
        )

    def ui(self, message: dict[str, Any]) -> bool:
        """Apply a view-only message (select an execution, open a group or list more of it,
        expand a row)."""
        cmd = message.get("cmd")
        target = str(message.get("id") or "")
        self.live.invalidate()  # a click reads the run afresh (it may have changed elsewhere)
        if cmd == "show_execution":
            self.execution = message.get("n")
        elif cmd == "toggle_group":
            self.open_groups ^= {target}
            self.group_pages.pop(target, None)  # opened again: its first page
        elif cmd == "more_of_group":
            if target not in self.open_groups:
                return False
            self.group_pages[target] = self.group_pages.get(target, 1) + 1
        elif cmd == "toggle_row":
            self.expanded ^= {target}
        else:
            return False
        return True


class TaskLog:
    """The live task log of one run (what ``Run._ipython_display_`` shows in a kernel).

    ``widget`` is the model; :meth:`bundle` the display bundle (widget view + static HTML +
    text). ``close()`` stops observing the run.
    """

    def __init__(self, run: Run) -> None:
        self.page = RunPage(run)
        self.widget = LogWidget(state=self.page.view())
        self.widget.on_msg(self._on_msg)
        self._handle: Any = None
        self._throttle = Throttle(self._render)
        self._unsubscribe = run.subscribe(self._on_notice)

    # -- display -------------------------------------------------------------------------
    def bundle(self) -> dict[str, Any]:
        state = self.widget.state
        if state.get("kind") == "run":
            text, html = render_run_text(state), render_run_html(state)
        else:
            text = html = f"Run {state.get('run_id')} is no longer in the store."
        return {
            WIDGET_MIME: {"version_major": 2, "version_minor": 1, "model_id": self.widget.model_id},
            "text/plain": text,
            "text/html": html,
        }

    def display(self) -> None:
        from IPython.display import display

        self._handle = display(self.bundle(), raw=True, display_id=True)

    # -- live ----------------------------------------------------------------------------
    def _on_notice(self, notice: Any) -> None:
        self.page.on_notice(notice)
        final = notice.kind == "execution" and notice.data.get("event") == "end"
        final = final or (notice.kind == "run" and notice.data.get("status") in RUN_FINISHED)
        self._throttle.poke(now=final)

    def _render(self) -> None:
        try:
            view = self.page.view()
        except Exception:  # the store is closed (kernel shutting down): stop observing
            self.close()
            return
        old = self.widget.state
        self.widget.state = view
        # The static HTML beside the widget (saved notebooks, GitHub) follows the executions.
        if self._handle is not None and view.get("kind") == "run" and (
            old.get("run", {}).get("status") != view["run"]["status"]
            or old.get("latest") != view.get("latest")
        ):
            self._handle.update(self.bundle(), raw=True)

    def refresh(self) -> None:
        """Render now (tests, and after a view-only change)."""
        self._throttle.flush()

    # -- messages from the browser ---------------------------------------------------------
    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if self.page.ui(content):
            self.refresh()
            return
        handle_control(self.page.run, self.widget, content)

    def close(self) -> None:
        self._unsubscribe()


def handle_control(run: Run, widget: anywidget.AnyWidget, message: dict[str, Any]) -> None:
    """Perform a control; answer the browser with ``{"type": "ack", "req", "error"}`` when done
    (the button stays disabled until then; the new state arrives through the bus)."""
    req = message.get("req")

    def done(error: str | None) -> None:
        widget.send({"type": "ack", "req": req, "error": error})

    _controls.start(_controls.perform(run, message), done)
