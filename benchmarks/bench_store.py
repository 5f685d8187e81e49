"""Store-wide operations against the number of runs in the store (SPEC §13, issue 10 item 2).

Two stores are filled in the same run: a small one (``--small`` runs, default 30) and a large
one (``--large`` runs, default 10,000), each with runs of 10 jobs, mostly SUCCESS and a few
WAITING for a time (the runs a new client must schedule). Runs are written through
``Repository.save_run`` (what every engine path uses), so whatever the store keeps beside a run
is kept here too. Then, repetitions interleaved, medians printed:

1. **open + first invoke**: a new ``TriggerClient`` on the store, the job defined, one invoke
   of a 1-task job (the first invoke schedules the stored WAITING runs: ``resume_due()``), close;
   large / small (target <= 2x);
2. **runs(job_id=...)** returning the 5 runs of a job that has 5: large / small (target: the
   same cost, <= 1.5x, whatever else the store holds). Timed in a steady state: right after
   another connection wrote, SQLite re-reads the pages a query touches, which costs a little
   more in a deeper B-tree (log of the store's size, ~1.4x at 10,000 runs);
3. **%job list** (a plain IPython ``InteractiveShell``, output captured) / ``client.runs()`` on
   the large store (target <= 1.2x).

    python benchmarks/bench_store.py [--small 30] [--large 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io as _io
import os
import tempfile
import time
from contextlib import redirect_stdout
from typing import Any

from _common import fmt_ms, header, median, verdict

from trigger_nb import TriggerClient
from trigger_nb._engine import JobDefinition, RunStatus, new_run_record
from trigger_nb._engine._states import advance_run
from trigger_nb._store import Repository, open_store

JOBS = 10
WAITING = 5  # WAITING runs (due in an hour) per store
FEW = "few-runs"  # a job with exactly 5 runs
QUERIES = 10  # runs(job_id=FEW) timed this many times per repetition


async def _body(payload: Any, io: Any, ctx: Any) -> Any:
    return await io.run_task("t", lambda: 1)


def fill(directory: str, n: int) -> None:
    """``n`` runs over JOBS jobs (+ 5 runs of FEW), WAITING of them waiting for a time."""
    store = open_store(directory)
    repo = Repository(store)
    jobs = [JobDefinition(id=f"job-{j}", fn=_body, name=f"job-{j}") for j in range(JOBS)]
    jobs.append(JobDefinition(id=FEW, fn=_body, name=FEW))
    later = time.time() + 3600
    for i in range(n + 5):
        job = jobs[-1] if i >= n else jobs[i % JOBS]
        run = new_run_record(f"run_{i:08d}", job, {"i": i, "text": "x" * 100})
        advance_run(run, RunStatus.EXECUTING)
        run["executions"] = 1
        if i < WAITING:
            advance_run(run, RunStatus.WAITING)
            run["wake_at"] = later
        else:
            advance_run(run, RunStatus.SUCCESS)
            run["output_json"] = "1"
        repo.save_run(run)
    store.close()


def open_and_invoke(directory: str) -> float:
    started = time.perf_counter()
    client = TriggerClient(dir=directory)
    try:
        client.add_job(JobDefinition(id="job-0", fn=_body, name="job-0"))
        run = client.invoke_sync("job-0", {"fresh": time.time_ns()})
        elapsed = time.perf_counter() - started
        if run.status != RunStatus.SUCCESS:
            raise SystemExit(f"bench run ended {run.status}")
    finally:
        client.close()
    return elapsed


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=30, help="runs in the small store")
    parser.add_argument("--large", type=int, default=10_000, help="runs in the large store")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (medians are printed)")
    parser.add_argument("--verbose", action="store_true", help="print every measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="trigger_nb_bench_store_") as tmp:
        small, large = os.path.join(tmp, "small"), os.path.join(tmp, "large")
        started = time.perf_counter()
        fill(small, args.small)
        fill(large, args.large)
        fill_s = time.perf_counter() - started

        from IPython.core.interactiveshell import InteractiveShell

        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "trigger_nb")
        import trigger_nb._client as client_module

        clients = {name: TriggerClient(dir=path) for name, path in (("small", small), ("large", large))}
        t: dict[str, list[float]] = {
            k: [] for k in ("open_small", "open_large", "job_small", "job_large", "runs", "list")
        }
        try:
            for client in clients.values():  # warm-up: SQLite pages, imports
                client.runs(job_id=FEW)
            open_and_invoke(small)
            for _ in range(args.repeat):
                t["open_small"].append(open_and_invoke(small))
                t["open_large"].append(open_and_invoke(large))
                for _ in range(QUERIES):  # steady state: no other connection wrote meanwhile
                    t["job_small"].append(timed(lambda: clients["small"].runs(job_id=FEW)))
                    t["job_large"].append(timed(lambda: clients["large"].runs(job_id=FEW)))
                t["runs"].append(timed(lambda: clients["large"].runs()))
                client_module.set_default_client(clients["large"])
                with redirect_stdout(_io.StringIO()) as out:
                    # as a cell: %job list returns the table, the cell shows it
                    t["list"].append(timed(lambda: ip.run_cell("%job list", store_history=False)))
                if out.getvalue().count("\n") < args.large:
                    raise SystemExit(f"%job list printed too little:\n{out.getvalue()[:2000]}")
            assert len(clients["large"].runs(job_id=FEW)) == 5
        finally:
            client_module.set_default_client(None)
            for client in clients.values():
                client.close()
        m = {k: median(v) for k, v in t.items()}
        if args.verbose:
            for k, v in t.items():
                print(k, " ".join(fmt_ms(x) for x in v))

    header(
        f"store-wide operations: {args.small} vs {args.large} runs, median of {args.repeat} "
        f"(stores filled in {fill_s:.1f} s)"
    )
    ratio = m["open_large"] / m["open_small"]
    print(
        f"open a client + first invoke: {fmt_ms(m['open_large'])} at {args.large} runs = "
        f"{ratio:.2f}x at {args.small} runs ({fmt_ms(m['open_small'])}) (target <= 2x: "
        f"{verdict(ratio <= 2)})"
    )
    ratio = m["job_large"] / m["job_small"]
    print(
        f"runs(job_id=...) returning 5 runs: {fmt_ms(m['job_large'])} at {args.large} runs = "
        f"{ratio:.2f}x at {args.small} runs ({fmt_ms(m['job_small'])}) (target <= 1.5x, "
        f"proportional to the result: {verdict(ratio <= 1.5)})"
    )
    ratio = m["list"] / m["runs"]
    print(
        f"%job list at {args.large} runs: {fmt_ms(m['list'])} = {ratio:.2f}x client.runs() "
        f"({fmt_ms(m['runs'])}) (target <= 1.2x: {verdict(ratio <= 1.2)})"
    )


if __name__ == "__main__":
    main()
