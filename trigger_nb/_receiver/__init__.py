"""The receiver (SPEC §9): pure request handling plus the tornado server adapter."""

from ._handling import CallbackOutcome, ReceiverBackend, Response, handle_request
from ._server import Receiver

__all__ = ["CallbackOutcome", "Receiver", "ReceiverBackend", "Response", "handle_request"]
