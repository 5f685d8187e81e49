"""What a task's background operation (``background_fetch``, ``background_poll``) is handed.

The runner starts the operation (``Runner.start_operation``) and resolves its task with the
result; the operation reads the task's records and logs each attempt through this context.
"""

from __future__ import annotations

import time
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
