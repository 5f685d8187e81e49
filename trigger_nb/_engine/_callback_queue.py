"""Callback POSTs handed from the receiver's thread to the home loop, resolved a batch per
transaction (SPEC §13: 1,000 callbacks/s).

Why on the home loop: a resumed run writes to the store from the loop's thread. While the
receiver's thread wrote too, the two threads traded the interpreter lock at every SQLite call
(each one releases it) and contended for the store's write lock: measured, 2.1 ms of process CPU
per callback, against 0.8 ms when the loop's thread does all the store work.

Why batches: while the loop is busy resuming runs, callbacks pile up; one transaction for all of
them costs one commit instead of one each.

Why anyone may `drain`: the home loop is the kernel's, and a cell running synchronous code holds
it, but the receiver must still answer (SPEC §9). So a sender that waited long enough drains the
queue on its own thread. Each call is resolved exactly once, by whichever drain took it.

Why answers go back a batch at a time: each sender awaits an asyncio future of its own loop (the
receiver's). Setting them one ``call_soon_threadsafe`` each woke the receiver's thread once per
callback; a batch's answers now reach each loop in one wake-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from .._loop import running_loop
from ._handoff import Handoff

Call = tuple[str, str, Any]
"""A callback POST: ``(task_id, secret, body)``."""

_Settled = list[tuple["asyncio.Future[str]", str | None, BaseException | None]]


class CallbackQueue:
    """``submit`` from a coroutine on any event loop; the home loop resolves what is queued in
    one batch and sends each waiting loop its answers in one wake-up.

    ``resolve(calls)`` resolves a batch in one transaction and returns one outcome per call
    (``Runner.complete_callbacks``); ``host.call_soon`` schedules on the home loop.
    """

    def __init__(self, host: Any, resolve: Callable[[Sequence[Call]], list[str]]) -> None:
        self._resolve = resolve
        self._handoff: Handoff[tuple[Call, asyncio.Future[str]]] = Handoff(host, self._answer)

    def submit(self, task_id: str, secret: str, body: Any) -> asyncio.Future[str]:
        """Queue one callback; the returned future, of the calling coroutine's loop, gets its
        outcome (or the exception resolving it)."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        try:
            self._handoff.add(((task_id, secret, body), future))
        except RuntimeError:
            pass  # the home loop is closing: the waiting sender drains (see module doc)
        return future

    def drain(self) -> None:
        """Resolve everything queued so far, here and now (any thread)."""
        self._handoff.drain()

    def _answer(self, batch: list[tuple[Call, asyncio.Future[str]]]) -> None:
        settled: _Settled = []
        try:
            self._resolve_batch(batch, settled)
        finally:
            # An interrupt (a KeyboardInterrupt on the kernel's loop) must not leave a sender
            # waiting for ever: every call of the batch gets an answer.
            unanswered = RuntimeError("the callback was not resolved: its batch ended early")
            settled.extend((future, None, unanswered) for _, future in batch[len(settled) :])
            _send(settled)

    def _resolve_batch(self, batch: list[tuple[Call, asyncio.Future[str]]], settled: _Settled) -> None:
        try:
            outcomes = self._resolve([call for call, _ in batch])
        except Exception:
            # The batch rolled back: one call at a time, so one bad call fails only itself.
            for call, future in batch:
                try:
                    settled.append((future, self._resolve([call])[0], None))
                except Exception as exc:
                    settled.append((future, None, exc))
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            settled.append((future, outcome, None))


def _send(settled: _Settled) -> None:
    """Hand each loop its answers: one ``call_soon_threadsafe`` per loop, not per answer (each
    one wakes that loop's thread, which then trades the interpreter lock with this one)."""
    here = running_loop()
    by_loop: dict[asyncio.AbstractEventLoop, _Settled] = {}
    for answer in settled:
        by_loop.setdefault(answer[0].get_loop(), []).append(answer)
    for loop, answers in by_loop.items():
        if loop is here:
            _settle(answers)
            continue
        try:
            loop.call_soon_threadsafe(_settle, answers)
        except RuntimeError:
            pass  # that loop is closed: nobody awaits its futures any more


def _settle(answers: _Settled) -> None:
    for future, outcome, error in answers:
        if future.done():  # the sender gave up (its request was canceled)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)  # type: ignore[arg-type]

