"""Engine cost against raw diskcache, joblib.Memory and (optionally) DBOS, side by side (SPEC §13).

Everything is measured in ONE process, in the same run, repetitions interleaved, and reported
as medians and RATIOS against baselines measured here — never as absolute pass/fail times:

1. an N-task run through the library API on ``TriggerClient(dir=tmp)`` (DiskcacheStore); the
   body is ``for i in range(N): await io.run_task(f"t-{i}", fn)`` with a trivial ASYNC ``fn``
   returning a small dict (and a variant with a SYNC ``fn``: worker thread, inline once known fast):
   first execution and replay (same run id again: every task replays);
2. baselines on a fresh ``diskcache.Cache(eviction_policy="none")``: N raw ``set`` of the JSON
   of a stored task record of that run, and N raw ``get`` + ``json.loads`` of it;
3. N ``joblib.Memory`` cache hits of a function with small args;
4. optionally (``import dbos`` works): DBOS steps on a SQLite system database — the first
   execution of a step, and a step replayed by ``DBOS.fork_workflow`` past the last step;
5. the first execution with the live log view attached vs without;
6. ``import trigger_nb`` and ``%load_ext trigger_nb`` in fresh interpreters.

    python benchmarks/bench_engine.py [--tasks 1000] [--repeat 5] [--no-dbos]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from typing import Any

import diskcache
import joblib
from _common import fmt_ms, fmt_s, fmt_us, header, median, subprocess_seconds, verdict

from trigger_nb import TriggerClient

IMPORT_CODE = (
    "import time; t = time.perf_counter(); import trigger_nb; print(time.perf_counter() - t)"
)
# A plain InteractiveShell: IPython.testing.globalipapp imports pytest, which a user's install
# does not have.
LOAD_EXT_CODE = (
    "import time\n"
    "from IPython.core.interactiveshell import InteractiveShell\n"
    "ip = InteractiveShell.instance()\n"
    "t = time.perf_counter()\n"
    "ip.run_line_magic('load_ext', 'trigger_nb')\n"
    "print(time.perf_counter() - t)\n"
)
# The first %%job cell of a session (a job without HTTP tasks): its time, and whether it imported
# httpx (it must not: ~40 ms, issue 10), printed as "<imported 0/1> <seconds>".
FIRST_CELL_CODE = (
    "import os, sys, tempfile, time\n"
    "os.environ['TRIGGER_NB_DIR'] = tempfile.mkdtemp(prefix='trigger_nb_bench_cell_')\n"
    "from IPython.core.interactiveshell import InteractiveShell\n"
    "ip = InteractiveShell.instance()\n"
    "ip.run_line_magic('load_ext', 'trigger_nb')\n"
    "t = time.perf_counter()\n"
    "r = ip.run_cell('%%job first --quiet\\nreturn await io.run_task(\"a\", lambda: 1)\\n')\n"
    "assert r.success, r.error_in_exec or r.error_before_exec\n"
    "elapsed = time.perf_counter() - t\n"
    "print(int('httpx' in sys.modules), 'pytest' in sys.modules and 'pytest imported!' or '')\n"
    "print(elapsed)\n"
)
IMPORT_HTTPX_CODE = "import time; t = time.perf_counter(); import httpx; print(time.perf_counter() - t)"


async def async_fn() -> dict[str, Any]:
    return {"ok": True, "n": 1}


def sync_fn() -> dict[str, Any]:
    return {"ok": True, "n": 1}


def define_jobs(client: TriggerClient) -> None:
    @client.define_job(id="bench-async")
    async def run_async(payload: Any, io: Any, ctx: Any) -> int:
        for i in range(payload["n"]):
            await io.run_task(f"t-{i}", async_fn)
        return int(payload["n"])

    @client.define_job(id="bench-sync")
    async def run_sync(payload: Any, io: Any, ctx: Any) -> int:
        for i in range(payload["n"]):
            await io.run_task(f"t-{i}", sync_fn)
        return int(payload["n"])


def callback_cost(n: int) -> tuple[float, float]:
    """Seconds that N bare calls of the async and the sync callback take (outside the engine)."""

    async def loop() -> float:
        started = time.perf_counter()
        for _ in range(n):
            await async_fn()
        return time.perf_counter() - started

    async_cost = asyncio.run(loop())
    started = time.perf_counter()
    for _ in range(n):
        sync_fn()
    return async_cost, time.perf_counter() - started


class EngineRuns:
    """First executions and replays of the bench jobs; checks every run ends SUCCESS."""

    def __init__(self, client: TriggerClient, n: int) -> None:
        self.client, self.n = client, n
        self.last_run_id = ""

    def first_and_replay(self, job_id: str) -> tuple[float, float]:
        """Wall seconds of a first execution and of its replay; their process CPU seconds are
        left in ``self.cpu`` (first, replay)."""
        started, cpu = time.perf_counter(), time.process_time()
        run = self.client.invoke_sync(job_id, {"n": self.n})
        first, first_cpu = time.perf_counter() - started, time.process_time() - cpu
        started, cpu = time.perf_counter(), time.process_time()
        self.client.invoke_sync(job_id, run_id=run.id)
        replay = time.perf_counter() - started
        self.cpu = (first_cpu, time.process_time() - cpu)
        record = run.record
        if record["status"] != "SUCCESS" or record["executions"] != 2:
            raise SystemExit(f"bench run {run.id} ended {record['status']}: {record.get('error')}")
        self.last_run_id = run.id
        return first, replay

    def age(self, job_id: str, executions: int) -> str:
        """A run of ``job_id`` executed ``executions`` times: its run record's history is full."""
        run = self.client.invoke_sync(job_id, {"n": self.n})
        for _ in range(executions - 1):
            self.client.invoke_sync(job_id, run_id=run.id)
        return run.id

    def replay(self, job_id: str, run_id: str) -> float:
        started = time.perf_counter()
        self.client.invoke_sync(job_id, run_id=run_id)
        return time.perf_counter() - started

    def replay_cpu(self, job_id: str, run_id: str) -> float:
        """CPU seconds of the process for one replay: what other processes on a shared machine
        cannot inflate (the wall time is printed beside it)."""
        started = time.process_time()
        self.client.invoke_sync(job_id, run_id=run_id)
        return time.process_time() - started

    def first_with_view(self, job_id: str) -> float | None:
        """First execution with the live log view subscribed (None if that view is absent)."""
        try:
            from trigger_nb._notebook._display import _LiveView
            from trigger_nb._run import Run
        except ImportError:
            return None

        class Handle:  # stands in for IPython's DisplayHandle: renders, shows nothing
            def update(self, bundle: Any, raw: bool = False) -> None:
                pass

        run_id = f"view-{time.time_ns()}"
        _LiveView(Run(self.client.run_controls, run_id), Handle(), False)
        started = time.perf_counter()
        self.client.invoke_sync(job_id, {"n": self.n}, run_id=run_id)
        elapsed = time.perf_counter() - started
        time.sleep(_LiveView.MIN_INTERVAL * 1.5)  # a throttled re-render may still be pending
        return elapsed


class RawBaselines:
    """diskcache set / get+json.loads of the same bytes, and joblib.Memory hits."""

    def __init__(self, directory: str, record_json: str, n: int) -> None:
        self.n = n
        self.data = record_json
        self.cache = diskcache.Cache(os.path.join(directory, "raw"), eviction_policy="none")
        self.round = 0
        memory = joblib.Memory(location=os.path.join(directory, "joblib"), verbose=0)
        self.cached = memory.cache(_joblib_target)
        for i in range(n):  # one warm-up call per arg: every later call is a hit
            self.cached(i, "x")

    def set_all(self) -> float:
        self.round += 1
        prefix = f"task/raw{self.round}/"
        cache, data = self.cache, self.data
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(self.n):
            cache.set(f"{prefix}{i}", data)
        self.cpu = time.process_time() - cpu
        return time.perf_counter() - started

    def get_all(self) -> float:
        prefix = f"task/raw{self.round}/"
        cache = self.cache
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(self.n):
            json.loads(cache.get(f"{prefix}{i}"))
        self.cpu = time.process_time() - cpu
        return time.perf_counter() - started

    def joblib_hits(self) -> float:
        cached = self.cached
        started = time.perf_counter()
        for i in range(self.n):
            cached(i, "x")
        return time.perf_counter() - started

    def close(self) -> None:
        self.cache.close()


def _joblib_target(i: int, tag: str) -> dict[str, Any]:
    return {"ok": True, "n": i, "tag": tag}


def measure_dbos(directory: str, steps: int, repeat: int) -> tuple[float, float] | None:
    """(seconds per step on a first execution, seconds per replayed step), or None without DBOS.

    A replay is ``DBOS.fork_workflow(id, steps + 1)``: a new workflow whose every step returns
    its checkpointed output. The fork is picked up by DBOS's internal queue (about a second of
    polling latency), so the workflow times its own step loop and that time is what we report.
    """
    try:
        from dbos import DBOS, SetWorkflowID
    except ImportError:
        return None
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(
        config={
            "name": "trigger-nb-bench",
            "system_database_url": f"sqlite:///{os.path.join(directory, 'dbos.sqlite')}",
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    calls = [0]
    loop_seconds: dict[str, float] = {}

    @DBOS.step()
    def step(i: int) -> dict[str, Any]:
        calls[0] += 1
        return {"ok": True, "n": i}

    @DBOS.workflow()
    def workflow(n: int) -> int:
        started = time.perf_counter()
        for i in range(n):
            step(i)
        loop_seconds[str(DBOS.workflow_id)] = time.perf_counter() - started
        return n

    first, replay = [], []
    try:
        for r in range(repeat):
            wf_id = f"wf-{r}"
            with SetWorkflowID(wf_id):
                workflow(steps)
            first.append(loop_seconds[wf_id] / steps)
            before = calls[0]
            handle = DBOS.fork_workflow(wf_id, steps + 1)
            handle.get_result()
            if calls[0] != before:
                print(f"  (DBOS fork re-ran {calls[0] - before} steps: its replay number is off)")
            replay.append(loop_seconds[handle.get_workflow_id()] / steps)
    finally:
        DBOS.destroy(destroy_registry=True)
    return median(first), median(replay)


def first_cell_imports_httpx() -> bool:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", FIRST_CELL_CODE], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip().splitlines()[-2].split()[0] == "1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per run (N)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (medians are printed)")
    parser.add_argument("--subprocess-repeat", type=int, default=3, help="fresh interpreters timed")
    parser.add_argument(
        "--history", type=int, default=20, help="executions before the aged-run replay is timed"
    )
    parser.add_argument(
        "--large-tasks", type=int, default=50_000, help="tasks of the large run (replay flatness)"
    )
    parser.add_argument("--dbos-steps", type=int, default=200, help="steps per DBOS workflow")
    parser.add_argument("--no-dbos", action="store_true", help="skip DBOS even if installed")
    args = parser.parse_args()
    n, repeat = args.tasks, args.repeat

    with tempfile.TemporaryDirectory(prefix="trigger_nb_bench_") as tmp:
        client = TriggerClient(dir=os.path.join(tmp, "store"))
        try:
            define_jobs(client)
            runs = EngineRuns(client, n)
            runs.first_and_replay("bench-async")  # warm-up: loop thread, imports, SQLite pages
            records = client.repo.load_tasks(runs.last_run_id)
            record_json = json.dumps(records[len(records) // 2], separators=(",", ":"))
            raw = RawBaselines(tmp, record_json, n)
            raw.set_all()
            raw.get_all()

            aged_id = runs.age("bench-async", args.history)
            aged_size = len(json.dumps(client.repo.load_run(aged_id)))
            t: dict[str, list[float]] = {
                k: []
                for k in (
                    *("first", "replay", "first_sync", "replay_sync", "set", "get", "joblib"),
                    *("aged", "view", "first_cpu", "replay_cpu", "first_sync_cpu", "set_cpu"),
                    "get_cpu",
                )
            }
            for _ in range(repeat):  # interleaved, so drift of the machine hits all alike
                first, replay = runs.first_and_replay("bench-async")
                t["first"].append(first)
                t["replay"].append(replay)
                t["first_cpu"].append(runs.cpu[0])
                t["replay_cpu"].append(runs.cpu[1])
                first, replay = runs.first_and_replay("bench-sync")
                t["first_sync"].append(first)
                t["replay_sync"].append(replay)
                t["first_sync_cpu"].append(runs.cpu[0])
                t["set"].append(raw.set_all())
                t["set_cpu"].append(raw.cpu)
                t["get"].append(raw.get_all())
                t["get_cpu"].append(raw.cpu)
                t["joblib"].append(raw.joblib_hits())
                t["aged"].append(runs.replay("bench-async", aged_id))
                view = runs.first_with_view("bench-async")
                if view is not None:
                    t["view"].append(view)
            # Replay flatness: a run of --large-tasks tasks vs one of N, per task, interleaved.
            large_n = args.large_tasks
            large_id = client.invoke_sync("bench-async", {"n": large_n}).id
            small_id = client.invoke_sync("bench-async", {"n": n, "flat": True}).id
            for k in ("flat_small", "flat_large", "flat_small_cpu", "flat_large_cpu"):
                t[k] = []
            for _ in range(repeat):
                t["flat_small"].append(runs.replay("bench-async", small_id) / n)
                t["flat_large"].append(runs.replay("bench-async", large_id) / large_n)
                t["flat_small_cpu"].append(runs.replay_cpu("bench-async", small_id) / n)
                t["flat_large_cpu"].append(runs.replay_cpu("bench-async", large_id) / large_n)
            m = {k: median(v) if v else 0.0 for k, v in t.items()}
            raw.close()
        finally:
            client.close()
        async_cb, sync_cb = callback_cost(n)

        header(
            f"engine: {n} tasks, median of {repeat} (DiskcacheStore; record {len(record_json)} B)"
        )

        def spread(key: str, base: str) -> str:
            """The range of the per-repetition ratios (each against its own baseline)."""
            ratios = [a / b for a, b in zip(t[key], t[base], strict=True)]
            return f"range {min(ratios):.1f}-{max(ratios):.1f}x"

        overhead = m["first"] - async_cb
        ratio = m["first"] / m["set"]
        print(
            f"first execution: {n} tasks in {fmt_s(m['first'])} ({fmt_us(m['first'] / n)}/task) = "
            f"{ratio:.1f}x raw diskcache set (target <= 2x: {verdict(ratio <= 2)}; "
            f"{spread('first', 'set')}; CPU time {m['first_cpu'] / m['set_cpu']:.1f}x); engine overhead "
            f"{fmt_s(overhead)} (target <= 1 s per 1000 tasks: {verdict(overhead * 1000 / n <= 1)})"
        )
        ratio = m["replay"] / m["get"]
        print(
            f"replay: {n} tasks in {fmt_s(m['replay'])} ({fmt_us(m['replay'] / n)}/task) = "
            f"{ratio:.1f}x raw get+json (target <= 1.5x: {verdict(ratio <= 1.5)}; "
            f"{spread('replay', 'get')}; CPU time {m['replay_cpu'] / m['get_cpu']:.1f}x); "
            f"{fmt_s(m['replay'])} (target <= 0.2 s per 1000 tasks: "
            f"{verdict(m['replay'] * 1000 / n <= 0.2)})"
        )
        aged = m["aged"]
        print(
            f"replay once the run has {args.history}+ executions (run record {aged_size // 1024} "
            f"KiB with its history): {fmt_s(aged)} = {aged / m['replay']:.1f}x a 2nd execution's "
            f"replay (target <= 0.2 s per 1000 tasks: {verdict(aged * 1000 / n <= 0.2)})"
        )
        ratio = m["flat_large"] / m["flat_small"]
        cpu_ratio = m["flat_large_cpu"] / m["flat_small_cpu"]
        print(
            f"replay per task at {large_n} tasks: {fmt_us(m['flat_large'])} = {ratio:.2f}x at "
            f"{n} tasks ({fmt_us(m['flat_small'])}) (target <= 1.1x: {verdict(ratio <= 1.1)}); "
            f"in process CPU time {cpu_ratio:.2f}x ({fmt_us(m['flat_large_cpu'])} vs "
            f"{fmt_us(m['flat_small_cpu'])})"
        )
        overhead_sync = m["first_sync"] - sync_cb
        ratio = m["first_sync"] / m["set"]
        print(
            f"sync callbacks (worker thread, inline once known fast): first execution {fmt_s(m['first_sync'])} "
            f"({fmt_us(m['first_sync'] / n)}/task) = {ratio:.1f}x raw set (target <= 2x: "
            f"{verdict(ratio <= 2)}; {spread('first_sync', 'set')}; CPU time "
            f"{m['first_sync_cpu'] / m['set_cpu']:.1f}x), "
            f"{m['first_sync'] / m['first']:.2f}x the async variant; engine overhead "
            f"{fmt_s(overhead_sync)} ({verdict(overhead_sync * 1000 / n <= 1)}); replay "
            f"{fmt_s(m['replay_sync'])} = {m['replay_sync'] / m['get']:.1f}x raw get+json"
        )
        print(
            f"baselines: raw diskcache set {fmt_us(m['set'] / n)}/op, raw get+json.loads "
            f"{fmt_us(m['get'] / n)}/op; bare callbacks: async {fmt_us(async_cb / n)}, "
            f"sync {fmt_us(sync_cb / n)} per call"
        )
        hit = m["replay"] / n
        ratio = (m["joblib"] / n) / hit
        print(
            f"cache hit vs joblib.Memory hit: {ratio:.1f}x faster (target >= 10x: "
            f"{verdict(ratio >= 10)}); joblib hit {fmt_us(m['joblib'] / n)}, ours "
            f"{fmt_us(hit)} (replayed task, whole run amortised)"
        )
        if not t["view"]:
            print("live log view attached: not measured (trigger_nb._notebook._display._LiveView not found)")
        else:
            with_view = m["view"]
            ratio = with_view / m["first"]
            print(
                f"live log view attached (text/HTML re-render, 0.2 s throttle; not the ipywidgets "
                f"view): first execution {fmt_s(with_view)} = {ratio:.2f}x without it "
                f"(target <= 1.5x: {verdict(ratio <= 1.5)})"
            )

        dbos = None if args.no_dbos else measure_dbos(tmp, min(n, args.dbos_steps), min(repeat, 3))
        if dbos is None:
            why = "--no-dbos" if args.no_dbos else "`import dbos` failed"
            print(
                f"DBOS step: not measured ({why}; needs `pip install dbos` and a Postgres/SQLite "
                "system database; see README)"
            )
        else:
            dbos_first, dbos_replay = dbos
            ratio = dbos_first / hit
            print(
                f"cache hit vs DBOS step (SQLite): {ratio:.0f}x faster than a DBOS step "
                f"({fmt_us(dbos_first)}/step, first execution; target >= 10x: "
                f"{verdict(ratio >= 10)}); {dbos_replay / hit:.1f}x faster than a DBOS step "
                f"replayed after fork_workflow ({fmt_us(dbos_replay)}/step); our first execution "
                f"{dbos_first / (m['first'] / n):.1f}x faster than DBOS's"
            )

    header(f"start-up: fresh interpreters, median of {args.subprocess_repeat}")
    imports = median(subprocess_seconds(IMPORT_CODE, args.subprocess_repeat))
    print(f"import trigger_nb: {fmt_ms(imports)}")
    load_ext = median(subprocess_seconds(LOAD_EXT_CODE, args.subprocess_repeat))
    print(f"%load_ext trigger_nb: {fmt_s(load_ext)} (target <= 0.3 s: {verdict(load_ext <= 0.3)})")
    first_cell = median(subprocess_seconds(FIRST_CELL_CODE, args.subprocess_repeat))
    imported = first_cell_imports_httpx()
    httpx_cost = median(subprocess_seconds(IMPORT_HTTPX_CODE, args.subprocess_repeat))
    print(
        f"first %%job cell (no HTTP task, plain InteractiveShell): {fmt_ms(first_cell)}; imports "
        f"httpx: {'yes' if imported else 'no'} (target no: {verdict(not imported)}; "
        f"`import httpx` alone costs {fmt_ms(httpx_cost)})"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
