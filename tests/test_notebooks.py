"""Every notebook in notebooks/ executes headless in a real kernel (the docs are tested)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from trigger_nb._notebook._notebook_runner import cell_text_outputs, execute_notebook

pytestmark = pytest.mark.kernel

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    executed = execute_notebook(nb, cwd=str(tmp_path), env={"TRIGGER_NB_DIR": str(tmp_path / "store")}, timeout=120)
    text = "\n".join(cell_text_outputs(cell) for cell in executed.cells if cell.cell_type == "code")
    assert "Error" not in text.replace("ConnectionError", ""), text


def test_quickstart_replays_when_run_again(tmp_path: Path) -> None:
    nb_path = next(p for p in NOTEBOOKS if p.name == "quickstart.ipynb")
    env = {"TRIGGER_NB_DIR": str(tmp_path / "store")}
    first = execute_notebook(nbformat.read(nb_path, as_version=4), cwd=str(tmp_path), env=env)
    second = execute_notebook(nbformat.read(nb_path, as_version=4), cwd=str(tmp_path), env=env)
    job_cell = 3
    assert "SUCCESS" in cell_text_outputs(first.cells[job_cell])
    log = cell_text_outputs(second.cells[job_cell])
    assert "0 ran, 3 replayed" in log, log
