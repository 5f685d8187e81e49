"""The receiver (SPEC §9): pure request handling, the HTTP server (asyncio + httptools), and the backend
that connects handled requests to the runner and the event log.

May import: the engine, the store, ``_events`` and the shared leaves — never the client (it
hands the backend its collaborators) or the notebook layer.
"""

from ._handling import CallbackOutcome, ReceiverBackend, Response, handle_request
from ._server import Receiver

__all__ = ["CallbackOutcome", "Receiver", "ReceiverBackend", "Response", "handle_request"]
