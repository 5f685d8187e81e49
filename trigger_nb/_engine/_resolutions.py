"""Completing waiting tasks from outside the run: callbacks, operations, events (SPEC §9, §7).

A task that waits for something outside (a callback POST, a background fetch, an event) is
completed here, by whoever has the answer, from any thread: the first resolution wins, in a
store transaction, and the run resumes on the home loop. Callbacks also come in batches, one
transaction per batch (see ``_callback_queue.py``).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._exceptions import TaskOutputError
from .._serde import encode_output, error_record
from .._store import Repository
from ._bus import Notice, NoticeBus
from ._execution import CALLBACK_TIMEOUT_MESSAGE
from ._states import TaskStatus, advance_task


class Resolutions:
    """Resolves WAITING tasks. Collaborators: the ``repo``, the ``bus`` (a task notice per
    accepted resolution), ``jobs`` (the jobs this process runs: a run of another job gets a
    durable wake marker instead) and ``resume(run_id)`` (thread-safe: resumes the run on the home
    loop, after the resolution is committed)."""

    def __init__(
        self,
        repo: Repository,
        bus: NoticeBus,
        jobs: Mapping[str, Any],
        resume: Callable[[str], None],
    ) -> None:
        self._repo = repo
        self._bus = bus
        self._jobs = jobs
        self._resume = resume

    def resolve_task(
        self,
        run_id: str,
        idempotency_key: str,
        *,
        output: Any = None,
        error: BaseException | None = None,
        pending_flag: str,
        resolved_by: str,
        check: Callable[[dict[str, Any]], str | None] | None = None,
        job_id: str | None = None,
    ) -> str:
        """Complete (or fail, with ``error``) a WAITING task; the first resolution wins.

        ``pending_flag`` names what the task waits for (``callback_pending``,
        ``operation_pending``); ``check(task)`` may veto with a reason. Returns
        ``"accepted"``, ``"already"``, ``"not_found"`` or the veto. Thread-safe: the store
        transaction serialises racing resolutions; the run resumes on the home loop.
        """
        with self._repo.store.transaction():
            outcome, task = self._resolve_in_transaction(
                run_id,
                idempotency_key,
                output=output,
                error=error,
                pending_flag=pending_flag,
                resolved_by=resolved_by,
                check=check,
                job_id=job_id,
            )
        self._after_resolution(task)
        return outcome

    def _resolve_in_transaction(
        self,
        run_id: str,
        idempotency_key: str,
        *,
        output: Any,
        error: BaseException | None,
        pending_flag: str,
        resolved_by: str,
        check: Callable[[dict[str, Any]], str | None] | None,
        job_id: str | None,
    ) -> tuple[str, dict[str, Any] | None]:
        """`resolve_task`'s writes, inside the caller's transaction: the outcome, and the task
        record when it was accepted (for `_after_resolution`, once committed)."""
        now = time.time()
        task = self._repo.load_task(run_id, idempotency_key)
        if task is None:
            return "not_found", None
        if check is not None:
            veto = check(task)
            if veto is not None:
                return veto, None
        if task["status"] != TaskStatus.WAITING or not task.get(pending_flag):
            return "already", None
        if error is None:
            try:
                encoded = encode_output(output, cache_key=task["display_key"])
            except TaskOutputError as exc:
                error = exc
        if error is None:
            task["output_json"] = encoded.data
            task["output_encoding"] = "json"
            advance_task(task, TaskStatus.COMPLETED)
        else:
            task["error"] = error_record(error)
            advance_task(task, TaskStatus.ERRORED)
        task["completed_at"] = now
        task[pending_flag] = False
        task["resolved_by"] = resolved_by
        self._repo.save_task(task)
        if job_id is None or job_id not in self._jobs:
            # Durable: no process here runs this job (e.g. `trigger-nb serve`), so the
            # kernel that does must find the marker (within a second, SPEC §9). When this
            # process runs it, the resume below follows at once and the marker would only
            # cost a write and a delete per callback (SPEC §13 throughput).
            self._repo.mark_wake(run_id, now)
        return "accepted", task

    def _after_resolution(self, task: dict[str, Any] | None) -> None:
        """Tell watchers and resume the run of an accepted resolution, once it is committed."""
        if task is None:
            return
        if self._bus.active:
            self._bus.emit(Notice("task", task["run_id"], task=task))
        self._resume(task["run_id"])

    def complete_callback(self, task_id: str, secret: str, body: Any) -> str:
        """Resolve a waiting callback task with ``body``: first POST wins (SPEC §9).

        Returns ``"accepted"``, ``"already"``, ``"not_found"`` or ``"timed_out"``.
        """
        return self.complete_callbacks([(task_id, secret, body)])[0]

    def complete_callbacks(self, calls: Sequence[tuple[str, str, Any]]) -> list[str]:
        """`complete_callback` for each ``(task_id, secret, body)``, in one store transaction.

        One commit for a batch is what lets the receiver keep up with many callbacks at once
        (SPEC §13); the outcomes are those of calling `complete_callback` in order (two POSTs
        to one task in a batch: the first is accepted). Thread-safe. An exception rolls back
        the whole batch.
        """
        resolved = []
        with self._repo.store.transaction():
            for task_id, secret, body in calls:
                resolved.append(self._resolve_callback(task_id, secret, body))
        for _, task in resolved:
            self._after_resolution(task)
        return [outcome for outcome, _ in resolved]

    def _resolve_callback(
        self, task_id: str, secret: str, body: Any
    ) -> tuple[str, dict[str, Any] | None]:
        ref = self._repo.callback_ref(task_id)
        if ref is None:
            return "not_found", None

        def check(task: dict[str, Any]) -> str | None:
            if not hmac.compare_digest(str(task.get("callback_secret", "")).encode(), secret.encode()):
                return "not_found"
            if task["status"] == TaskStatus.ERRORED and (task.get("error") or {}).get(
                "message"
            ) == CALLBACK_TIMEOUT_MESSAGE:
                return "timed_out"
            timeout_at = task.get("callback_timeout_at")
            if task.get("callback_pending") and timeout_at is not None and timeout_at <= time.time():
                return "timed_out"
            return None

        return self._resolve_in_transaction(
            ref["run_id"],
            ref["idempotency_key"],
            output=body,
            error=None,
            pending_flag="callback_pending",
            resolved_by="callback",
            check=check,
            job_id=ref.get("job_id"),
        )
