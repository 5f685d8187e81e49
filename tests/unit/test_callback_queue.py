"""Callback POSTs queued for the home loop and resolved a batch at a time
(``trigger_nb._engine._callback_queue``, SPEC §9, §13)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest

from trigger_nb._engine._callback_queue import Call, CallbackQueue


class ParkedHost:
    """A home loop that runs what it is given only when the test says so."""

    def __init__(self, *, closed: bool = False) -> None:
        self.scheduled: list[Callable[[], None]] = []
        self.closed = closed

    def call_soon(self, callback: Callable[[], None]) -> None:
        if self.closed:
            raise RuntimeError("Event loop is closed")
        self.scheduled.append(callback)

    def run(self) -> None:
        scheduled, self.scheduled = self.scheduled, []
        for callback in scheduled:
            callback()


class Resolver:
    """Accepts the first call per task id; records each batch it was given."""

    def __init__(self, fail: Callable[[Sequence[Call]], BaseException | None] = lambda calls: None) -> None:
        self.batches: list[list[str]] = []
        self.seen: set[str] = set()
        self.fail = fail

    def __call__(self, calls: Sequence[Call]) -> list[str]:
        self.batches.append([task_id for task_id, _, _ in calls])
        failure = self.fail(calls)
        if failure is not None:
            raise failure
        outcomes = []
        for task_id, _, _ in calls:
            outcomes.append("already" if task_id in self.seen else "accepted")
            self.seen.add(task_id)
        return outcomes


def _in_a_loop(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario`` as the receiver would: a coroutine on an event loop of its own."""
    asyncio.run(scenario())


async def _settled(*futures: asyncio.Future[str]) -> None:
    """Give the loop the turn it needs to take answers sent from another thread."""
    await asyncio.wait_for(asyncio.wait(futures), 5)


def test_calls_queued_before_the_loop_runs_are_resolved_in_one_batch() -> None:
    async def scenario() -> None:
        host, resolve = ParkedHost(), Resolver()
        queue = CallbackQueue(host, resolve)
        futures = [queue.submit(task_id, "secret", {"n": 1}) for task_id in ("a", "b", "a")]
        assert len(host.scheduled) == 1 and not any(f.done() for f in futures)  # one wake-up
        host.run()
        assert resolve.batches == [["a", "b", "a"]]
        assert [f.result() for f in futures] == ["accepted", "accepted", "already"]
        queue.submit("c", "secret", None)  # the next call schedules the next batch
        assert len(host.scheduled) == 1

    _in_a_loop(scenario)


def test_answers_from_another_thread_reach_each_loop_in_one_wake_up() -> None:
    """The home loop's thread answers a batch: the sender's loop is woken once for all of it."""
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        host, resolve = ParkedHost(), Resolver()
        queue = CallbackQueue(host, resolve)
        futures = [queue.submit(task_id, "secret", None) for task_id in ("a", "b", "c")]
        wake_ups = []
        original = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
            wake_ups.append(callback)
            return original(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        home = threading.Thread(target=host.run)  # the home loop's thread
        home.start()
        home.join()
        assert not any(f.done() for f in futures)  # set on their own loop, not the home thread
        await _settled(*futures)
        assert [f.result() for f in futures] == ["accepted"] * 3
        assert len(wake_ups) == 1

    _in_a_loop(scenario)


def test_a_sender_that_drains_takes_what_the_loop_has_not_and_each_call_resolves_once() -> None:
    async def scenario() -> None:
        host, resolve = ParkedHost(), Resolver()
        queue = CallbackQueue(host, resolve)
        future = queue.submit("a", "secret", {})
        queue.drain()  # on the sender's own loop (the receiver's thread), the home loop blocked
        assert future.result() == "accepted"  # answered at once: no wake-up needed
        host.run()  # the loop's drain finds nothing left
        assert resolve.batches == [["a"]]

    _in_a_loop(scenario)


def test_a_sender_gone_meanwhile_is_skipped() -> None:
    async def scenario() -> None:
        host, resolve = ParkedHost(), Resolver()
        queue = CallbackQueue(host, resolve)
        gone, waiting = queue.submit("a", "s", None), queue.submit("b", "s", None)
        gone.cancel()  # its HTTP request was dropped
        host.run()
        assert resolve.batches == [["a", "b"]]  # still resolved: the POST did arrive
        assert gone.cancelled() and waiting.result() == "accepted"

    _in_a_loop(scenario)


def test_a_failing_batch_is_retried_one_call_at_a_time() -> None:
    def fail(calls: Sequence[Call]) -> BaseException | None:
        return ValueError("a body the store refused") if ("bad", "s", None) in calls else None

    async def scenario() -> None:
        host, resolve = ParkedHost(), Resolver(fail)
        queue = CallbackQueue(host, resolve)
        good, bad, other = (queue.submit(task_id, "s", None) for task_id in ("good", "bad", "other"))
        host.run()
        assert resolve.batches == [["good", "bad", "other"], ["good"], ["bad"], ["other"]]
        assert good.result() == "accepted" and other.result() == "accepted"
        with pytest.raises(ValueError, match="refused"):
            bad.result()

    _in_a_loop(scenario)


def test_an_interrupt_while_resolving_leaves_no_sender_waiting() -> None:
    async def scenario() -> None:
        host, resolve = ParkedHost(), Resolver(lambda calls: KeyboardInterrupt())
        queue = CallbackQueue(host, resolve)
        futures = [queue.submit(task_id, "s", None) for task_id in ("a", "b")]
        with pytest.raises(KeyboardInterrupt):
            host.run()
        for future in futures:
            with pytest.raises(RuntimeError, match="not resolved"):
                future.result()

    _in_a_loop(scenario)


def test_with_the_home_loop_closed_the_sender_drains() -> None:
    async def scenario() -> None:
        resolve = Resolver()
        queue = CallbackQueue(ParkedHost(closed=True), resolve)
        future = queue.submit("a", "s", None)  # scheduling failed: nothing raised here
        assert not future.done()
        queue.drain()
        assert future.result() == "accepted"

    _in_a_loop(scenario)


def test_a_resolver_bug_still_answers_every_sender() -> None:
    def short(calls: Sequence[Call]) -> list[str]:
        return ["accepted"]  # one outcome for two calls: a bug, which must not hang a sender

    async def scenario() -> None:
        host = ParkedHost()
        queue = CallbackQueue(host, short)
        first, second = (queue.submit(task_id, "s", None) for task_id in ("a", "b"))
        with pytest.raises(ValueError):
            host.run()
        assert first.result() == "accepted"
        with pytest.raises(RuntimeError, match="not resolved"):
            second.result()

    _in_a_loop(scenario)
