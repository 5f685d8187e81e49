"""The receiver (SPEC §9): `handle_request` without sockets, then `Receiver` over real HTTP.

The backend is an in-memory fake: thread-safe, and it records every call (with the name of the
thread that made it) so tests can check what reached it — and what did not.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _support import poll
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trigger_nb._exceptions import ConfigError, EventFilterError, PayloadError
from trigger_nb._receiver import CallbackOutcome, Receiver, Response, handle_request
from trigger_nb._receiver._handling import render

TOKEN = "events-token-" + "x" * 32
LIMIT = 1024 * 1024


class FakeBackend:
    """Tasks waiting for callbacks and an event log, in memory, behind one lock."""

    def __init__(self, token: str = TOKEN) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, dict[str, Any]] = {}
        self.token = token
        self.calls: list[tuple[str, str, tuple[Any, ...]]] = []
        self.events: list[dict[str, Any]] = []
        self.fail_with: BaseException | None = None

    def add_task(self, task_id: str, *, state: str = "waiting") -> str:
        secret = secrets.token_urlsafe(16)
        with self._lock:
            self._tasks[task_id] = {"secret": secret, "state": state, "output": None}
        return secret

    def task(self, task_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._tasks[task_id])

    def calls_to(self, name: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return [args for call, _, args in self.calls if call == name]

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, threading.current_thread().name, args))
        if self.fail_with is not None:
            raise self.fail_with

    async def complete_callback(self, task_id: str, secret: str, body: Any) -> CallbackOutcome:
        with self._lock:
            self._record("complete_callback", task_id, secret, body)
            task = self._tasks.get(task_id)
            if task is None or not hmac.compare_digest(task["secret"], secret):
                return CallbackOutcome.NOT_FOUND
            if task["state"] == "timed_out":
                return CallbackOutcome.TIMED_OUT
            if task["state"] == "completed":
                return CallbackOutcome.ALREADY_RESOLVED
            task.update(state="completed", output=body)
            return CallbackOutcome.ACCEPTED

    def send_event(self, event: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._record("send_event", event)
            if "filter" in event:
                raise EventFilterError("unknown operator $nope in the event filter; use $gt, …")
            if not isinstance(event.get("payload", {}), dict):
                raise PayloadError("an event payload must be a JSON object; wrap the value")
            record = {"id": f"evt_{len(self.events) + 1}", **event}
            self.events.append(record)
            return record

    def events_token(self) -> str:
        return self.token


def call(
    method: str,
    path: str,
    body: bytes = b"",
    backend: FakeBackend | None = None,
    *,
    headers: dict[str, str] | None = None,
    max_body_bytes: int = LIMIT,
) -> Response:
    return asyncio.run(
        handle_request(
            method,
            path,
            headers or {},
            body,
            backend if backend is not None else FakeBackend(),
            max_body_bytes=max_body_bytes,
        )
    )


AUTH = {"Authorization": f"Bearer {TOKEN}"}


# --- handle_request, no sockets ------------------------------------------------------------


def test_health() -> None:
    assert call("GET", "/health") == Response(200, {"ok": True})


@pytest.mark.parametrize(
    "path",
    ["/", "", "/nope", "/health/", "/callbacks", "/callbacks/t1", "/callbacks/t1/s/x",
     "/callbacks//s", "/callbacks/t1/", "/events/x", "health", "/callbacks/t1/a%2Fb"],
)  # fmt: skip
def test_unknown_path_is_404(path: str) -> None:
    backend = FakeBackend()
    response = call("POST", path, b"{}", backend)
    assert response.status == 404
    assert (
        response.body["ok"] is False and "/callbacks/{task_id}/{secret}" in response.body["error"]
    )
    assert backend.calls == []


def test_callback_accepted_then_already_resolved() -> None:
    backend = FakeBackend()
    secret = backend.add_task("t1")
    first = call("POST", f"/callbacks/t1/{secret}", b'{"answer": 42}', backend)
    second = call("POST", f"/callbacks/t1/{secret}", b'{"answer": 0}', backend)
    assert first == Response(200, {"ok": True})
    assert second == Response(200, {"ok": True, "accepted": False})
    assert backend.task("t1")["output"] == {"answer": 42}  # the first POST wins


def test_callback_query_string_is_ignored_and_segments_are_unquoted() -> None:
    backend = FakeBackend()
    secret = backend.add_task("task 1")
    assert call("POST", f"/callbacks/task%201/{secret}?source=x", b"[1]", backend).status == 200
    assert backend.task("task 1")["output"] == [1]


@pytest.mark.parametrize("body", [b"null", b"0", b'"text"', b"[]", b'{"nested": {"a": [1.5]}}'])
def test_any_json_value_is_a_callback_body(body: bytes) -> None:
    backend = FakeBackend()
    secret = backend.add_task("t1")
    assert call("POST", f"/callbacks/t1/{secret}", body, backend).status == 200
    assert backend.task("t1")["output"] == json.loads(body)


def test_unknown_task_and_wrong_secret_are_the_same_404() -> None:
    backend = FakeBackend()
    secret = backend.add_task("t1")
    unknown = call("POST", f"/callbacks/nope/{secret}", b"{}", backend)
    wrong = call("POST", "/callbacks/t1/wrong-secret", b"{}", backend)
    assert unknown.status == wrong.status == 404
    assert unknown == wrong  # nothing tells an attacker which part was wrong
    assert backend.task("t1")["state"] == "waiting"


def test_timed_out_is_410() -> None:
    backend = FakeBackend()
    secret = backend.add_task("t1", state="timed_out")
    response = call("POST", f"/callbacks/t1/{secret}", b"{}", backend)
    assert response.status == 410 and "timeout" in response.body["error"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"x": NaN}', "NaN"),
        (b"[Infinity]", "Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_callback_body_not_json_is_400(body: bytes, fragment: str) -> None:
    backend = FakeBackend()
    secret = backend.add_task("t1")
    response = call("POST", f"/callbacks/t1/{secret}", body, backend)
    assert response.status == 400 and fragment in response.body["error"]
    assert backend.calls == []


def test_body_limit_is_inclusive_and_413_skips_the_backend() -> None:
    backend = FakeBackend()
    secret = backend.add_task("t1")
    at_limit = b'"' + b"x" * 98 + b'"'
    assert (
        call("POST", f"/callbacks/t1/{secret}", at_limit, backend, max_body_bytes=100).status == 200
    )
    over = call("POST", f"/callbacks/t1/{secret}", at_limit + b" ", backend, max_body_bytes=100)
    assert over.status == 413 and "100 bytes" in over.body["error"]
    assert len(backend.calls) == 1


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("GET", "/callbacks/t1/s", "POST"), ("PUT", "/callbacks/t1/s", "POST"),
     ("DELETE", "/callbacks/t1/s", "POST"), ("GET", "/events", "POST"),
     ("POST", "/health", "GET"), ("HEAD", "/health", "GET"), ("OPTIONS", "/events", "POST")],
)  # fmt: skip
def test_other_methods_are_405_with_allow(method: str, path: str, allow: str) -> None:
    backend = FakeBackend()
    response = call(method, path, b"{}", backend)
    assert response.status == 405
    assert ("Allow", allow) in response.headers
    assert backend.calls == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
     {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer "},
     {"Authorization": "Bearer tökén"}],
)  # fmt: skip
def test_events_without_the_token_is_401(headers: dict[str, str]) -> None:
    backend = FakeBackend()
    response = call("POST", "/events", b'{"name": "x"}', backend, headers=headers)
    assert response.status == 401
    assert ("WWW-Authenticate", "Bearer") in response.headers
    assert "%job server" in response.body["error"]
    assert backend.calls_to("send_event") == []


def test_an_empty_backend_token_lets_nobody_in() -> None:
    backend = FakeBackend(token="")
    response = call(
        "POST", "/events", b'{"name": "x"}', backend, headers={"Authorization": "Bearer "}
    )
    assert response.status == 401


@pytest.mark.parametrize("name", ["Authorization", "authorization", "AUTHORIZATION"])
def test_events_header_name_and_scheme_are_case_insensitive(name: str) -> None:
    backend = FakeBackend()
    response = call("POST", "/events", b'{"name": "x"}', backend, headers={name: f"bearer {TOKEN}"})
    assert response.status == 200


def test_events_with_the_token_sends_the_event() -> None:
    backend = FakeBackend()
    body = b'{"name": "order.paid", "payload": {"id": 7}}'
    response = call("POST", "/events", body, backend, headers=AUTH)
    assert response == Response(
        200, {"ok": True, "event": {"id": "evt_1", "name": "order.paid", "payload": {"id": 7}}}
    )
    assert backend.events == [response.body["event"]]


def test_events_check_the_token_before_the_body() -> None:
    response = call("POST", "/events", b"x" * 200, max_body_bytes=100)
    assert response.status == 401
    assert call("POST", "/events", b"x" * 200, headers=AUTH, max_body_bytes=100).status == 413
    assert call("POST", "/events", b"x", headers=AUTH).status == 400


@pytest.mark.parametrize(
    "body", [b"[]", b'"order.paid"', b"{}", b'{"name": 1}', b'{"name": null}', b'{"payload": {}}']
)
def test_event_that_is_not_an_object_with_a_string_name_is_400(body: bytes) -> None:
    backend = FakeBackend()
    response = call("POST", "/events", body, backend, headers=AUTH)
    assert response.status == 400 and '"name"' in response.body["error"]
    assert backend.calls_to("send_event") == []


@pytest.mark.parametrize(
    ("event", "fragment"),
    [({"name": "x", "filter": {}}, "unknown operator"), ({"name": "x", "payload": 3}, "wrap")],
)
def test_events_refused_by_the_backend_are_400_with_its_message(
    event: dict[str, Any], fragment: str
) -> None:
    response = call("POST", "/events", json.dumps(event).encode(), headers=AUTH)
    assert response.status == 400 and fragment in response.body["error"]


def test_a_backend_crash_is_a_generic_500_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend()
    secret = backend.add_task("t1")
    backend.fail_with = RuntimeError(f"database password hunter2, secret {secret}")
    with caplog.at_level(logging.ERROR, logger="trigger_nb.receiver"):
        response = call("POST", f"/callbacks/t1/{secret}", b"{}", backend)
    assert response.status == 500 and response.body["ok"] is False
    assert "hunter2" not in json.dumps(response.body) and secret not in json.dumps(response.body)
    assert any(record.exc_info for record in caplog.records)


def test_a_backend_answer_that_is_not_an_outcome_is_500() -> None:
    class Confused(FakeBackend):
        async def complete_callback(self, task_id: str, secret: str, body: Any) -> CallbackOutcome:
            return "accepted"  # type: ignore[return-value]

    assert call("POST", "/callbacks/t1/s", b"{}", Confused()).status == 500


def test_no_response_echoes_the_secret_the_token_or_the_path() -> None:
    backend = FakeBackend()
    secret = backend.add_task("t1")
    wrong_token = {"Authorization": "Bearer " + "y" * 40}
    requests = [
        ("POST", f"/callbacks/t1/{secret}", b"{}", {}),
        ("POST", f"/callbacks/t1/{secret}", b"{}", {}),
        ("POST", f"/callbacks/t1/{secret}x", b"{}", {}),
        ("POST", f"/callbacks/t1/{secret}", b"nope", {}),
        ("GET", f"/callbacks/t1/{secret}", b"", {}),
        ("POST", f"/callbacks/t1/{secret}/more", b"{}", {}),
        ("POST", "/events", b'{"name": "x"}', wrong_token),
        ("POST", "/events", b'{"name": "x"}', AUTH),
    ]
    for method, path, body, headers in requests:
        _, response_headers, payload = render(call(method, path, body, backend, headers=headers))
        text = payload.decode() + repr(response_headers)
        assert secret not in text and TOKEN not in text and "y" * 40 not in text


def test_render_encodes_json_and_turns_an_unencodable_body_into_500() -> None:
    status, headers, payload = render(Response(200, {"ok": True, "text": "é"}))
    assert status == 200 and json.loads(payload) == {"ok": True, "text": "é"}
    assert ("Content-Type", "application/json; charset=utf-8") in headers
    status, _, payload = render(Response(200, {"ok": True, "event": {"at": object()}}))
    assert status == 500 and json.loads(payload)["ok"] is False


# --- Receiver over real HTTP on 127.0.0.1 ---------------------------------------------------


def receiver_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("trigger_nb-receiver")]


@pytest.fixture(autouse=True)
def no_receiver_thread_left_behind() -> Iterator[None]:
    yield
    assert receiver_threads() == []


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def receiver(backend: FakeBackend) -> Iterator[Receiver]:
    with Receiver(backend) as started:
        yield started


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    # trust_env=False: a proxy from the environment must not intercept loopback requests.
    with httpx.Client(trust_env=False, timeout=5.0) as http:
        yield http


def test_http_callback_first_post_wins(
    receiver: Receiver, backend: FakeBackend, client: httpx.Client
) -> None:
    secret = backend.add_task("t1")
    first = client.post(receiver.callback_url("t1", secret), json={"answer": 42})
    second = client.post(receiver.callback_url("t1", secret), json={"answer": 0})
    assert (first.status_code, first.json()) == (200, {"ok": True})
    assert (second.status_code, second.json()) == (200, {"ok": True, "accepted": False})
    assert first.headers["content-type"].startswith("application/json")
    assert backend.task("t1")["output"] == {"answer": 42}
    # The backend is called on the receiver's own thread, as its protocol says.
    assert {thread for _, thread, _ in backend.calls} == {receiver_threads()[0].name}


def test_http_unknown_task_and_wrong_secret_are_404(
    receiver: Receiver, backend: FakeBackend, client: httpx.Client
) -> None:
    secret = backend.add_task("t1")
    assert client.post(receiver.callback_url("nope", secret), json={}).status_code == 404
    wrong = client.post(receiver.callback_url("t1", "wrong"), json={})
    assert wrong.status_code == 404 and wrong.json()["ok"] is False
    assert backend.task("t1")["state"] == "waiting"


def test_http_not_json_is_400(
    receiver: Receiver, backend: FakeBackend, client: httpx.Client
) -> None:
    secret = backend.add_task("t1")
    response = client.post(receiver.callback_url("t1", secret), content=b"<xml/>")
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    assert backend.task("t1")["state"] == "waiting"


def test_http_over_the_default_1_mib_is_413_and_the_connection_stays_usable(
    receiver: Receiver, backend: FakeBackend, client: httpx.Client
) -> None:
    secret = backend.add_task("t1")
    url = receiver.callback_url("t1", secret)
    at_limit = b'"' + b"x" * (LIMIT - 2) + b'"'
    over = client.post(url, content=at_limit + b" ")
    assert over.status_code == 413 and str(LIMIT) in over.json()["error"]
    assert backend.calls == []
    assert client.post(url, content=at_limit).status_code == 200
    assert backend.task("t1")["output"] == "x" * (LIMIT - 2)


@pytest.mark.parametrize("how", ["content-length", "chunked"])
def test_http_small_configured_limit_is_413(
    backend: FakeBackend, client: httpx.Client, how: str
) -> None:
    secret = backend.add_task("t1")
    with Receiver(backend, max_body_bytes=64) as receiver:
        url = receiver.callback_url("t1", secret)
        body = json.dumps({"text": "x" * 5000}).encode()
        # A generator body goes out chunked, without Content-Length: the bytes are counted.
        content = (
            body if how == "content-length" else (body[i : i + 100] for i in range(0, 5000, 100))
        )
        response = client.post(url, content=content)
        assert response.status_code == 413 and "64 bytes" in response.json()["error"]
        assert client.get(f"{receiver.base_url}/health").status_code == 200
        assert client.post(url, json="small").status_code == 200
    assert backend.calls_to("complete_callback") == [("t1", secret, "small")]


def raw_request(port: int, request: bytes) -> bytes:
    """Send raw bytes and read the answer until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_http_413_for_a_raw_chunked_body_without_content_length(backend: FakeBackend) -> None:
    with Receiver(backend, max_body_bytes=64) as receiver:
        chunks = b"".join(b"%x\r\n%s\r\n" % (50, b"x" * 50) for _ in range(4)) + b"0\r\n\r\n"
        answer = raw_request(
            receiver.port,
            b"POST /callbacks/t1/s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks,
        )
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert backend.calls == []


def test_http_a_huge_announced_body_gets_413_without_being_sent(
    receiver: Receiver, backend: FakeBackend
) -> None:
    answer = raw_request(
        receiver.port,
        b"POST /callbacks/t1/s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in answer
    assert backend.calls == []


def test_http_get_on_a_callback_is_405(
    receiver: Receiver, backend: FakeBackend, client: httpx.Client
) -> None:
    secret = backend.add_task("t1")
    response = client.get(receiver.callback_url("t1", secret))
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert secret not in response.text
    assert backend.calls == []


def test_http_any_method_gets_a_json_answer(
    receiver: Receiver, client: httpx.Client
) -> None:
    trace = client.request("TRACE", f"{receiver.base_url}/health")
    assert trace.status_code == 405 and trace.headers["allow"] == "GET"
    assert client.request("TRACE", f"{receiver.base_url}/nope").json()["ok"] is False
    assert client.get(f"{receiver.base_url}/health").status_code == 200


def test_http_timed_out_is_410(
    receiver: Receiver, backend: FakeBackend, client: httpx.Client
) -> None:
    secret = backend.add_task("t1", state="timed_out")
    assert client.post(receiver.callback_url("t1", secret), json={}).status_code == 410


def test_http_events_need_the_token(
    receiver: Receiver, backend: FakeBackend, client: httpx.Client
) -> None:
    url = f"{receiver.base_url}/events"
    missing = client.post(url, json={"name": "order.paid"})
    wrong = client.post(url, json={"name": "order.paid"}, headers={"Authorization": "Bearer no"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert backend.events == []
    ok = client.post(url, json={"name": "order.paid", "payload": {"id": 7}}, headers=AUTH)
    assert ok.status_code == 200
    assert ok.json() == {
        "ok": True,
        "event": {"id": "evt_1", "name": "order.paid", "payload": {"id": 7}},
    }
    no_name = client.post(url, json={"payload": {}}, headers=AUTH)
    assert no_name.status_code == 400 and '"name"' in no_name.json()["error"]
    assert len(backend.events) == 1


def test_http_health_and_unknown_path(receiver: Receiver, client: httpx.Client) -> None:
    health = client.get(f"{receiver.base_url}/health")
    assert (health.status_code, health.json()) == (200, {"ok": True})
    assert "server" not in health.headers and "etag" not in health.headers
    unknown = client.get(f"{receiver.base_url}/nope")
    assert unknown.status_code == 404 and unknown.json()["ok"] is False


def test_http_a_backend_crash_is_500_and_the_server_goes_on(
    receiver: Receiver, backend: FakeBackend, client: httpx.Client
) -> None:
    secret = backend.add_task("t1")
    backend.fail_with = RuntimeError("boom")
    logging.getLogger("trigger_nb.receiver").disabled = True  # the traceback is expected
    try:
        crashed = client.post(receiver.callback_url("t1", secret), json={})
    finally:
        logging.getLogger("trigger_nb.receiver").disabled = False
    assert crashed.status_code == 500 and "boom" not in crashed.text
    backend.fail_with = None
    assert client.post(receiver.callback_url("t1", secret), json={}).status_code == 200


def test_http_a_100_kb_header_is_431_and_a_normal_big_one_passes(
    receiver: Receiver, client: httpx.Client
) -> None:
    big = client.get(f"{receiver.base_url}/health", headers={"X-Big": "a" * 100_000})
    assert big.status_code == 431
    assert "headers" in big.json()["error"]
    fine = client.get(f"{receiver.base_url}/health", headers={"X-Big": "a" * 30_000})
    assert fine.status_code == 200


def test_http_the_server_stays_quiet(
    receiver: Receiver, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        client.get(f"{receiver.base_url}/health")
        client.get(f"{receiver.base_url}/nope")
        client.post(f"{receiver.base_url}/events", json={})
        raw_request(receiver.port, b"NOT HTTP\r\n\r\n")
    assert [r for r in caplog.records if r.name.startswith(("asyncio", "trigger_nb")) and r.levelno >= logging.INFO] == []


def test_answers_while_the_calling_thread_sleeps(receiver: Receiver, backend: FakeBackend) -> None:
    secret = backend.add_task("t1")
    answered = threading.Event()
    statuses: list[int] = []

    def post() -> None:
        statuses.append(
            httpx.post(receiver.callback_url("t1", secret), json=1, trust_env=False).status_code
        )
        answered.set()

    poster = threading.Thread(target=post)
    poster.start()
    time.sleep(1.0)  # like a cell busy in synchronous code: this thread runs no event loop
    assert answered.is_set(), "the receiver did not answer while the caller's thread slept"
    poster.join()
    assert statuses == [200] and backend.task("t1")["output"] == 1


def test_answers_a_blocking_post_from_the_calling_thread(
    receiver: Receiver, backend: FakeBackend
) -> None:
    secret = backend.add_task("t1")
    response = httpx.post(
        receiver.callback_url("t1", secret), json={"x": 1}, trust_env=False, timeout=5
    )
    assert response.status_code == 200 and backend.task("t1")["output"] == {"x": 1}


def test_callbacks_await_the_backend_concurrently() -> None:
    """The backend's ``complete_callback`` is awaited, not called: callbacks arriving together
    are all in flight at once (the engine resolves them in one batch). Here the backend answers
    none until three are waiting: handled one at a time, the first would never be answered."""

    class Gathering(FakeBackend):
        def __init__(self) -> None:
            super().__init__()
            self.waiting = 0
            self.all_in: asyncio.Event | None = None

        async def complete_callback(self, task_id: str, secret: str, body: Any) -> CallbackOutcome:
            self.all_in = self.all_in or asyncio.Event()
            self.waiting += 1
            if self.waiting == 3:
                self.all_in.set()
            await asyncio.wait_for(self.all_in.wait(), 10)
            return await super().complete_callback(task_id, secret, body)

    backend = Gathering()
    secrets_ = {task_id: backend.add_task(task_id) for task_id in ("t1", "t2", "t3")}
    with Receiver(backend) as receiver:
        def post(task_id: str) -> int:
            url = receiver.callback_url(task_id, secrets_[task_id])
            return httpx.post(url, json=task_id, trust_env=False, timeout=10).status_code

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            statuses = list(pool.map(post, secrets_))
    assert statuses == [200, 200, 200]
    assert [backend.task(task_id)["output"] for task_id in secrets_] == ["t1", "t2", "t3"]


def test_a_client_gone_while_its_callback_resolves_is_stored_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sender hangs up while the backend resolves its callback: the callback is still
    stored (as in v2), nothing is logged, and the receiver goes on serving."""

    class Slow(FakeBackend):
        def __init__(self) -> None:
            super().__init__()
            self.entered = threading.Event()
            self.release = threading.Event()

        async def complete_callback(self, task_id: str, secret: str, body: Any) -> CallbackOutcome:
            self.entered.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
            return await super().complete_callback(task_id, secret, body)

    backend = Slow()
    secret = backend.add_task("t1")
    body = b'{"late": true}'
    with caplog.at_level(logging.DEBUG), Receiver(backend) as receiver:
        with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
            sock.sendall(
                b"POST /callbacks/t1/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                % (secret.encode(), len(body), body)
            )
            assert backend.entered.wait(10)
        backend.release.set()  # the client is gone: its answer has nowhere to go
        poll(lambda: backend.task("t1")["state"] == "completed")
        health = httpx.get(f"{receiver.base_url}/health", trust_env=False, timeout=10)
    assert health.status_code == 200
    assert backend.task("t1")["output"] == {"late": True}
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == []


def test_http_pipelined_requests_are_answered_in_order(backend: FakeBackend) -> None:
    secrets_ = {task_id: backend.add_task(task_id) for task_id in ("t1", "t2")}

    def post(task_id: str) -> bytes:
        body = json.dumps({"id": task_id}).encode()
        return b"POST /callbacks/%s/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
            task_id.encode(), secrets_[task_id].encode(), len(body), body
        )

    with Receiver(backend) as receiver:
        answer = raw_request(
            receiver.port,
            post("t1") + post("t2") + b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200", b"200", b"404"]
    assert [backend.task(t)["output"] for t in ("t1", "t2")] == [{"id": "t1"}, {"id": "t2"}]


def test_http_head_gets_headers_only_and_http_1_0_is_answered(backend: FakeBackend) -> None:
    with Receiver(backend) as receiver:
        head = raw_request(
            receiver.port, b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        old = raw_request(receiver.port, b"GET /health HTTP/1.0\r\n\r\n")
    status, _, rest = head.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 405 ") and b"Allow: GET" in headers
    assert b"Content-Length: " in headers and b"Date: " in headers and body == b""
    assert old.startswith(b"HTTP/1.1 200 ") and old.endswith(b'{"ok": true}')


@pytest.mark.parametrize(
    "garbage",
    [b"NOT HTTP\r\n\r\n", b"GET /health HTTP/9.9\r\n\r\n", b"GET /health HTTP/1.1\r\nHost x\r\n\r\n"],
)
def test_http_a_request_that_is_not_http_gets_400_and_a_close(
    receiver: Receiver, backend: FakeBackend, garbage: bytes
) -> None:
    answer = raw_request(receiver.port, garbage + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in rest
    assert b"not valid HTTP" in rest
    assert len(re.findall(rb"HTTP/1\.1 \d{3} ", answer)) == 1  # nothing after it is read
    assert backend.calls == []
    health = raw_request(receiver.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200 ")  # the server goes on


def test_http_a_head_that_never_ends_is_431_without_being_read_to_its_end(
    receiver: Receiver, backend: FakeBackend
) -> None:
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nX-Endless: ")
        sent, answer = 0, b""
        try:
            while sent < 8 * 1024 * 1024:  # the server answers after its 1 MiB
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:  # the server closed the connection: the rest is not read
            pass
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 ") and b"Connection: close" in answer
    assert sent < 8 * 1024 * 1024 and backend.calls == []


def test_http_expect_100_continue_is_answered_before_the_body(
    receiver: Receiver, backend: FakeBackend
) -> None:
    secret = backend.add_task("t1")
    body = b'{"after": "continue"}'
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
        sock.sendall(
            b"POST /callbacks/t1/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % (secret.encode(), len(body))
        )
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"  # the body is not sent yet
        sock.sendall(body)
        answer = b""
        while not answer.endswith(b"}") and (chunk := sock.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert backend.task("t1")["output"] == {"after": "continue"}


def test_http_an_upgrade_request_is_answered_then_closed(receiver: Receiver) -> None:
    answer = raw_request(
        receiver.port,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        b"\x81\x05hello",  # a websocket frame: not spoken here
    )
    assert answer.startswith(b"HTTP/1.1 200 ") and len(re.findall(rb"HTTP/1\.1 \d{3} ", answer)) == 1


def test_http_many_pipelined_requests_are_all_answered_in_order(
    receiver: Receiver, backend: FakeBackend
) -> None:
    """More requests at once than a connection reads ahead of its answers: reading pauses
    and resumes, and every one is answered, in order."""
    secrets_ = {f"t{i}": backend.add_task(f"t{i}") for i in range(40)}
    requests = b"".join(
        b"POST /callbacks/%s/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%d"
        % (task_id.encode(), secret.encode(), len(str(i)), i)
        for i, (task_id, secret) in enumerate(secrets_.items())
    )
    answer = raw_request(receiver.port, requests + b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200"] * 40 + [b"404"]
    assert [backend.task(f"t{i}")["output"] for i in range(40)] == list(range(40))


def test_http_an_endless_chunked_body_is_413_once_past_what_is_read_to_discard(
    backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trigger_nb._receiver import _connection

    monkeypatch.setattr(_connection, "_DISCARD_BYTES", 4096)
    with Receiver(backend, max_body_bytes=64) as receiver:
        with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
            sock.sendall(b"POST /callbacks/t1/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            answer = b""
            try:
                for _ in range(1000):  # 1 MB, far past 64 + 4096 bytes
                    sock.sendall(b"%x\r\n%s\r\n" % (1000, b"x" * 1000))
            except OSError:
                pass
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in answer
    assert backend.calls == []


class SlowBackend(FakeBackend):
    """Resolves a callback 0.2 s after it arrives, as the engine does when its loop is busy."""

    async def complete_callback(self, task_id: str, secret: str, body: Any) -> CallbackOutcome:
        await asyncio.sleep(0.2)
        return await super().complete_callback(task_id, secret, body)


def test_http_a_client_that_shuts_its_side_after_sending_gets_its_answers() -> None:
    backend = SlowBackend()
    secret = backend.add_task("t1")
    body = b'{"half": "closed"}'
    with Receiver(backend) as receiver, socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
        sock.sendall(
            b"POST /callbacks/t1/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" % (secret.encode(), len(body), body)
        )
        sock.shutdown(socket.SHUT_WR)  # nothing more to send
        answer = b""
        while chunk := sock.recv(65536):  # both answers, then the server closes
            answer += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200", b"200"]
    assert backend.task("t1")["output"] == {"half": "closed"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [b"GET /health HTTP/1.1\r\n", b"POST /callbacks/t/s HTTP/1.1\r\n", b"Host: x\r\n",
                 b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"\r\n", b"3\r\nabc\r\n",
                 b"0\r\n\r\n", b"Expect: 100-continue\r\n", b"HTTP/1.0\r\n", b"\x00\xff"]
            ),
        ),
        max_size=12,
    )
)
def test_http_any_bytes_get_http_answers_or_a_close_and_the_server_goes_on(
    receiver: Receiver, backend: FakeBackend, caplog: pytest.LogCaptureFixture, data: list[bytes]
) -> None:
    """Whatever a client sends, in whatever pieces: what comes back is HTTP responses (or
    nothing), the connection ends, nothing is logged as an error, and the next client is served."""
    answer = b""
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
        try:
            for piece in data:
                sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:  # the server answered garbage with 400 and closed while we still sent
            pass
    if answer:
        assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    health = raw_request(receiver.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200 ")


def test_port_zero_gives_a_free_port(backend: FakeBackend, client: httpx.Client) -> None:
    with Receiver(backend) as one, Receiver(backend, port=0) as two:
        assert one.port != 0 and two.port != 0 and one.port != two.port
        assert one.base_url == f"http://127.0.0.1:{one.port}"
        assert one.callback_url("t1", "s") == f"http://127.0.0.1:{one.port}/callbacks/t1/s"
        assert client.get(f"{two.base_url}/health").status_code == 200


def test_an_occupied_port_raises_config_error(backend: FakeBackend) -> None:
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        receiver = Receiver(backend, port=port)
        with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{port}.*port 0"):
            receiver.start()
        assert not receiver.running


def test_stop_frees_the_port_closes_connections_and_joins_the_thread(
    backend: FakeBackend, client: httpx.Client
) -> None:
    receiver = Receiver(backend)
    receiver.start()
    port = receiver.port
    assert receiver.running and len(receiver_threads()) == 1
    assert client.get(f"http://127.0.0.1:{port}/health").status_code == 200  # keep-alive open
    receiver.stop()
    assert not receiver.running and receiver_threads() == []
    receiver.stop()  # idempotent
    with pytest.raises(httpx.TransportError):
        client.get(f"http://127.0.0.1:{port}/health")
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
    with Receiver(backend, port=port) as restarted:
        assert restarted.port == port
        assert client.get(f"{restarted.base_url}/health").status_code == 200


def test_stop_while_a_callback_awaits_the_backend_returns_promptly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A callback still awaiting its answer (the kernel's loop busy) does not hold stop(): the
    answer is abandoned, the client's connection closed, the thread joined, nothing logged."""

    class Waiting(FakeBackend):
        def __init__(self) -> None:
            super().__init__()
            self.entered = threading.Event()

        async def complete_callback(self, task_id: str, secret: str, body: Any) -> CallbackOutcome:
            self.entered.set()
            await asyncio.sleep(3600)  # an answer that would come much later
            raise AssertionError("unreachable")

    backend = Waiting()
    secret = backend.add_task("t1")
    receiver = Receiver(backend)
    receiver.start()
    outcome: list[BaseException | int] = []

    def post() -> None:
        try:
            outcome.append(httpx.post(receiver.callback_url("t1", secret), json={}, trust_env=False, timeout=30).status_code)
        except httpx.TransportError as exc:
            outcome.append(exc)

    sender = threading.Thread(target=post)
    sender.start()
    assert backend.entered.wait(10)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        receiver.stop()
    assert time.monotonic() - started < 5 and receiver_threads() == []
    sender.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.TransportError)  # closed, unanswered
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_public_url_is_used_in_callback_urls(backend: FakeBackend, client: httpx.Client) -> None:
    receiver = Receiver(backend, public_url="https://hooks.example.com/nb/")
    assert receiver.callback_url("t1", "s") == "https://hooks.example.com/nb/callbacks/t1/s"
    with receiver:
        assert receiver.base_url == "https://hooks.example.com/nb"
        assert client.get(f"http://127.0.0.1:{receiver.port}/health").status_code == 200


def test_base_url_needs_a_port(backend: FakeBackend) -> None:
    with pytest.raises(ConfigError, match="start"):
        Receiver(backend).base_url  # noqa: B018
    assert Receiver(backend, port=8123).base_url == "http://127.0.0.1:8123"
    assert Receiver(backend, host="::1", port=8123).base_url == "http://[::1]:8123"


@pytest.mark.parametrize(
    "options",
    [{"port": -1}, {"port": 70000}, {"max_body_bytes": 0}, {"public_url": "hooks.example.com"}],
)
def test_bad_options_raise_config_error(backend: FakeBackend, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Receiver(backend, **options)


def test_300_sequential_keep_alive_posts_all_reach_the_backend(
    receiver: Receiver, backend: FakeBackend, client: httpx.Client
) -> None:
    urls = [receiver.callback_url(f"t{i}", backend.add_task(f"t{i}")) for i in range(300)]
    statuses = [client.post(url, json={"i": i}).status_code for i, url in enumerate(urls)]
    assert statuses == [200] * 300
    assert len(backend.calls_to("complete_callback")) == 300
    assert all(backend.task(f"t{i}")["output"] == {"i": i} for i in range(300))


# -- slow clients: bounded time to send headers and body (receiver/_deadlines.py) -------------
@pytest.fixture
def short_limits(monkeypatch: pytest.MonkeyPatch) -> float:
    """Headers and body limits of 0.4 s, looked at every 0.05 s; returns the limit."""
    from trigger_nb._receiver import _connection, _deadlines

    monkeypatch.setattr(_connection, "_IDLE_CONNECTION_TIMEOUT_S", 0.4)
    monkeypatch.setattr(_connection, "_BODY_TIMEOUT_S", 0.4)
    monkeypatch.setattr(_deadlines, "SWEEP_S", 0.05)
    return 0.4


def closed_after(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Read until the server closes ``sock``; (what was read, seconds it took)."""
    sock.settimeout(limit * 10)
    started, data = time.monotonic(), b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - started


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_limit(
    backend: FakeBackend, short_limits: float
) -> None:
    with Receiver(backend) as receiver, socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        data, took = closed_after(sock, short_limits)
    assert data == b"" and short_limits * 0.9 <= took < short_limits * 5


def test_a_body_that_stops_arriving_is_cut_and_never_reaches_the_backend(
    backend: FakeBackend, short_limits: float, caplog: pytest.LogCaptureFixture
) -> None:
    secret = backend.add_task("t1")
    caplog.set_level(logging.INFO, logger="trigger_nb.receiver")
    with Receiver(backend) as receiver, socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.sendall(
            b"POST /callbacks/t1/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\": "
            % secret.encode()
        )
        data, took = closed_after(sock, short_limits)
        # The server goes on: the next client is answered.
        assert raw_request(receiver.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
            b"HTTP/1.1 200 "
        )
    assert data == b"" and short_limits * 0.9 <= took < short_limits * 5
    assert backend.calls_to("complete_callback") == [] and backend.task("t1")["state"] == "waiting"
    assert any(
        "body of a POST request did not arrive within 0.4 s" in r.getMessage()
        for r in caplog.records
    )
    assert secret not in caplog.text  # the log names the request, not its secret


def test_partial_headers_are_cut_after_the_idle_limit(backend: FakeBackend, short_limits: float) -> None:
    with Receiver(backend) as receiver, socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.sendall(b"POST /callbacks/t1/s HTTP/1.1\r\nHost: x\r\n")  # no blank line: never ends
        data, took = closed_after(sock, short_limits)
    assert data == b"" and short_limits * 0.9 <= took < short_limits * 5
    assert backend.calls == []


def test_slow_clients_within_the_limits_are_answered_on_one_connection(
    backend: FakeBackend, short_limits: float
) -> None:
    """Each limit runs per request: a kept-alive connection used now and then, and a body sent
    in pieces, both take longer in all than one limit and must not be cut."""
    secrets_ = {task_id: backend.add_task(task_id) for task_id in ("t1", "t2", "t3")}
    pause = short_limits / 2
    with Receiver(backend) as receiver, socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.settimeout(5)
        for task_id in secrets_:
            time.sleep(pause)  # idle between requests
            sock.sendall(
                b"POST /callbacks/%s/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"id\": "
                % (task_id.encode(), secrets_[task_id].encode())
            )
            time.sleep(pause)  # a body in two pieces
            sock.sendall(b'"%s"}' % task_id.encode())
            answer = b""
            while not answer.endswith(b"}") and (chunk := sock.recv(65536)):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert [backend.task(t)["output"] for t in secrets_] == [{"id": t} for t in secrets_]


def test_kept_alive_connections_closed_by_their_clients_are_not_held(
    backend: FakeBackend, short_limits: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that closes a kept-alive connection between requests leaves no watch behind:
    a sender that opens a connection per POST does not pile up watched connections for the
    whole idle limit."""
    from trigger_nb._receiver import _connection, _deadlines, _server

    made: list[_deadlines.Deadlines] = []

    class Recorded(_deadlines.Deadlines):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(_connection, "_IDLE_CONNECTION_TIMEOUT_S", 60.0)  # far: only "gone" drops
    monkeypatch.setattr(_server, "Deadlines", Recorded)
    with Receiver(backend) as receiver:
        for _ in range(20):
            with httpx.Client(trust_env=False, timeout=5.0) as http:  # keep-alive, then closed
                assert http.get(receiver.base_url + "/health").status_code == 200
        poll(lambda: len(made[0]._due) == 0, timeout=5)  # closed connections are dropped
