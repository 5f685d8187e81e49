"""``%%job`` and ``%job``: parse arguments, compile the body, delegate to the client.

Nothing else lives here (SPEC §2, STYLE: the magic is a thin layer over the library API).
Library errors reach the user as short messages: every ``TriggerNbError`` renders itself in
one line through IPython's ``_render_traceback_`` hook.
"""

from __future__ import annotations

import math
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.utils.text import DollarFormatter

from .._client import TriggerClient, default_client, set_default_client
from .._engine import JobDefinition
from .._exceptions import ConfigError, PayloadError, RunFailedError, RunTimeoutError
from .._keys import canonical_json, new_run_id, slugify_job_id
from ._args import CELL_FLAGS, parse_json_or_python, parse_line, parse_number

CELL_USAGE = (
    "%%job JOB_ID [--payload TEXT] [--run RUN_ID | --new] [--name NAME] [--version X.Y.Z] "
    "[--wait] [--timeout SECONDS] [--out VAR] [--quiet] [--pickle] [--rerun-changed] "
    '[--on EVENT [--filter JSON] [--source S]] [--every SECONDS | --cron "EXPR"]'
)
#: %job command -> (its usage, what it does). The order is the order of `%job --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("%job list [--job ID] [--status S]", "table of runs, newest first (also a bare %job)"),
    "show": ("%job show RUN_ID", "a run's task log"),
    "prune": ("%job prune RUN_ID", "delete a run's stored tasks its latest execution no longer reaches"),
    "retry": ("%job retry RUN_ID", "execute a failed run again (failed tasks run again)"),
    "cancel": ("%job cancel RUN_ID", "cancel a run"),
    "resume": ("%job resume RUN_ID", "resume a waiting run now (waits and retry delays end)"),
    "forget": ("%job forget RUN_ID | --job ID | --all", "delete stored runs"),
    "server": ("%job server [--start] [--show-token]", "receiver address and state (token masked)"),
    "send": ("%job send NAME [--payload TEXT] [--id ID] [--deliver-after S]", "send an event"),
    "events": ("%job events [--name N]", "stored events: delivery, cancelation, runs started"),
    "config": ("%job config [--dir PATH | --store URL] [--public-url URL]", "show or change the store and URLs"),
}
LINE_USAGE = "\n".join(f"{usage:<64} {what}" for usage, what in COMMANDS.values()) + (
    "\n\nArguments expand {var} and $var from the notebook (e.g. %job show {run.id})."
    "\n%%job JOB_ID ... runs a job cell: `%%job --help`."
)
CELL_HELP = f"""Usage: {CELL_USAGE}

The cell is the body of `async def run(payload, io, ctx)`: every `await io.*` call is a task
whose result is stored and replayed when the cell runs again.
  --payload TEXT      JSON, or a Python expression evaluated in the notebook (default {{}})
  --run RUN_ID        continue this run; --new starts a fresh one (default: one run per payload)
  --name, --version   the job's display name and version (X.Y.Z)
  --wait              block until the run finishes; --timeout SECONDS bounds that
  --out VAR           bind the Run handle to VAR (also when the cell fails)
  --quiet             one summary line instead of the task log
  --pickle            store task outputs that are not JSON with pickle (trusted stores only)
  --rerun-changed     run tasks whose function's code changed again instead of replaying them
  --on EVENT          run on each matching event (--filter JSON, --source S)
  --every SECONDS, --cron "EXPR"   run on a schedule while the kernel lives (cron in UTC)
A failed run raises RunFailedError after its log is shown; a waiting run resumes by itself."""


def _asks_for_help(line: str) -> bool:
    return any(word in ("--help", "-h") for word in line.split())


@magics_class
class JobMagics(Magics):
    """The ``%%job`` cell magic and the ``%job`` line magic."""

    @no_var_expand  # `{}` and `$` in a JSON payload must reach us untouched (SPEC §2)
    @line_cell_magic
    def job(self, line: str, cell: str | None = None) -> Any:
        if cell is None:
            return self._line(line)
        return self._cell(line, cell)

    # -- %%job ------------------------------------------------------------------------------
    def _cell(self, line: str, cell: str) -> Any:
        if _asks_for_help(line.split("--payload")[0]):  # `--help` inside a payload is data
            print(CELL_HELP)
            return None
        parsed = parse_line(line, CELL_FLAGS, usage=CELL_USAGE)
        if len(parsed.positional) < 1:
            raise ConfigError(f"%%job needs a job id. Usage: {CELL_USAGE}")
        opts = parsed.options
        job_id = slugify_job_id(" ".join(parsed.positional))
        if opts.get("run") and opts.get("new"):
            raise ConfigError("--run and --new exclude each other: name the run, or ask for a new one.")
        schedule_flags = [f for f in ("on", "every", "cron") if opts.get(f)]
        if len(schedule_flags) > 1:
            raise ConfigError("Use only one of --on, --every, --cron.")
        for flag in ("filter", "source"):
            if opts.get(flag) and not opts.get("on"):
                raise ConfigError(f"--{flag} only applies to event-triggered jobs (--on EVENT).")
        if schedule_flags and opts.get("rerun_changed"):
            raise ConfigError("--rerun-changed applies to a run executed now, not to --on/--every/--cron jobs.")
        client = default_client()
        ns = self._user_ns()
        filename = self._cache_cell(line, cell)
        from ._body import compile_body

        fn = compile_body(cell, filename=filename, namespace=ns)
        job = JobDefinition(
            id=job_id,
            fn=fn,
            name=opts.get("name") or job_id,
            version=opts.get("version") or "0.0.1",
            serializer="pickle" if opts.get("pickle") else "json",
        )
        if schedule_flags:
            return self._define_triggered(client, job, opts)
        payload: Any = {}
        if "payload" in opts:
            payload = parse_json_or_python(opts["payload"], ns, what="--payload")
        canonical_json(payload)  # PayloadError (nothing stored) if not JSON-serialisable
        timeout = parse_number(opts["timeout"], what="--timeout", minimum=0) if opts.get("timeout") else None
        wait = bool(opts.get("wait")) or timeout is not None
        client.add_job(job)
        if opts.get("new"):
            run_id = new_run_id()
        else:
            run_id = opts.get("run") or client.run_id_for(job_id, payload)
        # --wait also waits for another process that holds the run (SPEC §10).
        busy_timeout = (timeout if timeout is not None else math.inf) if wait else None
        run = client.invoke_sync(
            job_id,
            payload,
            run_id=run_id,
            busy_timeout=busy_timeout,
            rerun_changed=bool(opts.get("rerun_changed")),
        )
        run.quiet = bool(opts.get("quiet"))
        if opts.get("out"):
            name = opts["out"]
            if not name.isidentifier():
                raise ConfigError(f"--out needs a Python variable name, got {name!r}.")
            ns[name] = run
        try:
            if wait and not run.finished:
                run.wait_sync(timeout)
            # SPEC §2: a failed run fails its cell (Run All stops, nbconvert reports it).
            run.raise_for_status()
        except (RunTimeoutError, RunFailedError):
            run._ipython_display_()  # the log first, as the cell's value would have been shown
            raise
        return run

    def _define_triggered(self, client: TriggerClient, job: JobDefinition, opts: dict[str, Any]) -> Any:
        from .._events._triggers import cron_trigger, event_trigger, interval_trigger
        from ._trigger_view import TriggerView

        if opts.get("on"):
            event_filter = None
            if opts.get("filter"):
                event_filter = parse_json_or_python(opts["filter"], self._user_ns(), what="--filter")
            job.trigger = event_trigger(name=opts["on"], filter=event_filter, source=opts.get("source"))
        elif opts.get("every"):
            job.trigger = interval_trigger(seconds=parse_number(opts["every"], what="--every", minimum=1))
        else:
            from ._args import parse_cron

            job.trigger = cron_trigger(cron=parse_cron(opts["cron"]))
        client.add_job(job)
        return TriggerView(client, job.id)

    def _user_ns(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def _cache_cell(self, line: str, cell: str) -> str:
        """Register the cell's text with IPython so tracebacks show the user's lines."""
        source = f"%%job {line}\n{cell}"
        shell = self.shell
        if shell is None or not hasattr(shell, "compile"):
            return "<%%job cell>"
        try:
            return str(shell.compile.cache(source, shell.execution_count, raw_code=source))
        except TypeError:  # older IPython without raw_code
            return str(shell.compile.cache(source, shell.execution_count))

    # -- %job -------------------------------------------------------------------------------
    def _line(self, line: str) -> Any:
        # SPEC §2: line commands expand {var} and $var like other line magics (the decorator
        # turned IPython's expansion off for the %%job header, whose JSON must stay verbatim).
        line = self._expand(line)
        words = line.split(None, 1)
        if not words:  # a bare %job: the runs table (SPEC §8)
            return self._cmd_list("")
        if words[0] in ("--help", "-h", "help"):
            print(LINE_USAGE)
            return None
        command, rest = words[0], (words[1] if len(words) > 1 else "")
        if command not in COMMANDS:
            raise ConfigError(f"Unknown %job command {command!r}.\n{LINE_USAGE}")
        if _asks_for_help(rest):
            usage, what = COMMANDS[command]
            print(f"Usage: {usage}\n  {what}")
            return None
        return getattr(self, f"_cmd_{command}")(rest)

    def _expand(self, line: str) -> str:
        """``{var}`` / ``$var`` from the notebook namespace; the line unchanged if it fails."""
        if self.shell is None:
            return line
        try:
            return str(DollarFormatter().vformat(line, args=[], kwargs=self.shell.user_ns))
        except Exception:  # as IPython does: text that is not a valid template stays as it is
            return line

    def _one_run_id(self, rest: str, command: str) -> str:
        usage = COMMANDS[command][0]
        parsed = parse_line(rest, {}, usage=usage)
        if len(parsed.positional) != 1:
            raise ConfigError(f"Usage: {usage}")
        return parsed.positional[0]

    def _cmd_list(self, rest: str) -> Any:
        parsed = parse_line(rest, {"job": "word", "status": "word"}, usage=COMMANDS["list"][0])
        from ._runs_table import RunsListing

        # Interactive in a notebook (filter, click a run to open its log), text elsewhere. It
        # reads the runs once, here (an unknown status is a ConfigError now).
        options = parsed.options
        return RunsListing(default_client(), job_id=options.get("job"), status=options.get("status"))

    def _cmd_show(self, rest: str) -> Any:
        return default_client().get_run(self._one_run_id(rest, "show"))

    def _cmd_prune(self, rest: str) -> None:
        run_id = self._one_run_id(rest, "prune")
        pruned = default_client().prune(run_id)
        if not pruned:
            print(
                f"Run {run_id}: nothing to prune (tasks count as not reached only after an "
                "execution that succeeded and did not call them)."
            )
            return
        keys = ", ".join(repr(task["display_key"]) for task in pruned)
        print(f"Run {run_id}: deleted {len(pruned)} task(s) not reached by its latest execution: {keys}")

    def _cmd_retry(self, rest: str) -> Any:
        client = default_client()
        run = client.get_run(self._one_run_id(rest, "retry"))
        client.call_sync(client.retry(run.id))
        return run

    def _cmd_resume(self, rest: str) -> Any:
        client = default_client()
        run = client.get_run(self._one_run_id(rest, "resume"))
        client.call_sync(client.resume(run.id))
        return run

    def _cmd_cancel(self, rest: str) -> None:
        client = default_client()
        run = client.get_run(self._one_run_id(rest, "cancel"))
        client.call_sync(client.cancel(run.id))
        print(f"Run {run.id}: {run.status}")

    def _cmd_forget(self, rest: str) -> None:
        usage = COMMANDS["forget"][0]
        parsed = parse_line(rest, {"job": "word", "all": "bool"}, usage=usage)
        chosen = [bool(parsed.positional), "job" in parsed.options, "all" in parsed.options]
        if sum(chosen) != 1 or len(parsed.positional) > 1:
            raise ConfigError(f"Usage: {usage}")
        client = default_client()
        if parsed.positional:
            run_ids = [client.get_run(parsed.positional[0]).id]
        else:
            run_ids = [run.id for run in client.runs(job_id=parsed.options.get("job"))]
        total = 0
        for run_id in run_ids:
            total += client.forget(run_id)
        print(f"Deleted {len(run_ids)} run(s) ({total} records): {', '.join(run_ids) or 'nothing to delete'}")

    def _cmd_server(self, rest: str) -> None:
        parsed = parse_line(rest, {"start": "bool", "show-token": "bool"}, usage=COMMANDS["server"][0])
        client = default_client()
        from .._receiver._backend import events_token

        receiver = client.receiver if parsed.options.get("start") or client.receiver_started else None
        if receiver is None or not receiver.running:
            print(
                "receiver: not started (it starts when a run first needs a callback URL; "
                "`%job server --start` starts it now)"
            )
        else:
            print(f"receiver: running at {receiver.base_url} (bound to {receiver.host}:{receiver.port})")
        # The token is masked by default: this output is saved with the notebook (SPEC §2).
        if parsed.options.get("show_token"):
            token = events_token(client.storage)
        else:
            token = "******** (`%job server --show-token` shows it)"
        print(f"events: POST {{receiver}}/events with 'Authorization: Bearer {token}'")
        print(f"store: {client.config.location}")

    def _cmd_send(self, rest: str) -> None:
        usage = COMMANDS["send"][0]
        parsed = parse_line(rest, {"payload": "raw", "id": "word", "deliver-after": "word"}, usage=usage)
        if len(parsed.positional) != 1:
            raise ConfigError(f"Usage: {usage}")
        opts = parsed.options
        event: dict[str, Any] = {"name": parsed.positional[0]}
        if "payload" in opts:
            ns: dict[str, Any] = self.shell.user_ns if self.shell is not None else {}
            event["payload"] = parse_json_or_python(opts["payload"], ns, what="--payload")
        if opts.get("id"):
            event["id"] = opts["id"]
        deliver_after = None
        if opts.get("deliver_after"):
            deliver_after = parse_number(opts["deliver_after"], what="--deliver-after", minimum=0)
        from ._event_views import sent_summary

        print(sent_summary(default_client().send_event_sync(event, deliver_after=deliver_after)))

    def _cmd_events(self, rest: str) -> None:
        usage = COMMANDS["events"][0]
        parsed = parse_line(rest, {"name": "word"}, usage=usage)
        if parsed.positional:
            raise ConfigError(f"Usage: {usage}")
        from ._event_views import events_table

        print(events_table(default_client().event_log.list_events(name=parsed.options.get("name"))))

    def _cmd_config(self, rest: str) -> None:
        usage = COMMANDS["config"][0]
        parsed = parse_line(rest, {"dir": "word", "store": "word", "public-url": "word"}, usage=usage)
        old = default_client()
        if parsed.options:
            opts = parsed.options
            if opts.get("dir") and opts.get("store"):
                raise ConfigError(f"Give --dir or --store, not both. Usage: {usage}")
            if opts.get("dir") or opts.get("store"):  # a new place for the records
                where = {"dir": opts.get("dir"), "store": opts.get("store")}
            else:  # keep the old place
                where = {"dir": old.config.dir, "store": old.config.store}
            new = TriggerClient(
                **where,
                host=old.config.host,
                port=old.config.port,
                public_url=parsed.options.get("public_url") or old.config.public_url,
            )
            new.storage  # noqa: B018 - open now: a bad directory is reported here
            for job in old.jobs.values():
                new.add_job(job)  # stores triggers and arms schedules in the new store
            old.close()
            set_default_client(new)
        config = default_client().config
        print(f"store: {config.location}\nhost: {config.host}\nport: {config.port}\npublic_url: {config.public_url}")


def register(ipython: Any) -> None:
    """Register the magics on ``ipython`` (``%load_ext trigger_nb``)."""
    ipython.register_magics(JobMagics)


def unregister(ipython: Any) -> None:
    ipython.magics_manager.magics["line"].pop("job", None)
    ipython.magics_manager.magics["cell"].pop("job", None)


__all__ = ["JobMagics", "PayloadError", "register", "unregister"]
