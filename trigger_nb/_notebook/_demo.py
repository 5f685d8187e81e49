"""``trigger-nb demo``: one job cell executed in a fresh kernel, then in another fresh kernel on
the same store — the first runs every task, the second replays them all (SPEC §1).

The job is also the first cells of ``notebooks/quickstart.ipynb``. The report leads with the
contrast (tasks that ran, tasks replayed, the same output), read from the store the two
kernels shared, then shows each kernel's executions only.

``trigger-nb demo --notebook NAME`` executes ``notebooks/NAME.ipynb`` instead
(:func:`run_notebook`), printing what each code cell showed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SETUP_CELL = "%load_ext trigger_nb"

JOB_ID = "quickstart"
PAYLOAD = {"city": "Paris"}
PRINTED = "code outside tasks runs on every execution"

JOB_CELL = f'''\
%%job {JOB_ID} --payload {json.dumps(PAYLOAD)} --wait --timeout 60
print("{PRINTED}")

forecast = await io.run_task(
    "fetch-forecast",
    lambda task: {{"city": payload["city"], "temp_c": 21, "attempt": task.attempts}},
    name="Fetch forecast",
)

async def enrich(task, io):
    # Tasks started inside a task are its children: their keys are scoped by the parent.
    feels = await io.run_task("feels-like", lambda: forecast["temp_c"] - 2)
    return {{**forecast, "feels_like_c": feels}}

report = await io.run_task("enrich", enrich, name="Enrich")
await io.wait("cool-down", 0.5)  # the run suspends here, then resumes by replay
return {{"summary": f"{{report['city']}}: {{report['temp_c']}} °C (feels like {{report['feels_like_c']}} °C)"}}
'''

CELLS = [SETUP_CELL, JOB_CELL]


@dataclass
class KernelOutcome:
    """What one kernel did to the run: its executions, the tasks that ran (their function was
    called) and those only replayed from the store, the run's output after it, and how often
    the cell's ``print`` outside tasks printed."""

    executions: range
    ran: list[str]
    replayed: list[str]
    output: Any
    prints: int


def _outcome(store: str, executions_before: int, cell_text: str) -> KernelOutcome:
    from .._client import TriggerClient

    with TriggerClient(dir=store) as client:
        run = client.get_run(client.run_id_for(JOB_ID, PAYLOAD))
        names = {task["id"]: task["display_key"] for task in client.repo.load_tasks(run.id)}
        executions = range(executions_before + 1, run.executions + 1)
        ran: list[str] = []
        replayed: list[str] = []
        for entry in run.executions_log():
            if entry["n"] not in executions:
                continue
            for task_id, outcome, *_attempts_notes in entry["tasks"]:
                name = names.get(task_id, task_id)
                if outcome == "ran" and name not in ran:
                    ran.append(name)
                elif outcome == "replayed" and name not in replayed:
                    replayed.append(name)
        replayed = [name for name in replayed if name not in ran]
        return KernelOutcome(executions, ran, replayed, run.output, cell_text.count(PRINTED))


def _log(store: str, executions: range) -> str:
    from .._client import TriggerClient
    from ._display import render_text

    with TriggerClient(dir=store) as client:
        run_id = client.run_id_for(JOB_ID, PAYLOAD)
        record = client.get_run(run_id).record
        text = render_text(
            record, client.repo.load_tasks(run_id), client.repo.load_journals(run_id), executions=executions
        )
    # The first line (the run's summary) and the final output are in the report already.
    return "\n".join(line for line in text.splitlines()[1:] if not line.startswith("Output:"))


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def report(first: KernelOutcome, second: KernelOutcome) -> list[str]:
    """The lines that lead the demo's output: the contrast between the two kernels."""
    same = "the same output" if first.output == second.output else f"a DIFFERENT output: {second.output}"
    lines = [
        f"Kernel 1, empty store:  {_count(len(first.ran), 'task')} ran, each once "
        f"({_count(len(first.executions), 'execution')}: it suspended at the wait, resumed by replay)",
        f"Kernel 2, same store:   {len(second.ran)} tasks ran, {len(second.replayed)} replayed from the "
        f"store ({_count(len(second.executions), 'execution')}) — {same}:",
        f"    {json.dumps(second.output, ensure_ascii=False)}",
    ]
    skipped = [name for name in first.ran if name not in second.ran + second.replayed]
    if skipped:
        lines.append(
            f"    ({', '.join(skipped)} ran inside another task: replaying that task skips its body, "
            "children included.)"
        )
    lines += [
        "",
        f"The print outside tasks ran on every execution ({first.prints} times in kernel 1, "
        f"{second.prints} in kernel 2): only what is inside a task is cached.",
    ]
    return lines


def run_demo(
    *, directory: str | None = None, keep: bool = False, timeout: float = 120, out: Callable[[str], None] = print
) -> int:
    """Execute :data:`CELLS` in two fresh kernels, one after the other, on one store; print the
    contrast, the cell, and each kernel's executions. A temporary store (no ``directory``) is
    deleted at the end unless ``keep``. Returns the exit status (0)."""
    from ._notebook_runner import cell_text_outputs, execute_notebook, notebook_from_cells

    store = directory or tempfile.mkdtemp(prefix="trigger_nb_demo_")
    try:
        outcomes: list[KernelOutcome] = []
        for _ in range(2):
            nb = execute_notebook(
                notebook_from_cells(CELLS), cwd=store, env={"TRIGGER_NB_DIR": store}, timeout=timeout
            )
            before = outcomes[-1].executions.stop - 1 if outcomes else 0
            outcomes.append(_outcome(store, before, cell_text_outputs(nb.cells[-1])))
        first, second = outcomes
        out("trigger_nb demo: the job cell below, executed in a fresh kernel, then in a second fresh")
        out("kernel on the same store.\n")
        out("\n".join(report(first, second)))
        out("\nThe cell:\n")
        out(textwrap.indent(JOB_CELL.rstrip(), "    "))
        out("\nKernel 1's log:")
        out(_log(store, first.executions))
        out("\nKernel 2's log:")
        out(_log(store, second.executions))
    finally:
        if directory is None and not keep:
            shutil.rmtree(store, ignore_errors=True)
    if directory is None:
        out(f"\nStore: {store} (kept)" if keep else "\nThe temporary store was deleted (--keep keeps it).")
    else:
        out(f"\nStore: {store}")
    return 0


#: The notebooks of the source checkout (``notebooks/`` beside the package).
NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"


def notebook_path(name: str) -> Path:
    """``notebooks/NAME.ipynb`` (``NAME`` with or without ``.ipynb``); ``ConfigError`` naming
    the notebooks there are when there is no such notebook."""
    from .._exceptions import ConfigError

    path = NOTEBOOKS_DIR / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.is_file():
        found = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
        raise ConfigError(
            f"No notebook {name!r} in {NOTEBOOKS_DIR}; there are: {', '.join(found) or 'none'} "
            "(the notebooks come with the source checkout)."
        )
    return path


def run_notebook(
    name: str,
    *,
    directory: str | None = None,
    keep: bool = False,
    timeout: float = 120,
    out: Callable[[str], None] = print,
) -> int:
    """Execute ``notebooks/NAME.ipynb`` in a fresh kernel on a store (a temporary one, deleted
    unless ``keep``, when no ``directory``) and print each code cell's first line and what it
    showed. ``ConfigError`` (before any work) for an unknown notebook. Returns 0."""
    import nbformat

    from ._notebook_runner import cell_text_outputs, execute_notebook

    path = notebook_path(name)
    store = directory or tempfile.mkdtemp(prefix="trigger_nb_demo_")
    try:
        nb = execute_notebook(
            nbformat.read(path, as_version=4), cwd=store, env={"TRIGGER_NB_DIR": store}, timeout=timeout
        )
        out(f"=== {path.name}, executed in a fresh kernel ===")
        for cell in nb.cells:
            if cell.cell_type == "code":
                shown = cell_text_outputs(cell).rstrip()
                out(f">>> {cell.source.splitlines()[0] if cell.source else ''}")
                out(f"{shown}\n" if shown else "")
    finally:
        if directory is None and not keep:
            shutil.rmtree(store, ignore_errors=True)
    return 0
