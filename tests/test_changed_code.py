"""Changed code and tasks no longer reached (SPEC §2 "Changed code", "Not reached", §3 prune).

Through the library API (``invoke(..., rerun_changed=True)``, ``client.prune``), a real IPython
shell (``%%job --rerun-changed``, ``%job prune``, a lambda edited between two executions of
the same cell) and a real kernel (the same, through ``KernelSession``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_magic_shell import run_cell

from trigger_nb import ConfigError, RunBusyError, TriggerClient
from trigger_nb._notebook._notebook_runner import KernelSession

# Two versions of a task function, on lines of their own (their source is what is compared).
CALLS: list[str] = []
OLD_DOUBLE = lambda: CALLS.append("double") or 2  # noqa: E731
NEW_DOUBLE = lambda: CALLS.append("double") or 20  # noqa: E731


class Job:
    """A job whose task functions and keys a test swaps between executions, as a user edits
    a cell between two executions."""

    def __init__(self, client: TriggerClient, job_id: str = "edited") -> None:
        self.client = client
        self.double: Callable[[], Any] = OLD_DOUBLE
        self.second_key = "plus-one"
        self.wait_before_second = False
        self.calls = CALLS
        CALLS.clear()
        self.run_id = client.run_id_for(job_id, {})
        self.job_id = job_id

        @client.define_job(id=job_id)
        async def body(payload: Any, io: Any, ctx: Any) -> Any:
            a = await io.run_task("double", self.double)
            if self.wait_before_second:
                await io.wait("pause", 30)
            b = await io.run_task(self.second_key, lambda: self.calls.append("plus") or a + 1)
            return {"a": a, "b": b}

    def invoke(self, **options: Any) -> Any:
        return self.client.invoke_sync(self.job_id, {}, run_id=self.run_id, **options)


def by_key(run: Any) -> dict[str, dict[str, Any]]:
    return {task["display_key"]: task for task in run.tasks}


# -- changed code ----------------------------------------------------------------------------


def test_a_replayed_task_whose_function_changed_is_marked_in_every_view(mem_client: TriggerClient) -> None:
    job = Job(mem_client)
    job.invoke()
    job.double = NEW_DOUBLE
    run = job.invoke()
    assert run.output == {"a": 2, "b": 3}  # v2's key-based replay stays the default
    assert job.calls == ["double", "plus"]
    tasks = by_key(run)
    assert tasks["double"]["code_changed"] is True and tasks["double"]["replayed"] is True
    assert tasks["plus-one"]["code_changed"] is False  # its lambda's source is the same
    text = run.log()
    assert "code changed" in next(line for line in text.splitlines()[-4:] if "double" in line)
    assert "code changed" not in next(line for line in text.splitlines()[-4:] if "plus-one" in line)
    assert 'class="trigger-nb-code-changed"' in run._repr_html_()
    job.double = OLD_DOUBLE  # changed back: nothing to mark any more
    assert by_key(job.invoke())["double"]["code_changed"] is False


def test_rerun_changed_runs_only_the_changed_tasks_again_keeping_their_attempts(mem_client: TriggerClient) -> None:
    job = Job(mem_client)
    job.invoke()
    job.double = NEW_DOUBLE
    run = job.invoke(rerun_changed=True)
    assert job.calls == ["double", "plus", "double"]  # plus-one replayed: its code is the same
    # Downstream tasks keep their stored outputs (key-based replay): b is still 2 + 1.
    assert run.output == {"a": 20, "b": 3}
    double = by_key(run)["double"]
    assert (double["attempts"], double["replayed"], double["code_changed"]) == (2, False, False)
    assert run.executions_log()[-1]["tasks"][0][1:3] == ["ran", 2]
    assert by_key(job.invoke(rerun_changed=True))["double"]["replayed"] is True  # now current


def test_library_tasks_never_count_as_changed_code(mem_client: TriggerClient) -> None:
    @mem_client.define_job(id="library")
    async def body(payload: Any, io: Any, ctx: Any) -> Any:
        await io.logger.info("hello")
        return [await io.random("r"), await io.uuid("u")]

    first = mem_client.invoke_sync("library", {}, run_id="r-lib")
    again = mem_client.invoke_sync("library", {}, run_id="r-lib", rerun_changed=True)
    assert again.output == first.output
    assert all(t["replayed"] and not t["code_changed"] for t in again.tasks)


def test_an_integration_task_is_fingerprinted_by_the_users_function(mem_client: TriggerClient) -> None:
    fn = {"get": lambda client, task: client["v"]}

    @mem_client.define_job(id="integration")
    async def body(payload: Any, io: Any, ctx: Any) -> Any:
        return await io.integration("api", {"v": 1}).run_task("get", fn["get"])

    mem_client.invoke_sync("integration", {}, run_id="r-int")
    assert not mem_client.get_run("r-int").tasks[0]["code_changed"]
    fn["get"] = lambda client, task: client["v"] + 1
    run = mem_client.invoke_sync("integration", {}, run_id="r-int", rerun_changed=True)
    assert run.output == 2 and run.tasks[0]["attempts"] == 2


# -- not reached -----------------------------------------------------------------------------


def test_a_renamed_key_leaves_a_task_not_reached_which_prune_deletes(mem_client: TriggerClient) -> None:
    job = Job(mem_client)
    job.invoke()
    job.second_key = "add-one"
    run = job.invoke()
    tasks = by_key(run)
    assert tasks["plus-one"]["not_reached"] is True
    assert not tasks["double"]["not_reached"] and not tasks["add-one"]["not_reached"]
    text = run.log()
    assert "not reached by execution 2" in text and f"%job prune {run.id}" in text
    assert text.index("plus-one", text.index("not reached by")) > 0
    html = run._repr_html_()
    assert html.count('class="trigger-nb-not-reached"') == 1
    pruned = mem_client.prune(run.id)
    assert [(p["display_key"], p["status"]) for p in pruned] == [("plus-one", "COMPLETED")]
    assert sorted(by_key(run)) == ["add-one", "double"]
    assert run.output == {"a": 2, "b": 3} and "not reached" not in run.log()
    assert mem_client.prune(run.id) == []


def test_tasks_after_a_wait_or_a_failure_are_not_unreached(mem_client: TriggerClient) -> None:
    job = Job(mem_client)
    job.invoke()
    job.wait_before_second = True  # the edited body now waits before plus-one
    run = job.invoke()
    assert run.status == "WAITING"
    assert not any(t["not_reached"] for t in run.tasks)
    assert mem_client.prune(run.id) == [] and "plus-one" in by_key(run)
    assert "not reached" not in run.log()

    job.wait_before_second = False
    job.double = lambda: 1 // 0
    failed = job.invoke(rerun_changed=True)
    assert failed.status == "FAILURE"
    assert mem_client.prune(run.id) == [] and "pause" in by_key(failed)


def test_children_count_only_when_their_parent_ran_without_calling_them(mem_client: TriggerClient) -> None:
    children = {"list": ["a", "b"]}

    async def parent(task: Any, io: Any) -> list[Any]:
        return [await io.run_task(["child", name], lambda *, n=name: n) for name in children["list"]]

    parents = {"fn": parent}

    @mem_client.define_job(id="nested")
    async def body(payload: Any, io: Any, ctx: Any) -> Any:
        return await io.run_task("parent", parents["fn"])

    mem_client.invoke_sync("nested", {}, run_id="r-nest")
    children["list"] = ["a"]
    # The parent replays: its function was not called, its children could not be visited.
    run = mem_client.invoke_sync("nested", {}, run_id="r-nest")
    assert not any(t["not_reached"] for t in run.tasks)

    async def edited_parent(task: Any, io: Any) -> list[Any]:
        return [await io.run_task(["child", name], lambda *, n=name: n) for name in children["list"]]

    parents["fn"] = edited_parent
    run = mem_client.invoke_sync("nested", {}, run_id="r-nest", rerun_changed=True)
    assert run.output == ["a"]
    assert {t["display_key"]: t["not_reached"] for t in run.tasks} == {
        "parent": False, "child-a": False, "child-b": True,
    }
    assert [p["display_key"] for p in mem_client.prune("r-nest")] == ["child-b"]


def test_prune_refuses_a_run_another_process_executes(mem_client: TriggerClient) -> None:
    job = Job(mem_client)
    job.invoke()
    job.second_key = "add-one"
    job.invoke()
    with mem_client.storage.transaction():
        record = mem_client.repo.load_run(job.run_id)
        assert record is not None
        # A live holder: this very process, seen as another client (another nonce).
        record["lease"] = {"holder": f"{os.uname().nodename}:{os.getpid()}:other", "expires_at": 4e9}
        mem_client.repo.save_run(record)
    with pytest.raises(RunBusyError):
        mem_client.prune(job.run_id)
    assert "plus-one" in by_key(mem_client.get_run(job.run_id))
    with pytest.raises(ConfigError):
        mem_client.prune("no-such-run")


# -- a real IPython shell ----------------------------------------------------------------------

CELL = """%%job edit-me --out run {flags}
double = await io.run_task("double", lambda: {expression}, name="Double")
result = await io.run_task("{key}", lambda: double + 1)
return result
"""


def test_editing_a_cells_lambda_in_a_real_shell(ip: Any, shell_client: TriggerClient) -> None:
    def cell(expression: str = "2 * 2", key: str = "plus-one", flags: str = "") -> Any:
        return run_cell(ip, CELL.format(expression=expression, key=key, flags=flags)).ok()

    cell()
    shown = cell(expression="2 * 200").text
    assert "code changed" in shown
    run = ip.user_ns["run"]
    assert run.output == 5 and by_key(run)["double"]["code_changed"]
    cell(expression="2 * 200", flags="--rerun-changed")
    assert by_key(run)["double"]["output"] == 400 and by_key(run)["double"]["attempts"] == 2
    shown = cell(expression="2 * 200", key="add-one").text
    assert "not reached" in shown
    pruned = run_cell(ip, "%job prune {run.id}").ok()
    assert "deleted 1 task(s)" in pruned.text and "'plus-one'" in pruned.text
    assert sorted(by_key(run)) == ["add-one", "double"]
    assert "nothing to prune" in run_cell(ip, "%job prune {run.id}").ok().text
    bad = run_cell(ip, "%%job x --every 5 --rerun-changed\nreturn 1")
    assert isinstance(bad.error, ConfigError)


# -- a real kernel ---------------------------------------------------------------------------


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[KernelSession]:
    with KernelSession(env={"TRIGGER_NB_DIR": str(tmp_path / "store")}, cwd=str(tmp_path)) as session:
        yield session


@pytest.mark.kernel
def test_editing_a_cells_lambda_in_a_real_kernel(kernel: KernelSession) -> None:
    def cell(code: str) -> Any:
        result = kernel.run(code, timeout=60)
        assert result.error is None, f"{result.error}\n{result.text}"
        return result

    cell("%load_ext trigger_nb")
    cell(CELL.format(expression="2 * 2", key="plus-one", flags=""))
    edited = cell(CELL.format(expression="2 * 200", key="plus-one", flags=""))
    html = next(o["data"]["text/html"] for o in edited.outputs if "text/html" in o.get("data", {}))
    assert "code changed" in edited.text and "trigger-nb-code-changed" in html
    rerun = cell(CELL.format(expression="2 * 200", key="add-one", flags="--rerun-changed"))
    assert "not reached" in rerun.text and "code changed" not in rerun.text.split("execution 3")[-1]
    state = cell("print([(t['display_key'], t['output'], t['attempts'], t['not_reached']) for t in run.tasks])")
    assert state.stdout.strip() == "[('double', 400, 2, False), ('plus-one', 5, 1, True), ('add-one', 401, 1, False)]"
    assert "deleted 1 task(s)" in cell("%job prune {run.id}").text
