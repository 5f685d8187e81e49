"""Raw receiver throughput (SPEC §13: the receiver sustains ≥ 1,000 callbacks/s).

Starts a `Receiver` on 127.0.0.1 with an in-memory backend that only counts callbacks — so the
number measures HTTP handling, not the engine — and POSTs N callbacks from T client threads,
each an ``httpx.Client`` with keep-alive. Prints callbacks/s, the median latency of one POST and
how many callbacks never reached the backend. Not a test: no assertion on absolute time.

    python benchmarks/bench_receiver_raw.py [--n 2000] [--threads 4]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import httpx
from _common import CountingBackend

from trigger_nb._receiver import Receiver


def post_callbacks(receiver: Receiver, task_ids: list[str], latencies: list[float]) -> None:
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        for task_id in task_ids:
            started = time.perf_counter()
            response = client.post(receiver.callback_url(task_id, "secret"), json={"id": task_id})
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="callbacks to POST")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    args = parser.parse_args()

    backend = CountingBackend()
    task_ids = [f"task_{i}" for i in range(args.n)]
    latencies: list[float] = []  # list.append is atomic: shared by the client threads
    with Receiver(backend) as receiver:
        clients = [
            threading.Thread(
                target=post_callbacks, args=(receiver, task_ids[i :: args.threads], latencies)
            )
            for i in range(args.threads)
        ]
        started = time.perf_counter()
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        elapsed = time.perf_counter() - started

    lost = args.n - len(backend.completed)
    print(
        f"receiver: {args.n} callbacks in {elapsed:.2f} s = {args.n / elapsed:.0f}/s, "
        f"median {statistics.median(latencies) * 1000:.1f} ms, lost {lost}"
    )


if __name__ == "__main__":
    main()
