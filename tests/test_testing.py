"""``trigger_nb.testing.JobTester`` (v2's ``createJobTester``): a job defined in a module, run
in a test with task outputs mocked by cache key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import triage_jobs

from trigger_nb import ConfigError
from trigger_nb.testing import JobTester, TaskCall


@pytest.fixture
def tester() -> Iterator[JobTester]:
    with JobTester() as t:
        yield t


@pytest.fixture(autouse=True)
def _no_notifications() -> None:
    triage_jobs.NOTIFIED.clear()


def test_mocked_tasks_are_recorded_but_not_called_and_the_others_run(tester: JobTester) -> None:
    started = time.monotonic()
    run = tester.run(
        triage_jobs.triage_issue,
        {"number": 42},
        job_id="triage-issue",
        version="1.2.0",
        tasks={"fetch-issue": {"title": "Crash on start"}},
    )
    run.assert_succeeded()
    assert time.monotonic() - started < 20  # the hour-long wait was fast-forwarded
    assert run.output == {"number": 42, "label": "bug", "job": "triage-issue@1.2.0"}
    assert run.task("fetch-issue") == TaskCall(
        key="fetch-issue", cache_key="fetch-issue", name="Task", params={"number": 42},
        output={"title": "Crash on start"}, error=None, status="COMPLETED", attempts=1,
        mocked=True, parent=None,
    )
    assert run.task(("notify", "bug")).params == {"channel": "#bugs"}
    assert not run.task(["notify", "bug"]).mocked
    assert triage_jobs.NOTIFIED == ["#bugs: #42"]  # not mocked: ran for real, once
    assert [call.key for call in run.calls] == ["fetch-issue", "classify", "cool-down", "notify-bug"]
    assert run.unused_mocks == [] and run.handle.executions == 2


def test_a_job_definition_from_the_modules_client_works_too(tester: JobTester) -> None:
    definition = triage_jobs.client.jobs["triage-issue"]
    run = tester.run(definition, {"number": 7}, tasks={"fetch-issue": {"title": "How do I?"}})
    run.assert_succeeded()
    assert run.output["label"] == "question" and run.output["job"] == "triage-issue@1.2.0"
    assert run.tasks["notify-question"].output == "#support"


def test_a_mocked_exception_fails_the_task_after_its_retries(tester: JobTester) -> None:
    run = tester.run(
        triage_jobs.triage_issue,
        {"number": 1},
        tasks={"fetch-issue": {"title": "crash"}, ("notify", "bug"): ConnectionError("slack is down")},
    )
    run.assert_failed("ConnectionError")
    run.assert_failed("slack is down")
    notify = run.task(["notify", "bug"])
    assert (notify.status, notify.attempts, notify.mocked) == ("ERRORED", 3, True)
    assert notify.error is not None and notify.error["name"] == "ConnectionError"
    assert triage_jobs.NOTIFIED == []
    with pytest.raises(AssertionError, match="not SUCCESS"):
        run.assert_succeeded()
    with pytest.raises(AssertionError, match="not 'KeyError'"):
        run.assert_failed("KeyError")


def test_an_unmocked_failure_and_the_messages_a_test_author_sees(tester: JobTester) -> None:
    run = tester.run(triage_jobs.triage_issue, {"number": 5}, tasks={"fetch-isue": {"title": "typo"}})
    run.assert_failed("not reachable")
    assert run.unused_mocks == ["fetch-isue"]
    with pytest.raises(AssertionError, match="(?s)FAILURE, not SUCCESS:\n.*fetch-issue"):
        run.assert_succeeded()
    with pytest.raises(KeyError, match=r"No task 'classify'.*\['fetch-issue'\]"):
        run.task("classify")
    with pytest.raises(AssertionError, match="not FAILURE"):
        tester.run(triage_jobs.triage_issue, {"number": 5}, tasks={"fetch-issue": {"title": "x"}}).assert_failed()


def test_the_same_run_id_replays_as_re_executing_a_cell_does(tester: JobTester) -> None:
    calls: list[int] = []

    async def counter(payload: Any, io: Any, ctx: Any) -> Any:
        return await io.run_task("count", lambda: calls.append(1) or len(calls))

    first = tester.run(counter, run_id="same")
    second = tester.run(counter, run_id="same")
    assert (first.output, second.output, calls) == (1, 1, [1])
    assert second.handle.tasks[0]["replayed"] and second.handle.id == "same"
    assert tester.run(counter).output == 2  # a new run by default


def test_background_fetches_can_be_mocked_and_callbacks_leave_the_run_waiting(tester: JobTester) -> None:
    async def fetcher(payload: Any, io: Any, ctx: Any) -> Any:
        repos = await io.background_fetch("repos", "http://tracker.invalid/repos")
        approved = await io.run_task("approve", lambda task: task.callback_url, callback={"enabled": True})
        return {"repos": repos, "approved": approved}

    run = tester.run(fetcher, tasks={"repos": [{"name": "trigger_nb"}]})
    assert run.status == "WAITING"
    assert run.task("repos").output == [{"name": "trigger_nb"}] and run.task("repos").mocked
    assert run.task("approve").status == "WAITING"
    mocked = tester.run(fetcher, tasks={"repos": [], "approve": {"ok": True}})
    mocked.assert_succeeded()
    assert mocked.output == {"repos": [], "approved": {"ok": True}}


def test_bad_input_is_a_clear_error(tester: JobTester) -> None:
    with pytest.raises(ConfigError, match="run function or JobDefinition"):
        tester.run(42)  # type: ignore[arg-type]

    def not_async(payload: Any, io: Any, ctx: Any) -> None:
        return None

    with pytest.raises(ConfigError, match="async def"):
        tester.run(not_async)
