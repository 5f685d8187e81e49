"""What each control of the task log does, as calls of the public client API (SPEC §8).

The widget sends ``{"cmd": ..., "task_id": ..., "value": ...}``; :func:`perform` does exactly
what a script would do with the run's handle (``run.retry()``, ``run.complete(task_id, value)``
…, each the client method of the same name), so a click and a line of code behave the same. ``value`` is the text of the JSON area beside Send / Send event / Complete
with value: invalid JSON raises :class:`PayloadError` and nothing is sent.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from .._exceptions import ConfigError, PayloadError, TriggerNbError
from .._loop import running_loop


class Run(Protocol):
    """What the task log needs of a run handle (``trigger_nb.Run`` has it). A protocol, not an
    import: ``Run`` draws itself with this package, so this package must not import it."""

    id: str

    def records(self) -> tuple[dict[str, Any], list[dict[str, Any]], dict[int, list[Any]]]: ...
    @property
    def record(self) -> dict[str, Any]: ...
    def subscribe(self, listener: Any) -> Any: ...
    @property
    def tasks(self) -> list[dict[str, Any]]: ...
    async def retry(self) -> Any: ...
    async def resume(self) -> Any: ...
    async def cancel(self) -> Any: ...
    def invalidate(self, task_id: str) -> Any: ...
    async def complete(self, task_id: str, value: Any) -> Any: ...
    async def send_event(self, event: dict[str, Any]) -> Any: ...


#: Seconds a Send (the POST to the callback URL) may take.
SEND_TIMEOUT = 10.0

#: command → the button label it belongs to (the labels SPEC §8 fixes).
LABELS = {
    "retry": "Retry",
    "retry_now": "Retry now",
    "resume_now": "Resume now",
    "send": "Send",
    "send_event": "Send event",
    "cancel": "Cancel run",
    "invalidate": "Invalidate",
    "complete": "Complete with value",
}


def parse_json_text(text: Any) -> Any:
    """The JSON value typed into a text area, or :class:`PayloadError` saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise PayloadError("Type a JSON value first (for example {\"approved\": true}).")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"Invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None


def _task(run: Run, task_id: str) -> dict[str, Any]:
    for task in run.tasks:
        if task["id"] == task_id:
            return task
    raise ConfigError(f"Run {run.id} has no task {task_id!r} any more.")


async def _post_callback(url: str, body: Any) -> None:
    """POST ``body`` to a callback URL: through the real receiver, as the remote caller would."""
    import httpx

    async with httpx.AsyncClient(timeout=SEND_TIMEOUT) as http:
        response = await http.post(url, content=json.dumps(body), headers={"Content-Type": "application/json"})
    if response.status_code != 200:
        raise TriggerNbError(f"The receiver answered {response.status_code}: {response.text[:200]}")
    if response.json().get("accepted") is False:
        raise TriggerNbError("This callback was already completed (the first POST wins).")


async def perform(run: Run, message: dict[str, Any]) -> None:
    """Do what one control asks, through the run handle's public methods (each the client's
    method of the same name). Raises ``TriggerNbError`` subclasses with a message for the
    user (shown inline beside the control)."""
    cmd = message.get("cmd")
    task_id = str(message.get("task_id") or "")
    if cmd == "retry":
        await run.retry()
    elif cmd in ("retry_now", "resume_now"):
        await run.resume()
    elif cmd == "cancel":
        await run.cancel()
    elif cmd == "invalidate":
        run.invalidate(task_id)
    elif cmd == "complete":
        await run.complete(task_id, parse_json_text(message.get("value")))
    elif cmd == "send":
        body = parse_json_text(message.get("value"))
        url = _task(run, task_id).get("callback_url")
        if not url:
            raise ConfigError("This task has no callback URL (it is not waiting for a request).")
        await _post_callback(url, body)
    elif cmd == "send_event":
        payload = parse_json_text(message.get("value"))
        names = (_task(run, task_id).get("params") or {}).get("names") or []
        if not names:
            raise ConfigError("This task is not waiting for an event.")
        await run.send_event({"name": names[0], "payload": payload})
    else:
        raise ConfigError(f"Unknown command {cmd!r}.")


def start(coro: Any, done: Any) -> None:
    """Run ``coro`` without blocking the caller (a comm message handler), then call
    ``done(error_text_or_None)``. On the caller's loop when there is one (the kernel's:
    the client's coroutines hop to its home loop themselves), else in a thread."""
    def finish(result: BaseException | None) -> None:
        if result is None:
            done(None)
        elif isinstance(result, TriggerNbError):
            done(str(result))
        else:
            done(f"{type(result).__name__}: {result}")

    loop = running_loop()
    if loop is not None:
        task = loop.create_task(coro)
        _PENDING.add(task)

        def callback(t: asyncio.Task[Any]) -> None:
            _PENDING.discard(t)
            finish(None if t.cancelled() else t.exception())

        task.add_done_callback(callback)
        return

    import threading

    def main() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # reported to the user, not raised in a thread
            finish(exc)
        else:
            finish(None)

    threading.Thread(target=main, name="trigger_nb-control", daemon=True).start()


_PENDING: set[asyncio.Task[Any]] = set()
