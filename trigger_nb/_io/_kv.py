"""The key-value store (SPEC §3, §6.8; v2 §5.7): inside runs as tasks, outside runs directly.

Three namespaces, as v2's SDK keyed them:

* ``env`` — the whole store directory (every job and run that opens it);
* ``job`` — one job id;
* ``run`` — one run.

Record layout (a new key family next to the repository's, SPEC §10)::

    kv/env/{store_key}             {"value": <JSON value>, "updated_at": epoch seconds}
    kv/job/{job_id}/{store_key}    same
    kv/run/{run_id}/{store_key}    same

Job ids are slugified and run ids are ``run_<hex>`` (neither holds ``/``), so a store key may
contain any character without two namespaces ever sharing a record.

Values follow ``JSON.stringify`` (v2 stored ``JSON.stringify(value)``): dates become ISO strings,
tuples lists, NaN/Infinity ``null``; anything else raises :class:`PayloadError` naming the path
of the offending value, before anything is stored. ``set`` returns the value as stored, so the
caller sees the same data a later ``get`` returns.

Inside a run (``io.store.env.get("cache-key", "store-key")``) every call is a task named
"Key-Value Store Get/Set/Delete/Has": like any task, a ``get`` is **pinned at its first
execution** (a replay returns the value read then, not the current one; use a new cache key to
read again). Outside runs (``client.store.env.get("store-key")``) the calls are plain and
synchronous and take no cache key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._engine import Execution, TaskSpec
from .._exceptions import ConfigError, PayloadError
from .._keys import slugify_job_id
from .._serde import json_tree

if TYPE_CHECKING:
    from .._store import Store

KV_PREFIX = "kv/"
NAMESPACES = ("env", "job", "run")

# v2's wording inside runs (§5.7)
_INSIDE_KEY_MESSAGE = "Please provide a non-empty key when accessing the store from inside a run."
_OUTSIDE_KEY_MESSAGE = "Please provide a non-empty string key when accessing the store."

#: method → (task name, icon): v2 §5.7.
_TASKS = {
    "get": ("Key-Value Store Get", "database-export"),
    "set": ("Key-Value Store Set", "database-plus"),
    "delete": ("Key-Value Store Delete", "database-minus"),
    "has": ("Key-Value Store Has", "database-search"),
}


def kv_prefix(namespace: str, scope: str | None = None) -> str:
    """The record-key prefix of one namespace: ``kv/env/``, ``kv/job/{id}/``, ``kv/run/{id}/``."""
    if namespace == "env":
        return f"{KV_PREFIX}env/"
    if namespace in ("job", "run") and scope:
        return f"{KV_PREFIX}{namespace}/{scope}/"
    raise ConfigError(f"Unknown key-value namespace {namespace!r} (scope {scope!r}).")


def _not_json(path: str, obj: Any, reason: str) -> Any:
    raise PayloadError(
        f"A key-value store value must be JSON data: {path} {reason}. Store dicts, lists, "
        "strings, numbers, booleans or None (dates become ISO strings)."
    )


def encode_value(value: Any) -> Any:
    """``value`` as the JSON data the store keeps (``JSON.stringify`` rules), or PayloadError."""
    try:
        return json_tree(value, root="value", dates=True, nan_to_null=True, on_bad=_not_json)
    except RecursionError:
        raise PayloadError(
            "A key-value store value is nested too deeply to store as JSON."
        ) from None


class KeyValueRecords:
    """Plain synchronous access to one namespace of the store (no tasks, no cache keys).

    This is what ``client.store.env`` and ``client.store.job(job_id)`` are, and what the
    tasks of ``io.store`` call. Thread-safe as the :class:`Store` is.
    """

    def __init__(self, store: Store, namespace: str, scope: str | None = None) -> None:
        self._store = store
        self.namespace = namespace
        self.scope = scope
        self._prefix = kv_prefix(namespace, scope)

    def _key(self, store_key: Any) -> str:
        if not isinstance(store_key, str) or not store_key:
            hint = (
                " (outside a run there is no cache key: pass only the store key)"
                if isinstance(store_key, (list, tuple))
                else ""
            )
            raise ConfigError(f"{_OUTSIDE_KEY_MESSAGE}{hint} Got {store_key!r}.")
        return self._prefix + store_key

    def get(self, store_key: str) -> Any:
        """The stored value of ``store_key``, or ``None`` when there is none."""
        record = self._store.get(self._key(store_key))
        return None if record is None else record.get("value")

    def set(self, store_key: str, value: Any) -> Any:
        """Store ``value`` (JSON data; ``PayloadError`` otherwise) and return it as stored."""
        key = self._key(store_key)
        data = encode_value(value)
        with self._store.transaction():
            self._store.put(key, {"value": data, "updated_at": time.time()})
        return data

    def delete(self, store_key: str) -> bool:
        """Delete ``store_key``; ``True`` if it existed, ``False`` if it was missing."""
        key = self._key(store_key)
        with self._store.transaction():
            return self._store.delete(key)

    def has(self, store_key: str) -> bool:
        """Whether ``store_key`` holds a value."""
        return self._store.get(self._key(store_key)) is not None

    def keys(self) -> list[str]:
        """The store keys of this namespace, sorted."""
        n = len(self._prefix)
        return sorted(key[n:] for key in self._store.keys(self._prefix))

    def __repr__(self) -> str:
        scope = f" {self.scope}" if self.scope else ""
        return f"<key-value store {self.namespace}{scope}>"


class ClientKeyValueStore:
    """``client.store`` (SPEC §3): the key-value store outside runs, synchronous.

    ``client.store.env.set("k", 1)``, ``client.store.job("my-job").get("k")``,
    ``client.store.run(run_id).has("k")``. These are the same records ``io.store.env`` /
    ``io.store.job`` / ``io.store.run`` use inside runs.
    """

    def __init__(self, store_getter: Callable[[], Store]) -> None:
        self._store_getter = store_getter  # the store opens lazily, on first use

    @property
    def env(self) -> KeyValueRecords:
        """The namespace shared by everything that opens this store directory."""
        return KeyValueRecords(self._store_getter(), "env")

    def job(self, job_id: str) -> KeyValueRecords:
        """The namespace of job ``job_id`` (slugified as job ids are)."""
        return KeyValueRecords(self._store_getter(), "job", slugify_job_id(job_id))

    def run(self, run_id: str) -> KeyValueRecords:
        """The namespace of run ``run_id``."""
        if not isinstance(run_id, str) or not run_id or "/" in run_id:
            raise ConfigError(f"A run id must be a non-empty string without '/', got {run_id!r}.")
        return KeyValueRecords(self._store_getter(), "run", run_id)


class TaskKeyValueStore:
    """One namespace of ``io.store`` inside a run: every call is a task (v2 §5.7).

    Each method takes the task's ``cache_key`` first, then the store key.
    """

    def __init__(self, execution: Execution, records: KeyValueRecords) -> None:
        self._execution = execution
        self._records = records

    async def _task(
        self, method: str, cache_key: Any, store_key: Any, fn: Callable[[], Any], **params: Any
    ) -> Any:
        from ._core import _check_cache_key  # lazy: _io imports this module

        _check_cache_key(cache_key)
        if not isinstance(store_key, str) or not store_key:
            raise ConfigError(f"{_INSIDE_KEY_MESSAGE} Got {store_key!r}.")
        name, icon = _TASKS[method]
        namespace = self._records.namespace

        async def run(task: Any) -> Any:  # async: one fast store call, no worker-thread hop
            return fn()

        spec = TaskSpec(
            cache_key=cache_key,
            fn=run,
            name=name,
            icon=icon,
            params={"namespace": namespace, "key": store_key, **params},
            properties=[
                {"label": "namespace", "text": namespace},
                {"label": "key", "text": store_key},
            ],
            style={"style": "minimal"},
            kind="kv",
        )
        return await self._execution.run_task(spec)

    async def get(self, cache_key: Any, store_key: str) -> Any:
        """The value of ``store_key`` (``None`` if missing), read once and pinned."""
        return await self._task("get", cache_key, store_key, lambda: self._records.get(store_key))

    async def set(self, cache_key: Any, store_key: str, value: Any) -> Any:
        """Store ``value`` (JSON data; ``PayloadError`` before any task otherwise); return it
        as stored."""
        data = encode_value(value)
        return await self._task(
            "set", cache_key, store_key, lambda: self._records.set(store_key, data), value=data
        )

    async def delete(self, cache_key: Any, store_key: str) -> bool:
        """Delete ``store_key``: ``True`` if it existed, ``False`` if it was missing."""
        return bool(
            await self._task(
                "delete", cache_key, store_key, lambda: self._records.delete(store_key)
            )
        )

    async def has(self, cache_key: Any, store_key: str) -> bool:
        """Whether ``store_key`` holds a value (pinned at the first execution)."""
        return bool(
            await self._task("has", cache_key, store_key, lambda: self._records.has(store_key))
        )

    def __repr__(self) -> str:
        return f"<io.store.{self._records.namespace}>"


class TaskKeyValueStores:
    """``io.store``: ``.env``, ``.job`` (this run's job) and ``.run`` (this run)."""

    def __init__(self, execution: Execution, store: Store, *, job_id: str, run_id: str) -> None:
        self.env = TaskKeyValueStore(execution, KeyValueRecords(store, "env"))
        self.job = TaskKeyValueStore(execution, KeyValueRecords(store, "job", job_id))
        self.run = TaskKeyValueStore(execution, KeyValueRecords(store, "run", run_id))


__all__ = [
    "KV_PREFIX",
    "NAMESPACES",
    "ClientKeyValueStore",
    "KeyValueRecords",
    "TaskKeyValueStore",
    "TaskKeyValueStores",
    "encode_value",
    "kv_prefix",
]
