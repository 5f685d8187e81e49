"""The runs table (``%job list``, a bare ``%job``, trigger cells), SPEC §8.

In a kernel it is a :class:`~._widget.LogWidget` whose state is the list of runs (filtered by
status and job in the browser); clicking a run opens its live log below the table, with all
its controls. Elsewhere: text (terminal) and static HTML (nbconvert).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._static import render_runs_html
from ._viewmodel import runs_view
from ._views import in_kernel
from ._widget import WIDGET_MIME, LogWidget, RunPage, Throttle, handle_control

if TYPE_CHECKING:
    from .._client import TriggerClient


def run_records(client: TriggerClient, *, job_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """``client.runs(...)`` as records, newest first: the records ``runs()`` read, not read
    again per run (a list costs what ``client.runs()`` costs, SPEC §13)."""
    return [run.snapshot for run in client.runs(job_id=job_id, status=status)]


class RunsListing:
    """What ``%job list`` and a bare ``%job`` return: the runs table, interactive in a
    kernel (filter by status and job, click a run to open its log), text elsewhere.

    The runs are read once, when it is made (an unknown status raises ``ConfigError`` there):
    its text and HTML show them as they were then; the kernel's table starts from them and
    then follows the store live.
    """

    def __init__(self, client: TriggerClient, *, job_id: str | None = None, status: str | None = None) -> None:
        self.client = client
        self.job_id = job_id
        self.status = status
        self._records = run_records(client, job_id=job_id, status=status)

    def records(self) -> list[dict[str, Any]]:
        return self._records

    def text(self) -> str:
        from ._display import runs_table

        return runs_table(self.records())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())

    def _repr_html_(self) -> str:
        return render_runs_html(runs_view(self.records()))

    def _ipython_display_(self) -> None:
        if in_kernel():
            table = RunsTable(
                self.client, job_id=self.job_id, status=self.status, title="Runs", records=self._records
            )
            table.display()
            return
        print(self.text())

    def __repr__(self) -> str:
        return self.text()


class RunsTable:
    """The runs table (``%job list``, bare ``%job``, trigger cells): filterable by status and
    job in the browser; clicking a run opens its log below the table, live.

    ``job_id`` limits it to one job's runs (a trigger cell); ``title``/``note`` head it;
    ``text`` gives the bundle's text/plain (default: one line per run).
    """

    LIMIT = 500

    def __init__(
        self,
        client: TriggerClient,
        *,
        job_id: str | None = None,
        status: str | None = None,
        title: str | None = None,
        note: Callable[[], str] | None = None,
        text: Callable[[], str] | None = None,
        records: list[dict[str, Any]] | None = None,
    ) -> None:
        self.client = client
        self.text = text
        self.job_id = job_id
        self.status = status
        self.title = title
        self.note = note
        self.open: RunPage | None = None
        self.widget = LogWidget(state=self.view(records))
        self.widget.on_msg(self._on_msg)
        self._handle: Any = None
        self._throttle = Throttle(self._render)
        self._unsubscribe = client.bus.subscribe(self._on_notice)

    def view(self, records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The table's state; ``records``: the runs already read (else they are read now)."""
        runs = records if records is not None else run_records(self.client, job_id=self.job_id, status=self.status)
        view = runs_view(runs, title=self.title, note=self.note() if self.note else None, limit=self.LIMIT)
        view["open"] = self.open.view() if self.open is not None else None
        return view

    def bundle(self) -> dict[str, Any]:
        state = self.widget.state
        return {
            WIDGET_MIME: {"version_major": 2, "version_minor": 1, "model_id": self.widget.model_id},
            "text/plain": self.text() if self.text is not None else _runs_text(state),
            "text/html": render_runs_html(state),
        }

    def display(self) -> None:
        from IPython.display import display

        self._handle = display(self.bundle(), raw=True, display_id=True)

    def _on_notice(self, notice: Any) -> None:
        if self.open is not None and notice.run_id == self.open.run.id:
            self.open.on_notice(notice)
        elif notice.kind == "task":
            return  # the table shows runs; only the open run's tasks matter
        self._throttle.poke(now=notice.kind == "execution" and notice.data.get("event") == "end")

    def _render(self) -> None:
        try:
            view = self.view()
        except Exception:
            self.close()
            return
        old = self.widget.state
        self.widget.state = view
        # The static text/HTML beside the widget follows the list (not every task of the
        # open run: that is the widget's job).
        if self._handle is not None and _listed(old) != _listed(view):
            self._handle.update(self.bundle(), raw=True)

    def refresh(self) -> None:
        self._throttle.flush()

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if content.get("cmd") == "open_run":
            run_id = content.get("run_id")
            self.open = None if not run_id else RunPage(self.client.get_run(str(run_id)))
            self.refresh()
            return
        if self.open is not None and self.open.ui(content):
            self.refresh()
            return
        if self.open is not None:
            handle_control(self.open.run, self.widget, content)

    def close(self) -> None:
        self._unsubscribe()


def _listed(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(run["id"], run["status"]) for run in view.get("runs", [])]


def _runs_text(state: dict[str, Any]) -> str:
    lines = [state["title"]] if state.get("title") else []
    lines += [f"{r['id']}  {r['job_id']}  {r['status']}  {r['executions']} execution(s)" for r in state["runs"][:50]]
    return "\n".join(lines) or "No runs."
