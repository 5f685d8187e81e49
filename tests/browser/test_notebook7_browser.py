"""The task log in Notebook 7, the classic-looking Jupyter frontend (SPEC §8).

Same server as the JupyterLab tests (it serves ``/notebooks/...`` when the ``notebook`` package
is installed), same widget: Run All, then a click in the task log that resumes the run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from typing import Any

import pytest
from _lab_ui import LOAD, expect_status, kernel, log_of, open_notebook, run_all

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

@pytest.fixture
def notebook7() -> None:
    """Notebook 7 is the `notebook` package (in the test extra): without it these tests skip,
    or fail where the browser tests are required (CI)."""
    if importlib.util.find_spec("notebook") is None:
        message = "the Notebook 7 browser test needs the notebook package (pip install -e '.[test]')"
        if os.environ.get("TRIGGER_NB_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (TRIGGER_NB_REQUIRE_BROWSER=1)")
        pytest.skip(message)


def test_notebook7_run_all_then_send_the_callback_from_the_task_log(
    notebook7: None, lab: Any, page: Any
) -> None:
    from playwright.sync_api import expect

    lab.write("notebook7.ipynb", [
        LOAD,
        "handed_out = []",
        "%%job approval-nb7\n"
        'order = await io.run_task("load-order", lambda: {"id": 7}, name="Load order")\n'
        'answer = await io.wait_for_request("approve", lambda url: handed_out.append(url), timeout_in_seconds=600)\n'
        "return {'order': order, 'answer': answer}",
    ])
    open_notebook(page, lab, "notebook7.ipynb", notebook7=True)
    assert page.evaluate("window.jupyterapp.name") == "Jupyter Notebook"  # not JupyterLab
    cells = run_all(page)
    assert [cell["errors"] for cell in cells] == [[], [], []], cells

    log = log_of(page, "approval-nb7")
    expect_status(log, "WAITING")
    expect(log).to_contain_text("Load order")
    url = log.locator("input.tnb-url")
    expect(url).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/callbacks/"))
    assert url.input_value() == json.loads(kernel(page, "import json; print(json.dumps(handed_out[-1]))"))

    log.locator(".tnb-sendbox textarea").fill('{"approved": true}')
    log.get_by_role("button", name="Send", exact=True).click()
    expect_status(log, "SUCCESS")
    expect(log.locator(".tnb-output")).to_contain_text('"approved": true')
    out = kernel(page, "print(json.dumps(client.runs(job_id='approval-nb7')[0].output))")
    assert json.loads(out) == {"order": {"id": 7}, "answer": {"approved": True}}
