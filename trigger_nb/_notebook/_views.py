"""Which view a notebook object shows where (SPEC §8 fallbacks).

In a kernel (JupyterLab, Notebook 7, VS Code) runs and run lists show the live widget, whose
display bundle also carries static HTML and text. Terminal IPython and the CLI get text;
nbconvert and GitHub the static HTML (``_repr_html_``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._client import TriggerClient
    from .._run import Run


def in_kernel() -> bool:
    """True inside a Jupyter kernel (a frontend that renders widgets and updates displays)."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def static_run_html(run: Run) -> str:
    """The static HTML task log of ``run`` (grouped, bounded; see ``_static``)."""
    from ._static import render_run_html
    from ._viewmodel import run_view

    repo = run._client.repo
    return render_run_html(run_view(run.record, repo.load_tasks(run.id), repo.load_journals(run.id)))


def display_run(run: Run) -> bool:
    """Show ``run``'s live task log widget if this is a kernel; False if not (the caller
    falls back to text/HTML)."""
    if not in_kernel():
        return False
    from ._widget import TaskLog

    TaskLog(run._client, run.id).display()
    return True


def run_records(client: TriggerClient, *, job_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """``client.runs(...)`` as records, without reading each run again (SPEC §13: the list
    costs what ``client.runs()`` costs)."""
    runs = client.runs(job_id=job_id, status=status)
    return [run._record if run._record is not None else run.record for run in runs]


class RunsListing:
    """What ``%job list`` and a bare ``%job`` return: the runs table, interactive in a
    kernel (filter by status and job, click a run to open its log), text elsewhere."""

    def __init__(self, client: TriggerClient, *, job_id: str | None = None, status: str | None = None) -> None:
        self.client = client
        self.job_id = job_id
        self.status = status

    def records(self) -> list[dict[str, Any]]:
        return run_records(self.client, job_id=self.job_id, status=self.status)

    def text(self) -> str:
        from .._display import runs_table

        return runs_table(self.records())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())

    def _repr_html_(self) -> str:
        from ._static import render_runs_html
        from ._viewmodel import runs_view

        return render_runs_html(runs_view(self.records()))

    def _ipython_display_(self) -> None:
        if in_kernel():
            from ._widget import RunsTable

            RunsTable(self.client, job_id=self.job_id, status=self.status, title="Runs").display()
            return
        print(self.text())

    def __repr__(self) -> str:
        return self.text()
