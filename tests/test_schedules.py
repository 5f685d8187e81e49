"""Scheduled jobs: ``interval_trigger`` / ``--every`` and ``cron_trigger`` / ``--cron`` (SPEC §2, §3).

Real store, real home loop timers, and a real IPython shell for the magic. Counts are checked,
never absolute timings: ticks are told apart by the body version that produced them and by
their ``ts`` payload.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from _support import poll
from IPython.utils.capture import capture_output

from trigger_nb import ConfigError, TriggerClient, cron_trigger, interval_trigger
from trigger_nb._notebook._trigger_view import TriggerView

pytestmark = pytest.mark.both_stores


def define_ticker(client: TriggerClient, version: str, seconds: float = 1) -> None:
    @client.define_job(id="ticker", trigger=interval_trigger(seconds=seconds))
    async def ticker(payload, io, ctx):  # type: ignore[no-untyped-def]
        return {"body": version, **payload}


def outputs(client: TriggerClient, job_id: str = "ticker") -> list[dict[str, Any]]:
    """Outputs of the job's finished runs, oldest tick first."""
    done = [r.output for r in client.runs(job_id=job_id) if r.status == "SUCCESS"]
    return sorted(done, key=lambda o: o["ts"])


def epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def assert_one_timer(ticks: list[dict[str, Any]], seconds: float) -> None:
    """Ticks come from a single timer: distinct times, one interval apart (no duplicate
    schedule), each naming the previous one as ``last_timestamp``."""
    times = [epoch(t["ts"]) for t in ticks]
    assert len(set(times)) == len(times)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(gap >= seconds - 1e-6 for gap in gaps), gaps
    for previous, tick in zip(ticks, ticks[1:], strict=False):
        assert tick["last_timestamp"] == previous["ts"]


# -- interval ------------------------------------------------------------------------------------


def test_interval_runs_repeatedly_and_a_new_definition_replaces_the_schedule(
    client: TriggerClient,
) -> None:
    define_ticker(client, "v1")
    assert client.runs(job_id="ticker") == []  # the first tick is one interval away
    poll(lambda: len(outputs(client)) >= 2)

    define_ticker(client, "v2")  # re-executing the cell: same id, new body
    time.sleep(0.2)  # a v1 tick already executing may still finish
    v1_count = sum(o["body"] == "v1" for o in outputs(client))
    poll(lambda: sum(o["body"] == "v2" for o in outputs(client)) >= 2)

    ticks = outputs(client)
    assert sum(o["body"] == "v1" for o in ticks) == v1_count  # the old body never runs again
    assert ticks[0]["last_timestamp"] is None
    assert_one_timer(ticks, 1)
    assert len(client.storage.keys("schedule/")) == 1


def test_a_run_id_per_tick_and_the_schedule_record(client: TriggerClient) -> None:
    define_ticker(client, "v1")
    [first] = poll(lambda: outputs(client)[:1])
    run = next(r for r in client.runs(job_id="ticker") if r.output == first)
    record = client.storage.get("schedule/ticker")
    assert record["spec"] == {"kind": "interval", "seconds": 1}
    assert record["last_timestamp"] >= first["ts"]
    assert record["next_due"] > epoch(first["ts"])
    # The run id is derived from (job, tick time): the same tick can never start twice.
    from trigger_nb._events._eventlog import trigger_run_id

    assert run.id == trigger_run_id("ticker", "schedule", first["ts"])


def test_redefining_without_a_trigger_stops_the_schedule(client: TriggerClient) -> None:
    define_ticker(client, "v1")
    poll(lambda: client.scheduler.next_due("ticker"))

    @client.define_job(id="ticker")
    async def plain(payload, io, ctx):  # type: ignore[no-untyped-def]
        return {"body": "plain", "ts": "-"}

    assert client.storage.keys("schedule/") == []
    time.sleep(1.3)  # past the first tick's time
    assert client.runs(job_id="ticker") == []


def test_close_cancels_the_timers(open_client: Any) -> None:
    first = open_client()
    try:
        define_ticker(first, "v1")
        poll(lambda: first.scheduler.next_due("ticker"))
    finally:
        first.close()
    time.sleep(1.3)  # past the first tick's time
    with open_client() as reader:  # reading only: starts nothing
        assert reader.runs(job_id="ticker") == []


# -- restarts --------------------------------------------------------------------------------------


def test_a_tick_due_while_no_kernel_ran_runs_once_when_the_job_is_defined_again(
    open_client: Any,
) -> None:
    with open_client() as first:
        define_ticker(first, "v1", seconds=1)
        missed_due = poll(lambda: first.scheduler.next_due("ticker"))
        assert first.runs(job_id="ticker") == []  # closed before its first tick
    time.sleep(2.2)  # two ticks fall due while nothing runs

    with open_client() as second:
        restarted = time.time()
        define_ticker(second, "v2", seconds=1)
        [caught_up] = poll(lambda: outputs(second)[:1])
        assert epoch(caught_up["ts"]) == pytest.approx(missed_due)
        assert caught_up["body"] == "v2" and caught_up["last_timestamp"] is None
        poll(lambda: len(outputs(second)) >= 2)
        ticks = outputs(second)
        # The missed ticks ran once in all, not one by one: the next tick is after the restart.
        assert epoch(ticks[1]["ts"]) > restarted
        assert ticks[1]["last_timestamp"] == caught_up["ts"]


def test_a_due_tick_is_recorded_when_a_new_client_opens_the_store(open_client: Any) -> None:
    with open_client() as first:
        define_ticker(first, "v1", seconds=1)
        missed_due = poll(lambda: first.scheduler.next_due("ticker"))
    time.sleep(1.3)

    with open_client() as second:

        @second.define_job(id="other")
        async def other(payload, io, ctx):  # type: ignore[no-untyped-def]
            return None

        second.invoke_sync("other")  # opens the store and starts the background work
        [queued] = poll(lambda: second.runs(job_id="ticker"), timeout=5)
        assert queued.status == "QUEUED"  # recorded; its body lives in the defining cell
        assert epoch(queued.payload["ts"]) == pytest.approx(missed_due)
        time.sleep(0.8)  # more watch rounds
        assert len(second.runs(job_id="ticker")) == 1  # recorded once, not once per missed tick

        define_ticker(second, "v2", seconds=1)  # the cell is executed again
        assert queued.result(timeout=5)["body"] == "v2"


# -- cron --------------------------------------------------------------------------------------------


def test_cron_jobs_are_scheduled_on_the_next_utc_match(client: TriggerClient) -> None:
    @client.define_job(id="nightly", trigger=cron_trigger("0 3 * * *"))
    async def nightly(payload, io, ctx):  # type: ignore[no-untyped-def]
        return payload

    due = poll(lambda: client.scheduler.next_due("nightly"))
    when = dt.datetime.fromtimestamp(due, dt.timezone.utc)
    assert (when.hour, when.minute, when.second) == (3, 0, 0)
    assert 0 < due - time.time() <= 24 * 3600
    assert client.runs(job_id="nightly") == []
    view = TriggerView(client, "nightly")
    assert (
        "cron 0 3 * * * (UTC)" in view.text() and when.isoformat(timespec="seconds") in view.text()
    )


def test_cron_validation() -> None:
    with pytest.raises(ConfigError, match="5 fields"):
        cron_trigger("* * * * * *")
    with pytest.raises(ConfigError, match="not a valid cron"):
        cron_trigger("99 * * * *")


# -- the magic in a real IPython shell ---------------------------------------------------------------


def run_cell(ip: Any, source: str) -> tuple[Any, str]:
    with capture_output() as captured:
        result = ip.run_cell(source, store_history=True)
    error = result.error_before_exec or result.error_in_exec
    shown = "\n".join(str(o.data.get("text/plain", "")) for o in captured.outputs)
    return error, captured.stdout + shown


def test_magic_every_runs_repeatedly_and_reexecuting_the_cell_replaces_it(
    ip: Any, shell_client: TriggerClient
) -> None:
    error, shown = run_cell(ip, '%%job beat --every 1\nreturn {"body": "v1", **payload}')
    assert error is None, shown
    assert "every 1 s" in shown and "next run:" in shown and "Runs started: 0" in shown
    poll(lambda: len(outputs(shell_client, "beat")) >= 2)

    error, _ = run_cell(ip, '%%job beat --every 1\nreturn {"body": "v2", **payload}')
    assert error is None
    time.sleep(0.2)
    v1_count = sum(o["body"] == "v1" for o in outputs(shell_client, "beat"))
    poll(lambda: sum(o["body"] == "v2" for o in outputs(shell_client, "beat")) >= 2)
    ticks = outputs(shell_client, "beat")
    assert sum(o["body"] == "v1" for o in ticks) == v1_count
    assert_one_timer(ticks, 1)


def test_magic_cron_and_its_errors(ip: Any, shell_client: TriggerClient) -> None:
    error, shown = run_cell(ip, '%%job report --cron "*/5 * * * *"\nreturn payload')
    assert error is None and "cron */5 * * * * (UTC)" in shown
    error, _ = run_cell(ip, '%%job report2 --cron "*/5 * * *"\nreturn payload')
    assert isinstance(error, ConfigError) and "5 fields" in str(error)
    error, _ = run_cell(ip, "%%job fast --every 0.5\nreturn payload")
    assert isinstance(error, ConfigError) and "at least 1" in str(error)
    assert "report2" not in shell_client.jobs and "fast" not in shell_client.jobs
