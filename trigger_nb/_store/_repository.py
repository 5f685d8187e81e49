"""Where each kind of record lives in a :class:`Store`, and the multi-record operations on them.

Layout (all values JSON records unless noted)::

    run/{run_id}                     the run record (with its lease: who executes it, until when)
    task/{run_id}/{idempotency_key}  one record per task (scanned in one read per execution)
    blob/{run_id}/{idempotency_key}  bytes: a pickled task output (opt-in, SPEC §4.5)
    wake/{run_id}                    "resume me": a task was resolved, maybe by another process
    hist/{run_id}/{n}                execution n's journal: [task id, outcome, attempts] per task
    cb/{task_id}                     callback index: task id -> run id, idempotency key, job id
    idx/job/{job_id}/{run_id}        run index by job: {}
    idx/status/{status}/{run_id}     run index by status: {"job_id", "wake_at"} (not EXECUTING)
    meta/run-index                   {"version": 1} once every run is in the indexes

The run indexes make store-wide questions ("the runs of job X", "the WAITING runs to schedule")
cost what they return, not what the store holds (SPEC §13). :meth:`Repository.save_run` keeps
them in the same transaction as the run record; readers still check each record they load, so
an index entry can only make a query slower, never wrong. A store written before the indexes
existed is indexed once, by the first reader that needs them.

Backend-agnostic: a second backend only implements :class:`Store`.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._exceptions import RunBusyError
from ._base import Store
from ._codec import loads_record

#: A lease not renewed for this long is free (its holder died or hung).
LEASE_TTL = 60.0


#: ``save_run``'s "not read yet" marker (``None`` means "read: there is no such run").
_UNREAD = object()
#: Runs in this status have no status index entry: every execution passes through it, and
#: nobody looks for it often (a query for it reads every run).
_UNINDEXED = "EXECUTING"


def _as_text(text: str) -> str:
    return text


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            # Field 3 is the state; a zombie (Z) or dead (X) process holds nothing.
            state = fh.read().rsplit(b")", 1)[1].split()[0]
            return state not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_holder_id() -> str:
    """``host:pid:nonce`` — unique per client, and lets a same-host peer see if we died."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_dead(holder: str) -> bool:
    """Whether ``holder`` (a :func:`new_holder_id`) is a process of this host that is gone; a
    holder on another host is never known to be dead."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return not _pid_alive(int(pid_text))


class Repository:
    """Typed access to runs, tasks and leases on top of a :class:`Store`."""

    def __init__(self, store: Store, *, holder: str | None = None) -> None:
        self.store = store
        self.holder = holder or new_holder_id()

    # -- runs ---------------------------------------------------------------------------
    def load_run(self, run_id: str) -> dict[str, Any] | None:
        return self.store.get(f"run/{run_id}")

    def save_run(self, run: dict[str, Any], *, stored: Any = _UNREAD) -> None:
        """Store the run record and move its index entries, in one transaction.

        ``stored``: the record as it is in the store right now (``None`` if absent), when the
        caller read it in its own open transaction: saves reading it again."""
        run_id, status, job_id = run["id"], run["status"], run.get("job_id")
        with self.store.transaction():
            old = self.store.get(f"run/{run_id}") if stored is _UNREAD else stored
            if old is None and job_id is not None:
                self.store.put_new(f"idx/job/{job_id}/{run_id}", {})
            old_status = None if old is None else old["status"]
            wake_at = run.get("wake_at")
            if old_status != status or (old is not None and old.get("wake_at") != wake_at):
                if old_status is not None and old_status != _UNINDEXED and old_status != status:
                    self.store.delete(f"idx/status/{old_status}/{run_id}")
                if status != _UNINDEXED:
                    entry = {"job_id": job_id, "wake_at": wake_at}
                    if old_status == status:  # a new wake time: the entry exists
                        self.store.put(f"idx/status/{status}/{run_id}", entry)
                    else:
                        self.store.put_new(f"idx/status/{status}/{run_id}", entry)
            self.store.put(f"run/{run_id}", run)

    def list_runs(
        self, *, job_id: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Run records, optionally only those of ``job_id`` and/or in ``status``. With a
        filter, reads only the matching runs (through the indexes); without, every run."""
        if (job_id is None and status is None) or (job_id is None and status == _UNINDEXED):
            return [
                record
                for _, record in self.store.scan("run/")
                if status is None or record["status"] == status
            ]
        self._ensure_run_index()
        candidates: set[str] | None = None
        if job_id is not None:
            candidates = {key.rsplit("/", 1)[1] for key in self.store.keys(f"idx/job/{job_id}/")}
        if status is not None and status != _UNINDEXED:
            by_status = {key.rsplit("/", 1)[1] for key in self.store.keys(f"idx/status/{status}/")}
            candidates = by_status if candidates is None else candidates & by_status
        assert candidates is not None
        records = []
        for run_id in sorted(candidates):
            record = self.load_run(run_id)
            if (
                record is not None
                and (job_id is None or record["job_id"] == job_id)
                and (status is None or record["status"] == status)
            ):
                records.append(record)
        return records

    def waiting_runs(self) -> list[tuple[str, str, float | None]]:
        """``(run_id, job_id, wake_at)`` of every WAITING run, from the status index alone
        (callers re-check the run record before acting on it)."""
        self._ensure_run_index()
        prefix = "idx/status/WAITING/"
        return [
            (key[len(prefix) :], entry["job_id"], entry.get("wake_at"))
            for key, entry in self.store.scan(prefix)
        ]

    _indexed = False

    def _ensure_run_index(self) -> None:
        """Index a store written before the run indexes existed (once per store, ever)."""
        if self._indexed or self.store.get("meta/run-index") is not None:
            self._indexed = True
            return
        with self.store.transaction():
            if self.store.get("meta/run-index") is None:
                for prefix in ("idx/job/", "idx/status/"):
                    self.store.delete_prefix(prefix)
                for run_id, run in self.store.scan("run/"):
                    run_id = run_id[len("run/") :]
                    self.store.put(f"idx/job/{run.get('job_id')}/{run_id}", {})
                    if run["status"] != _UNINDEXED:
                        self.store.put(
                            f"idx/status/{run['status']}/{run_id}",
                            {"job_id": run.get("job_id"), "wake_at": run.get("wake_at")},
                        )
                self.store.put("meta/run-index", {"version": 1})
        self._indexed = True

    def forget(self, run_id: str) -> int:
        """Delete a run and everything under it; returns how many records went."""
        with self.store.transaction():
            count = 0
            run = self.load_run(run_id)
            if run is not None:
                self.store.delete(f"idx/job/{run.get('job_id')}/{run_id}")
                self.store.delete(f"idx/status/{run['status']}/{run_id}")
            for task in self.load_tasks(run_id):
                count += self.store.delete(f"cb/{task['id']}")
            # kv/run/...: a later run with the same (derived) id must not see stale values.
            for prefix in (f"task/{run_id}/", f"blob/{run_id}/", f"hist/{run_id}/", f"kv/run/{run_id}/"):
                count += self.store.delete_prefix(prefix)
            self.store.delete(f"wake/{run_id}")
            count += self.store.delete(f"run/{run_id}")
        return count

    # -- tasks --------------------------------------------------------------------------
    def load_tasks(self, run_id: str) -> list[dict[str, Any]]:
        """All task records of a run, in first-seen order, in one store read."""
        tasks = [record for _, record in self.store.scan(f"task/{run_id}/", decode=loads_record)]
        tasks.sort(key=lambda t: t.get("seq", 0))
        return tasks

    def load_task_texts(self, run_id: str) -> dict[str, str]:
        """Every task record of a run as its stored JSON text, by idempotency key, in one read.

        An execution decodes a record only when its task is reached: a replayed task's record
        is decoded, used and dropped, so a run of 50,000 tasks never holds 50,000 dicts for the
        garbage collector to walk (SPEC §13: replay cost flat in the run's size)."""
        prefix = f"task/{run_id}/"
        n = len(prefix)
        return {key[n:]: text for key, text in self.store.scan(prefix, decode=_as_text)}

    def load_task(self, run_id: str, idempotency_key: str) -> dict[str, Any] | None:
        return self.store.get(f"task/{run_id}/{idempotency_key}")

    def save_task(
        self,
        task: dict[str, Any],
        *,
        blob: bytes | Iterable[bytes] | None = None,
        index_callback: bool = False,
        job_id: str | None = None,
        new: bool = False,
    ) -> None:
        """Store a task record (``None``/``False`` fields left out: smaller records replay
        faster). ``blob``: its output as bytes (pickled) or byte chunks (a large JSON output,
        streamed to the store); ``index_callback``: register its callback id
        (with the run's ``job_id``, so a receiver knows whether it runs that job itself);
        ``new``: the record was never stored (a cheaper write, see ``Store.put_new``)."""
        key = f"task/{task['run_id']}/{task['idempotency_key']}"
        lean = {k: v for k, v in task.items() if v is not None and v is not False}
        if blob is None and not index_callback:
            if new:
                self.store.put_new(key, lean)
            else:
                self.store.put(key, lean)
            return
        with self.store.transaction():
            self.store.put(key, lean)
            if isinstance(blob, bytes):
                self.store.put_blob(f"blob/{task['run_id']}/{task['idempotency_key']}", blob)
            elif blob is not None:
                self.store.put_blob_chunks(f"blob/{task['run_id']}/{task['idempotency_key']}", blob)
            if index_callback:
                self.store.put(
                    f"cb/{task['id']}",
                    {"run_id": task["run_id"], "idempotency_key": task["idempotency_key"], "job_id": job_id},
                )

    def update_task(
        self,
        task: dict[str, Any],
        condition: Callable[[dict[str, Any]], bool],
        changes: dict[str, Any],
    ) -> bool:
        """Atomically apply ``changes`` to the stored task if ``condition(stored)`` holds."""
        with self.store.transaction():
            stored = self.load_task(task["run_id"], task["idempotency_key"])
            if stored is None or not condition(stored):
                return False
            stored.update(changes)
            self.store.put(f"task/{task['run_id']}/{task['idempotency_key']}", stored)
            return True

    def delete_task(self, task: dict[str, Any]) -> None:
        with self.store.transaction():
            self.store.delete(f"task/{task['run_id']}/{task['idempotency_key']}")
            self.store.delete(f"blob/{task['run_id']}/{task['idempotency_key']}")
            self.store.delete(f"cb/{task['id']}")

    def load_blob(self, task: dict[str, Any]) -> bytes | None:
        return self.store.get_blob(f"blob/{task['run_id']}/{task['idempotency_key']}")

    def find_callback_task(self, task_id: str) -> dict[str, Any] | None:
        ref = self.store.get(f"cb/{task_id}")
        if ref is None:
            return None
        return self.load_task(ref["run_id"], ref["idempotency_key"])

    # -- execution journals (what each execution did with each task) ----------------------
    def save_journal(self, run_id: str, number: int, journal: list[Any], *, keep: int) -> None:
        """Store execution ``number``'s journal; drop the one ``keep`` executions older."""
        self.store.put_new(f"hist/{run_id}/{number:08d}", journal)
        if number > keep:
            self.store.delete(f"hist/{run_id}/{number - keep:08d}")

    def load_journal(self, run_id: str, number: int) -> list[Any]:
        return self.store.get(f"hist/{run_id}/{number:08d}") or []

    def load_journals(self, run_id: str) -> dict[int, list[Any]]:
        return {int(key.rsplit("/", 1)[1]): journal for key, journal in self.store.scan(f"hist/{run_id}/")}

    # -- wake-up markers (cross-process resumption) ---------------------------------------
    def mark_wake(self, run_id: str, at: float) -> None:
        """Durably ask whichever process runs the run's job to resume it (and tell the
        processes watching a store that pushes notices to look now)."""
        self.store.put(f"wake/{run_id}", {"at": at})
        self.store.notify("wake")

    def clear_wake(self, run_id: str) -> None:
        self.store.delete(f"wake/{run_id}")

    def pending_wakes(self) -> list[str]:
        return [key.split("/", 1)[1] for key in self.store.keys("wake/")]

    # -- leases (SPEC §10: one executing process per run) ---------------------------------
    # The lease lives in the run record (``run["lease"]``), which an execution reads and writes
    # in its first and last transactions anyway: taking and releasing it costs no extra query.
    def take_lease(self, run: dict[str, Any], *, ttl: float = LEASE_TTL) -> None:
        """Put our lease into ``run`` (the caller saves it, in its transaction) or raise
        :class:`RunBusyError` naming the live holder."""
        now = time.time()
        lease = run.get("lease")
        if lease and lease["holder"] != self.holder and lease["expires_at"] > now:
            if not holder_dead(lease["holder"]):
                raise RunBusyError(
                    f"Run {run['id']} is being executed by another process ({lease['holder']}). "
                    "Wait for it to finish or suspend (use --wait / run.wait()), or stop that "
                    f"process; its lease expires by itself within {int(ttl)} s if it died.",
                    holder=lease["holder"],
                )
        run["lease"] = {"holder": self.holder, "expires_at": now + ttl}

    def acquire_lease(self, run_id: str, *, ttl: float = LEASE_TTL) -> None:
        """Take the stored run's lease or raise :class:`RunBusyError` naming the live holder."""
        with self.store.transaction():
            run = self.load_run(run_id)
            if run is not None:
                self.take_lease(run, ttl=ttl)
                self.save_run(run)

    def renew_lease(self, run_id: str, *, ttl: float = LEASE_TTL) -> None:
        with self.store.transaction():
            run = self.load_run(run_id)
            lease = (run or {}).get("lease")
            if run is not None and (lease is None or lease["holder"] == self.holder):
                run["lease"] = {"holder": self.holder, "expires_at": time.time() + ttl}
                self.save_run(run)

    def release_lease(self, run_id: str) -> None:
        with self.store.transaction():
            run = self.load_run(run_id)
            lease = (run or {}).get("lease")
            if run is not None and lease is not None and lease["holder"] == self.holder:
                run["lease"] = None
                self.save_run(run)
