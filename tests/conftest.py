"""Fixtures shared by the whole suite. Everything a fixture starts, it stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import ScriptedServer

import trigger_nb._client as client_module
from trigger_nb import TriggerClient
from trigger_nb.testing import MemoryStore


@pytest.fixture(autouse=True)
def _isolated_store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may touch ./.trigger_nb of the checkout: default stores go to tmp_path."""
    monkeypatch.setenv("TRIGGER_NB_DIR", str(tmp_path / "default-store"))
    for name in ("TRIGGER_NB_HOST", "TRIGGER_NB_PORT", "TRIGGER_NB_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store_dir(tmp_path: Path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def client(store_dir: str) -> Iterator[TriggerClient]:
    """A client on a fresh diskcache store in tmp_path (the real storage path)."""
    c = TriggerClient(dir=store_dir)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def mem_client() -> Iterator[TriggerClient]:
    """A client on an in-memory store, for fast engine tests."""
    c = TriggerClient(storage=MemoryStore())
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def ip() -> Any:
    """The process-wide IPython test shell (a real InteractiveShell) with trigger_nb loaded."""
    from IPython.testing import globalipapp

    globalipapp.start_ipython()  # a singleton: later calls return None
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "trigger_nb")
    return shell


@pytest.fixture
def shell_client(ip: Any, tmp_path: Path) -> Iterator[TriggerClient]:
    """A fresh default client (the one the magics use) on a store in tmp_path."""
    c = TriggerClient(dir=str(tmp_path / "shell-store"))
    client_module.set_default_client(c)
    try:
        yield c
    finally:
        current = client_module._default
        client_module.set_default_client(None)
        if current is not None and current is not c:  # `%job config --dir` replaced it
            current.close()
        c.close()


@pytest.fixture
def serve(store_dir: str) -> Iterator[dict[str, Any]]:
    """`python -m trigger_nb serve` on the store: ``url``, ``token``, ``auth`` headers, ``proc``.

    Stopped by its PID afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trigger_nb", "serve", "--dir", store_dir, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            lines.append(line)
            if "Bearer" in line:
                break
        text = "".join(lines)
        url = re.search(r"listening on (http://\S+)", text)
        token = re.search(r"Bearer (\S+)", text)
        assert url and token, text
        auth = {"Authorization": f"Bearer {token.group(1)}"}
        yield {"url": url.group(1), "token": token.group(1), "auth": auth, "proc": proc}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A local HTTP server in this process serving scripted responses (stopped afterwards)."""
    srv = ScriptedServer()
    try:
        yield srv
    finally:
        srv.stop()


def pytest_report_header(config: pytest.Config) -> str:
    return f"trigger_nb tests; TRIGGER_NB_DIR per test; cpus={os.cpu_count()}"
