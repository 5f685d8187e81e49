"""The sync-callback hand-off (``trigger_nb._engine._threads``, SPEC §4.6, §13)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from typing import Any

import pytest

from trigger_nb._engine import _threads
from trigger_nb._engine._threads import GRACE, run_sync_callback

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("test_threads_var", default="unset")


def test_a_fast_function_runs_in_a_worker_thread_and_returns_its_value() -> None:
    async def main() -> tuple[str, Any]:
        return threading.current_thread().name, await run_sync_callback(
            lambda a, b: (threading.current_thread().name, a + b), 2, 3
        )

    loop_thread, (worker_thread, total) = asyncio.run(main())
    assert worker_thread != loop_thread and worker_thread.startswith("trigger_nb-sync")
    assert total == 5


def test_the_callers_context_is_copied_into_the_worker() -> None:
    async def main() -> str:
        VAR.set("from the loop")
        return await run_sync_callback(VAR.get)

    assert asyncio.run(main()) == "from the loop"


@pytest.mark.parametrize("slow", [False, True])
def test_exceptions_reach_the_awaiting_coroutine(slow: bool) -> None:
    def fail() -> None:
        if slow:
            time.sleep(GRACE * 20)
        raise KeyError("boom")

    async def main() -> None:
        await run_sync_callback(fail)

    with pytest.raises(KeyError, match="boom"):
        asyncio.run(main())


def test_a_slow_function_does_not_hold_the_loop() -> None:
    """While a sync function blocks, the loop keeps running its other callbacks; the loop is
    held at most GRACE for it."""
    release = threading.Event()
    ticks: list[float] = []

    def blocked() -> str:
        release.wait(5)
        return "released"

    async def ticker() -> None:
        while not release.is_set():
            ticks.append(time.monotonic())
            if len(ticks) >= 5:
                release.set()
            await asyncio.sleep(0.01)

    async def main() -> str:
        tick = asyncio.create_task(ticker())
        value = await run_sync_callback(blocked)
        await tick
        return value

    assert asyncio.run(main()) == "released"
    assert len(ticks) >= 5  # the ticker ran while `blocked` held its worker thread


def test_concurrent_calls_run_in_parallel_threads() -> None:
    """gather() of blocking sync functions: each gets its own worker (as with to_thread)."""
    barrier = threading.Barrier(3, timeout=5)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(run_sync_callback(lambda i=i: barrier.wait() * 0 + i) for i in range(3))))

    assert asyncio.run(main()) == [0, 1, 2]  # a Barrier(3) only passes if all three run at once


def test_a_function_that_overran_is_not_waited_for_until_it_is_fast_again() -> None:
    delay = [GRACE * 20]

    def sometimes_slow() -> None:
        time.sleep(delay[0])

    async def main() -> None:
        await run_sync_callback(sometimes_slow)
        assert sometimes_slow.__code__ in _threads._SLOW
        delay[0] = 0
        await run_sync_callback(sometimes_slow)  # not waited for: goes the loop's way, is fast

    asyncio.run(main())
    assert sometimes_slow.__code__ not in _threads._SLOW


def test_a_canceled_caller_does_not_break_the_worker() -> None:
    release = threading.Event()

    async def main() -> Any:
        task = asyncio.create_task(run_sync_callback(lambda: release.wait(5)))
        await asyncio.sleep(GRACE * 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await asyncio.sleep(0.05)  # the worker resolves a canceled future: must be a no-op
        return await run_sync_callback(lambda: "next")

    assert asyncio.run(main()) == "next"


def _thread_names(fn: Any, calls: int) -> tuple[str, list[str]]:
    """The loop's thread name and the thread each of ``calls`` calls of ``fn`` ran in."""

    async def main() -> tuple[str, list[str]]:
        return threading.current_thread().name, [await run_sync_callback(fn) for _ in range(calls)]

    return asyncio.run(main())


def test_a_function_fast_on_its_first_calls_then_runs_inline_on_the_loop_thread() -> None:
    # A worker call can overrun INLINE_LIMIT on a busy machine (that resets the streak), so
    # allow some extra calls before it qualifies.
    loop_thread, threads = _thread_names(lambda: threading.current_thread().name, 40)
    assert all(name.startswith("trigger_nb-sync") for name in threads[: _threads.INLINE_AFTER])
    first_inline = threads.index(loop_thread)
    assert set(threads[first_inline:]) == {loop_thread}  # once inline, it stays inline


def test_a_slow_function_is_never_inlined() -> None:
    def slow() -> str:
        time.sleep(_threads.INLINE_LIMIT * 4)
        return threading.current_thread().name

    loop_thread, threads = _thread_names(slow, _threads.INLINE_AFTER + 2)
    assert loop_thread not in threads


def test_builtins_and_partials_are_never_inlined() -> None:
    """They have no code object of their own: one fast partial must not vouch for another."""
    import functools

    probe = functools.partial(lambda: threading.current_thread().name)
    loop_thread, threads = _thread_names(probe, _threads.INLINE_AFTER + 2)
    assert loop_thread not in threads


def test_an_inlined_function_that_runs_over_the_grace_goes_back_to_the_workers_for_good() -> None:
    delay = [0.0]

    def sometimes_slow() -> str:
        if delay[0]:
            time.sleep(delay[0])
        return threading.current_thread().name

    async def main() -> tuple[str, str, list[str]]:
        loop_thread = threading.current_thread().name
        for _ in range(40):  # until it qualifies (see the test above)
            if await run_sync_callback(sometimes_slow) == loop_thread:
                break
        delay[0] = GRACE * 5
        overran = await run_sync_callback(sometimes_slow)  # inline: held the loop this once
        delay[0] = 0.0
        after = [await run_sync_callback(sometimes_slow) for _ in range(_threads.INLINE_AFTER + 1)]
        return threading.current_thread().name, overran, after

    loop_thread, overran, after = asyncio.run(main())
    assert overran == loop_thread
    assert loop_thread not in after  # fast again, but never inlined again
    assert sometimes_slow.__code__ in _threads._NEVER_INLINE


def test_inline_calls_keep_context_copies_and_raise_to_the_caller() -> None:
    def set_and_read(value: str) -> tuple[str, str]:
        VAR.set(value)
        if value == "boom":
            raise KeyError("boom")
        return threading.current_thread().name, VAR.get()

    async def main() -> tuple[str, str]:
        loop_thread = threading.current_thread().name
        VAR.set("caller")
        for i in range(40):  # until it runs inline
            thread, seen = await run_sync_callback(set_and_read, f"call {i}")
            assert seen == f"call {i}"
            if thread == loop_thread:
                break
        else:
            raise AssertionError("never inlined")
        with pytest.raises(KeyError, match="boom"):
            await run_sync_callback(set_and_read, "boom")
        return VAR.get(), loop_thread

    after, _ = asyncio.run(main())
    assert after == "caller"  # the inline call's VAR.set stayed in its own copy of the context
