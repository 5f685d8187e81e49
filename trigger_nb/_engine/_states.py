"""Task and run lifecycles: every status and every legal transition, in one table each.

Theory of operation (modelled on h11's ``_state.py``): records are plain dicts with a
``status`` field; nothing assigns ``record["status"]`` directly except :func:`advance`, which
consults the table and raises :class:`IllegalTransitionError` for anything else. An illegal
transition is always a bug in the engine, never a user error.

Task lifecycle (SPEC §4.2, v2 §2.7)::

    (new) ─► RUNNING ─► COMPLETED | ERRORED
      │         └─────► WAITING (retry due later) ─► RUNNING
      ├────► WAITING (delay, callback, event) ─► RUNNING | COMPLETED | ERRORED
      └────► COMPLETED (noop tasks)
    any unfinished ─► CANCELED (run canceled) ─► RUNNING | WAITING | COMPLETED (re-opened
                                                 with the new-task rules, as v2 §2.5)
    ERRORED ─► RUNNING | WAITING | COMPLETED  (a manual retry of a failed run re-opens it with
                                               the new-task rules: deliberate fix of v2 #912)

Run lifecycle::

    QUEUED ─► EXECUTING ─► SUCCESS | FAILURE | WAITING | CANCELED | TIMED_OUT
    WAITING ─► EXECUTING | CANCELED | FAILURE
    SUCCESS | FAILURE | CANCELED | TIMED_OUT ─► EXECUTING (re-executing the cell / retry)
"""

from __future__ import annotations

from typing import Any

from .._exceptions import IllegalTransitionError


class TaskStatus:
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    ERRORED = "ERRORED"
    CANCELED = "CANCELED"


class RunStatus:
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    WAITING = "WAITING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELED = "CANCELED"
    TIMED_OUT = "TIMED_OUT"


T = TaskStatus
R = RunStatus

#: ``None`` is the state of a task that has no record yet.
TASK_TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({T.RUNNING, T.WAITING, T.COMPLETED, T.CANCELED}),
    T.PENDING: frozenset({T.RUNNING, T.WAITING, T.CANCELED}),
    T.RUNNING: frozenset({T.COMPLETED, T.ERRORED, T.WAITING, T.CANCELED}),
    T.WAITING: frozenset({T.RUNNING, T.COMPLETED, T.ERRORED, T.CANCELED}),
    T.ERRORED: frozenset({T.RUNNING, T.WAITING, T.COMPLETED}),
    T.CANCELED: frozenset({T.RUNNING, T.WAITING, T.COMPLETED}),
    T.COMPLETED: frozenset(),
}

RUN_TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({R.QUEUED}),
    R.QUEUED: frozenset({R.EXECUTING, R.CANCELED}),
    R.EXECUTING: frozenset({R.SUCCESS, R.FAILURE, R.WAITING, R.CANCELED, R.TIMED_OUT}),
    R.WAITING: frozenset({R.EXECUTING, R.CANCELED, R.FAILURE}),
    R.SUCCESS: frozenset({R.EXECUTING}),
    R.FAILURE: frozenset({R.EXECUTING, R.CANCELED}),
    R.CANCELED: frozenset({R.EXECUTING}),
    R.TIMED_OUT: frozenset({R.EXECUTING}),
}

TASK_FINISHED = frozenset({T.COMPLETED, T.ERRORED, T.CANCELED})
RUN_FINISHED = frozenset({R.SUCCESS, R.FAILURE, R.CANCELED, R.TIMED_OUT})


def _advance(table: dict[str | None, frozenset[str]], kind: str, record: dict[str, Any], new: str) -> None:
    old = record.get("status")
    if new not in table.get(old, frozenset()):
        raise IllegalTransitionError(
            f"{kind} {record.get('id')!r}: illegal transition {old} -> {new}. "
            "This is a bug in trigger_nb; please report it with the run's log."
        )
    record["status"] = new


def advance_task(record: dict[str, Any], new: str) -> None:
    """Move a task record to ``new`` or raise :class:`IllegalTransitionError`."""
    _advance(TASK_TRANSITIONS, "task", record, new)


def advance_run(record: dict[str, Any], new: str) -> None:
    """Move a run record to ``new`` or raise :class:`IllegalTransitionError`."""
    _advance(RUN_TRANSITIONS, "run", record, new)
