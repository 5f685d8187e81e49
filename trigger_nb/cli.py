"""``trigger-nb``: run the demo, inspect and manage stored runs and events, serve callbacks.

Every command but ``demo`` and ``serve`` works on an existing store and never creates one: a
mistyped ``--dir`` is an error naming the path, not a new empty store. Exit status: 0 done,
1 the request could not be carried out (no store, no such run, nothing to retry, ...),
2 bad command-line usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import TriggerClient

DIR_HELP = (
    "store directory (default: $TRIGGER_NB_DIR, else ./.trigger_nb — the directory the "
    "notebook's kernel uses)"
)
#: What happens to a run that a retry/resume from here left for the process with the job.
HANDOVER = (
    "This process has no job code, so the process that defines job {job!r} executes it: a "
    "kernel that has run the job's cell on this store takes it within a second; if none is "
    "running, it happens when the job's cell is next executed."
)


class CliError(Exception):
    """A request that cannot be carried out: printed as ``trigger-nb: message``, exit 1."""


def _config(args: argparse.Namespace) -> Any:
    from ._config import Config

    return Config.from_env(dir=args.dir, store=args.store)


def _existing_client(args: argparse.Namespace) -> TriggerClient:
    """A client on the store named by ``--dir`` / ``--store`` (or the environment);
    ``CliError``, creating nothing, if a store directory does not exist."""
    from ._client import TriggerClient
    from ._store import store_exists

    config = _config(args)
    if config.store:  # a team store: the database says itself whether it is reachable
        return TriggerClient(store=config.store)
    directory = config.dir
    if not store_exists(directory):
        why = "no such directory" if not os.path.exists(directory) else "the directory holds no store"
        raise CliError(
            f"no trigger_nb store at {directory} ({why}). Pass --dir with the store directory "
            "your notebook uses (its TRIGGER_NB_DIR, default .trigger_nb beside the notebook), "
            "or --store with its postgresql:// URL."
        )
    return TriggerClient(dir=directory)


def _with_client(args: argparse.Namespace, action: Any) -> int:
    client = _existing_client(args)
    try:
        return int(action(client) or 0)
    finally:
        client.close()


# -- commands ----------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from ._notebook._demo import run_demo, run_notebook

    if args.notebook:
        return run_notebook(args.notebook, directory=args.dir, keep=args.keep, timeout=args.timeout)
    return run_demo(directory=args.dir, keep=args.keep, timeout=args.timeout)


def cmd_runs(args: argparse.Namespace) -> int:
    from ._notebook._display import runs_table

    def action(client: TriggerClient) -> None:
        runs = client.runs(job_id=args.job, status=args.status)
        print(runs_table([run.snapshot for run in runs]))

    return _with_client(args, action)


def cmd_show(args: argparse.Namespace) -> int:
    return _with_client(args, lambda client: print(client.get_run(args.run_id).log()))


def cmd_retry(args: argparse.Namespace) -> int:
    def action(client: TriggerClient) -> None:
        run = client.get_run(args.run_id)
        status = run.status
        client.request_retry(run.id)
        print(f"Run {run.id} ({status}): marked for retry.")
        print(HANDOVER.format(job=run.job_id))
        print(f"Follow it with: trigger-nb show {run.id}")

    return _with_client(args, action)


def cmd_resume(args: argparse.Namespace) -> int:
    def action(client: TriggerClient) -> int:
        run = client.get_run(args.run_id)
        count = client.request_resume(run.id)
        if count == 0:
            print(
                f"Run {run.id} waits only for a callback or an event, which resume does not "
                "complete: POST to the task's callback URL, or send the event (trigger-nb "
                "send-event). Nothing was changed.",
                file=sys.stderr,
            )
            return 1
        print(f"Run {run.id}: {count} wait{'s' if count != 1 else ''} made due now.")
        print(HANDOVER.format(job=run.job_id))
        print(f"Follow it with: trigger-nb show {run.id}")
        return 0

    return _with_client(args, action)


def cmd_cancel(args: argparse.Namespace) -> int:
    def action(client: TriggerClient) -> None:
        run = client.get_run(args.run_id)
        before = run.status
        asyncio.run(client.cancel(run.id))
        after = run.status
        if after == "CANCELED" and before != "CANCELED":
            print(f"Run {run.id}: CANCELED (was {before}).")
        elif after == before and after in ("SUCCESS", "FAILURE", "TIMED_OUT", "CANCELED"):
            print(f"Run {run.id} had already finished ({after}): nothing to cancel.")
        else:
            print(
                f"Run {run.id} ({after}) is being executed by another process: it stops at its "
                "next task and is then CANCELED."
            )

    return _with_client(args, action)


def cmd_forget(args: argparse.Namespace) -> int:
    def action(client: TriggerClient) -> None:
        if args.run_id:
            run_ids = [client.get_run(args.run_id).id]
        else:
            run_ids = [run.id for run in client.runs(job_id=args.job)]
        total = sum(client.forget(run_id) for run_id in run_ids)
        if not run_ids:
            print("Nothing to delete: no stored runs" + (f" of job {args.job!r}." if args.job else "."))
            return
        plural = "s" if len(run_ids) != 1 else ""
        print(f"Deleted {len(run_ids)} run{plural} ({total} records): {', '.join(run_ids)}")

    return _with_client(args, action)


def cmd_events(args: argparse.Namespace) -> int:
    from ._notebook._event_views import events_table

    return _with_client(args, lambda client: print(events_table(client.event_log.list_events(name=args.name))))


def cmd_send_event(args: argparse.Namespace) -> int:
    from ._notebook._event_views import sent_summary

    event: dict[str, Any] = {"name": args.name}
    if args.payload is not None:
        event["payload"] = args.payload
    if args.id:
        event["id"] = args.id

    def action(client: TriggerClient) -> None:
        sent = client.send_event_sync(event, deliver_after=args.deliver_after)
        print(sent_summary(sent))
        if sent.get("runs"):
            print(
                "The runs start in the process that defines their job (a kernel that ran its "
                "cell on this store), within a second; or when the job is next defined."
            )
        elif not sent.get("delivered_at") and not sent.get("cancelled_at"):
            print("It is delivered when due by any process that has this store open (a kernel, trigger-nb serve).")

    return _with_client(args, action)


def cmd_serve(args: argparse.Namespace) -> int:
    """A standalone receiver on a store: callbacks and events POSTed while no kernel runs are
    stored, and the kernel that next opens the store picks them up."""
    import signal
    import threading

    from ._client import TriggerClient
    from ._receiver._backend import events_token

    config = _config(args)
    client = TriggerClient(
        dir=config.dir, store=config.store, host=args.host, port=args.port, public_url=args.public_url
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        receiver = client.receiver
        print(f"trigger-nb serve: listening on {receiver.base_url} for the store {client.config.location}")
        print(f"POST /events needs: Authorization: Bearer {events_token(client.storage)}", flush=True)
        stop.wait()
    finally:
        client.close()
    print("trigger-nb serve: stopped", flush=True)
    return 0


# -- argument parsing ---------------------------------------------------------------------------


def _json_payload(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text!r}")
    return value


def _add_dir(parser: argparse.ArgumentParser) -> None:
    """``--dir`` or ``--store``: where the store is (TRIGGER_NB_STORE wins over TRIGGER_NB_DIR)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dir", metavar="PATH", help=DIR_HELP)
    where.add_argument(
        "--store", metavar="URL", help="a postgresql:// URL: the team store (default: $TRIGGER_NB_STORE)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trigger-nb",
        description="Durable, cached Trigger.dev-style jobs in Jupyter: run the demo, inspect "
        "and manage the runs and events of a store, serve callbacks without a kernel.",
        epilog="Run `trigger-nb COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, func: Any, description: str | None = None) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=summary, description=description or summary)
        cmd.set_defaults(func=func)
        return cmd

    demo = command(
        "demo",
        "run a job in a fresh kernel, then again in another one: tasks run once, then replay",
        cmd_demo,
    )
    demo.add_argument("--dir", metavar="PATH", help="store directory to use (default: a new temporary one)")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary store afterwards (its path is printed); without it, it is deleted",
    )
    demo.add_argument("--timeout", type=float, default=120, metavar="SECONDS", help="limit per kernel (default 120)")
    demo.add_argument(
        "--notebook", metavar="NAME", help="run notebooks/NAME.ipynb instead (e.g. durable_concepts)"
    )

    runs = command("runs", "list the stored runs, newest first", cmd_runs)
    _add_dir(runs)
    runs.add_argument("--job", metavar="ID", help="only runs of this job")
    runs.add_argument("--status", metavar="STATUS", help="only runs in this status (SUCCESS, FAILURE, WAITING, ...)")

    show = command("show", "print a run's task log", cmd_show)
    show.add_argument("run_id", metavar="RUN_ID", help="the run's id (see `trigger-nb runs`)")
    _add_dir(show)

    retry = command(
        "retry",
        "mark a failed or canceled run for retry",
        cmd_retry,
        "Mark a FAILURE, CANCELED or TIMED_OUT run for retry: its failed tasks run again, "
        "completed ones replay. The retry itself happens in the process that defines the job "
        "(a kernel that ran the job's cell on this store), since only it has the job's code.",
    )
    retry.add_argument("run_id", metavar="RUN_ID", help="the run to retry")
    _add_dir(retry)

    resume = command(
        "resume",
        "make a waiting run's waits and retry delays due now",
        cmd_resume,
        "Make a WAITING run's pending waits and retry delays due now, so that the process that "
        "defines the job (a kernel that ran the job's cell on this store) resumes it at once. "
        "Callbacks and event waits keep waiting for their POST or event.",
    )
    resume.add_argument("run_id", metavar="RUN_ID", help="the waiting run")
    _add_dir(resume)

    cancel = command("cancel", "cancel a run (an execution under way stops at its next task)", cmd_cancel)
    cancel.add_argument("run_id", metavar="RUN_ID", help="the run to cancel")
    _add_dir(cancel)

    forget = command(
        "forget",
        "delete stored runs and all their records",
        cmd_forget,
        "Delete stored runs (their tasks, outputs and history), asking nothing, and report "
        "what was deleted. Name exactly one of RUN_ID, --job or --all.",
    )
    which = forget.add_mutually_exclusive_group(required=True)
    which.add_argument("run_id", metavar="RUN_ID", nargs="?", help="the run to delete")
    which.add_argument("--job", metavar="ID", help="delete every run of this job")
    which.add_argument("--all", action="store_true", help="delete every run in the store")
    _add_dir(forget)

    events = command("events", "list the stored events: delivery, cancelation, runs started", cmd_events)
    events.add_argument("--name", metavar="NAME", help="only events with this name")
    _add_dir(events)

    send = command(
        "send-event",
        "send an event: it starts the matching event-triggered jobs and resumes matching waits",
        cmd_send_event,
    )
    send.add_argument("name", metavar="NAME", help="the event's name, e.g. order.paid")
    send.add_argument("--payload", type=_json_payload, metavar="JSON", help="the event's payload as JSON (default {})")
    send.add_argument("--id", metavar="ID", help="the event's id (default: a new unique id); sending an id again does not deliver it twice")
    send.add_argument("--deliver-after", type=_seconds, metavar="SECONDS", help="deliver it this many seconds from now (default: at once)")
    _add_dir(send)

    serve = command(
        "serve",
        "run the callback/event receiver on a store, without a kernel",
        cmd_serve,
        "Run the HTTP receiver for callback URLs and POST /events on a store, without a "
        "kernel: what it receives is stored, and the kernel that next opens the store picks "
        "it up. Stops on Ctrl-C or SIGTERM. Creates the store if there is none.",
    )
    _add_dir(serve)
    serve.add_argument("--host", default=None, help="bind address (default: $TRIGGER_NB_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: $TRIGGER_NB_PORT, else a free one)")
    serve.add_argument("--public-url", default=None, metavar="URL", help="base URL put into callback URLs (for a tunnel or proxy)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ._exceptions import TriggerNbError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"trigger-nb: {exc}", file=sys.stderr)
        return 1
    except TriggerNbError as exc:
        print(f"trigger-nb: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
