"""Driving JupyterLab from Playwright: open a notebook, run cells, talk to its kernel."""

from __future__ import annotations

import re
from typing import Any

KERNEL_IDLE = """
async () => {
  const w = window.jupyterapp.shell.currentWidget;
  await w.context.ready;
  await w.sessionContext.ready;
  for (let i = 0; i < 600; i++) {
    const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
    if (kernel && kernel.status === 'idle') return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}
"""

ALL_EXECUTED = """
() => {
  const w = window.jupyterapp.shell.currentWidget;
  const kernel = w && w.sessionContext.session && w.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  const cells = w.content.widgets.filter((c) => c.model.type === 'code');
  return cells.every((c) => c.model.executionCount !== null);
}
"""

CELL_REPORT = """
() => {
  const w = window.jupyterapp.shell.currentWidget;
  return w.content.widgets.filter((c) => c.model.type === 'code').map((c) => ({
    count: c.model.executionCount,
    source: c.model.sharedModel.getSource().slice(0, 60),
    errors: c.model.outputs.toJSON().filter((o) => o.output_type === 'error').map((o) => `${o.ename}: ${o.evalue}`),
  }));
}
"""

EXECUTE = """
async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({ code });
  const out = [];
  future.onIOPub = (msg) => {
    const t = msg.header.msg_type;
    if (t === 'stream') out.push(msg.content.text);
    if (t === 'error') out.push(`${msg.content.ename}: ${msg.content.evalue}`);
    if (t === 'execute_result') out.push(msg.content.data['text/plain']);
  };
  await future.done;
  return out.join('');
}
"""


#: A notebook's first cell: the extension, and the client the tests ask about runs.
LOAD = "%load_ext trigger_nb\nimport trigger_nb\nclient = trigger_nb.default_client()"


def open_notebook(page: Any, lab: Any, name: str, *, notebook7: bool = False) -> None:
    """Open ``name`` (in the lab's root) in JupyterLab, or in Notebook 7 (``/notebooks/...``,
    served by the same server when the ``notebook`` package is installed), and wait until its
    kernel is really idle."""
    url = lab.url(f"/notebooks/{name}") if notebook7 else lab.url(f"/lab/tree/{name}") + "&reset"
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    assert page.evaluate(KERNEL_IDLE), "the kernel did not become idle"


def wait_all_executed(page: Any, timeout: float = 90) -> list[dict[str, Any]]:
    page.wait_for_function(ALL_EXECUTED, timeout=timeout * 1000, polling=200)
    return list(page.evaluate(CELL_REPORT))


def run_all(page: Any, timeout: float = 90) -> list[dict[str, Any]]:
    """Run every cell (the Run All command) and wait until all ran; returns a report per cell."""
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_timeout(300)
    return wait_all_executed(page, timeout)


def kernel(page: Any, code: str) -> str:
    """Execute ``code`` in the notebook's kernel (as a user would in a new cell); its output."""
    return str(page.evaluate(EXECUTE, code))


def open_lab_notebook(page: Any, lab: Any, name: str, cells: list[str]) -> None:
    lab.write(name, cells)
    open_notebook(page, lab, name)


RUN_ONE = """
async ([index, source]) => {
  const w = window.jupyterapp.shell.currentWidget;
  const cell = w.content.widgets[index];
  if (source !== null) cell.model.sharedModel.setSource(source);
  const before = cell.model.executionCount;
  w.content.activeCellIndex = index;
  await window.jupyterapp.commands.execute('notebook:run-cell');
  return before;
}
"""

CELL_DONE = """
([index, before]) => {
  const w = window.jupyterapp.shell.currentWidget;
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  const count = w.content.widgets[index].model.executionCount;
  return kernel && kernel.status === 'idle' && count !== null && count !== before;
}
"""


def run_cell(page: Any, index: int, source: str | None = None, timeout: float = 60) -> None:
    """Run cell ``index`` (0-based) as a user would (select it, Shift+Enter), after replacing
    its text with ``source`` (an edit), and wait until it ran."""
    before = page.evaluate(RUN_ONE, [index, source])
    page.wait_for_function(CELL_DONE, arg=[index, before], timeout=timeout * 1000, polling=100)


# -- the task-log widget ---------------------------------------------------------------------
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
