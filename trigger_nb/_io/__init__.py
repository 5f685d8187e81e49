"""The ``io`` object handed to job bodies: validates arguments, builds tasks, delegates.

May import: the engine, the store, ``_events`` (pure event rules and filters) and the shared
leaves — never the client, the receiver or the notebook layer. Each family of methods lives in
its own module and is mixed in here.
"""

from ._core import CoreIO
from ._events import EventsIO
from ._fetch import HttpIO
from ._library import LibraryIO


class IO(CoreIO, LibraryIO, HttpIO, EventsIO):
    """The task library of one execution (SPEC §6). Every method is an ``async`` task."""


__all__ = ["IO"]
