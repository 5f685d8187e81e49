"""An execution's task records: stored text until reached (``trigger_nb._engine._records``)."""

from __future__ import annotations

import json

import pytest

from trigger_nb import StoreError
from trigger_nb._engine._records import TaskRecords


def _text(key: str, status: str, seq: float) -> str:
    return json.dumps({"idempotency_key": key, "status": status, "seq": seq})


def _records(**texts: str) -> TaskRecords:
    return TaskRecords(dict(texts), lambda key, exc: StoreError(f"bad {key}: {exc}"))


def test_a_completed_record_is_decoded_on_each_use_and_not_kept() -> None:
    records = _records(a=_text("a", "COMPLETED", 1), w=_text("w", "WAITING", 2))
    first, second = records.get("a"), records.get("a")
    assert first == second and first is not second  # decoded, used, dropped
    waiting = records.get("w")
    assert waiting is records.get("w")  # may change: kept decoded
    assert records.get("missing") is None


def test_seq_numbers_continue_after_the_stored_ones_and_first_writes_are_known() -> None:
    records = _records(a=_text("a", "COMPLETED", 1), b=_text("b", "COMPLETED", 7.00002))
    assert records.new_seq("c") == 8.00002  # max + 1, as before (attempt entries are fractional)
    records["c"] = {"idempotency_key": "c", "status": "RUNNING", "seq": 8}
    assert records.first_write("c") is True and records.first_write("c") is False
    assert records.first_write("a") is False
    assert sorted(r["idempotency_key"] for r in records.all()) == ["a", "b", "c"]


def test_an_undecodable_record_raises_the_store_error_and_remembers_it() -> None:
    records = _records(bad='{"status": Infinity}', ok=_text("ok", "COMPLETED", 1))
    assert records.get("ok") is not None
    with pytest.raises(StoreError, match="bad bad"):
        records.get("bad")
    assert isinstance(records.corrupt, StoreError)
