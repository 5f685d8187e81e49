"""The notebook runner against real kernels: nbclient notebooks and a live KernelSession."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from nbclient.exceptions import CellExecutionError, DeadKernelError

from trigger_nb._notebook._notebook_runner import (
    KernelSession,
    cell_text_outputs,
    execute_notebook,
    notebook_from_cells,
)

pytestmark = pytest.mark.kernel


def _assert_process_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_execute_notebook_collects_stream_display_and_top_level_await() -> None:
    nb = notebook_from_cells(
        [
            "print('hello')",
            "from IPython.display import display\ndisplay({'a': 1})",
            "import asyncio\nawait asyncio.sleep(0.01)\n'slept'",
        ]
    )

    executed = execute_notebook(nb, timeout=30)

    assert [cell_text_outputs(c) for c in executed.cells] == [
        "hello\n",
        "{'a': 1}\n",
        "'slept'\n",
    ]


def test_failing_cell_raises_and_kernel_is_gone(tmp_path: Path) -> None:
    nb = notebook_from_cells(["import os\nprint(os.getpid())", "1 / 0", "print('never')"])

    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        execute_notebook(nb, cwd=str(tmp_path), timeout=30)

    _assert_process_gone(int(cell_text_outputs(nb.cells[0])))
    assert nb.cells[2].outputs == []


def test_env_cwd_and_allowed_errors(tmp_path: Path) -> None:
    nb = notebook_from_cells(
        [
            "import os\nprint(os.environ['TRIGGER_NB_PROBE'], os.getcwd())",
            "raise ValueError('boom')",
            "print('after')",
        ]
    )

    executed = execute_notebook(
        nb,
        cwd=str(tmp_path),
        env={"TRIGGER_NB_PROBE": "from-env"},
        timeout=30,
        allow_errors=True,
    )

    assert [cell_text_outputs(c) for c in executed.cells] == [
        f"from-env {tmp_path.resolve()}\n",
        "ValueError: boom\n",
        "after\n",
    ]


def test_kernel_session_state_errors_restart_kill_and_close(tmp_path: Path) -> None:
    with KernelSession(cwd=str(tmp_path), env={"TRIGGER_NB_PROBE": "session"}) as session:
        first = session.run("x = 41\nprint('set')")
        second = session.run(
            "import os\nfrom IPython.display import display\n"
            "display({'x': x + 1})\nos.environ['TRIGGER_NB_PROBE']"
        )
        failed = session.run("import sys\nprint('oops', file=sys.stderr)\nx / 0")
        old_pid = session.pid
        session.restart()
        new_pid = session.pid
        after_restart = session.run("print('x' in globals())")
        os.kill(new_pid, signal.SIGKILL)
        with pytest.raises(DeadKernelError):
            session.run("print('unreachable')", timeout=20)

    assert (first.stdout, first.text, first.error) == ("set\n", "set\n", None)
    assert [o["output_type"] for o in second.outputs] == ["display_data", "execute_result"]
    assert second.outputs[0]["data"]["text/plain"] == "{'x': 42}"
    assert second.text == "{'x': 42}\n'session'\n"
    assert failed.error is not None and failed.error["ename"] == "ZeroDivisionError"
    assert failed.error["traceback"] and failed.stderr == "oops\n"
    assert after_restart.stdout == "False\n"
    assert new_pid != old_pid
    _assert_process_gone(old_pid)
    _assert_process_gone(new_pid)
    with pytest.raises(RuntimeError, match="closed"):
        session.run("1")
    session.close()  # idempotent
