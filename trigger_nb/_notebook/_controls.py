"""What each control of the task log does, as calls of the public client API (SPEC §8).

The widget sends ``{"cmd": ..., "run_id": ..., "task_id": ..., "value": ...}``; :func:`perform`
does exactly what a script would do with the same client, so a click and a line of code
behave the same. ``value`` is the text of the JSON area beside Send / Send event / Complete
with value: invalid JSON raises :class:`PayloadError` and nothing is sent.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError, PayloadError, TriggerNbError

if TYPE_CHECKING:
    from .._client import TriggerClient

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


def _task(client: TriggerClient, run_id: str, task_id: str) -> dict[str, Any]:
    for task in client.get_run(run_id).tasks:
        if task["id"] == task_id:
            return task
    raise ConfigError(f"Run {run_id} has no task {task_id!r} any more.")


async def _post_callback(url: str, body: Any) -> None:
    """POST ``body`` to a callback URL: through the real receiver, as the remote caller would."""
    import httpx

    async with httpx.AsyncClient(timeout=SEND_TIMEOUT) as http:
        response = await http.post(url, content=json.dumps(body), headers={"Content-Type": "application/json"})
    if response.status_code != 200:
        raise TriggerNbError(f"The receiver answered {response.status_code}: {response.text[:200]}")
    if response.json().get("accepted") is False:
        raise TriggerNbError("This callback was already completed (the first POST wins).")


async def perform(client: TriggerClient, message: dict[str, Any]) -> None:
    """Do what one control asks. Raises ``TriggerNbError`` subclasses with a message for
    the user (shown inline beside the control)."""
    cmd = message.get("cmd")
    run_id = str(message.get("run_id") or "")
    task_id = str(message.get("task_id") or "")
    if cmd == "retry":
        await client.retry(run_id)
    elif cmd in ("retry_now", "resume_now"):
        await client.resume(run_id)
    elif cmd == "cancel":
        await client.cancel(run_id)
    elif cmd == "invalidate":
        client.invalidate(run_id, task_id)
    elif cmd == "complete":
        await client.complete(run_id, task_id, parse_json_text(message.get("value")))
    elif cmd == "send":
        body = parse_json_text(message.get("value"))
        url = _task(client, run_id, task_id).get("callback_url")
        if not url:
            raise ConfigError("This task has no callback URL (it is not waiting for a request).")
        await _post_callback(url, body)
    elif cmd == "send_event":
        payload = parse_json_text(message.get("value"))
        names = (_task(client, run_id, task_id).get("params") or {}).get("names") or []
        if not names:
            raise ConfigError("This task is not waiting for an event.")
        await client.send_event({"name": names[0], "payload": payload})
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

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
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
