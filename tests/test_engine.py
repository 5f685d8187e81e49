"""Replay semantics of the engine through the library API (SPEC §3–5).

Every test runs on both real stores (diskcache and PostgreSQL, ``both_stores``). Every run goes
through ``TriggerClient.invoke`` — the same path the magic uses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import threading
import time
from typing import Any

import httpx
import pytest
from _support import poll

from trigger_nb import (
    CallbackTimeoutError,
    DuplicateTaskKeyError,
    TaskError,
    TriggerClient,
    retry,
)

pytestmark = pytest.mark.both_stores


def define(client: TriggerClient, job_id: str = "job", **options: Any):  # type: ignore[no-untyped-def]
    return client.define_job(id=job_id, **options)


def test_completed_tasks_replay_and_code_outside_tasks_runs_each_time(client: TriggerClient) -> None:
    calls: list[str] = []
    outside: list[int] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        outside.append(ctx.run.execution)
        a = await io.run_task("a", lambda: calls.append("a") or {"n": payload["n"]})
        b = await io.run_task("b", lambda task: calls.append("b") or task.attempts)
        return {"a": a, "b": b}

    run_id = client.run_id_for("job", {"n": 1})
    first = client.invoke_sync("job", {"n": 1}, run_id=run_id)
    second = client.invoke_sync("job", {"n": 1}, run_id=run_id)
    assert first.id == second.id
    assert second.result(timeout=5) == {"a": {"n": 1}, "b": 1}
    assert calls == ["a", "b"]  # side effects once
    assert outside == [1, 2]  # code outside tasks on every execution
    assert [t["replayed"] for t in second.tasks] == [True, True]
    assert second.executions == 2
    assert "replayed" in second.log()


def test_outputs_are_json_round_tripped_on_the_first_execution_too(client: TriggerClient) -> None:
    seen: list[Any] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        value = await io.run_task("t", lambda: {"tuple": (1, 2), "when": dt.datetime(2024, 1, 2, 3, 4, 5)})
        parsed = await io.run_task("p", lambda: "2024-01-02", parse_output=dt.date.fromisoformat)
        seen.append((value, parsed))
        return None

    run_id = client.run_id_for("job", {})
    client.invoke_sync("job", {}, run_id=run_id)
    client.invoke_sync("job", {}, run_id=run_id)
    expected = ({"tuple": [1, 2], "when": "2024-01-02T03:04:05"}, dt.date(2024, 1, 2))
    assert seen == [expected, expected]


def test_sync_callbacks_run_in_a_worker_thread_with_0_1_2_parameters(client: TriggerClient) -> None:
    threads: list[str] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        loop_thread = threading.current_thread().name
        zero = await io.run_task("zero", lambda: threads.append(threading.current_thread().name) or 0)
        one = await io.run_task("one", lambda task: [task.name, task.attempts, task.parent_id, len(task.idempotency_key)], name="One")
        two = await io.run_task("two", lambda task, io2: io2 is io)
        return {"loop": loop_thread, "zero": zero, "one": one, "two": two}

    out = client.invoke_sync("job").result(timeout=5)
    assert threads and threads[0] != out["loop"]
    assert out["zero"] == 0 and out["one"] == ["One", 1, None, 64] and out["two"] is True


def test_nested_tasks_are_scoped_by_parent_and_child_failure_fails_parent(client: TriggerClient) -> None:
    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        async def parent(name: str):  # type: ignore[no-untyped-def]
            async def body(task, io):  # type: ignore[no-untyped-def]
                return await io.run_task("same-key", lambda: name)  # same key, different parents

            return await io.run_task(name, body)

        a, b = await parent("p1"), await parent("p2")

        async def failing_parent(task, io):  # type: ignore[no-untyped-def]
            def boom() -> None:
                raise ValueError("child broke")

            await io.run_task("child", boom)

        try:
            await io.run_task("p3", failing_parent)
        except TaskError as exc:
            return {"a": a, "b": b, "error": exc.error["name"], "task": exc.task["display_key"]}
        return None

    run = client.invoke_sync("job")
    assert run.result(timeout=5) == {"a": "p1", "b": "p2", "error": "ValueError", "task": "p3"}
    by_key = {t["display_key"]: t for t in run.tasks}
    assert by_key["p3"]["status"] == "ERRORED" and by_key["child"]["status"] == "ERRORED"
    assert by_key["child"]["parent_id"] == by_key["p3"]["id"]


def test_gather_runs_tasks_concurrently_and_waits_for_every_branch(client: TriggerClient) -> None:
    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        a_started, b_started = asyncio.Event(), asyncio.Event()

        async def a():  # type: ignore[no-untyped-def]
            a_started.set()
            await asyncio.wait_for(b_started.wait(), 5)  # only passes if b runs concurrently
            return "a"

        async def b():  # type: ignore[no-untyped-def]
            b_started.set()
            await asyncio.wait_for(a_started.wait(), 5)
            return "b"

        return await asyncio.gather(io.run_task("a", a), io.run_task("b", b))

    assert client.invoke_sync("job").result(timeout=10) == ["a", "b"]


def test_a_branch_that_suspends_lets_the_others_finish_then_resumes(client: TriggerClient) -> None:
    calls: list[str] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        async def slow():  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.05)
            calls.append("slow")
            return "slow"

        results = await asyncio.gather(io.wait("w", 0.2), io.run_task("slow", slow))
        return results[1]

    run = client.invoke_sync("job")
    assert run.status == "WAITING"
    assert calls == ["slow"]  # the concurrent branch finished before the execution ended
    assert run.result(timeout=5) == "slow"
    assert calls == ["slow"]


def test_duplicate_key_fails_the_run_with_a_hint(client: TriggerClient) -> None:
    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        await io.run_task("a:b", lambda: 1)
        await io.run_task(["a", "b"], lambda: 2)  # v2 collision: same idempotency key

    run = client.invoke_sync("job")
    assert run.status == "FAILURE"
    assert run.error["name"] == "DuplicateTaskKeyError"
    assert "loop variable" in run.error["message"]


def test_duplicate_key_is_catchable_as_a_normal_error(client: TriggerClient) -> None:
    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        await io.run_task("k", lambda: 1)
        try:
            await io.run_task("k", lambda: 2)
        except DuplicateTaskKeyError:
            return "caught"

    assert client.invoke_sync("job").result(timeout=5) == "caught"


def test_except_exception_cannot_swallow_a_suspension(client: TriggerClient) -> None:
    after: list[str] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        try:
            await io.wait("w", 30)
        except Exception:
            after.append("swallowed")
        after.append("continued")

    run = client.invoke_sync("job")
    assert run.status == "WAITING" and after == []


def test_a_bare_except_that_swallows_a_suspension_still_leaves_the_run_waiting(client: TriggerClient) -> None:
    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        try:
            await io.wait("w", 30)
        except BaseException:  # noqa: BLE001 - the misuse under test
            pass
        return "should not count"

    run = client.invoke_sync("job")
    assert run.status == "WAITING" and run.output is None


FAST = {"limit": 3, "min_timeout_in_ms": 20, "factor": 1, "randomize": False}


def test_retry_with_backoff_ends_the_execution_and_succeeds(client: TriggerClient) -> None:
    attempts: list[int] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        def flaky(task):  # type: ignore[no-untyped-def]
            attempts.append(task.attempts)
            if task.attempts < 3:
                raise ConnectionError(f"try {task.attempts}")
            return "ok"

        return await io.run_task("flaky", flaky, retry=FAST)

    run = client.invoke_sync("job")
    assert run.status == "WAITING"  # the first failure ended the execution (SPEC §5)
    assert run.result(timeout=5) == "ok"
    assert attempts == [1, 2, 3]
    assert run.tasks[0]["attempts"] == 3
    assert run.executions == 3


def test_exhausted_retries_fail_the_run_and_a_manual_retry_runs_the_task_again(client: TriggerClient) -> None:
    state = {"fail": True, "calls": 0}

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        def flaky():  # type: ignore[no-untyped-def]
            state["calls"] += 1
            if state["fail"]:
                raise RuntimeError("still broken")
            return "fixed"

        return {"value": await io.run_task("flaky", flaky, retry={**FAST, "limit": 2}), "retry": ctx.run.is_retry}

    run = client.invoke_sync("job")
    run.wait_sync(timeout=5)
    assert run.status == "FAILURE" and run.error["name"] == "RuntimeError"
    assert state["calls"] == 2 and run.tasks[0]["attempts"] == 2
    assert "still broken" in run.log()

    state["fail"] = False
    retried = asyncio.run(run.retry())
    assert retried.result(timeout=5) == {"value": "fixed", "retry": True}
    assert state["calls"] == 3 and retried.tasks[0]["attempts"] == 3  # attempts continue


def test_no_retry_option_means_no_retry(client: TriggerClient) -> None:
    calls: list[int] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        await io.run_task("t", lambda: calls.append(1) or 1 / 0)

    run = client.invoke_sync("job")
    assert run.status == "FAILURE" and calls == [1] and run.error["name"] == "ZeroDivisionError"


@pytest.mark.parametrize("is_async", [False, True])
def test_on_error_can_replace_skip_or_schedule(client: TriggerClient, is_async: bool) -> None:
    calls: dict[str, int] = {"replace": 0, "skip": 0, "at": 0}

    def verdicts(kind: str):  # type: ignore[no-untyped-def]
        def decide(error, task, io):  # type: ignore[no-untyped-def]
            if kind == "replace":
                return KeyError("replaced")
            if kind == "skip":
                return {"skip_retrying": True}
            return {"retry_at": dt.datetime.now() + dt.timedelta(milliseconds=30)} if task.attempts < 7 else None

        if not is_async:
            return decide

        async def decide_async(error, task, io):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0)
            return decide(error, task, io)

        return decide_async

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        kind = payload["kind"]

        def fail():  # type: ignore[no-untyped-def]
            calls[kind] += 1
            raise ValueError(kind)

        # limit 1 = no default retries: retry_at from on_error ignores the limit (v2)
        await io.run_task(kind, fail, retry={**FAST, "limit": 5 if kind == "skip" else 1}, on_error=verdicts(kind))

    replaced = client.invoke_sync("job", {"kind": "replace"})
    assert replaced.status == "FAILURE" and replaced.error["name"] == "KeyError"
    skipped = client.invoke_sync("job", {"kind": "skip"})
    assert skipped.status == "FAILURE" and calls["skip"] == 1  # no retry despite limit 5
    scheduled = client.invoke_sync("job", {"kind": "at"})
    scheduled.wait_sync(timeout=10)
    assert calls["at"] == 7 and scheduled.tasks[0]["attempts"] == 7


def test_try_catches_task_errors_but_not_suspensions(client: TriggerClient) -> None:
    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        async def attempt():  # type: ignore[no-untyped-def]
            return await io.run_task("bad", lambda: 1 / 0)

        caught = await io.try_(attempt, lambda error: f"caught {type(error).__name__}")
        waited = await io.try_(lambda: io.wait("w", 0.05), lambda error: "wrongly caught")
        return [caught, waited]

    run = client.invoke_sync("job")
    assert run.status == "WAITING"  # try_ re-raised the suspension
    assert run.result(timeout=5) == ["caught TaskError", None]


def test_non_json_output_fails_with_task_output_error(client: TriggerClient) -> None:
    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        await io.run_task("rows", lambda: {"rows": [1, {"bad": object()}]})

    run = client.invoke_sync("job")
    assert run.error["name"] == "TaskOutputError"
    message = run.error["message"]
    assert "rows" in message and "object" in message and "pickle" in message


def test_pickle_serializer_stores_and_replays_non_json_outputs(client: TriggerClient) -> None:
    calls: list[int] = []

    @define(client, serializer="pickle")
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        value = await io.run_task("s", lambda: calls.append(1) or {1, 2, 3})
        return sorted(value)

    run_id = client.run_id_for("job", {})
    client.invoke_sync("job", {}, run_id=run_id)
    again = client.invoke_sync("job", {}, run_id=run_id)
    assert again.result(timeout=5) == [1, 2, 3] and calls == [1]


def test_output_limit_is_enforced(open_client: Any) -> None:
    with open_client(output_limit=1000) as client:

        @define(client)
        async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
            await io.run_task("big", lambda: "x" * 5000)

        run = client.invoke_sync("job")
        assert run.error["name"] == "TaskOutputError" and "1,000 bytes" in run.error["message"]


def test_run_output_must_be_json(client: TriggerClient) -> None:
    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        return object()

    run = client.invoke_sync("job")
    assert run.error["name"] == "TaskOutputError" and "return value" in run.error["message"]


def test_wait_deadline_is_fixed_at_the_first_execution(client: TriggerClient) -> None:
    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        await io.wait("zero", 0)  # completes at once
        await io.wait("w", 0.4)
        return "done"

    run_id = client.run_id_for("job", {})
    start = time.monotonic()
    first = client.invoke_sync("job", {}, run_id=run_id)
    assert first.status == "WAITING"
    time.sleep(0.2)
    again = client.invoke_sync("job", {}, run_id=run_id)  # re-executing keeps the deadline
    assert again.status == "WAITING"
    assert again.result(timeout=5) == "done"
    assert time.monotonic() - start < 2.0  # not 0.4 s after the second execution... only bound
    waits = [t for t in again.tasks if t["display_key"] == "w"]
    assert waits[0]["status"] == "COMPLETED"


def test_cancel_a_waiting_run_then_re_execute_it(client: TriggerClient) -> None:
    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        await io.wait("w", 30)

    run = client.invoke_sync("job")
    canceled = asyncio.run(run.cancel())
    assert canceled.status == "CANCELED"
    assert run.tasks[0]["status"] == "CANCELED"
    with pytest.raises(Exception, match="canceled"):
        run.result(timeout=1)
    again = client.invoke_sync("job", run_id=run.id)  # re-opened, waits again
    assert again.status == "WAITING"


def test_invoke_snapshot_is_how_the_execution_ended_and_attributes_read_the_store(
    client: TriggerClient,
) -> None:
    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        await io.wait("w", 30)

    run = client.invoke_sync("job")
    asyncio.run(client.cancel(run.id))  # what another process may do right after
    assert run.snapshot["status"] == "WAITING"
    assert run.status == "CANCELED"


def test_run_handle_fields(client: TriggerClient) -> None:
    @define(client, version="1.2.3")
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        await io.run_task("t", lambda: 1, name="Named", icon="bolt", params={"p": 1})
        return {"job": ctx.job.id, "version": ctx.job.version, "run": ctx.run.id}

    run = client.invoke_sync("job", {"x": 1})
    assert run.result(timeout=5) == {"job": "job", "version": "1.2.3", "run": run.id}
    assert run.job_id == "job" and run.error is None and run.executions == 1
    task = run.tasks[0]
    for field in ("id", "idempotency_key", "cache_key", "parent_id", "name", "icon", "status", "attempts",
                  "params", "output", "error", "callback_url", "started_at", "completed_at", "replayed"):
        assert field in task
    assert task["name"] == "Named" and task["icon"] == "bolt" and task["params"] == {"p": 1}
    assert task["output"] == 1 and task["replayed"] is False
    assert [r.id for r in client.runs(job_id="job")] == [run.id]
    assert client.runs(status="FAILURE") == []


def test_callback_first_post_wins_and_replay_keeps_the_path(client: TriggerClient) -> None:
    urls: list[str] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        return await io.run_task(
            "cb", lambda task: urls.append(task.callback_url), callback={"enabled": True, "timeout_in_seconds": 60}
        )

    run = client.invoke_sync("job")
    assert run.status == "WAITING" and len(urls) == 1
    again = client.invoke_sync("job", run_id=run.id)  # re-executing a waiting run: same path
    assert again.status == "WAITING" and len(urls) == 2 and urls[0] == urls[1]
    assert httpx.post(urls[0], json={"v": 1}).json() == {"ok": True}
    assert httpx.post(urls[0], json={"v": 2}).json() == {"ok": True, "accepted": False}
    assert run.result(timeout=5) == {"v": 1}


def test_callback_timeout_errors_the_task(client: TriggerClient) -> None:
    urls: list[str] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        return await io.run_task(
            "cb", lambda task: urls.append(task.callback_url), callback={"timeout_in_seconds": 0.3}
        )

    run = client.invoke_sync("job")
    run.wait_sync(timeout=5)
    assert run.status == "FAILURE"
    assert run.error["name"] == CallbackTimeoutError.__name__
    assert "no requests received" in run.error["message"]
    assert httpx.post(urls[0], json={}).status_code == 410


def test_wait_for_request_returns_the_posted_body(client: TriggerClient) -> None:
    urls: list[str] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        return await io.wait_for_request("req", urls.append, timeout_in_seconds=30)

    run = client.invoke_sync("job")
    httpx.post(urls[0], json=[1, "two"])
    assert run.result(timeout=5) == [1, "two"]


def test_background_operation_completes_or_errors_the_task(client: TriggerClient) -> None:
    from trigger_nb._engine import TaskSpec

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        async def operation(op_ctx):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.05)
            op_ctx.record_attempt("attempt", {"n": 1})
            if payload["fail"]:
                raise RuntimeError("operation failed")
            return {"fetched": True}

        return await io._execution.run_task(TaskSpec(cache_key="op", operation=operation, name="op"))

    ok = client.invoke_sync("job", {"fail": False})
    assert ok.status == "WAITING"
    assert ok.result(timeout=5) == {"fetched": True}
    assert any(t["display_key"] == "attempt-1" for t in ok.tasks)
    bad = client.invoke_sync("job", {"fail": True})
    bad.wait_sync(timeout=5)
    assert bad.status == "FAILURE" and bad.error["message"] == "operation failed"


def test_external_wait_resolved_from_another_thread(client: TriggerClient) -> None:
    from trigger_nb._engine import TaskSpec

    registered: list[dict[str, Any]] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        spec = TaskSpec(cache_key="ext", external={"timeout_in_seconds": 30, "register": registered.append})
        return await io._execution.run_task(spec)

    run = client.invoke_sync("job")
    assert run.status == "WAITING" and len(registered) == 1
    record = registered[0]
    outcome: list[str] = []
    thread = threading.Thread(
        target=lambda: outcome.append(
            client.runner.resolve_task(
                run.id, record["idempotency_key"], output={"got": 1},
                pending_flag="external_pending", resolved_by="test",
            )
        )
    )
    thread.start()
    thread.join()
    assert outcome == ["accepted"]
    assert run.result(timeout=5) == {"got": 1}
    assert client.runner.resolve_task(
        run.id, record["idempotency_key"], output={}, pending_flag="external_pending", resolved_by="t"
    ) == "already"


def test_presets_and_invalid_options(client: TriggerClient) -> None:
    assert retry.standard_backoff["limit"] == 8 and retry.exponential_backoff["factor"] == 2

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        await io.run_task("t", lambda: 1, retry={"limmit": 3})

    run = client.invoke_sync("job")
    assert run.status == "FAILURE" and run.error["name"] == "ConfigError"
    assert run.tasks == []  # nothing stored for a task whose options were rejected


def test_a_burst_of_callbacks_from_another_thread_resumes_every_run_once(client: TriggerClient) -> None:
    """Resolutions from the receiver's thread reach the loop in batches (one wake-up per
    batch): none is lost, and a run resolved twice in one batch resumes once."""
    executions: dict[str, int] = {}

    @client.define_job(id="burst")
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        executions[ctx.run.id] = executions.get(ctx.run.id, 0) + 1
        return await io.wait_for_request("cb", lambda url: None, timeout_in_seconds=600)

    runs = [client.invoke_sync("burst", {"k": k}) for k in range(40)]
    tasks = [run.tasks[0] for run in runs]
    runner = client.runner

    def post_all() -> list[str]:
        return [
            runner.complete_callback(t["id"], t["callback_url"].rsplit("/", 1)[1], {"k": i})
            for i, t in enumerate(tasks)
        ]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outcomes = [pool.submit(post_all) for _ in range(2)]  # every callback POSTed twice
        results = [f.result(timeout=30) for f in outcomes]
    assert sorted(results[0] + results[1]) == ["accepted"] * 40 + ["already"] * 40
    for k, run in enumerate(runs):
        assert run.result(timeout=30) == {"k": k}
    assert sorted(executions.values()) == [2] * 40  # the first execution and one resume each


def test_the_runner_keeps_nothing_per_run_once_its_work_is_done(client: TriggerClient) -> None:
    """A long-lived kernel executes, resumes, waits for and cancels many runs: the per-run
    lock and wake-up event exist only while in use, not one per run ever touched."""
    urls: list[str] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        await io.wait("pause", 0.05)
        if payload["callback"]:
            return await io.run_task("cb", lambda task: urls.append(task.callback_url), callback={})
        return payload

    finished = [client.invoke_sync("job", {"callback": False, "k": k}) for k in range(5)]
    for run in finished:
        run.wait_sync(timeout=10)  # resumed by its timer, awaited through wait_finished
    called_back = client.invoke_sync("job", {"callback": True})
    poll(lambda: urls)  # the timer resumes it into its callback task
    assert httpx.post(urls[0], json={"ok": 1}, timeout=10).json() == {"ok": True}
    called_back.wait_sync(timeout=10)
    canceled = client.invoke_sync("job", {"callback": True, "k": "c"})
    asyncio.run(canceled.cancel())  # from another loop, as a script would
    assert [run.status for run in finished] == ["SUCCESS"] * 5 and canceled.status == "CANCELED"
    assert called_back.status == "SUCCESS" and called_back.output == {"ok": 1}
    assert client._host.call_sync(lambda: (len(client.runner._locks), len(client.runner._changed))) == (0, 0)


def test_callbacks_resolved_in_one_batch_answer_as_if_posted_one_by_one(client: TriggerClient) -> None:
    """``complete_callbacks`` (one transaction for what the receiver queued): first POST wins
    inside a batch too, a wrong secret or an unknown id changes nothing, every accepted run
    resumes once."""

    @client.define_job(id="batch")
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        return await io.wait_for_request("cb", lambda url: None, timeout_in_seconds=600)

    runs = [client.invoke_sync("batch", {"k": k}) for k in range(3)]
    paths = [run.tasks[0]["callback_url"].rsplit("/", 2)[-2:] for run in runs]
    (a, secret_a), (b, secret_b), (c, _) = paths
    outcomes = client.runner.complete_callbacks(
        [(a, secret_a, "first"), (b, secret_b, "b"), (a, secret_a, "second"), (c, "wrong", "x"),
         ("task_unknown", "s", "y")]
    )
    assert outcomes == ["accepted", "accepted", "already", "not_found", "not_found"]
    assert runs[0].result(timeout=10) == "first" and runs[1].result(timeout=10) == "b"
    assert runs[2].status == "WAITING" and runs[2].tasks[0]["status"] == "WAITING"


def test_a_callback_is_answered_while_the_home_loop_is_blocked(client: TriggerClient) -> None:
    """Callbacks are resolved on the home loop when it is free; a blocked one (a cell in
    synchronous code) must not hold the POST's answer (SPEC §9): the receiver resolves it."""
    urls: list[str] = []

    @define(client)
    async def job(payload, io, ctx):  # type: ignore[no-untyped-def]
        return await io.run_task("cb", lambda task: urls.append(task.callback_url), callback={})

    run = client.invoke_sync("job")
    release = threading.Event()
    client._host.call_soon(release.wait, 30)  # the home loop is stuck until released
    try:
        response = httpx.post(urls[0], json={"v": 1}, timeout=10)
        assert response.json() == {"ok": True}
        assert client.repo.load_task(run.id, run.tasks[0]["idempotency_key"])["status"] == "COMPLETED"
    finally:
        release.set()
    assert run.result(timeout=10) == {"v": 1}


def test_an_orphan_whose_holder_cannot_be_seen_is_resumed_at_its_lease_expiry() -> None:
    """SPEC §10: a run left EXECUTING by a holder on another machine (or in another container)
    is taken when its lease expires, not before; one of a job not defined here is left alone."""
    from trigger_nb._engine._orphans import OrphanFinder
    from trigger_nb._store import Repository
    from trigger_nb.testing import MemoryStore

    repo = Repository(MemoryStore(), lease_ttl=60)
    expires = time.time() + 0.3
    for run_id, job_id in (("mine", "job"), ("theirs", "other-job")):
        repo.save_run({"id": run_id, "job_id": job_id, "status": "EXECUTING",
                       "lease": {"holder": "elsewhere:1:x:1:m", "expires_at": expires, "fence": 1}})
        repo.mark_executing(run_id)
    resumed: list[str] = []
    finder = OrphanFinder(repo, {"job": object()}, busy=lambda run_id: False, resume=resumed.append)
    assert finder.scan() == 0 and resumed == []  # the holder may be alive: its lease is fresh
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    assert finder.scan() == 1 and resumed == ["mine"]
    assert finder.scan() == 0  # not handed out again before a lease's time
