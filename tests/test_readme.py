"""Every python code block of README.md is executed, as shown.

Blocks run in order as the cells of one notebook, in a real IPython shell (``%load_ext``,
``%%job``, top-level ``await``). A block preceded by ``<!-- readme-test: job-body ... -->`` is a
fragment of a job body (the ``io`` listing): it runs as the body of a ``%%job`` cell, with
stand-ins for the user's own objects (``api``, ``url``, ...) served by real local HTTP servers.
No block is skipped: a block of another kind fails the test.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from _support import ScriptedServer, Step
from IPython.utils.capture import capture_output

import trigger_nb
from trigger_nb import Run, TriggerClient

README = Path(__file__).parent.parent / "README.md"
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<kind>[\w-]+)[^>]*-->\n)?```(?P<lang>python|ipython)\n(?P<code>.*?)```", re.S)


def readme_blocks() -> list[tuple[str, str]]:
    """``(kind, code)`` of every python/ipython block: ``cell`` unless marked otherwise."""
    text = README.read_text(encoding="utf-8")
    blocks = [(m["kind"] or "cell", m["code"]) for m in BLOCK.finditer(text)]
    assert len(blocks) == len(re.findall(r"```(?:python|ipython)\n", text))
    return blocks


def run_cell(ip: Any, source: str) -> tuple[Any, str]:
    with capture_output() as captured:
        result = ip.run_cell(source, store_history=True)
    error = result.error_before_exec or result.error_in_exec
    assert error is None, f"README block failed: {error!r}\n{source}\n{captured.stdout}"
    return result.result, captured.stdout


def test_every_block_has_a_runner() -> None:
    kinds = {kind for kind, _ in readme_blocks()}
    assert kinds <= {"cell", "job-body"}, kinds
    assert len(readme_blocks()) >= 5


def test_readme_cells_run_in_order_as_a_notebook(
    ip: Any, shell_client: TriggerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tour, the blocking note's cell and the library API, as one notebook."""
    monkeypatch.chdir(tmp_path)  # the library block opens ./.trigger_nb
    ip.user_ns["fetch_issue"] = lambda number: {"number": number, "title": f"Issue {number}"}
    cells = [code for kind, code in readme_blocks() if kind == "cell"]
    tour = next(i for i, code in enumerate(cells) if code.startswith("%%job weather"))
    try:
        for i, code in enumerate(cells):
            value, stdout = run_cell(ip, code)
            if i == tour:
                assert isinstance(value, Run) and value.status == "WAITING"
                assert ip.user_ns["calls"] == 1
                assert "code outside tasks runs on every execution" in stdout
                weather = value
        # the tour's claims: the run finished by itself; running the cell again replays it
        assert weather.status == "SUCCESS" and weather.output == {"summary": "Paris: 21 °C"}
        started = time.monotonic()
        again, stdout = run_cell(ip, cells[tour])
        assert again.id == weather.id and again.status == "SUCCESS"
        assert ip.user_ns["calls"] == 1 and time.monotonic() - started < 1
        assert "code outside tasks runs on every execution" in stdout
        assert all(task["replayed"] for task in again.tasks)
        # the library block ran its job to the end, twice
        assert ip.user_ns["run"].output == {"title": "Issue 42"}
    finally:
        client = ip.user_ns.get("client")
        if isinstance(client, TriggerClient):
            client.close()


@pytest.fixture
def stand_ins(server: ScriptedServer) -> dict[str, Any]:
    """The user's own objects the ``io`` listing names, backed by real local HTTP."""
    server.script("/repos", Step(200, [{"name": "trigger_nb"}]))
    server.script("/raw", Step(200, {"ok": True}))
    server.script("/status", Step(200, {"state": "running"}), Step(200, {"state": "done"}))
    calls: dict[str, int] = {}

    def count(name: str, value: Any) -> Any:
        calls[name] = calls.get(name, 0) + 1
        return value

    def post_later(url: str, body: Any) -> None:
        def post() -> None:
            time.sleep(0.3)  # after the task has stored its callback URL and suspended
            httpx.post(url, json=body, timeout=10)

        threading.Thread(target=post, daemon=True).start()

    def risky() -> Any:
        raise RuntimeError("flaky upstream")

    return {
        "asyncio": __import__("asyncio"),
        "trigger_nb": trigger_nb,
        "api": SimpleNamespace(get_user=lambda uid, idempotency_key: count("get_user", {"id": uid, "key": idempotency_key})),
        "pd": SimpleNamespace(read_csv=lambda path: count("read_csv", {"rows": {1, 2, 3}, "path": path})),
        "path": "data.csv",
        "sync": lambda i: count("sync", i),
        "fa": lambda: count("fa", "a"),
        "fb": lambda: count("fb", "b"),
        "items": ["x", "y"],
        "work": lambda item: count("work", item.upper()),
        "fn": lambda: count("fn", 1),
        "risky": risky,
        "send_to_slack": lambda url: post_later(url, {"approved": True}),
        "register_webhook": lambda url: post_later(url, {"hook": "called"}),
        "API": server.url(""),
        "TOKEN": "s3cret-token",
        "url": server.url("/raw"),
        "status_url": server.url("/status"),
        "github_client": SimpleNamespace(get_issue=lambda number: count("get_issue", {"number": number})),
        "calls": calls,
    }


@pytest.mark.slow
def test_io_listing_runs_as_a_job_body(ip: Any, shell_client: TriggerClient, stand_ins: dict[str, Any], server: ScriptedServer) -> None:
    (listing,) = [code for kind, code in readme_blocks() if kind == "job-body"]
    ip.user_ns.update(stand_ins)
    body = listing + "return {'user': user, 'value': value, 'body': body, 'event': event['payload'], 'done': done, 'issue': issue}\n"
    run, _ = run_cell(ip, "%%job io-listing --wait --timeout 90 --out listing_run\n" + body)
    assert run.status == "SUCCESS", run.log()
    output = run.output
    assert output["value"] == "fallback" and output["body"] == {"hook": "called"}
    assert output["event"] == {"id": 7} and output["done"]["state"] == "done"
    assert output["issue"] == {"number": 42}
    calls = stand_ins["calls"]
    # every function inside a task ran once, although the body ran once per resumption
    assert run.executions >= 4
    assert all(n == 1 for name, n in calls.items() if name not in ("sync", "work")), calls
    assert calls["sync"] == 3 and calls["work"] == 2
    sent = server.seen("/repos")[0].headers
    assert sent["Authorization"] == "Bearer s3cret-token"
    assert "s3cret-token" not in run.log()
