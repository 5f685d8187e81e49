"""Callback POSTs queued for the home loop and resolved a batch at a time
(``trigger_nb._engine._callback_queue``, SPEC §9, §13)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

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


def test_calls_queued_before_the_loop_runs_are_resolved_in_one_batch() -> None:
    host, resolve = ParkedHost(), Resolver()
    queue = CallbackQueue(host, resolve)
    futures = [queue.submit(task_id, "secret", {"n": 1}) for task_id in ("a", "b", "a")]
    assert len(host.scheduled) == 1 and not any(f.done() for f in futures)  # one wake-up
    host.run()
    assert resolve.batches == [["a", "b", "a"]]
    assert [f.result(0) for f in futures] == ["accepted", "accepted", "already"]
    queue.submit("c", "secret", None)  # the next call schedules the next batch
    assert len(host.scheduled) == 1


def test_a_sender_that_drains_takes_what_the_loop_has_not_and_each_call_resolves_once() -> None:
    host, resolve = ParkedHost(), Resolver()
    queue = CallbackQueue(host, resolve)
    future = queue.submit("a", "secret", {})
    drained = threading.Thread(target=queue.drain)  # the receiver's thread, the loop blocked
    drained.start()
    drained.join()
    assert future.result(0) == "accepted"
    host.run()  # the loop's drain finds nothing left
    assert resolve.batches == [["a"]]


def test_a_failing_batch_is_retried_one_call_at_a_time() -> None:
    def fail(calls: Sequence[Call]) -> BaseException | None:
        return ValueError("a body the store refused") if ("bad", "s", None) in calls else None

    host, resolve = ParkedHost(), Resolver(fail)
    queue = CallbackQueue(host, resolve)
    good, bad, other = (queue.submit(task_id, "s", None) for task_id in ("good", "bad", "other"))
    host.run()
    assert resolve.batches == [["good", "bad", "other"], ["good"], ["bad"], ["other"]]
    assert good.result(0) == "accepted" and other.result(0) == "accepted"
    with pytest.raises(ValueError, match="refused"):
        bad.result(0)


def test_an_interrupt_while_resolving_leaves_no_sender_waiting() -> None:
    host, resolve = ParkedHost(), Resolver(lambda calls: KeyboardInterrupt())
    queue = CallbackQueue(host, resolve)
    futures = [queue.submit(task_id, "s", None) for task_id in ("a", "b")]
    with pytest.raises(KeyboardInterrupt):
        host.run()
    for future in futures:
        with pytest.raises(RuntimeError, match="not resolved"):
            future.result(0)


def test_with_the_home_loop_closed_the_sender_drains() -> None:
    resolve = Resolver()
    queue = CallbackQueue(ParkedHost(closed=True), resolve)
    future = queue.submit("a", "s", None)  # scheduling failed: nothing raised here
    assert not future.done()
    queue.drain()
    assert future.result(0) == "accepted"


def test_a_resolver_bug_still_answers_every_sender() -> None:
    def short(calls: Sequence[Call]) -> list[str]:
        return ["accepted"]  # one outcome for two calls: a bug, which must not hang a sender

    host = ParkedHost()
    queue = CallbackQueue(host, short)
    first, second = (queue.submit(task_id, "s", None) for task_id in ("a", "b"))
    with pytest.raises(ValueError):
        host.run()
    assert first.result(0) == "accepted"
    with pytest.raises(RuntimeError, match="not resolved"):
        second.result(0)
