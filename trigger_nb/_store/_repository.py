"""Where each kind of record lives in a :class:`Store`, and the multi-record operations on them.

Layout (all values JSON records unless noted)::

    run/{run_id}                     the run record (with its lease: who executes it, until when)
    task/{run_id}/{idempotency_key}  one record per task (scanned in one read per execution)
    blob/{run_id}/{idempotency_key}  bytes: a pickled task output (opt-in, SPEC §4.5)
    wake/{run_id}                    "resume me": a task was resolved, maybe by another process
    hist/{run_id}/{n}                execution n's journal: [task id, outcome, attempts, *notes]
    cb/{task_id}                     callback index: task id -> run id, idempotency key, job id
    exec/{run_id}                    the run is EXECUTING (found by a scan of keys: orphans)
    fence/{run_id}                   the current lease's holder and fence: guards task writes
    idx/job/{job_id}/{run_id}        run index by job: {}
    idx/status/{status}/{run_id}     run index by status: {"job_id", "wake_at"} (not EXECUTING)
    meta/run-index                   {"version": 1} once every run is in the indexes

``cb/``, ``exec/``, ``fence/``, ``hist/``, ``idx/`` and ``wake/`` are the bookkeeping records
(``BOOKKEEPING_PREFIXES``: a backend may store them apart, where they cost less to write).

The run indexes make store-wide questions ("the runs of job X", "the WAITING runs to schedule")
cost what they return, not what the store holds (SPEC §13). :meth:`Repository.save_run` keeps
them in the same transaction as the run record; readers still check each record they load, so
an index entry can only make a query slower, never wrong. A store written before the indexes
existed is indexed once, by the first reader that needs them.

Backend-agnostic: a second backend only implements :class:`Store`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._exceptions import RunBusyError, StoreError
from .._keys import task_id_for
from ._base import Store
from ._codec import loads_exact, loads_record

log = logging.getLogger("trigger_nb")

#: A lease not renewed for this long is free (its holder died, hung or was stopped).
LEASE_TTL = 60.0


#: ``save_run``'s "not read yet" marker (``None`` means "read: there is no such run").
_UNREAD = object()
#: Runs in this status have no status index entry: every execution passes through it, and
#: nobody looks for it often (a query for it reads every run).
_UNINDEXED = "EXECUTING"


def _as_text(text: str) -> str:
    return text


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("ascii", "replace").strip()
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of a process from ``/proc/<pid>/stat``, or ``None`` if absent."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text.rsplit(")", 1)[-1].split()  # the command name may hold spaces and ")"
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _machine() -> str:
    """What must be equal for a peer's PID to mean anything here: the kernel boot (boot id)
    and the PID namespace (a container sees other PIDs). Empty where it cannot be read."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        namespace = ""
    return f"{boot[:8]}.{namespace}" if boot and namespace else ""


def new_holder_id() -> str:
    """``host:pid:nonce:start:machine`` — unique per client; lets a peer that shares this
    kernel and PID namespace tell for sure that we died (SPEC §10: never the PID alone)."""
    stat = _proc_stat(os.getpid())
    start = stat[1] if stat else ""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}:{start}:{_machine()}"


def holder_dead(holder: str) -> bool:
    """True only when ``holder`` certainly no longer runs: same host, same boot, same PID
    namespace, and its PID is gone, a zombie, or now another process (another start time).
    Anything else — another machine or container, an old-style id, unreadable ``/proc`` —
    is judged by the lease's expiry alone."""
    parts = holder.split(":")
    if len(parts) != 5:
        return False
    host, pid, _nonce, start, machine = parts
    if host != socket.gethostname() or not machine or machine != _machine() or not pid.isdigit():
        return False
    stat = _proc_stat(int(pid))
    return stat is None or stat[0] in ("Z", "X") or stat[1] != start


class Lease:
    """The lease an execution holds: ``fence`` is the run's lease generation when it was taken.
    Every write of the execution is checked against it (:meth:`Repository.check_lease`)."""

    __slots__ = ("expires_at", "fence", "holder", "run_id")

    def __init__(self, run_id: str, holder: str, fence: int, expires_at: float) -> None:
        self.run_id = run_id
        self.holder = holder
        self.fence = fence
        self.expires_at = expires_at

    def mirror(self) -> dict[str, Any]:
        """The ``fence/{run_id}`` record while this lease is the run's: what a task write is
        guarded by (:meth:`Repository.save_task`), without reading the run record."""
        return {"holder": self.holder, "fence": self.fence}

    def held_in(self, run: dict[str, Any] | None) -> bool:
        stored = (run or {}).get("lease") or {}
        return stored.get("holder") == self.holder and stored.get("fence") == self.fence

    def lost(self, run: dict[str, Any] | None) -> RunBusyError:
        taker = str(((run or {}).get("lease") or {}).get("holder") or "")
        if run is None:
            why = "the run was forgotten meanwhile"
        else:
            why = f"{taker} took it over" if taker else "it was taken over and released meanwhile"
        return RunBusyError(
            f"Run {self.run_id}: this process lost the run's lease ({why}), so this execution "
            "stops without writing: the lease was not renewed in time (the process was stopped "
            "or suspended, or the machine slept). The run goes on where it is executed now.",
            holder=taker,
        )


class _Undecodable:
    """Stands for a stored text that is not a record (see :func:`_tolerant`)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _tolerant(decode: Callable[[str], Any]) -> Callable[[str], Any]:
    """``decode`` that returns an :class:`_Undecodable` instead of raising, so that one bad
    record does not abort a scan of many."""

    def decode_or_mark(text: str) -> Any:
        try:
            return decode(text)
        except ValueError as exc:  # json and orjson decode errors are ValueErrors
            return _Undecodable(exc)

    return decode_or_mark


def _undecodable(store: Store, run_id: str, key: str, error: BaseException) -> StoreError:
    return StoreError(
        f"Run {run_id}: the record {key!r} in the store at {store.location!r} cannot be decoded "
        f"({error}). Forget the run (`trigger-nb forget {run_id}`, client.forget) to remove it; "
        "other runs are not affected."
    )


class Repository:
    """Typed access to runs, tasks and leases on top of a :class:`Store`."""

    def __init__(
        self, store: Store, *, holder: str | None = None, lease_ttl: float = LEASE_TTL
    ) -> None:
        self.store = store
        self.holder = holder or new_holder_id()
        #: Seconds a lease lasts unless renewed (SPEC §10); ``TRIGGER_NB_LEASE_TTL``.
        self.lease_ttl = lease_ttl

    # -- runs ---------------------------------------------------------------------------
    def load_run(self, run_id: str) -> dict[str, Any] | None:
        """The run record, or ``None``; :class:`StoreError` naming the run if it cannot be
        decoded (SPEC §10: that one run fails, the others and ``forget`` keep working)."""
        try:
            return self.store.get(f"run/{run_id}")
        except ValueError as exc:
            raise _undecodable(self.store, run_id, f"run/{run_id}", exc) from None

    def save_run(self, run: dict[str, Any], *, stored: Any = _UNREAD) -> None:
        """Store the run record and move its index entries, in one transaction.

        ``stored``: the record as it is in the store right now (``None`` if absent), when the
        caller read it in its own open transaction: saves reading it again."""
        run_id, status, job_id = run["id"], run["status"], run.get("job_id")
        with self.store.transaction():
            old = self._stored_run(run_id) if stored is _UNREAD else stored
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
            return [r for r in self._scan_runs() if status is None or r["status"] == status]
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
            record = self._stored_run(run_id)
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
                for run in self._scan_runs():
                    run_id = run["id"]
                    self.store.put(f"idx/job/{run.get('job_id')}/{run_id}", {})
                    if run["status"] != _UNINDEXED:
                        self.store.put(
                            f"idx/status/{run['status']}/{run_id}",
                            {"job_id": run.get("job_id"), "wake_at": run.get("wake_at")},
                        )
                self.store.put("meta/run-index", {"version": 1})
        self._indexed = True

    def _scan_runs(self) -> list[dict[str, Any]]:
        """Every decodable run record; an undecodable one is left out with a warning that
        names it (reading it with :meth:`load_run` gives the :class:`StoreError`)."""
        runs = []
        for key, record in self.store.scan("run/", decode=_tolerant(loads_exact)):
            if isinstance(record, _Undecodable):
                log.warning("%s", _undecodable(self.store, key[4:], key, record.error))
            else:
                runs.append(record)
        return runs

    def _stored_run(self, run_id: str) -> dict[str, Any] | None:
        """The stored run record; ``None`` if absent or undecodable (index upkeep only)."""
        try:
            return self.store.get(f"run/{run_id}")
        except ValueError:
            return None

    def forget(self, run_id: str) -> int:
        """Delete a run and everything under it; returns how many records went."""
        with self.store.transaction():
            count = 0
            for key, task in self.store.scan(f"task/{run_id}/", decode=_tolerant(loads_record)):
                # An undecodable record goes too: its id is derived from its key.
                task_id = task_id_for(key.rsplit("/", 1)[1]) if isinstance(task, _Undecodable) else task["id"]
                count += self.store.delete(f"cb/{task_id}")
            # kv/run/...: a later run with the same (derived) id must not see stale values.
            for prefix in (f"task/{run_id}/", f"blob/{run_id}/", f"hist/{run_id}/", f"kv/run/{run_id}/"):
                count += self.store.delete_prefix(prefix)
            self.store.delete(f"wake/{run_id}")
            self.store.delete(f"exec/{run_id}")
            self.store.delete(f"fence/{run_id}")
            run = self._stored_run(run_id)
            if run is not None:
                self.store.delete(f"idx/job/{run.get('job_id')}/{run_id}")
                self.store.delete(f"idx/status/{run['status']}/{run_id}")
            count += self.store.delete(f"run/{run_id}")
        return count

    # -- tasks --------------------------------------------------------------------------
    def load_tasks(self, run_id: str) -> list[dict[str, Any]]:
        """All task records of a run, in first-seen order, in one store read."""
        tasks = []
        for key, record in self.store.scan(f"task/{run_id}/", decode=_tolerant(loads_record)):
            if isinstance(record, _Undecodable):
                raise _undecodable(self.store, run_id, key, record.error)
            tasks.append(record)
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

    def undecodable(self, run_id: str, idempotency_key: str, error: BaseException) -> StoreError:
        """The error for a task record of ``run_id`` that cannot be decoded (names the run)."""
        return _undecodable(self.store, run_id, f"task/{run_id}/{idempotency_key}", error)

    def load_task(self, run_id: str, idempotency_key: str) -> dict[str, Any] | None:
        return self.store.get(f"task/{run_id}/{idempotency_key}")

    def save_task(
        self,
        task: dict[str, Any],
        *,
        blob: bytes | Iterable[bytes] | None = None,
        index_callback: bool = False,
        job_id: str | None = None,
        lease: Lease | None = None,
        new: bool = False,
    ) -> None:
        """Store a task record (``None``/``False`` fields left out: smaller records replay
        faster). ``blob``: its output as bytes (pickled) or byte chunks (a large JSON output,
        streamed to the store); ``index_callback``: register its callback id
        (with the run's ``job_id``, so a receiver knows whether it runs that job itself);
        ``lease``: the writing execution's lease, checked in the same transaction
        (:class:`RunBusyError` if it was lost, and nothing is written); ``new``: the record was
        never stored (a cheaper write, see ``Store.put_new``)."""
        key = f"task/{task['run_id']}/{task['idempotency_key']}"
        lean = {k: v for k, v in task.items() if v is not None and v is not False}
        put = self.store.put_new if new else self.store.put
        if blob is None and not index_callback:
            if lease is None:
                put(key, lean)
                return
            # The common fenced write: one guarded statement (Store.put_fenced). Refused (the
            # lease was lost, or taken by a version without the fence record): the check below
            # reads the run and raises, or writes.
            if self.store.put_fenced(key, lean, guard_key=f"fence/{lease.run_id}", guard=lease.mirror(), new=new):
                return
        with self.store.transaction():
            if lease is not None:
                self.check_lease(lease)
            put(key, lean)
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
        *,
        lease: Lease | None = None,
    ) -> bool:
        """Atomically apply ``changes`` to the stored task if ``condition(stored)`` holds
        (and ``lease``, if given, is still held: else :class:`RunBusyError`)."""
        with self.store.transaction():
            if lease is not None:
                self.check_lease(lease)
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

    def callback_ref(self, task_id: str) -> dict[str, Any] | None:
        """Where the task behind ``/callbacks/{task_id}/…`` lives: ``{"run_id",
        "idempotency_key", "job_id"}``, or ``None`` for an unknown id."""
        return self.store.get(f"cb/{task_id}")

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

    # -- leases (SPEC §10: one executing process per run, fenced) ------------------------
    # The lease lives in the run record (``run["lease"]``), which an execution reads and writes
    # in its first and last transactions anyway: taking and releasing it costs no extra query.
    # ``run["fence"]`` counts the leases ever taken on the run; a lease carries the count of
    # its taking. Each write of an execution checks, in the write's own transaction, that the
    # stored lease is still its own (holder *and* fence): a holder that was stopped past its
    # expiry and taken over can never write again, even if its old lease had been released.
    def take_lease(self, run: dict[str, Any], *, ttl: float | None = None) -> Lease:
        """Put a new lease of ours into ``run`` (the caller saves it, in its transaction) and
        return it; :class:`RunBusyError` naming the holder if another one holds it."""
        ttl = self.lease_ttl if ttl is None else ttl
        now = time.time()
        self.raise_if_busy(run, now)
        fence = int(run.get("fence") or 0) + 1
        run["fence"] = fence
        run["lease"] = {"holder": self.holder, "expires_at": now + ttl, "fence": fence}
        lease = Lease(run["id"], self.holder, fence, now + ttl)
        # put_new: the previous execution's finish deleted the record (a crash may have left it)
        self.store.put_new(f"fence/{run['id']}", lease.mirror())
        return lease

    def drop_lease(self, run: dict[str, Any]) -> None:
        """Clear ``run``'s lease (the caller saves it, in its transaction)."""
        run["lease"] = None
        self.store.delete(f"fence/{run['id']}")

    def raise_if_busy(self, run: dict[str, Any], now: float | None = None) -> None:
        """Raise :class:`RunBusyError` naming the holder if another process that may be alive
        holds ``run``'s lease (it executes the run now); return if it is free or ours."""
        now = time.time() if now is None else now
        if self.lease_is_free(run, now):
            return
        holder = run["lease"]["holder"]
        raise RunBusyError(
            f"Run {run['id']} is being executed by another process ({holder}). Wait for it "
            "to finish or suspend (use --wait / run.wait()), or stop that process; its lease "
            "expires by itself within "
            f"{int(max(0.0, run['lease']['expires_at'] - now)) + 1} s if it died.",
            holder=holder,
        )

    def lease_is_free(self, run: dict[str, Any], now: float | None = None) -> bool:
        """True unless another holder's lease is unexpired and that holder may be alive."""
        lease = run.get("lease")
        if not lease or lease["holder"] == self.holder:
            return True
        return lease["expires_at"] <= (time.time() if now is None else now) or holder_dead(
            lease["holder"]
        )

    def acquire_lease(self, run_id: str, *, ttl: float | None = None) -> Lease | None:
        """Take the stored run's lease (``None`` if there is no such run) or raise
        :class:`RunBusyError` naming the live holder."""
        with self.store.transaction():
            run = self.load_run(run_id)
            if run is None:
                return None
            lease = self.take_lease(run, ttl=ttl)
            self.save_run(run)
            return lease

    def check_lease(self, lease: Lease) -> dict[str, Any]:
        """The stored run, if ``lease`` is still the one stored; else :class:`RunBusyError`.
        Call inside the transaction of the write it guards."""
        run = self.load_run(lease.run_id)
        if run is None or not lease.held_in(run):
            raise lease.lost(run)
        return run

    def renew_lease(self, lease: Lease, *, ttl: float | None = None) -> bool:
        """Extend ``lease`` if it is still ours (fenced); False if it was lost."""
        ttl = self.lease_ttl if ttl is None else ttl
        with self.store.transaction():
            run = self.load_run(lease.run_id)
            if run is None or not lease.held_in(run):
                return False
            lease.expires_at = time.time() + ttl
            run["lease"] = {"holder": lease.holder, "expires_at": lease.expires_at, "fence": lease.fence}
            self.save_run(run)
            return True

    def release_lease(self, lease: Lease) -> None:
        """Drop ``lease`` if it is still the stored one (a lost lease is someone else's now)."""
        with self.store.transaction():
            run = self.load_run(lease.run_id)
            if run is not None and lease.held_in(run):
                self.drop_lease(run)
                self.save_run(run)

    # -- runs being executed (orphans are resumed: SPEC §10) --------------------------------
    def mark_executing(self, run_id: str) -> None:
        """Note that ``run_id`` is EXECUTING (in the transaction that makes it so); a store
        that pushes notices tells other processes, which then watch its lease (orphans)."""
        self.store.put_new(f"exec/{run_id}", {})  # deleted when the execution ends
        self.store.notify("exec")

    def clear_executing(self, run_id: str) -> None:
        self.store.delete(f"exec/{run_id}")

    def executing_runs(self) -> list[str]:
        """Runs marked EXECUTING, by any process (a cheap key scan, no record read)."""
        return [key.split("/", 1)[1] for key in self.store.keys("exec/")]
