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

Even step 2 costs two thread wake-ups, ~80 µs on a 2-core VM (a halted vCPU must be woken):
for ``lambda: {...}`` that is most of a task's cost. So a function whose last
:data:`INLINE_AFTER` calls each returned within :data:`INLINE_LIMIT` — less than the hand-off
itself — is called directly on the loop's thread (still in a copy of the context): the loop is
held for microseconds, far less than step 2 may hold it. The first calls of every function still
go to a worker, so anything slow (I/O, a nested event loop) is never inlined, and a function that
once runs over :data:`GRACE` inline goes back to the workers for good.

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
from types import CodeType
from typing import Any

#: Longest time the loop's thread waits for a sync function before going back to the loop.
GRACE = 0.001
#: Most worker threads alive at once (the default executor's bound on a 2-core machine is 6;
#: this one matches ``ThreadPoolExecutor``'s 32 so that blocking callbacks rarely queue).
MAX_WORKERS = 32
#: Seconds an idle worker waits for work before it exits.
IDLE_EXIT = 30.0

#: Seconds of fast-path returns (no loop round trip) after which the caller yields once.
YIELD_EVERY = 0.01

#: A function is called inline once this many calls in a row each returned within INLINE_LIMIT.
INLINE_AFTER = 3
#: Seconds: below the cost of the hand-off itself, so running inline saves more than it holds.
INLINE_LIMIT = 50e-6
#: Most code objects tracked by each of the tables below (a bound on their memory).
_TRACKED = 4096

#: Code objects whose function overran GRACE on its last call: not waited for, until one of
#: their calls is fast again.
_SLOW: set[Any] = set()
#: Code object -> how many of its latest calls in a row returned within INLINE_LIMIT.
_FAST_STREAK: dict[Any, int] = {}
#: Code objects that once ran over GRACE inline: always handed to a worker from then on.
_NEVER_INLINE: set[Any] = set()
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
    """``fn(*args)`` in a worker thread, without holding the loop longer than :data:`GRACE`;
    or inline, for a function known to return within :data:`INLINE_LIMIT` (module docstring)."""
    code = getattr(fn, "__code__", None)
    if code is None:  # a builtin, a partial, a callable object: keyed by type, never inlined
        code = type(fn)
    elif _FAST_STREAK.get(code, 0) >= INLINE_AFTER:
        result = _run_inline(code, fn, args)
        await _yield_now_and_then()
        return result
    call = _Call(fn, args)
    _pool.submit(call)
    if code not in _SLOW and call.done.acquire(timeout=GRACE):
        _count_fast(code, call.elapsed)
        await _yield_now_and_then()
        return call.outcome()
    return await _await_worker(call, code)


def _run_inline(code: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    started = time.perf_counter()
    try:
        return contextvars.copy_context().run(fn, *args)
    finally:
        if time.perf_counter() - started > GRACE:  # it can be slow after all: never again
            _FAST_STREAK.pop(code, None)
            if len(_NEVER_INLINE) < _TRACKED:
                _NEVER_INLINE.add(code)


def _count_fast(code: Any, elapsed: float) -> None:
    if elapsed <= INLINE_LIMIT and isinstance(code, CodeType) and code not in _NEVER_INLINE:
        if code in _FAST_STREAK or len(_FAST_STREAK) < _TRACKED:
            _FAST_STREAK[code] = _FAST_STREAK.get(code, 0) + 1
    else:
        _FAST_STREAK.pop(code, None)


async def _yield_now_and_then() -> None:
    """A fast path returns without a loop round trip: every YIELD_EVERY seconds yield once,
    so timers, the receiver and views still get their turn."""
    global _last_yield
    now = time.monotonic()
    if now - _last_yield > YIELD_EVERY:
        _last_yield = now
        await asyncio.sleep(0)


async def _await_worker(call: _Call, code: Any) -> Any:
    """The function overran GRACE (or is known to): await its result without holding the loop."""
    global _last_yield
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
        if call.finished:  # not when the caller was canceled while the function ran
            _count_fast(code, call.elapsed)
        if call.elapsed and call.elapsed < GRACE:
            _SLOW.discard(code)
        elif len(_SLOW) < _TRACKED:
            _SLOW.add(code)
