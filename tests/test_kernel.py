"""``%%job`` in real Jupyter kernels (``KernelSession``): replay across executions and kernel
restarts, background resumption on the kernel's loop, ``--wait``, failures, and what
``import trigger_nb`` / ``%load_ext trigger_nb`` cost (SPEC §1, §2, §10, §13).

One kernel serves the whole module (starting one costs about a second); tests stay independent
by using distinct job ids, and every test first makes sure the extension is loaded (a restart
in an earlier test gives a fresh kernel).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trigger_nb._notebook._notebook_runner import CellResult, KernelSession

pytestmark = pytest.mark.kernel

# -- helpers -------------------------------------------------------------------------------


def ok(result: CellResult) -> CellResult:
    """``result``, after checking that the cell did not fail."""
    assert result.error is None, f"cell failed: {result.error}\n{result.text}"
    return result


def run(session: KernelSession, code: str, timeout: float = 30) -> CellResult:
    return ok(session.run(code, timeout=timeout))


def load_ext(session: KernelSession) -> None:
    # Idempotent: a second %load_ext only says "already loaded".
    run(session, "%load_ext trigger_nb")


def value(session: KernelSession, expression: str) -> object:
    """Evaluate ``expression`` in the kernel and return it (it must be JSON)."""
    code = f"import json as _json, trigger_nb\nprint(_json.dumps({expression}))"
    result = run(session, code)
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kernel")


@pytest.fixture(scope="module")
def session(workdir: Path) -> Iterator[KernelSession]:
    kernel = KernelSession(env={"TRIGGER_NB_DIR": str(workdir / "store")}, cwd=str(workdir))
    try:
        yield kernel
    finally:
        kernel.close()


# -- tests -----------------------------------------------------------------------------------


def test_import_starts_no_thread_and_load_ext_is_light(session: KernelSession) -> None:
    # Needs a kernel that has never imported trigger_nb (a fresh one when this test runs first).
    if run(session, "import sys\nprint('trigger_nb' in sys.modules)").stdout != "False\n":
        session.restart()
    probe = run(
        session,
        """
import json, sys, threading, time
_mods0, _threads0 = set(sys.modules), threading.active_count()
assert "trigger_nb" not in sys.modules
_t0 = time.perf_counter()
import trigger_nb
_t_import = time.perf_counter() - _t0
_mods1, _threads1 = set(sys.modules), threading.active_count()
_t0 = time.perf_counter()
get_ipython().run_line_magic("load_ext", "trigger_nb")
_t_load = time.perf_counter() - _t0
_heavy = ("diskcache", "httpx", "httptools", "ipywidgets")
print(json.dumps({
    "import_s": _t_import,
    "load_ext_s": _t_load,
    "threads_started_by_import": _threads1 - _threads0,
    "threads_started_by_load_ext": threading.active_count() - _threads1,
    "heavy_imported_by_import": sorted(m for m in _heavy if m in _mods1 - _mods0),
    "heavy_imported_by_load_ext": sorted(m for m in _heavy if m in set(sys.modules) - _mods0),
}))
""",
    )
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    total = report["import_s"] + report["load_ext_s"]
    print(
        f"\n[trigger_nb] fresh kernel: import trigger_nb {report['import_s'] * 1000:.1f} ms, "
        f"then %load_ext {report['load_ext_s'] * 1000:.1f} ms, total {total * 1000:.1f} ms "
        "(SPEC §13 target: 300 ms); heavy modules pulled in by %load_ext: "
        f"{report['heavy_imported_by_load_ext'] or 'none'}"
    )
    assert report["threads_started_by_import"] == 0
    assert report["heavy_imported_by_import"] == []
    assert report["threads_started_by_load_ext"] == 0
    # %%job works right after (the magic is registered)
    run(session, "%%job load-ext-probe\nreturn 1")


def test_reexecution_and_a_new_kernel_replay_the_side_effect(
    session: KernelSession, workdir: Path
) -> None:
    side = workdir / "appended.txt"
    cell = (
        "%%job appender\n"
        "def append(task):\n"
        f"    with open({str(side)!r}, 'a') as fh:\n"
        "        fh.write(f'attempt {task.attempts}\\n')\n"
        "    print('printed by the task')\n"
        "    return 'appended'\n"
        'result = await io.run_task("append", append)\n'
        "return {'result': result}\n"
    )
    load_ext(session)

    first = run(session, cell)
    second = run(session, cell)

    assert side.read_text() == "attempt 1\n"
    assert "SUCCESS" in first.text and "SUCCESS" in second.text
    assert "printed by the task" in first.stdout  # a sync task's print lands in its cell
    assert "printed by the task" not in second.stdout
    assert "replayed" in second.text

    old_pid = session.pid
    session.restart()
    assert session.pid != old_pid
    load_ext(session)
    third = run(session, cell)

    assert side.read_text() == "attempt 1\n"  # the new kernel replayed from the store
    assert "replayed" in third.text
    assert 'Output: {"result": "appended"}' in third.text
    assert value(session, "_.executions") == 3


def test_waiting_run_completes_in_the_kernel_background(session: KernelSession) -> None:
    load_ext(session)

    result = run(session, '%%job bg-waiter --out bg_run\nawait io.wait("w", 1)\nreturn "woke"')

    assert "WAITING" in result.text
    assert value(session, "bg_run.status") == "WAITING"
    run_id = value(session, "bg_run.id")
    # Cells are short and return at once: between them the kernel's loop is free to resume.
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline:
        status = value(session, f"trigger_nb.default_client().get_run({run_id!r}).status")
        if status == "SUCCESS":
            break
        time.sleep(0.2)
    assert status == "SUCCESS"
    assert value(session, "bg_run.output") == "woke"
    assert value(session, "bg_run.executions") == 2


def test_wait_flag_blocks_until_the_run_succeeds(session: KernelSession) -> None:
    load_ext(session)

    result = run(
        session, '%%job blocking --wait --timeout 30\nawait io.wait("w", 1)\nreturn "done"'
    )

    assert 'Output: "done"' in result.text
    assert value(session, "_.status") == "SUCCESS"


def test_failing_task_shows_user_traceback_and_kernel_survives(session: KernelSession) -> None:
    load_ext(session)

    result = session.run(
        "%%job explodes --out exploded\n"
        "def parse_invoice(task):\n"
        "    amount = int('twelve')  # the user's own line\n"
        "    return amount\n"
        'await io.run_task("parse", parse_invoice)\n',
    )

    # The log is shown, then the cell fails with RunFailedError (SPEC §2) whose traceback is
    # the user's own frames.
    assert "FAILURE" in result.text
    assert "ValueError" in result.text
    assert result.error is not None and result.error["ename"] == "RunFailedError"
    assert "'parse'" in result.error["evalue"] and "ValueError" in result.error["evalue"]
    traceback = "\n".join(result.error["traceback"])
    for shown in (result.text, traceback):
        assert "amount = int('twelve')  # the user's own line" in shown
        assert "in parse_invoice" in shown
        assert "trigger_nb/_engine" not in shown
    assert value(session, "exploded.error['name']") == "ValueError"
    assert run(session, "print(6 * 7)").stdout == "42\n"


def test_pickled_notebook_class_replays_after_restart(session: KernelSession) -> None:
    load_ext(session)
    setup = "class Money:\n    def __init__(self, cents):\n        self.cents = cents\n"
    cell = (
        "%%job money --pickle\n"
        'm = await io.run_task("price", lambda: Money(1250))\n'
        "return {'cents': m.cents, 'type': type(m).__name__}\n"
    )
    run(session, setup)
    first = run(session, cell)
    assert 'Output: {"cents": 1250, "type": "Money"}' in first.text, first.text

    session.restart()
    load_ext(session)
    run(session, setup)
    again = run(session, cell)

    assert 'Output: {"cents": 1250, "type": "Money"}' in again.text, again.text
    assert "replayed" in again.text


def test_kernel_killed_mid_task_loses_no_completed_task(
    session: KernelSession, workdir: Path
) -> None:
    side = workdir / "killed.txt"
    cell = (
        "%%job killed-mid-run --wait\n"
        "import time\n"
        "def step(n, pause):\n"
        "    def fn(task):\n"
        f"        with open({str(side)!r}, 'a') as fh:\n"
        "            fh.write(f'start {n}\\n')\n"
        "        time.sleep(pause)\n"
        "        return n\n"
        "    return fn\n"
        "pause = 0 if ctx.run.execution > 1 else 30\n"
        'one = await io.run_task("one", step(1, 0))\n'
        'two = await io.run_task("two", step(2, pause))\n'
        "return [one, two]\n"
    )
    load_ext(session)
    with pytest.raises(TimeoutError):
        session.run(cell, timeout=3)  # task 2 is in flight when the kernel dies
    assert side.read_text() == "start 1\nstart 2\n"
    os.kill(session.pid, signal.SIGKILL)  # no shutdown, no KeyboardInterrupt: gone at once
    session.restart()
    load_ext(session)
    result = run(session, cell)

    assert side.read_text() == "start 1\nstart 2\nstart 2\n"  # only the in-flight task ran again
    assert "Output: [1, 2]" in result.text, result.text


def test_result_and_await_wait_in_a_cell_let_the_run_resume(session: KernelSession) -> None:
    load_ext(session)
    run(session, '%%job blocking-result --out br\nawait io.wait("w", 0.5)\nreturn 5')
    assert value(session, "br.status") == "WAITING"

    # result() blocks the cell, yet the run resumes on the kernel's own loop meanwhile.
    assert run(session, "print(br.result(timeout=20))").stdout == "5\n"

    run(session, '%%job awaited --out aw\nawait io.wait("w", 0.5)\nreturn 6')
    awaited = run(session, "await aw.wait(20)\nprint(aw.status, aw.output)")
    assert awaited.stdout == "SUCCESS 6\n"
