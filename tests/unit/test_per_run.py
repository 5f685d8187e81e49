"""``PerRun``: one object per run id while it is in use, then forgotten
(``trigger_nb._engine._per_run``)."""

from __future__ import annotations

import asyncio

import pytest

from trigger_nb._engine._per_run import PerRun


def test_concurrent_users_share_the_object_and_the_last_one_out_drops_it() -> None:
    made: list[object] = []
    per_run: PerRun[object] = PerRun(lambda: made.append(object()) or made[-1])
    with per_run.use("run_a") as first:
        with per_run.use("run_a") as second:
            assert first is second and len(made) == 1
        assert per_run.get("run_a") is first  # still in use by the outer user
        with per_run.use("run_b") as other:
            assert other is not first and len(per_run) == 2
    assert len(per_run) == 0 and per_run.get("run_a") is None
    with per_run.use("run_a") as again:
        assert again is not first  # a new object for a new use


def test_an_exception_inside_still_releases_the_entry() -> None:
    per_run: PerRun[dict[str, int]] = PerRun(dict)
    with pytest.raises(KeyError), per_run.use("run_a"):
        raise KeyError("boom")
    assert len(per_run) == 0


def test_a_lock_is_shared_by_waiters_and_dropped_after_them() -> None:
    per_run: PerRun[asyncio.Lock] = PerRun(asyncio.Lock)
    order: list[str] = []

    async def hold(name: str) -> None:
        with per_run.use("run_a") as lock:
            async with lock:
                order.append(f"{name} in")
                await asyncio.sleep(0.01)
                order.append(f"{name} out")

    async def main() -> None:
        await asyncio.gather(hold("one"), hold("two"))

    asyncio.run(main())
    assert order == ["one in", "one out", "two in", "two out"] and len(per_run) == 0
