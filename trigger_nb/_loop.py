"""The client's home event loop, and bridges to it from sync code and from other loops.

Every execution of every run of a client happens on one loop, its *home*:

* inside a Jupyter kernel, the kernel's own loop (it runs forever, so suspended runs resume in
  the background between cells, and widget/comm traffic shares the thread); a sync caller on
  that loop (the ``%%job`` magic, ``run.result()``) blocks with a re-entrant
  ``run_until_complete`` (see :func:`_run_nested`);
* anywhere else (terminal IPython, scripts, ``asyncio.run`` programs), a private daemon thread
  running its own loop, started lazily — ``import trigger_nb`` starts nothing.

A coroutine from any other loop hops to the home loop and back (``run_async``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or ``None`` (``asyncio.get_running_loop`` raises)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _kernel_loop() -> asyncio.AbstractEventLoop | None:
    """The IPython kernel's running loop, from any thread (a receiver thread may be the first
    to need the home loop); None outside a kernel."""
    if "ipykernel" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None) if shell is not None else None
    loop = getattr(getattr(kernel, "io_loop", None), "asyncio_loop", None)
    if isinstance(loop, asyncio.AbstractEventLoop) and loop.is_running():
        return loop
    if threading.current_thread() is threading.main_thread():
        try:
            return asyncio.get_running_loop() if kernel is not None else None
        except RuntimeError:
            return None
    return None


def _run_nested(loop: asyncio.AbstractEventLoop, awaitable: Awaitable[T]) -> T:
    """Block in ``loop.run_until_complete`` while ``loop`` is already running (a sync caller on
    the kernel's loop: the ``%%job`` magic, ``run.result()`` in a cell).

    ``nest_asyncio2`` makes the loop re-entrant, not the unmaintained ``nest_asyncio``: ipykernel
    7 runs every queued cell as a task in one shared ``contextvars.Context``; under
    ``nest_asyncio`` the nested run steps the *next* queued cell's task inside the current one,
    entering the already-entered context fails ("cannot enter context"), the step is dropped
    and no cell queued behind a ``%%job`` cell ever replies (SPEC §2, *Run All*).
    ``nest_asyncio2`` >= 1.7.4 defers such steps until the nested run exits.

    The loop is patched from *inside* the stock ``_run_once`` (the cell runs in one of its
    callbacks), which counted its ready callbacks before and pops that many afterwards; nested
    runs during that callback may consume some of them and the stock loop then dies on ``pop
    from an empty deque`` (seen on ipykernel 6: the kernel exits when cells are queued behind a
    ``%%job`` cell). So each nested run tops the ready queue up with no-op callbacks to its
    length on entry (harmless when the caller is the patched ``_run_once``).
    """
    if getattr(loop, "_nest_asyncio2", None) is None:
        import nest_asyncio2

        nest_asyncio2.apply(loop)
    ready: Any = getattr(loop, "_ready", ())  # asyncio's own queue: the stock loop counted it
    counted = len(ready)
    try:
        return loop.run_until_complete(awaitable)
    finally:
        for _ in range(counted - len(ready)):
            loop.call_soon(_nothing)


def _nothing() -> None:
    """A no-op ready callback (see :func:`_run_nested`)."""


class LoopHost:
    """Owns (or adopts) the home loop. Thread-safe. ``stop()`` ends a private loop thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            loop = self._loop
            if loop is not None and not loop.is_closed() and (self._thread is None or loop.is_running()):
                return loop
            adopted = _kernel_loop()
            if adopted is not None:
                self._loop, self._thread = adopted, None
                return adopted
            return self._start_thread()

    @property
    def started(self) -> bool:
        return self._loop is not None and not self._loop.is_closed()

    def _start_thread(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=main, name="trigger_nb-loop", daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread
        return loop

    def in_home_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the home loop and block until it is done (from sync code)."""
        loop = self.loop
        if running_loop() is loop:
            return _run_nested(loop, asyncio.wait_for(coro, timeout))
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"timed out after {timeout} s") from None

    def call_sync(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """Call ``fn()`` on the home loop and block until it returned (``TimeoutError`` after
        ``timeout`` seconds): for sync teardown that must not race the loop's callbacks."""

        async def call() -> T:
            return fn()

        return self.run_sync(call(), timeout)

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the home loop, from whatever loop the caller is on."""
        loop = self.loop
        if asyncio.get_running_loop() is loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def call_soon(self, callback: Any, *args: Any) -> None:
        """Schedule ``callback(*args)`` on the home loop, from any thread."""
        loop = self.loop
        if self.in_home_thread():
            loop.call_soon(callback, *args)
        else:
            loop.call_soon_threadsafe(callback, *args)

    def stop(self) -> None:
        """Stop the private loop thread, if we started one (the kernel's loop is not ours)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not loop.is_running():
            loop.close()
