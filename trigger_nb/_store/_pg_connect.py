"""Connections to the PostgreSQL store: connecting, a small pool, and errors users can act on.

Only the PostgreSQL backend imports this module (and psycopg). ``psycopg`` is an optional
dependency: ``pip install "trigger_nb[postgres]"``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._config import mask_url
from .._exceptions import StoreError

if TYPE_CHECKING:
    import psycopg

#: Bounded defaults (a URL may override them): never hang for minutes on an unreachable host.
CONNECT_DEFAULTS = {"connect_timeout": "10", "application_name": "trigger_nb"}

#: What the database user needs (README, and every "no rights" message).
RIGHTS = (
    "the user needs CONNECT on the database and USAGE on its schema; the first use creates "
    "trigger_nb's two tables, which needs CREATE on the schema (or let the owner open the store "
    "once); afterwards SELECT, INSERT, UPDATE, DELETE on trigger_nb_records and SELECT on "
    "trigger_nb_migrations are enough"
)


def import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "The PostgreSQL store needs psycopg 3: pip install \"trigger_nb[postgres]\"."
        ) from None
    return psycopg


def conninfo(url: str, **extra: str) -> str:
    """``url`` plus :data:`CONNECT_DEFAULTS` and ``extra`` where the URL does not set them."""
    psycopg = import_psycopg()
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreError(
            f"The PostgreSQL store URL {mask_url(url)!r} is malformed ({exc}). Use "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE."
        ) from None
    defaults = {k: v for k, v in {**CONNECT_DEFAULTS, **extra}.items() if k not in given}
    return str(psycopg.conninfo.make_conninfo(url, **defaults))


def explain(url: str, exc: BaseException) -> StoreError:
    """A :class:`StoreError` naming the store (password masked), what failed and what to do."""
    where = mask_url(url)
    text = " ".join(str(exc).split())
    state = getattr(exc, "sqlstate", None)
    if state in ("28P01", "28000") or "password authentication failed" in text or "no password supplied" in text:
        return StoreError(
            f"PostgreSQL refused the user or password in {where} ({text}). Check the user name "
            "and password in the URL (or PGPASSWORD / ~/.pgpass), and that pg_hba.conf lets this "
            "user connect from this machine."
        )
    if state == "3D000" or ("database" in text and "does not exist" in text):
        return StoreError(
            f"The database in {where} does not exist ({text}). Create it (e.g. `createdb "
            "trigger_nb`, or CREATE DATABASE trigger_nb;) or fix the database name in the URL."
        )
    if state == "42501" or "permission denied" in text:
        return StoreError(
            f"The PostgreSQL user of {where} lacks the rights trigger_nb needs ({text}): "
            f"{RIGHTS}. Ask the database owner to grant them (README: Team store)."
        )
    if state == "3F000" or "no schema has been selected" in text:
        return StoreError(
            f"The schema named by the search_path of {where} does not exist ({text}). Create "
            "it (CREATE SCHEMA ...) or fix the options in the URL."
        )
    psycopg = import_psycopg()
    if isinstance(exc, psycopg.OperationalError):
        return StoreError(
            f"Cannot reach the PostgreSQL store at {where} ({text}). Check the host and port in "
            "the URL, that the server runs and accepts TCP connections from this machine "
            "(listen_addresses, pg_hba.conf, firewalls); then run the cell again."
        )
    return StoreError(f"The PostgreSQL store at {where} failed ({text}).")


class Pool:
    """A thread-safe pool of autocommit connections, sized for a kernel.

    A kernel has a handful of threads that touch the store (its loop, the receiver, worker
    threads of sync tasks), so the pool keeps up to ``max_idle`` idle connections and opens
    one more whenever all are busy; no thread ever waits for a connection (a wait could
    deadlock a thread that holds the store lock in a transaction). No background threads:
    a connection found broken is dropped, and so are the idle ones, which a server restart
    broke too (:meth:`discard`).
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], *, max_idle: int = 4) -> None:
        self._connect = connect
        self._max_idle = max_idle
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> psycopg.Connection[Any]:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def put(self, conn: psycopg.Connection[Any]) -> None:
        from psycopg.pq import TransactionStatus

        healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        if healthy:
            with self._lock:
                if not self._closed and len(self._idle) < self._max_idle:
                    self._idle.append(conn)
                    return
        conn.close()

    def discard(self, conn: psycopg.Connection[Any]) -> None:
        """Drop ``conn`` (it failed); if it broke, drop the idle ones as well."""
        broken = conn.broken or conn.closed
        conn.close()
        if broken:
            with self._lock:
                idle, self._idle = self._idle, []
            for other in idle:
                other.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
