"""Hostile input: numbers that are no time, records that are no JSON, bodies the engine could
not keep, strangers at /events (SPEC §9, §10; issue 9 items 1, 6, 7, 9).

- NaN, ±inf, ``10**400`` and out-of-range dates are refused at the call with ``ConfigError`` /
  ``PayloadError`` by every ``io`` method and option taking a time or a number (nothing is
  stored), by ``send_event`` and by ``POST /events`` (``400``).
- A callback body nested deeper than the engine can store and replay is a ``400``, and the task
  goes on waiting; a ``POST /events`` with a wrong token costs no store write transaction.
- A record that cannot be decoded fails that one run with ``StoreError`` naming it; listing,
  showing other runs and forgetting keep working.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from trigger_nb import ConfigError, PayloadError, StoreError, TriggerClient
from trigger_nb._receiver._backend import events_token
from trigger_nb._serde import MAX_JSON_DEPTH
from trigger_nb._store._diskcache import DiskcacheStore

INF, NAN, HUGE = math.inf, math.nan, 10**400


def url_of(url: str) -> None:
    return None


#: Every io call taking a time or a number, with a value it must refuse, and the error class.
REFUSED: list[tuple[str, Callable[[Any], Any], type[Exception]]] = [
    *[(f"wait {v!r:.8}", lambda io, v=v: io.wait("w", v), ConfigError) for v in (INF, -INF, NAN, HUGE)],
    *[
        (f"wait_for_request timeout {v!r:.8}",
         lambda io, v=v: io.wait_for_request("r", url_of, timeout_in_seconds=v), ConfigError)
        for v in (INF, NAN, 0, -1, HUGE)
    ],
    *[
        (f"callback timeout {v!r:.8}",
         lambda io, v=v: io.run_task("c", lambda: 1, callback={"timeout_in_seconds": v}), ConfigError)
        for v in (INF, NAN, 0, -1, HUGE)
    ],
    *[
        (f"delay_until {v!r:.8}", lambda io, v=v: io.run_task("d", lambda: 1, delay_until=v), ConfigError)
        for v in (INF, NAN, HUGE, 1e20, -1e20)
    ],
    *[
        (f"wait_for_event timeout {v!r:.8}",
         lambda io, v=v: io.wait_for_event("e", {"name": "x"}, timeout_in_seconds=v), ConfigError)
        for v in (INF, NAN, 0, -1, HUGE)
    ],
    *[
        (f"lookback {v!r:.8}",
         lambda io, v=v: io.wait_for_event("e", {"name": "x"}, lookback_seconds=v), ConfigError)
        for v in (INF, NAN, HUGE)
    ],
    *[
        (f"send_event deliver_at {v!r:.8}",
         lambda io, v=v: io.send_event("s", {"name": "x"}, deliver_at=v), PayloadError)
        for v in (INF, NAN, HUGE, 1e20)
    ],
    *[
        (f"send_event deliver_after {v!r:.8}",
         lambda io, v=v: io.send_event("s", {"name": "x"}, deliver_after=v), PayloadError)
        for v in (INF, NAN, HUGE)
    ],
    *[
        (f"send_events deliver_at {v!r:.8}",
         lambda io, v=v: io.send_events("s", [{"name": "x"}], deliver_at=v), PayloadError)
        for v in (INF, 1e20)
    ],
    *[
        (f"event timestamp {v!r:.8}",
         lambda io, v=v: io.send_event("s", {"name": "x", "timestamp": v}), PayloadError)
        for v in (INF, NAN, HUGE, 1e20, "9999-12-31T23:59:59-01:00")
    ],
    *[
        (f"poll {name} {v!r:.8}",
         lambda io, name=name, v=v: io.background_poll("p", {"url": "http://127.0.0.1:9/", name: v}),
         ConfigError)
        for name in ("interval", "timeout") for v in (INF, NAN, HUGE)
    ],
    ("fetch timeout NaN",
     lambda io: io.background_fetch("f", "http://127.0.0.1:9/", timeout={"duration_in_ms": NAN}),
     ConfigError),
    *[(f"random min {v!r:.8}", lambda io, v=v: io.random("n", min=v), ConfigError) for v in (INF, HUGE)],
    *[
        (f"retry {name} {v!r:.8}",
         lambda io, name=name, v=v: io.run_task("t", lambda: 1, retry={name: v}), ConfigError)
        for name in ("limit", "factor", "min_timeout_in_ms") for v in (INF, NAN)
    ],
]


def test_every_io_call_refuses_non_finite_and_out_of_range_numbers_at_the_call(
    client: TriggerClient,
) -> None:
    outcomes: dict[str, str] = {}

    @client.define_job(id="hostile")
    async def hostile(payload: Any, io: Any, ctx: Any) -> Any:
        for name, call, error in REFUSED:
            try:
                await call(io)
            except error:
                outcomes[name] = "refused"
            except BaseException as exc:  # noqa: BLE001 - reported below, with its type
                outcomes[name] = f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, Exception):
                    raise  # a suspension: the call was accepted
            else:
                outcomes[name] = "accepted"
        return "done"

    run = client.invoke_sync("hostile")
    assert {name: outcome for name, outcome in outcomes.items() if outcome != "refused"} == {}
    assert run.status == "SUCCESS", run.record.get("error")
    assert run.tasks == []  # nothing was stored for any refused call
    assert len(outcomes) == len(REFUSED)


@pytest.mark.parametrize("retry_at", [INF, NAN, 1e20, HUGE], ids=["inf", "nan", "1e20", "10**400"])
def test_an_on_error_retry_at_that_is_no_date_fails_the_task_and_the_run_stays_readable(
    client: TriggerClient, retry_at: Any
) -> None:
    @client.define_job(id="bad-retry")
    async def bad_retry(payload: Any, io: Any, ctx: Any) -> Any:
        def boom() -> None:
            raise RuntimeError("boom")

        return await io.run_task("t", boom, on_error=lambda error, task, io: {"retry_at": retry_at})

    run = client.invoke_sync("bad-retry")
    assert run.status == "FAILURE"
    again = client.get_run(run.id)
    [task] = again.tasks
    assert task["status"] == "ERRORED"
    assert task["error"]["name"] == "ConfigError" and "retry_at" in task["error"]["message"]
    assert "ConfigError" in again.log()
    assert client.forget(run.id) > 0


def test_run_wait_and_busy_timeout_refuse_nan(client: TriggerClient) -> None:
    @client.define_job(id="quick")
    async def quick(payload: Any, io: Any, ctx: Any) -> Any:
        return 1

    run = client.invoke_sync("quick")
    assert run.wait_sync(timeout=INF).status == "SUCCESS"  # inf: for ever, as None
    for value in (NAN, -1, -INF, HUGE):
        with pytest.raises(ConfigError, match="timeout"):
            run.wait_sync(timeout=value)
        with pytest.raises(ConfigError, match="busy_timeout"):
            client.invoke_sync("quick", run_id=run.id, busy_timeout=value)


@pytest.mark.parametrize(
    ("event", "options"),
    [
        ({"name": "x", "timestamp": 1e20}, {}),
        ({"name": "x", "timestamp": HUGE}, {}),
        ({"name": "x", "timestamp": INF}, {}),
        ({"name": "x", "timestamp": "9999-12-31T23:59:59-01:00"}, {}),
        ({"name": "x"}, {"deliver_at": 1e20}),
        ({"name": "x"}, {"deliver_at": HUGE}),
        ({"name": "x"}, {"deliver_after": NAN}),
        ({"name": "x"}, {"deliver_after": INF}),
    ],
)
def test_send_event_refuses_out_of_range_times_with_payload_error(
    client: TriggerClient, event: dict[str, Any], options: dict[str, Any]
) -> None:
    with pytest.raises(PayloadError):
        client.send_event_sync(event, **options)
    assert client.event_log.list_events() == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "x", "timestamp": 1e20}',
        b'{"name": "x", "timestamp": 1e400}',
        b'{"name": "x", "timestamp": 1' + b"0" * 400 + b"}",
        b'{"name": "x", "timestamp": "9999-12-31T23:59:59-01:00"}',
    ],
    ids=["1e20", "1e400", "10**400", "year-10000-utc"],
)
def test_post_events_with_an_out_of_range_timestamp_is_a_400(client: TriggerClient, body: bytes) -> None:
    url = client.receiver.base_url + "/events"
    headers = {"Authorization": f"Bearer {events_token(client.storage)}", "Content-Type": "application/json"}
    reply = httpx.post(url, content=body, headers=headers, timeout=10)
    assert reply.status_code == 400, reply.text
    assert "timestamp" in reply.json()["error"]


# -- undecodable records ------------------------------------------------------------------------


def test_an_undecodable_record_fails_only_its_run_and_can_be_forgotten(client: TriggerClient) -> None:
    @client.define_job(id="fine")
    async def fine(payload: Any, io: Any, ctx: Any) -> Any:
        return await io.run_task("t", lambda: payload["n"])

    good = client.invoke_sync("fine", {"n": 1})
    bad_task = client.invoke_sync("fine", {"n": 2})
    bad_run = client.invoke_sync("fine", {"n": 3})
    cache = client.storage._cache  # type: ignore[attr-defined]
    [task_key] = [k for k in client.storage.keys(f"task/{bad_task.id}/")]
    cache.set(task_key, '{"id": "t", "params": Infinity}')  # what earlier versions wrote
    cache.set(f"run/{bad_run.id}", '{"id": "x", "status": ')

    assert [r.id for r in client.runs()] == [good.id, bad_task.id] or {r.id for r in client.runs()} == {
        good.id,
        bad_task.id,
    }
    assert client.get_run(good.id).tasks[0]["status"] == "COMPLETED"
    with pytest.raises(StoreError, match=bad_task.id) as caught:
        client.get_run(bad_task.id).tasks  # noqa: B018
    assert "forget" in str(caught.value)
    with pytest.raises(StoreError, match=bad_run.id):
        client.get_run(bad_run.id)
    with pytest.raises(StoreError, match=bad_task.id):
        client.invoke_sync("fine", {"n": 2}, run_id=bad_task.id)

    assert client.forget(bad_task.id) > 0
    assert client.forget(bad_run.id) > 0
    assert {r.id for r in client.runs()} == {good.id}
    assert not client.storage.keys(f"task/{bad_task.id}/")
    assert client.invoke_sync("fine", {"n": 1}, run_id=good.id).output == 1


def test_a_huge_integer_in_task_params_does_not_break_the_run(client: TriggerClient) -> None:
    @client.define_job(id="big")
    async def big(payload: Any, io: Any, ctx: Any) -> Any:
        return await io.run_task("t", lambda: "ok", params={"n": HUGE})

    run = client.invoke_sync("big")
    assert run.status == "SUCCESS"
    assert client.get_run(run.id).tasks[0]["params"] == {"n": HUGE}
    assert client.invoke_sync("big", run_id=run.id).output == "ok"


# -- what the receiver accepts ------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_a_callback_body_nested_deeper_than_the_engine_keeps_is_a_400(client: TriggerClient) -> None:
    urls: list[str] = []

    @client.define_job(id="deep")
    async def deep(payload: Any, io: Any, ctx: Any) -> Any:
        body = await io.wait_for_request("hook", urls.append)
        return len(str(body))

    run = client.invoke_sync("deep")
    assert run.status == "WAITING"
    for depth in (980, MAX_JSON_DEPTH + 1):
        text = "[" * depth + "1" + "]" * depth
        reply = httpx.post(urls[-1], content=text, headers={"Content-Type": "application/json"}, timeout=10)
        assert reply.status_code == 400, (depth, reply.text)
        assert "nested too deeply" in reply.json()["error"]
    assert client.get_run(run.id).status == "WAITING"  # still waiting for a body it can keep
    reply = httpx.post(urls[-1], json=nested(MAX_JSON_DEPTH - 1), timeout=10)
    assert reply.status_code == 200
    done = client.get_run(run.id).wait_sync(timeout=10)
    assert done.status == "SUCCESS"
    assert client.invoke_sync("deep", run_id=run.id).output == done.output  # replays


class CountingStore(DiskcacheStore):
    """The real diskcache store, counting the write transactions opened."""

    transactions = 0

    def transaction(self) -> Any:
        CountingStore.transactions += 1
        return super().transaction()


def test_post_events_with_a_wrong_token_opens_no_store_transaction(store_dir: str) -> None:
    with TriggerClient(storage=CountingStore(store_dir)) as client:
        url = client.receiver.base_url + "/events"
        CountingStore.transactions = 0  # opening a new store sets up its schema: not a request's
        for token in ("wrong", "x"):  # before any token exists: nothing is created either
            reply = httpx.post(url, json={"name": "x"}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert reply.status_code == 401
        assert CountingStore.transactions == 0
        good = events_token(client.storage)
        CountingStore.transactions = 0
        for _ in range(20):
            reply = httpx.post(url, json={"name": "x"}, headers={"Authorization": "Bearer nope"}, timeout=10)
            assert reply.status_code == 401
        assert CountingStore.transactions == 0
        reply = httpx.post(url, json={"name": "x"}, headers={"Authorization": f"Bearer {good}"}, timeout=10)
        assert reply.status_code == 200
