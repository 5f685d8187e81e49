"""Every ``io`` method of SPEC §6 in one job, through a real kernel, executed twice.

The first execution runs every task (the fetch and poll hit a real HTTP server in this test
process); the second replays all of them: same output, no second request, no second side
effect.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from trigger_nb._notebook._notebook_runner import KernelSession

pytestmark = pytest.mark.kernel


@pytest.fixture
def api() -> Iterator[dict[str, Any]]:
    """A local JSON API: GET /item returns a body; GET /status is 202 twice, then 200 done."""
    hits: dict[str, int] = {}
    seen_auth: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            hits[self.path] = hits.get(self.path, 0) + 1
            seen_auth.append(self.headers.get("Authorization", ""))
            if self.path == "/status" and hits[self.path] < 3:
                status, body = 202, {"state": "working"}
            else:
                status, body = 200, {"state": "done", "path": self.path}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "hits": hits, "auth": seen_auth}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


JOB = """%%job io-tour --wait --timeout 60
side_effects.append("outside")
await io.logger.info("starting", {"user": payload.get("user")})
await io.logger.info("starting")                       # same message again: no duplicate key
first = await io.run_task("first", lambda task: side_effects.append("task") or task.attempts)
await io.wait("pause", 0.2)
await io.store.job.set("set-cursor", "cursor", 41)
cursor = await io.store.job.get("get-cursor", "cursor")
rnd = await io.random("rnd", min=1, max=100, round=True)
uid = await io.uuid("uid")
now = await io.now("now")
status = await io.create_status("progress", {"label": "Working", "state": "loading"})
await status.update("progress-done", {"label": "Done", "state": "success", "data": {"n": 1}})
squares = await io.parallel("squares", [1, 2, 3], lambda item, i: io.run_task(["sq", i], lambda: item * item))
item = await io.background_fetch(
    "fetch", API + "/item",
    {"headers": {"Authorization": trigger_nb.redact_string("Bearer {}", SECRET)}},
)
done = await io.background_poll(
    "poll", {"url": API + "/status", "interval": 0.1, "timeout": 20,
             "response_filter": {"status": [200], "body": {"state": ["done"]}}},
)
await io.send_event("send", {"name": "tour.ping", "id": "tour-ping-1", "payload": {"n": 7}})
event = await io.wait_for_event(
    "ping", {"name": "tour.ping", "filter": {"n": [7]}}, timeout_in_seconds=30, lookback_seconds=60
)
fallback = await io.try_(lambda: io.run_task("boom", lambda: 1 / 0), lambda error: type(error).__name__)
gh = io.integration("github", FakeGitHub())
issue = await gh.run_task("issue", lambda client, task, io: client.issue(42))
return {"first": first, "cursor": cursor, "rnd": rnd, "uid": uid, "now": now, "squares": squares,
        "item": item, "done": done, "event": event["payload"], "fallback": fallback, "issue": issue}
"""

SETUP = """%load_ext trigger_nb
import trigger_nb
side_effects = []
API, SECRET = {api!r}, "s3cr3t-value"
class FakeGitHub:
    def issue(self, number):
        side_effects.append("github")
        return {{"number": number, "title": "Bug"}}
"""


def _ok(result: Any) -> str:
    assert result.error is None, result.error
    return str(result.text)


def test_every_io_method_runs_once_then_replays_in_a_kernel(tmp_path: Path, api: dict[str, Any]) -> None:
    store = tmp_path / "store"
    with KernelSession(env={"TRIGGER_NB_DIR": str(store)}, cwd=str(tmp_path)) as kernel:
        _ok(kernel.run(SETUP.format(api=api["url"])))
        first_log = _ok(kernel.run(JOB, timeout=90))
        assert "SUCCESS" in first_log, first_log
        first = json.loads(_ok(kernel.run("import json; print(json.dumps(_.output))")))
        hits_after_first = dict(api["hits"])

        second_log = _ok(kernel.run(JOB, timeout=90))
        second = json.loads(_ok(kernel.run("print(json.dumps(_.output))")))
        effects = _ok(kernel.run("print(side_effects)"))
        outcomes = _ok(
            kernel.run(
                "run = _\nprint(sorted({t['replayed'] for t in run.tasks if t['status'] == 'COMPLETED'}))"
            )
        )

    assert first == second  # every value pinned at the first execution
    assert first["squares"] == [1, 4, 9] and first["cursor"] == 41 and 1 <= first["rnd"] <= 100
    assert first["item"] == {"state": "done", "path": "/item"} and first["done"]["state"] == "done"
    assert first["event"] == {"n": 7} and first["fallback"] == "TaskError"
    assert first["issue"] == {"number": 42, "title": "Bug"}
    assert api["hits"] == hits_after_first == {"/item": 1, "/status": 3}  # no request on replay
    assert api["auth"][0] == "Bearer s3cr3t-value"  # the secret is sent in full...
    assert not any(b"s3cr3t-value" in p.read_bytes() for p in store.rglob("*") if p.is_file())  # ...stored nowhere
    assert effects.count("'task'") == 1 and effects.count("'github'") == 1
    assert effects.count("'outside'") >= 2  # code outside tasks ran on every execution
    assert outcomes.strip() == "[True]"  # the last execution replayed every completed task
    assert "replayed" in second_log
