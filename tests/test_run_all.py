"""*Run All* in real kernels: every queued cell replies once, in order, with no asyncio noise.

JupyterLab's *Run All* / *Restart Kernel and Run All* send every cell's execute request before
the first reply; nbclient sends one at a time, which is how a suite built only on nbclient missed
that cells queued behind a ``%%job`` cell never replied on ipykernel 7 (SPEC §2, "Run All
works"). These tests queue the requests the way the browser does.

They run on this interpreter's kernel and on every interpreter listed in
``TRIGGER_NB_TEST_PYTHONS`` (``os.pathsep``-separated paths of Pythons that have trigger_nb and
ipykernel installed): ``.ci/run`` makes one with ipykernel 6 and one with the newest Python, so
CI covers both ipykernel generations. With ``TRIGGER_NB_REQUIRE_KERNELS=1`` (set by ``.ci/run``)
a missing list is a failure, not a silent pass on one kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from trigger_nb._notebook._notebook_runner import KernelSession, QueuedRun

pytestmark = pytest.mark.kernel

#: What the event-loop machinery prints when a queued cell's step is dropped (ipykernel 7 with
#: the unmaintained nest_asyncio), and other asyncio noise that must never reach a notebook.
NOISE = ("cannot enter context", "Task was destroyed", "never awaited", "Exception in callback")


def _interpreters() -> list[str]:
    extra = [p for p in os.environ.get("TRIGGER_NB_TEST_PYTHONS", "").split(os.pathsep) if p]
    if not extra and os.environ.get("TRIGGER_NB_REQUIRE_KERNELS") == "1":
        raise pytest.UsageError(
            "TRIGGER_NB_REQUIRE_KERNELS=1 but TRIGGER_NB_TEST_PYTHONS is empty: .ci/run must "
            "make the ipykernel-6 and newest-Python environments"
        )
    return [sys.executable, *extra]


def _describe(python: str) -> str:
    """``py3.11-ipykernel7.4.0`` for a test id (fails loudly if the interpreter is broken)."""
    probe = "import sys, ipykernel; print(f'py{sys.version_info[0]}.{sys.version_info[1]}-ipykernel{ipykernel.__version__}')"
    return subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


INTERPRETERS = [pytest.param(python, id=_describe(python)) for python in _interpreters()]


@pytest.fixture(params=INTERPRETERS)
def kernel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KernelSession]:
    """A fresh kernel of the given interpreter (a kernelspec of its own) on a fresh store."""
    python: str = request.param
    spec_dir = tmp_path / "jupyter" / "kernels" / "under-test"
    spec_dir.mkdir(parents=True)
    argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "under test", "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        # The kernel manager finds kernelspecs through JUPYTER_PATH when it starts the kernel.
        mp.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
        session = KernelSession(
            kernel_name="under-test",
            cwd=str(tmp_path),
            env={"TRIGGER_NB_DIR": str(tmp_path / "store")},
        )
    try:
        yield session
    finally:
        session.close()


#: A notebook as a user writes one: job cells with and without waits, with and without --wait,
#: a top-level await, plain cells in between, and a failing job last (Run All stops there).
NOTEBOOK = [
    "%load_ext trigger_nb",
    "%%job quick\nreturn await io.run_task('one', lambda: 1)",
    "print('after quick')",
    "%%job pausing\nawait io.run_task('a', lambda: 'a')\nawait io.wait('pause', 0.5)\nreturn 'resumed'",
    "print('after pausing')",
    "%%job blocking --wait\nawait io.wait('pause', 0.3)\nreturn await io.run_task('b', lambda: 2)",
    "import asyncio\nawait asyncio.sleep(0.05)\nprint('top-level await')",
    "%%job failing --wait\nawait io.run_task('bad', lambda: 1 / 0)",
    "print('never runs: Run All stops at the failed cell')",
]
EXPECTED_STATUS = ["ok"] * 7 + ["error", "aborted"]


def assert_ran_like_run_all(queued: QueuedRun) -> None:
    cells = queued.cells
    assert [c.status for c in cells] == EXPECTED_STATUS, queued.summary()
    assert queued.reply_order == list(range(len(NOTEBOOK)))  # each replied once, in order
    assert cells[2].stdout == "after quick\n"
    assert cells[4].stdout == "after pausing\n"
    assert cells[6].stdout == "top-level await\n"
    failing = cells[7].error
    assert failing is not None and failing["ename"] == "RunFailedError"
    assert "ZeroDivisionError" in failing["evalue"] and "'bad'" in failing["evalue"]
    noise = [text for text in [queued.stray, *(c.stderr for c in cells)] if any(n in text for n in NOISE)]
    assert noise == [], noise


def test_run_all_on_a_fresh_kernel_replies_to_every_queued_cell(kernel: KernelSession) -> None:
    # Restart & Run All: a fresh kernel whose first job starts while later cells are queued.
    assert_ran_like_run_all(kernel.run_queued(NOTEBOOK, timeout=90))

    # The suspended run went on in the kernel's background and finished by itself.
    result = kernel.run(
        "import trigger_nb\n"
        "print(trigger_nb.default_client().runs(job_id='pausing')[0].result(timeout=20))",
        timeout=30,
    )
    assert result.error is None, result.error
    assert result.stdout == "resumed\n"


def test_run_all_again_replays_and_still_replies_to_every_cell(kernel: KernelSession) -> None:
    # Run All twice in one kernel: the second pass replays every job (and fails the same way).
    kernel.run_queued(NOTEBOOK, timeout=90)
    again = kernel.run_queued(NOTEBOOK, timeout=90)
    assert_ran_like_run_all(again)
    assert "replayed" in again.cells[1].text
