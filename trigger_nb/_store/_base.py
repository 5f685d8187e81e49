"""The storage seam: a tiny transactional key/value interface that every backend implements.

Values are JSON-compatible Python objects (records); ``blob`` values are raw bytes (pickled
outputs). Keys are ``/``-separated strings; :meth:`Store.scan` returns every record under a
prefix in one round trip, which is what lets an execution load all of a run's task records at
once instead of paying one read per task (SPEC §10, issue 2).

Guarantees every backend must give:

* ``transaction()`` makes everything inside it atomic with respect to other threads *and*
  other processes opening the same store; transactions may be nested (inner ones join).
* A write that returned is durable against the writing process being killed.
* Backend errors surface as :class:`~trigger_nb.StoreError` naming the location and a remedy.

Notices between processes (the wake-up seam): a process that leaves work for another one (a
``wake/`` marker, a queued run, a delayed event) writes a durable record *and* calls
:meth:`Store.notify`. A backend that can push (PostgreSQL: ``LISTEN/NOTIFY``) sets
:attr:`Store.pushes_notices` and delivers notices to :meth:`Store.subscribe` callbacks in every
process; the others (diskcache, memory) do nothing on ``notify`` and their users poll the durable
records instead. The records stay the truth either way: a notice only says "look now".
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

#: Key prefixes of the bookkeeping records: markers, index entries and execution journals,
#: records of which every execution writes a few (and deletes most again; ``Repository`` has
#: the layout). A backend may keep them apart from the other records, where writing them costs
#: less (``DiskcacheStore``); keys under these prefixes hold records only, never blobs.
BOOKKEEPING_PREFIXES = ("cb/", "exec/", "fence/", "hist/", "idx/", "wake/")


class Store(abc.ABC):
    """Abstract transactional record store."""

    #: Human-readable location (a directory path, a URL) used in messages.
    location: str

    #: True when :meth:`subscribe` delivers other processes' :meth:`notify` calls (so nobody
    #: needs to poll the store for them); False when callers must poll.
    pushes_notices: bool = False

    @abc.abstractmethod
    def get(self, key: str) -> Any | None:
        """The record under ``key``, or ``None``."""

    @abc.abstractmethod
    def scan(self, prefix: str, *, decode: Callable[[str], Any] = json.loads) -> list[tuple[str, Any]]:
        """Every ``(key, record)`` whose key starts with ``prefix``, in one round trip.

        ``decode`` turns a stored JSON text into the record (see ``_codec``)."""

    @abc.abstractmethod
    def put(self, key: str, value: Any) -> None:
        """Store a JSON-compatible record."""

    def put_new(self, key: str, value: Any) -> None:
        """Store a record under a key that is almost certainly new (a task's first write).

        Same effect as :meth:`put` (an existing record is replaced); a backend may make the
        new-key case cheaper, e.g. one ``INSERT`` instead of a read-then-write."""
        self.put(key, value)

    def put_fenced(self, key: str, value: Any, *, guard_key: str, guard: Any, new: bool = False) -> bool:
        """Store ``value`` under ``key`` only if the record under ``guard_key`` equals ``guard``,
        atomically with respect to every other writer; returns whether it was written. ``new``
        as in :meth:`put_new`. A backend may do it in one statement (a fenced task write at the
        cost of a plain one, SPEC §10/§13); this default is a transaction around a read."""
        with self.transaction():
            if self.get(guard_key) != guard:
                return False
            (self.put_new if new else self.put)(key, value)
            return True

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed."""

    @abc.abstractmethod
    def get_blob(self, key: str) -> bytes | None:
        """Raw bytes stored with :meth:`put_blob`, or ``None``."""

    @abc.abstractmethod
    def put_blob(self, key: str, data: bytes) -> None:
        """Store raw bytes (large values are streamed to files by the backend)."""

    def put_blob_chunks(self, key: str, chunks: Iterable[bytes]) -> None:
        """Store the concatenation of ``chunks`` as one blob. A backend that can stream them
        to its storage never holds the whole blob (SPEC §13: a 100 MiB output is stored at
        the cost of the value plus one copy); this default joins them."""
        self.put_blob(key, b"".join(chunks))

    @abc.abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """Every key (records and blobs) under ``prefix``."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Context manager making the enclosed reads and writes atomic (nestable)."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` atomically; returns how many were deleted."""
        with self.transaction():
            keys = self.keys(prefix)
            for key in keys:
                self.delete(key)
        return len(keys)

    def notify(self, topic: str) -> None:  # noqa: B027 - optional hook
        """Tell every process watching this store that ``topic`` has news (``"wake"``,
        ``"start"``, ``"event"``). Inside a transaction it is sent when the transaction
        commits, never if it rolls back. Backends that do not push do nothing."""

    def subscribe(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``callback(topic)`` from a background thread for every notice sent by any
        process, and ``callback(None)`` after every (re)connection — notices may have been
        missed, so re-check everything. Returns a function that unsubscribes. Only for
        backends with :attr:`pushes_notices`."""
        raise NotImplementedError(f"{type(self).__name__} does not push notices: poll the store")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (file handles, connections)."""

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys(""))
