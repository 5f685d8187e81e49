"""Fixtures shared by the whole suite. Everything a fixture starts, it stops."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def pytest_report_header(config: pytest.Config) -> str:
    return f"trigger_nb tests; TRIGGER_NB_DIR per test; cpus={os.cpu_count()}"
