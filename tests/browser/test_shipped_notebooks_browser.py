"""Restart Kernel and Run All on the shipped notebooks, in JupyterLab (issue 6)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from _lab_ui import open_notebook, wait_all_executed

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("name", ["quickstart.ipynb", "durable_execution_tour.ipynb"])
def test_restart_kernel_and_run_all(lab: Any, page: Any, name: str) -> None:
    copy = f"shipped-{name}"
    shutil.copy(NOTEBOOKS / name, lab.root / copy)
    open_notebook(page, lab, copy)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:restart-run-all'); return 1; }")
    page.locator(".jp-Dialog .jp-mod-accept").click()  # "Restart"
    page.wait_for_timeout(1000)
    cells = wait_all_executed(page, timeout=180)
    assert all(cell["count"] is not None for cell in cells), cells
    assert not [cell for cell in cells if cell["errors"]], cells
    if name == "quickstart.ipynb":  # the live task log, not a static table
        assert page.locator(".tnb-log .tnb-status", has_text="SUCCESS").count() >= 1
