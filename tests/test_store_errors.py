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
