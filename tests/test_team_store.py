"""Two processes that share only a PostgreSQL URL (SPEC §10, issue 11 "done when").

Each peer is a separate Python process with its own client, receiver and LISTEN connection,
defining the same job, driven by commands on its stdin. They must replay each other's tasks,
never execute one run at once (the other gets ``RunBusyError`` naming the holder), and resume
each other's waits promptly: a callback POSTed to either receiver, an event sent from either
process. Every peer is stopped by its PID at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from _support import poll

from trigger_nb import TriggerClient

#: argv: URL LOG. Prints {"ready": base_url}; then one JSON reply per command line on stdin:
#: ["invoke", run_id, sleep] | ["send", name, run_id] | ["quit"].
PEER = r"""
import json, os, sys, time
from trigger_nb import RunBusyError, TriggerClient

url, log = sys.argv[1], sys.argv[2]

def record(line):
    with open(log, "a") as fh:
        fh.write(line + "\n")

def step(name, run_id, sleep=0.0):
    def fn(task):
        record(f"start {name} {run_id} {os.getpid()}")
        time.sleep(sleep)
        record(f"end {name} {run_id} {os.getpid()}")
        return name
    return fn

client = TriggerClient(store=url)

@client.define_job(id="team")
async def team(payload, io, ctx):
    await io.run_task("work", step("work", ctx.run.id, payload["sleep"]))
    def ask(task):
        record(f"url {ctx.run.id} {task.callback_url}")
    approval = await io.run_task("approval", ask, callback={"timeout_in_seconds": 120})
    event = await io.wait_for_event(
        "go", {"name": "go", "filter": {"run": [ctx.run.id]}}, timeout_in_seconds=120
    )
    await io.run_task("done", step("done", ctx.run.id))
    return {"approval": approval, "event": event["payload"]}

print(json.dumps({"ready": client.receiver.base_url}), flush=True)
for line in sys.stdin:
    command = json.loads(line)
    if command[0] == "quit":
        break
    try:
        if command[0] == "invoke":
            run = client.invoke_sync("team", {"sleep": command[2]}, run_id=command[1])
            reply = {"status": run.status, "replayed": {t["display_key"]: t["replayed"] for t in run.tasks}}
        else:
            client.send_event_sync({"name": command[1], "payload": {"run": command[2]}})
            reply = {"sent": True}
    except RunBusyError as exc:
        reply = {"busy": exc.holder}
    print(json.dumps(reply), flush=True)
client.close()
"""


class Peer:
    def __init__(self, url: str, log: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", PEER, url, str(log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = self.read()["ready"]
        self.pid = self.process.pid

    def read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"peer {self.process.pid} exited ({self.process.poll()})"
        return json.loads(line)

    def send(self, *command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(list(command)) + "\n")
        self.process.stdin.flush()

    def ask(self, *command: Any) -> Any:
        self.send(*command)
        return self.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def peers(pg_url: str, tmp_path: Path) -> Iterator[tuple[Peer, Peer, Path]]:
    log = tmp_path / "peers.log"
    started: list[Peer] = []
    try:
        started.append(Peer(pg_url, log))
        started.append(Peer(pg_url, log))
        yield started[0], started[1], log
    finally:
        for peer in started:
            peer.stop()


def lines(log: Path, *prefix: str) -> list[list[str]]:
    if not log.exists():
        return []
    return [line.split() for line in log.read_text().splitlines() if line.split()[: len(prefix)] == list(prefix)]


def test_two_processes_sharing_only_a_url_share_runs(
    peers: tuple[Peer, Peer, Path], pg_url: str
) -> None:
    a, b, log = peers
    observer = TriggerClient(store=pg_url)  # reads the store only: starts nothing
    try:
        for run_id, (starter, other, callback_to, event_from) in {
            "r1": (a, b, b, a),  # callback through the other receiver, event from the starter
            "r2": (b, a, b, a),  # callback through the starter's receiver, event from the other
        }.items():
            # 1. The starter executes; while its slow task runs, the other gets RunBusyError.
            starter.send("invoke", run_id, 1.0)
            poll(lambda run_id=run_id: lines(log, "start", "work", run_id), timeout=20)
            busy = other.ask("invoke", run_id, 0)
            assert busy.get("busy", "").split(":")[1] == str(starter.pid), busy
            first = starter.read()
            assert first["status"] == "WAITING" and first["replayed"] == {"work": False, "approval": False}

            # 2. The callback POSTed to one receiver resumes the run (past the callback wait).
            [[_, _, url]] = lines(log, "url", run_id)
            target = callback_to.base_url + urlsplit(url).path
            sent = time.monotonic()
            assert httpx.post(target, json={"ok": run_id}, timeout=10).json() == {"ok": True}
            poll(
                lambda run_id=run_id: any(
                    t["display_key"] == "go" for t in observer.get_run(run_id).tasks
                ),
                timeout=10,
                interval=0.005,
            )
            callback_resumed = time.monotonic() - sent

            # 3. An event sent from one process resumes the event wait; the run finishes.
            sent = time.monotonic()
            assert event_from.ask("send", "go", run_id) == {"sent": True}
            poll(lambda run_id=run_id: observer.get_run(run_id).status == "SUCCESS", timeout=10, interval=0.005)
            event_resumed = time.monotonic() - sent
            print(f"{run_id}: callback resumed in {callback_resumed:.3f} s, event in {event_resumed:.3f} s")
            # SPEC: within a second. Generous here (two loaded cores); the benchmark measures it.
            assert callback_resumed < 3 and event_resumed < 3

            run = observer.get_run(run_id)
            assert run.output == {"approval": {"ok": run_id}, "event": {"run": run_id}}
            # Every task body ran exactly once, across both processes: the rest was replayed.
            assert len(lines(log, "start", "work", run_id)) == 1
            assert len(lines(log, "start", "done", run_id)) == 1
            assert len(lines(log, "url", run_id)) == 1
            # Executions never overlapped in time (one holder at a time).
            spans = sorted((h["started_at"], h["ended_at"]) for h in run.record["history"])
            assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:], strict=False)), spans
            assert run.executions >= 3
    finally:
        observer.close()
