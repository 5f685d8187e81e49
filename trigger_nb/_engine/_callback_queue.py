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

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

Call = tuple[str, str, Any]
"""A callback POST: ``(task_id, secret, body)``."""


class CallbackQueue:
    """``submit`` from any thread; the home loop resolves what is queued in one batch.

    ``resolve(calls)`` resolves a batch in one transaction and returns one outcome per call
    (``Runner.complete_callbacks``); ``host.call_soon`` schedules on the home loop.
    """

    def __init__(self, host: Any, resolve: Callable[[Sequence[Call]], list[str]]) -> None:
        self._host = host
        self._resolve = resolve
        self._pending: list[tuple[Call, Future[str]]] = []
        self._lock = threading.Lock()

    def submit(self, task_id: str, secret: str, body: Any) -> Future[str]:
        """Queue one callback; the future gets its outcome (or the exception resolving it)."""
        future: Future[str] = Future()
        with self._lock:
            first = not self._pending
            self._pending.append(((task_id, secret, body), future))
        if first:  # otherwise a drain is already scheduled and will take this one too
            try:
                self._host.call_soon(self.drain)
            except RuntimeError:
                pass  # the home loop is closing: the waiting sender drains (see module doc)
        return future

    def drain(self) -> None:
        """Resolve everything queued so far, here and now (any thread)."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            try:
                outcomes = self._resolve([call for call, _ in batch])
            except Exception:
                # The batch rolled back: one call at a time, so one bad call fails only itself.
                for call, future in batch:
                    try:
                        future.set_result(self._resolve([call])[0])
                    except Exception as exc:
                        future.set_exception(exc)
            else:
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    future.set_result(outcome)
        finally:
            # An interrupt (a KeyboardInterrupt on the kernel's loop) must not leave a sender
            # waiting for ever: every call of the batch gets an answer.
            for _, future in batch:
                if not future.done():
                    future.set_exception(RuntimeError("the callback was not resolved: its batch ended early"))
