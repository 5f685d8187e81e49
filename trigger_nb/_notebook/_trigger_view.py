"""What a ``%%job --on/--every/--cron`` cell shows: the job's trigger and, live, its runs.

A view: it reads the client's public API and listens on the notice bus; nothing imports it but
the magic.
"""

from __future__ import annotations

import datetime as _dt
import html
from typing import TYPE_CHECKING, Any

from .._events._triggers import EventTrigger
from .._exceptions import ConfigError
from .._keys import slugify_job_id
from ._display import summary_line

if TYPE_CHECKING:
    from .._client import TriggerClient


class TriggerView:
    """The definition of a triggered job and, live, the runs it started (SPEC §2).

    Text (``_repr_pretty_``), static HTML (``_repr_html_``) and, in a kernel, the live runs
    table of the job (``_ipython_display_``: ``_widget.RunsTable``).
    """

    MAX_RUNS = 10

    def __init__(self, client: TriggerClient, job_id: str) -> None:
        self._client = client
        self.job_id = job_id = slugify_job_id(job_id)
        self._definition = client.jobs.get(job_id)
        if self._definition is None:
            raise ConfigError(f"No job {job_id!r} is defined.")

    @property
    def trigger(self) -> Any:
        return self._definition.trigger if self._definition is not None else None

    def runs(self) -> list[Any]:
        """The job's stored runs (``Run`` handles), newest first."""
        return self._client.runs(job_id=self.job_id)

    def _lines(self) -> tuple[str, str, list[Any]]:
        job = self._definition
        assert job is not None
        trigger = job.trigger
        header = f"Job {job.id} ({job.name} {job.version}) · {trigger.describe() if trigger else 'on invoke'}"
        if isinstance(trigger, EventTrigger):
            note = (
                "Registered: each matching event starts a run (`%job send NAME` or POST /events)."
            )
        else:
            due = self._client.scheduler.next_due(job.id)
            when = (
                _dt.datetime.fromtimestamp(due, _dt.timezone.utc).isoformat(timespec="seconds")
                if due is not None
                else "not scheduled"
            )
            note = f"Scheduled while the kernel lives; next run: {when}."
        if self._client.jobs.get(job.id) is not job:
            note = "Replaced by a newer definition of this job."
        return header, note, self.runs()

    def text(self) -> str:
        header, note, runs = self._lines()
        lines = [header, note, f"Runs started: {len(runs)}"]
        lines += [f"  {summary_line(run.snapshot)}" for run in runs[: self.MAX_RUNS]]
        if len(runs) > self.MAX_RUNS:
            lines.append(
                f"  ... and {len(runs) - self.MAX_RUNS} more (`%job list --job {self.job_id}`)"
            )
        return "\n".join(lines)

    def html(self) -> str:
        header, note, runs = self._lines()
        rows = "".join(
            f"<li><code>{html.escape(summary_line(run.snapshot))}</code></li>"
            for run in runs[: self.MAX_RUNS]
        )
        more = (
            f"<div>... and {len(runs) - self.MAX_RUNS} more</div>"
            if len(runs) > self.MAX_RUNS
            else ""
        )
        return (
            f'<div class="trigger-nb-trigger"><b>{html.escape(header)}</b>'
            f"<div>{html.escape(note)}</div><div>Runs started: {len(runs)}</div>"
            f"<ul>{rows}</ul>{more}</div>"
        )

    def _bundle(self) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self.html()}

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())

    def _repr_html_(self) -> str:
        return self.html()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        from ._views import in_kernel

        if not in_kernel():  # a terminal shell: the text, once
            display(self._bundle(), raw=True)
            return
        # The live runs table of this job, each run one click away (SPEC §2, §8).
        from ._runs_table import RunsTable

        header, _, _ = self._lines()
        RunsTable(
            self._client, job_id=self.job_id, title=header, note=lambda: self._lines()[1], text=self.text
        ).display()

    def __repr__(self) -> str:
        return f"<TriggerView job={self.job_id} {self.trigger.describe() if self.trigger else ''}>"
