"""Real-browser fixtures: one JupyterLab on 127.0.0.1 and one headless Chromium per session.

Recipe: ``/work/shared/recipes/browser-tests.md``. Everything runs in a temp directory (its own
Jupyter config, runtime, IPython and trigger_nb store) and is stopped by PID: the server, the
kernels it started, the browser. When a tool is missing the tests skip with what to install —
unless ``TRIGGER_NB_REQUIRE_BROWSER=1`` (CI), where a missing tool is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("TRIGGER_NB_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TRIGGER_NB_ARTIFACTS", REPO / "artifacts" / "browser"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing() -> list[str]:
    missing = []
    if not (shutil.which(CHROMIUM) or os.path.exists(CHROMIUM)):
        missing.append(f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    for module, package in (("jupyterlab", "jupyterlab"), ("playwright", "playwright"), ("anywidget", "anywidget")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"{package} (pip install -e '.[test]'; never `playwright install`)")
    return missing


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    missing = _missing()
    if not missing:
        return
    message = "browser tests need " + "; ".join(missing)
    if os.environ.get("TRIGGER_NB_REQUIRE_BROWSER") == "1":
        fail = pytest.mark.usefixtures("_browser_required")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(fail)
        config._trigger_nb_browser_missing = message
        return
    skip = pytest.mark.skip(reason=message)
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def _browser_required(request: Any) -> None:
    pytest.fail(request.config._trigger_nb_browser_missing + " (TRIGGER_NB_REQUIRE_BROWSER=1)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (kernels the server started), read from /proc."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            text = Path(f"/proc/{parent}/task/{parent}/children").read_text()
        except OSError:
            continue
        kids = [int(p) for p in text.split()]
        found.extend(kids)
        todo.extend(kids)
    return found


def _stop_pids(pids: list[int], timeout: float = 5.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Lab:
    """A running JupyterLab: ``url(path)``, ``root`` (its notebook directory), ``write(name,
    cells)`` to create a notebook there."""

    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen[bytes]) -> None:
        self.root, self.port, self.token, self.proc = root, port, token, proc

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}{sep}token={self.token}"

    def write(self, name: str, cells: list[str]) -> str:
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(self.root / name))
        return name


@pytest.fixture(scope="session")
def lab(tmp_path_factory: Any) -> Iterator[Lab]:
    if _missing():
        pytest.skip("browser tools missing")
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    root.mkdir()
    config = base / "config"
    settings = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # The same server also serves Notebook 7 (/notebooks/...) when `notebook` is installed;
    # its page exposes the app to the tests too. Unknown to a server without it: ignored.
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"JupyterNotebookApp": {"expose_app_in_browser": True}})
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "IPYTHONDIR": str(base / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "TRIGGER_NB_DIR": str(base / "store"),
        # Kernels import this checkout's trigger_nb.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    port, token = _free_port(), secrets.token_hex(16)
    log = open(base / "jupyterlab.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Lab(root, port, token, proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(server.url("/api/status"), timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start; see {base / 'jupyterlab.log'}")
            time.sleep(0.2)
        yield server
    finally:
        kids = _children(proc.pid)
        try:
            request = urllib.request.Request(server.url("/api/shutdown"), method="POST")
            urllib.request.urlopen(request, timeout=5).close()
            proc.wait(timeout=10)
        except Exception:
            pass
        _stop_pids([proc.pid, *kids])
        log.close()


# Module scope, not session: Playwright's sync API keeps an asyncio loop *running* in the main
# thread while it is open, and later test modules (asyncio.run, nest_asyncio) must not see it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if _missing():
        pytest.skip("browser tools missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, request: Any) -> Iterator[Any]:
    """A fresh page; its screenshot is saved to ``artifacts/browser/<test>.png`` at the end."""
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    tab = context.new_page()
    try:
        yield tab
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        except Exception:
            pass
        context.close()
