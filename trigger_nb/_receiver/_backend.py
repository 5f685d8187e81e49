"""The receiver's :class:`ReceiverBackend`: callbacks complete tasks, events go to the event log.

Runs on the receiver's thread: everything it calls is thread-safe. Callbacks are resolved on
the home loop when it is free within ``LOOP_GRACE_S`` (see ``_engine/_callback_queue.py``), here
otherwise.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

from .._store import Store
from ._handling import CallbackOutcome

_OUTCOMES = {
    "accepted": CallbackOutcome.ACCEPTED,
    "already": CallbackOutcome.ALREADY_RESOLVED,
    "not_found": CallbackOutcome.NOT_FOUND,
    "timed_out": CallbackOutcome.TIMED_OUT,
}

TOKEN_KEY = "meta/events_token"

#: How long a callback waits for the home loop to resolve it before the receiver's thread does:
#: long enough that a busy loop (resuming other runs) keeps the batching, short enough that a
#: blocked one (a cell in ``time.sleep``) barely delays the answer.
LOOP_GRACE_S = 0.02


def events_token(storage: Any) -> str:
    """The store's bearer token for ``POST /events`` (created once, kept in the store)."""
    record = storage.get(TOKEN_KEY)
    if record is None:
        with storage.transaction():
            record = storage.get(TOKEN_KEY)
            if record is None:
                record = {"token": secrets.token_urlsafe(32)}
                storage.put(TOKEN_KEY, record)
    return str(record["token"])


class EngineBackend:
    """What the HTTP receiver does with callbacks and events. Collaborators, handed over by the
    composition root: ``store`` (where the events token lives); ``submit_callback(task_id,
    secret, body)`` (``Runner.callbacks.submit``: queues the callback for the home loop and
    returns a future, of the calling coroutine's loop, of ``"accepted"``, ``"already"``,
    ``"not_found"`` or ``"timed_out"``) and ``drain_callbacks()`` (resolves what is queued, on
    the calling thread);
    ``send_event(event)`` (stores and delivers it)."""

    def __init__(
        self,
        store: Store,
        *,
        submit_callback: Callable[[str, str, Any], asyncio.Future[str]],
        drain_callbacks: Callable[[], None],
        send_event: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        self._store = store
        self._submit_callback = submit_callback
        self._drain_callbacks = drain_callbacks
        self._send_event = send_event

    async def complete_callback(self, task_id: str, secret: str, body: Any) -> CallbackOutcome:
        answer = self._submit_callback(task_id, secret, body)
        # If the home loop has not answered within the grace time, a cell is running
        # synchronous code on the kernel's loop: resolve here, so that the sender gets its
        # answer now (SPEC §9). A timer, not asyncio.wait: this runs for every callback.
        timer = asyncio.get_running_loop().call_later(LOOP_GRACE_S, self._drain_unless_answered, answer)
        try:
            return _OUTCOMES[await answer]
        finally:
            timer.cancel()

    def _drain_unless_answered(self, answer: asyncio.Future[str]) -> None:
        if not answer.done():
            self._drain_callbacks()

    def send_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return self._send_event(event)

    def events_token(self) -> str:
        # Read only: a request (with any token) never writes to the store. Until someone
        # asked for the token (`%job serve`, `trigger-nb serve`) there is none: "" refuses all.
        record = self._store.get(TOKEN_KEY)
        return "" if record is None else str(record["token"])
