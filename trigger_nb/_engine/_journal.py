"""What an execution's journal records of a task that failed or waits to retry.

A journal entry is ``(task_id, outcome, attempts, *notes)`` (a list once read back from the
store: readers index it, never compare its type). ``failed`` and ``retry`` entries
carry the error as it was *then* (a dict): the task record keeps only its latest error (a later
attempt, or a value given by hand, replaces it), and the task log's history must show what
happened in that execution, never today's record (SPEC §8). Only failures pay for it: the
journal does not grow by a copy of the run per execution. A ``replayed`` entry may carry
``"code_changed"`` (``_reach.CODE_CHANGED``: its function changed since it ran).
"""

from __future__ import annotations

from typing import Any

#: A journal keeps at most this much of an error's stack (the user's frames come last).
JOURNAL_STACK_CHARS = 2000


def failure_entry(record: dict[str, Any], outcome: str) -> tuple[Any, ...]:
    """The journal entry of ``record`` with its error as it is now."""
    error = record.get("error") or {}
    snapshot = {"name": error.get("name"), "message": error.get("message")}
    stack = error.get("stack")
    if stack:
        snapshot["stack"] = stack[-JOURNAL_STACK_CHARS:]
    return (record["id"], outcome, record["attempts"], snapshot)


def error_then(entry: list[Any] | tuple[Any, ...]) -> dict[str, Any] | None:
    """The error a journal entry recorded for its execution, or ``None``."""
    return next((note for note in entry[3:] if isinstance(note, dict)), None)
