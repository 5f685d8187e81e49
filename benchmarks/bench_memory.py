"""Peak memory while a task stores a large output (SPEC §13, issue 10 item 3).

Each measurement is a fresh interpreter (peak RSS, ``ru_maxrss``, only grows): it imports
trigger_nb, opens a client on a temporary store and runs a warm-up job, then

* **baseline**: builds the value (a ``--mib`` MiB string) and holds it;
* **task**: runs a job whose task returns that value (built inside the task), so the engine
  encodes and stores it; then replays the run and checks the value came back whole.

``extra copies = (task peak - baseline peak) / value size``: what storing cost beyond the
value itself (target: at most one copy, i.e. <= 1.0). The replay's peak is printed too (it
decodes the stored value: the value plus the bytes read).

    python benchmarks/bench_memory.py [--mib 100] [--repeat 3] [--store postgresql://...]

With ``--store`` the client uses that PostgreSQL store (blobs are streamed with ``COPY``)
instead of a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from _common import header, median, verdict

CODE = """
import os, resource, sys, tempfile
from trigger_nb import TriggerClient

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

size = int(sys.argv[2]) * 1024 * 1024
where = {"store": sys.argv[3]} if len(sys.argv) > 3 else {"dir": tempfile.mkdtemp(prefix="trigger_nb_bench_mem_")}
client = TriggerClient(**where, output_limit=4 * size)

@client.define_job(id="warm")
async def warm(payload, io, ctx):
    return await io.run_task("small", lambda: "x" * 1000)

@client.define_job(id="big")
async def big(payload, io, ctx):
    value = await io.run_task("big", lambda: "x" * size)
    return len(value)

client.invoke_sync("warm")
if sys.argv[1] == "baseline":
    value = "x" * size
    print(peak_mib())
else:
    run = client.invoke_sync("big")
    assert run.output == size, run.record
    stored = peak_mib()
    client.invoke_sync("big", run_id=run.id)
    assert run.output == size and run.record["executions"] == 2
    print(stored, peak_mib())
client.close()
"""


def measure(kind: str, mib: int, store: str | None) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", CODE, kind, str(mib), *([store] if store else [])],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_NB_")},
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return [float(x) for x in done.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100, help="size of the output, MiB")
    parser.add_argument("--repeat", type=int, default=3, help="interpreters per kind (medians)")
    parser.add_argument("--store", help="a PostgreSQL store URL (default: a temporary directory)")
    args = parser.parse_args()
    base, stored, replayed = [], [], []
    for _ in range(args.repeat):
        base.append(measure("baseline", args.mib, args.store)[0])
        task = measure("task", args.mib, args.store)
        stored.append(task[0])
        replayed.append(task[1])
    b, s, r = median(base), median(stored), median(replayed)
    extra = (s - b) / args.mib
    where = "PostgreSQL store" if args.store else "diskcache store"
    header(f"peak memory: a {args.mib} MiB string output, {where}, median of {args.repeat} interpreters")
    print(
        f"storing it: peak {s:.0f} MiB vs {b:.0f} MiB holding the value alone = {extra:.2f} extra "
        f"copies of the value (target <= 1 copy: {verdict(extra <= 1.0)}); replaying it: peak "
        f"{r:.0f} MiB ({(r - b) / args.mib:.2f} extra copies)"
    )


if __name__ == "__main__":
    main()
