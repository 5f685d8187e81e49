"""The task log in a real browser: JupyterLab + Playwright + the system's Chromium (SPEC §8).

Each test writes its own notebook, runs it with Run All, clicks the widget's controls and
checks the run's state in the page *and* in the kernel. Screenshots land in
``artifacts/browser/`` (see conftest).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from _lab_ui import (
    LOAD,
    expect_status,
    kernel,
    log_of,
    open_lab_notebook,
    run_all,
    run_cell,
    run_status,
)
from conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

def test_failed_run_fixed_then_retry(lab: Any, page: Any) -> None:
    from playwright.sync_api import expect

    open_lab_notebook(page, lab, "retry.ipynb", [
        LOAD,
        "broken = True\nrates = {'EUR': 0.9}",
        "%%job sum-orders\n"
        'orders = await io.run_task("fetch-orders", lambda: [{"total": 10, "currency": "EUR"}], name="Fetch orders")\n'
        "def convert():\n"
        "    currency = 'USD' if broken else 'EUR'\n"
        "    return sum(o['total'] * rates[currency] for o in orders)\n"
        'total = await io.run_task("convert", convert, name="Convert")\n'
        "return {'total': total}",
    ])
    cells = run_all(page)
    # A failed run fails its cell (SPEC §2), after showing its log.
    assert cells[-1]["errors"] and cells[-1]["errors"][0].startswith("RunFailedError"), cells
    log = log_of(page, "sum-orders")
    expect_status(log, "FAILURE")
    expect(log.locator(".tnb-row-ERRORED")).to_contain_text("Convert")
    expect(log.locator(".tnb-error").first).to_contain_text("KeyError: 'USD'")

    kernel(page, "broken = False")  # the cause, fixed
    log.locator(".tnb-header").get_by_role("button", name="Retry", exact=True).click()
    expect_status(log, "SUCCESS")
    expect(log.locator(".tnb-output")).to_contain_text('"total": 9')
    assert run_status(page, "sum-orders") == "SUCCESS"
    # The latest execution: fetch-orders replayed, convert ran.
    expect(log.locator(".tnb-task", has_text="Fetch orders").locator(".tnb-tag-replayed")).to_be_visible()
    # Execution 1 as it was then: convert failed with KeyError (history is immutable).
    log.locator(".tnb-exec").first.click()
    expect(log.locator(".tnb-history-note")).to_contain_text("Execution 1")
    expect(log.locator(".tnb-row-ERRORED")).to_contain_text("Convert")
    expect(log.locator(".tnb-error").first).to_contain_text("KeyError: 'USD'")


def test_wait_for_request_send_json_and_invalid_json(lab: Any, page: Any) -> None:
    from playwright.sync_api import expect

    open_lab_notebook(page, lab, "callback.ipynb", [
        LOAD,
        "handed_out = []",
        "%%job approval\n"
        'answer = await io.wait_for_request("approve", lambda url: handed_out.append(url), timeout_in_seconds=600)\n'
        "return {'answer': answer}",
    ])
    run_all(page)
    log = log_of(page, "approval")
    expect_status(log, "WAITING")
    url = log.locator("input.tnb-url")
    expect(url).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/callbacks/"))
    assert url.input_value() == json.loads(kernel(page, "import json; print(json.dumps(handed_out[-1]))"))
    expect(log.locator(".tnb-wait").first).to_contain_text(re.compile(r"times out in (9|10):\d\d"))

    area = log.locator(".tnb-sendbox textarea")
    area.fill("{approved: yes}")
    log.get_by_role("button", name="Send", exact=True).click()
    expect(log.locator(".tnb-inline-error")).to_contain_text("Invalid JSON")
    page.wait_for_timeout(500)
    assert run_status(page, "approval") == "WAITING"  # nothing was sent
    expect_status(log, "WAITING")

    area.fill('{"approved": true, "by": "ada"}')
    log.get_by_role("button", name="Send", exact=True).click()
    expect_status(log, "SUCCESS")
    expect(log.locator(".tnb-output")).to_contain_text('"approved": true')
    out = kernel(page, "print(json.dumps(client.runs(job_id='approval')[0].output))")
    assert json.loads(out) == {"answer": {"approved": True, "by": "ada"}}


def test_invalidate_then_next_execution_runs_the_task_again(lab: Any, page: Any) -> None:
    from playwright.sync_api import expect

    open_lab_notebook(page, lab, "invalidate.ipynb", [
        LOAD,
        "calls = []",
        "%%job stamp\n"
        'n = await io.run_task("stamp", lambda: calls.append(1) or len(calls), name="Stamp")\n'
        "return n",
    ])
    run_all(page)
    log = log_of(page, "stamp")
    expect_status(log, "SUCCESS")
    log.locator(".tnb-task", has_text="Stamp").click()  # expand the row
    log.get_by_role("button", name="Invalidate", exact=True).click()
    expect(log.locator(".tnb-note")).to_contain_text("Invalidated: stamp")
    assert kernel(page, "print(len(calls))").strip() == "1"
    log.locator(".tnb-header").get_by_role("button", name="Retry", exact=True).click()
    expect(log.locator(".tnb-meta")).to_contain_text("2 executions")
    expect_status(log, "SUCCESS")
    expect(log.locator(".tnb-task", has_text="Stamp").locator(".tnb-tag-ran")).to_be_visible()
    assert kernel(page, "print(len(calls), client.runs(job_id='stamp')[0].output)").split() == ["2", "2"]


PRICED = (
    "%%job priced\n"
    'rate = await io.run_task("rate", lambda: calls.append("rate") or {rate}, name="Rate")\n'
    'return {{"rate": rate, "total": await io.run_task("{total}", lambda: rate * 10, name="Total")}}'
)


def test_edited_lambda_shows_code_changed_invalidate_runs_it_again(lab: Any, page: Any) -> None:
    """Edit a task's lambda, re-run the cell: the replayed task says "code changed";
    Invalidate, re-run: it ran again. Then rename a key: the old task is "not reached"."""
    from playwright.sync_api import expect

    open_lab_notebook(page, lab, "edited.ipynb", [LOAD, "calls = []", PRICED.format(rate=2, total="total")])
    run_all(page)
    log = log_of(page, "priced")
    expect_status(log, "SUCCESS")
    expect(log.locator(".tnb-tag-changed")).to_have_count(0)

    run_cell(page, 2, PRICED.format(rate=3, total="total"))  # the lambda edited
    log = log_of(page, "priced")
    expect(log.locator(".tnb-meta")).to_contain_text("2 executions")
    rate = log.locator(".tnb-task", has_text="Rate")
    expect(rate.locator(".tnb-tag-changed")).to_have_text("code changed")
    expect(rate.locator(".tnb-tag-replayed")).to_be_visible()
    expect(log.locator(".tnb-output")).to_contain_text('"rate": 2')  # replayed by key (v2)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log.screenshot(path=str(ARTIFACTS / "code_changed_log.png"))
    changed = log.locator(".tnb-changed-actions")
    expect(changed).to_contain_text("The function changed")
    changed.get_by_role("button", name="Invalidate", exact=True).click()
    expect(log.locator(".tnb-note")).to_contain_text("Invalidated: rate")

    run_cell(page, 2)  # re-run the cell as it is
    log = log_of(page, "priced")
    expect(log.locator(".tnb-meta")).to_contain_text("3 executions")
    rate = log.locator(".tnb-task", has_text="Rate")
    expect(rate.locator(".tnb-tag-ran")).to_be_visible()
    expect(rate.locator(".tnb-tag-changed")).to_have_count(0)
    expect(log.locator(".tnb-output")).to_contain_text('"rate": 3')  # the edit took effect
    assert kernel(page, "print(calls)").strip() == "['rate', 'rate']"

    run_cell(page, 2, PRICED.format(rate=3, total="sum"))  # a key renamed: "total" is unused
    log = log_of(page, "priced")
    expect(log.locator(".tnb-meta")).to_contain_text("4 executions")
    unused = log.locator(".tnb-unreached .tnb-not-reached")
    expect(unused).to_have_count(1)
    expect(unused).to_contain_text("Total")
    expect(log.locator(".tnb-unreached-title")).to_contain_text("not reached by execution 4")
    log.screenshot(path=str(ARTIFACTS / "not_reached_log.png"))
    unused.get_by_role("button", name="Invalidate", exact=True).click()
    expect(log.locator(".tnb-unreached")).to_have_count(0)
    keys = kernel(page, "print(sorted(t['display_key'] for t in client.runs(job_id='priced')[0].tasks))")
    assert keys.strip() == "['rate', 'sum']"


def test_resume_now_on_a_one_hour_wait(lab: Any, page: Any) -> None:
    from playwright.sync_api import expect

    open_lab_notebook(page, lab, "resume.ipynb", [
        LOAD,
        '%%job sleeper\nawait io.wait("nap", 3600)\nreturn "awake"',
    ])
    run_all(page)
    log = log_of(page, "sleeper")
    expect_status(log, "WAITING")
    expect(log.locator(".tnb-wait")).to_contain_text(re.compile(r"resumes in (59:\d\d|1:00:00)"))
    log.get_by_role("button", name="Resume now", exact=True).click()
    expect_status(log, "SUCCESS")
    assert run_status(page, "sleeper") == "SUCCESS"


def test_cancel_run(lab: Any, page: Any) -> None:
    open_lab_notebook(page, lab, "cancel.ipynb", [
        LOAD,
        '%%job doomed\nawait io.wait("nap", 3600)\nreturn "never"',
    ])
    run_all(page)
    log = log_of(page, "doomed")
    expect_status(log, "WAITING")
    log.get_by_role("button", name="Cancel run", exact=True).click()
    expect_status(log, "CANCELED")
    assert run_status(page, "doomed") == "CANCELED"


def test_complete_with_value_on_a_failed_task(lab: Any, page: Any) -> None:
    from playwright.sync_api import expect

    open_lab_notebook(page, lab, "complete.ipynb", [
        LOAD,
        "%%job lookup\n"
        'price = await io.run_task("price", lambda: {}["missing"], name="Price")\n'
        "return {'price': price}",
    ])
    run_all(page)
    log = log_of(page, "lookup")
    expect_status(log, "FAILURE")
    row_controls = log.locator(".tnb-actions", has=page.get_by_role("button", name="Complete with value", exact=True))
    row_controls.locator("textarea").fill("not json")
    row_controls.get_by_role("button", name="Complete with value", exact=True).click()
    expect(log.locator(".tnb-inline-error")).to_contain_text("Invalid JSON")
    row_controls.locator("textarea").fill("42")
    row_controls.get_by_role("button", name="Complete with value", exact=True).click()
    expect_status(log, "SUCCESS")
    expect(log.locator(".tnb-output")).to_contain_text('"price": 42')
    assert kernel(page, "print(client.runs(job_id='lookup')[0].output)").strip() == "{'price': 42}"


def test_click_answered_within_a_second_while_1000_tasks_stream(lab: Any, page: Any) -> None:
    from playwright.sync_api import expect

    open_lab_notebook(page, lab, "stream.ipynb", [
        LOAD,
        # The wait suspends the first execution; the second runs in the background while the
        # log is on screen, streaming 1,000 tasks into it, for 3 s at least (a task that
        # returns at once would finish them in a fraction of a second: nothing to click into).
        "import time",
        "%%job stream-1k\n"
        'await io.wait("warm-up", 0.5)\n'
        "for i in range(1000):\n"
        '    await io.run_task(["item", i], lambda: time.sleep(0.003) or i, name="item")\n'
        "return 'done'",
    ])
    run_all(page)
    log = log_of(page, "stream-1k")
    expect_status(log, "EXECUTING", timeout=20)
    group = log.locator(".tnb-group", has_text="item")
    expect(group).to_be_visible(timeout=20_000)
    # A click while it streams: the group opens (a round trip through the kernel) within 1 s.
    elapsed = page.evaluate(
        """async () => {
          const t0 = performance.now();
          document.querySelector('.tnb-group').click();
          while (!document.querySelector('.tnb-group .tnb-toggle') ||
                 document.querySelector('.tnb-group .tnb-toggle').textContent !== '▾') {
            if (performance.now() - t0 > 10000) return -1;
            await new Promise((r) => setTimeout(r, 10));
          }
          return performance.now() - t0;
        }"""
    )
    print(f"\n[trigger_nb] click answered while streaming: {elapsed:.0f} ms")
    assert 0 <= elapsed < 1000, elapsed
    expect_status(log, "SUCCESS", timeout=60)
    expect(group).to_contain_text("× 1,000")
    # Open, it lists the first 500 and offers the rest.
    members = log.locator(".tnb-task", has_text="item")
    expect(members).to_have_count(500)
    more = log.locator(".tnb-more")
    expect(more).to_contain_text("500 more")
    more.click()
    expect(members).to_have_count(1000)
    expect(more).to_have_count(0)
    # Closed again, the 1,000-task run is one row in the page.
    group.click()
    expect(members).to_have_count(0)


def test_runs_table_opens_a_run_and_filters(lab: Any, page: Any) -> None:
    from playwright.sync_api import expect

    open_lab_notebook(page, lab, "runs.ipynb", [
        LOAD + "\n%job config --dir runs-table-store",  # only this test's runs
        "%job",  # shown first: the runs below appear in it live
        '%%job good-one\nreturn await io.run_task("x", lambda: 1)',
        '%%job bad-one\nreturn await io.run_task("y", lambda: 1 / 0)',
    ])
    run_all(page)
    table = page.locator(".tnb-runs").last
    rows = table.locator(".tnb-run-row")
    expect(rows).to_have_count(2)
    table.locator("select.tnb-filter-status").select_option("FAILURE")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("bad-one")
    rows.first.click()
    opened = table.locator(".tnb-open-run .tnb-log")
    expect(opened.locator(".tnb-job")).to_have_text("bad-one")
    expect(opened.locator(".tnb-error").first).to_contain_text("ZeroDivisionError")


def test_trigger_cell_lists_its_runs_live(lab: Any, page: Any) -> None:
    from playwright.sync_api import expect

    open_lab_notebook(page, lab, "every.ipynb", [
        LOAD,
        "%%job ticker --every 1\nreturn 'tick'",
    ])
    run_all(page)
    table = page.locator(".tnb-runs").last
    expect(table.locator(".tnb-title")).to_contain_text("ticker")
    expect(table.locator(".tnb-run-row").nth(1)).to_be_visible(timeout=15_000)  # two runs so far
    kernel(page, "client.close()")  # stop the schedule
