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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from ._handoff import Handoff

Call = tuple[str, str, Any]
"""A callback POST: ``(task_id, secret, body)``."""


class CallbackQueue:
    """``submit`` from any thread; the home loop resolves what is queued in one batch.

    ``resolve(calls)`` resolves a batch in one transaction and returns one outcome per call
    (``Runner.complete_callbacks``); ``host.call_soon`` schedules on the home loop.
    """

    def __init__(self, host: Any, resolve: Callable[[Sequence[Call]], list[str]]) -> None:
        self._resolve = resolve
        self._handoff: Handoff[tuple[Call, Future[str]]] = Handoff(host, self._answer)

    def submit(self, task_id: str, secret: str, body: Any) -> Future[str]:
        """Queue one callback; the future gets its outcome (or the exception resolving it)."""
        future: Future[str] = Future()
        try:
            self._handoff.add(((task_id, secret, body), future))
        except RuntimeError:
            pass  # the home loop is closing: the waiting sender drains (see module doc)
        return future

    def drain(self) -> None:
        """Resolve everything queued so far, here and now (any thread)."""
        self._handoff.drain()

    def _answer(self, batch: list[tuple[Call, Future[str]]]) -> None:
        try:
            self._resolve_batch(batch)
        finally:
            # An interrupt (a KeyboardInterrupt on the kernel's loop) must not leave a sender
            # waiting for ever: every call of the batch gets an answer.
            for _, future in batch:
                if not future.done():
                    future.set_exception(RuntimeError("the callback was not resolved: its batch ended early"))

    def _resolve_batch(self, batch: list[tuple[Call, Future[str]]]) -> None:
        try:
            outcomes = self._resolve([call for call, _ in batch])
        except Exception:
            # The batch rolled back: one call at a time, so one bad call fails only itself.
            for call, future in batch:
                try:
                    future.set_result(self._resolve([call])[0])
                except Exception as exc:
                    future.set_exception(exc)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            future.set_result(outcome)
