"""``trigger-nb demo`` end to end: two real kernels, the contrast first, the store cleaned up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), "TMPDIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "trigger_nb", "demo", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_demo_leads_with_the_contrast_and_deletes_its_store(tmp_path: Path) -> None:
    result = _demo(tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = out.splitlines()
    # The first lines a newcomer reads are the contrast, before any log row.
    first_row = next(i for i, line in enumerate(lines) if line.startswith("  ✓") or line.startswith("  ↺"))
    head = "\n".join(lines[:first_row])
    assert re.search(r"Kernel 1, empty store: +4 tasks ran, each once", head), out
    assert re.search(r"Kernel 2, same store: +0 tasks ran, 3 replayed from the store .* the same output", head), out
    assert '{"summary": "Paris: 21 °C (feels like 19 °C)"}' in head
    assert "2 times in kernel 1, 1 in kernel 2" in head
    # Each kernel's log shows only its own executions: kernel 2's is the all-replayed one.
    kernel2 = out.split("Kernel 2's log:")[1]
    assert "── execution 3 · SUCCESS · 0 ran, 3 replayed" in kernel2
    assert "execution 1" not in kernel2 and "✓ ran" not in kernel2
    assert "due in" not in out and "resumes in" not in out
    assert "The temporary store was deleted" in out
    assert list(tmp_path.iterdir()) == []


def test_demo_keep_keeps_the_store(tmp_path: Path) -> None:
    result = _demo(tmp_path, "--keep")
    assert result.returncode == 0, result.stderr
    kept = re.search(r"Store: (\S+) \(kept\)", result.stdout)
    assert kept, result.stdout
    store = Path(kept.group(1))
    assert store.parent == tmp_path and (store / "cache.db").is_file()
    runs = subprocess.run(
        [sys.executable, "-m", "trigger_nb", "runs", "--dir", str(store)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert "quickstart" in runs.stdout and "SUCCESS" in runs.stdout
