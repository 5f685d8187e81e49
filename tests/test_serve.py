"""`trigger-nb serve`: a standalone receiver process on a store (SPEC §9)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from trigger_nb import TriggerClient

pytestmark = pytest.mark.both_stores


def _callback_job(client: TriggerClient, urls: list[str]) -> None:
    @client.define_job(id="approve")
    async def approve(payload, io, ctx):  # type: ignore[no-untyped-def]
        return await io.run_task(
            "approval", lambda task: urls.append(task.callback_url), callback={"timeout_in_seconds": 60}
        )


def test_serve_stores_a_callback_while_no_kernel_runs(serve: dict[str, Any], open_client: Any) -> None:
    urls: list[str] = []
    with open_client() as first:
        _callback_job(first, urls)
        run_id = first.invoke_sync("approve").id
        assert first.get_run(run_id).status == "WAITING"
    # No client is open now. The callback goes to the standalone receiver (same path).
    path = urlsplit(urls[0]).path
    reply = httpx.post(serve["url"] + path, json={"approved": True}, timeout=10)
    assert reply.status_code == 200 and reply.json() == {"ok": True}
    assert httpx.get(serve["url"] + "/health", timeout=10).status_code == 200

    with open_client() as later:
        _callback_job(later, urls)
        run = later.invoke_sync("approve", run_id=run_id)
        assert run.result(timeout=10) == {"approved": True}
        assert len(urls) == 1  # the callback function was not called again


def test_a_running_client_picks_up_what_serve_received_within_a_second(
    serve: dict[str, Any], open_client: Any
) -> None:
    urls: list[str] = []
    # Callback URLs point at the standalone receiver (as with a tunnel or a fixed public port).
    with open_client(public_url=serve["url"]) as client:
        _callback_job(client, urls)
        run = client.invoke_sync("approve")
        assert urls[0].startswith(serve["url"] + "/callbacks/")
        sent = time.monotonic()
        assert httpx.post(urls[0], json={"ok": 1}, timeout=10).status_code == 200
        assert run.result(timeout=10) == {"ok": 1}
        took = time.monotonic() - sent
        print(f"picked up in {took:.3f} s")
        assert took < 5  # generous bound on a loaded machine; the watcher polls every 0.5 s


def test_serve_rejects_events_without_the_token(serve: dict[str, Any]) -> None:
    assert httpx.post(serve["url"] + "/events", json={"name": "x"}, timeout=10).status_code == 401


def test_serve_stops_cleanly_on_sigterm(serve: dict[str, Any]) -> None:
    proc = serve["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert "stopped" in (proc.stdout.read() if proc.stdout else "")
    with pytest.raises(httpx.ConnectError):
        httpx.get(serve["url"] + "/health", timeout=2)
    assert not Path(f"/proc/{proc.pid}").exists() or os.waitpid(proc.pid, os.WNOHANG)
