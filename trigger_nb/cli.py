"""``trigger-nb``: run the demo, inspect stored runs, serve callbacks (SPEC §1, §9)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._client import TriggerClient


def _client(directory: str | None) -> TriggerClient:
    from ._client import TriggerClient

    return TriggerClient(dir=directory)


def cmd_demo(args: argparse.Namespace) -> int:
    """Execute the quickstart job twice, each time in a fresh kernel, on one new store."""
    from ._demo import CELLS
    from ._notebook_runner import cell_text_outputs, execute_notebook, notebook_from_cells

    store = args.dir or tempfile.mkdtemp(prefix="trigger_nb_demo_")
    print(f"trigger_nb demo — store: {store}\n")
    env = {"TRIGGER_NB_DIR": store}
    for number, title in ((1, "first execution: every task runs"), (2, "a new kernel on the same store: every task is replayed")):
        nb = execute_notebook(notebook_from_cells(CELLS), cwd=store, env=env, timeout=args.timeout)
        print(f"=== Kernel {number} — {title} ===")
        print(cell_text_outputs(nb.cells[-1]).strip())
        print()
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from ._display import runs_table

    client = _client(args.dir)
    try:
        print(runs_table([run.snapshot for run in client.runs(job_id=args.job, status=args.status)]))
    finally:
        client.close()
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    client = _client(args.dir)
    try:
        print(client.get_run(args.run_id).log())
    finally:
        client.close()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """A standalone receiver on a store: callbacks and events POSTed while no kernel runs are
    stored, and the kernel that next opens the store picks them up (SPEC §9)."""
    import signal
    import threading

    from ._backend import events_token
    from ._client import TriggerClient

    client = TriggerClient(dir=args.dir, host=args.host, port=args.port, public_url=args.public_url)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        receiver = client.receiver
        print(f"trigger-nb serve: listening on {receiver.base_url} for the store {client.config.dir}")
        print(f"POST /events needs: Authorization: Bearer {events_token(client.storage)}", flush=True)
        stop.wait()
    finally:
        client.close()
    print("trigger-nb serve: stopped", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trigger-nb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the quickstart job twice in real kernels and print its log")
    demo.add_argument("--dir", help="store directory (default: a new temporary directory)")
    demo.add_argument("--timeout", type=float, default=120, help="seconds per notebook (default 120)")
    demo.set_defaults(func=cmd_demo)
    runs = sub.add_parser("runs", help="list stored runs")
    runs.add_argument("--dir", default=os.environ.get("TRIGGER_NB_DIR"), help="store directory")
    runs.add_argument("--job")
    runs.add_argument("--status")
    runs.set_defaults(func=cmd_runs)
    show = sub.add_parser("show", help="print a run's task log")
    show.add_argument("run_id")
    show.add_argument("--dir", default=os.environ.get("TRIGGER_NB_DIR"), help="store directory")
    show.set_defaults(func=cmd_show)
    serve = sub.add_parser("serve", help="run the callback/event receiver on a store, without a kernel")
    serve.add_argument("--dir", default=os.environ.get("TRIGGER_NB_DIR"), help="store directory")
    serve.add_argument("--host", default=None, help="bind address (default TRIGGER_NB_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default TRIGGER_NB_PORT or a free one)")
    serve.add_argument("--public-url", default=None, help="base URL put into callback URLs")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ._exceptions import TriggerNbError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TriggerNbError as exc:
        print(f"trigger-nb: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
