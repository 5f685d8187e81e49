"""Helpers shared by the benchmark scripts (SPEC §13): medians, formatting, verdicts.

Benchmarks never assert absolute times: they print medians of several repetitions and ratios
against baselines measured in the same process, in the same run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``; e.g. 0.9 for p90."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f} s"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs" if seconds >= 1e-5 else f"{seconds * 1e6:.1f} µs"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Wall times of ``repeat`` calls of ``fn`` (perf_counter)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def subprocess_seconds(code: str, repeat: int, *, timeout: float = 60.0) -> list[float]:
    """Run ``python -c code`` ``repeat`` times; each run prints a float (seconds) last.

    A fresh interpreter each time, so module caches of this process do not flatter the result.
    """
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    results = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"subprocess failed ({done.returncode}):\n{done.stderr[-2000:]}")
        results.append(float(done.stdout.strip().splitlines()[-1]))
    return results


def header(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


class CountingBackend:
    """Receiver backend baseline: accepts the first callback per task id and counts them; no
    engine, no store (what the HTTP layer alone can do)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.completed: set[str] = set()

    async def complete_callback(self, task_id: str, secret: str, body: Any) -> Any:
        from trigger_nb._receiver import CallbackOutcome

        with self._lock:
            if task_id in self.completed:
                return CallbackOutcome.ALREADY_RESOLVED
            self.completed.add(task_id)
            return CallbackOutcome.ACCEPTED

    def send_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return event

    def events_token(self) -> str:
        return "unused"


def post_callback(client: Any, http: Any, url: str, run_id: str, body: Any) -> tuple[Any, float, float]:
    """POST ``body`` to a waiting run's callback ``url`` and wait (30 s at most) until the run
    is SUCCESS, watching the client's notice bus. Returns the response, the seconds until it
    was answered and the seconds until the run had finished (``SystemExit`` on a timeout)."""
    done = threading.Event()

    def listener(notice: Any) -> None:
        if notice.kind == "run" and notice.data.get("status") == "SUCCESS":
            done.set()

    unsubscribe = client.bus.subscribe(listener, run_id=run_id)
    try:
        started = time.perf_counter()
        response = http.post(url, json=body)
        answered = time.perf_counter() - started
        if not done.wait(30):
            raise SystemExit(f"run {run_id} did not finish within 30 s of its callback ({response.status_code})")
        return response, answered, time.perf_counter() - started
    finally:
        unsubscribe()
