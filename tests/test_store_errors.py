"""Unusable stores and bad configuration give our errors, never raw SQLite ones (SPEC §10, §11).

Each bad store is tried where a user meets it first: opening the store (``client.storage``) and
the first invoke of a defined job. The error must be a ``StoreError`` whose message names the
path and says what to do; a read-only location is one that even root cannot write (/proc, /sys).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trigger_nb import ConfigError, StoreError, TriggerClient

# -- helpers -------------------------------------------------------------------------------

REMEDY = "TRIGGER_NB_DIR"  # every store message says where to point the store instead


def open_storage(directory: str) -> None:
    client = TriggerClient(dir=directory)
    try:
        client.storage  # noqa: B018 - opening is the point
    finally:
        client.close()


def first_invoke(directory: str) -> None:
    client = TriggerClient(dir=directory)
    try:

        @client.define_job(id="probe")
        async def probe(payload: Any, io: Any, ctx: Any) -> Any:
            return await io.run_task("t", lambda: 1)

        client.invoke_sync("probe", {})
    finally:
        client.close()


OPENERS: dict[str, Callable[[str], None]] = {"storage": open_storage, "invoke": first_invoke}


def expect_store_error(opener: Callable[[str], None], directory: str | Path) -> StoreError:
    with pytest.raises(StoreError) as caught:
        opener(str(directory))
    error = caught.value
    message = str(error)
    assert os.path.abspath(str(directory)) in message or str(directory) in message
    assert REMEDY in message
    assert not isinstance(error, sqlite3.Error)
    return error


# -- bad store locations ----------------------------------------------------------------------


@pytest.mark.parametrize("how", sorted(OPENERS))
def test_store_path_that_is_a_regular_file(tmp_path: Path, how: str) -> None:
    path = tmp_path / "not-a-dir"
    path.write_text("I am a file")

    error = expect_store_error(OPENERS[how], path)

    assert "not a directory" in str(error)
    assert path.read_text() == "I am a file"  # left untouched


@pytest.mark.parametrize("how", sorted(OPENERS))
def test_store_path_under_a_regular_file(tmp_path: Path, how: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("file")

    expect_store_error(OPENERS[how], blocker / "store")

    assert blocker.read_text() == "file"


@pytest.mark.parametrize("how", sorted(OPENERS))
def test_directory_with_a_garbage_cache_db(tmp_path: Path, how: str) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "cache.db").write_bytes(b"\x13\x37 definitely not sqlite \x00\xff" * 512)

    error = expect_store_error(OPENERS[how], store)

    message = str(error)
    assert "corrupt" in message
    assert "Move the directory aside" in message


def test_store_corrupted_inside_the_database_after_use(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with TriggerClient(dir=str(store)) as client:

        @client.define_job(id="fill")
        async def fill(payload: Any, io: Any, ctx: Any) -> Any:
            for i in range(40):
                await io.run_task(f"t-{i}", lambda: "x" * 400)

        client.invoke_sync("fill", {})
    db = store / "cache.db"
    size = db.stat().st_size
    assert size > 8192
    with open(db, "r+b") as fh:  # keep the SQLite header, destroy the pages after it
        fh.seek(4096)
        fh.write(b"\xde\xad\xbe\xef" * ((size - 4096) // 4))

    with pytest.raises(StoreError, match="corrupt") as caught:
        with TriggerClient(dir=str(store)) as client:
            client.runs()

    assert str(store) in str(caught.value)


@pytest.mark.parametrize(
    "directory",
    ["/proc/trigger_nb_store", "/proc", "/sys/trigger_nb_store", "/proc/self/trigger_nb"],
)
@pytest.mark.parametrize("how", sorted(OPENERS))
def test_location_nobody_can_write(directory: str, how: str) -> None:
    if not os.path.isdir("/proc/self") or not os.path.isdir("/sys"):
        pytest.skip("needs Linux /proc and /sys")

    expect_store_error(OPENERS[how], directory)


# -- configuration ----------------------------------------------------------------------------


def test_non_numeric_port_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRIGGER_NB_PORT", "abc")

    with pytest.raises(ConfigError) as caught:
        TriggerClient(dir=str(tmp_path / "store"))

    assert "TRIGGER_NB_PORT" in str(caught.value)
    assert "'abc'" in str(caught.value)
    assert not (tmp_path / "store").exists()  # nothing was created


@pytest.mark.parametrize("bad", [5, 1.5, b"bytes-path", "", "a\0b", ["x"]], ids=repr)
def test_a_store_dir_that_is_no_path_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="dir"):
        TriggerClient(dir=bad)


def test_a_pathlike_store_dir_is_accepted(tmp_path: Path) -> None:
    with TriggerClient(dir=tmp_path / "p") as client:  # type: ignore[arg-type]
        assert client.config.dir == str(tmp_path / "p")


# -- a private store (SPEC §10) -------------------------------------------------------------

#: Opens a store under umask 0 (the worst case), stores a big pickled output (a value file of
#: its own) and a callback secret, and leaves the WAL in place. argv: STORE.
PRIVATE_STORE_SCRIPT = r"""
import os, sys
os.umask(0)
from trigger_nb import TriggerClient
from trigger_nb._store import open_store

store = open_store(sys.argv[1])
store.put("run/r", {"id": "r", "secret": "s3cret"})
store.put_blob("blob/r/k", os.urandom(200_000))
store.put("t/big", "x" * 200_000)
assert store.get("run/r")["secret"] == "s3cret"
print("ok")
"""


def _modes(root: Path) -> dict[str, int]:
    modes = {".": os.stat(root).st_mode & 0o777}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(directory, name)
            modes[str(full.relative_to(root))] = os.stat(full).st_mode & 0o777
    return modes


def test_the_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    import subprocess
    import sys

    store = tmp_path / "private"
    done = subprocess.run(
        [sys.executable, "-c", PRIVATE_STORE_SCRIPT, str(store)], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr
    modes = _modes(store)
    assert modes["."] == 0o700
    assert modes["cache.db"] == 0o600
    value_files = [name for name in modes if name.endswith(".val")]
    assert len(value_files) >= 2  # the blob and the big text live in files of their own
    for name, mode in modes.items():
        is_dir = (store / name).is_dir()
        assert mode == (0o700 if is_dir else 0o600), (name, oct(mode))


def test_a_store_made_before_is_tightened_and_its_wal_is_private(tmp_path: Path) -> None:
    store = tmp_path / "old"
    store.mkdir(mode=0o755)
    os.chmod(store, 0o755)
    old = umask_client(store)
    os.chmod(store / "cache.db", 0o644)
    old.close()
    client = TriggerClient(dir=str(store))
    try:

        @client.define_job(id="w")
        async def w(payload: Any, io: Any, ctx: Any) -> Any:
            return await io.run_task("t", lambda: 1)

        client.invoke_sync("w")
        modes = _modes(store)
        assert modes["."] == 0o700
        assert {name: mode for name, mode in modes.items() if name.startswith("cache.db")} == {
            name: 0o600 for name in ("cache.db", "cache.db-wal", "cache.db-shm")
        }
    finally:
        client.close()


def test_a_directory_holding_other_things_keeps_its_mode_but_the_store_files_are_private(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("mine")
    os.chmod(shared, 0o755)
    client = umask_client(shared)
    client.close()
    assert os.stat(shared).st_mode & 0o777 == 0o755
    assert os.stat(shared / "cache.db").st_mode & 0o777 == 0o600


def umask_client(directory: Path) -> Any:
    """A client whose store was opened under umask 0 (restored at once)."""
    previous = os.umask(0)
    try:
        client = TriggerClient(dir=str(directory))
        client.storage.put("probe/x", {"x": 1})
    finally:
        os.umask(previous)
    return client


#: Fills the store on a 1 MiB tmpfs until it is full; prints the error. argv: STORE.
FILL_SCRIPT = r"""
import sys
from trigger_nb import StoreError
from trigger_nb._store import open_store

store = open_store(sys.argv[1])
try:
    for i in range(10_000):
        store.put(f"k/{i}", {"x": "y" * 5000, "i": i})
except StoreError as exc:
    print("StoreError:", exc)
"""


def test_a_full_disk_says_so_and_to_free_space(tmp_path: Path) -> None:
    """A real full disk: a 1 MiB tmpfs mounted in a user+mount namespace (skipped where
    unprivileged namespaces are not allowed)."""
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    mount = tmp_path / "tiny"
    mount.mkdir()
    shell = 'mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" -c "$3" "$1/store"'
    done = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", shell, "sh", str(mount), sys.executable, FILL_SCRIPT],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    if "mount" in done.stderr or "unshare" in done.stderr:
        pytest.skip(f"no private tmpfs here: {done.stderr.strip()}")
    message = done.stdout
    assert message.startswith("StoreError:"), (done.stdout, done.stderr)
    assert "is full" in message and "Free some space" in message
    assert "writable directory" not in message
