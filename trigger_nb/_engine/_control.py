"""Engine control flow: exceptions that end an execution without being errors.

They derive from ``BaseException`` on purpose (as v2's ``ResumeWithTaskError`` family should
have): a user's ``except Exception:`` around ``await io.run_task(...)`` must not swallow a
suspension, or the run would carry on past a wait that has not happened yet. User code that
catches ``BaseException`` (or uses a bare ``except:``) must re-raise these; the engine also
notices a swallowed suspension and suspends anyway.
"""

from __future__ import annotations


class ControlFlow(BaseException):
    """Base of the engine's control-flow signals. Never catch it in job code."""


class Suspend(ControlFlow):
    """The execution reached a task that cannot finish now (a wait, a retry delay, a callback).

    ``due_at`` is when the task can make progress by itself (epoch seconds), or ``None`` when
    only something external (a callback POST, an event, a manual resume) can wake it.
    """

    def __init__(self, task_id: str, due_at: float | None, reason: str) -> None:
        super().__init__(task_id, due_at, reason)
        self.task_id = task_id
        self.due_at = due_at
        self.reason = reason


class Canceled(ControlFlow):
    """The run was canceled while this execution was under way."""


class ExecutionClosing(ControlFlow):
    """The execution is ending (another branch suspended or failed); no new task may start."""


def is_control_flow(exc: BaseException) -> bool:
    """True for the engine's signals (what v2 called ``isTriggerError``)."""
    return isinstance(exc, ControlFlow)
