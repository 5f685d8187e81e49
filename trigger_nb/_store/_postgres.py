"""The team store: the :class:`Store` interface on PostgreSQL with psycopg 3 (SPEC §10).

Several kernels, receivers and CLIs on several machines share runs by sharing one database URL.

Layout: one table, ``trigger_nb_records (key text COLLATE "C" PRIMARY KEY, value text, blob
bytea)``. A record is the JSON *text* the engine wrote (not ``jsonb``: the engine decodes task
records with its own fast decoder, and ``jsonb`` would re-format the text and cost a second
parse); a blob is ``bytea``. The primary key's byte-order collation lets the one B-tree serve
:meth:`PostgresStore.scan`'s key range (``prefix <= key < prefix⁺``) in one round trip. The
schema is created on first use and versioned in ``trigger_nb_migrations`` (see ``MIGRATIONS``).
The tables live in the connection's current schema, so ``?options=-csearch_path%3Dteam_a`` in
the URL gives a team its own store in a shared database.

Transactions (the contract of :class:`Store`: atomic across threads and processes, nestable).
A transaction is a real database transaction on one connection, bound to the calling thread
(inner ``transaction()`` blocks join it). Its first statement takes a transaction-scoped
advisory lock on the store, so transactions are serialised store-wide — the same guarantee
diskcache gives with SQLite's write lock, which the engine's read-check-write transactions
(leases, first-callback-wins, event delivery, queue claims) rely on; and because every
transaction holds that one lock, they can never deadlock with each other. Reads inside a
transaction lock their rows (``FOR UPDATE``), so a single write outside any transaction waits
for a transaction that read the same record instead of slipping in between its read and its
write. Writes outside transactions are single autocommit statements (the hot path: one round
trip per task record) and multi-row writes always run in a transaction, so no two statements
can ever wait for each other in a cycle. A statement outside a transaction whose connection
turns out broken (a server restart) is retried once on a fresh connection; a transaction whose
connection breaks raises :class:`StoreError` and changes nothing.

Notices (the wake-up seam of :class:`Store`): ``notify`` is ``pg_notify`` on the store's
channel — transactional, so a notice is sent exactly when the records it announces are
committed; ``subscribe`` starts one :class:`~._pg_listen.Listener` thread per store.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .._config import mask_url
from .._exceptions import StoreError
from ._base import Store
from ._codec import encode_record
from ._pg_connect import RIGHTS, Pool, conninfo, explain, import_psycopg
from ._pg_listen import KEEPALIVES, Listener

T = TypeVar("T")

TABLE = "trigger_nb_records"
MIGRATION_TABLE = "trigger_nb_migrations"

#: Schema versions, applied in order, each once, under the migration lock. Append, never edit.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            f"""CREATE TABLE {TABLE} (
                key   text COLLATE "C" PRIMARY KEY,
                value text,
                blob  bytea,
                CHECK ((value IS NULL) <> (blob IS NULL))
            )""",
        ],
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

#: First key of the advisory locks (two-int form): "trig". The second is the schema's hash.
_LOCK_SPACE = 0x74726967
_MIGRATION_LOCK_SPACE = _LOCK_SPACE + 1


def _copy_text(text: str) -> str:
    """``text`` as a field of COPY's text format (backslash escapes)."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (byte order of
    UTF-8 is code point order), or ``None`` when there is none (an empty prefix)."""
    while prefix:
        code = ord(prefix[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:
            code = 0xE000  # surrogates cannot be sent as text
        if code <= 0x10FFFF:
            return prefix[:-1] + chr(code)
        prefix = prefix[:-1]
    return None


class PostgresStore(Store):
    """A :class:`Store` in a PostgreSQL database (see the module docstring)."""

    pushes_notices = True

    def __init__(self, url: str, *, max_idle: int = 4) -> None:
        self._psycopg = import_psycopg()
        self.url = url
        self.location = mask_url(url)
        self._conninfo = conninfo(url)
        self._pool = Pool(self._connect, max_idle=max_idle)
        self._local = threading.local()
        self._closed = False
        self._listener: Listener | None = None
        self._subscribers: list[Callable[[str | None], None]] = []
        self._subscribe_lock = threading.Lock()
        schema = self._migrate()
        digest = hashlib.sha1(schema.encode()).digest()
        schema_key = int.from_bytes(digest[:4], "big", signed=True)
        self.channel = "trigger_nb_" + digest.hex()[:16]
        self._begin = f"BEGIN; SELECT pg_advisory_xact_lock({_LOCK_SPACE}, {schema_key})"

    # -- connections ----------------------------------------------------------------------
    def _connect(self, **overrides: str) -> Any:
        psycopg = self._psycopg
        try:
            return psycopg.connect(psycopg.conninfo.make_conninfo(self._conninfo, **overrides), autocommit=True)
        except self._psycopg.Error as exc:
            raise explain(self.url, exc) from None

    def _migrate(self) -> str:
        """Create or upgrade the schema (once per database, under a lock); returns the
        current schema's name (it scopes the lock and the notice channel)."""
        psycopg = self._psycopg

        def migrate(conn: Any, _in_transaction: bool) -> str:
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            if schema is None:
                raise self._no_schema(conn)
            try:
                version = conn.execute(f"SELECT max(version) FROM {MIGRATION_TABLE}").fetchone()[0]
            except psycopg.errors.UndefinedTable:
                version = 0
            if version != SCHEMA_VERSION:
                version = self._apply_migrations(conn, schema)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"The store at {self.location} has schema version {version}, newer than this "
                    f"trigger_nb knows ({SCHEMA_VERSION}): upgrade trigger_nb (pip install -U trigger_nb)."
                )
            return str(schema)

        # A pooled connection, given back or discarded and errors explained as for any call.
        return self._call(migrate)

    def _no_schema(self, conn: Any) -> StoreError:
        """Why the connection has no current schema: none of its search_path exists, or the
        user may not use the one that does."""
        path = conn.execute("SHOW search_path").fetchone()[0]
        denied = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(string_to_array(replace("
            "replace(%s, '\"$user\"', current_user), ' ', ''), ','))"
            " AND NOT has_schema_privilege(nspname, 'USAGE')",
            (path,),
        ).fetchall()
        if denied:
            return StoreError(
                f"The PostgreSQL user of {self.location} lacks the rights trigger_nb needs (no "
                f"USAGE on schema {denied[0][0]}): {RIGHTS}. Ask the database owner to grant them "
                "(README: Team store)."
            )
        return StoreError(
            f"No schema of the search_path ({path}) of {self.location} exists. Create it "
            "(CREATE SCHEMA ...) or fix the options in the URL."
        )

    def _apply_migrations(self, conn: Any, schema: str) -> int:
        lock_key = int.from_bytes(hashlib.sha1(schema.encode()).digest()[:4], "big", signed=True)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_MIGRATION_LOCK_SPACE, lock_key))
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {MIGRATION_TABLE} ("
                " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            version = conn.execute(f"SELECT coalesce(max(version), 0) FROM {MIGRATION_TABLE}").fetchone()[0]
            for number, statements in MIGRATIONS:
                if number > version:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(f"INSERT INTO {MIGRATION_TABLE} (version) VALUES (%s)", (number,))
                    version = number
        return int(version)

    def _call(self, fn: Callable[[Any, bool], T]) -> T:
        """Run ``fn(conn, in_transaction)`` on this thread's transaction, or on a pooled
        autocommit connection (retried once on a fresh one if it turns out broken)."""
        if self._closed:
            raise StoreError(f"The store at {self.location} is closed.")
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                return fn(conn, True)
            except self._psycopg.Error as exc:
                raise explain(self.url, exc) from None
        for attempt in (1, 2):
            conn = self._pool.get()
            try:
                result = fn(conn, False)
            except self._psycopg.OperationalError as exc:
                broken = conn.broken
                self._pool.discard(conn)
                if broken and attempt == 1:
                    continue  # the server restarted or dropped us: once more on a new connection
                raise explain(self.url, exc) from None
            except self._psycopg.Error as exc:
                self._pool.discard(conn)
                raise explain(self.url, exc) from None
            except BaseException:
                self._pool.discard(conn)
                raise
            self._pool.put(conn)
            return result
        raise AssertionError("unreachable")

    # -- records --------------------------------------------------------------------------
    def get(self, key: str) -> Any | None:
        def read(conn: Any, locked: bool) -> Any:
            lock = " FOR UPDATE" if locked else ""
            return conn.execute(f"SELECT value FROM {TABLE} WHERE key = %s{lock}", (key,)).fetchone()

        row = self._call(read)
        return None if row is None or row[0] is None else json.loads(row[0])

    def scan(self, prefix: str, *, decode: Callable[[str], Any] = json.loads) -> list[tuple[str, Any]]:
        where, params = _range(prefix)

        def read(conn: Any, locked: bool) -> list[Any]:
            lock = " FOR UPDATE" if locked else ""
            query = f"SELECT key, value FROM {TABLE} WHERE {where} AND value IS NOT NULL ORDER BY key{lock}"
            return conn.execute(query, params).fetchall()

        return [(key, decode(value)) for key, value in self._call(read)]

    def put(self, key: str, value: Any) -> None:
        data = encode_record(key, value)  # NaN refused, as by every store
        self._call(
            lambda conn, _: conn.execute(
                f"INSERT INTO {TABLE} (key, value) VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value, blob = NULL",
                (key, data),
            )
        )

    def delete(self, key: str) -> bool:
        return self._call(
            lambda conn, _: conn.execute(f"DELETE FROM {TABLE} WHERE key = %s", (key,)).rowcount > 0
        )

    def get_blob(self, key: str) -> bytes | None:
        def read(conn: Any, locked: bool) -> Any:
            lock = " FOR UPDATE" if locked else ""
            # Binary results: the bytes as they are, not their hex text at twice the size.
            query = f"SELECT blob FROM {TABLE} WHERE key = %s{lock}"
            return conn.execute(query, (key,), binary=True).fetchone()

        row = self._call(read)
        return None if row is None or row[0] is None else bytes(row[0])

    def put_blob(self, key: str, data: bytes) -> None:
        self._call(
            lambda conn, _: conn.execute(
                f"INSERT INTO {TABLE} (key, blob) VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET blob = excluded.blob, value = NULL",
                (key, bytes(data)),
            )
        )

    def put_blob_chunks(self, key: str, chunks: Iterable[bytes]) -> None:
        # COPY streams the row to the server a chunk at a time (hex-escaped bytea in COPY's text
        # format), so the client never holds the whole blob (SPEC §13); an INSERT would need it
        # whole, and escaped, as one parameter. COPY cannot upsert: the old row goes first, in
        # the same transaction.
        field_key = _copy_text(key)

        def copy(conn: Any, _: bool) -> None:
            conn.execute(f"DELETE FROM {TABLE} WHERE key = %s", (key,))
            with conn.cursor() as cursor, cursor.copy(f"COPY {TABLE} (key, blob) FROM STDIN") as rows:
                rows.write(f"{field_key}\t\\\\x".encode(conn.info.encoding))  # client encoding
                for chunk in chunks:
                    rows.write(binascii.hexlify(chunk))  # bytes: no str to encode again
                rows.write(b"\n")

        with self.transaction():
            self._call(copy)

    def keys(self, prefix: str) -> list[str]:
        where, params = _range(prefix)
        rows = self._call(
            lambda conn, _: conn.execute(f"SELECT key FROM {TABLE} WHERE {where} ORDER BY key", params).fetchall()
        )
        return [row[0] for row in rows]

    def delete_prefix(self, prefix: str) -> int:
        where, params = _range(prefix)
        with self.transaction():  # a multi-row write: under the store lock (module docstring)
            return self._call(
                lambda conn, _: conn.execute(f"DELETE FROM {TABLE} WHERE {where}", params).rowcount
            )

    # -- transactions -----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        local = self._local
        if getattr(local, "conn", None) is not None:
            yield  # nested: joins the thread's transaction
            return
        if self._closed:
            raise StoreError(f"The store at {self.location} is closed.")
        psycopg = self._psycopg
        conn = self._pool.get()
        try:
            conn.execute(self._begin)
        except psycopg.OperationalError:
            # A pooled connection the server dropped: retry once on a new one (nothing ran yet).
            self._pool.discard(conn)
            conn = self._pool.get()
            try:
                conn.execute(self._begin)
            except psycopg.Error as exc:
                self._pool.discard(conn)
                raise explain(self.url, exc) from None
        except psycopg.Error as exc:
            self._pool.discard(conn)
            raise explain(self.url, exc) from None
        local.conn = conn
        try:
            yield
        except BaseException:
            local.conn = None
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                self._pool.discard(conn)
            else:
                self._pool.put(conn)
            raise
        local.conn = None
        try:
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._pool.discard(conn)
            raise explain(self.url, exc) from None
        self._pool.put(conn)

    # -- notices ----------------------------------------------------------------------------
    def notify(self, topic: str) -> None:
        self._call(lambda conn, _: conn.execute("SELECT pg_notify(%s, %s)", (self.channel, topic)))

    def subscribe(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        with self._subscribe_lock:
            if self._closed:
                raise StoreError(f"The store at {self.location} is closed.")
            self._subscribers.append(callback)
            if self._listener is None:
                self._listener = Listener(
                    lambda: self._connect(application_name="trigger_nb listener", **KEEPALIVES),
                    self.channel,
                    self._fan_out,
                )
                self._listener.start()

        def unsubscribe() -> None:
            with self._subscribe_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    @property
    def listener(self) -> Listener | None:
        """The LISTEN thread, once someone subscribed (tests drop its connection)."""
        return self._listener

    def _fan_out(self, topic: str | None) -> None:
        with self._subscribe_lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(topic)

    def close(self) -> None:
        with self._subscribe_lock:
            self._closed = True
            listener, self._listener = self._listener, None
            self._subscribers.clear()
        if listener is not None:
            listener.stop()
        self._pool.close()

    def __repr__(self) -> str:
        return f"<PostgresStore {self.location}>"


def _range(prefix: str) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause selecting keys that start with ``prefix`` (an index range)."""
    upper = upper_bound(prefix)
    if upper is None:
        return "TRUE", ()
    return "key >= %s AND key < %s", (prefix, upper)
