"""Real separate Python processes sharing one store (SPEC §1, §10).

- A process SIGKILLed in the middle of a run loses no completed task: the next execution (in
  another process) replays the finished tasks and runs the in-flight one again (at least once).
- A run is executed by one process at a time: another process gets ``RunBusyError`` naming the
  holder, or waits with ``busy_timeout``.
- ``import trigger_nb`` in a clean interpreter starts no thread and imports nothing heavy.

Every child process is started by a test, and killed by its PID and reaped in the same test.
The store-sharing tests run on both stores (``both_stores``): a directory and a PostgreSQL URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import CLIENT_AT_SOURCE, client_at

from trigger_nb import RunBusyError, TriggerClient

# -- helpers -------------------------------------------------------------------------------

#: A job of three tasks; each writes "start N pid attempt" and "done N pid" lines to LOG. Task 3
#: sleeps SLEEP3 seconds between the two. argv: STORE LOG RUN_ID SLEEP3. Prints the final run.
STEPS_SCRIPT = CLIENT_AT_SOURCE + r"""
import json, os, sys, time

store, log, run_id, sleep3 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

def line(text):
    with open(log, "a") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())

def step(n, pause=0.0):
    def fn(task):
        line(f"start {n} pid={os.getpid()} attempt={task.attempts}")
        time.sleep(pause)
        line(f"done {n} pid={os.getpid()}")
        return n
    return fn

with open_client(store) as client:
    @client.define_job(id="three-steps")
    async def three_steps(payload, io, ctx):
        one = await io.run_task("one", step(1))
        two = await io.run_task("two", step(2))
        three = await io.run_task("three", step(3, sleep3))
        return [one, two, three]

    run = client.invoke_sync("three-steps", {}, run_id=run_id)
    print(json.dumps({"status": run.status, "output": run.output, "tasks": [
        {"key": t["display_key"], "replayed": t["replayed"], "attempts": t["attempts"]}
        for t in run.tasks]}))
"""

#: A job whose one sync task writes "started PID" to LOG, then blocks until RELEASE exists
#: (at most 60 s). argv: STORE LOG RELEASE RUN_ID.
HOLDER_SCRIPT = CLIENT_AT_SOURCE + r"""
import os, sys, time

store, log, release, run_id = sys.argv[1:5]

def hold():
    with open(log, "a") as fh:
        fh.write(f"started {os.getpid()}\n")
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"held_by": os.getpid()}

with open_client(store) as client:
    @client.define_job(id="held")
    async def held(payload, io, ctx):
        return await io.run_task("hold", hold)

    run = client.invoke_sync("held", {}, run_id=run_id)
    # How this execution ended: by the time we read run.status, the test's waiter may be
    # replaying the run (EXECUTING) in its own process.
    print(run.snapshot["status"])
"""


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Children started by a test; any still alive at the end is killed by its PID."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def wait_for(condition: Any, *, timeout: float, what: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"child exited early ({what}): {process.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def finish(process: subprocess.Popen[str], timeout: float = 30) -> str:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"child failed ({process.returncode}):\n{stderr}"
    return stdout


# -- tests -----------------------------------------------------------------------------------


def start_and_kill(
    store: str, log: Path, run_id: str, processes: list[subprocess.Popen[str]]
) -> int:
    """Run the three-step job in a child; SIGKILL it while task 3 runs. Returns its PID."""
    child = spawn(STEPS_SCRIPT, str(store), str(log), run_id, "30")
    processes.append(child)
    wait_for(
        lambda: any(line.startswith("start 3") for line in read_lines(log)),
        timeout=20,
        what="task 3 to start",
        process=child,
    )
    # Another process sees the long task in flight (stored RUNNING) before the kill.
    with client_at(store) as observer:
        wait_for(
            lambda: (
                [(t["display_key"], t["status"]) for t in observer.get_run(run_id).tasks]
                == [("one", "COMPLETED"), ("two", "COMPLETED"), ("three", "RUNNING")]
            ),
            timeout=10,
            what="task 3 to be stored as RUNNING",
            process=child,
        )
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert read_lines(log) == [
        f"start 1 pid={child.pid} attempt=1",
        f"done 1 pid={child.pid}",
        f"start 2 pid={child.pid} attempt=1",
        f"done 2 pid={child.pid}",
        f"start 3 pid={child.pid} attempt=1",
    ]
    return child.pid


@pytest.mark.both_stores
def test_sigkill_mid_run_replays_completed_tasks_in_the_next_process(
    tmp_path: Path, store_location: str, processes: list[subprocess.Popen[str]]
) -> None:
    store, log = store_location, tmp_path / "steps.log"
    start_and_kill(store, log, "kill-me", processes)

    second = spawn(STEPS_SCRIPT, str(store), str(log), "kill-me", "0")
    processes.append(second)
    result = json.loads(finish(second).strip().splitlines()[-1])

    # Tasks 1-2 replayed (no second write); only the in-flight task 3 ran twice.
    assert read_lines(log)[5:] == [
        f"start 3 pid={second.pid} attempt=1",
        f"done 3 pid={second.pid}",
    ]
    assert result["status"] == "SUCCESS"
    assert result["output"] == [1, 2, 3]
    assert [(t["key"], t["replayed"]) for t in result["tasks"]] == [
        ("one", True),
        ("two", True),
        ("three", False),
    ]
    with client_at(store) as client:
        run = client.get_run("kill-me")
        assert run.status == "SUCCESS"
        assert run.executions == 2


@pytest.mark.both_stores
def test_a_run_whose_process_died_can_be_canceled(
    tmp_path: Path, store_location: str, processes: list[subprocess.Popen[str]]
) -> None:
    store, log = store_location, tmp_path / "steps.log"
    start_and_kill(store, log, "orphan", processes)

    with client_at(store) as client:
        asyncio.run(client.cancel("orphan"))
        run = client.get_run("orphan")

        # Nobody executes it any more (its lease holder is dead): cancel must take effect.
        assert run.status == "CANCELED"
        assert [(t["display_key"], t["status"]) for t in run.tasks] == [
            ("one", "COMPLETED"),
            ("two", "COMPLETED"),
            ("three", "CANCELED"),
        ]


@pytest.mark.both_stores
def test_a_live_lease_gives_run_busy_error_and_busy_timeout_waits(
    tmp_path: Path, store_location: str, processes: list[subprocess.Popen[str]]
) -> None:
    store, log, release = store_location, tmp_path / "held.log", tmp_path / "release"
    holder = spawn(HOLDER_SCRIPT, str(store), str(log), str(release), "held-run")
    processes.append(holder)
    wait_for(lambda: bool(read_lines(log)), timeout=20, what="the holder's task", process=holder)

    ran_here: list[int] = []

    with client_at(store) as client:

        @client.define_job(id="held")
        async def held(payload: Any, io: Any, ctx: Any) -> Any:
            return await io.run_task("hold", lambda: ran_here.append(os.getpid()))

        with pytest.raises(RunBusyError) as busy:
            client.invoke_sync("held", {}, run_id="held-run")
        assert f":{holder.pid}:" in busy.value.holder
        assert busy.value.holder in str(busy.value)

        outcome: dict[str, Any] = {}

        def invoke_waiting() -> None:
            try:
                outcome["run"] = client.invoke_sync("held", {}, run_id="held-run", busy_timeout=30)
            except BaseException as exc:  # reported by the assertions below
                outcome["error"] = exc

        waiter = threading.Thread(target=invoke_waiting)
        waiter.start()
        try:
            time.sleep(0.5)
            assert waiter.is_alive(), f"did not wait for the holder: {outcome}"
        finally:
            release.touch()
            waiter.join(timeout=40)
        assert not waiter.is_alive()
        assert "error" not in outcome, outcome.get("error")
        run = outcome["run"]
        assert run.status == "SUCCESS"
        assert run.output == {"held_by": holder.pid}
        assert ran_here == []  # the holder's result was replayed, not computed again
        assert run.tasks[0]["replayed"] is True
    assert finish(holder).strip() == "SUCCESS"


def test_import_in_a_clean_interpreter_starts_no_thread_and_nothing_heavy() -> None:
    probe = (
        "import json, sys, threading\n"
        "before = threading.active_count()\n"
        "import trigger_nb\n"
        "heavy = ['diskcache', 'httpx', 'httptools', 'tornado', 'ipywidgets', 'IPython', 'nest_asyncio', 'nest_asyncio2']\n"
        "print(json.dumps({'threads': threading.active_count() - before,\n"
        "                  'heavy': [m for m in heavy if m in sys.modules]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(result.stdout)
    assert report == {"threads": 0, "heavy": []}


def test_job_cell_reports_a_busy_run_and_waits_for_it_with_wait(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    from IPython.testing import globalipapp
    from IPython.utils.capture import capture_output

    import trigger_nb._client as client_module

    store, log, release = tmp_path / "store", tmp_path / "held.log", tmp_path / "release"
    holder = spawn(HOLDER_SCRIPT, str(store), str(log), str(release), "held-run")
    processes.append(holder)
    wait_for(lambda: bool(read_lines(log)), timeout=20, what="the holder's task", process=holder)
    globalipapp.start_ipython()  # a process-wide singleton
    ip = globalipapp.get_ipython()
    ip.run_line_magic("load_ext", "trigger_nb")
    client = client_at(str(store))
    client_module.set_default_client(client)
    cell = '%%job held --run held-run{flags}\nreturn await io.run_task("hold", lambda: "not me")'
    releaser = threading.Timer(0.5, release.touch)
    try:
        with capture_output() as busy_out:
            busy = ip.run_cell(cell.format(flags=""), store_history=True)
        assert isinstance(busy.error_in_exec, RunBusyError)
        assert f":{holder.pid}:" in busy_out.stdout  # the one-line message names the holder

        releaser.start()
        with capture_output():
            waited = ip.run_cell(cell.format(flags=" --wait"), store_history=True)
        assert waited.error_in_exec is None, waited.error_in_exec
        run = ip.user_ns["_"]
        assert run.status == "SUCCESS"
        assert run.output == {"held_by": holder.pid}  # replayed from the holder's execution
    finally:
        releaser.cancel()
        release.touch()
        client_module.set_default_client(None)
        client.close()
    assert finish(holder).strip() == "SUCCESS"


# -- fenced leases and orphans (SPEC §10, issue 9 items 2 and 3) ----------------------------------

#: Tasks "a" then "b", each writing "<name> pid=PID" to LOG; between them the body writes
#: "between" and sleeps PAUSE s (the test stops the process there). argv: STORE LOG RUN_ID
#: PAUSE BUSY_TIMEOUT. Prints the run's status and output, or "busy: <message>".
FENCED_SCRIPT = CLIENT_AT_SOURCE + r"""
import asyncio, json, os, sys
from trigger_nb import RunBusyError

store, log, run_id, pause, busy_timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]

def line(text):
    with open(log, "a") as fh:
        fh.write(text + "\n")

def step(name):
    def fn():
        line(f"{name} pid={os.getpid()}")
        return name
    return fn

with open_client(store) as client:
    @client.define_job(id="fenced")
    async def fenced(payload, io, ctx):
        a = await io.run_task("a", step("a"))
        line(f"between pid={os.getpid()}")
        await asyncio.sleep(pause)
        b = await io.run_task("b", step("b"))
        return [a, b]

    try:
        run = client.invoke_sync("fenced", {}, run_id=run_id, busy_timeout=float(busy_timeout) if busy_timeout != "none" else None)
        print(json.dumps({"status": run.status, "output": run.output}))
    except RunBusyError as exc:
        print("busy:", exc)
"""


@pytest.mark.both_stores
def test_a_stopped_holder_taken_over_never_writes_again_and_its_task_runs_once(
    tmp_path: Path, store_location: str, processes: list[subprocess.Popen[str]]
) -> None:
    store, log = store_location, tmp_path / "steps.log"
    env = {**os.environ, "TRIGGER_NB_LEASE_TTL": "2"}
    holder = subprocess.Popen(
        [sys.executable, "-c", FENCED_SCRIPT, str(store), str(log), "fenced-run", "1.0", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    processes.append(holder)
    wait_for(lambda: any(x.startswith("between") for x in read_lines(log)), timeout=20,
             what="the holder's first task", process=holder)
    os.kill(holder.pid, signal.SIGSTOP)  # during its pause: its lease renewals stop too
    try:
        taker = spawn(FENCED_SCRIPT, str(store), str(log), "fenced-run", "0", "30")
        processes.append(taker)
        taken = json.loads(finish(taker))
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    holder_said = finish(holder)

    assert taken == {"status": "SUCCESS", "output": ["a", "b"]}
    assert holder_said.startswith("busy:") and "lost the run's lease" in holder_said
    lines = read_lines(log)
    assert [x.split()[0] for x in lines if not x.startswith("between")] == ["a", "b"]  # once each
    assert f"b pid={taker.pid}" in lines
    with client_at(store) as client:
        run = client.get_run("fenced-run")
        assert run.status == "SUCCESS" and run.output == ["a", "b"]  # the stale holder wrote nothing
        assert [t["status"] for t in run.tasks] == ["COMPLETED", "COMPLETED"]


#: A job started by an event (not by this process's invoke): its task writes "started RUN_ID
#: PID" and then blocks while BLOCK exists. argv: STORE LOG BLOCK SEND. With SEND = "send" the
#: script sends the event and waits; otherwise it only defines the job (a new client that has it)
#: and prints the run's status once it is finished.
ORPHAN_SCRIPT = CLIENT_AT_SOURCE + r"""
import os, sys, time
from trigger_nb import event_trigger

store, log, block, send = sys.argv[1:5]

def work(task):
    with open(log, "a") as fh:
        fh.write(f"started {task.idempotency_key} {os.getpid()}\n")
    while os.path.exists(block):
        time.sleep(0.02)
    return os.getpid()

with open_client(store) as client:
    @client.define_job(id="on-ping", trigger=event_trigger("ping"))
    async def on_ping(payload, io, ctx):
        return await io.run_task("work", work)

    if send == "send":
        client.send_event_sync({"name": "ping", "id": "p1"})
        time.sleep(120)
    else:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = client.runs(job_id="on-ping")
            if runs and runs[0].status == "SUCCESS":
                print(runs[0].status, runs[0].output)
                break
            time.sleep(0.05)
"""


@pytest.mark.both_stores
def test_a_run_started_by_an_event_and_killed_mid_execution_is_resumed_by_the_next_client(
    tmp_path: Path, store_location: str, processes: list[subprocess.Popen[str]]
) -> None:
    store, log, block = store_location, tmp_path / "orphan.log", tmp_path / "block"
    block.touch()
    first = spawn(ORPHAN_SCRIPT, str(store), str(log), str(block), "send")
    processes.append(first)
    wait_for(lambda: bool(read_lines(log)), timeout=30, what="the triggered run's task", process=first)
    os.kill(first.pid, signal.SIGKILL)  # mid-execution: the run stays EXECUTING
    first.wait(timeout=10)
    with client_at(store) as client:
        [run] = client.runs(job_id="on-ping")
        assert run.status == "EXECUTING"
    block.unlink()

    started = time.monotonic()
    second = spawn(ORPHAN_SCRIPT, str(store), str(log), str(block), "wait")
    processes.append(second)
    said = finish(second, timeout=90)
    took = time.monotonic() - started
    assert said.startswith("SUCCESS") and str(second.pid) in said
    # The holder died on this host: its lease was free at once, far before its 60 s expiry.
    assert took < 30, took
    assert len(read_lines(log)) == 2  # the in-flight task ran again, once (at least once, v2)


def test_a_loop_blocked_outside_tasks_keeps_its_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease is renewed from a thread: a cell blocking the loop (heavy pandas between two
    tasks) for several lease lifetimes is not taken over while its process lives."""
    from trigger_nb._store import Repository

    monkeypatch.setenv("TRIGGER_NB_LEASE_TTL", "1")
    store = tmp_path / "store"
    attempts: list[str] = []
    with TriggerClient(dir=str(store)) as client:

        @client.define_job(id="blocking")
        async def blocking(payload: Any, io: Any, ctx: Any) -> Any:
            await io.run_task("a", lambda: 1)
            deadline = time.monotonic() + 3.5  # 3.5 lease lifetimes, the loop blocked
            while time.monotonic() < deadline:
                try:
                    Repository(client.storage).acquire_lease(ctx.run.id)
                    attempts.append("taken")
                except RunBusyError:
                    attempts.append("busy")
                time.sleep(0.2)
            return await io.run_task("b", lambda: 2)

        run = client.invoke_sync("blocking")
        assert run.status == "SUCCESS" and run.output == 2
    assert attempts and set(attempts) == {"busy"}
