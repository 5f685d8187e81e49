"""Adapter from the receiver's :class:`ReceiverBackend` protocol to a client's engine.

Runs on the receiver's thread: everything it calls is thread-safe (store transactions; the
runner hops to the home loop with ``call_soon``).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from ._receiver import CallbackOutcome

if TYPE_CHECKING:
    from ._client import TriggerClient

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


class ClientReceiverBackend:
    """What the HTTP receiver does with callbacks and events, for one client."""

    def __init__(self, client: TriggerClient) -> None:
        self.client = client

    def complete_callback(self, task_id: str, secret: str, body: Any) -> CallbackOutcome:
        return _OUTCOMES[self.client.runner.complete_callback(task_id, secret, body)]

    def send_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.client.send_event_sync(event)

    def events_token(self) -> str:
        # Read only: a request (with any token) never writes to the store. Until someone
        # asked for the token (`%job serve`, `trigger-nb serve`) there is none: "" refuses all.
        record = self.client.storage.get(TOKEN_KEY)
        return "" if record is None else str(record["token"])
