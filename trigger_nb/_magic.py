"""``%%job`` and ``%job``: parse arguments, compile the body, delegate to the client.

Nothing else lives here (SPEC §2, STYLE: the magic is a thin layer over the library API).
Library errors reach the user as short messages: every ``TriggerNbError`` renders itself in
one line through IPython's ``_render_traceback_`` hook.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from ._args import CELL_FLAGS, parse_json_or_python, parse_line, parse_number
from ._client import TriggerClient, default_client, set_default_client
from ._engine import JobDefinition
from ._exceptions import ConfigError, PayloadError, RunTimeoutError
from ._keys import canonical_json, new_run_id, slugify_job_id

CELL_USAGE = (
    "%%job JOB_ID [--payload TEXT] [--run RUN_ID | --new] [--name NAME] [--version X.Y.Z] "
    "[--wait] [--timeout SECONDS] [--out VAR] [--quiet] [--pickle] "
    '[--on EVENT [--filter JSON] [--source S]] [--every SECONDS | --cron "EXPR"]'
)
LINE_USAGE = textwrap.dedent(
    """\
    %job list [--job ID] [--status S]      table of runs
    %job show RUN_ID                       a run's log
    %job retry RUN_ID                      execute a failed run again
    %job cancel RUN_ID                     cancel a run
    %job resume RUN_ID                     resume a waiting run now
    %job forget RUN_ID | --job ID | --all  delete stored runs
    %job server [--start]                  receiver address, state and events token
    %job send NAME [--payload TEXT] [--id ID] [--deliver-after S]   send an event
    %job events [--name N]                 stored events: delivery, cancelation, runs started
    %job config [--dir PATH] [--public-url URL]"""
)


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
        run = client.invoke_sync(job_id, payload, run_id=run_id, busy_timeout=busy_timeout)
        run._quiet = bool(opts.get("quiet"))
        if opts.get("out"):
            name = opts["out"]
            if not name.isidentifier():
                raise ConfigError(f"--out needs a Python variable name, got {name!r}.")
            ns[name] = run
        if wait and not run.finished:
            try:
                run.wait_sync(timeout)
            except RunTimeoutError:
                run._ipython_display_()
                raise
        return run

    def _define_triggered(self, client: TriggerClient, job: JobDefinition, opts: dict[str, Any]) -> Any:
        from ._triggers import cron_trigger, event_trigger, interval_trigger

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
        return client.trigger_view(job.id)

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
        words = line.split(None, 1)
        if not words:
            print(LINE_USAGE)
            return None
        command, rest = words[0], (words[1] if len(words) > 1 else "")
        handler = getattr(self, f"_cmd_{command.replace('-', '_')}", None)
        if handler is None:
            raise ConfigError(f"Unknown %job command {command!r}.\n{LINE_USAGE}")
        return handler(rest)

    def _one_run_id(self, rest: str, command: str) -> str:
        parsed = parse_line(rest, {}, usage=f"%job {command} RUN_ID")
        if len(parsed.positional) != 1:
            raise ConfigError(f"Usage: %job {command} RUN_ID")
        return parsed.positional[0]

    def _cmd_list(self, rest: str) -> None:
        parsed = parse_line(rest, {"job": "word", "status": "word"}, usage="%job list [--job ID] [--status S]")
        runs = default_client().runs(job_id=parsed.options.get("job"), status=parsed.options.get("status"))
        from ._display import runs_table

        print(runs_table([run.snapshot for run in runs]))

    def _cmd_show(self, rest: str) -> Any:
        return default_client().get_run(self._one_run_id(rest, "show"))

    def _cmd_retry(self, rest: str) -> Any:
        client = default_client()
        run = client.get_run(self._one_run_id(rest, "retry"))
        client._host.run_sync(client.retry(run.id))
        return run

    def _cmd_resume(self, rest: str) -> Any:
        client = default_client()
        run = client.get_run(self._one_run_id(rest, "resume"))
        client._host.run_sync(client.resume(run.id))
        return run

    def _cmd_cancel(self, rest: str) -> None:
        client = default_client()
        run = client.get_run(self._one_run_id(rest, "cancel"))
        client._host.run_sync(client.cancel(run.id))
        print(f"Run {run.id}: {run.status}")

    def _cmd_forget(self, rest: str) -> None:
        usage = "%job forget RUN_ID | --job ID | --all"
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
        parsed = parse_line(rest, {"start": "bool"}, usage="%job server [--start]")
        client = default_client()
        from ._backend import events_token

        if parsed.options.get("start"):
            client.receiver  # noqa: B018 - starts it
        receiver = client._receiver
        if receiver is None or not receiver.running:
            print(
                "receiver: not started (it starts when a run first needs a callback URL; "
                "`%job server --start` starts it now)"
            )
        else:
            print(f"receiver: running at {receiver.base_url} (bound to {receiver.host}:{receiver.port})")
        print(f"events: POST {{receiver}}/events with 'Authorization: Bearer {events_token(client.storage)}'")
        print(f"store: {client.config.dir}")

    def _cmd_send(self, rest: str) -> None:
        usage = "%job send NAME [--payload TEXT] [--id ID] [--deliver-after S]"
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
        from ._eventlog import sent_summary

        print(sent_summary(default_client().send_event_sync(event, deliver_after=deliver_after)))

    def _cmd_events(self, rest: str) -> None:
        parsed = parse_line(rest, {"name": "word"}, usage="%job events [--name N]")
        if parsed.positional:
            raise ConfigError("Usage: %job events [--name N]")
        from ._eventlog import events_table

        print(events_table(default_client().event_log.list_events(name=parsed.options.get("name"))))

    def _cmd_config(self, rest: str) -> None:
        parsed = parse_line(
            rest, {"dir": "word", "public-url": "word"}, usage="%job config [--dir PATH] [--public-url URL]"
        )
        old = default_client()
        if parsed.options:
            new = TriggerClient(
                dir=parsed.options.get("dir") or old.config.dir,
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
        print(f"dir: {config.dir}\nhost: {config.host}\nport: {config.port}\npublic_url: {config.public_url}")


def register(ipython: Any) -> None:
    """Register the magics on ``ipython`` (``%load_ext trigger_nb``)."""
    ipython.register_magics(JobMagics)


def unregister(ipython: Any) -> None:
    ipython.magics_manager.magics["line"].pop("job", None)
    ipython.magics_manager.magics["cell"].pop("job", None)


__all__ = ["JobMagics", "PayloadError", "register", "unregister"]
