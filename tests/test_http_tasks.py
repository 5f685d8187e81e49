"""Background HTTP tasks over real HTTP on 127.0.0.1 (SPEC §6.5, §6.6; v2 §5.4, §5.5).

``ScriptedServer`` runs in a thread of the test process: each path answers a scripted sequence
of responses (the last one repeats) and every request is recorded with its headers and arrival
time. ``tests/test_redaction.py`` reuses it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import Step

from trigger_nb import TriggerClient
from trigger_nb._exceptions import ConfigError, EventFilterError, RunFailedError

RESULT_TIMEOUT = 10


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TriggerClient]:
    c = TriggerClient(dir=str(tmp_path / "store"))
    try:
        yield c
    finally:
        c.close()


def define(client: TriggerClient, body: Callable[[Any], Any], *, job_id: str = "http") -> None:
    """Define ``job_id`` as ``return await body(io)``."""

    @client.define_job(id=job_id)
    async def job(payload: Any, io: Any, ctx: Any) -> Any:
        return await body(io)


def run_job(client: TriggerClient, body: Callable[[Any], Any], *, job_id: str = "http") -> Any:
    """Define ``job_id`` with ``async body(io)`` and invoke it; return the Run handle."""
    define(client, body, job_id=job_id)
    return client.invoke_sync(job_id)


def children(run: Any, parent_name_prefix: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    tasks = run.tasks
    parent = next(t for t in tasks if t["name"].startswith(parent_name_prefix))
    return parent, [t for t in tasks if t["parent_id"] == parent["id"]]


FAST_BACKOFF = {"strategy": "backoff", "limit": 5, "min_timeout_in_ms": 20, "randomize": False}


# --- fetch ---------------------------------------------------------------------------------------


def test_fetch_retries_5xx_with_backoff_and_logs_each_attempt(client, server) -> None:
    url = server.script("/flaky", Step(500), Step(503, {"e": 1}), Step(200, {"ok": True}))
    run = run_job(client, lambda io: io.background_fetch("get", url, retry={"5xx": FAST_BACKOFF}))

    assert run.result(timeout=RESULT_TIMEOUT) == {"ok": True}
    assert server.hits("/flaky") == 3
    parent, attempts = children(run, "fetch ")
    assert parent["name"] == "fetch 127.0.0.1/flaky"
    assert parent["icon"] == "background"
    assert parent["status"] == "COMPLETED"
    assert parent["attempts"] == 3
    assert parent["params"]["retry"] == {
        "5xx": {**FAST_BACKOFF, "factor": 1.8, "max_timeout_in_ms": 60000}
    }
    assert [a["name"] for a in attempts] == ["fetch attempt"] * 3
    assert [a["params"]["status"] for a in attempts] == [500, 503, 200]
    assert [a["params"]["attempt"] for a in attempts] == [1, 2, 3]
    assert "retry_at" in attempts[0]["params"] and "retry_at" not in attempts[2]["params"]


def test_backoff_limit_is_the_total_number_of_requests(client, server) -> None:
    url = server.script("/down", Step(500, {"error": "down"}))
    run = run_job(
        client,
        lambda io: io.background_fetch("get", url, retry={"5xx": {**FAST_BACKOFF, "limit": 2}}),
    )
    with pytest.raises(RunFailedError):
        run.result(timeout=RESULT_TIMEOUT)
    assert server.hits("/down") == 2
    assert json.loads(run.error["message"]) == {"error": "down"}


def test_429_with_unix_timestamp_reset_header_waits_until_the_reset(client, server) -> None:
    resets: list[float] = []

    def reset_header() -> dict[str, str]:
        resets.append(time.time() + 0.3)
        return {"x-ratelimit-reset": f"{resets[-1]:.3f}"}

    url = server.script("/limited", Step(429, headers=reset_header), Step(200, {"ok": 1}))
    retry = {"429": {"strategy": "headers", "resetHeader": "X-RateLimit-Reset"}}
    run = run_job(client, lambda io: io.background_fetch("get", url, retry=retry))

    assert run.result(timeout=RESULT_TIMEOUT) == {"ok": 1}
    first, second = server.seen("/limited")
    assert second.at >= resets[0] - 0.01  # not before the reset the server announced


def test_429_with_openai_duration_reset_header(client, server) -> None:
    url = server.script(
        "/openai",
        Step(429, {"error": "rate"}, headers={"x-ratelimit-reset-requests": "0s250ms"}),
        Step(200, {"ok": 2}),
    )
    retry = {
        "429": {
            "strategy": "headers",
            "reset_header": "x-ratelimit-reset-requests",
            "reset_format": "iso_8601_duration_openai_variant",
        }
    }
    run = run_job(client, lambda io: io.background_fetch("get", url, retry=retry))

    assert run.result(timeout=RESULT_TIMEOUT) == {"ok": 2}
    first, second = server.seen("/openai")
    assert second.at - first.at >= 0.2


def test_without_retry_option_a_500_fails_the_run_with_the_body(client, server) -> None:
    url = server.script("/boom", Step(500, {"error": "boom", "code": 7}))
    run = run_job(client, lambda io: io.background_fetch("get", url))

    with pytest.raises(RunFailedError) as info:
        run.result(timeout=RESULT_TIMEOUT)
    assert "boom" in str(info.value)
    assert server.hits("/boom") == 1
    assert run.error["name"] == "FetchError"
    assert json.loads(run.error["message"]) == {"error": "boom", "code": 7}
    parent, attempts = children(run, "fetch ")
    assert parent["status"] == "ERRORED"
    assert [a["params"] for a in attempts] == [{"attempt": 1, "status": 500}]


def test_a_non_json_error_body_fails_with_the_status_message(client, server) -> None:
    url = server.script("/text-error", Step(503, "service unavailable"))
    run = run_job(client, lambda io: io.background_fetch("get", url))
    with pytest.raises(RunFailedError):
        run.result(timeout=RESULT_TIMEOUT)
    assert run.error["message"] == "Fetch failed with status 503"


def test_body_filter_decides_whether_a_strategy_applies(client, server) -> None:
    transient = {"5xx": {**FAST_BACKOFF, "bodyFilter": {"error": ["transient"]}}}
    fatal_url = server.script("/fatal", Step(500, {"error": "fatal"}), Step(200, {"ok": True}))
    retried_url = server.script(
        "/transient", Step(500, {"error": "transient"}), Step(200, {"ok": True})
    )

    async def body(io: Any) -> Any:
        ok = await io.background_fetch("transient", retried_url, retry=transient)
        try:
            await io.background_fetch("fatal", fatal_url, retry=transient)
        except Exception as exc:  # TaskError: the strategy did not apply, no retry
            return {"ok": ok, "fatal": type(exc).__name__}
        return {"ok": ok}

    run = run_job(client, body)
    assert run.result(timeout=RESULT_TIMEOUT) == {"ok": {"ok": True}, "fatal": "TaskError"}
    assert server.hits("/transient") == 2
    assert server.hits("/fatal") == 1


def test_integer_like_status_keys_are_tried_first(client, server) -> None:
    # Insertion order would pick "5xx" (limit 1: no retry); v2's Object.keys order picks "500".
    url = server.script("/order", Step(500), Step(200, {"ok": True}))
    retry = {"5xx": {"strategy": "backoff", "limit": 1}, "500": FAST_BACKOFF}
    run = run_job(client, lambda io: io.background_fetch("get", url, retry=retry))
    assert run.result(timeout=RESULT_TIMEOUT) == {"ok": True}
    assert server.hits("/order") == 2


def test_timeout_is_clamped_to_one_second_and_fails_the_task(client, server) -> None:
    url = server.script("/slow", Step(200, {"late": True}, delay=1.6))
    run = run_job(client, lambda io: io.background_fetch("get", url, timeout={"durationInMs": 10}))

    with pytest.raises(RunFailedError):
        run.result(timeout=RESULT_TIMEOUT)
    assert run.error["message"] == "Fetch timed out after 1000ms"
    parent, attempts = children(run, "fetch ")
    assert parent["params"]["timeout"] == {"duration_in_ms": 1000, "retry": None}
    assert attempts[0]["params"] == {"attempt": 1, "error": "Fetch timed out after 1000ms"}


def test_a_timed_out_request_is_retried_with_timeout_retry(client, server) -> None:
    url = server.script("/slow-once", Step(200, {"late": True}, delay=1.6), Step(200, {"ok": True}))
    timeout = {
        "duration_in_ms": 1000,
        "retry": {"limit": 3, "min_timeout_in_ms": 10, "randomize": False},
    }
    run = run_job(client, lambda io: io.background_fetch("get", url, timeout=timeout))
    assert run.result(timeout=RESULT_TIMEOUT) == {"ok": True}
    assert server.hits("/slow-once") == 2


def test_fetch_response_returns_status_headers_and_data(client, server) -> None:
    url = server.script("/created", Step(201, {"id": 1}, headers={"X-Custom": "yes"}))
    run = run_job(client, lambda io: io.background_fetch_response("create", url))

    result = run.result(timeout=RESULT_TIMEOUT)
    assert result["status"] == 201
    assert result["data"] == {"id": 1}
    assert result["headers"]["x-custom"] == "yes"
    assert result["headers"]["content-type"] == "application/json"


def test_post_sends_a_json_body_and_returns_text_when_not_json(client, server) -> None:
    url = server.script("/echo", Step(200, "plain text"))
    init = {"method": "post", "headers": {"X-Trace": "t-1"}, "body": {"a": [1, 2]}}
    run = run_job(client, lambda io: io.background_fetch("post", url, init))

    assert run.result(timeout=RESULT_TIMEOUT) == "plain text"
    (request,) = server.seen("/echo")
    assert request.method == "POST"
    assert json.loads(request.body) == {"a": [1, 2]}
    assert request.headers["content-type"] == "application/json"
    assert request.headers["X-Trace"] == "t-1"
    parent, _ = children(run, "fetch ")
    assert parent["params"]["request_init"] == init | {"method": "POST"}


def test_a_network_error_fails_the_task(client, server) -> None:
    url = server.url("/x")
    server.stop()  # nothing listens on that port any more
    run = run_job(client, lambda io: io.background_fetch("get", url))
    with pytest.raises(RunFailedError):
        run.result(timeout=RESULT_TIMEOUT)
    assert run.error["message"].startswith("Fetch failed: ConnectError")


# --- poll ----------------------------------------------------------------------------------------


def test_poll_returns_the_first_matching_body_with_one_entry_per_attempt(client, server) -> None:
    url = server.script(
        "/job", Step(202, {"done": False}), Step(202, {"done": False}), Step(200, {"done": True})
    )
    options = {
        "url": url,
        "interval": 0.1,
        "timeout": 10,
        "response_filter": {"status": [200], "body": {"done": [True]}},
    }
    run = run_job(client, lambda io: io.background_poll("wait-job", options))

    assert run.result(timeout=RESULT_TIMEOUT) == {"done": True}
    assert server.hits("/job") == 3
    parent, attempts = children(run, "poll ")
    assert parent["name"] == "poll 127.0.0.1/job"
    assert parent["icon"] == "clock-bolt"
    assert [a["name"] for a in attempts] == ["poll attempt"] * 3
    assert [a["params"]["status"] for a in attempts] == [202, 202, 200]
    assert attempts[2]["params"]["body"] == {"done": True}
    assert attempts[0]["params"]["headers"]["content-type"] == "application/json"


def test_poll_honours_status_and_header_filters(client, server) -> None:
    url = server.script(
        "/state",
        Step(500, {"v": 1}, headers={"x-state": "ready"}),
        Step(200, {"v": 2}, headers={"x-state": "pending"}),
        Step(200, {"v": 3}, headers={"X-State": "ready"}),
    )
    options = {
        "url": url,
        "interval": 0.1,
        "timeout": 10,
        "responseFilter": {"status": [200], "headers": {"x-state": ["ready"]}},
    }
    run = run_job(client, lambda io: io.background_poll("state", options))
    assert run.result(timeout=RESULT_TIMEOUT) == {"v": 3}
    assert server.hits("/state") == 3


def test_poll_times_out(client, server) -> None:
    url = server.script("/never", Step(202, {"done": False}))
    options = {"url": url, "interval": 0.2, "timeout": 1, "response_filter": {"status": [200]}}
    run = run_job(client, lambda io: io.background_poll("never", options))

    with pytest.raises(RunFailedError):
        run.result(timeout=RESULT_TIMEOUT)
    assert run.error["message"] == "Task timed out after 1 seconds"
    assert 2 <= server.hits("/never") <= 7
    _, attempts = children(run, "poll ")
    assert len(attempts) == server.hits("/never")


# --- replay ----------------------------------------------------------------------------------------


def test_replay_sends_nothing_also_from_a_new_client(tmp_path: Path, server) -> None:
    url = server.script("/once", Step(200, {"n": 1}))
    poll_url = server.script("/poll-once", Step(200, {"done": True}))

    async def body(io: Any) -> Any:
        fetched = await io.background_fetch("get", url)
        polled = await io.background_poll(
            "poll", {"url": poll_url, "interval": 0.1, "response_filter": {"status": [200]}}
        )
        return [fetched, polled]

    store = str(tmp_path / "store")
    first = TriggerClient(dir=store)
    try:
        run = run_job(first, body)
        assert run.result(timeout=RESULT_TIMEOUT) == [{"n": 1}, {"done": True}]
        again = first.invoke_sync("http", run_id=run.id)
        assert again.status == "SUCCESS"
        assert {t["name"]: t["replayed"] for t in again.tasks if t["parent_id"] is None} == {
            "fetch 127.0.0.1/once": True,
            "poll 127.0.0.1/poll-once": True,
        }
    finally:
        first.close()
    second = TriggerClient(dir=store)
    try:
        define(second, body)
        rerun = second.invoke_sync("http", run_id=run.id)
        assert rerun.status == "SUCCESS"
        assert rerun.result(timeout=RESULT_TIMEOUT) == [{"n": 1}, {"done": True}]
    finally:
        second.close()
    assert server.hits("/once") == 1
    assert server.hits("/poll-once") == 1


def test_a_fetch_interrupted_by_closing_the_client_is_sent_again_by_the_next_one(
    tmp_path: Path, server
) -> None:
    # As after a kernel restart: the waiting task's operation starts again on replay.
    url = server.script(
        "/interrupted", Step(500), Step(200, {"ok": 1}, delay=0.5), Step(200, {"ok": 2})
    )
    retry = {"5xx": {**FAST_BACKOFF, "min_timeout_in_ms": 10}}
    store = str(tmp_path / "store")
    first = TriggerClient(dir=store)
    try:
        run = run_job(first, lambda io: io.background_fetch("get", url, retry=retry))
        deadline = time.time() + RESULT_TIMEOUT
        while server.hits("/interrupted") < 2 and time.time() < deadline:
            time.sleep(0.02)
    finally:
        first.close()  # cancels the request in flight (the second one)
    second = TriggerClient(dir=store)
    try:
        define(second, lambda io: io.background_fetch("get", url, retry=retry))
        resumed = second.invoke_sync("http", run_id=run.id)
        assert resumed.result(timeout=RESULT_TIMEOUT) in ({"ok": 1}, {"ok": 2})
        parent, attempts = children(resumed, "fetch ")
        numbers = [a["params"]["attempt"] for a in attempts]
        assert numbers == sorted(set(numbers))  # numbering continued, nothing overwritten
        assert parent["attempts"] == numbers[-1]
    finally:
        second.close()


def test_canceling_the_run_stops_the_retries(client, server) -> None:
    url = server.script("/forever", Step(500))
    retry = {"5xx": {**FAST_BACKOFF, "limit": 50, "min_timeout_in_ms": 200, "factor": 1}}
    run = run_job(client, lambda io: io.background_fetch("get", url, retry=retry))
    deadline = time.time() + RESULT_TIMEOUT
    while server.hits("/forever") < 1 and time.time() < deadline:
        time.sleep(0.02)
    asyncio.run(run.cancel())
    hits = server.hits("/forever")
    time.sleep(0.6)  # long enough for two more retries, had they gone on
    assert server.hits("/forever") <= hits + 1  # at most the one already past its check
    assert run.status == "CANCELED"


def test_a_manual_retry_of_a_failed_fetch_sends_it_again(client, server) -> None:
    url = server.script("/retry-me", Step(500, {"error": "first"}), Step(200, {"ok": True}))
    run = run_job(client, lambda io: io.background_fetch("get", url))
    with pytest.raises(RunFailedError):
        run.result(timeout=RESULT_TIMEOUT)

    client.invoke_sync("http", run_id=run.id)  # SPEC §5: a manual retry runs failed tasks again
    assert run.result(timeout=RESULT_TIMEOUT) == {"ok": True}
    assert server.hits("/retry-me") == 2


# --- validation -------------------------------------------------------------------------------------


BAD_CALLS: list[tuple[str, Callable[[Any, str], Any], type[Exception], str]] = [
    (
        "pattern",
        lambda io, u: io.background_fetch("k", u, retry={"abc": {}}),
        ConfigError,
        "status pattern",
    ),
    (
        "list",
        lambda io, u: io.background_fetch("k", u, retry={"401,5xx": {}}),
        ConfigError,
        "status pattern",
    ),
    (
        "strategy",
        lambda io, u: io.background_fetch("k", u, retry={"5xx": {"strategy": "x"}}),
        ConfigError,
        "strategy",
    ),
    (
        "reset",
        lambda io, u: io.background_fetch("k", u, retry={"429": {"strategy": "headers"}}),
        ConfigError,
        "reset_header",
    ),
    (
        "format",
        lambda io, u: io.background_fetch(
            "k",
            u,
            retry={"429": {"strategy": "headers", "reset_header": "r", "reset_format": "rfc"}},
        ),
        ConfigError,
        "reset_format",
    ),
    (
        "limit",
        lambda io, u: io.background_fetch("k", u, retry={"5xx": {"limit": -1}}),
        ConfigError,
        "limit",
    ),
    (
        "body_filter",
        lambda io, u: io.background_fetch(
            "k", u, retry={"5xx": {"body_filter": {"a": [{"$nope": 1}]}}}
        ),
        EventFilterError,
        "$nope",
    ),
    (
        "timeout",
        lambda io, u: io.background_fetch("k", u, timeout=5),
        ConfigError,
        "duration_in_ms",
    ),
    (
        "get-body",
        lambda io, u: io.background_fetch("k", u, {"body": "x"}),
        ConfigError,
        "GET request cannot have a body",
    ),
    (
        "header",
        lambda io, u: io.background_fetch("k", u, {"headers": {"X": 1}}),
        ConfigError,
        "must be a str",
    ),
    (
        "init-key",
        lambda io, u: io.background_fetch("k", u, {"json": {}}),
        ConfigError,
        "unknown key",
    ),
    ("url", lambda io, u: io.background_fetch("k", "ftp://x/y"), ConfigError, "http://"),
    ("key", lambda io, u: io.background_fetch("", u), ConfigError, "cache key"),
    (
        "interval",
        lambda io, u: io.background_poll("k", {"url": u, "interval": 0.01, "response_filter": {}}),
        ConfigError,
        "interval",
    ),
    (
        "poll-timeout",
        lambda io, u: io.background_poll("k", {"url": u, "timeout": 0.5, "response_filter": {}}),
        ConfigError,
        "timeout",
    ),
    (
        "filter",
        lambda io, u: io.background_poll("k", {"url": u, "response_filter": {"status": [99]}}),
        EventFilterError,
        "status",
    ),
    (
        "no-filter",
        lambda io, u: io.background_poll("k", {"url": u}),
        ConfigError,
        "response_filter",
    ),
    (
        "poll-key",
        lambda io, u: io.background_poll("k", {"url": u, "response_filter": {}, "every": 1}),
        ConfigError,
        "unknown option",
    ),
]


@pytest.mark.parametrize(
    ("label", "call", "error", "words"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS]
)
def test_bad_arguments_fail_before_anything_is_stored(
    client, server, label: str, call: Callable[[Any, str], Any], error: type[Exception], words: str
) -> None:
    url = server.script("/never-called", Step(200, {}))
    seen: list[BaseException] = []

    async def body(io: Any) -> Any:
        try:
            await call(io, url)
        except Exception as exc:
            seen.append(exc)
            raise

    run = run_job(client, body)
    with pytest.raises(RunFailedError):
        run.result(timeout=RESULT_TIMEOUT)
    assert isinstance(seen[0], error)
    assert words in str(seen[0])
    assert run.tasks == []
    assert server.hits("/never-called") == 0


# --- v2 edge cases (issue 9 item 10) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "retried"),
    [("false", False), ("0", False), ('""', False), ("null", False), ("{}", True), ("[]", True)],
)
def test_a_body_filter_skips_a_falsy_json_body_as_v2(client, server, body: str, retried: bool) -> None:
    """v2 ``if (!body) continue``: false, 0, "" and null never pass a body filter; {} and []
    are truthy in JavaScript."""
    url = server.script("/falsy", Step(500, body), Step(200, {"ok": True}))
    retry = {"5xx": {**FAST_BACKOFF, "body_filter": {}}}

    async def fetch(io: Any) -> Any:
        try:
            return await io.background_fetch("get", url, retry=retry)
        except Exception as exc:  # TaskError: no strategy applied
            return type(exc).__name__

    run = run_job(client, fetch)
    assert run.result(timeout=RESULT_TIMEOUT) == ({"ok": True} if retried else "TaskError")
    assert server.hits("/falsy") == (2 if retried else 1)


def test_a_poll_can_match_a_json_string_body_but_not_text(client, server) -> None:
    url = server.script("/string", Step(200, "ready"), Step(200, '"ready"'))
    options = {"url": url, "interval": 0.1, "timeout": 10, "response_filter": {"body": {}}}
    run = run_job(client, lambda io: io.background_poll("string", options))
    assert run.result(timeout=RESULT_TIMEOUT) == "ready"
    assert server.hits("/string") == 2
