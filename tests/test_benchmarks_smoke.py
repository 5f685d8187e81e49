"""The benchmark scripts (SPEC §13) run with tiny sizes and print their ratio lines.

No timing is asserted: the numbers only mean something at default sizes on a quiet machine.
Each script runs in a fresh interpreter, as a user would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = pytest.mark.slow


def run_benchmark(name: str, *args: str, cwd: Path) -> str:
    """Run a script as a user with a plain install would: pytest cannot be imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_NB_")}
    blocker = cwd / "no-pytest"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['pytest'] = None\n")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocker), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=cwd,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_bench_engine_prints_its_ratios(tmp_path: Path) -> None:
    out = run_benchmark(
        "bench_engine.py",
        *("--tasks", "30", "--repeat", "1", "--subprocess-repeat", "1", "--history", "3"),
        *("--large-tasks", "90"),
        "--no-dbos",
        cwd=tmp_path,
    )
    for line_start, ratio in [
        ("first execution: 30 tasks", "x raw diskcache set (target <= 2x"),
        ("replay: 30 tasks", "x raw get+json (target <= 1.5x"),
        ("replay once the run has 3+ executions", "x a 2nd execution's replay"),
        ("replay per task at 90 tasks:", "x at 30 tasks"),
        ("sync callbacks (worker thread, inline once known fast)", "x raw set (target <= 2x"),
        ("cache hit vs joblib.Memory hit:", "x faster (target >= 10x"),
        ("live log view attached", "without it"),
        ("DBOS step: not measured (--no-dbos", "see README"),
        ("import trigger_nb:", "ms"),
        ("%load_ext trigger_nb:", "(target <= 0.3 s"),
        ("first %%job cell (no HTTP task", "imports httpx: no (target no: met"),
    ]:
        lines = [line for line in out.splitlines() if line.startswith(line_start)]
        assert lines, f"no line starting {line_start!r} in:\n{out}"
        assert ratio in lines[0], f"{ratio!r} missing from {lines[0]!r}"


def test_bench_callbacks_prints_its_ratios(tmp_path: Path) -> None:
    out = run_benchmark(
        "bench_callbacks.py",
        *("--callbacks", "12", "--clients", "2", "--latency-runs", "2"),
        *("--tasks", "30", "--repeat", "1"),
        cwd=tmp_path,
    )
    assert "callback resume latency: median" in out and "(target median <= 50 ms" in out
    assert "callbacks/s (target >= 1000/s" in out and "12 x 200" in out
    assert "x the same receiver with a counting backend" in out
    assert "SUCCESS 12, failed 0, lost 0 (none lost)" in out, out
    assert "process CPU per callback:" in out and "of CPU per request" in out
    assert "replay io.run_task: 30 in" in out
    assert "replay io.wait: 30 in" in out and "x io.run_task replay" in out
    assert "replay io.logger.info: 30 in" in out or "logger: not available yet" in out


def test_bench_widget_prints_its_ratios(tmp_path: Path) -> None:
    out = run_benchmark("bench_widget.py", "--tasks", "30", "--repeat", "1", cwd=tmp_path)
    assert "ratio with / without" in out and "run end -> final render" in out
    assert "rows in one anywidget" in out


def test_bench_store_prints_its_ratios(tmp_path: Path) -> None:
    out = run_benchmark("bench_store.py", "--small", "5", "--large", "60", "--repeat", "1", cwd=tmp_path)
    assert "open a client + first invoke:" in out and "(target <= 2x:" in out
    assert "runs(job_id=...) returning 5 runs:" in out and "proportional to the result" in out
    assert "%job list at 60 runs:" in out and "x client.runs()" in out and "(target <= 1.2x:" in out


@pytest.mark.parametrize("store", ["diskcache", "postgres"])
def test_bench_memory_prints_its_ratio(tmp_path: Path, store: str, request: pytest.FixtureRequest) -> None:
    where = ["--store", request.getfixturevalue("pg_url")] if store == "postgres" else []
    out = run_benchmark("bench_memory.py", "--mib", "4", "--repeat", "1", *where, cwd=tmp_path)
    assert f"peak memory: a 4 MiB string output, {'PostgreSQL' if where else 'diskcache'} store" in out
    assert "extra copies of the value (target <= 1 copy:" in out and "replaying it: peak" in out


def test_bench_postgres_prints_its_ratios(tmp_path: Path, pg_server: Any) -> None:
    out = run_benchmark(
        "bench_postgres.py",
        *("--url", pg_server.url, "--tasks", "20", "--repeat", "1"),
        *("--callbacks", "10", "--clients", "2", "--latency-runs", "2"),
        cwd=tmp_path,
    )
    assert "x a raw INSERT of the record" in out
    assert "x a raw SELECT + json.loads of the record" in out and "(target <= 3x:" in out
    assert "callback resume latency through receiver B (serve; wake-up by NOTIFY)" in out
    assert "SUCCESS 10, lost 0 (none lost)" in out, out
