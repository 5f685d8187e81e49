"""The PostgreSQL team store against raw SQL on the same server, and two receivers on one database.

SPEC §13: a replayed task costs at most 3x a raw ``SELECT`` of its record on the same server.
Everything runs in ONE process, in the same run, against the same server, repetitions
interleaved; medians and ratios are printed, nothing is asserted about absolute times:

1. an N-task run on ``TriggerClient(store=URL)`` (trivial async ``fn``): first execution and
   replay, per task;
2. baselines with a plain psycopg connection on the same server: N ``INSERT`` (autocommit) of
   the JSON text of a stored task record of that run into a table of the same shape, and N
   ``SELECT value ... WHERE key = %s`` + ``json.loads`` of the task records themselves;
3. callbacks through two receivers on one database: this process's client (receiver A, it
   defines the job) and a ``trigger-nb serve --store URL`` process (receiver B, which does not:
   its callbacks reach A by LISTEN/NOTIFY). Resume latency through each receiver, and
   callbacks/s with the POSTs split evenly between the two receivers (client processes), until
   every run is SUCCESS — none may be lost.

    python benchmarks/bench_postgres.py [--url postgresql://...] [--tasks 1000] [--repeat 5]

Without ``--url`` a throw-away server is started in a temporary directory (Debian:
``apt-get install postgresql``) and stopped at the end; with ``--url`` the benchmark works in
a schema of its own (``trigger_nb_bench_<pid>``), dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from _common import fmt_ms, fmt_s, fmt_us, header, median, percentile, post_callback, verdict
from bench_callbacks import RunWatcher, define_jobs, post_all, waiting_run

from trigger_nb import TriggerClient


async def async_fn() -> dict[str, Any]:
    return {"ok": True, "n": 1}


def measure_tasks(client: TriggerClient, conn: Any, n: int, repeat: int) -> None:
    @client.define_job(id="bench-pg")
    async def job(payload: Any, io: Any, ctx: Any) -> int:
        for i in range(payload["n"]):
            await io.run_task(f"t-{i}", async_fn)
        return int(payload["n"])

    conn.execute('CREATE TABLE bench_raw (key text COLLATE "C" PRIMARY KEY, value text)')
    firsts, replays, inserts, selects = [], [], [], []
    client.invoke_sync("bench-pg", {"n": 10})  # warm-up: connections, prepared statements
    for round_ in range(repeat):
        started = time.perf_counter()
        run = client.invoke_sync("bench-pg", {"n": n})
        firsts.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.invoke_sync("bench-pg", run_id=run.id)
        replays.append(time.perf_counter() - started)
        if run.record["status"] != "SUCCESS":
            raise SystemExit(f"bench run {run.id} ended {run.record['status']}: {run.record.get('error')}")
        keys = [
            row[0]
            for row in conn.execute(
                "SELECT key FROM trigger_nb_records WHERE key LIKE %s", (f"task/{run.id}/%",)
            ).fetchall()
        ]
        record_text = conn.execute("SELECT value FROM trigger_nb_records WHERE key = %s", (keys[0],)).fetchone()[0]
        started = time.perf_counter()
        for i in range(n):
            conn.execute("INSERT INTO bench_raw (key, value) VALUES (%s, %s)", (f"task/raw{round_}/{i}", record_text))
        inserts.append(time.perf_counter() - started)
        started = time.perf_counter()
        for key in keys[:n]:
            json.loads(conn.execute("SELECT value FROM trigger_nb_records WHERE key = %s", (key,)).fetchone()[0])
        selects.append(time.perf_counter() - started)
    first, replay, insert, select = (median(x) / n for x in (firsts, replays, inserts, selects))
    print(
        f"first execution: {n} tasks in {fmt_s(median(firsts))} = {fmt_us(first)}/task = "
        f"{first / insert:.2f}x a raw INSERT of the record ({fmt_us(insert)}; no SPEC target for "
        "PostgreSQL, diskcache's is 2x)"
    )
    print(
        f"replay: {n} tasks in {fmt_s(median(replays))} = {fmt_us(replay)}/task = "
        f"{replay / select:.2f}x a raw SELECT + json.loads of the record ({fmt_us(select)}) "
        f"(target <= 3x: {verdict(replay <= 3 * select)})"
    )


def start_serve(url: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trigger_nb", "serve", "--store", url, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for _ in range(20):
        line = proc.stdout.readline()
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return proc, found.group(1)
    proc.kill()
    raise SystemExit(f"trigger-nb serve did not start: {proc.communicate()}")


def via(url: str, base: str) -> str:
    return base + urlsplit(url).path


def measure_latency(client: TriggerClient, urls: dict[str, str], other: str, runs: int) -> None:
    own = client.receiver.base_url
    with httpx.Client(trust_env=False, timeout=30.0) as http:
        for name, base in (("A (this process)", own), ("B (serve; wake-up by NOTIFY)", other)):
            latencies = []
            for k in range(runs + 1):  # the first one warms up
                run_id, url = waiting_run(client, urls, k)
                response, _, resumed = post_callback(client, http, via(url, base), run_id, {"k": k})
                if response.status_code != 200:
                    raise SystemExit(f"callback to {name} for {run_id}: {response.status_code}")
                if k:
                    latencies.append(resumed)
            med = median(latencies)
            print(
                f"callback resume latency through receiver {name}: median {fmt_ms(med)}, p90 "
                f"{fmt_ms(percentile(latencies, 0.9))} over {runs} runs (target <= 1 s across "
                f"processes: {verdict(med <= 1.0)})"
            )


def measure_throughput(
    client: TriggerClient, urls: dict[str, str], other: str, n: int, processes: int, timeout: float
) -> None:
    own = client.receiver.base_url
    pairs = [waiting_run(client, urls, k) for k in range(n)]
    watcher = RunWatcher(client, {run_id for run_id, _ in pairs})
    # post_all gives worker i the jobs i, i+P, ...: even workers POST to A, odd ones to B.
    bases = [own if i % 2 == 0 else other for i in range(processes)]
    jobs = [(via(url, bases[k % processes]), k) for k, (_, url) in enumerate(pairs)]
    try:
        statuses, posted, t0 = post_all(jobs, processes, timeout)
        watcher.all_done.wait(timeout)
    finally:
        watcher.unsubscribe()
    ok, succeeded = statuses.get(200, 0), len(watcher.succeeded)
    finished = watcher.done_at - t0 if watcher.done_at is not None else None
    rate = n / finished if finished else 0.0
    print(
        f"two receivers on one database: {n} callbacks from {processes} client processes (half "
        f"to each receiver): POSTs answered in {fmt_s(posted)} ({n / posted:.0f}/s); every run "
        f"SUCCESS after {fmt_s(finished) if finished else 'NOT ALL'} = {rate:.0f} callbacks/s end "
        f"to end; {ok} x 200, SUCCESS {succeeded}, lost {n - succeeded} "
        f"({'none lost' if succeeded == n and ok == n else 'LOST CALLBACKS'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a PostgreSQL server to use (default: a throw-away one)")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per run")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions")
    parser.add_argument("--callbacks", type=int, default=400, help="runs/callbacks (throughput)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (even number)")
    parser.add_argument("--latency-runs", type=int, default=30, help="runs timed per receiver")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for runs")
    args = parser.parse_args()

    import psycopg

    server = None
    if args.url:
        base = args.url
    else:
        from trigger_nb._pg_server import start

        server = start()
        base = server.url
    schema = f"trigger_nb_bench_{os.getpid()}"
    admin = psycopg.connect(base, autocommit=True)
    admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    serve = None
    try:
        raw = psycopg.connect(url, autocommit=True)
        client = TriggerClient(store=url, host="127.0.0.1", port=0)
        try:
            header(f"PostgreSQL store: {args.tasks} tasks per run, median of {args.repeat} ({os.cpu_count()} CPUs)")
            measure_tasks(client, raw, args.tasks, args.repeat)
            urls: dict[str, str] = {}
            define_jobs(client, urls)
            serve, other = start_serve(url)
            header("callbacks through two receivers on one database")
            measure_latency(client, urls, other, args.latency_runs)
            measure_throughput(client, urls, other, args.callbacks, args.clients, args.timeout)
        finally:
            client.close()
            raw.close()
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=10)
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
