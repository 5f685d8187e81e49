"""Storage: the :class:`Store` seam, its backends, and the record layout (:class:`Repository`).

May import: the shared leaves (``_exceptions``) only; everything else sits above the store.
"""

from .._config import is_store_url
from ._base import Store
from ._memory import MemoryStore
from ._repository import LEASE_TTL, Lease, Repository, holder_dead


def open_store(location: str) -> Store:
    """Open the store at ``location``: a ``postgresql://`` URL (the team store; the schema is
    created on first use) or a directory (diskcache; created if needed)."""
    # Each backend's driver is imported only when a store of that kind is opened.
    if is_store_url(location):
        from ._postgres import PostgresStore

        return PostgresStore(location)
    from ._diskcache import DiskcacheStore

    return DiskcacheStore(location)


def store_exists(directory: str) -> bool:
    """Is there a store in ``directory``? Opening one creates it; read-only callers (the CLI)
    ask this first so that a mistyped path is reported, not turned into an empty store."""
    from ._diskcache import database_exists

    return database_exists(directory)


__all__ = [
    "LEASE_TTL",
    "Lease",
    "MemoryStore",
    "Repository",
    "Store",
    "holder_dead",
    "open_store",
    "store_exists",
]
