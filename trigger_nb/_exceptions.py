"""Every error trigger_nb raises on purpose, in one place.

    TriggerNbError                  base class: ``except TriggerNbError`` catches all of ours
    ├── TaskError                   a task failed; carries the task record, the original
    │                               exception and its (user-only) traceback text
    ├── TaskOutputError             a task's output is not JSON (and pickle not opted in),
    │                               or is over the size limit
    ├── DuplicateTaskKeyError       the same cache key twice under one parent in one execution
    ├── CallbackTimeoutError        a remote callback / wait_for_request / wait_for_event timed out
    ├── FetchError                  a background fetch/poll failed (status, body of the last reply)
    ├── EventFilterError            a malformed EventFilter (found when it is defined)
    ├── PayloadError                a payload that is not JSON-serialisable or not parseable
    ├── RunBusyError                another process holds the run's execution lease
    ├── RunCanceledError            the run was canceled
    ├── RunFailedError              ``Run.result()`` of a run that ended in FAILURE
    ├── RunTimeoutError             ``--timeout`` / ``result(timeout=)`` elapsed first
    ├── StoreError                  the store directory is unusable (path + remedy in the message)
    ├── ConfigError                 a bad option or configuration value
    └── IllegalTransitionError      a lifecycle transition the state table forbids: always a bug

Engine control flow (suspending an execution, cancellation) does *not* use these: it uses
``BaseException`` subclasses private to the engine, so that a user's ``except Exception:`` can
never swallow a suspension. Messages say what happened and what to do next.
"""

from __future__ import annotations

from typing import Any


class TriggerNbError(Exception):
    """Base class of every trigger_nb error."""

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing the full traceback: at the notebook
        # boundary our errors are messages for the user, not a tour of our internals.
        return [f"{type(self).__name__}: {self}"]


class TaskError(TriggerNbError):
    """A task failed (after any retries).

    ``task`` is the task record (a dict, as in ``Run.tasks``), ``original`` the exception the
    task raised (``None`` when the failure was replayed from the store in another process),
    ``error`` the stored ``{"name", "message", "stack"}`` record and ``user_traceback`` the
    traceback text restricted to the user's own frames.
    """

    def __init__(
        self,
        message: str,
        *,
        task: dict[str, Any] | None = None,
        original: BaseException | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.task = task or {}
        self.original = original
        self.error = error or {}

    @property
    def user_traceback(self) -> str:
        return str(self.error.get("stack") or "")

    def _render_traceback_(self) -> list[str]:
        lines = [f"{type(self).__name__}: {self}"]
        if self.user_traceback:
            lines.append(self.user_traceback.rstrip())
        return lines


class TaskOutputError(TriggerNbError):
    """A task's output cannot be stored as it is."""


class DuplicateTaskKeyError(TriggerNbError):
    """The same cache key was used twice under the same parent in one execution."""


class CallbackTimeoutError(TriggerNbError):
    """Nothing was POSTed to a task's callback URL (or no event matched) before its timeout."""


class FetchError(TriggerNbError):
    """A background fetch or poll failed: an error status with no retry left, a timeout, a
    network error. ``status`` and ``body`` (parsed JSON, text or ``None``) describe the last
    response, if there was one. The message is v2's task output: the JSON body when there is
    one, else ``Fetch failed with status N`` (or the timeout / network message)."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class EventFilterError(TriggerNbError, ValueError):
    """An EventFilter is malformed: unknown operator or wrong operand type."""


class PayloadError(TriggerNbError, ValueError):
    """A run payload that cannot be parsed or is not JSON-serialisable."""


class RunBusyError(TriggerNbError):
    """Another process is executing this run right now (it holds the run's lease)."""

    def __init__(self, message: str, *, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


class RunCanceledError(TriggerNbError):
    """The run was canceled."""


class RunFailedError(TriggerNbError):
    """A run ended in FAILURE: raised by ``Run.result()`` and by a ``%%job`` cell (SPEC §2).

    ``error`` is the run's ``{"name", "message", "stack"}`` record (plus ``task``, the display
    key of the failed task, when a task failed); the message names the task and the original
    exception; at the notebook boundary the traceback shows only the user's own frames.
    """

    def __init__(self, message: str, *, error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error = error or {}

    def _render_traceback_(self) -> list[str]:
        lines = [f"{type(self).__name__}: {self}"]
        stack = str(self.error.get("stack") or "")
        if stack:
            lines.append(stack.rstrip())
        return lines


class RunTimeoutError(TriggerNbError, TimeoutError):
    """Waiting for a run took longer than the timeout given (the run itself goes on)."""


class StoreError(TriggerNbError):
    """The store directory cannot be used: not writable, not a directory, or corrupt."""


class ConfigError(TriggerNbError, ValueError):
    """A bad option or configuration value."""


class IllegalTransitionError(TriggerNbError):
    """A task or run status change that the transition table forbids. Always a bug."""


__all__ = [
    "CallbackTimeoutError",
    "ConfigError",
    "DuplicateTaskKeyError",
    "EventFilterError",
    "FetchError",
    "IllegalTransitionError",
    "PayloadError",
    "RunBusyError",
    "RunCanceledError",
    "RunFailedError",
    "RunTimeoutError",
    "StoreError",
    "TaskError",
    "TaskOutputError",
    "TriggerNbError",
]
