"""The storage layer: diskcache backend, memory backend, repository layout, leases."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import diskcache
import pytest

from trigger_nb import RunBusyError, StoreError
from trigger_nb._store import MemoryStore, Repository, open_store
from trigger_nb._store._diskcache import DiskcacheStore


@pytest.fixture(params=["disk", "memory", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "postgres":
        s = open_store(request.getfixturevalue("pg_url"))
    else:
        s = DiskcacheStore(tmp_path / "s") if request.param == "disk" else MemoryStore()
    yield s
    s.close()


def test_put_get_delete_roundtrip(store) -> None:  # type: ignore[no-untyped-def]
    store.put("run/a", {"x": [1, 2], "s": "é"})
    assert store.get("run/a") == {"x": [1, 2], "s": "é"}
    assert store.delete("run/a") is True
    assert store.delete("run/a") is False
    assert store.get("run/a") is None


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_record_holding_a_number_that_is_not_finite_is_refused_and_nothing_changes(
    store, bad: float  # type: ignore[no-untyped-def]
) -> None:
    """Every store encodes records with `_codec.encode_record`: NaN and infinities are refused
    (they are not JSON, and a record holding one could not be replayed), the old record stays."""
    store.put("run/a", {"x": 1})
    for put in (store.put, store.put_new):
        with pytest.raises(StoreError, match="not finite"):
            put("run/a", {"x": bad, "y": None})
    assert store.get("run/a") == {"x": 1}


def test_scan_returns_exactly_the_prefix_in_one_read(store) -> None:  # type: ignore[no-untyped-def]
    for i in range(5):
        store.put(f"task/r1/{i}", {"i": i})
    store.put("task/r10/x", {"i": 99})  # shares the textual prefix "task/r1" but not "task/r1/"
    store.put("task/r2/x", {"i": 100})
    found = sorted(record["i"] for _, record in store.scan("task/r1/"))
    assert found == [0, 1, 2, 3, 4]


def test_scan_reads_large_values_stored_in_files(tmp_path: Path) -> None:
    # diskcache moves values over 32 KiB to files: scan must decode those rows too.
    store = DiskcacheStore(tmp_path / "s")
    big = {"blob": "x" * 200_000}
    store.put("task/r/big", big)
    store.put("task/r/small", {"a": 1})
    assert dict(store.scan("task/r/")) == {"task/r/big": big, "task/r/small": {"a": 1}}
    store.close()


def test_put_new_stores_what_put_stores_and_replaces_an_existing_key(store) -> None:  # type: ignore[no-untyped-def]
    store.put_new("task/r/a", {"n": 1})
    assert store.get("task/r/a") == {"n": 1}
    store.put_new("task/r/a", {"n": 2})  # not new after all: replaced, as put would
    assert store.get("task/r/a") == {"n": 2}
    store.put_new("task/r/big", {"blob": "y" * 100_000})  # large: a file, as put would
    assert dict(store.scan("task/r/")) == {"task/r/a": {"n": 2}, "task/r/big": {"blob": "y" * 100_000}}


def test_put_new_writes_the_row_cache_set_writes(tmp_path: Path) -> None:
    """Pins DiskcacheStore.put_new's single INSERT against the installed diskcache: the row
    must read back through diskcache's own API and equal what Cache.set writes."""
    store = DiskcacheStore(tmp_path / "s")
    store.put_new("task/r/new", {"a": 1})
    store.put("task/r/set", {"a": 1})
    store.close()
    cache = diskcache.Cache(str(tmp_path / "s"))
    assert cache.get("task/r/new") == cache.get("task/r/set") == '{"a":1}'
    columns = "raw, expire_time, access_count, tag, size, mode, filename, value"
    rows = cache._sql(f"SELECT key, {columns} FROM Cache WHERE key LIKE 'task/r/%' ORDER BY key").fetchall()
    assert [row[1:] for row in rows[:1]] == [row[1:] for row in rows[1:]]
    assert "task/r/new" in cache and len(cache) == 2
    cache.close()


def test_put_replaces_small_and_file_backed_values_as_cache_set_does(tmp_path: Path) -> None:
    """Pins DiskcacheStore.put's in-place UPDATE: the replaced row reads back through
    diskcache, and a value that was in a file leaves no file behind."""
    store = DiskcacheStore(tmp_path / "s")
    store.put("run/a", {"v": 1})
    store.put("run/a", {"v": 2})  # small over small: the UPDATE
    store.put("run/b", {"v": "x" * 100_000})  # a file
    store.put("run/b", {"v": 3})  # small over a file: Cache.set removes the file
    store.close()
    cache = diskcache.Cache(str(tmp_path / "s"))
    assert cache.get("run/a") == '{"v":2}' and cache.get("run/b") == '{"v":3}'
    files = [name for _, _, names in os.walk(tmp_path / "s") for name in names if name.endswith(".val")]
    assert files == []
    rows = cache._sql("SELECT raw, expire_time, tag, size, mode, filename FROM Cache WHERE key LIKE 'run/%'").fetchall()
    assert rows == [(1, None, None, 0, 1, None)] * 2
    cache.close()


def test_put_over_a_row_with_an_expiry_writes_what_cache_set_writes(tmp_path: Path) -> None:
    """The in-place UPDATE only replaces rows without an expiry (it leaves the expiry index
    alone); a row some other writer gave one takes Cache.set, which clears it."""
    cache = diskcache.Cache(str(tmp_path / "s"))
    cache.set("run/a", '{"v":1}', expire=3600)
    cache.close()
    store = DiskcacheStore(tmp_path / "s")
    store.put("run/a", {"v": 2})
    assert store.get("run/a") == {"v": 2}
    store.close()
    cache = diskcache.Cache(str(tmp_path / "s"))
    assert cache._sql("SELECT expire_time, mode, filename FROM Cache WHERE key = 'run/a'").fetchall() == [
        (None, 1, None)
    ]
    cache.close()


def test_replacing_a_record_leaves_the_expiry_index_alone(tmp_path: Path) -> None:
    """Pins the UPDATE's SET: it must not name expire_time, or SQLite rewrites the expiry
    index's entry (one more page in every commit's WAL frames)."""
    store = DiskcacheStore(tmp_path / "s")
    store.put("run/a", {"v": 1})
    statements: list[str] = []
    store._cache._con.set_trace_callback(statements.append)
    store.put("run/a", {"v": 2})
    store._cache._con.set_trace_callback(None)
    assert store.get("run/a") == {"v": 2}
    update = next(s for s in statements if s.startswith("UPDATE Cache"))
    assert "expire_time =" not in update.split("WHERE")[0]
    store.close()


def test_replacing_a_record_in_place_leaves_diskcaches_settings_alone(tmp_path: Path) -> None:
    """diskcache's size trigger is replaced by one that writes Settings only when a size
    changes (one page less per commit); diskcache's count and size stay right, and a raw
    diskcache opening the store keeps the replacement."""
    store = DiskcacheStore(tmp_path / "s")
    store.put("run/a", {"v": 1})
    changes = store._cache._con.total_changes  # rows written, those of triggers too
    store.put("run/a", {"v": 2})  # in place, size 0 -> 0: no write to Settings
    assert store._cache._con.total_changes - changes == 1
    store.put("run/b", {"v": "x" * 100_000})  # a file: diskcache's size grows
    store.put("run/b", {"v": 3})  # small over a file: it shrinks again
    store.put("run/c", {"v": "y" * 100_000})
    store.close()
    cache = diskcache.Cache(str(tmp_path / "s"))
    assert len(cache) == 3
    assert cache.volume() - cache._sql("PRAGMA page_count").fetchone()[0] * cache._sql(
        "PRAGMA page_size"
    ).fetchone()[0] == sum(size for (size,) in cache._sql("SELECT size FROM Cache").fetchall()) > 100_000
    (trigger,) = cache._sql("SELECT sql FROM sqlite_master WHERE name = 'Settings_size_update'").fetchone()
    assert "WHEN NEW.size != OLD.size" in trigger
    cache.close()
    DiskcacheStore(tmp_path / "s").close()  # reopened: nothing to replace, nothing breaks


def test_bookkeeping_records_share_the_store_contract(store) -> None:  # type: ignore[no-untyped-def]
    """Markers and index entries (which the diskcache store keeps in a table of their own)
    read, write, scan, list and delete like any record, beside the others."""
    store.put_new("exec/r1", {})
    store.put("idx/status/WAITING/r1", {"job_id": "j", "wake_at": None})
    store.put("idx/status/WAITING/r1", {"job_id": "j", "wake_at": 5.0})  # replaced
    store.put("run/r1", {"id": "r1"})
    assert store.get("idx/status/WAITING/r1") == {"job_id": "j", "wake_at": 5.0}
    assert store.scan("idx/status/WAITING/") == [("idx/status/WAITING/r1", {"job_id": "j", "wake_at": 5.0})]
    assert sorted(store.keys("")) == ["exec/r1", "idx/status/WAITING/r1", "run/r1"]
    assert sorted(key for key, _ in store.scan("")) == ["exec/r1", "idx/status/WAITING/r1", "run/r1"]
    assert store.keys("i") == ["idx/status/WAITING/r1"]
    with store.transaction():
        assert store.delete("exec/r1") is True
    assert store.delete("exec/r1") is False and store.get("exec/r1") is None
    assert store.delete_prefix("idx/") == 1 and store.keys("") == ["run/r1"]


def test_bookkeeping_records_live_beside_diskcaches_table(tmp_path: Path) -> None:
    """Pins where DiskcacheStore keeps markers and index entries: not in diskcache's table
    (whose count, size and indexes they would cost a write each), and a guarded task write
    checks the fence there."""
    store = DiskcacheStore(tmp_path / "s")
    store.put_new("fence/r1", {"holder": "h", "fence": 1})
    store.put_new("wake/r1", {"at": 1.0})
    assert store.put_fenced("task/r1/k", {"v": 1}, guard_key="fence/r1", guard={"holder": "h", "fence": 1}, new=True)
    assert not store.put_fenced("task/r1/k", {"v": 2}, guard_key="fence/r1", guard={"holder": "h", "fence": 0})
    assert store.get("task/r1/k") == {"v": 1}
    with pytest.raises(ValueError, match="bookkeeping key"):
        store.put_blob("exec/r1", b"x")
    store.close()
    cache = diskcache.Cache(str(tmp_path / "s"))
    assert list(cache) == ["task/r1/k"] and len(cache) == 1
    cache.close()


def test_bookkeeping_records_of_an_earlier_version_are_moved_on_open(tmp_path: Path) -> None:
    """A store written by an earlier version had its markers, index entries and execution
    journals in diskcache's table: opening it moves them over (those in files too), once, and
    the repository finds them."""
    cache = diskcache.Cache(str(tmp_path / "s"))
    old = {
        "run/r1": '{"id":"r1","job_id":"j","status":"WAITING","wake_at":null}',
        "exec/r2": "{}",
        "fence/r2": '{"holder":"h","fence":3}',
        "wake/r1": '{"at":1.0}',
        "idx/job/j/r1": "{}",
        "idx/status/WAITING/r1": '{"job_id":"j","wake_at":null}',
        "meta/run-index": '{"version":1}',
        "cb/task_1": '{"run_id":"r1","idempotency_key":"k","job_id":"j"}',
        "hist/r1/00000001": '[["t1","ran",1]]',
        # A journal big enough for diskcache to keep it in a file of its own.
        "hist/r1/00000002": json.dumps([[f"t{i}", "replayed", 1] for i in range(5000)]),
    }
    for key, text in old.items():
        cache.set(key, text)
    cache.close()
    assert len([name for _, _, names in os.walk(tmp_path / "s") for name in names if name.endswith(".val")]) == 1
    store = DiskcacheStore(tmp_path / "s")
    repo = Repository(store)
    assert repo.load_journals("r1") == {1: [["t1", "ran", 1]], 2: [[f"t{i}", "replayed", 1] for i in range(5000)]}
    assert repo.waiting_runs() == [("r1", "j", None)]
    assert repo.pending_wakes() == ["r1"] and repo.executing_runs() == ["r2"]
    assert [run["id"] for run in repo.list_runs(job_id="j")] == ["r1"]
    assert store.get("fence/r2") == {"holder": "h", "fence": 3}
    assert repo.callback_ref("task_1") == {"run_id": "r1", "idempotency_key": "k", "job_id": "j"}
    store.close()
    cache = diskcache.Cache(str(tmp_path / "s"))
    assert sorted(cache) == ["meta/run-index", "run/r1"]  # the rest moved
    assert len(cache) == 2  # diskcache's own count followed
    cache.close()
    files = [name for _, _, names in os.walk(tmp_path / "s") for name in names if name.endswith(".val")]
    assert files == []  # the big journal's file went with it
    reopened = DiskcacheStore(tmp_path / "s")  # nothing left to move: the same records
    assert sorted(reopened.keys("")) == sorted(old)
    reopened.close()


def test_blobs_and_prefix_delete(store) -> None:  # type: ignore[no-untyped-def]
    store.put_blob("blob/r/k", b"\x00\x01" * 100_000)
    store.put("task/r/k", {"a": 1})
    assert store.get_blob("blob/r/k") == b"\x00\x01" * 100_000
    assert store.get("blob/r/k") is None  # a blob is not a record
    assert store.delete_prefix("blob/r/") == 1
    assert store.get_blob("blob/r/k") is None


def test_diskcache_store_never_evicts(tmp_path: Path) -> None:
    store = DiskcacheStore(tmp_path / "s")
    cache = diskcache.Cache(str(tmp_path / "s"))
    assert cache.eviction_policy == "none"
    cache.close()
    store.close()


@pytest.mark.both_stores
def test_transactions_are_atomic_across_processes(store_location: str) -> None:
    """Two processes increment one counter 200 times each inside (nested) transactions, and
    create a record only if it is missing: no lost update, no double creation."""
    store = open_store(store_location)
    store.put("counter", {"n": 0})
    code = (
        "import sys, time; from trigger_nb._store import open_store\n"
        "s = open_store(sys.argv[1])\n"
        "s.put(f'ready/{sys.argv[2]}', {})\n"
        "while len(s.keys('ready/')) < 2:\n"  # start together: the loops must overlap
        "    time.sleep(0.001)\n"
        "for i in range(100):\n"
        "    with s.transaction():\n"  # records that do not exist yet: no row to lock
        "        if s.get(f'once/{i}') is None:\n"
        "            time.sleep(0.002)\n"  # widen the window between the read and the write
        "            s.put(f'once/{i}', {'by': [sys.argv[2]]})\n"
        "        else:\n"
        "            s.put(f'once/{i}', {'by': s.get(f'once/{i}')['by'] + [sys.argv[2]]})\n"
        "for i in range(200):\n"
        "    with s.transaction():\n"
        "        n = s.get('counter')['n']\n"
        "        with s.transaction():\n"
        "            s.put('counter', {'n': n + 1})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, store_location, name]) for name in "ab"]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    assert store.get("counter") == {"n": 400}
    assert all(len(record["by"]) == 2 for _, record in store.scan("once/"))
    store.close()


def test_a_failed_transaction_changes_nothing(store) -> None:  # type: ignore[no-untyped-def]
    store.put("a", {"v": 1})
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.put("a", {"v": 2})
            with store.transaction():
                store.put("b", {"v": 2})
            raise RuntimeError("boom")
    if not isinstance(store, MemoryStore):  # the memory store only serialises (tests' helper)
        assert store.get("a") == {"v": 1} and store.get("b") is None
    with store.transaction():  # and the store is usable afterwards
        store.put("a", {"v": 3})
    assert store.get("a") == {"v": 3}


@pytest.mark.parametrize("case", ["file", "under-file", "corrupt", "proc"])
def test_unusable_store_gives_store_error_with_path_and_remedy(tmp_path: Path, case: str) -> None:
    if case == "file":
        target = tmp_path / "afile"
        target.write_text("x")
    elif case == "under-file":
        (tmp_path / "afile").write_text("x")
        target = tmp_path / "afile" / "store"
    elif case == "corrupt":
        target = tmp_path / "corrupt"
        target.mkdir()
        (target / "cache.db").write_bytes(b"this is not a database" * 100)
    else:
        target = Path("/proc/trigger_nb_store_test")
    with pytest.raises(StoreError) as info:
        open_store(str(target))
    message = str(info.value)
    assert str(target) in message
    assert "TRIGGER_NB_DIR" in message or "fresh" in message


def test_repository_loads_tasks_in_first_seen_order(store) -> None:  # type: ignore[no-untyped-def]
    repo = Repository(store)
    for seq, key in enumerate(["c", "a", "b"], start=1):
        repo.save_task({"id": key, "run_id": "r", "idempotency_key": key, "seq": seq})
    assert [t["id"] for t in repo.load_tasks("r")] == ["c", "a", "b"]


def test_forget_deletes_every_record_of_a_run(store) -> None:  # type: ignore[no-untyped-def]
    repo = Repository(store)
    repo.save_run({"id": "r", "job_id": "j", "status": "SUCCESS"})
    repo.save_task(
        {"id": "t", "run_id": "r", "idempotency_key": "k", "seq": 1, "callback_secret": "s"},
        index_callback=True,
    )
    store.put_blob("blob/r/k", b"x")
    repo.save_run({"id": "other", "job_id": "j", "status": "SUCCESS"})
    assert repo.forget("r") >= 4
    assert sorted(store.keys("")) == ["idx/job/j/other", "idx/status/SUCCESS/other", "run/other"]


def test_lease_busy_for_a_live_holder_free_for_a_dead_one(store) -> None:  # type: ignore[no-untyped-def]
    mine, theirs = Repository(store), Repository(store)
    mine.save_run({"id": "r", "status": "WAITING"})
    lease = mine.acquire_lease("r")
    assert lease is not None
    with pytest.raises(RunBusyError) as info:
        theirs.acquire_lease("r")
    assert info.value.holder == mine.holder
    mine.release_lease(lease)
    theirs.acquire_lease("r")  # free once released
    assert store.get("run/r")["lease"]["holder"] == theirs.holder

    # A holder on this host, kernel and PID namespace whose process is gone holds nothing,
    # even before expiry.
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host, _, _, start, machine = mine.holder.split(":")
    if not machine:
        pytest.skip("needs /proc (boot id and PID namespace)")
    dead = f"{host}:{proc.pid}:dead:{start}:{machine}"
    store.put("run/r2", {"id": "r2", "status": "EXECUTING", "lease": {"holder": dead, "expires_at": time.time() + 60}})
    mine.acquire_lease("r2")
    # The same PID alive but started at another time (reused): the holder is gone too.
    reused = f"{host}:{os.getpid()}:old:{int(start) - 1}:{machine}"
    store.put("run/r3", {"id": "r3", "status": "EXECUTING", "lease": {"holder": reused, "expires_at": time.time() + 60}})
    mine.acquire_lease("r3")


def test_a_holder_whose_pid_cannot_be_judged_is_never_taken_over_before_expiry() -> None:
    """SPEC §10: liveness never rests on a PID alone. A holder in another PID namespace (a
    container with the same hostname: its PID means nothing here), or an old-style holder id
    without the process's identity, keeps the run until its lease expires."""
    store = MemoryStore()
    mine = Repository(store)
    host = socket.gethostname()
    parts = mine.holder.split(":") + ["", ""]
    start, machine = parts[3], parts[4]
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a PID that is not visible here
    boot, _, namespace = machine.partition(".")
    holders = [
        f"{host}:{proc.pid}:old",  # an id written by an earlier version: host and PID only
        f"{host}:{proc.pid}:ctr:{start}:{boot or 'b0079d00'}.4026530000",  # another PID namespace
        f"{host}:{proc.pid}:ctr:{start}:00000000.{namespace or '1'}",  # another boot
    ]
    for n, holder in enumerate(holders):
        store.put(f"run/r{n}", {"id": f"r{n}", "status": "EXECUTING", "lease": {"holder": holder, "expires_at": time.time() + 60}})
        with pytest.raises(RunBusyError):
            mine.acquire_lease(f"r{n}")


def test_writes_are_fenced_by_the_lease_they_were_made_under() -> None:
    store = MemoryStore()
    old, new = Repository(store, lease_ttl=60), Repository(store)
    old.save_run({"id": "r", "status": "WAITING"})
    stale = old.acquire_lease("r")
    assert stale is not None
    task = {"id": "t", "run_id": "r", "idempotency_key": "k", "status": "RUNNING", "seq": 1}
    old.save_task(task, lease=stale)  # ours: written
    # The holder stalls past its expiry; another process takes the run over.
    record = store.get("run/r")
    record["lease"]["expires_at"] = time.time() - 1
    store.put("run/r", record)
    fresh = new.acquire_lease("r")
    assert fresh is not None and fresh.fence == stale.fence + 1
    new.save_task({**task, "status": "COMPLETED"}, lease=fresh)
    with pytest.raises(RunBusyError, match="lost the run's lease") as info:
        old.save_task({**task, "status": "ERRORED"}, lease=stale)
    assert info.value.holder == new.holder
    with pytest.raises(RunBusyError):
        old.update_task(task, lambda stored: True, {"status": "ERRORED"}, lease=stale)
    assert not old.renew_lease(stale)
    old.release_lease(stale)  # a lost lease is someone else's: nothing happens
    assert store.get("task/r/k")["status"] == "COMPLETED"
    assert store.get("run/r")["lease"]["holder"] == new.holder
    # Released and taken again by the same holder: still a new fence, the old one stays stale.
    new.release_lease(fresh)
    again = new.acquire_lease("r")
    assert again is not None and again.fence == fresh.fence + 1
    with pytest.raises(RunBusyError):
        new.save_task(task, lease=fresh)


def test_a_fenced_task_write_is_guarded_by_the_fence_record_not_the_run(store) -> None:  # type: ignore[no-untyped-def]
    """``fence/{run_id}`` mirrors the current lease (holder + fence) exactly while one is held;
    a task write under a lease is one guarded write that never reads the run record, and a
    write whose guard fails falls back to reading the run (and is refused if the lease is
    lost). Both backends' guarded writes are checked (diskcache: one SQL statement)."""
    repo = Repository(store)
    repo.save_run({"id": "r", "status": "WAITING"})
    lease = repo.acquire_lease("r")
    assert lease is not None
    assert store.get("fence/r") == {"holder": repo.holder, "fence": lease.fence}
    task = {"id": "t", "run_id": "r", "idempotency_key": "k", "status": "RUNNING", "seq": 1}
    reads: list[str] = []
    real_get = store.get
    store.get = lambda key: (reads.append(key), real_get(key))[1]
    try:
        repo.save_task(task, lease=lease, new=True)
        repo.save_task({**task, "status": "COMPLETED"}, lease=lease)
    finally:
        del store.get  # the instance attribute shadowed the method
    assert "run/r" not in reads
    assert store.get("task/r/k")["status"] == "COMPLETED"
    # A guard naming another fence refuses the write; the run is then read, and its lease is
    # still ours here, so the write goes through that (slower) way.
    store.put("fence/r", {"holder": repo.holder, "fence": lease.fence + 1})
    repo.save_task({**task, "status": "ERRORED"}, lease=lease)
    assert store.get("task/r/k")["status"] == "ERRORED"
    store.put("fence/r", lease.mirror())
    repo.release_lease(lease)
    assert store.get("fence/r") is None
    with pytest.raises(RunBusyError):  # no lease on the run any more: refused
        repo.save_task(task, lease=lease)
    assert store.get("task/r/k")["status"] == "ERRORED"
    assert repo.acquire_lease("r") is not None
    repo.forget("r")
    assert store.get("fence/r") is None


def test_expired_lease_is_free(store) -> None:  # type: ignore[no-untyped-def]
    lease = {"holder": "elsewhere:1:x", "expires_at": time.time() - 1}
    store.put("run/r", {"id": "r", "status": "EXECUTING", "lease": lease})
    Repository(store).acquire_lease("r")


def test_a_lease_held_elsewhere_expires_only_with_time(store) -> None:  # type: ignore[no-untyped-def]
    lease = {"holder": "another-host:1:x", "expires_at": time.time() + 60}
    store.put("run/r", {"id": "r", "status": "EXECUTING", "lease": lease})
    with pytest.raises(RunBusyError, match="another-host"):
        Repository(store).acquire_lease("r")



# -- WAL checkpoints in a thread of the store's own (_store/_checkpoints.py) -----------------
def _checkpointer_thread(store: DiskcacheStore):  # type: ignore[no-untyped-def]
    return store._checkpointer._thread


def test_the_stores_connections_leave_checkpoints_to_its_thread(tmp_path: Path) -> None:
    """Every connection the store makes (one per thread) has SQLite's automatic checkpoint off,
    and the fast path is diskcache's per-thread connection (pinned: `_Cache._con`)."""
    import threading

    store = DiskcacheStore(tmp_path / "s")
    seen = []

    def probe() -> None:
        store.put("run/x", {"t": threading.get_ident()})
        seen.append(store._cache._sql("PRAGMA wal_autocheckpoint").fetchone()[0])
        assert store._cache._con is store._cache._local.con

    probe()
    other = threading.Thread(target=probe)
    other.start()
    other.join()
    assert seen == [0, 0]
    assert _checkpointer_thread(store).is_alive()
    store.close()
    assert not _checkpointer_thread(store).is_alive()


def test_the_database_file_alone_holds_the_writes_soon_after_they_stop(tmp_path: Path) -> None:
    """The background checkpoints copy the WAL into the database: a copy of ``cache.db`` made
    without its ``-wal`` has every record within a few checkpoint intervals."""
    import shutil
    import sqlite3

    store = DiskcacheStore(tmp_path / "s")
    for i in range(2000):
        store.put_new(f"task/r/{i}", {"i": i})

    def records_in_the_database_file() -> int:
        shutil.copy(tmp_path / "s" / "cache.db", tmp_path / "copy.db")  # not the WAL
        with sqlite3.connect(tmp_path / "copy.db") as copy:
            return int(copy.execute("SELECT count(*) FROM Cache WHERE key LIKE 'task/r/%'").fetchone()[0])

    deadline = time.monotonic() + 10
    while records_in_the_database_file() < 2000:
        assert time.monotonic() < deadline, "the WAL was not checkpointed"
        time.sleep(0.05)
    store.close()


def test_a_store_dropped_without_close_stops_its_thread(tmp_path: Path) -> None:
    import gc

    store = DiskcacheStore(tmp_path / "s")
    thread = _checkpointer_thread(store)
    del store
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_a_forked_child_that_writes_checkpoints_on_its_own(tmp_path: Path) -> None:
    import multiprocessing

    store = DiskcacheStore(tmp_path / "s")
    store.put("run/parent", {"v": 1})
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_child_writes, args=(store,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert store.get("run/child") == {"v": 2}
    store.close()


def _child_writes(store: DiskcacheStore) -> None:
    store.put("run/child", {"v": 2})
    ok = store._checkpointer.pid == os.getpid() and _checkpointer_thread(store).is_alive()
    store.close()
    os._exit(0 if ok else 3)
