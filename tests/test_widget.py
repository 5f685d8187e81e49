"""The task-log widget without a browser: its view model, its display bundle, its controls.

Runs are real (a client on a real store, real jobs); the widget is the real anywidget model
with ipywidgets' default comm (no kernel). What the browser draws is checked in
tests/browser/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from _support import poll
from test_changed_code import NEW_DOUBLE, Job, by_key

from trigger_nb import TriggerClient, redact_string
from trigger_nb._notebook._rows import GROUP_MIN, user_frames
from trigger_nb._notebook._static import render_run_html, render_run_text
from trigger_nb._notebook._viewmodel import run_view
from trigger_nb._notebook._widget import WIDGET_MIME, TaskLog


def view_of(client: TriggerClient, run_id: str, **options: Any) -> dict[str, Any]:
    return run_view(*client.get_run(run_id).records(), **options)


def task_rows(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in view["rows"] if row["type"] == "task"}


@pytest.fixture
def log_factory(client: TriggerClient) -> Iterator[Any]:
    logs: list[TaskLog] = []

    def make(run_id: str) -> TaskLog:
        log = TaskLog(client.get_run(run_id))
        sent: list[dict[str, Any]] = []
        log.widget.send = sent.append  # type: ignore[method-assign]  # what the browser receives
        log.sent = sent  # type: ignore[attr-defined]
        logs.append(log)
        return log

    yield make
    for log in logs:
        log.close()
        log.widget.close()


def click(log: TaskLog, cmd: str, task_id: str | None = None, value: str | None = None) -> dict[str, Any]:
    """What a button does in the browser: a message to the model; returns the answer."""
    req = len(log.sent) + 1000  # type: ignore[attr-defined]
    log._on_msg(log.widget, {"cmd": cmd, "task_id": task_id, "value": value, "req": req}, [])
    return poll(lambda: next((m for m in log.sent if m.get("req") == req), None))  # type: ignore[attr-defined]


def test_rows_nesting_statuses_and_replayed_marks(client: TriggerClient) -> None:
    @client.define_job(id="nested")
    async def nested(payload: Any, io: Any, ctx: Any) -> Any:
        async def parent(task: Any, io: Any) -> int:
            return await io.run_task("child", lambda: 2) + 1

        await io.run_task("fetch", lambda: 1, name="Fetch", icon="shopify")
        return await io.run_task("parent", parent, name="Parent")

    run = client.invoke_sync("nested")
    first = task_rows(view_of(client, run.id))
    assert [(k, r["depth"], r["status"], r["replayed"]) for k, r in first.items()] == [
        ("fetch", 0, "COMPLETED", False),
        ("parent", 0, "COMPLETED", False),
        ("child", 1, "COMPLETED", False),
    ]
    assert first["fetch"]["icon"] == "shopify" and first["fetch"]["outcome"] == "ran"
    client.invoke_sync("nested", run_id=run.id)
    second = view_of(client, run.id)
    assert all(row["replayed"] for row in task_rows(second).values())
    assert second["run"]["status"] == "SUCCESS" and second["run"]["progress"] == {"done": 3, "seen": 3}
    assert [(e["n"], e["ran"], e["replayed"]) for e in second["executions"]] == [(1, 3, 0), (2, 0, 2)]
    # active time counts the executions only; the span is wall-clock (SPEC §8)
    assert second["run"]["active"] <= second["run"]["span"]


def test_redaction_is_shown_in_params_and_output(client: TriggerClient) -> None:
    @client.define_job(id="secret")
    async def secret(payload: Any, io: Any, ctx: Any) -> Any:
        header = redact_string("Bearer {}", "sk-live-123")
        return await io.run_task(
            "login",
            lambda: {"user": "ada", "token": "abc", "nested": {"key": "k"}},
            params={"authorization": header},
            redact={"paths": ["token", "nested.key"]},
        )

    run = client.invoke_sync("secret")
    row = next(iter(task_rows(view_of(client, run.id)).values()))
    expanded = task_rows(view_of(client, run.id, expanded={row["id"]}))["login"]["detail"]
    assert json.loads(expanded["output"]) == {"user": "ada", "token": "[REDACTED]", "nested": {"key": "[REDACTED]"}}
    assert "Bearer ********" in expanded["params"] and "sk-live-123" not in json.dumps(expanded)
    assert expanded["redacted"] == ["token", "nested.key"]


def _failing_job(client: TriggerClient, state: dict[str, Any]) -> None:
    @client.define_job(id="fails")
    async def fails(payload: Any, io: Any, ctx: Any) -> Any:
        await io.run_task("ok", lambda: 1)

        def convert() -> int:
            if state["broken"]:
                raise KeyError("currency")
            return 2

        return await io.run_task("convert", convert)


def test_controls_shown_only_where_they_apply(client: TriggerClient) -> None:
    state = {"broken": True}
    _failing_job(client, state)

    @client.define_job(id="waits")
    async def waits(payload: Any, io: Any, ctx: Any) -> Any:
        await io.wait_for_request("approve", lambda url: None, timeout_in_seconds=600)
        await io.wait("nap", 3600)

    @client.define_job(id="retries")
    async def retries(payload: Any, io: Any, ctx: Any) -> Any:
        return await io.run_task("flaky", lambda: 1 / 0, retry={"limit": 3, "min_timeout_in_ms": 60_000})

    failed = client.invoke_sync("fails")
    view = view_of(client, failed.id)
    rows = task_rows(view)
    assert view["run"]["controls"] == ["retry"]
    assert rows["ok"]["controls"] == ["invalidate"]
    assert rows["convert"]["controls"] == ["retry", "complete"]
    assert rows["convert"]["error"]["name"] == "KeyError"

    waiting = client.invoke_sync("waits")
    view = view_of(client, waiting.id)
    rows = task_rows(view)
    assert view["run"]["controls"] == ["cancel"]
    assert rows["approve"]["controls"] == ["send"]
    assert rows["approve"]["wait"]["kind"] == "callback"
    assert rows["approve"]["wait"]["url"].startswith("http://127.0.0.1:")
    assert rows["approve"]["wait"]["timeout_at"] > rows["approve"]["start"] + 590

    retrying = client.invoke_sync("retries")
    retry_view = view_of(client, retrying.id)
    assert [(e["failed"], e["retrying"]) for e in retry_view["executions"]] == [(0, 1)]
    assert "── execution 1 · WAITING · 0 ran, 0 replayed, 1 retrying" in render_run_text(retry_view)
    rows = task_rows(retry_view)
    assert rows["flaky"]["controls"] == ["retry_now", "complete"]
    assert rows["flaky"]["wait"] | {"due_at": 0} == {"kind": "retry", "attempt": 2, "limit": 3, "due_at": 0}


def test_history_shows_what_happened_then(client: TriggerClient) -> None:
    state = {"broken": True}
    _failing_job(client, state)
    run = client.invoke_sync("fails")
    state["broken"] = False
    client.call_sync(client.retry(run.id))
    latest = task_rows(view_of(client, run.id))
    assert latest["convert"]["status"] == "COMPLETED" and latest["convert"]["error"] is None
    then = view_of(client, run.id, execution=1)
    assert then["shown"] == 1 and then["latest"] == 2
    rows = task_rows(then)
    assert rows["convert"]["status"] == "ERRORED"
    assert rows["convert"]["error"]["name"] == "KeyError"
    assert rows["convert"]["controls"] == []  # history is read-only
    assert rows["ok"]["outcome"] == "ran"


def test_sibling_groups_collapse_and_keep_failures_visible(client: TriggerClient) -> None:
    @client.define_job(id="many")
    async def many(payload: Any, io: Any, ctx: Any) -> Any:
        for i in range(1000):
            await io.run_task(["item", i], lambda: 1, name="item")
        await io.run_task(["item", "bad"], lambda: 1 / 0, name="item")

    run = client.invoke_sync("many")
    view = view_of(client, run.id)
    groups = [row for row in view["rows"] if row["type"] == "group"]
    assert len(groups) == 1 and groups[0]["count"] == 1001 and groups[0]["name"] == "item"
    assert groups[0]["counts"] == {"COMPLETED": 1000, "ERRORED": 1}
    # collapsed: the group row and the member that needs attention
    assert [row["key"] for row in view["rows"] if row["type"] == "task"] == ["item-bad"]
    opened = view_of(client, run.id, open_groups={groups[0]["id"]})
    assert sum(1 for row in opened["rows"] if row["type"] == "task") == 501  # a page, + the failure
    assert GROUP_MIN == 5


def test_an_open_group_lists_a_page_then_more_on_request(
    client: TriggerClient, log_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trigger_nb._notebook import _rows

    monkeypatch.setattr(_rows, "GROUP_PAGE", 100)  # pages of 100: the same code, a smaller run

    @client.define_job(id="many")
    async def many(payload: Any, io: Any, ctx: Any) -> Any:
        for i in range(250):
            await io.run_task(["item", i], lambda: 1, name="item")

    run = client.invoke_sync("many")
    log = log_factory(run.id)
    log.refresh()
    [group] = [row for row in log.widget.state["rows"] if row["type"] == "group"]

    def listed() -> tuple[int, list[tuple[int, int]]]:
        rows = log.widget.state["rows"]
        more = [(row["hidden"], row["next"]) for row in rows if row["type"] == "more" and row["group"] == group["id"]]
        return sum(1 for row in rows if row["type"] == "task"), more

    log._on_msg(log.widget, {"cmd": "toggle_group", "id": group["id"]}, [])
    assert listed() == (100, [(150, 100)])
    bundle = log.bundle()  # a saved notebook says so too
    assert "… 150 more in this group" in bundle["text/plain"] and "… 150 more in this group" in bundle["text/html"]
    log._on_msg(log.widget, {"cmd": "more_of_group", "id": group["id"]}, [])
    assert listed() == (200, [(50, 50)])
    log._on_msg(log.widget, {"cmd": "more_of_group", "id": group["id"]}, [])
    assert listed() == (250, [])
    # Closed, "more" changes nothing; opened again, the first page.
    log._on_msg(log.widget, {"cmd": "toggle_group", "id": group["id"]}, [])
    log._on_msg(log.widget, {"cmd": "more_of_group", "id": group["id"]}, [])
    assert listed() == (0, [])
    log._on_msg(log.widget, {"cmd": "toggle_group", "id": group["id"]}, [])
    assert listed() == (100, [(150, 100)])


def test_bundle_carries_widget_view_html_and_text_and_stays_small(
    client: TriggerClient, log_factory: Any
) -> None:
    @client.define_job(id="big")
    async def big(payload: Any, io: Any, ctx: Any) -> Any:
        for i in range(1000):
            await io.run_task(["item", i], lambda: {"pad": "x" * 40}, name="item")
        return "done"

    run = client.invoke_sync("big")
    log = log_factory(run.id)
    bundle = log.bundle()
    assert bundle[WIDGET_MIME]["model_id"] == log.widget.model_id
    assert "<table" in bundle["text/html"] and "item</b> × 1,000" in bundle["text/html"]
    assert "SUCCESS" in bundle["text/plain"] and "item × 1000" in bundle["text/plain"]
    saved = len(json.dumps(bundle)) + len(json.dumps(log.widget.state))
    print(f"\n[trigger_nb] saved size of a 1,000-task run's log: {saved / 1024:.1f} KiB (SPEC §8: <= 100 KB)")
    assert saved <= 100_000


def test_static_html_is_left_aligned_and_nested(client: TriggerClient) -> None:
    @client.define_job(id="html")
    async def html_job(payload: Any, io: Any, ctx: Any) -> Any:
        return await io.run_task("outer", lambda task, io: io.run_task("a-rather-long-inner-name", lambda: 1))

    run = client.invoke_sync("html")
    html = render_run_html(view_of(client, run.id))
    assert "text-align:left" in html and "padding-left:1.2em" in html
    assert "a-rather-long-inner-name" in html
    assert html.count("<tr>") == 3  # header + two tasks


def test_user_frames_hide_the_engine() -> None:
    stack = (
        "Traceback (most recent call last):\n"
        '  File "/x/site-packages/trigger_nb/_engine/_execution.py", line 3, in _invoke\n'
        "    result = fn()\n"
        '  File "/tmp/ipykernel_1/2.py", line 5, in convert\n'
        "    return rates[c]\n"
        "KeyError: 'USD'\n"
    )
    assert user_frames(stack) == '  File "/tmp/ipykernel_1/2.py", line 5, in convert\n    return rates[c]'


def test_controls_act_on_a_real_client(client: TriggerClient, log_factory: Any) -> None:
    state = {"broken": True}
    _failing_job(client, state)
    run = client.invoke_sync("fails")
    log = log_factory(run.id)
    convert = task_rows(log.widget.state)["convert"]

    assert click(log, "complete", convert["id"], "{not json")["error"].startswith("Invalid JSON")
    assert run.status == "FAILURE"
    assert click(log, "complete", convert["id"], '{"value": 42}')["error"] is None
    assert run.status == "SUCCESS" and run.output == {"value": 42}
    poll(lambda: log.widget.state["run"]["status"] == "SUCCESS")  # the view followed the bus

    ok = task_rows(log.widget.state)["ok"]
    assert click(log, "invalidate", ok["id"])["error"] is None
    assert run.record["invalidated"] == ["ok"]
    poll(lambda: "retry" in log.widget.state["run"]["controls"])
    assert click(log, "retry")["error"] is None
    assert run.executions == 3 and "ok" in [t["display_key"] for t in run.tasks]
    poll(lambda: log.widget.state["run"]["invalidated"] == [])  # it ran again: no longer pending
    # a control that does not apply answers with the reason
    answer = click(log, "invalidate", convert["id"] + "nope")
    assert "has no task" in answer["error"]


def test_send_posts_through_the_receiver_and_cancel(client: TriggerClient, log_factory: Any) -> None:
    @client.define_job(id="approval")
    async def approval(payload: Any, io: Any, ctx: Any) -> Any:
        return await io.wait_for_request("approve", lambda url: None, timeout_in_seconds=600)

    run = client.invoke_sync("approval")
    log = log_factory(run.id)
    approve = task_rows(log.widget.state)["approve"]
    assert "Invalid JSON" in click(log, "send", approve["id"], "{approved: yes}")["error"]
    assert run.status == "WAITING"
    assert click(log, "send", approve["id"], '{"approved": true}')["error"] is None
    assert run.result(timeout=10) == {"approved": True}
    assert run.tasks[0]["output"] == {"approved": True}

    other = client.invoke_sync("approval", {"n": 2})
    log2 = log_factory(other.id)
    assert click(log2, "cancel")["error"] is None
    assert other.status == "CANCELED"


# -- changed code and tasks no longer reached (issue 12, SPEC §2) ------------------------------


def test_a_replayed_task_whose_code_changed_is_marked_with_invalidate(
    client: TriggerClient, log_factory: Any
) -> None:
    job = Job(client)
    job.invoke()
    job.double = NEW_DOUBLE
    run = job.invoke()  # replays "double" although its function changed (v2: by key)
    log = log_factory(run.id)
    rows = task_rows(log.widget.state)
    assert rows["double"]["code_changed"] and rows["double"]["replayed"]
    assert rows["double"]["controls"] == ["invalidate"]
    assert not rows["plus-one"]["code_changed"]  # its lambda is the same
    bundle = log.bundle()
    [line] = [line for line in bundle["text/plain"].splitlines() if "double" in line]
    assert line.endswith("code changed")
    assert "code changed" not in next(line for line in bundle["text/plain"].splitlines() if "plus-one" in line)
    assert bundle["text/html"].count('class="trigger-nb-code-changed"') == 1
    assert not task_rows(view_of(client, run.id, execution=1))["double"]["code_changed"]
    assert [e["code_changed"] for e in log.widget.state["executions"]] == [0, 1]

    assert click(log, "invalidate", rows["double"]["id"])["error"] is None
    assert run.record["invalidated"] == ["double"]
    poll(lambda: "retry" in log.widget.state["run"]["controls"])
    assert click(log, "retry")["error"] is None  # the next execution runs it again
    assert job.calls == ["double", "plus", "double"] and run.output == {"a": 20, "b": 3}
    poll(lambda: log.widget.state["latest"] == 3)
    again = task_rows(log.widget.state)["double"]
    assert (again["code_changed"], again["outcome"], again["controls"]) == (False, "ran", ["invalidate"])
    # history does not change: execution 2 replayed it with changed code
    assert task_rows(view_of(client, run.id, execution=2))["double"]["code_changed"]


def test_a_group_counts_its_members_whose_code_changed(client: TriggerClient) -> None:
    fn = {"item": lambda: 1}

    @client.define_job(id="loop")
    async def loop(payload: Any, io: Any, ctx: Any) -> Any:
        return [await io.run_task(["item", i], fn["item"], name="item") for i in range(GROUP_MIN + 1)]

    client.invoke_sync("loop", run_id="r-loop")
    fn["item"] = lambda: 2
    view = view_of(client, client.invoke_sync("loop", run_id="r-loop").id)
    [group] = [row for row in view["rows"] if row["type"] == "group"]
    assert group["code_changed"] == GROUP_MIN + 1 and group["replayed"] == GROUP_MIN + 1
    assert f"{GROUP_MIN + 1} code changed" in render_run_text(view)
    assert f"{GROUP_MIN + 1} code changed</b>" in render_run_html(view)


def test_stored_tasks_no_longer_reached_are_listed_under_the_log_with_invalidate(
    client: TriggerClient, log_factory: Any
) -> None:
    job = Job(client)
    job.invoke()
    job.second_key = "add-one"  # the step was renamed: "plus-one" stays stored, unused
    run = job.invoke()
    log = log_factory(run.id)
    state = log.widget.state
    assert "plus-one" not in task_rows(state)
    [unused] = state["not_reached"]
    assert (unused["key"], unused["status"], unused["controls"]) == ("plus-one", "COMPLETED", ["invalidate"])
    assert state["not_reached_total"] == 1
    bundle = log.bundle()
    assert "not reached by execution 2" in bundle["text/plain"]
    assert "plus-one" in bundle["text/plain"].split("not reached by execution 2")[1]
    assert 'class="trigger-nb-not-reached"' in bundle["text/html"]
    assert view_of(client, run.id, execution=1)["not_reached"] == []  # an earlier execution shown

    assert click(log, "invalidate", unused["id"])["error"] is None
    assert "plus-one" not in by_key(run)  # deleted ...
    assert run.record["invalidated"] == []  # ... and not pending: no execution will run it
    poll(lambda: log.widget.state["not_reached"] == [])
    assert log.widget.state["run"]["controls"] == []  # nothing to retry


# -- the live view reads the store only when it must (SPEC §13) --------------------------------


def test_renders_during_an_execution_read_no_task_records_and_the_end_reads_everything(
    client: TriggerClient, log_factory: Any
) -> None:
    @client.define_job(id="streams")
    async def streams(payload: Any, io: Any, ctx: Any) -> Any:
        await io.wait("start", 0.05)
        for i in range(30):
            await io.run_task(["item", i], lambda *, i=i: i, name="item")
        return "done"

    run = client.invoke_sync("streams")
    log = log_factory(run.id)
    live = log.page.live
    assert live.reads == {"run": 1, "record": 0}
    seen: list[tuple[str, int, dict[str, int]]] = []

    def render_now(notice: Any) -> None:  # a render after every task notice, as a slow run would
        if notice.kind == "task":
            view = log.page.view()
            seen.append((view["run"]["status"], view["run"]["progress"]["seen"], dict(live.reads)))

    unsubscribe = run.subscribe(render_now)
    try:
        assert run.result(timeout=10) == "done"
    finally:
        unsubscribe()
    assert [status for status, _, _ in seen] == ["EXECUTING"] * len(seen)
    assert [n for _, n, _ in seen] == sorted(n for _, n, _ in seen) and seen[-1][1] == 31
    assert {str(reads) for _, _, reads in seen} == {str({"run": 1, "record": 1})}  # the run record, once
    poll(lambda: log.widget.state["run"]["status"] == "SUCCESS")
    assert live.reads["run"] >= 2  # the end of the execution: read whole
    assert log.widget.state == run_view(*run.records(), now=log.widget.state["now"])
