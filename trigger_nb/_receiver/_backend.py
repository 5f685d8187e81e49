"""The receiver's :class:`ReceiverBackend`: callbacks complete tasks, events go to the event log.

Runs on the receiver's thread: everything it calls is thread-safe (store transactions; the
runner hops to the home loop with ``call_soon``).
"""

from __future__ import annotations

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
    composition root: ``store`` (where the events token lives), ``complete_callback(task_id,
    secret, body)`` (``Runner.complete_callback``: returns ``"accepted"``, ``"already"``,
    ``"not_found"`` or ``"timed_out"``) and ``send_event(event)`` (stores and delivers it)."""

    def __init__(
        self,
        store: Store,
        *,
        complete_callback: Callable[[str, str, Any], str],
        send_event: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        self._store = store
        self._complete_callback = complete_callback
        self._send_event = send_event

    def complete_callback(self, task_id: str, secret: str, body: Any) -> CallbackOutcome:
        return _OUTCOMES[self._complete_callback(task_id, secret, body)]

    def send_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return self._send_event(event)

    def events_token(self) -> str:
        # Read only: a request (with any token) never writes to the store. Until someone
        # asked for the token (`%job serve`, `trigger-nb serve`) there is none: "" refuses all.
        record = self._store.get(TOKEN_KEY)
        return "" if record is None else str(record["token"])
