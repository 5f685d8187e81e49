"""Helpers for users' own tests of jobs: an in-memory store and a ready client.

    from trigger_nb.testing import memory_client

    with memory_client() as client:
        @client.define_job(id="my-job")
        async def my_job(payload, io, ctx): ...
        run = client.invoke_sync("my-job", {"x": 1})
        assert run.result(timeout=5) == ...
"""

from __future__ import annotations

from ._client import TriggerClient
from ._store import MemoryStore


def memory_client() -> TriggerClient:
    """A :class:`TriggerClient` on a fresh in-memory store (use it as a context manager)."""
    return TriggerClient(storage=MemoryStore())


__all__ = ["MemoryStore", "memory_client"]
