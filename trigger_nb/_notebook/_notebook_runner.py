"""Execute notebooks and code cells in real Jupyter kernels, reliably.

Used by ``trigger-nb demo`` and by the test-suite. Two entry points:

- :func:`execute_notebook` runs a whole notebook in a fresh kernel through nbclient
  (:class:`RobustNotebookClient`) and always stops that kernel;
- :class:`KernelSession` keeps ONE live kernel for running several cells one after another.

Why the polling here is sliced: with ipykernel 6.31/7.4 and pyzmq 26/27 nbclient sometimes misses
the wake-up for a message that has already arrived (the kernel's ``execute_reply``) and then waits
out the *whole* timeout (1 run in 10-20 with ``timeout=60``; forever with ``timeout=None``). Asking
the socket again every :data:`POLL_SLICE` seconds bounds the cost of a missed wake-up to one slice.
See "Recipe: executing notebooks headlessly (nbclient)" in the shared recipes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from queue import Empty
from time import monotonic
from typing import Any

import nbformat
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.client import KernelClient
from jupyter_client.manager import KernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

POLL_SLICE = 0.5
"""Longest single wait on a kernel socket, in seconds: the most a missed wake-up can cost."""

# IPython's history database is useless here and concurrent kernels would contend for its lock.
# No history database per kernel; and no "running over TCP without encryption" warning from
# ipykernel 7 on every start (kernels here listen on loopback only), which would drown the
# output of `trigger-nb demo`.
_KERNEL_ARGUMENTS = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]

_GetMsg = Callable[..., Awaitable[dict[str, Any]]]


def _sliced(get_msg: _GetMsg) -> _GetMsg:
    """Wrap an async channel ``get_msg`` so that it polls in slices of at most POLL_SLICE.

    Same contract as the original: returns the next message, or raises ``queue.Empty`` once the
    caller's ``timeout`` has elapsed (``None``: never). At least one poll is always made.
    """

    async def sliced_get_msg(timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            time_left = POLL_SLICE if deadline is None else max(0.0, deadline - monotonic())
            try:
                return await get_msg(timeout=min(POLL_SLICE, time_left))
            except Empty:
                if deadline is not None and monotonic() >= deadline:
                    raise

    return sliced_get_msg


def _kernel_process(km: KernelManager) -> subprocess.Popen[bytes]:
    """The kernel's child process (only local kernels are supported)."""
    provisioner = km.provisioner
    if not isinstance(provisioner, LocalProvisioner) or provisioner.process is None:
        raise RuntimeError("only kernels started by a LocalProvisioner are supported")
    process: subprocess.Popen[bytes] = provisioner.process
    return process


def _kill(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL ``process`` by its PID unless it has exited; reap it (no zombie keeps the PID)."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=10)


class RobustNotebookClient(NotebookClient):
    """A NotebookClient whose shell/iopub polling survives missed wake-ups (see module docstring).

    ``kernel_process`` is the kernel's process once started, so callers can verify it is gone.
    """

    kernel_process: subprocess.Popen[bytes] | None = None

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        await super().async_start_new_kernel(**kwargs)
        assert self.km is not None
        self.kernel_process = _kernel_process(self.km)

    async def async_start_new_kernel_client(self) -> KernelClient:
        kc = await super().async_start_new_kernel_client()
        # nbclient awaits shell get_msg(timeout=cell timeout) in _async_poll_for_reply and iopub
        # get_msg(timeout=None) in _async_poll_output_msg: exactly the waits that hang on a
        # missed wake-up, so both channels poll in slices.
        for channel in (kc.shell_channel, kc.iopub_channel):
            channel.get_msg = _sliced(channel.get_msg)
        return kc


def execute_notebook(
    nb: nbformat.NotebookNode,
    *,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    kernel_name: str = "python3",
    allow_errors: bool = False,
) -> nbformat.NotebookNode:
    """Execute every code cell of ``nb`` in a fresh kernel and return ``nb``, executed in place.

    ``env`` is merged over ``os.environ`` for the kernel process; ``cwd`` is its working
    directory; ``timeout`` bounds each cell (seconds). The kernel is stopped before this returns
    or raises, killed by its PID if the graceful shutdown fails.

    Raises ``nbclient.exceptions.CellExecutionError`` when a cell fails and ``allow_errors`` is
    false (outputs up to that cell are kept in ``nb``), ``CellTimeoutError`` when a cell exceeds
    ``timeout`` and ``DeadKernelError`` when the kernel dies.
    """
    client = RobustNotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        allow_errors=allow_errors,
        extra_arguments=_KERNEL_ARGUMENTS,
    )
    try:
        return client.execute(cwd=cwd, env={**os.environ, **(env or {})})
    finally:
        _kill(client.kernel_process)


def notebook_from_cells(sources: Iterable[str]) -> nbformat.NotebookNode:
    """A new nbformat-4 notebook with one code cell per source."""
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def _output_text(output_type: str, content: Mapping[str, Any]) -> str:
    """The text of one output (an nbformat output or an iopub message's content)."""
    if output_type == "stream":
        return str(content["text"])
    if output_type in ("display_data", "execute_result", "update_display_data"):
        plain = content.get("data", {}).get("text/plain")
        return "" if plain is None else _line(plain)
    if output_type == "error":
        return _line(f"{content['ename']}: {content['evalue']}")
    return ""


def _line(text: str | list[str]) -> str:
    text = "".join(text) if isinstance(text, list) else text
    return text if text.endswith("\n") else text + "\n"


def cell_text_outputs(cell: nbformat.NotebookNode) -> str:
    """All stream text, ``text/plain`` of displays and results, and ``ename: evalue`` of errors.

    Pieces are concatenated in output order; every non-stream piece ends with a newline.
    """
    return "".join(_output_text(out["output_type"], out) for out in cell.get("outputs", []))


@dataclass
class CellResult:
    """What one :meth:`KernelSession.run` produced.

    ``outputs`` holds display_data / execute_result / update_display_data outputs as dicts shaped
    like nbformat outputs (``output_type``, ``data``, ``metadata``, ...). ``text`` joins stream
    text and every ``text/plain`` in arrival order. ``error`` is ``None`` or the execute_reply's
    ``{"ename", "evalue", "traceback"}``.
    """

    stdout: str = ""
    stderr: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    error: dict[str, Any] | None = None
    status: str = ""
    """The execute_reply's status: ``ok``, ``error``, or ``aborted`` (a queued cell skipped
    because an earlier one failed)."""

    def add(self, msg_type: str, content: Mapping[str, Any]) -> None:
        """Collect one iopub message of this cell's request."""
        if msg_type == "stream" and content["name"] == "stdout":
            self.stdout += content["text"]
        elif msg_type == "stream":
            self.stderr += content["text"]
        elif msg_type in ("display_data", "execute_result", "update_display_data"):
            self.outputs.append({"output_type": msg_type, **content})
        if msg_type != "error":
            self.text += _output_text(msg_type, content)

    def finish(self, reply: Mapping[str, Any]) -> None:
        """Record the execute_reply's content."""
        self.status = reply["status"]
        if reply["status"] == "error":
            self.error = {k: reply[k] for k in ("ename", "evalue", "traceback")}


@dataclass
class QueuedRun:
    """What :meth:`KernelSession.run_queued` received: one :class:`CellResult` per request (in
    the order sent), the order in which execute_replies arrived, and iopub text whose parent is
    none of the requests (asyncio noise printed from a callback, for example)."""

    results: dict[str, CellResult]
    order: list[str]
    replies: list[str] = field(default_factory=list)
    stray: str = ""

    @property
    def cells(self) -> list[CellResult]:
        return [self.results[msg_id] for msg_id in self.order]

    @property
    def reply_order(self) -> list[int]:
        """Indexes (into the cells sent) of the execute_replies, in arrival order."""
        return [self.order.index(msg_id) for msg_id in self.replies]

    def on_reply(self, msg: dict[str, Any]) -> None:
        msg_id = msg["parent_header"].get("msg_id")
        if msg_id in self.results and msg["msg_type"] == "execute_reply":
            self.replies.append(msg_id)
            self.results[msg_id].finish(msg["content"])

    def on_iopub(self, msg: dict[str, Any], idle: set[str]) -> None:
        msg_id = msg["parent_header"].get("msg_id")
        msg_type, content = msg["msg_type"], msg["content"]
        if msg_id not in self.results:
            if msg_type != "status":
                self.stray += _output_text(msg_type, content) or str(content)
        elif msg_type == "status" and content["execution_state"] == "idle":
            idle.add(msg_id)
        else:
            self.results[msg_id].add(msg_type, content)

    def complete(self, idle: set[str]) -> bool:
        return all(
            r.status == "aborted" or (r.status and msg_id in idle) for msg_id, r in self.results.items()
        )

    def summary(self) -> str:
        return ", ".join(f"{i}:{r.status or 'no reply'}" for i, r in enumerate(self.cells))


class KernelSession:
    """One live kernel for running cells one after another (state is shared between runs).

    Use as a context manager; :meth:`close` (also on ``__exit__``) always leaves no kernel process
    behind. ``env`` is merged over ``os.environ``; ``cwd`` is the kernel's working directory.
    """

    def __init__(
        self,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        kernel_name: str = "python3",
        startup_timeout: float = 60,
    ) -> None:
        self._cwd = cwd
        self._env = {**os.environ, **(env or {})}
        self._kernel_name = kernel_name
        self._startup_timeout = startup_timeout
        self._km: KernelManager | None = None
        self._kc: BlockingKernelClient | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._start()

    def _start(self) -> None:
        self._km = KernelManager(kernel_name=self._kernel_name)
        try:
            self._km.start_kernel(cwd=self._cwd, env=self._env, extra_arguments=_KERNEL_ARGUMENTS)
            self._process = _kernel_process(self._km)
            self._kc = self._km.client()
            self._kc.start_channels()
            self._kc.wait_for_ready(timeout=self._startup_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        """PID of the current kernel process (changes on :meth:`restart`)."""
        if self._process is None:
            raise RuntimeError("the session is closed")
        return self._process.pid

    def run(self, code: str, timeout: float = 60) -> CellResult:
        """Execute ``code`` and collect what it produced.

        Returns when the kernel has sent both ``status: idle`` and the ``execute_reply`` for this
        request; only messages whose parent is this request are collected. A failing cell is not
        an exception here: see ``CellResult.error``. Raises ``TimeoutError`` after ``timeout``
        seconds (the kernel's state is then unknown: :meth:`restart` it) and ``DeadKernelError``
        when the kernel process has exited.
        """
        if self._kc is None:
            raise RuntimeError("the session is closed")
        deadline = monotonic() + timeout
        msg_id = self._kc.execute(code, allow_stdin=False)
        result = CellResult()
        while True:
            msg = self._next_reply(self._kc.iopub_channel, msg_id, deadline)
            msg_type, content = msg["msg_type"], msg["content"]
            if msg_type == "status" and content["execution_state"] == "idle":
                break
            result.add(msg_type, content)
        result.finish(self._next_reply(self._kc.shell_channel, msg_id, deadline)["content"])
        return result

    def run_queued(self, codes: Iterable[str], timeout: float = 60) -> QueuedRun:
        """Send every cell of ``codes`` before reading any reply, as JupyterLab's *Run All*
        does (``stop_on_error``: cells queued behind a failing one are ``aborted``).

        Returns when every request has its execute_reply and, unless aborted, its ``idle``.
        Raises ``TimeoutError`` after ``timeout`` seconds, with what was received so far.
        """
        if self._kc is None:
            raise RuntimeError("the session is closed")
        kc = self._kc
        deadline = monotonic() + timeout
        msg_ids = [kc.execute(code, allow_stdin=False, stop_on_error=True) for code in codes]
        queued = QueuedRun(results={msg_id: CellResult() for msg_id in msg_ids}, order=msg_ids)
        idle: set[str] = set()
        while not queued.complete(idle):
            if monotonic() > deadline:
                raise TimeoutError(f"queued cells did not all finish in time: {queued.summary()}")
            self._drain(kc.shell_channel, queued.on_reply)
            self._drain(kc.iopub_channel, lambda msg: queued.on_iopub(msg, idle))
            if self._process is None or self._process.poll() is not None:
                raise DeadKernelError("the kernel process exited")
        return queued

    @staticmethod
    def _drain(channel: Any, handle: Callable[[dict[str, Any]], None]) -> None:
        """Hand every message waiting on ``channel`` to ``handle`` (waits at most 0.05 s)."""
        timeout = 0.05
        while True:
            try:
                msg = channel.get_msg(timeout=timeout)
            except Empty:
                return
            handle(msg)
            timeout = 0

    def _next_reply(self, channel: Any, msg_id: str, deadline: float) -> dict[str, Any]:
        """The next message on ``channel`` whose parent is ``msg_id``, polled in slices."""
        while True:
            time_left = deadline - monotonic()
            if time_left <= 0:
                raise TimeoutError("the cell did not finish in time; restart() the session")
            try:
                msg: dict[str, Any] = channel.get_msg(timeout=min(POLL_SLICE, time_left))
            except Empty:
                if self._process is None or self._process.poll() is not None:
                    raise DeadKernelError("the kernel process exited") from None
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    def restart(self) -> None:
        """Replace the kernel by a new process with the same env and cwd (all state is lost)."""
        self.close()
        self._start()

    def close(self) -> None:
        """Shut the kernel down gracefully; kill it by its PID if it is still alive after that.

        Idempotent. An error of the graceful shutdown is raised after the kill.
        """
        km, kc, process = self._km, self._kc, self._process
        self._km = self._kc = self._process = None
        try:
            if kc is not None:
                kc.stop_channels()
            if km is not None and km.has_kernel:
                km.shutdown_kernel()
        finally:
            _kill(process)
            if km is not None:
                km.cleanup_resources()

    def __enter__(self) -> KernelSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
