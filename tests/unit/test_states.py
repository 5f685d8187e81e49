"""The task and run transition tables: legal moves pass, everything else raises."""

from __future__ import annotations

import itertools

import pytest

from trigger_nb import TriggerNbError
from trigger_nb._engine._states import (
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    RunStatus,
    TaskStatus,
    advance_run,
    advance_task,
)
from trigger_nb._exceptions import IllegalTransitionError

TASK_STATES = [None, *[v for k, v in vars(TaskStatus).items() if k.isupper()]]
RUN_STATES = [None, *[v for k, v in vars(RunStatus).items() if k.isupper()]]


@pytest.mark.parametrize(("old", "new"), list(itertools.product(TASK_STATES, TASK_STATES[1:])))
def test_task_transitions_follow_the_table(old: str | None, new: str) -> None:
    record = {"id": "t1", "status": old}
    if new in TASK_TRANSITIONS.get(old, frozenset()):
        advance_task(record, new)
        assert record["status"] == new
    else:
        with pytest.raises(IllegalTransitionError, match=f"{old} -> {new}"):
            advance_task(record, new)
        assert record["status"] == old  # an illegal move changes nothing


@pytest.mark.parametrize(("old", "new"), list(itertools.product(RUN_STATES, RUN_STATES[1:])))
def test_run_transitions_follow_the_table(old: str | None, new: str) -> None:
    record = {"id": "r1", "status": old}
    if new in RUN_TRANSITIONS.get(old, frozenset()):
        advance_run(record, new)
        assert record["status"] == new
    else:
        with pytest.raises(IllegalTransitionError):
            advance_run(record, new)


def test_completed_is_final_and_first_terminal_wins() -> None:
    record = {"id": "t", "status": None}
    for step in (TaskStatus.WAITING, TaskStatus.COMPLETED):
        advance_task(record, step)
    for late in (TaskStatus.ERRORED, TaskStatus.COMPLETED, TaskStatus.RUNNING):
        with pytest.raises(IllegalTransitionError):
            advance_task(record, late)


def test_manual_retry_reopens_errored_tasks() -> None:
    record = {"id": "t", "status": TaskStatus.ERRORED}
    advance_task(record, TaskStatus.RUNNING)  # deliberate fix of v2 #912
    assert record["status"] == TaskStatus.RUNNING


def test_illegal_transition_is_one_of_ours_and_says_it_is_a_bug() -> None:
    with pytest.raises(TriggerNbError, match="bug"):
        advance_task({"id": "t", "status": TaskStatus.COMPLETED}, TaskStatus.RUNNING)
