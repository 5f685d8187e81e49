"""``trigger-nb`` through real subprocesses (``python -m trigger_nb ...``) on real stores."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trigger_nb import TriggerClient

COMMANDS = ["demo", "runs", "show", "retry", "resume", "cancel", "forget", "events", "send-event", "serve"]


def cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    env.pop("TRIGGER_NB_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "trigger_nb", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


FLAKY = {"fail": True}


def define(client: TriggerClient) -> None:
    @client.define_job(id="flaky")
    async def flaky(payload: dict, io: object, ctx: object) -> object:
        def step() -> str:
            if FLAKY["fail"]:
                raise RuntimeError("upstream down")
            return "fine"

        return await io.run_task("step", step, retry={"limit": 1})  # type: ignore[attr-defined]

    @client.define_job(id="sleepy")
    async def sleepy(payload: dict, io: object, ctx: object) -> object:
        await io.wait("nap", 3600)  # type: ignore[attr-defined]
        return "awake"

    @client.define_job(id="hooked")
    async def hooked(payload: dict, io: object, ctx: object) -> object:
        return await io.wait_for_event("paid", {"name": "order.paid"}, timeout_in_seconds=3600)  # type: ignore[attr-defined]


@pytest.fixture
def runs(store_dir: str) -> Iterator[dict[str, str]]:
    """A store with a FAILURE, a SUCCESS, a WAITING (1 h wait) and an event-waiting run."""
    FLAKY["fail"] = True
    with TriggerClient(dir=store_dir) as client:
        define(client)
        failed = client.invoke_sync("flaky", {"n": 1})
        FLAKY["fail"] = False
        ok = client.invoke_sync("flaky", {"n": 2})
        waiting = client.invoke_sync("sleepy", {})
        hooked = client.invoke_sync("hooked", {})
        ids = {"failed": failed.id, "ok": ok.id, "waiting": waiting.id, "hooked": hooked.id}
        assert [failed.status, ok.status, waiting.status, hooked.status] == ["FAILURE", "SUCCESS", "WAITING", "WAITING"]
    yield ids


@pytest.mark.parametrize("command", ["runs", "events", "show RUN", "retry RUN", "resume RUN", "cancel RUN", "forget --all", "send-event x"])
def test_commands_on_a_missing_store_fail_and_create_nothing(command: str, tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    result = cli(*command.split(), "--dir", str(typo))
    assert result.returncode == 1, result
    assert f"no trigger_nb store at {typo}" in result.stderr
    assert "No runs" not in result.stdout
    assert not typo.exists()


def test_an_empty_directory_is_not_a_store(tmp_path: Path) -> None:
    result = cli("runs", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert "holds no store" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_default_store_is_the_notebooks_dot_trigger_nb(tmp_path: Path, runs: dict[str, str], store_dir: str) -> None:
    os.rename(store_dir, tmp_path / ".trigger_nb")
    result = cli("runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert runs["failed"] in result.stdout


def test_runs_show_and_filters(runs: dict[str, str], store_dir: str) -> None:
    listed = cli("runs", "--dir", store_dir)
    assert listed.returncode == 0
    assert all(run_id in listed.stdout for run_id in runs.values())
    failed = cli("runs", "--dir", store_dir, "--status", "failure").stdout
    assert runs["failed"] in failed and runs["ok"] not in failed
    shown = cli("show", runs["failed"], "--dir", store_dir)
    assert shown.returncode == 0
    assert "FAILURE" in shown.stdout and "upstream down" in shown.stdout


def test_unknown_run_ids_and_bad_status(runs: dict[str, str], store_dir: str) -> None:
    for command in ("show", "retry", "resume", "cancel", "forget"):
        result = cli(command, "run_nope", "--dir", store_dir)
        assert result.returncode == 1, (command, result)
        assert "No run 'run_nope'" in result.stderr
    bad = cli("runs", "--dir", store_dir, "--status", "DONE")
    assert bad.returncode == 1 and "Unknown status" in bad.stderr


def _live_client(store_dir: str) -> TriggerClient:
    """What a kernel that has run the jobs' cells is: the jobs defined and the store watched."""
    client = TriggerClient(dir=store_dir)
    define(client)
    client.invoke_sync("flaky", {"n": 2})  # executing a job starts the watch
    return client


def _wait_status(client: TriggerClient, run_id: str, status: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get_run(run_id).status == status:
            return status
        time.sleep(0.1)
    return client.get_run(run_id).status


def test_retry_is_carried_out_by_the_process_that_defines_the_job(runs: dict[str, str], store_dir: str) -> None:
    result = cli("retry", runs["failed"], "--dir", store_dir)
    assert result.returncode == 0, result.stderr
    assert "marked for retry" in result.stdout and "job 'flaky'" in result.stdout
    with TriggerClient(dir=store_dir) as reader:
        assert reader.get_run(runs["failed"]).status == "FAILURE"  # the CLI executed nothing
    client = _live_client(store_dir)
    try:
        assert _wait_status(client, runs["failed"], "SUCCESS") == "SUCCESS"
        run = client.get_run(runs["failed"])
        assert run.output == "fine"
        step = run.tasks[0]
        assert step["attempts"] == 2  # attempts continue after the failed one (limit 1)
    finally:
        client.close()


def test_retry_refuses_runs_that_did_not_fail(runs: dict[str, str], store_dir: str) -> None:
    ok = cli("retry", runs["ok"], "--dir", store_dir)
    assert ok.returncode == 1 and "nothing to retry" in ok.stderr and "succeeded" in ok.stderr
    waiting = cli("retry", runs["waiting"], "--dir", store_dir)
    assert waiting.returncode == 1 and "resume" in waiting.stderr


def test_resume_makes_the_wait_due_and_the_job_process_finishes_it(runs: dict[str, str], store_dir: str) -> None:
    result = cli("resume", runs["waiting"], "--dir", store_dir)
    assert result.returncode == 0, result.stderr
    assert "1 wait made due now" in result.stdout
    client = _live_client(store_dir)
    try:
        assert _wait_status(client, runs["waiting"], "SUCCESS") == "SUCCESS"
        assert client.get_run(runs["waiting"]).output == "awake"
    finally:
        client.close()


def test_resume_of_event_waits_and_of_finished_runs_changes_nothing(runs: dict[str, str], store_dir: str) -> None:
    hooked = cli("resume", runs["hooked"], "--dir", store_dir)
    assert hooked.returncode == 1 and "Nothing was changed" in hooked.stderr
    failed = cli("resume", runs["failed"], "--dir", store_dir)
    assert failed.returncode == 1 and "not WAITING" in failed.stderr and "retry" in failed.stderr


def test_send_event_resumes_a_waiting_run_in_the_job_process(runs: dict[str, str], store_dir: str) -> None:
    sent = cli("send-event", "order.paid", "--payload", '{"id": 7}', "--id", "evt-7", "--dir", store_dir)
    assert sent.returncode == 0, sent.stderr
    assert "Event evt-7 (order.paid" in sent.stdout and "delivered" in sent.stdout
    client = _live_client(store_dir)
    try:
        assert _wait_status(client, runs["hooked"], "SUCCESS") == "SUCCESS"
        assert client.get_run(runs["hooked"]).output["payload"] == {"id": 7}
    finally:
        client.close()
    listed = cli("events", "--dir", store_dir, "--name", "order.paid")
    assert listed.returncode == 0 and "evt-7" in listed.stdout
    assert "No events." in cli("events", "--dir", store_dir, "--name", "other").stdout


def test_send_event_bad_input(runs: dict[str, str], store_dir: str) -> None:
    bad_json = cli("send-event", "order.paid", "--payload", "{id: 7}", "--dir", store_dir)
    assert bad_json.returncode == 2
    assert "--payload: not valid JSON" in bad_json.stderr
    bad_delay = cli("send-event", "order.paid", "--deliver-after", "soon", "--dir", store_dir)
    assert bad_delay.returncode == 2 and "number of seconds" in bad_delay.stderr
    assert "No events." in cli("events", "--dir", store_dir).stdout  # nothing was sent
    later = cli("send-event", "order.paid", "--deliver-after", "600", "--dir", store_dir)
    assert later.returncode == 0 and "to be delivered at" in later.stdout
    with TriggerClient(dir=store_dir) as reader:
        assert reader.get_run(runs["hooked"]).status == "WAITING"


def test_cancel(runs: dict[str, str], store_dir: str) -> None:
    result = cli("cancel", runs["waiting"], "--dir", store_dir)
    assert result.returncode == 0 and "CANCELED (was WAITING)" in result.stdout
    again = cli("cancel", runs["waiting"], "--dir", store_dir)
    assert again.returncode == 0 and "already finished (CANCELED)" in again.stdout
    with TriggerClient(dir=store_dir) as reader:
        assert reader.get_run(runs["waiting"]).status == "CANCELED"


def test_forget(runs: dict[str, str], store_dir: str) -> None:
    assert cli("forget", "--dir", store_dir).returncode == 2  # one of RUN_ID, --job, --all
    assert cli("forget", runs["ok"], "--all", "--dir", store_dir).returncode == 2
    one = cli("forget", runs["ok"], "--dir", store_dir)
    assert one.returncode == 0 and "Deleted 1 run " in one.stdout and runs["ok"] in one.stdout
    job = cli("forget", "--job", "flaky", "--dir", store_dir)
    assert job.returncode == 0 and runs["failed"] in job.stdout
    none = cli("forget", "--job", "flaky", "--dir", store_dir)
    assert none.returncode == 0 and "Nothing to delete" in none.stdout
    every = cli("forget", "--all", "--dir", store_dir)
    assert "Deleted 2 runs" in every.stdout
    assert "No runs." in cli("runs", "--dir", store_dir).stdout


def test_every_command_and_option_has_help_without_spec_references() -> None:
    top = cli("--help")
    assert top.returncode == 0
    for command in COMMANDS:
        assert command in top.stdout
        text = cli(command, "--help").stdout
        assert text.startswith(f"usage: trigger-nb {command}"), text
        assert "§" not in text and "SPEC" not in text, text
        # every option line has a help text after it (argparse puts it on the same or next line)
        options = text.split("options:", 1)[1]
        lines = [line for line in options.splitlines() if line.strip()]
        for i, line in enumerate(lines):
            if line.lstrip().startswith("-"):
                has_text = len(line.strip().split("  ")) > 1 or (
                    i + 1 < len(lines) and not lines[i + 1].lstrip().startswith("-")
                )
                assert has_text, (command, line)

