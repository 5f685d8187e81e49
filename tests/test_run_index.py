"""Run indexes (SPEC §13, issue 10): store-wide questions cost what they return.

A counting store records every read the repository makes, so these tests pin *which* records
are read, never a time.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from trigger_nb import TriggerClient
from trigger_nb._engine import JobDefinition, RunStatus, new_run_record
from trigger_nb._engine._states import advance_run
from trigger_nb._store import MemoryStore, Repository


class CountingStore(MemoryStore):
    """A MemoryStore that counts reads: gets per key family, scans and key listings per prefix."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()

    def get(self, key: str) -> Any | None:
        self.reads["get " + key.split("/", 1)[0]] += 1
        return super().get(key)

    def scan(self, prefix: str, **kwargs: Any) -> list[tuple[str, Any]]:
        self.reads["scan " + prefix] += 1
        return super().scan(prefix, **kwargs)

    def keys(self, prefix: str) -> list[str]:
        self.reads["keys " + prefix] += 1
        return super().keys(prefix)


async def _body(payload: Any, io: Any, ctx: Any) -> Any:
    return payload


def _job(job_id: str) -> JobDefinition:
    return JobDefinition(id=job_id, fn=_body, name=job_id)


def _save(repo: Repository, run_id: str, job_id: str, *statuses: str, wake_at: float | None = None) -> dict[str, Any]:
    run = new_run_record(run_id, _job(job_id), {})
    repo.save_run(run)
    for status in statuses:
        advance_run(run, status)
        run["wake_at"] = wake_at if status == RunStatus.WAITING else None
        repo.save_run(run)
    return run


@pytest.fixture
def store() -> Iterator[CountingStore]:
    yield CountingStore()


def test_runs_of_a_job_read_only_that_jobs_runs(store: CountingStore) -> None:
    client = TriggerClient(storage=store)
    try:
        repo = client.repo
        for i in range(50):
            _save(repo, f"other-{i}", "other", RunStatus.EXECUTING, RunStatus.SUCCESS)
        for i in range(3):
            _save(repo, f"mine-{i}", "mine", RunStatus.EXECUTING, RunStatus.SUCCESS)
        client.runs(job_id="mine")  # the first filtered read may index an old store: not timed
        store.reads.clear()
        assert sorted(run.id for run in client.runs(job_id="mine")) == ["mine-0", "mine-1", "mine-2"]
        assert store.reads["scan run/"] == 0  # no full scan ...
        assert store.reads["get run"] == 3  # ... and exactly the 3 records returned
        assert [run.id for run in client.runs(job_id="mine", status="success")][:1]
        assert client.runs(job_id="mine", status="WAITING") == []
    finally:
        client.close()


def test_the_status_index_follows_every_transition_and_forget(store: CountingStore) -> None:
    repo = Repository(store)
    run = _save(repo, "r1", "job", RunStatus.EXECUTING, RunStatus.WAITING, wake_at=123.0)
    assert repo.waiting_runs() == [("r1", "job", 123.0)]
    run["wake_at"] = 456.0
    repo.save_run(run)  # a new wake time, same status: the index entry follows
    assert repo.waiting_runs() == [("r1", "job", 456.0)]
    advance_run(run, RunStatus.EXECUTING)
    repo.save_run(run)
    assert repo.waiting_runs() == []
    assert [r["id"] for r in repo.list_runs(status=RunStatus.EXECUTING)] == ["r1"]
    advance_run(run, RunStatus.SUCCESS)
    repo.save_run(run)
    assert repo.list_runs(status=RunStatus.EXECUTING) == []
    assert [r["id"] for r in repo.list_runs(status=RunStatus.SUCCESS, job_id="job")] == ["r1"]
    repo.forget("r1")
    assert store.keys("idx/") == []


def test_a_store_written_without_indexes_is_indexed_once(store: CountingStore) -> None:
    repo = Repository(store)
    _save(repo, "a", "job", RunStatus.EXECUTING, RunStatus.WAITING, wake_at=9.0)
    _save(repo, "b", "job", RunStatus.EXECUTING, RunStatus.SUCCESS)
    _save(repo, "c", "other")
    store.delete_prefix("idx/")  # what a store written by an older trigger_nb looks like
    store.delete("meta/run-index")
    fresh = Repository(store)
    assert fresh.waiting_runs() == [("a", "job", 9.0)]
    assert sorted(r["id"] for r in fresh.list_runs(job_id="job")) == ["a", "b"]
    assert [r["id"] for r in fresh.list_runs(status=RunStatus.QUEUED)] == ["c"]
    store.reads.clear()
    Repository(store).list_runs(job_id="other")
    assert store.reads["scan run/"] == 0  # indexed once, for good


def test_a_stale_index_entry_never_returns_a_wrong_run(store: CountingStore) -> None:
    repo = Repository(store)
    _save(repo, "done", "job", RunStatus.EXECUTING, RunStatus.SUCCESS)
    repo.list_runs(job_id="job")  # indexes exist (meta written)
    store.put("idx/status/WAITING/done", {"job_id": "job", "wake_at": 1.0})  # e.g. a crash between writes
    assert repo.list_runs(status=RunStatus.WAITING) == []
    assert [r["id"] for r in repo.list_runs(status=RunStatus.SUCCESS)] == ["done"]


def test_a_new_client_schedules_waiting_runs_from_the_index_alone(store: CountingStore) -> None:
    """A kernel restart (a new client) on a store with many finished runs: the first invoke's
    resume_due() reads the WAITING index, not every run."""
    repo = Repository(store)
    for i in range(40):
        _save(repo, f"old-{i}", "job", RunStatus.EXECUTING, RunStatus.SUCCESS)
    due = time.time() + 3600
    _save(repo, "sleeper", "job", RunStatus.EXECUTING, RunStatus.WAITING, wake_at=due)
    repo.list_runs(job_id="job")
    store.reads.clear()
    client = TriggerClient(storage=store)
    try:
        client.add_job(_job("job"))
        client.invoke_sync("job", {"n": 1})
        scheduled: Callable[[], Any] = lambda: sorted(client.runner._timers)  # noqa: E731
        deadline = time.monotonic() + 5
        while "sleeper" not in scheduled() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduled() == ["sleeper"]
        assert store.reads["scan run/"] == 0
        assert store.reads["get run"] <= 6  # the new run's own reads, none of the 40 old ones
    finally:
        client.close()


def test_executing_runs_are_found_without_an_index_entry(store: CountingStore) -> None:
    """Every execution passes through EXECUTING: it has no index entry (two writes fewer per
    execution); asking for it reads every run."""
    repo = Repository(store)
    run = _save(repo, "busy", "job", RunStatus.EXECUTING)
    assert store.keys("idx/status/") == []
    assert [r["id"] for r in repo.list_runs(status=RunStatus.EXECUTING)] == ["busy"]
    assert [r["id"] for r in repo.list_runs(status=RunStatus.EXECUTING, job_id="job")] == ["busy"]
    advance_run(run, RunStatus.SUCCESS)
    repo.save_run(run)
    assert store.keys("idx/status/") == ["idx/status/SUCCESS/busy"]


def test_an_execution_reads_its_run_record_once_per_transaction(store: CountingStore) -> None:
    """Begin and finish each read the run once: save_run is handed what they read."""
    client = TriggerClient(storage=store)
    try:
        client.add_job(_job("job"))
        run = client.invoke_sync("job", {"n": 1})
        store.reads.clear()
        client.invoke_sync("job", run_id=run.id)
        # _prepare_run, _begin, _finish: one read each (no second read inside save_run)
        assert store.reads["get run"] == 3, store.reads
    finally:
        client.close()
