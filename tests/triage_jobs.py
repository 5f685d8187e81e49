"""A job defined in a module, as a project defines its jobs (tested by tests/test_testing.py,
and the README's example of ``trigger_nb.testing.JobTester``)."""

from __future__ import annotations

from typing import Any

from trigger_nb import TriggerClient

client = TriggerClient()  # opens nothing until used: the tester never touches it

#: What the real "notify" step did (a test checks it ran for real).
NOTIFIED: list[str] = []


def fetch_issue(number: int) -> dict[str, Any]:
    """The real API call (a test mocks it by its task's cache key)."""
    raise RuntimeError("the issue tracker is not reachable from tests")


@client.define_job(id="triage-issue", version="1.2.0")
async def triage_issue(payload: Any, io: Any, ctx: Any) -> Any:
    number = payload["number"]
    issue = await io.run_task("fetch-issue", lambda: fetch_issue(number), params={"number": number})
    label = await io.run_task("classify", lambda: "bug" if "crash" in issue["title"].lower() else "question")
    await io.wait("cool-down", 3600)  # an hour: the tester fast-forwards it
    channel = "#bugs" if label == "bug" else "#support"
    await io.run_task(
        ["notify", label],
        lambda: NOTIFIED.append(f"{channel}: #{number}") or channel,
        params={"channel": channel},
        retry={"limit": 3, "min_timeout_in_ms": 60_000},
    )
    return {"number": number, "label": label, "job": f"{ctx.job.id}@{ctx.job.version}"}
