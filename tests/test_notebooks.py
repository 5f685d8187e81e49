"""Every notebook in notebooks/ executes headless in a real kernel (the docs are tested)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from trigger_nb._notebook._notebook_runner import cell_text_outputs, execute_notebook

pytestmark = pytest.mark.kernel

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


#: What each teaching notebook must show (its point, not just that it runs).
SHOWS = {
    "durable_concepts.ipynb": [
        "body executed 2 times, email sent 1 time(s)",
        "DuplicateTaskKeyError",  # printed by the cell tagged "shows-an-error"
        "execution 1 · INTERRUPTED",
        "the API was called 2 times with 1 distinct idempotency key(s)",
        '"executions": [1, 2]',
        "retrying",
        "attempt 3",
        "{'approved': True, 'by': 'grace'}",
        "SUCCESS {'id': 1, 'amount': 250} 250",
        "code changed",
        "not reached",
        "deleted 1 task(s) not reached by its latest execution: 'total'",
    ],
    "integrations.ipynb": [
        "calls to /me: 1",
        "requests to /issues: 3",
        "stored headers: {'Authorization': 'Bearer ********'}",
        "API key anywhere in the stored records: False",
        "status requests: 3",
        'Output: "HELLO, DURABLE WORLD"',
        "fake API stopped",
    ],
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert not any(cell.get("outputs") for cell in nb.cells), "notebooks are committed without outputs"
    executed = execute_notebook(nb, cwd=str(tmp_path), env={"TRIGGER_NB_DIR": str(tmp_path / "store")}, timeout=120)
    code_cells = [cell for cell in executed.cells if cell.cell_type == "code"]
    # A cell tagged "shows-an-error" demonstrates a failure on purpose (and catches it).
    quiet = [c for c in code_cells if "shows-an-error" not in c.metadata.get("tags", [])]
    text = "\n".join(cell_text_outputs(cell) for cell in quiet)
    assert "Error" not in text.replace("ConnectionError", ""), text
    stderr = [out for c in code_cells for out in c.outputs if out.get("name") == "stderr"]
    assert not stderr, stderr
    everything = "\n".join(cell_text_outputs(cell) for cell in code_cells)
    for expected in SHOWS.get(path.name, []):
        assert expected in everything, f"{path.name} does not show {expected!r}:\n{everything}"


def test_quickstart_replays_when_run_again(tmp_path: Path) -> None:
    nb_path = next(p for p in NOTEBOOKS if p.name == "quickstart.ipynb")
    env = {"TRIGGER_NB_DIR": str(tmp_path / "store")}
    first = execute_notebook(nbformat.read(nb_path, as_version=4), cwd=str(tmp_path), env=env)
    second = execute_notebook(nbformat.read(nb_path, as_version=4), cwd=str(tmp_path), env=env)
    job_cell = 3
    assert "SUCCESS" in cell_text_outputs(first.cells[job_cell])
    log = cell_text_outputs(second.cells[job_cell])
    assert "0 ran, 3 replayed" in log, log


def test_demo_runs_a_notebook_by_name(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "trigger_nb", "demo", "--dir", str(tmp_path)]
    shown = subprocess.run([*command, "--notebook", "integrations"], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert "=== integrations.ipynb, executed in a fresh kernel ===" in shown.stdout
    assert 'Output: "HELLO, DURABLE WORLD"' in shown.stdout
    missing = subprocess.run([*command, "--notebook", "nope"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1  # a TriggerNbError: trigger-nb exits with 1
    assert "No notebook 'nope'" in missing.stderr and "durable_concepts" in missing.stderr
