"""``%%job`` / ``%job`` in a real IPython ``InteractiveShell`` (SPEC §2, §4, §5).

Every test executes cells with ``ip.run_cell`` exactly as a user types them, against a fresh
store per test (a default client on ``tmp_path``). Side effects are counters in the shell's
user namespace: incremented inside a task they must move once (replay), outside tasks on every
execution (SPEC §4.1).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from IPython.utils.capture import capture_output

import trigger_nb._client as client_module
from trigger_nb import PayloadError, Run, RunFailedError, StoreError, TriggerClient

# -- helpers -------------------------------------------------------------------------------


class Cell:
    """What one executed cell produced: its result, stdout, and the text of its displays."""

    def __init__(self, result: Any, stdout: str, displays: list[str]) -> None:
        self.result = result
        self.stdout = stdout
        self.displays = displays

    @property
    def error(self) -> BaseException | None:
        error: BaseException | None = self.result.error_before_exec or self.result.error_in_exec
        return error

    @property
    def text(self) -> str:
        """Everything the user sees as text: stdout, then the text/plain of every display."""
        return self.stdout + "\n".join(self.displays)

    def ok(self) -> Cell:
        assert self.error is None, f"cell failed: {self.error!r}\n{self.text}"
        return self

    def failed(self) -> Cell:
        """Check that the cell raised RunFailedError (SPEC §2: a failed run fails its cell)."""
        assert isinstance(self.error, RunFailedError), f"expected RunFailedError, got {self.error!r}"
        return self


def run_cell(ip: Any, source: str) -> Cell:
    """Execute ``source`` as the next notebook cell and capture what it shows."""
    with capture_output() as captured:
        result = ip.run_cell(source, store_history=True)
    displays = [str(out.data.get("text/plain", "")) for out in captured.outputs]
    return Cell(result, captured.stdout, displays)


def last_run(ip: Any) -> Run:
    """The cell's value ``_`` (SPEC §2: the run handle is the cell's value)."""
    value = ip.user_ns["_"]
    assert isinstance(value, Run), f"_ is {value!r}, not a Run"
    return value


@pytest.fixture
def client(shell_client: TriggerClient) -> TriggerClient:
    """In this module ``client`` is the default client the magics use."""
    return shell_client


# -- replay and run identity -----------------------------------------------------------------

REPLAY_CELL = """%%job counter
global outside
outside += 1
print("outside tasks, execution", ctx.run.execution)

def side_effect():
    global inside
    inside += 1
    return inside

seen = await io.run_task("side-effect", side_effect)
return {"seen": seen}
"""


def test_reexecuting_a_cell_replays_tasks_but_reruns_code_outside_them(
    ip: Any, client: TriggerClient
) -> None:
    ip.user_ns.update(inside=0, outside=0)

    first = run_cell(ip, REPLAY_CELL).ok()
    run = last_run(ip)
    second = run_cell(ip, REPLAY_CELL).ok()

    assert ip.user_ns["inside"] == 1  # the task ran once, then replayed
    assert ip.user_ns["outside"] == 2  # code outside tasks runs on every execution
    assert "outside tasks, execution 1" in first.stdout
    assert "outside tasks, execution 2" in second.stdout
    assert last_run(ip).id == run.id
    assert run.status == "SUCCESS"
    assert run.output == {"seen": 1}
    assert run.executions == 2
    [task] = run.tasks
    assert task["replayed"] is True and task["attempts"] == 1
    assert "replayed" in second.text


def test_cell_value_is_the_run_and_out_binds_it(ip: Any, client: TriggerClient) -> None:
    run_cell(ip, '%%job bind-me --out my_run\nreturn await io.run_task("t", lambda: 41) + 1').ok()

    run = ip.user_ns["my_run"]
    assert isinstance(run, Run)
    assert last_run(ip) == run
    assert run.job_id == "bind-me"
    assert run.output == 42


def test_new_and_a_different_payload_execute_again(ip: Any, client: TriggerClient) -> None:
    ip.user_ns["calls"] = 0
    body = 'def work():\n    global calls\n    calls += 1\nawait io.run_task("work", work)\n'

    run_cell(ip, "%%job again\n" + body).ok()
    default_id = last_run(ip).id
    run_cell(ip, "%%job again\n" + body).ok()
    assert ip.user_ns["calls"] == 1
    assert last_run(ip).id == default_id

    run_cell(ip, "%%job again --new\n" + body).ok()
    new_id = last_run(ip).id
    assert ip.user_ns["calls"] == 2
    assert new_id != default_id

    run_cell(ip, '%%job again --payload {"n": 2}\n' + body).ok()
    payload_id = last_run(ip).id
    assert ip.user_ns["calls"] == 3
    assert payload_id not in (default_id, new_id)
    assert {r.id for r in client.runs(job_id="again")} == {default_id, new_id, payload_id}


def test_json_payload_with_braces_and_dollar_is_not_mangled(ip: Any, client: TriggerClient) -> None:
    # IPython would expand {user} and $HOME in an ordinary magic line.
    ip.user_ns.update(user="EXPANDED", HOME="EXPANDED")
    payload_text = '{"user": 1, "tpl": "{user}", "price": "$HOME $5", "nested": {"a": [1, {}]}}'

    run_cell(ip, f"%%job payload-json --payload {payload_text}\nreturn payload").ok()

    expected = {"user": 1, "tpl": "{user}", "price": "$HOME $5", "nested": {"a": [1, {}]}}
    run = last_run(ip)
    assert run.payload == expected
    assert run.output == expected


def test_json_payload_may_contain_flag_like_text(ip: Any, client: TriggerClient) -> None:
    # Text inside a JSON string is data, not an option of the magic (SPEC §2 --payload TEXT).
    payload_text = '{"command": "pytest --timeout 5 --new", "note": "--wait"}'

    run_cell(ip, f"%%job payload-flags --payload {payload_text}\nreturn payload").ok()

    assert last_run(ip).payload == {"command": "pytest --timeout 5 --new", "note": "--wait"}


def test_payload_can_name_a_notebook_variable(ip: Any, client: TriggerClient) -> None:
    ip.user_ns["my_dict"] = {"user": 7, "tags": ["a", "b"]}

    run_cell(ip, '%%job payload-var --payload my_dict\nreturn payload["user"]').ok()

    run = last_run(ip)
    assert run.payload == {"user": 7, "tags": ["a", "b"]}
    assert run.output == 7
    assert run.id == client.run_id_for("payload-var", {"user": 7, "tags": ["a", "b"]})


def test_non_json_payload_is_a_payload_error_and_stores_nothing(
    ip: Any, client: TriggerClient
) -> None:
    ip.user_ns["ran"] = False

    cell = run_cell(ip, "%%job bad-payload --payload object()\nglobal ran\nran = True")

    assert isinstance(cell.error, PayloadError)
    assert "PayloadError" in cell.text and "object" in cell.text
    assert "Traceback" not in cell.text  # a one-line message, not a tour of our internals
    assert ip.user_ns["ran"] is False
    assert client.runs() == []


# -- retries and failures ---------------------------------------------------------------------

FLAKY_SETUP = """
flaky_calls = 0
flaky_fail_until = 2
def flaky():
    global flaky_calls
    flaky_calls += 1
    if flaky_calls <= flaky_fail_until:
        raise ConnectionError(f"flaky failure {flaky_calls}")
    return {"ok": flaky_calls}
"""

FLAKY_CELL = """%%job flaky --wait --timeout 20
fast = {"limit": 3, "min_timeout_in_ms": 50, "factor": 1, "randomize": False}
return await io.run_task("flaky-call", flaky, retry=fast)
"""


def test_retry_with_backoff_succeeds_on_the_third_attempt(ip: Any, client: TriggerClient) -> None:
    run_cell(ip, FLAKY_SETUP).ok()

    run_cell(ip, FLAKY_CELL).ok()

    run = last_run(ip)
    assert run.status == "SUCCESS"
    assert run.output == {"ok": 3}
    [task] = run.tasks
    assert task["attempts"] == 3
    assert task["status"] == "COMPLETED"
    assert ip.user_ns["flaky_calls"] == 3
    assert run.executions == 3  # each retry ends the execution and a new one replays


def _assert_user_traceback_only(text: str) -> None:
    assert 'raise ConnectionError(f"flaky failure {flaky_calls}")' in text
    assert "trigger_nb/_engine" not in text
    assert "asyncio/" not in text


def test_exhausted_retries_fail_the_run_and_reexecuting_retries_the_task(
    ip: Any, client: TriggerClient
) -> None:
    run_cell(ip, FLAKY_SETUP + "flaky_fail_until = 10\n").ok()

    failed = run_cell(ip, FLAKY_CELL.replace("--wait", "--wait --out r")).failed()

    run = ip.user_ns["r"]  # bound although the cell raised
    assert run.status == "FAILURE"
    assert run.error is not None
    assert run.error["name"] == "ConnectionError"
    assert "flaky failure 3" in run.error["message"]
    [task] = run.tasks
    assert task["status"] == "ERRORED" and task["attempts"] == 3
    _assert_user_traceback_only(run.log())
    _assert_user_traceback_only(failed.text)  # the log was shown before the cell raised
    assert "ConnectionError" in failed.text
    error = failed.error
    assert isinstance(error, RunFailedError)
    # The message names the failed task and the original exception; the rendered traceback
    # is the user's own frames only.
    assert "'flaky-call'" in str(error) and "ConnectionError: flaky failure 3" in str(error)
    _assert_user_traceback_only("\n".join(error._render_traceback_()))

    # The user fixes the cause and executes the cell again: the task runs again (SPEC §5).
    ip.user_ns["flaky_fail_until"] = 0
    run_cell(ip, FLAKY_CELL).ok()

    assert last_run(ip).id == run.id
    assert run.status == "SUCCESS"
    assert run.output == {"ok": 4}
    [task] = run.tasks
    assert task["attempts"] == 4  # attempts continue
    assert ip.user_ns["flaky_calls"] == 4


def test_job_retry_line_magic_runs_the_failed_task_again(ip: Any, client: TriggerClient) -> None:
    run_cell(ip, FLAKY_SETUP + "flaky_fail_until = 10\n").ok()
    run_cell(ip, FLAKY_CELL.replace("--wait --timeout 20", "--wait --timeout 20 --out r")).failed()
    run = ip.user_ns["r"]
    assert run.status == "FAILURE"

    ip.user_ns["flaky_fail_until"] = 0
    run_cell(ip, f"%job retry {run.id}").ok()
    run.wait_sync(20)

    assert run.status == "SUCCESS"
    assert run.output == {"ok": 4}
    assert run.tasks[0]["attempts"] == 4


def test_duplicate_cache_keys_fail_the_run_and_suggest_the_loop_variable(
    ip: Any, client: TriggerClient
) -> None:
    cell = run_cell(
        ip,
        '%%job dupes --out run\nfor i in range(3):\n    await io.run_task("fetch-page", lambda: i)\n',
    ).failed()

    run = ip.user_ns["run"]
    assert run.status == "FAILURE"
    assert run.error is not None
    assert run.error["name"] == "DuplicateTaskKeyError"
    assert "fetch-page" in run.error["message"]
    assert "loop variable" in run.error["message"]
    assert "DuplicateTaskKeyError" in cell.text
    assert len(run.tasks) == 1  # the first call ran; the duplicate never did


def test_non_json_output_is_a_task_output_error_naming_key_type_and_path(
    ip: Any, client: TriggerClient
) -> None:
    cell = run_cell(
        ip,
        '%%job not-json --out run\nawait io.run_task("make-rows", lambda: {"rows": [1, object()]})\n',
    ).failed()

    run = ip.user_ns["run"]
    assert run.status == "FAILURE"
    assert run.error is not None
    assert run.error["name"] == "TaskOutputError"
    message = run.error["message"]
    assert "make-rows" in message
    assert "object" in message
    assert '["rows"][1]' in message
    assert "pickle" in message  # points at the remedy
    assert "TaskOutputError" in cell.text


def test_pickle_stores_and_replays_non_json_outputs(
    ip: Any, client: TriggerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a kernel, sys.modules["__main__"] is the notebook's namespace (that is how pickle
    # finds classes defined in cells); the test shell restores pytest's __main__, so put it back.
    monkeypatch.setitem(sys.modules, "__main__", ip.user_module)
    run_cell(
        ip,
        "class Point:\n"
        "    def __init__(self, x, y):\n"
        "        self.x, self.y = x, y\n"
        "made = 0\n"
        "def make_point():\n"
        "    global made\n"
        "    made += 1\n"
        "    return Point(3, 4)\n",
    ).ok()
    cell = """%%job pickled --pickle
p = await io.run_task("point", make_point)
s = await io.run_task("tags", lambda: {"b", "a"})
assert type(p).__name__ == "Point" and isinstance(s, set), (p, s)
return {"x": p.x, "y": p.y, "tags": sorted(s)}
"""
    run_cell(ip, cell).ok()
    run = last_run(ip)
    assert run.status == "SUCCESS", run.log()

    # A new client on the same store (as after a kernel restart) replays from disk.
    client.close()
    fresh = TriggerClient(dir=client.config.dir)
    client_module.set_default_client(fresh)
    run_cell(ip, cell).ok()

    replayed = last_run(ip)
    assert replayed.id == run.id
    assert replayed.status == "SUCCESS", replayed.log()
    assert replayed.output == {"x": 3, "y": 4, "tags": ["a", "b"]}
    assert ip.user_ns["made"] == 1
    assert [t["replayed"] for t in replayed.tasks] == [True, True]
    assert replayed.tasks[1]["output"] == {"a", "b"}


def test_syntax_error_points_at_the_cell_line_and_stores_nothing(
    ip: Any, client: TriggerClient
) -> None:
    cell = run_cell(ip, "%%job broken\na = 1\nb = (2 +\n    3 +)\nreturn a\n")

    assert isinstance(cell.error, SyntaxError)
    assert cell.error.lineno == 4  # line 1 is the %%job line
    assert "line 4" in cell.text
    assert "3 +)" in cell.text
    assert client.runs() == []
    assert "broken" not in client.jobs


def test_return_output_and_global_writes(ip: Any, client: TriggerClient) -> None:
    ip.user_ns["total"] = 10

    run_cell(
        ip,
        "%%job globals-demo\n"
        "global total, fresh_name\n"
        'n = await io.run_task("n", lambda: 5)\n'
        "total += n\n"
        "fresh_name = 'set by the job'\n"
        "return {'total': total}\n",
    ).ok()

    assert ip.user_ns["total"] == 15
    assert ip.user_ns["fresh_name"] == "set by the job"
    assert last_run(ip).output == {"total": 15}


# -- the %job line magic ----------------------------------------------------------------------


def test_job_list_show_and_forget(ip: Any, client: TriggerClient) -> None:
    run_cell(ip, '%%job listed --payload {"n": 1}\nreturn 1').ok()
    first = last_run(ip)
    run_cell(ip, '%%job listed --payload {"n": 2}\nreturn 2').ok()
    second = last_run(ip)
    run_cell(ip, "%%job other\nreturn 3").ok()
    third = last_run(ip)

    # %job list returns the runs table (a widget in a kernel, text in a terminal)
    listing = run_cell(ip, "%job list --job listed").ok()
    assert first.id in listing.text and second.id in listing.text
    assert third.id not in listing.text
    assert "SUCCESS" in listing.text

    shown = run_cell(ip, f"%job show {second.id}").ok()
    assert last_run(ip) == second
    assert "Output: 2" in shown.text

    forgotten = run_cell(ip, f"%job forget {first.id}").ok()
    assert first.id in forgotten.stdout
    assert {r.id for r in client.runs()} == {second.id, third.id}

    everything = run_cell(ip, "%job forget --all").ok()
    assert "Deleted 2 run(s)" in everything.stdout
    assert client.runs() == []
    assert run_cell(ip, "%job list").ok().text.strip().endswith("No runs.")
    assert "No runs." in run_cell(ip, "%job").ok().text  # a bare %job lists the runs too


def test_job_cancel_a_waiting_run(ip: Any, client: TriggerClient) -> None:
    run_cell(ip, '%%job sleepy\nawait io.wait("w", 30)\nreturn "woke"').ok()
    run = last_run(ip)
    assert run.status == "WAITING"

    cell = run_cell(ip, f"%job cancel {run.id}").ok()

    assert run.status == "CANCELED"
    assert "CANCELED" in cell.stdout
    assert [t["status"] for t in run.tasks] == ["CANCELED"]
    assert run.output is None


def test_job_resume_executes_a_due_run_nobody_woke(
    ip: Any, client: TriggerClient, tmp_path: Path
) -> None:
    run_cell(ip, '%%job resumable --run resume-me\nawait io.wait("w", 1)\nreturn "done"').ok()
    run_id = last_run(ip).id
    assert last_run(ip).status == "WAITING"
    # Swapping the client (same store) drops the old client's timer: nobody will wake the run.
    run_cell(ip, f"%job config --dir {client.config.dir}").ok()
    swapped = client_module.default_client()
    assert swapped is not client
    time.sleep(1.3)
    assert swapped.get_run(run_id).status == "WAITING"

    run_cell(ip, f"%job resume {run_id}").ok()

    run = swapped.get_run(run_id)
    run.wait_sync(10)
    assert run.status == "SUCCESS"
    assert run.output == "done"
    assert run.executions == 2


def test_unusable_store_is_a_one_line_store_error(
    ip: Any, client: TriggerClient, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    config = run_cell(ip, f"%job config --dir {blocker}")

    assert isinstance(config.error, StoreError)
    assert str(blocker) in config.text
    assert "Traceback" not in config.text and "sqlite3" not in config.text
    assert client_module.default_client() is client  # the working client is kept

    client_module.set_default_client(TriggerClient(dir=str(blocker)))
    cell = run_cell(ip, "%%job on-bad-store\nreturn 1")

    assert isinstance(cell.error, StoreError)
    assert str(blocker) in cell.text
    assert "Traceback" not in cell.text


def test_wait_timeout_is_a_clear_error_and_the_run_goes_on(ip: Any, client: TriggerClient) -> None:
    cell = run_cell(ip, '%%job slow --wait --timeout 0.3 --out slow_run\nawait io.wait("w", 30)')

    assert type(cell.error).__name__ == "RunTimeoutError"
    assert "WAITING" in cell.text and "background" in cell.text
    run = ip.user_ns["slow_run"]
    assert run.status == "WAITING"  # not canceled


def test_reexecuting_a_waiting_run_keeps_its_deadline(ip: Any, client: TriggerClient) -> None:
    cell = '%%job patient --out patient\nawait io.wait("w", 1)\nreturn "done"'
    run_cell(ip, cell).ok()
    run = ip.user_ns["patient"]
    deadline = run.record["wake_at"]
    time.sleep(0.3)

    run_cell(ip, cell).ok()

    assert run.status == "WAITING"
    assert run.record["wake_at"] == deadline  # a replay does not extend the wait (v2 §5.1)
    with capture_output():  # the live log re-renders (throttled) as the run resumes
        run.wait_sync(10)
        time.sleep(0.5)
    assert run.status == "SUCCESS"
    assert run.record["completed_at"] < deadline + 2


def test_quiet_shows_a_one_line_summary(ip: Any, client: TriggerClient) -> None:
    cell = run_cell(ip, '%%job hushed --quiet\nreturn await io.run_task("t", lambda: 1)').ok()

    [shown] = cell.displays
    assert shown.count("\n") == 0
    assert last_run(ip).id in shown and "SUCCESS" in shown


def test_job_list_reads_each_run_record_once(ip: Any, client: TriggerClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """%job list costs what client.runs() costs: the table uses the records runs() read."""
    for n in range(3):
        run_cell(ip, f'%%job listed --payload {{"n": {n}}}\nreturn 1').ok()
    reads: list[str] = []
    storage = client.storage
    original_get, original_scan = storage.get, storage.scan
    monkeypatch.setattr(storage, "get", lambda key: reads.append(key) or original_get(key))
    monkeypatch.setattr(storage, "scan", lambda prefix, **kw: reads.append(prefix) or original_scan(prefix, **kw))
    listing = run_cell(ip, "%job list").ok()
    assert listing.stdout.count("listed") == 3
    assert reads == ["run/"]  # one scan, no second read per run


# -- start-up cost (issue 10) ---------------------------------------------------------------

_FIRST_CELL = """
import os, sys
from IPython.core.interactiveshell import InteractiveShell
sys.modules["pytest"] = None  # a user's install has no pytest: nothing here may need it
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "trigger_nb")
result = ip.run_cell('%%job plain --quiet\\nreturn await io.run_task("a", lambda: 41) + 1\\n')
assert result.success, result.error_in_exec
print("httpx" in sys.modules)
ip.run_cell(
    '%%job fetcher --quiet\\n'
    'await io.background_fetch("f", "http://127.0.0.1:9/none", retry={"limit": 0})\\n'
)
print("httpx" in sys.modules)
"""


def test_a_first_job_without_http_tasks_does_not_import_httpx(tmp_path: Path) -> None:
    """A fresh interpreter, a plain InteractiveShell (no pytest), a %%job cell: no httpx until
    an HTTP task is described."""
    import os
    import subprocess

    env = {**os.environ, "TRIGGER_NB_DIR": str(tmp_path / "store")}
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_CELL], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    flags = [line for line in done.stdout.splitlines() if line in ("False", "True")]
    assert flags == ["False", "True"], done.stdout


# -- %job help, expansion, token masking (SPEC §2) -----------------------------------------


def test_help_prints_usage_instead_of_an_error(ip: Any, client: TriggerClient) -> None:
    overview = run_cell(ip, "%job --help").ok().stdout
    for command in ("list", "show", "retry", "cancel", "resume", "forget", "server", "send", "events", "config"):
        assert f"%job {command}" in overview
    assert "%job forget RUN_ID | --job ID | --all" in run_cell(ip, "%job forget --help").ok().stdout
    assert "Usage: %job show RUN_ID" in run_cell(ip, "%job show -h").ok().stdout
    cell_help = run_cell(ip, "%%job --help\nreturn 1").ok().stdout
    assert "--payload TEXT" in cell_help and "--wait" in cell_help
    assert client.runs() == []  # asking for help runs nothing
    # `--help` inside a payload is data, not a request for help.
    run_cell(ip, '%%job echo --payload {"argv": "--help"}\nreturn payload').ok()
    assert last_run(ip).output == {"argv": "--help"}


def test_line_commands_expand_variables_but_the_cell_header_does_not(
    ip: Any, client: TriggerClient
) -> None:
    run_cell(ip, "%%job expanded --out chosen\nreturn 7").ok()
    run_id = ip.user_ns["chosen"].id
    assert run_id in run_cell(ip, "%job show {chosen.id}").ok().text
    ip.user_ns["rid"] = run_id
    assert "Output: 7" in run_cell(ip, "%job show $rid").ok().text
    # The %%job header is never expanded: `{n}` / `$n` reach the payload verbatim.
    ip.user_ns["n"] = 5
    run_cell(ip, '%%job verbatim --payload {"text": "{n} and $n"}\nreturn payload').ok()
    assert last_run(ip).output == {"text": "{n} and $n"}


def test_server_masks_the_events_token_unless_asked(ip: Any, client: TriggerClient) -> None:
    from trigger_nb._receiver._backend import events_token

    token = events_token(client.storage)
    masked = run_cell(ip, "%job server").ok().stdout
    assert token not in masked
    assert "Bearer ********" in masked and "--show-token" in masked
    shown = run_cell(ip, "%job server --show-token").ok().stdout
    assert f"Bearer {token}" in shown
