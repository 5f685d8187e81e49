"""Events end to end (SPEC §2 ``--on``, §3, §6.4, §6.9, §9 ``POST /events``; v2 §5.3, §5.9).

Real paths only: a diskcache store in tmp_path and a PostgreSQL store (``both_stores``), the
client's home loop, the real receiver on 127.0.0.1, a real ``trigger-nb serve`` process, and a
real IPython shell for the magics.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _support import client_at, poll
from IPython.utils.capture import capture_output

from trigger_nb import EventFilterError, PayloadError, RunBusyError, TriggerClient, event_trigger
from trigger_nb._events._eventlog import WAITER_PREFIX
from trigger_nb._receiver._backend import events_token
from trigger_nb._store import Repository

pytestmark = pytest.mark.both_stores


def define_waiter(client: TriggerClient, spec: dict[str, Any], **options: Any) -> None:
    @client.define_job(id="waiter")
    async def waiter(payload, io, ctx):  # type: ignore[no-untyped-def]
        return await io.wait_for_event("wait", spec, **options)


def define_listener(client: TriggerClient, job_id: str = "listener", **trigger: Any) -> None:
    @client.define_job(id=job_id, trigger=event_trigger(**trigger))
    async def listener(payload, io, ctx):  # type: ignore[no-untyped-def]
        return {"payload": payload, "event_id": ctx.event.id, "event_name": ctx.event.name}


def runs_of(client: TriggerClient, job_id: str) -> list[Any]:
    return client.runs(job_id=job_id)


# -- wait_for_event ---------------------------------------------------------------------------


def test_wait_for_event_ignores_non_matching_events_and_resumes_on_the_match(
    client: TriggerClient,
) -> None:
    define_waiter(
        client, {"name": "order.paid", "filter": {"amount": [{"$gt": 10}]}, "source": "shop"}
    )
    run = client.invoke_sync("waiter")
    assert run.status == "WAITING"
    [task] = run.tasks
    assert (task["name"], task["icon"], task["status"]) == (
        "Wait for Event",
        "custom-event",
        "WAITING",
    )

    client.send_event_sync({"name": "order.refunded", "payload": {"amount": 50}, "source": "shop"})
    client.send_event_sync({"name": "order.paid", "payload": {"amount": 5}, "source": "shop"})
    client.send_event_sync({"name": "order.paid", "payload": {"amount": 50}, "source": "bank"})
    client.send_event_sync({"name": "order.paid", "payload": {"amount": 50}})  # source trigger.dev
    time.sleep(0.3)
    assert run.status == "WAITING"

    sent = client.send_event_sync(
        {
            "name": "order.paid",
            "payload": {"amount": 50},
            "source": "shop",
            "context": {"k": 1},
            "id": "pay-1",
        }
    )
    output = run.result(timeout=10)
    assert output == {
        "id": "pay-1",
        "name": "order.paid",
        "source": "shop",
        "payload": {"amount": 50},
        "context": {"k": 1},
        "timestamp": sent["timestamp"],
    }
    assert run.tasks[0]["status"] == "COMPLETED"
    assert sent["resumed"] == [run.id]


def test_wait_for_event_without_source_accepts_any_source(client: TriggerClient) -> None:
    define_waiter(client, {"name": ["a", "b"]})
    run = client.invoke_sync("waiter")
    client.send_event_sync({"name": "b", "source": "somewhere", "payload": {"x": 1}})
    assert run.result(timeout=10)["source"] == "somewhere"


def test_the_first_matching_event_wins(client: TriggerClient) -> None:
    define_waiter(client, {"name": "tick"})
    run = client.invoke_sync("waiter")
    client.send_event_sync({"name": "tick", "id": "first"})
    client.send_event_sync({"name": "tick", "id": "second"})
    assert run.result(timeout=10)["id"] == "first"
    # Re-executing the run replays the stored event: the later one never replaces it.
    assert client.invoke_sync("waiter", run_id=run.id).output["id"] == "first"
    assert client.event_log.get("second")["resumed"] == []


def test_wait_for_event_times_out_with_callback_timeout_error(client: TriggerClient) -> None:
    define_waiter(client, {"name": "never"}, timeout_in_seconds=0.3)
    run = client.invoke_sync("waiter")
    assert run.status == "WAITING"
    run.wait_sync(timeout=10)
    assert run.status == "FAILURE"
    assert run.error["name"] == "CallbackTimeoutError"
    assert "no matching event" in run.error["message"]
    [task] = run.tasks
    assert task["status"] == "ERRORED"
    # A late event changes nothing (the first terminal state wins).
    client.send_event_sync({"name": "never"})
    time.sleep(0.2)
    assert run.tasks[0]["status"] == "ERRORED"


def test_lookback_matches_an_event_sent_before_the_wait_and_zero_does_not(
    client: TriggerClient,
) -> None:
    client.send_event_sync({"name": "early", "id": "early-1", "payload": {"n": 1}})

    @client.define_job(id="looks-back")
    async def looks_back(payload, io, ctx):  # type: ignore[no-untyped-def]
        return await io.wait_for_event("w", {"name": "early"}, lookback_seconds=60)

    @client.define_job(id="no-lookback")
    async def no_lookback(payload, io, ctx):  # type: ignore[no-untyped-def]
        return await io.wait_for_event("w", {"name": "early"}, timeout_in_seconds=30)

    found = client.invoke_sync("looks-back")
    assert found.status == "SUCCESS"  # resolved while registering: no suspension needed
    assert found.output["id"] == "early-1"
    missed = client.invoke_sync("no-lookback")
    time.sleep(0.3)
    assert missed.status == "WAITING"
    client.send_event_sync({"name": "early", "id": "later"})
    assert missed.result(timeout=10)["id"] == "later"


def test_wait_for_event_schema_parses_the_payload_on_every_execution(client: TriggerClient) -> None:
    calls: list[Any] = []

    def schema(payload: Any) -> Any:
        calls.append(payload)
        if not isinstance(payload.get("n"), int):
            raise ValueError("n must be an int")
        return {"n": payload["n"] * 10}

    define_waiter(client, {"name": "num", "schema": schema})
    run = client.invoke_sync("waiter")
    client.send_event_sync({"name": "num", "payload": {"n": 4}})
    assert run.result(timeout=10)["payload"] == {"n": 40}
    assert client.invoke_sync("waiter", run_id=run.id).output["payload"] == {"n": 40}
    assert len(calls) == 2  # the resumed execution and the replay

    other = client.invoke_sync("waiter", {"second": True})
    client.send_event_sync({"name": "num", "payload": {"n": "four"}})
    other.wait_sync(timeout=10)
    assert other.status == "FAILURE"
    assert (
        other.error["name"] == "PayloadError"
        and "does not fit the schema" in other.error["message"]
    )


def test_a_malformed_wait_filter_raises_at_the_call_with_nothing_stored(
    client: TriggerClient,
) -> None:
    define_waiter(client, {"name": "x", "filter": {"amount": {"$gt": 1}}})
    run = client.invoke_sync("waiter")
    assert run.status == "FAILURE"
    assert run.error["name"] == "EventFilterError"
    assert run.tasks == []
    assert client.storage.keys("evwait/") == []


# -- event-triggered jobs ---------------------------------------------------------------------


def test_an_event_trigger_starts_one_run_per_matching_event(client: TriggerClient) -> None:
    define_listener(client, name="issue.opened", filter={"repo": ["trigger_nb"]})
    assert runs_of(client, "listener") == []  # defining does not run it

    first = client.send_event_sync(
        {"name": "issue.opened", "payload": {"repo": "trigger_nb", "n": 1}, "id": "e1"}
    )
    client.send_event_sync({"name": "issue.opened", "payload": {"repo": "other"}, "id": "e2"})
    client.send_event_sync({"name": "issue.closed", "payload": {"repo": "trigger_nb"}, "id": "e3"})
    client.send_event_sync(
        {"name": "issue.opened", "payload": {"repo": "trigger_nb", "n": 2}, "id": "e4"}
    )
    again = client.send_event_sync(
        {"name": "issue.opened", "payload": {"repo": "trigger_nb", "n": 99}, "id": "e1"}
    )

    def finished() -> list[Any]:
        return [r for r in runs_of(client, "listener") if r.status == "SUCCESS"]

    runs = poll(lambda: len(finished()) == 2 and finished())
    outputs = sorted((r.output for r in runs), key=lambda o: o["event_id"])
    assert outputs == [
        {"payload": {"repo": "trigger_nb", "n": 1}, "event_id": "e1", "event_name": "issue.opened"},
        {"payload": {"repo": "trigger_nb", "n": 2}, "event_id": "e4", "event_name": "issue.opened"},
    ]
    assert again == first  # the repeated id returns the stored event unchanged, not delivered again
    time.sleep(0.3)
    assert len(runs_of(client, "listener")) == 2
    record = poll(lambda: client._host.run_sync(client.get_event("e1")))
    assert [(r["job_id"], r["status"]) for r in record["runs"]] == [("listener", "SUCCESS")]
    run = client.get_run(record["runs"][0]["id"])
    assert run.record["event"]["id"] == "e1" and run.payload == {"repo": "trigger_nb", "n": 1}


def test_event_trigger_with_source_and_context_filter(client: TriggerClient) -> None:
    define_listener(client, name="deploy", source="ci", context_filter={"env": ["prod"]})
    client.send_event_sync({"name": "deploy", "source": "ci", "context": {"env": "dev"}})
    client.send_event_sync({"name": "deploy", "context": {"env": "prod"}})
    client.send_event_sync(
        {"name": "deploy", "source": "ci", "context": {"env": "prod"}, "id": "ok"}
    )
    [run] = poll(lambda: runs_of(client, "listener"))
    assert run.result(timeout=10)["event_id"] == "ok"
    time.sleep(0.2)
    assert len(runs_of(client, "listener")) == 1


def test_event_trigger_schema_failure_fails_the_run_without_running_the_body(
    client: TriggerClient,
) -> None:
    bodies: list[Any] = []

    def schema(payload: Any) -> Any:
        if "user" not in payload:
            raise KeyError("user")
        return {"user": str(payload["user"]).upper()}

    @client.define_job(id="typed", trigger=event_trigger("signup", schema=schema))
    async def typed(payload, io, ctx):  # type: ignore[no-untyped-def]
        bodies.append(payload)
        return payload

    client.send_event_sync({"name": "signup", "payload": {"user": "ada"}, "id": "good"})
    client.send_event_sync({"name": "signup", "payload": {"nobody": 1}, "id": "bad"})
    poll(lambda: len([r for r in runs_of(client, "typed") if r.finished]) == 2)
    by_event = {r.record["event"]["id"]: r for r in runs_of(client, "typed")}
    assert by_event["good"].output == {"user": "ADA"}
    assert by_event["bad"].status == "FAILURE"
    assert by_event["bad"].error["name"] == "PayloadError"
    assert bodies == [{"user": "ADA"}]


def test_a_malformed_trigger_filter_raises_at_definition_with_nothing_stored(
    client: TriggerClient,
) -> None:
    with pytest.raises(EventFilterError, match="filter.repo"):
        define_listener(client, name="x", filter={"repo": "trigger_nb"})
    assert "listener" not in client.jobs
    assert client.storage.keys("trigger/") == []


def test_redefining_a_job_without_trigger_stops_its_event_runs(client: TriggerClient) -> None:
    define_listener(client, name="ping")
    assert client.storage.keys("trigger/") == ["trigger/listener"]

    @client.define_job(id="listener")
    async def plain(payload, io, ctx):  # type: ignore[no-untyped-def]
        return "plain"

    assert client.storage.keys("trigger/") == []
    client.send_event_sync({"name": "ping"})
    time.sleep(0.3)
    assert runs_of(client, "listener") == []


# -- sending: idempotency, delays, cancelation --------------------------------------------------


def test_malformed_events_are_refused_with_nothing_stored(client: TriggerClient) -> None:
    for bad in ({"payload": {}}, {"name": "x", "payload": {1, 2}}, "x"):
        with pytest.raises(PayloadError):
            client.send_event_sync(bad)  # type: ignore[arg-type]
    assert client.event_log.list_events() == []


def test_deliver_after_delays_delivery(client: TriggerClient) -> None:
    define_listener(client, name="later")
    sent = client.send_event_sync({"name": "later", "id": "d1"}, deliver_after=0.6)
    assert sent["delivered_at"] is None and sent["runs"] == []
    time.sleep(0.3)
    assert runs_of(client, "listener") == []
    [run] = poll(lambda: runs_of(client, "listener"))
    assert run.result(timeout=10)["event_id"] == "d1"
    record = client.event_log.get("d1")
    assert record is not None and record["delivered_at"] >= record["deliver_at"]


def test_deliver_at_wins_over_deliver_after(client: TriggerClient) -> None:
    sent = client.send_event_sync(
        {"name": "x", "id": "both"}, deliver_at=time.time() + 3600, deliver_after=0
    )
    assert sent["delivered_at"] is None
    assert client.event_log.pending()[0][1] > time.time() + 3000
    assert client._host.run_sync(client.cancel_event("both"))["cancelled_at"] is not None


def test_a_canceled_delayed_event_is_never_delivered(client: TriggerClient) -> None:
    define_listener(client, name="maybe")
    define_waiter(client, {"name": "maybe"}, timeout_in_seconds=30)
    waiting = client.invoke_sync("waiter")
    client.send_event_sync({"name": "maybe", "id": "c1"}, deliver_after=0.4)
    canceled = client._host.run_sync(client.cancel_event("c1"))
    assert canceled["cancelled_at"] is not None
    assert client._host.run_sync(client.cancel_event("c1")) == canceled  # idempotent
    time.sleep(1.2)  # well past its delivery time and two watch rounds
    assert runs_of(client, "listener") == []
    assert waiting.status == "WAITING"
    record = client.event_log.get("c1")
    assert record is not None and record["delivered_at"] is None
    assert client._host.run_sync(client.cancel_event("no-such-event")) is None


def test_resending_an_id_debounces_only_while_delivery_is_five_seconds_away(
    client: TriggerClient,
) -> None:
    define_listener(client, name="debounced")
    client.send_event_sync({"name": "debounced", "id": "db", "payload": {"v": 1}}, deliver_after=60)
    updated = client.send_event_sync(
        {"name": "debounced", "id": "db", "payload": {"v": 2}}, deliver_after=0.3
    )
    assert updated["payload"] == {"v": 2} and updated["delivered_at"] is None
    [run] = poll(lambda: runs_of(client, "listener"))
    assert run.result(timeout=10)["payload"] == {"v": 2}
    # Delivered (or due within 5 s): the stored event is returned unchanged.
    again = client.send_event_sync({"name": "debounced", "id": "db", "payload": {"v": 3}})
    assert again["payload"] == {"v": 2}
    client.send_event_sync(
        {"name": "debounced", "id": "soon", "payload": {"v": 1}}, deliver_after=2
    )
    kept = client.send_event_sync({"name": "debounced", "id": "soon", "payload": {"v": 9}})
    assert kept["payload"] == {"v": 1} and kept["delivered_at"] is None


def test_io_event_tasks_send_get_and_cancel(client: TriggerClient) -> None:
    define_listener(client, name="from-job")

    @client.define_job(id="sender")
    async def sender(payload, io, ctx):  # type: ignore[no-untyped-def]
        sent = await io.send_event("send", {"name": "from-job", "payload": {"k": 1}})
        many = await io.send_events("many", [{"name": "other"}, {"name": "other", "id": "fixed"}])
        await io.send_event("delayed", {"name": "from-job", "id": "delayed"}, deliver_after=60)
        canceled = await io.cancel_event("cancel", "delayed")
        got = await io.get_event("get", sent["id"])
        return {"sent": sent, "many": [e["id"] for e in many], "canceled": canceled, "got": got}

    run = client.invoke_sync("sender")
    out = run.result(timeout=10)
    assert out["sent"]["id"].startswith("evt_") and out["sent"]["delivered_at"] is not None
    assert out["many"][1] == "fixed" and out["many"][0].startswith("evt_")
    assert out["canceled"]["cancelled_at"] is not None
    assert out["got"]["id"] == out["sent"]["id"]
    names = [(t["name"], t["icon"]) for t in run.tasks]
    assert names == [
        ("Send Event", "send"),
        ("Send Multiple Events", "send"),
        ("Send Event", "send"),
        ("cancelEvent", None),
        ("getEvent", None),
    ]
    [triggered] = poll(lambda: runs_of(client, "listener"))
    assert triggered.result(timeout=10)["payload"] == {"k": 1}

    # A new run of the same job derives new event ids; re-executing this run replays instead.
    assert client.invoke_sync("sender", run_id=run.id).output == out
    assert len(client.event_log.list_events()) == 4


# -- across processes and restarts ------------------------------------------------------------


def test_post_events_on_the_receiver_starts_a_run(client: TriggerClient) -> None:
    define_listener(client, name="webhook")
    url = client.receiver.base_url + "/events"
    event = {"name": "webhook", "payload": {"from": "http"}, "id": "h1"}
    assert httpx.post(url, json=event, timeout=10).status_code == 401
    token = events_token(client.storage)
    reply = httpx.post(url, json=event, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert reply.status_code == 200
    assert reply.json()["event"]["runs"] == [client.event_log.get("h1")["runs"][0]["id"]]
    [run] = poll(lambda: runs_of(client, "listener"))
    assert run.result(timeout=10) == {
        "payload": {"from": "http"},
        "event_id": "h1",
        "event_name": "webhook",
    }
    bad = httpx.post(
        url, json={"payload": {}}, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert bad.status_code == 400


def test_an_event_posted_to_serve_starts_the_run_in_the_defining_process(
    client: TriggerClient, serve: dict[str, Any]
) -> None:
    define_listener(client, name="remote")
    define_waiter(client, {"name": "remote"})
    waiting = client.invoke_sync("waiter")
    reply = httpx.post(
        serve["url"] + "/events",
        json={"name": "remote", "id": "r1"},
        headers=serve["auth"],
        timeout=10,
    )
    assert reply.status_code == 200
    assert reply.json()["event"]["runs"]  # serve created the run from the stored rule
    [run] = poll(lambda: runs_of(client, "listener"), timeout=5)
    assert run.result(timeout=5)["event_id"] == "r1"
    assert waiting.result(timeout=5)["id"] == "r1"


def test_an_event_due_while_no_client_ran_is_delivered_when_the_store_is_next_opened(
    open_client: Any,
) -> None:
    with open_client() as first:
        define_listener(first, name="overnight")
        first.send_event_sync({"name": "overnight", "id": "o1"}, deliver_after=0.3)
    time.sleep(0.5)  # due now, and no process is running
    with open_client() as second:
        define_listener(second, name="overnight")
        [run] = poll(lambda: runs_of(second, "listener"), timeout=5)
        assert run.result(timeout=5)["event_id"] == "o1"


# -- the magics in a real IPython shell -----------------------------------------------------------


def run_cell(ip: Any, source: str) -> tuple[Any, str]:
    with capture_output() as captured:
        result = ip.run_cell(source, store_history=True)
    assert result.error_before_exec is None and result.error_in_exec is None, (
        result,
        captured.stdout,
    )
    shown = "\n".join(str(o.data.get("text/plain", "")) for o in captured.outputs)
    return result.result, captured.stdout + shown


def test_magic_on_send_and_events(ip: Any, shell_client: TriggerClient) -> None:
    view, shown = run_cell(
        ip,
        '%%job greeter --on user.created --filter {"plan": ["pro"]}\nreturn {"hello": payload["name"]}',
    )
    assert "on event user.created" in shown and 'filter {"plan":["pro"]}' in shown
    assert "Runs started: 0" in shown
    assert runs_of(shell_client, "greeter") == []

    _, out = run_cell(ip, '%job send user.created --payload {"name": "Ada", "plan": "pro"} --id u1')
    assert "Event u1 (user.created" in out and "started 1 run(s)" in out
    _, out = run_cell(ip, '%job send user.created --payload {"name": "Bob", "plan": "free"}')
    assert "no job matched" in out
    _, out = run_cell(ip, "%job send user.created --id later --deliver-after 60")
    assert "to be delivered at" in out

    [run] = poll(lambda: runs_of(shell_client, "greeter"))
    assert run.result(timeout=10) == {"hello": "Ada"}
    assert "Runs started: 1" in view.text() and run.id in view.text()

    _, table = run_cell(ip, "%job events --name user.created")
    lines = table.splitlines()
    assert len(lines) == 5  # header, rule, three events
    assert any(line.startswith("u1 ") and "delivered" in line and run.id in line for line in lines)
    assert any(line.startswith("later ") and "due " in line for line in lines)


def test_magic_filter_errors_are_reported_at_definition(
    ip: Any, shell_client: TriggerClient
) -> None:
    with capture_output():
        result = ip.run_cell('%%job bad --on x --filter {"n": {"$gt": 1}}\nreturn 1')
    assert isinstance(result.error_in_exec, EventFilterError)
    assert "bad" not in shell_client.jobs


def test_a_manual_retry_of_a_timed_out_wait_waits_again(client: TriggerClient) -> None:
    define_waiter(client, {"name": "again"}, timeout_in_seconds=0.5)
    run = client.invoke_sync("waiter")
    run.wait_sync(timeout=10)
    assert run.error["name"] == "CallbackTimeoutError"
    client.send_event_sync({"name": "again", "id": "too-late"})  # before the retry: not seen
    client._host.run_sync(client.retry(run.id))
    assert run.status == "WAITING"
    assert run.tasks[0]["attempts"] == 2
    client.send_event_sync({"name": "again", "id": "second-chance"})
    assert run.result(timeout=10)["id"] == "second-chance"


@pytest.mark.kernel
def test_in_a_real_kernel_triggered_runs_run_between_cells_and_the_view_updates(
    tmp_path: Path,
) -> None:
    from trigger_nb._notebook._notebook_runner import KernelSession

    with KernelSession(
        cwd=str(tmp_path), env={"TRIGGER_NB_DIR": str(tmp_path / "kstore")}
    ) as kernel:

        def cell(code: str) -> Any:
            result = kernel.run(code, timeout=60)
            assert result.error is None, result.text
            return result

        cell("%load_ext trigger_nb")
        defined = cell('%%job greet --on hello\nreturn {"hi": payload["n"], "event": ctx.event.id}')
        assert "Runs started: 0" in defined.text
        # The run executes on the kernel's loop once the sending code yields to it; the
        # definition's display (an earlier cell) is updated in place.
        sent = cell(
            '%job send hello --payload {"n": 1} --id k1\nimport asyncio\nawait asyncio.sleep(1)'
        )
        updates = [o for o in sent.outputs if o["output_type"] == "update_display_data"]
        assert updates and "Runs started: 1" in updates[-1]["data"]["text/plain"]
        assert "SUCCESS" in updates[-1]["data"]["text/plain"]
        cell("%%job beat --every 1\nreturn payload")
        cell("await asyncio.sleep(2.5)")
        counted = cell(
            "import trigger_nb\n"
            "print(sorted(r.status for r in trigger_nb.default_client().runs(job_id='beat')))"
        )
        assert counted.stdout.count("SUCCESS") >= 2


def test_a_run_resumed_by_a_delayed_event_it_sent_replays_at_the_top_level(client: TriggerClient) -> None:
    """The delivery timer is armed inside the send_event task; the execution it resumes must not
    run under that task (new keys: every task would run again, nested under `notify`)."""
    calls: list[str] = []

    @client.define_job(id="self-notify")
    async def job(payload: Any, io: Any, ctx: Any) -> Any:
        await io.run_task("before", lambda: calls.append("before"))
        await io.send_event("notify", {"name": "self.paid", "payload": {"id": 7}}, deliver_after=0.3)
        event = await io.wait_for_event("paid", {"name": "self.paid"}, timeout_in_seconds=30)
        return event["payload"]

    run = client.invoke_sync("self-notify", {})
    assert run.status == "WAITING"
    run.wait_sync(15)
    assert run.output == {"id": 7}
    assert calls == ["before"]
    assert all(task["parent_id"] is None for task in run.tasks), run.log()


def test_a_wait_reached_again_after_the_lease_was_lost_registers_nothing(
    store_location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC §10: an execution that lost its run's lease (its process was stopped past the lease
    and another took the run over) stops at its next side effect — re-registering an event
    wait on replay is one, even though it writes no task record."""
    monkeypatch.setenv("TRIGGER_NB_LEASE_TTL", "1")
    client = client_at(store_location)
    store = client.storage
    try:

        @client.define_job(id="stolen")
        async def stolen(payload, io, ctx):  # type: ignore[no-untyped-def]
            if ctx.run.execution == 2:
                thief = Repository(store, holder="thief:1:elsewhere", lease_ttl=60)
                with store.transaction():
                    run = thief.load_run(ctx.run.id)
                    run["lease"]["expires_at"] = 0  # as if this process had been stopped past it
                    thief.take_lease(run)
                    thief.save_run(run)
                for key in store.keys(WAITER_PREFIX):
                    store.delete(key)
                await asyncio.sleep(0.7)  # past half the lease's life: side effects ask the store
            return await io.wait_for_event("w", {"name": "never.sent"})

        run = client.invoke_sync("stolen")
        assert run.status == "WAITING" and store.keys(WAITER_PREFIX)
        with pytest.raises(RunBusyError, match="lease"):
            client.invoke_sync("stolen", run_id=run.id)
        assert store.keys(WAITER_PREFIX) == []  # the stale execution did not register again
    finally:
        client.close()
