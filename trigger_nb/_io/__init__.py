"""The ``io`` object handed to job bodies: validates arguments, builds tasks, delegates.

Each family of methods lives in its own module and is mixed in here.
"""

from ._core import CoreIO
from ._events import EventsIO
from ._http import HttpIO
from ._library import LibraryIO


class IO(CoreIO, LibraryIO, HttpIO, EventsIO):
    """The task library of one execution (SPEC §6). Every method is an ``async`` task."""


__all__ = ["IO"]
