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
from _lab_ui import kernel, open_lab_notebook, run_all

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

LOAD = "%load_ext trigger_nb\nimport trigger_nb\nclient = trigger_nb.default_client()"


def log_of(page: Any, job: str) -> Any:
    """The task-log widget of ``job``'s run (the newest, if several are shown)."""
    return page.locator(".tnb-log", has=page.locator(".tnb-job", has_text=re.compile(f"^{re.escape(job)}$"))).last


def status_of(log: Any) -> Any:
    return log.locator(".tnb-header .tnb-status")


def expect_status(log: Any, status: str, timeout: float = 20) -> None:
    from playwright.sync_api import expect

    expect(status_of(log)).to_contain_text(status, timeout=timeout * 1000)


def run_status(page: Any, job: str) -> str:
    return kernel(page, f"print(client.runs(job_id={job!r})[0].status)").strip()


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
    assert all(not c["errors"] for c in cells), cells
    log = log_of(page, "sum-orders")
    expect_status(log, "FAILURE")
    expect(log.locator(".tnb-row-ERRORED")).to_contain_text("Convert")
    expect(log.locator(".tnb-error").first).to_contain_text("KeyError: 'USD'")

    kernel(page, "broken = False")  # the cause, fixed
    log.locator(".tnb-header").get_by_role("button", name="Retry", exact=True).click()
    expect_status(log, "SUCCESS")
    expect(log.locator(".tnb-output")).to_contain_text('"total": 9.0')
    assert run_status(page, "sum-orders") == "SUCCESS"
    # The latest execution: fetch-orders replayed, convert ran.
    expect(log.locator(".tnb-task", has_text="Fetch orders").locator(".tnb-tag-replayed")).to_be_visible()
    # Execution 1 as it was then: convert failed with KeyError (history is immutable).
    log.locator(".tnb-exec").first.click()
    expect(log.locator(".tnb-history-note")).to_contain_text("Execution 1")
    expect(log.locator(".tnb-row-ERRORED")).to_contain_text("Convert")
    expect(log.locator(".tnb-error").first).to_contain_text("KeyError: 'USD'")
