"""Callback resume latency, receiver throughput with the real engine, replay of other io kinds.

SPEC §13: a callback POST resumes its run in <= 50 ms on loopback (median); the receiver
sustains >= 1,000 callbacks/s. Also: replaying ``io.wait`` and ``io.logger.info`` costs the same
order of magnitude as replaying ``io.run_task``. Everything runs against a real
``TriggerClient(dir=tmp)`` with its real receiver on 127.0.0.1; medians and ratios are
printed, nothing is asserted about absolute times.

1. latency: a job whose only task is a callback task; invoke it (it suspends WAITING), POST
   the callback URL with httpx and time until the run is SUCCESS (seen on the client's event
   bus); repeated with a new run each time, median and p90;
2. throughput: N waiting runs first, then one POST per run from a pool of client PROCESSES
   (client threads in this process would compete with the receiver for the GIL); counts the
   200 responses and the runs that end SUCCESS (none may be lost); the same clients then POST
   to the receiver with a counting backend, and to a bare tornado receiver (SPEC §13's
   yardstick: 1,000/s where it does 2,000/s);
3. replay: three jobs of N ``io.run_task`` / ``io.wait(key, 0)`` / ``io.logger.info(msg)``
   each, executed once, then replayed and timed; ratios to the run_task replay.

    python benchmarks/bench_callbacks.py [--callbacks 500] [--latency-runs 50] [--tasks 1000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import tempfile
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from _common import (
    CountingBackend,
    fmt_ms,
    fmt_s,
    fmt_us,
    header,
    median,
    percentile,
    post_callback,
    verdict,
)

from trigger_nb import TriggerClient
from trigger_nb._receiver import Receiver

CALLBACK = {"enabled": True, "timeout_in_seconds": 600}


async def async_fn() -> dict[str, Any]:
    return {"ok": True, "n": 1}


def define_jobs(client: TriggerClient, urls: dict[str, str]) -> None:
    @client.define_job(id="bench-cb")
    async def callback_job(payload: Any, io: Any, ctx: Any) -> Any:
        run_id = io.run_id
        body = await io.run_task(
            "cb", lambda task: urls.__setitem__(run_id, task.callback_url), callback=CALLBACK
        )
        return body

    @client.define_job(id="bench-run-task")
    async def run_task_job(payload: Any, io: Any, ctx: Any) -> int:
        for i in range(payload["n"]):
            await io.run_task(f"t-{i}", async_fn)
        return int(payload["n"])

    @client.define_job(id="bench-wait")
    async def wait_job(payload: Any, io: Any, ctx: Any) -> int:
        for i in range(payload["n"]):
            await io.wait(f"w-{i}", 0)
        return int(payload["n"])

    @client.define_job(id="bench-logger")
    async def logger_job(payload: Any, io: Any, ctx: Any) -> int:
        for i in range(payload["n"]):
            await io.logger.info(f"m-{i}")
        return int(payload["n"])

    @client.define_job(id="bench-probe")
    async def probe_job(payload: Any, io: Any, ctx: Any) -> bool:
        return hasattr(io, "logger")


class RunWatcher:
    """Counts runs reaching a final status, from the client's event bus (any thread)."""

    def __init__(self, client: TriggerClient, run_ids: set[str]) -> None:
        self.pending = set(run_ids)
        self.succeeded: set[str] = set()
        self.failed: set[str] = set()
        self.all_done = threading.Event()
        self.done_at: float | None = None
        self._lock = threading.Lock()
        self.unsubscribe = client.bus.subscribe(self.on_notice)

    def on_notice(self, notice: Any) -> None:
        if notice.kind != "run" or notice.run_id not in self.pending:
            return
        status = notice.data.get("status")
        if status not in ("SUCCESS", "FAILURE", "CANCELED", "TIMED_OUT"):
            return
        with self._lock:
            self.pending.discard(notice.run_id)
            (self.succeeded if status == "SUCCESS" else self.failed).add(notice.run_id)
            if not self.pending:
                self.done_at = time.monotonic()
                self.all_done.set()


# -- 1. latency ---------------------------------------------------------------------------
def waiting_run(client: TriggerClient, urls: dict[str, str], k: int) -> tuple[str, str]:
    run = client.invoke_sync("bench-cb", {"k": k})
    if run.status != "WAITING":
        raise SystemExit(f"callback run {run.id} is {run.status}, expected WAITING: {run.error}")
    return run.id, urls[run.id]


def measure_latency(client: TriggerClient, urls: dict[str, str], runs: int) -> None:
    latencies, responses = [], []
    with httpx.Client(trust_env=False, timeout=30.0) as http:
        for k in range(runs + 1):  # the first one warms up the receiver and the connection
            run_id, url = waiting_run(client, urls, k)
            response, answered, resumed = post_callback(client, http, url, run_id, {"k": k})
            if response.status_code != 200:
                raise SystemExit(f"callback POST answered {response.status_code}: {response.text}")
            output = client.get_run(run_id).output
            if output != {"k": k}:
                raise SystemExit(f"run {run_id} returned {output!r}, expected {{'k': {k}}}")
            if k:
                latencies.append(resumed)
                responses.append(answered)
    med = median(latencies)
    print(
        f"callback resume latency: median {fmt_ms(med)}, p90 {fmt_ms(percentile(latencies, 0.9))} "
        f"over {runs} runs (target median <= 50 ms: {verdict(med <= 0.05)}); the POST's "
        f"response alone: median {fmt_ms(median(responses))}"
    )


# -- 2. throughput ------------------------------------------------------------------------
def post_worker(jobs: list[tuple[str, int]], ready: Any, go: Any, results: Any, index: int) -> None:
    """Client process: wait for the start signal, POST every callback, report back.

    A light load generator (stdlib ``http.client``, one keep-alive connection): the clients
    share the machine's two cores with the receiver, so a heavy client (httpx costs ~1 ms of
    CPU per request) would measure the client rather than the receiver.
    """
    statuses: dict[int, int] = {}
    first = urlsplit(jobs[0][0]) if jobs else None
    conn = http.client.HTTPConnection(first.hostname, first.port, timeout=60) if first else None
    ready.wait()
    go.wait()
    for url, k in jobs:
        assert conn is not None
        try:
            conn.request(
                "POST", urlsplit(url).path, body=json.dumps({"k": k}),
                headers={"Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read()
            code = response.status
        except (OSError, http.client.HTTPException):
            code = -1
            conn.close()
        statuses[code] = statuses.get(code, 0) + 1
    ended = time.monotonic()
    if conn is not None:
        conn.close()
    results.put((index, statuses, ended))


def post_all(
    jobs: list[tuple[str, int]], processes: int, timeout: float
) -> tuple[dict[int, int], float, float]:
    """POST ``jobs`` from ``processes`` client processes started before the clock starts.

    Returns (status code -> count, seconds from the start signal to the last response, the
    start signal's ``time.monotonic()``).
    """
    context = multiprocessing.get_context("spawn")  # no fork of a process running threads
    ready = context.Barrier(processes + 1)
    go = context.Event()
    results = context.Queue()
    workers = [
        context.Process(
            target=post_worker, args=(jobs[i::processes], ready, go, results, i), daemon=True
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        ready.wait(timeout=60)  # every client process imported httpx and is waiting
        t0 = time.monotonic()
        go.set()
        reports = [results.get(timeout=timeout) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
                worker.join()
    statuses: dict[int, int] = {}
    for _, counts, _ in reports:
        for code, count in counts.items():
            statuses[code] = statuses.get(code, 0) + count
    return statuses, max(ended for _, _, ended in reports) - t0, t0


def measure_raw_receiver(n: int, processes: int, timeout: float) -> tuple[float, float]:
    """Callbacks/s of a receiver whose backend only counts (the HTTP ceiling), same clients;
    and this process's CPU seconds per request meanwhile (the HTTP handling's cost)."""
    backend = CountingBackend()
    with Receiver(backend) as receiver:
        jobs = [(receiver.callback_url(f"task_{k}", "secret"), k) for k in range(n)]
        cpu = time.process_time()
        statuses, posted, _ = post_all(jobs, processes, timeout)
        cpu = time.process_time() - cpu
    if statuses.get(200, 0) != n or len(backend.completed) != n:
        print(f"  (raw receiver baseline: statuses {statuses}, counted {len(backend.completed)})")
    return n / posted, cpu / n


def measure_bare_tornado(n: int, processes: int, timeout: float) -> float | None:
    """Callbacks/s of the receiver SPEC §13 compares with: a bare tornado server (``tornado.web``,
    one handler answering ``{"ok": true}``), in a thread, same clients; ``None`` without
    tornado (it is Jupyter's dependency, not trigger_nb's)."""
    try:
        import asyncio

        import tornado.httpserver
        import tornado.netutil
        import tornado.web
    except ImportError:
        return None

    class Callback(tornado.web.RequestHandler):
        def post(self, task_id: str, secret: str) -> None:
            json.loads(self.request.body)
            self.write({"ok": True})

    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    started, stop = threading.Event(), threading.Event()

    def serve() -> None:
        async def main() -> None:
            server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/callbacks/(.*)/(.*)", Callback)]))
            server.add_sockets(sockets)
            started.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            server.stop()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(10)
    try:
        jobs = [(f"http://127.0.0.1:{port}/callbacks/task_{k}/secret", k) for k in range(n)]
        statuses, posted, _ = post_all(jobs, processes, timeout)
    finally:
        stop.set()
        thread.join(10)
        for sock in sockets:
            sock.close()
    if statuses.get(200, 0) != n:
        print(f"  (bare tornado baseline: statuses {statuses})")
    return n / posted


def thread_cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) of each live thread of this process, by thread name; empty
    where ``/proc`` has no per-thread accounting (not Linux)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    times = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        times[thread.name] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return times


def measure_throughput(
    client: TriggerClient, urls: dict[str, str], n: int, processes: int, timeout: float
) -> None:
    started = time.perf_counter()
    pairs = [waiting_run(client, urls, k) for k in range(n)]
    setup = time.perf_counter() - started
    watcher = RunWatcher(client, {run_id for run_id, _ in pairs})
    jobs = [(url, k) for k, (_, url) in enumerate(pairs)]
    cpu_before, process_before = thread_cpu_seconds(), time.process_time()
    try:
        statuses, posted, t0 = post_all(jobs, processes, timeout)
        watcher.all_done.wait(timeout)
    finally:
        watcher.unsubscribe()
    cpu_after, process_cpu = thread_cpu_seconds(), time.process_time() - process_before
    raw_rate, raw_cpu = measure_raw_receiver(n, processes, timeout)
    bare_rate = measure_bare_tornado(n, processes, timeout)
    ok = statuses.get(200, 0)
    rate = n / posted
    succeeded = len(watcher.succeeded)
    lost = n - succeeded
    others = {code: count for code, count in statuses.items() if code != 200}
    print(
        f"receiver with the real engine: {n} callbacks from {processes} client processes in "
        f"{fmt_s(posted)} = {rate:.0f} callbacks/s (target >= 1000/s: {verdict(rate >= 1000)}); "
        f"{ok} x 200{f', others {others}' if others else ''}; = {rate / raw_rate:.2f}x the "
        f"same receiver with a counting backend ({raw_rate:.0f}/s, {fmt_us(raw_cpu)} of CPU per "
        "request, same clients)"
    )
    all_done = (
        f"all {n} runs SUCCESS {fmt_s(watcher.done_at - t0)} after the first POST"
        if watcher.done_at is not None
        else f"NOT all runs finished within {timeout:.0f} s"
    )
    if bare_rate is None:
        print("  the bare tornado receiver: not measured (tornado is not installed)")
    else:
        # SPEC §13 states 1,000/s on a machine where the bare tornado receiver does about
        # 2,000/s: the same target as a ratio, which a noisy machine cannot move.
        print(
            f"  = {rate / bare_rate:.2f}x the bare tornado receiver ({bare_rate:.0f}/s: tornado.web, "
            f"one handler, same clients; SPEC: 1,000/s where it does 2,000/s, so >= 0.5x: "
            f"{verdict(rate / bare_rate >= 0.5)})"
        )
    print(
        f"  {all_done}; SUCCESS {succeeded}, failed {len(watcher.failed)}, lost {lost} "
        f"({'none lost' if lost == 0 and ok == n else 'LOST CALLBACKS'}); setting up the {n} "
        f"waiting runs took {fmt_s(setup)}"
    )
    spent = {name: (cpu_after[name] - cpu_before.get(name, 0.0)) / n for name in cpu_after}
    by_thread = ", ".join(
        f"{name.split('-')[1]} {fmt_us(cost)}"
        for name, cost in sorted(spent.items())
        if name.startswith("trigger_nb-") and cost >= 1e-5
    )
    print(
        f"  process CPU per callback: {fmt_us(process_cpu / n)}"
        + (f" (threads: {by_thread})" if by_thread else "")
        + "; the receiver's thread and the loop's share one interpreter lock"
    )


# -- 3. replay of other io kinds ------------------------------------------------------------
def measure_replays(client: TriggerClient, n: int, repeat: int) -> None:
    has_logger = bool(client.invoke_sync("bench-probe").output)
    kinds = [("run_task", "bench-run-task"), ("wait", "bench-wait")]
    if has_logger:
        kinds.append(("logger.info", "bench-logger"))
    run_ids = {}
    firsts: dict[str, list[float]] = {kind: [] for kind, _ in kinds}
    replays: dict[str, list[float]] = {kind: [] for kind, _ in kinds}
    for _ in range(repeat):  # interleaved: machine drift hits every kind alike
        for kind, job_id in kinds:
            started = time.perf_counter()
            run = client.invoke_sync(job_id, {"n": n})
            firsts[kind].append(time.perf_counter() - started)
            run_ids[kind] = run.id
            started = time.perf_counter()
            client.invoke_sync(job_id, run_id=run.id)
            replays[kind].append(time.perf_counter() - started)
            if run.status != "SUCCESS":
                raise SystemExit(f"{kind} run {run.id} ended {run.status}: {run.error}")
    base = median(replays["run_task"])
    base_first = median(firsts["run_task"])
    for kind, _ in kinds:
        replay, first = median(replays[kind]), median(firsts[kind])
        ratio = replay / base
        print(
            f"replay io.{kind}: {n} in {fmt_s(replay)} ({fmt_us(replay / n)} each) = "
            f"{ratio:.2f}x io.run_task replay (target: same order of magnitude: "
            f"{verdict(0.1 <= ratio <= 10)}); first execution {fmt_s(first)} = "
            f"{first / base_first:.2f}x io.run_task's"
        )
    if not has_logger:
        print("replay io.logger.info: logger: not available yet (hasattr(io, 'logger') is False)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=500, help="runs/callbacks (throughput)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (throughput)")
    parser.add_argument("--latency-runs", type=int, default=50, help="runs timed for latency")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per replay job")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of the replay jobs")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for runs")
    args = parser.parse_args()

    urls: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="trigger_nb_bench_") as tmp:
        client = TriggerClient(dir=os.path.join(tmp, "store"), host="127.0.0.1", port=0)
        try:
            define_jobs(client, urls)
            header(f"callbacks: real engine + receiver on loopback ({os.cpu_count()} CPUs)")
            measure_latency(client, urls, args.latency_runs)
            measure_throughput(client, urls, args.callbacks, args.clients, args.timeout)
            header(f"replay of io kinds: {args.tasks} tasks each, median of {args.repeat}")
            measure_replays(client, args.tasks, args.repeat)
        finally:
            client.close()


if __name__ == "__main__":
    main()
