"""Fixtures shared by the whole suite. Everything a fixture starts, it stops.

Store-facing tests run against both stores: marked ``both_stores`` (a module's ``pytestmark``
or one test), every test of theirs that uses ``client`` / ``open_client`` / ``store_location``
runs twice — on a fresh diskcache directory and on a fresh schema of the session's throw-away
PostgreSQL server (``pg_server``) — with the same body.
"""

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
from _support import ScriptedServer, client_at

import trigger_nb._client as client_module
from trigger_nb import TriggerClient
from trigger_nb._config import is_store_url
from trigger_nb.testing import MemoryStore


@pytest.fixture(autouse=True)
def _isolated_store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may touch ./.trigger_nb of the checkout: default stores go to tmp_path."""
    monkeypatch.setenv("TRIGGER_NB_DIR", str(tmp_path / "default-store"))
    for name in ("TRIGGER_NB_HOST", "TRIGGER_NB_PORT", "TRIGGER_NB_PUBLIC_URL", "TRIGGER_NB_STORE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store_dir(tmp_path: Path) -> str:
    return str(tmp_path / "store")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A throw-away PostgreSQL server for the whole session (stopped by PID at the end).

    Without the server binaries the PostgreSQL variants skip, saying what to install — unless
    ``TRIGGER_NB_REQUIRE_POSTGRES=1`` (CI), where they fail instead."""
    from trigger_nb._pg_server import PostgresUnavailable, start

    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing('psycopg is not installed: pip install -e ".[test,postgres]"')
    try:
        server = start()
    except PostgresUnavailable as exc:
        _missing(str(exc))
    try:
        yield server
    finally:
        server.stop()


def _missing(reason: str) -> None:
    if os.environ.get("TRIGGER_NB_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"TRIGGER_NB_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL store tests need a server: {reason}")


@pytest.fixture
def pg_url(pg_server: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh, empty store: its own schema (via search_path) on the session's
    server, dropped afterwards."""
    import psycopg

    schema = f"t{os.getpid()}_{next(_schema_numbers)}"
    with psycopg.connect(pg_server.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{pg_server.url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


_schema_numbers = iter(range(1, 1_000_000))

#: The two stores of the behaviour suite (SPEC §10: same semantics, same tests).
STORES = ["diskcache", "postgres"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_location" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_stores"):
        metafunc.parametrize("store_location", STORES, indirect=True)


@pytest.fixture
def store_location(request: pytest.FixtureRequest, store_dir: str) -> str:
    """Where a test's store is: a diskcache directory, or (param ``"postgres"``, tests marked
    ``both_stores``) a fresh PostgreSQL store URL."""
    if getattr(request, "param", "diskcache") == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return store_dir


@pytest.fixture
def open_client(store_location: str) -> Iterator[Any]:
    """``open_client(**kwargs)``: another client on the test's store (as another process
    would open it); every one is closed afterwards."""
    opened: list[TriggerClient] = []

    def factory(**kwargs: Any) -> TriggerClient:
        c = client_at(store_location, **kwargs)
        opened.append(c)
        return c

    yield factory
    for c in opened:
        c.close()


@pytest.fixture
def client(store_location: str) -> Iterator[TriggerClient]:
    """A client on a fresh store: a diskcache directory in tmp_path (the real storage path),
    or a PostgreSQL store in modules parametrized over ``STORES``."""
    c = client_at(store_location)
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
def serve(store_location: str) -> Iterator[dict[str, Any]]:
    """`python -m trigger_nb serve` on the test's store: ``url``, ``token``, ``auth`` headers, ``proc``.

    Stopped by its PID afterwards."""
    where = ["--store" if is_store_url(store_location) else "--dir", store_location]
    proc = subprocess.Popen(
        [sys.executable, "-m", "trigger_nb", "serve", *where, "--port", "0"],
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
