"""The ``io`` library beyond run_task, through real runs on a diskcache store (SPEC §4.7,
§6.7, §6.8, §6.10–6.13; v2 §5.6–5.12, §3.3): logger, key-value store, random/uuid/now,
statuses, parallel and integrations; plus one ``%%job`` cell in a real IPython shell.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from IPython.utils.capture import capture_output

from trigger_nb import ConfigError, PayloadError, TriggerClient
from trigger_nb._io import _library

FAST_RETRY = {"limit": 3, "min_timeout_in_ms": 10, "max_timeout_in_ms": 10, "randomize": False}


def raw_tasks(client: TriggerClient, run_id: str) -> list[dict[str, Any]]:
    return client.repo.load_tasks(run_id)


def journals(client: TriggerClient, run_id: str) -> list[list[tuple[str, str]]]:
    """Per execution, ``(display_key, outcome)`` of every task it visited, in order.

    Read from the stored execution journals, so assertions do not race the background
    execution that a due wait or retry starts right after it.
    """
    keys = {t["id"]: t["display_key"] for t in raw_tasks(client, run_id)}
    journals = client.repo.load_journals(run_id)
    return [[(keys[e[0]], e[1]) for e in journals[n]] for n in sorted(journals)]


def last_journal(client: TriggerClient, run_id: str) -> list[str]:
    """The outcomes of the last execution, in order (ran / replayed / waiting / ...)."""
    journals = client.repo.load_journals(run_id)
    return [e[1] for e in journals[max(journals)]]


def logs(client: TriggerClient, run_id: str) -> list[dict[str, Any]]:
    return [t for t in raw_tasks(client, run_id) if t["kind"] == "log"]


# -- logger (SPEC §6.7) ------------------------------------------------------------------------

EXPECTED_LEVELS = {
    "log": ["LOG"],
    "error": ["LOG", "ERROR"],
    "warn": ["LOG", "ERROR", "WARN"],
    "info": ["LOG", "ERROR", "WARN", "INFO"],
    "debug": ["LOG", "ERROR", "WARN", "INFO", "DEBUG"],
}


@pytest.mark.parametrize("job_level", list(EXPECTED_LEVELS))
def test_logger_records_levels_by_the_intended_rule(client: TriggerClient, job_level: str) -> None:
    @client.define_job(id="levels", log_level=job_level)
    async def levels(payload: Any, io: Any, ctx: Any) -> None:
        for level in ("log", "error", "warn", "info", "debug"):
            await getattr(io.logger, level)(f"a {level} message")

    run = client.invoke_sync("levels")
    assert run.status == "SUCCESS", run.error
    recorded = [t["properties"][0]["text"] for t in logs(client, run.id)]
    assert recorded == EXPECTED_LEVELS[job_level]


def test_log_tasks_look_like_v2s(client: TriggerClient, capsys: pytest.CaptureFixture[str]) -> None:
    @client.define_job(id="shape")
    async def shape(payload: Any, io: Any, ctx: Any) -> None:
        await io.logger.warn("disk almost full", {"free_mb": 12})

    run = client.invoke_sync("shape")
    [task] = logs(client, run.id)
    assert task["name"] == "log" and task["icon"] == "log" and task["noop"] is True
    assert task["description"] == "disk almost full" and task["display_key"] == "disk almost full"
    assert task["params"] == {"free_mb": 12}
    assert task["properties"] == [{"label": "Level", "text": "WARN"}]
    assert task["style"] == {"style": "minimal", "variant": "warn"}
    assert task["status"] == "COMPLETED"
    assert "disk almost full" in run.log()
    assert capsys.readouterr().out == ""  # nothing echoed: the log view shows them


def test_same_message_twice_is_fine_and_replays_without_repeating(client: TriggerClient) -> None:
    @client.define_job(id="twice")
    async def twice(payload: Any, io: Any, ctx: Any) -> str:
        await io.logger.info("tick")
        await io.logger.info("tick")
        await io.logger.warn("tick")

        async def parent(task: Any, io: Any) -> str:
            await io.logger.info("tick")  # same message, other parent: its own counter
            await io.logger.info("tick")
            return "done"

        await io.run_task("parent", parent)
        await io.wait("pause", 0.05)
        await io.logger.info("tick")
        return "ok"

    run = client.invoke_sync("twice").wait_sync(timeout=10)
    assert run.status == "SUCCESS", run.error
    records = logs(client, run.id)
    assert len(records) == 6  # no duplicate records: one per call and occurrence
    assert len({t["idempotency_key"] for t in records}) == 6
    first, second = journals(client, run.id)
    assert first == [
        ("tick", "ran"),
        ("tick", "ran"),
        ("tick", "ran"),
        ("tick", "ran"),  # the two ticks inside the parent
        ("tick", "ran"),
        ("parent", "ran"),
        ("pause", "waiting"),
    ]
    # Execution 2 replayed every log before the wait (and the parent, whose children are not
    # visited again) and ran only what came after the wait.
    assert second == [
        ("tick", "replayed"),
        ("tick", "replayed"),
        ("tick", "replayed"),
        ("parent", "replayed"),
        ("pause", "ran"),
        ("tick", "ran"),
    ]
    # A third execution of the finished run replays everything, records unchanged.
    again = client.invoke_sync("twice", run_id=run.id)
    assert again.output == "ok"
    assert {t["idempotency_key"] for t in logs(client, run.id)} == {
        t["idempotency_key"] for t in records
    }
    assert "ran" not in last_journal(client, run.id)


def test_exception_as_properties_is_stored_as_an_error_record(client: TriggerClient) -> None:
    @client.define_job(id="exc")
    async def exc(payload: Any, io: Any, ctx: Any) -> None:
        settings: dict[str, str] = {}
        try:
            settings["missing"]
        except KeyError as error:
            await io.logger.error("lookup failed", error)

    run = client.invoke_sync("exc")
    [task] = run.tasks
    assert set(task["params"]) == {"name", "message", "stack"}
    assert task["params"]["name"] == "KeyError"
    assert task["params"]["message"] == "'missing'"
    assert "in exc" in task["params"]["stack"]  # the user's own frame


# -- key-value store (SPEC §3, §6.8) -------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["env", "job", "run"])
def test_store_get_set_delete_has(client: TriggerClient, namespace: str) -> None:
    @client.define_job(id="kv")
    async def kv(payload: Any, io: Any, ctx: Any) -> list[Any]:
        ns = getattr(io.store, namespace)
        return [
            await ns.get("get-missing", "color"),
            await ns.has("has-missing", "color"),
            await ns.set("set", "color", {"name": "teal", "rgb": (0, 128, 128)}),
            await ns.get("get", "color"),
            await ns.has("has", "color"),
            await ns.delete("delete", "color"),
            await ns.delete("delete-again", "color"),
            await ns.has("has-after", "color"),
        ]

    run = client.invoke_sync("kv")
    teal = {"name": "teal", "rgb": [0, 128, 128]}  # JSON round trip: tuples become lists
    assert run.output == [None, False, teal, teal, True, True, False, False]
    by_key = {t["display_key"]: t for t in run.tasks}
    assert (
        by_key["get"]["name"] == "Key-Value Store Get"
        and by_key["get"]["icon"] == "database-export"
    )
    assert (
        by_key["set"]["name"] == "Key-Value Store Set" and by_key["set"]["icon"] == "database-plus"
    )
    assert (
        by_key["delete"]["icon"] == "database-minus" and by_key["has"]["icon"] == "database-search"
    )
    assert by_key["set"]["params"]["namespace"] == namespace


def test_store_namespaces_are_isolated(client: TriggerClient) -> None:
    @client.define_job(id="writer")
    async def writer(payload: Any, io: Any, ctx: Any) -> None:
        await io.store.env.set("env", "k", "env-value")
        await io.store.job.set("job", "k", "job-value")
        await io.store.run.set("run", "k", f"run-value-{payload['n']}")

    @client.define_job(id="reader")
    async def reader(payload: Any, io: Any, ctx: Any) -> list[Any]:
        return [
            await io.store.env.get("env", "k"),
            await io.store.job.get("job", "k"),
            await io.store.run.get("run", "k"),
        ]

    run1 = client.invoke_sync("writer", {"n": 1})
    run2 = client.invoke_sync("writer", {"n": 2})
    assert client.invoke_sync("reader").output == ["env-value", None, None]
    # Outside runs, client.store sees what the runs stored.
    assert client.store.env.get("k") == "env-value"
    assert client.store.job("writer").get("k") == "job-value"
    assert client.store.job("reader").has("k") is False
    assert client.store.run(run1.id).get("k") == "run-value-1"
    assert client.store.run(run2.id).get("k") == "run-value-2"
    assert client.store.env.keys() == ["k"]


def test_store_get_is_pinned_at_first_execution(client: TriggerClient) -> None:
    client.store.env.set("greeting", "hello")

    @client.define_job(id="pinned")
    async def pinned(payload: Any, io: Any, ctx: Any) -> Any:
        return await io.store.env.get("read-greeting", "greeting")

    run = client.invoke_sync("pinned")
    assert run.output == "hello"
    client.store.env.set("greeting", "bonjour")  # changed from outside after the first execution
    again = client.invoke_sync("pinned", run_id=run.id)
    assert again.output == "hello"  # replayed, not read again
    assert client.store.env.get("greeting") == "bonjour"
    fresh = client.invoke_sync("pinned", run_id="run_fresh")
    assert fresh.output == "bonjour"  # a new run reads anew


def test_store_from_outside_runs(client: TriggerClient) -> None:
    env = client.store.env
    assert env.get("missing") is None and env.has("missing") is False
    assert env.set("when", {"at": (1, 2)}) == {"at": [1, 2]}
    assert env.get("when") == {"at": [1, 2]}
    assert env.delete("when") is True and env.delete("when") is False
    assert client.store.job("My Job").set("k", 1) == 1
    assert client.store.job("my-job").get("k") == 1  # job ids are slugified as everywhere
    with pytest.raises(ConfigError, match="non-empty string key"):
        env.get("")
    with pytest.raises(ConfigError, match="no cache key"):
        env.get(["cache", "key"])
    with pytest.raises(PayloadError, match=r"value\[\"x\"\] has type object"):
        env.set("bad", {"x": object()})
    assert env.has("bad") is False


def test_store_bad_input_inside_a_run_fails_clearly_and_stores_nothing(
    client: TriggerClient,
) -> None:
    @client.define_job(id="bad-key")
    async def bad_key(payload: Any, io: Any, ctx: Any) -> None:
        await io.store.env.get("read", "")

    @client.define_job(id="bad-value")
    async def bad_value(payload: Any, io: Any, ctx: Any) -> None:
        await io.store.env.set("write", "k", {1, 2})

    run = client.invoke_sync("bad-key")
    assert run.status == "FAILURE"
    assert run.error is not None and run.error["name"] == "ConfigError"
    assert (
        "Please provide a non-empty key when accessing the store from inside a run."
        in run.error["message"]
    )
    run = client.invoke_sync("bad-value")
    assert run.status == "FAILURE" and run.error is not None and run.error["name"] == "PayloadError"
    assert run.tasks == [] and client.store.env.has("k") is False


# -- random / uuid / now (SPEC §4.7, §6.10) ------------------------------------------------------


def _define_determinism_job(client: TriggerClient, calls: list[str]) -> None:
    @client.define_job(id="determinism")
    async def determinism(payload: Any, io: Any, ctx: Any) -> dict[str, Any]:
        calls.append("body")
        return {
            "random": await io.random("r"),
            "dice": await io.random("dice", min=1, max=6, round=True),
            "uuid": await io.uuid("u"),
            "now": await io.now("n"),
        }


def test_random_uuid_now_are_fixed_across_replays_and_clients(store_dir: str) -> None:
    calls: list[str] = []
    first_client = TriggerClient(dir=store_dir)
    try:
        _define_determinism_job(first_client, calls)
        run = first_client.invoke_sync("determinism")
        first = run.output
        assert first_client.invoke_sync("determinism", run_id=run.id).output == first
    finally:
        first_client.close()
    second_client = TriggerClient(dir=store_dir)  # a new process would see the same store
    try:
        _define_determinism_job(second_client, calls)
        again = second_client.invoke_sync("determinism", run_id=run.id)
        assert again.output == first
        assert again.executions == 3 and all(t["replayed"] for t in again.tasks)
    finally:
        second_client.close()
    assert calls == ["body"] * 3
    assert 0 <= first["random"] < 1 and first["dice"] in range(1, 7)
    import datetime as dt
    import uuid

    assert uuid.UUID(first["uuid"]).version == 4
    assert dt.datetime.fromisoformat(first["now"]).utcoffset() == dt.timedelta(0)


def test_random_bounds_rounding_and_warnings(
    client: TriggerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_library, "_random", SimpleNamespace(random=lambda: 0.5))

    @client.define_job(id="rand")
    async def rand(payload: Any, io: Any, ctx: Any) -> list[Any]:
        return [
            await io.random("half", min=0, max=5, round=True),  # 2.5 -> 3 (JS), not 2 (banker's)
            await io.random("neg", min=-5, max=0, round=True),  # -2.5 -> -2 (JS)
            await io.random("float", min=10, max=20),
            await io.random("same", min=4, max=4),
            await io.random("float-round", min=0.5, max=2.5, round=True),
        ]

    run = client.invoke_sync("rand")
    assert run.output == [3, -2, 15.0, 4.0, 2]
    tasks = run.tasks
    by_id = {t["id"]: t for t in tasks}
    warnings = {
        by_id[t["parent_id"]]["display_key"]: t["description"] for t in tasks if t["kind"] == "log"
    }
    assert warnings == {
        "same": "Lower bound matches upper bound - min: 4, max: 4",
        "float-round": "Rounding enabled with floating-point bounds. This may cause unexpected skew "
        "and boundary inclusivity.",
    }
    assert by_id[tasks[0]["id"]]["name"] == "random" and tasks[0]["icon"] == "dice-5-filled"
    assert tasks[0]["params"] == {"min": 0, "max": 5, "round": True}


def test_random_lower_bound_over_upper_bound_fails_the_task(client: TriggerClient) -> None:
    @client.define_job(id="inverted")
    async def inverted(payload: Any, io: Any, ctx: Any) -> float:
        return await io.random("r", min=5, max=1)

    @client.define_job(id="not-a-number")
    async def not_a_number(payload: Any, io: Any, ctx: Any) -> float:
        return await io.random("r", min="0")

    run = client.invoke_sync("inverted")
    assert run.status == "FAILURE" and run.error is not None
    assert run.error["message"] == "Lower bound can't be higher than upper bound - min: 5, max: 1"
    assert run.tasks[0]["status"] == "ERRORED" and run.tasks[0]["attempts"] == 1
    run = client.invoke_sync("not-a-number")
    assert run.error is not None and run.error["name"] == "ConfigError" and run.tasks == []


# -- statuses (SPEC §6.11) -------------------------------------------------------------------------


def test_status_create_update_history_and_log(client: TriggerClient) -> None:
    @client.define_job(id="status")
    async def status_job(payload: Any, io: Any, ctx: Any) -> dict[str, Any]:
        status = await io.create_status(
            "progress", {"label": "Importing", "state": "loading", "data": {"done": 0, "of": 2}}
        )
        await status.update("half", {"data": {"done": 1}})
        await status.update("finished", {"label": "Imported", "state": "success"})
        return status.to_dict()

    run = client.invoke_sync("status")
    final = {
        "id": "progress",
        "label": "Imported",
        "state": "success",
        "data": {"done": 1},  # replaced, not merged: "of" is gone
        "history": [
            {"label": "Importing", "state": "loading", "data": {"done": 0, "of": 2}},
            {"label": "Importing", "state": "loading", "data": {"done": 1}},
        ],
    }
    assert run.output == final
    names = [(t["name"], t["icon"]) for t in run.tasks]
    assert names == [("Importing", "bell"), ("Status update", "bell"), ("Imported", "bell")]
    assert run.log().splitlines()[1] == 'Status: Imported [success] {"done": 1}'
    assert "Status: Imported [success]" in run._repr_html_()
    # The status object is rebuilt from replayed outputs on the next execution.
    assert client.invoke_sync("status", run_id=run.id).output == final


def test_status_validation(client: TriggerClient) -> None:
    bad_inputs = [
        ({"state": "loading"}, 'needs a non-empty "label"'),
        ({"label": "x", "state": "done"}, "state must be one of loading, success, failure"),
        ({"label": "x", "data": [1]}, "data must be a dict"),
        ({"label": "x", "colour": "red"}, "Unknown status field"),
    ]
    for status, message in bad_inputs:

        @client.define_job(id="bad-status")
        async def bad_status(payload: Any, io: Any, ctx: Any, status: Any = status) -> None:
            await io.create_status("s", status)

        run = client.invoke_sync("bad-status", run_id=f"run_{len(message)}")
        assert run.status == "FAILURE" and run.error is not None
        assert message in run.error["message"], run.error
        assert run.tasks == []


# -- parallel (SPEC §4.4, §6.12) -------------------------------------------------------------------


def test_parallel_runs_branches_concurrently_and_returns_in_order(client: TriggerClient) -> None:
    events: list[str] = []

    @client.define_job(id="fan-out")
    async def fan_out(payload: Any, io: Any, ctx: Any) -> list[int]:
        started = 0
        all_started = asyncio.Event()
        finished = [asyncio.Event() for _ in range(5)]

        async def branch(item: int, index: int) -> int:
            async def work(task: Any) -> int:
                nonlocal started
                events.append(f"start {index}")
                started += 1
                if started == 5:
                    all_started.set()
                # A barrier: only passes if every branch is in flight at the same time.
                await asyncio.wait_for(all_started.wait(), timeout=5)
                if index < 4:  # finish in reverse order, without relying on timing
                    await asyncio.wait_for(finished[index + 1].wait(), timeout=5)
                events.append(f"end {index}")
                finished[index].set()
                return item * item

            return await io.run_task(["square", index], work)

        return await io.parallel("squares", [1, 2, 3, 4, 5], branch)

    run = client.invoke_sync("fan-out")
    assert run.status == "SUCCESS", run.error
    assert run.output == [1, 4, 9, 16, 25]  # item order, although they finished in reverse
    assert all(e.startswith("start") for e in events[:5])
    assert events[5:] == ["end 4", "end 3", "end 2", "end 1", "end 0"]
    parent, *children = run.tasks
    assert parent["name"] == "parallel" and {c["parent_id"] for c in children} == {parent["id"]}
    # Replay: the parent is completed, no branch runs again.
    assert client.invoke_sync("fan-out", run_id=run.id).output == [1, 4, 9, 16, 25]
    assert len(events) == 10


def test_parallel_one_failing_branch_fails_the_parent(client: TriggerClient) -> None:
    @client.define_job(id="one-fails")
    async def one_fails(payload: Any, io: Any, ctx: Any) -> list[Any]:
        async def branch(item: str, index: int) -> str:
            def work() -> str:
                if item == "bad":
                    raise ValueError(f"cannot process {item}")
                return item.upper()

            return await io.run_task(["process", index], work)

        return await io.parallel("process-all", ["a", "bad", "c"], branch, name="Process all")

    run = client.invoke_sync("one-fails")
    assert run.status == "FAILURE" and run.error is not None
    assert run.error["name"] == "ValueError" and run.error["message"] == "cannot process bad"
    statuses = {t["display_key"]: t["status"] for t in run.tasks}
    assert statuses == {
        "process-all": "ERRORED",
        "process-0": "COMPLETED",
        "process-1": "ERRORED",
        "process-2": "COMPLETED",
    }
    assert run.tasks[0]["name"] == "Process all"


def test_parallel_branch_that_waits_suspends_then_the_replay_completes(
    client: TriggerClient,
) -> None:
    ran: list[int] = []

    @client.define_job(id="fan-wait")
    async def fan_wait(payload: Any, io: Any, ctx: Any) -> list[int]:
        async def branch(item: int, index: int) -> int:
            if index == 1:
                await io.wait(["pause", index], 0.05)

            def work() -> int:
                ran.append(index)
                return item * 10

            return await io.run_task(["times-ten", index], work)

        return await io.parallel("fan", [1, 2, 3], branch)

    run = client.invoke_sync("fan-wait").wait_sync(timeout=10)
    assert run.status == "SUCCESS", run.error
    assert run.output == [10, 20, 30]
    assert sorted(ran) == [0, 1, 2]  # every branch's task ran exactly once
    first, second = journals(client, run.id)
    assert run.record["history"][0]["status"] == "WAITING"
    # Execution 1: the other branches finished while one waited; the parent did not complete.
    assert sorted(first) == [("pause-1", "waiting"), ("times-ten-0", "ran"), ("times-ten-2", "ran")]
    # Execution 2: the parent ran again, finished branches replayed, the waiting one went on.
    assert sorted(second) == [
        ("fan", "ran"),
        ("pause-1", "ran"),
        ("times-ten-0", "replayed"),
        ("times-ten-1", "ran"),
        ("times-ten-2", "replayed"),
    ]


def test_parallel_rejects_bad_arguments(client: TriggerClient) -> None:
    @client.define_job(id="bad-parallel")
    async def bad_parallel(payload: Any, io: Any, ctx: Any) -> None:
        await io.parallel("p", "abc", lambda item, index: item)

    run = client.invoke_sync("bad-parallel")
    assert (
        run.error is not None
        and run.error["name"] == "ConfigError"
        and "items must be a list" in run.error["message"]
    )


# -- integrations (SPEC §6.13, v2 §3.3) -----------------------------------------------------------


class FlakyAPI:
    """A fake API client whose first call fails."""

    def __init__(self) -> None:
        self.calls = 0

    def get_issue(self, number: int) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("connection reset")
        return {"number": number, "title": "Bug"}

    async def list_labels(self) -> list[str]:
        return ["bug", "docs"]


def test_integration_tasks_are_named_iconned_and_retried(client: TriggerClient) -> None:
    api = FlakyAPI()

    @client.define_job(id="integration")
    async def integration(payload: Any, io: Any, ctx: Any) -> list[Any]:
        github = io.integration("GitHub", api, retry=FAST_RETRY)
        issue = await github.run_task("get-issue", lambda client, task: client.get_issue(7))
        labels = await github.run_task(
            "labels", lambda client: client.list_labels(), name="List labels", icon="tag"
        )

        async def with_io(client: Any, task: Any, io: Any) -> int:
            await io.logger.info("inside an integration task")
            return task.attempts

        attempts = await github.run_task("with-io", with_io)
        return [issue, labels, attempts]

    run = client.invoke_sync("integration").wait_sync(timeout=10)
    assert run.status == "SUCCESS", run.error
    # The first call failed and waited for its retry, which the next execution made.
    assert journals(client, run.id)[:2] == [
        [("get-issue", "retry")],
        [
            ("get-issue", "ran"),
            ("labels", "ran"),
            ("inside an integration task", "ran"),
            ("with-io", "ran"),
        ],
    ]
    assert run.output == [{"number": 7, "title": "Bug"}, ["bug", "docs"], 1]
    by_key = {t["display_key"]: t for t in run.tasks}
    assert (
        by_key["get-issue"]["name"] == "GitHub: get-issue"
        and by_key["get-issue"]["icon"] == "github"
    )
    assert by_key["get-issue"]["attempts"] == 2 and api.calls == 2
    assert by_key["labels"]["name"] == "GitHub: List labels" and by_key["labels"]["icon"] == "tag"
    assert by_key["inside an integration task"]["parent_id"] == by_key["with-io"]["id"]


def test_integration_retries_by_default_and_options_override(client: TriggerClient) -> None:
    @client.define_job(id="default-retry")
    async def default_retry(payload: Any, io: Any, ctx: Any) -> Any:
        return await io.integration("Flaky API", FlakyAPI()).run_task(
            "get", lambda c: c.get_issue(1)
        )

    @client.define_job(id="no-retry")
    async def no_retry(payload: Any, io: Any, ctx: Any) -> Any:
        api = io.integration("Flaky API", FlakyAPI())
        return await api.run_task("get", lambda c: c.get_issue(1), retry=None)

    run = client.invoke_sync("default-retry")
    # standard_backoff by default: the failure schedules a retry instead of failing the run.
    assert run.record["history"][0]["status"] == "WAITING"
    assert journals(client, run.id)[0] == [("get", "retry")]
    [task] = run.tasks
    assert task["icon"] == "flaky-api" and task["name"] == "Flaky API: get"
    run = client.invoke_sync("no-retry")
    assert (
        run.status == "FAILURE" and run.error is not None and run.error["name"] == "ConnectionError"
    )


# -- %%job in a real IPython shell -----------------------------------------------------------------

CELL = """%%job library-tour
await io.logger.info("starting")
await io.logger.info("starting")
count = await io.store.job.get("count", "count") or 0
await io.store.job.set("bump", "count", count + 1)
status = await io.create_status("tour", {"label": "Touring", "state": "loading"})
dice = await io.random("dice", min=1, max=6, round=True)
async def double(item, index):
    return await io.run_task(["double", index], lambda: item * 2)
doubled = await io.parallel("doubles", [1, 2, 3], double)
await status.update("tour-done", {"state": "success", "data": {"dice": dice}})
return {"count": count + 1, "dice": dice, "doubled": doubled}
"""


def test_library_in_a_job_cell(ip: Any, shell_client: TriggerClient) -> None:
    client = shell_client
    outputs = []
    for _ in range(2):
        with capture_output() as captured:
            result = ip.run_cell(CELL, store_history=True)
        assert result.error_in_exec is None and result.error_before_exec is None
        outputs.append((ip.user_ns["_"], captured))
    (run, first), (_, second) = outputs
    assert run.status == "SUCCESS"
    assert run.output["count"] == 1 and run.output["doubled"] == [2, 4, 6]
    assert client.store.job("library-tour").get("count") == 1  # the set task ran once
    text = "\n".join(str(o.data.get("text/plain", "")) for o in second.outputs)
    assert "Status: Touring [success]" in text
    assert "execution 2" in text and "replayed" in text
    assert "ran" not in last_journal(client, run.id)
    assert json.loads(json.dumps(run.output)) == run.output
