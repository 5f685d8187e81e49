"""What a task's background operation (``background_fetch``, ``background_poll``) is handed.

:class:`Operations` starts each operation on the home loop (the runner hands its ``start`` to
executions) and resolves the task with the result; the operation reads the task's records and
logs each attempt through an :class:`OperationContext`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._keys import idempotency_key, task_id_for
from .._store import Repository
from ._bus import Notice, NoticeBus
from ._states import TaskStatus


class OperationContext:
    """Handed to a background operation: the task record and a way to log attempts.

    ``record_attempt(params)`` stores a completed child entry under the task (a poll attempt,
    a fetch retry) so the log shows each one as it happens.
    """

    def __init__(self, repo: Repository, bus: NoticeBus, task: dict[str, Any]) -> None:
        self.repo = repo
        self.bus = bus
        self.task = task
        self.attempts = 0

    def record_attempt(self, name: str, params: Any, *, status: str = TaskStatus.COMPLETED) -> dict[str, Any]:
        self.attempts += 1
        task = self.task
        key = idempotency_key(task["run_id"], task["id"], ["attempt", self.attempts])
        now = time.time()
        record = {
            "id": task_id_for(key),
            "run_id": task["run_id"],
            "idempotency_key": key,
            "cache_key": ["attempt", self.attempts],
            "display_key": f"attempt-{self.attempts}",
            "parent_id": task["id"],
            "name": name,
            "icon": None,
            "kind": "attempt",
            "noop": True,
            "status": status,
            "attempts": 1,
            "seq": task.get("seq", 0) + self.attempts / 100000,
            "params": params,
            "started_at": now,
            "completed_at": now,
            "output_json": None,
            "output_encoding": None,
            "error": None,
            "callback_url": None,
            "background": True,
        }
        self.repo.save_task(record)
        if self.bus.active:
            self.bus.emit(Notice("task", task["run_id"], task=record))
        return record


class Operations:
    """Background operations under way in this process, one per task at most.

    ``spawn`` starts a coroutine on the home loop; ``resolve_task`` (``Runner.resolve_task``)
    settles the task once its operation returned (``output``) or raised (``error``).
    """

    def __init__(
        self,
        repo: Repository,
        bus: NoticeBus,
        *,
        spawn: Callable[[Any], Any],
        resolve_task: Callable[..., object],
    ) -> None:
        self.repo = repo
        self.bus = bus
        self.spawn = spawn
        self.resolve_task = resolve_task
        self._running: dict[str, Any] = {}

    def start(self, record: dict[str, Any], operation: Callable[[Any], Any]) -> None:
        """Run a task's background operation on the home loop, unless already running here."""
        task_id = record["id"]
        if task_id not in self._running:
            context = OperationContext(self.repo, self.bus, dict(record))
            self._running[task_id] = self.spawn(self._run(context, operation))

    async def _run(self, context: OperationContext, operation: Callable[[Any], Any]) -> None:
        output: Any = None
        error: BaseException | None = None
        try:
            output = await operation(context)
        except Exception as exc:  # the operation failed: the task errors (after its own retries)
            error = exc
        finally:
            self._running.pop(context.task["id"], None)
        task = context.task
        self.resolve_task(
            task["run_id"],
            task["idempotency_key"],
            output=output,
            error=error,
            pending_flag="operation_pending",
            resolved_by="operation",
        )
