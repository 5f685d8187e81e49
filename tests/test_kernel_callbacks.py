"""Callbacks through a real kernel: a synchronous cell POSTs to its own callback URL, and a
waiting callback survives a kernel restart (SPEC §9, issue 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trigger_nb._notebook._notebook_runner import KernelSession

pytestmark = pytest.mark.kernel

JOB_CELL = """%%job approval --out run
urls.append(None)
return await io.run_task(
    "approve", lambda task: urls.append(task.callback_url), callback={"timeout_in_seconds": 120}
)
"""


def _ok(result) -> str:  # type: ignore[no-untyped-def]
    assert result.error is None, result.error
    return str(result.text)


def test_sync_cell_posts_to_its_own_callback_and_restart_keeps_the_path(tmp_path: Path) -> None:
    env = {"TRIGGER_NB_DIR": str(tmp_path / "store")}
    with KernelSession(env=env, cwd=str(tmp_path)) as kernel:
        _ok(kernel.run("%load_ext trigger_nb\nurls = []"))
        # A client first used from another thread (as the receiver's thread can be) still gets
        # the kernel's loop as its home, not a private loop thread.
        adopted = _ok(
            kernel.run(
                "import asyncio, threading, trigger_nb\n"
                "fresh, seen = trigger_nb.TriggerClient(), []\n"
                "t = threading.Thread(target=lambda: seen.append(fresh._host.loop)); t.start(); t.join()\n"
                "print(seen[0] is asyncio.get_running_loop(), threading.active_count())\n"
                "fresh.close()"
            )
        )
        assert adopted.startswith("True"), adopted
        assert "WAITING" in _ok(kernel.run(JOB_CELL))
        # A plain synchronous cell: the kernel's loop is blocked, the receiver thread answers.
        text = _ok(kernel.run("import httpx\nprint(httpx.post(urls[-1], json={'n': 1}, timeout=10).json())"))
        assert "{'ok': True}" in text
        # result() runs the kernel's loop (nest-asyncio) until the resumed run has finished.
        text = _ok(kernel.run("output = run.result(timeout=10)\nprint(run.status, output)"))
        assert "SUCCESS {'n': 1}" in text

        # A callback that lands while a `%%job --wait` cell runs the kernel's loop nested: the
        # loop resolves it there (batched callbacks) and the waiting run resumes.
        _ok(kernel.run(JOB_CELL.replace("%%job approval --out run", "%%job approval --run third --out third")))
        _ok(
            kernel.run(
                "import threading, time\nreplies = []\n"
                "def later():\n    time.sleep(0.3)\n"
                "    replies.append(httpx.post(urls[-1], json={'n': 3}, timeout=10).json())\n"
                "poster = threading.Thread(target=later); poster.start()"
            )
        )
        _ok(kernel.run('%%job pause --wait\nawait io.wait("w", 1)\nreturn 1'))
        text = _ok(kernel.run("poster.join(10)\nprint(replies, third.result(timeout=10))"))
        assert "[{'ok': True}] {'n': 3}" in text

        # A second run waits; then the kernel restarts and the same cell is executed again.
        _ok(kernel.run(JOB_CELL.replace("%%job approval", "%%job approval --run second")))
        old_url = _ok(kernel.run("print(urls[-1])")).strip()
        kernel.restart()
        _ok(kernel.run("%load_ext trigger_nb\nurls = []"))
        assert "WAITING" in _ok(kernel.run(JOB_CELL.replace("%%job approval", "%%job approval --run second")))
        new_url = _ok(kernel.run("print(urls[-1])")).strip()
        # Same task id and secret (the path), the current receiver's address (v2 §4).
        assert old_url.split("/callbacks/")[1] == new_url.split("/callbacks/")[1]
        _ok(kernel.run("httpx_reply = __import__('httpx').post(urls[-1], json={'n': 2}, timeout=10).json()"))
        text = _ok(kernel.run("output = run.result(timeout=10)\nprint(httpx_reply, run.status, output)"))
        assert "{'ok': True} SUCCESS {'n': 2}" in text
