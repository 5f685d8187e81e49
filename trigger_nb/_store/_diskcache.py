"""The default backend: a diskcache ``Cache`` in the store directory (SPEC §10).

This is the only module that imports diskcache. Records are stored as JSON text (never
pickled); blobs as bytes (diskcache streams large ones to files). ``eviction_policy="none"``
because durable records must never be culled to make room.

One deliberate reach below diskcache's public API: :meth:`DiskcacheStore.scan` runs a single
key-range ``SELECT`` on diskcache's own table and decodes rows with ``Disk.fetch`` — the public
API has no prefix read, and one query per execution (instead of one ``get`` per task) is what
makes replay cheap. ``tests/test_store.py`` pins this against the installed diskcache.

The bookkeeping records (markers, index entries and execution journals,
``BOOKKEEPING_PREFIXES``) live beside diskcache's table, in a table of their own in the same
database (so one transaction still covers both): a key and its JSON text, nothing else. Why: an
execution inserts and deletes six markers and writes its journal, and in diskcache's table each
insert or delete also updates two indexes and runs two triggers (diskcache's count and size) —
measured ~14 µs a write there against ~4.5 µs here, and three pages more in the commit's WAL
frames (SPEC §13: 1,000 callbacks/s). A store written by an earlier version, which kept some of
them in diskcache's table, has them moved over when it is opened; every process sharing a store
must therefore run a version that keeps them where this one does.

WAL checkpoints are left to a thread of the store's own (``_checkpoints.py``): ``_Cache``
overrides diskcache's per-thread connection property to turn SQLite's automatic checkpoint off on
each new connection — the second deliberate reach, pinned by the same tests.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from functools import wraps
from typing import Any, TypeVar

import diskcache

from .._exceptions import StoreError
from ._base import BOOKKEEPING_PREFIXES, Store
from ._checkpoints import Checkpointer
from ._codec import encode_record

F = TypeVar("F", bound=Callable[..., Any])

# The row Cache.set writes for a str key and a small str value: raw key, no expiry, no tag,
# mode 1 (diskcache.core.MODE_RAW), value inline. Pinned by tests/test_store.py.
# The UPDATE leaves expire_time out of its SET (and requires it NULL, as every row written here
# has it): SQLite rewrites the entry of every index whose column a SET names, even to the same
# value, and the expiry index's page would be one more page in each commit's WAL frames.
_UPDATE_RAW = (
    "UPDATE Cache SET store_time = ?, access_time = ?, access_count = 0,"
    " tag = NULL, size = 0, mode = 1, filename = NULL, value = ?"
    " WHERE key = ? AND raw = 1 AND filename IS NULL AND expire_time IS NULL"
)
_INSERT_RAW = (
    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag, size,"
    " mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, 1, NULL, ?)"
)
_DELETE_RAW = "DELETE FROM Cache WHERE key = ? AND raw = 1 AND filename IS NULL"
_GET_RAW = "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1"
_INSERT_RAW_IF = (
    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag, size,"
    " mode, filename, value) SELECT ?, 1, ?, NULL, ?, 0, NULL, 0, 1, NULL, ? WHERE"
)

# The bookkeeping records' table (see the module docstring).
_MARKS = "TriggerNbMarks"
_CREATE_MARKS = (
    f"CREATE TABLE IF NOT EXISTS {_MARKS} (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
)
_GET_MARK = f"SELECT value FROM {_MARKS} WHERE key = ?"
_PUT_MARK = f"INSERT OR REPLACE INTO {_MARKS} (key, value) VALUES (?, ?)"
_DELETE_MARK = f"DELETE FROM {_MARKS} WHERE key = ?"
_SCAN_MARKS = f"SELECT key, value FROM {_MARKS} WHERE key >= ? AND key < ? ORDER BY key"
_KEYS_MARKS = f"SELECT key FROM {_MARKS} WHERE key >= ? AND key < ?"
# Bookkeeping records that an earlier version stored in diskcache's table: all of them, and
# those held inline (moved by two statements; the others, in files, one at a time).
_IN_OLD_PLACE = "raw = 1 AND (" + " OR ".join("(key >= ? AND key < ?)" for _ in BOOKKEEPING_PREFIXES) + ")"
_INLINE = " AND mode = 1 AND filename IS NULL AND typeof(value) = 'text'"
_OLD_MARKS = f"SELECT key FROM Cache WHERE {_IN_OLD_PLACE}"
_MOVE_INLINE_MARKS = f"INSERT OR REPLACE INTO {_MARKS} (key, value) SELECT key, value FROM Cache WHERE {_IN_OLD_PLACE}{_INLINE}"
_DROP_INLINE_MARKS = f"DELETE FROM Cache WHERE {_IN_OLD_PLACE}{_INLINE}"

# diskcache's trigger that keeps its total size, with a WHEN: diskcache's own fires on every
# UPDATE, and writing Settings even to add 0 puts Settings' page in every commit's WAL frames
# (a record replaced in place here always has size 0). Same name, so diskcache's
# CREATE TRIGGER IF NOT EXISTS (at every open, by any version) keeps this one.
_SIZE_TRIGGER = "Settings_size_update"
_SIZE_TRIGGER_SQL = (
    f"CREATE TRIGGER {_SIZE_TRIGGER} AFTER UPDATE ON Cache FOR EACH ROW WHEN NEW.size != OLD.size"
    ' BEGIN UPDATE Settings SET value = value + NEW.size - OLD.size WHERE key = "size"; END'
)
_TRIGGER_TEXT = "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?"

#: The guard of a fenced write: the record under the guard key has exactly this text (a small
#: raw record in diskcache's table, or a bookkeeping record), by where the guard key lives.
_GUARDS = {
    False: " EXISTS (SELECT 1 FROM Cache WHERE key = ? AND raw = 1 AND filename IS NULL AND value = ?)",
    True: f" EXISTS (SELECT 1 FROM {_MARKS} WHERE key = ? AND value = ?)",
}
#: (new key?, guard key is bookkeeping?) -> the fenced write's one statement.
_FENCED = {
    (new, bookkeeping): (_INSERT_RAW_IF if new else _UPDATE_RAW + " AND") + guard
    for new in (False, True)
    for bookkeeping, guard in _GUARDS.items()
}

_REMEDY = (
    "Point TRIGGER_NB_DIR (or `%job config --dir PATH`, or TriggerClient(dir=...)) at a "
    "writable directory"
)


def _end(prefix: str) -> str:
    """The least string above every key that starts with ``prefix`` (a key-range bound)."""
    return prefix + "\U0010ffff"


def _bookkeeping(key: str) -> bool:
    return key.startswith(BOOKKEEPING_PREFIXES)


def _may_hold_bookkeeping(prefix: str) -> bool:
    """Can a key under ``prefix`` be a bookkeeping key (``prefix`` is under, or above, one)?"""
    return _bookkeeping(prefix) or any(p.startswith(prefix) for p in BOOKKEEPING_PREFIXES)


def _refuse_bookkeeping_blob(key: str) -> None:
    if _bookkeeping(key):
        raise ValueError(f"{key!r} is a bookkeeping key ({BOOKKEEPING_PREFIXES}): it holds records, not blobs")


def _store_errors(method: F) -> F:
    """Turn SQLite and OS errors into StoreError with the path and a remedy."""

    @wraps(method)
    def wrapper(self: DiskcacheStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise _explain(self.location, exc) from exc

    return wrapper  # type: ignore[return-value]


def _explain(path: str, exc: BaseException) -> StoreError:
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text
    ):
        return StoreError(
            f"The trigger_nb store at {path!r} is corrupt ({text}). Move the directory "
            f"aside (keep it if you need to recover runs) and start with a fresh one. {_REMEDY}."
        )
    if "disk is full" in text or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(
            f"The disk holding the trigger_nb store at {path!r} is full ({text}). Free some space "
            "on it (`trigger-nb forget RUN_ID` removes old runs), or point TRIGGER_NB_DIR (or "
            "`%job config --dir PATH`, or TriggerClient(dir=...)) at a disk with room."
        )
    if "readonly" in text or "read-only" in text or getattr(exc, "errno", None) in (
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
    ):
        return StoreError(f"The trigger_nb store at {path!r} is not writable ({text}). {_REMEDY}.")
    return StoreError(f"The trigger_nb store at {path!r} cannot be used ({text}). {_REMEDY}.")


class _ChunkReader:
    """A read-only file over an iterable of byte chunks (``Cache.set(..., read=True)`` calls
    ``read(size)`` until it returns ``b""``); holds one chunk at a time."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._pending = chunk
        if size < 0 or size >= len(self._pending):
            data, self._pending = self._pending, b""
            return data
        data, self._pending = self._pending[:size], self._pending[size:]
        return data


def _make_private(path: str, *, created: bool) -> None:
    """SPEC §10: the store holds callback secrets and the events token, so its directory is
    ``0700`` and its files ``0600`` whatever the umask. The database is created here, ``0600``,
    before SQLite opens it: SQLite gives its ``-wal`` and ``-shm`` files the database's mode
    (and fchmods them to it, past the umask). A store made by an earlier version is tightened;
    a directory that holds other things than a store keeps its mode (the files stay private)."""
    database = os.path.join(path, "cache.db")
    if created or os.path.exists(database) or not os.listdir(path):
        os.chmod(path, 0o700)
    fd = os.open(database, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        with suppress(FileNotFoundError):
            os.chmod(database + suffix, 0o600)


class _PrivateDisk(diskcache.Disk):
    """diskcache's ``Disk`` writing value files ``0600`` in ``0700`` directories (big values
    live in files of their own: ``Disk._write`` would create them with the umask's mode)."""

    def _write(self, full_path: str, iterator: Any, mode: str, encoding: str | None = None) -> int:
        full_dir = os.path.dirname(full_path)

        def private(file: str, flags: int) -> int:
            fd = os.open(file, flags, 0o600)
            os.fchmod(fd, 0o600)  # past a umask that would leave it narrower
            return fd

        for count in range(1, 11):  # as diskcache: another process may remove the directory
            for directory in (os.path.dirname(full_dir), full_dir):  # <store>/ab/cd/
                with suppress(OSError):
                    os.mkdir(directory, 0o700)
            try:
                writer = open(full_path, mode, encoding=encoding, opener=private)  # noqa: SIM115
            except OSError:
                if count == 10:
                    raise
                continue
            with writer:
                size = 0
                for chunk in iterator:
                    size += len(chunk)
                    writer.write(chunk)
                return size
        raise AssertionError("unreachable")


class _Cache(diskcache.Cache):
    """diskcache's ``Cache`` whose connections leave WAL checkpoints to a `Checkpointer`: each
    new connection (a new thread, a forked process) gets ``wal_autocheckpoint=0`` and calls
    ``connected()``. The fast path is diskcache's own: the thread's connection, made by this
    process (pinned by tests/test_store.py)."""

    def connected(self) -> None:
        """Called after each new connection (the store replaces it)."""

    @property
    def _con(self) -> sqlite3.Connection:
        local = self._local
        con: sqlite3.Connection | None = getattr(local, "con", None)
        if con is not None and getattr(local, "pid", None) == os.getpid():
            return con
        con = super()._con
        con.execute("PRAGMA wal_autocheckpoint=0")
        self.connected()
        return con


def database_exists(directory: str | os.PathLike[str]) -> bool:
    """Does ``directory`` hold a diskcache database (a store some process created)?"""
    return os.path.isfile(os.path.join(os.fspath(directory), diskcache.core.DBNAME))


class DiskcacheStore(Store):
    """A :class:`Store` in a directory, safe to share between threads and processes."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        path = os.path.abspath(os.fspath(directory))
        self.location = path
        if os.path.exists(path) and not os.path.isdir(path):
            raise StoreError(f"The trigger_nb store path {path!r} is not a directory. {_REMEDY}.")
        try:
            created = not os.path.exists(path)
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise _explain(path, exc) from exc
        if not os.access(path, os.W_OK | os.X_OK):
            raise StoreError(f"The trigger_nb store at {path!r} is not writable. {_REMEDY}.")
        try:
            _make_private(path, created=created)
            self._cache = _Cache(
                path,
                disk=_PrivateDisk,
                eviction_policy="none",
                # No culling pass after each write: nothing here expires or is ever evicted, and
                # the pass costs two extra queries per set (SPEC §13).
                cull_limit=0,
                statistics=False,
                tag_index=False,
                timeout=60,  # seconds SQLite waits for another process's write lock
            )
            # Touch the database so corruption is reported now, not at the first run.
            self._cache.get("__probe__")
        except (sqlite3.Error, OSError) as exc:
            raise _explain(path, exc) from exc
        self._fetch = self._cache._disk.fetch
        self._min_file_size = self._cache._disk.min_file_size
        # Writers of this process queue on this lock instead of on SQLite's write lock: SQLite's
        # busy handler *sleeps* (1, 2, 5 ms, ...) while another connection writes, which made
        # the receiver's thread and the loop's thread stall each other. Other processes still
        # serialise through SQLite itself.
        self._write_lock = threading.RLock()
        self._in_transaction = threading.local()  # .depth: this thread's open transactions
        self._open_bookkeeping()
        self._database = os.path.join(path, diskcache.core.DBNAME)
        self._checkpointer = Checkpointer(self._database, owner=self)
        self._cache.connected = self._connected  # type: ignore[method-assign]

    def _connected(self) -> None:
        # A forked child's first connection: the parent's checkpointing thread is not here.
        if self._checkpointer.pid != os.getpid():
            self._checkpointer = Checkpointer(self._database, owner=self)

    @_store_errors
    def _open_bookkeeping(self) -> None:
        """Create the bookkeeping table and the size trigger if needed, and move into the table
        the bookkeeping records an earlier version kept in diskcache's table (once: afterwards
        one read that finds none)."""
        self._cache._sql(_CREATE_MARKS)  # a no-op read once the table exists
        if self._cache._sql(_TRIGGER_TEXT, (_SIZE_TRIGGER,)).fetchone() != (_SIZE_TRIGGER_SQL,):
            with self.transaction():  # once per store
                self._cache._sql(f"DROP TRIGGER IF EXISTS {_SIZE_TRIGGER}")
                self._cache._sql(_SIZE_TRIGGER_SQL)
        bounds = [bound for prefix in BOOKKEEPING_PREFIXES for bound in (prefix, _end(prefix))]
        if self._cache._sql(_OLD_MARKS, bounds).fetchone() is None:
            return
        with self.transaction():
            # Set-based: a store of many runs may hold hundreds of thousands of journals.
            self._cache._sql(_MOVE_INLINE_MARKS, bounds)
            self._cache._sql(_DROP_INLINE_MARKS, bounds)
            for (key,) in self._cache._sql(_OLD_MARKS, bounds).fetchall():  # values in files
                text = self._cache.get(key)
                if isinstance(text, str):
                    self._cache._sql(_PUT_MARK, (key, text))
                self._cache.delete(key)

    @_store_errors
    def get(self, key: str) -> Any | None:
        if _bookkeeping(key):
            row = self._cache._sql(_GET_MARK, (key,)).fetchone()
            return None if row is None else json.loads(row[0])
        # One SELECT instead of Cache.get's (which also checks an expiry time: no record here
        # has one); a value kept in a file is read through diskcache, as Cache.get does.
        rows = self._cache._sql(_GET_RAW, (key,)).fetchall()
        if not rows:
            return None
        ((mode, filename, value),) = rows
        if mode != 1:
            try:
                value = self._fetch(mode, filename, value, False)
            except OSError:  # deleted (by another process) between the SELECT and the read
                return None
        return None if value.__class__ is not str else json.loads(value)

    @_store_errors
    def scan(self, prefix: str, *, decode: Callable[[str], Any] = json.loads) -> list[tuple[str, Any]]:
        out = []
        if not _bookkeeping(prefix):
            rows = self._cache._sql(
                "SELECT key, mode, filename, value FROM Cache"
                " WHERE raw = 1 AND key >= ? AND key < ? ORDER BY rowid",
                (prefix, _end(prefix)),
            ).fetchall()
            fetch = self._fetch
            for key, mode, filename, value in rows:
                # mode 1 (MODE_RAW) is the value itself: skip a call per row on the replay path.
                data = value if mode == 1 else fetch(mode, filename, value, False)
                if data.__class__ is str:
                    out.append((key, decode(data)))
        if _may_hold_bookkeeping(prefix):
            rows = self._cache._sql(_SCAN_MARKS, (prefix, _end(prefix))).fetchall()
            out.extend((key, decode(text)) for key, text in rows)
        return out

    @_store_errors
    def put(self, key: str, value: Any) -> None:
        # Most puts replace a small record (a run or task record, again): one UPDATE of the
        # row in place, instead of Cache.set's BEGIN / SELECT / UPDATE / COMMIT. A new key, or
        # an old value kept in a file (which must be removed), takes Cache.set.
        data = encode_record(key, value)
        with self._write_lock:
            if _bookkeeping(key):
                self._cache._sql(_PUT_MARK, (key, data))
                return
            if len(data) < self._min_file_size:
                now = time.time()
                if self._cache._sql(_UPDATE_RAW, (now, now, data, key)).rowcount == 1:
                    return
            self._cache.set(key, data)

    @_store_errors
    def put_new(self, key: str, value: Any) -> None:
        # One INSERT (its own transaction, or part of the caller's) instead of Cache.set's
        # BEGIN / SELECT / INSERT-or-UPDATE / COMMIT: half the cost of a task's first write
        # (SPEC §13). The row is what Cache.set stores for a small str (MODE_RAW, no file);
        # an existing key (IntegrityError on the (key, raw) unique index) takes Cache.set.
        data = encode_record(key, value)
        with self._write_lock:
            if _bookkeeping(key):
                self._cache._sql(_PUT_MARK, (key, data))
                return
            if len(data) < self._min_file_size:
                now = time.time()
                try:
                    self._cache._sql(_INSERT_RAW, (key, now, now, data))
                    return
                except sqlite3.IntegrityError:
                    pass
            self._cache.set(key, data)

    @_store_errors
    def put_fenced(self, key: str, value: Any, *, guard_key: str, guard: Any, new: bool = False) -> bool:
        # One UPDATE (or INSERT) whose WHERE also checks the guard record: SQLite runs a single
        # statement atomically under its write lock, so the fence costs no transaction of its
        # own. A record kept in a file, or a key that is (not) there after all, takes the
        # base class's transaction.
        data = encode_record(key, value)
        expected = encode_record(guard_key, guard)
        if len(data) < self._min_file_size and not _bookkeeping(key):
            with self._write_lock:
                now = time.time()
                try:
                    sql = _FENCED[new, _bookkeeping(guard_key)]
                    args = (key, now, now, data) if new else (now, now, data, key)
                    if self._cache._sql(sql, (*args, guard_key, expected)).rowcount == 1:
                        return True
                except sqlite3.IntegrityError:  # "new" key already stored: the general path
                    pass
        return super().put_fenced(key, value, guard_key=guard_key, guard=guard, new=new)

    @_store_errors
    def delete(self, key: str) -> bool:
        # A small record (markers, index entries, the fence: four per execution) is one DELETE
        # instead of Cache.delete's SELECT then DELETE. A value kept in a file (which must be
        # removed once the transaction commits), or no such key, takes Cache.delete.
        with self._write_lock:
            if _bookkeeping(key):
                return bool(self._cache._sql(_DELETE_MARK, (key,)).rowcount)
            if self._cache._sql(_DELETE_RAW, (key,)).rowcount == 1:
                return True
            return bool(self._cache.delete(key))

    @_store_errors
    def get_blob(self, key: str) -> bytes | None:
        raw = self._cache.get(key)
        return raw if isinstance(raw, bytes) else None

    @_store_errors
    def put_blob(self, key: str, data: bytes) -> None:
        _refuse_bookkeeping_blob(key)
        with self._write_lock:
            self._cache.set(key, bytes(data))

    @_store_errors
    def put_blob_chunks(self, key: str, chunks: Iterable[bytes]) -> None:
        _refuse_bookkeeping_blob(key)
        # read=True: diskcache copies the reader to a file 4 MiB at a time.
        with self._write_lock:
            self._cache.set(key, _ChunkReader(chunks), read=True)

    @_store_errors
    def keys(self, prefix: str) -> list[str]:
        keys = []
        if not _bookkeeping(prefix):
            rows = self._cache._sql(
                "SELECT key FROM Cache WHERE raw = 1 AND key >= ? AND key < ?",
                (prefix, _end(prefix)),
            ).fetchall()
            keys = [row[0] for row in rows]
        if _may_hold_bookkeeping(prefix):
            rows = self._cache._sql(_KEYS_MARKS, (prefix, _end(prefix))).fetchall()
            keys.extend(row[0] for row in rows)
        return keys

    @contextmanager
    def transaction(self) -> Iterator[None]:
        local = self._in_transaction
        depth = getattr(local, "depth", 0)
        if depth:
            # Nested: the outer transaction holds the lock and will commit (or roll back)
            # everything. Joining costs a counter, not diskcache's transact (~5 us each,
            # four per callback resume: SPEC §13).
            local.depth = depth + 1
            try:
                yield
            finally:
                local.depth = depth
            return
        try:
            with self._write_lock, self._cache.transact():
                local.depth = 1
                try:
                    yield
                finally:
                    local.depth = 0
        except (sqlite3.Error, OSError) as exc:
            raise _explain(self.location, exc) from exc

    def close(self) -> None:
        self._checkpointer.stop()
        self._cache.close()
