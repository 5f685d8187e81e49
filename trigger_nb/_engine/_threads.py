"""Worker threads for sync task functions, with a cheap hand-off (SPEC §4.6, §13).

A sync callback must never stall the home loop for as long as it runs, so it runs in a worker
thread. ``asyncio.to_thread`` does that at ~55–200 µs per call on a 2-core machine: an executor
``Future``, a ``Condition``, and above all a loop wake-up through the self-pipe and ``epoll``
(issue 10: the hand-off was half of a sync task's cost). Most task functions return in
microseconds, so :func:`run_sync_callback` does this instead:

1. hand the call to an idle worker of a small private pool (one ``Lock`` release wakes it);
2. block the loop's thread for at most :data:`GRACE` seconds on the call's own ``Lock``: a fast
   function is done by then and the coroutine continues without any loop round trip;
3. otherwise stop waiting and ``await`` an asyncio future that the worker resolves with
   ``call_soon_threadsafe`` when the function returns: the loop serves everything else meanwhile.

So the loop is held at most :data:`GRACE` per sync task, whatever the function does; a function
that overran the grace once (per code object) is not waited for again. Functions run with a copy
of the caller's context (like ``to_thread``), so their output lands in the right notebook cell.

The pool starts one thread per concurrently running call (``asyncio.gather`` of sync tasks runs
them in parallel, as with the default executor), up to :data:`MAX_WORKERS`; a worker idle for
:data:`IDLE_EXIT` seconds exits. Threads are daemons: a kernel shutdown never waits for them.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

#: Longest time the loop's thread waits for a sync function before going back to the loop.
GRACE = 0.001
#: Most worker threads alive at once (the default executor's bound on a 2-core machine is 6;
#: this one matches ``ThreadPoolExecutor``'s 32 so that blocking callbacks rarely queue).
MAX_WORKERS = 32
#: Seconds an idle worker waits for work before it exits.
IDLE_EXIT = 30.0

#: The fast path returns without a loop round trip; after this many seconds of such returns
#: the caller yields to the loop once, so timers, the receiver and views still get their turn.
YIELD_EVERY = 0.01

#: Code objects whose function overran GRACE on its last call: not waited for, until one of
#: their calls is fast again.
_SLOW: set[Any] = set()
_last_yield = 0.0


class _Call:
    """One function call handed to a worker; finished exactly once, by the worker."""

    __slots__ = (
        "fn", "args", "context", "result", "error", "elapsed", "finished", "done", "future", "loop"
    )

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.context = contextvars.copy_context()
        self.result: Any = None
        self.error: BaseException | None = None
        self.elapsed = 0.0
        self.finished = False
        self.done = threading.Lock()
        self.done.acquire()  # released by the worker when the call is finished
        self.future: asyncio.Future[Any] | None = None  # set when the loop stopped waiting
        self.loop: asyncio.AbstractEventLoop | None = None

    def run(self) -> None:
        started = time.perf_counter()
        try:
            self.result = self.context.run(self.fn, *self.args)
        except BaseException as exc:  # handed back to the awaiting coroutine, never lost here
            self.error = exc
        self.elapsed = time.perf_counter() - started

    def outcome(self) -> Any:
        if self.error is not None:
            error, self.error = self.error, None  # no reference cycle through the traceback
            raise error
        return self.result


def _resolve(call: _Call) -> None:
    """On the loop: hand a finished call to the coroutine that stopped waiting for it."""
    future = call.future
    if future is None or future.done():  # the awaiting task was canceled meanwhile
        return
    if call.error is not None:
        future.set_exception(call.error)
        call.error = None
    else:
        future.set_result(call.result)


class _Pool:
    def __init__(self) -> None:
        # One mutex for the pool and every call's finished/future hand-over: uncontended in
        # the common case, and held only for a few attribute writes.
        self.mutex = threading.Lock()
        self.idle: list[_Worker] = []
        self.pending: deque[_Call] = deque()
        self.count = 0

    def submit(self, call: _Call) -> None:
        with self.mutex:
            if self.idle:
                worker = self.idle.pop()
            elif self.count < MAX_WORKERS:
                self.count += 1
                worker = _Worker(self)
            else:
                self.pending.append(call)
                return
        worker.give(call)

    def finish(self, worker: _Worker, call: _Call) -> _Call | None:
        """Mark ``call`` finished and return the worker's next call (``None``: it is idle)."""
        with self.mutex:
            call.finished = True
            future_waiting = call.future is not None
            following = self.pending.popleft() if self.pending else None
            if following is None:
                # Idle *before* the waiter wakes: its next call must find this worker free.
                self.idle.append(worker)
        call.done.release()
        if future_waiting:
            assert call.loop is not None
            try:
                call.loop.call_soon_threadsafe(_resolve, call)
            except RuntimeError:  # the loop was closed while the call ran: nobody awaits it
                pass
        return following

    def retire(self, worker: _Worker) -> bool:
        """An idle worker timed out: remove it unless a call was just handed to it."""
        with self.mutex:
            if worker in self.idle:
                self.idle.remove(worker)
                self.count -= 1
                return True
            return False


class _Worker:
    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.call: _Call | None = None
        self.wake = threading.Lock()
        self.wake.acquire()
        threading.Thread(target=self._main, name="trigger_nb-sync", daemon=True).start()

    def give(self, call: _Call) -> None:
        self.call = call
        self.wake.release()

    def _main(self) -> None:
        while True:
            if not self.wake.acquire(timeout=IDLE_EXIT):
                if self.pool.retire(self):
                    return
                self.wake.acquire()  # a call was handed over as we timed out
            call, self.call = self.call, None
            while call is not None:
                call.run()
                call = self.pool.finish(self, call)


_pool = _Pool()


async def run_sync_callback(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a worker thread, without holding the loop longer than :data:`GRACE`."""
    global _last_yield
    call = _Call(fn, args)
    code = getattr(fn, "__code__", None) or type(fn)
    _pool.submit(call)
    if code not in _SLOW and call.done.acquire(timeout=GRACE):
        now = time.monotonic()
        if now - _last_yield > YIELD_EVERY:
            _last_yield = now
            await asyncio.sleep(0)
        return call.outcome()
    loop = asyncio.get_running_loop()
    with _pool.mutex:
        if call.finished:  # finished between the timeout and here
            return call.outcome()
        call.loop = loop
        call.future = future = loop.create_future()
    _last_yield = time.monotonic()
    try:
        return await future
    finally:
        if call.elapsed and call.elapsed < GRACE:
            _SLOW.discard(code)
        elif len(_SLOW) < 4096:
            _SLOW.add(code)
