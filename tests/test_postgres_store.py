"""What only the PostgreSQL store has: URLs and their errors, the versioned schema, the prefix
index, pooled connections that survive a server dropping them, LISTEN/NOTIFY wake-ups that
survive a dropped listener, and the ways to point a client, a magic and the CLI at a database.

The behaviour shared with diskcache (engine, events, schedules, serve, leases, transactions) is
tested by the ``both_stores`` modules on both stores.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _support import poll
from IPython.utils.capture import capture_output

import trigger_nb._client as client_module
from trigger_nb import ConfigError, StoreError, TriggerClient
from trigger_nb._config import Config, mask_url
from trigger_nb._store import open_store
from trigger_nb._store._postgres import (
    MIGRATION_TABLE,
    SCHEMA_VERSION,
    TABLE,
    PostgresStore,
    upper_bound,
)


def admin(pg_server: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(pg_server.url, autocommit=True)


# -- URLs and bad input ------------------------------------------------------------------------


def test_mask_url_hides_passwords_only() -> None:
    assert mask_url("postgresql://ann:s3cr%40t@db:5432/tn") == "postgresql://ann:***@db:5432/tn"
    assert mask_url("postgresql://ann@db/tn?password=x&sslmode=require") == (
        "postgresql://ann@db/tn?password=***&sslmode=require"
    )
    assert mask_url("postgres://db/tn") == "postgres://db/tn"


def test_config_store_url_wins_over_dir_unless_a_dir_is_given() -> None:
    env = {"TRIGGER_NB_DIR": "/tmp/d", "TRIGGER_NB_STORE": "postgresql://u:pw@h/db"}
    assert Config.from_env(env).store == "postgresql://u:pw@h/db"
    assert Config.from_env(env).location == "postgresql://u:***@h/db"
    assert Config.from_env(env, dir="/tmp/other").store is None
    assert Config.from_env(env, store="postgres://h/x").store == "postgres://h/x"
    with pytest.raises(ConfigError, match="postgresql://"):
        Config.from_env({}, store="mysql://u:pw@h/db")
    with pytest.raises(ConfigError) as info:
        Config.from_env({"TRIGGER_NB_STORE": "/some/dir?password=hunter2"})
    assert "hunter2" not in str(info.value)


def test_an_unreachable_server_is_a_store_error_with_the_masked_url_and_a_remedy() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    url = f"postgresql://ann:hunter2@127.0.0.1:{port}/tn"
    with pytest.raises(StoreError) as info:
        TriggerClient(store=url).storage  # noqa: B018
    message = str(info.value)
    assert "hunter2" not in message and f"ann:***@127.0.0.1:{port}/tn" in message
    assert "Cannot reach" in message and "server runs" in message


def test_a_wrong_password_is_a_store_error_saying_so(pg_server: Any) -> None:
    url = pg_server.url_for("postgres", "not-the-password", "postgres")
    with pytest.raises(StoreError) as info:
        open_store(url)
    message = str(info.value)
    assert "not-the-password" not in message and "postgres:***@" in message
    assert "password" in message and "PGPASSWORD" in message


def test_a_missing_database_is_a_store_error_saying_to_create_it(pg_server: Any) -> None:
    with pytest.raises(StoreError, match="does not exist.*createdb"):
        open_store(pg_server.url_for("postgres", pg_server.password, "no_such_db"))


@pytest.fixture
def limited_user(pg_server: Any, pg_url: str) -> tuple[str, str]:
    """A login role with no rights on the test's schema: (its URL for that schema, schema)."""
    schema = pg_url.rsplit("%3D", 1)[1]
    role = f"limited_{schema}"
    with admin(pg_server) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    url = pg_server.url_for(role, "pw", "postgres") + f"?options=-csearch_path%3D{schema}"
    yield url, role
    with admin(pg_server) as conn:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_a_user_without_rights_gets_a_store_error_naming_the_rights(
    limited_user: tuple[str, str],
) -> None:
    url, _ = limited_user
    with pytest.raises(StoreError) as info:
        open_store(url)
    message = str(info.value)
    assert "lacks the rights" in message and "CREATE on the schema" in message
    assert ":***@" in message and ":pw@" not in message


def test_a_user_with_the_documented_rights_uses_a_store_created_by_the_owner(
    pg_server: Any, pg_url: str, limited_user: tuple[str, str]
) -> None:
    url, role = limited_user
    schema = pg_url.rsplit("%3D", 1)[1]
    open_store(pg_url).close()  # the owner's first use creates the tables
    with admin(pg_server) as conn:  # the grants the README lists for everyday use
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.{TABLE} TO {role}")
        conn.execute(f"GRANT SELECT ON {schema}.{MIGRATION_TABLE} TO {role}")
    with TriggerClient(store=url) as client:

        @client.define_job(id="j")
        async def job(payload: Any, io: Any, ctx: Any) -> Any:
            return await io.run_task("t", lambda: 7)

        assert client.invoke_sync("j").result(timeout=10) == 7


# -- schema, layout, index -----------------------------------------------------------------------


def test_the_schema_is_created_once_and_versioned(pg_server: Any, pg_url: str) -> None:
    schema = pg_url.rsplit("%3D", 1)[1]
    stores = [open_store(pg_url) for _ in range(3)]
    with admin(pg_server) as conn:
        rows = conn.execute(f"SELECT version FROM {schema}.{MIGRATION_TABLE}").fetchall()
        assert rows == [(SCHEMA_VERSION,)]
        conn.execute(f"INSERT INTO {schema}.{MIGRATION_TABLE} (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    for store in stores:
        store.close()
    with pytest.raises(StoreError, match="newer than this trigger_nb knows.*upgrade"):
        open_store(pg_url)


def test_two_schemas_are_two_independent_stores(pg_url: str, pg_server: Any) -> None:
    with admin(pg_server) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS team_b")
    other = pg_server.url + "?options=-csearch_path%3Dteam_b"
    try:
        first, second = open_store(pg_url), open_store(other)
        first.put("run/x", {"team": "a"})
        assert second.get("run/x") is None and first.channel != second.channel
        first.close()
        second.close()
    finally:
        with admin(pg_server) as conn:
            conn.execute("DROP SCHEMA team_b CASCADE")


def test_records_are_the_engines_json_text_and_blobs_bytea(pg_server: Any, pg_url: str) -> None:
    schema = pg_url.rsplit("%3D", 1)[1]
    store = open_store(pg_url)
    store.put("task/r/k", {"n": 2**70, "s": "é\x00"})  # exact big ints; NUL escaped in JSON
    store.put_blob("blob/r/k", b"\x00\xff" * 10)
    assert store.get("task/r/k") == {"n": 2**70, "s": "é\x00"}
    with admin(pg_server) as conn:
        rows = dict(conn.execute(f"SELECT key, coalesce(value, encode(blob, 'hex')) FROM {schema}.{TABLE}").fetchall())
    assert json.loads(rows["task/r/k"]) == {"n": 2**70, "s": "é\x00"}
    assert rows["blob/r/k"] == "00ff" * 10
    store.put("blob/r/k", {"now": "a record"})  # a key changes kind cleanly
    assert store.get_blob("blob/r/k") is None and store.get("blob/r/k") == {"now": "a record"}
    store.close()


def test_blob_chunks_are_streamed_with_copy_replacing_any_record_and_rolled_back_with_a_transaction(
    pg_url: str,
) -> None:
    store = open_store(pg_url)
    key = "blob/r/tab\there back\\slash new\nline é 漢"  # COPY's text format escapes these
    chunks = [bytes(range(256)) * 5, b"", b"\\x00\t\n" * 3]
    store.put(key, {"was": "a record"})
    store.put_blob_chunks(key, iter(chunks))
    assert store.get_blob(key) == b"".join(chunks) and store.get(key) is None
    assert store.keys("blob/r/") == [key]
    with pytest.raises(RuntimeError), store.transaction():
        store.put_blob_chunks(key, iter([b"never"]))
        raise RuntimeError("rolled back")
    assert store.get_blob(key) == b"".join(chunks)
    store.put_blob_chunks(key, iter([]))  # an empty blob is a blob
    assert store.get_blob(key) == b""
    store.close()


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("task/r1/", "task/r10"), ("a", "b"), ("", None), ("x\U0010ffff", "y"), ("\ud7ff", "\ue000")],
)
def test_upper_bound_of_a_prefix(prefix: str, expected: str | None) -> None:
    assert upper_bound(prefix) == expected


def test_scan_is_one_index_range_scan(pg_server: Any, pg_url: str) -> None:
    schema = pg_url.rsplit("%3D", 1)[1]
    store = open_store(pg_url)
    with store.transaction():
        for run in range(200):
            for task in range(5):
                store.put(f"task/run{run}/{task}", {"t": task})
    assert [k for k, _ in store.scan("task/run1/")] == [f"task/run1/{t}" for t in range(5)]
    with admin(pg_server) as conn:
        conn.execute(f"ANALYZE {schema}.{TABLE}")
        conn.execute("SET enable_seqscan = off")  # what the planner can do, whatever the size
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f"EXPLAIN SELECT key, value FROM {schema}.{TABLE} WHERE key >= %s AND key < %s",
                ("task/run1/", upper_bound("task/run1/")),
            ).fetchall()
        )
    # The range is an index condition on the primary key (its "C" collation makes that valid).
    assert f"on {TABLE}_pkey" in plan and "Index Cond: ((key >= 'task/run1/'" in plan, plan
    store.close()


# -- connections that drop -------------------------------------------------------------------------


def terminate(pg_server: Any, application_name: str) -> int:
    with admin(pg_server) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return len(rows)


def test_pooled_connections_dropped_by_the_server_are_replaced(pg_server: Any, pg_url: str) -> None:
    store = open_store(pg_url)
    store.put("k", {"v": 1})
    assert terminate(pg_server, "trigger_nb") >= 1  # e.g. a server restart or an idle timeout
    assert store.get("k") == {"v": 1}  # retried once on a fresh connection
    terminate(pg_server, "trigger_nb")
    with store.transaction():  # a transaction starts on a fresh connection too
        store.put("k", {"v": 2})
    assert store.get("k") == {"v": 2}
    store.close()


def test_a_dropped_listener_reconnects_and_rechecks_so_no_wake_up_is_lost(
    pg_server: Any, pg_url: str
) -> None:
    store = open_store(pg_url)
    sender = open_store(pg_url)
    seen: list[str | None] = []
    store.subscribe(seen.append)
    poll(lambda: None in seen)  # connected: the first re-check
    sender.notify("wake")
    poll(lambda: "wake" in seen)

    assert isinstance(store, PostgresStore) and store.listener is not None
    before = store.listener.connections
    seen.clear()
    with admin(pg_server) as conn:
        assert conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = %s AND application_name = %s",
            (store.listener.backend_pid, "trigger_nb listener"),
        ).fetchone() == (True,)
    sender.notify("start")  # may be sent while nobody listens: PostgreSQL drops it then
    poll(lambda: store.listener is not None and store.listener.connections == before + 1)
    poll(lambda: None in seen)  # ... so the reconnection says "re-check everything"
    sender.notify("event")
    poll(lambda: "event" in seen)
    store.close()
    sender.close()


def test_notices_are_sent_when_the_transaction_commits_and_never_on_rollback(pg_url: str) -> None:
    store, sender = open_store(pg_url), open_store(pg_url)
    seen: list[str | None] = []
    store.subscribe(seen.append)
    poll(lambda: None in seen)
    with pytest.raises(RuntimeError):
        with sender.transaction():
            sender.notify("rolled-back")
            raise RuntimeError
    with sender.transaction():
        sender.notify("committed")
        time.sleep(0.2)
        assert "committed" not in seen
    poll(lambda: "committed" in seen)
    assert "rolled-back" not in seen
    store.close()
    sender.close()


def test_close_stops_the_listener_thread_at_once(pg_url: str) -> None:
    store = open_store(pg_url)
    store.subscribe(lambda topic: None)
    poll(lambda: store.listener is not None and store.listener.connections == 1)
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started < 2
    assert not any(t.name == "trigger_nb-listen" and t.is_alive() for t in threading.enumerate())


def test_a_client_on_postgres_polls_nothing(pg_url: str) -> None:
    """With LISTEN/NOTIFY the runner's and the scheduler's polling loops are not started."""
    statements: list[str] = []
    with TriggerClient(store=pg_url) as client:

        @client.define_job(id="j")
        async def job(payload: Any, io: Any, ctx: Any) -> Any:
            return 1

        client.invoke_sync("j")
        store = client.storage
        assert isinstance(store, PostgresStore)
        poll(lambda: store.listener is not None and store.listener.connections == 1)
        time.sleep(0.3)  # the first re-check after connecting is done
        real_call = store._call

        def counting(fn: Any) -> Any:
            statements.append("call")
            return real_call(fn)

        store._call = counting  # type: ignore[method-assign]
        time.sleep(1.5)  # three diskcache polling periods
        assert statements == []


# -- pointing clients, magics and the CLI at a database ------------------------------------------


def test_trigger_nb_store_env_wins_over_trigger_nb_dir(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRIGGER_NB_DIR", str(tmp_path / "dir"))
    monkeypatch.setenv("TRIGGER_NB_STORE", pg_url)
    with TriggerClient() as client:
        assert isinstance(client.storage, PostgresStore)
        assert client.storage.location == mask_url(pg_url)
    assert not (tmp_path / "dir").exists()


def test_job_config_store_switches_the_notebook_to_the_database(
    pg_url: str, ip: Any, shell_client: TriggerClient  # pg_url first: its schema goes last
) -> None:
    with capture_output() as out:
        ip.run_line_magic("job", f"config --store {pg_url}")
    assert f"store: {mask_url(pg_url)}" in out.stdout and ":***@" in out.stdout
    client = client_module.default_client()
    assert client is not shell_client and isinstance(client.storage, PostgresStore)
    with capture_output() as out:
        result = ip.run_cell("%%job hello\nreturn await io.run_task('t', lambda: 41) + 1")
    assert result.error_in_exec is None, out.stdout
    with TriggerClient(store=pg_url) as other:
        assert [run.output for run in other.runs(job_id="hello")] == [42]
    wrong = pg_url.replace(pg_server_password(pg_url), "wrong")
    with capture_output():
        failed = ip.run_cell(f"%job config --store {wrong}")
    assert isinstance(failed.error_in_exec, StoreError) and "wrong" not in str(failed.error_in_exec)
    assert client_module.default_client() is client  # the notebook stays on the working store


def pg_server_password(url: str) -> str:
    return url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


def test_cli_commands_take_store(pg_url: str, tmp_path: Path) -> None:
    with TriggerClient(store=pg_url) as client:

        @client.define_job(id="cli-job")
        async def job(payload: Any, io: Any, ctx: Any) -> Any:
            return await io.run_task("t", lambda: "ok")

        run = client.invoke_sync("cli-job")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_NB_")}
    env["TRIGGER_NB_DIR"] = str(tmp_path / "elsewhere")
    for args in (["runs", "--store", pg_url], ["show", run.id, "--store", pg_url]):
        done = subprocess.run(
            [sys.executable, "-m", "trigger_nb", *args], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert run.id in done.stdout or "cli-job" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "trigger_nb", "runs", "--store", pg_url.replace("@", "x@", 1)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert bad.returncode == 1 and "StoreError" in bad.stderr and pg_server_password(pg_url) not in bad.stderr
