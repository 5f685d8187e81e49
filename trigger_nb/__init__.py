"""trigger_nb: durable, cached Trigger.dev-v2-style jobs and tasks inside Jupyter.

In a notebook::

    %load_ext trigger_nb

    %%job hello --payload {"name": "Ada"}
    greeting = await io.run_task("greet", lambda: f"Hello {payload['name']}")
    return {"greeting": greeting}

As a library: ``TriggerClient``, ``define_job``, ``invoke`` (see the README).

Importing this package starts no thread and no server and imports nothing heavy: the public
names below are loaded on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._exceptions import (
    CallbackTimeoutError,
    ConfigError,
    DuplicateTaskKeyError,
    EventFilterError,
    FetchError,
    PayloadError,
    RunBusyError,
    RunCanceledError,
    RunFailedError,
    RunTimeoutError,
    StoreError,
    TaskError,
    TaskOutputError,
    TriggerNbError,
)

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access, PEP 562)
_LAZY = {
    "TriggerClient": "._client",
    "default_client": "._client",
    "Run": "._run",
    "event_trigger": "._events._triggers",
    "interval_trigger": "._events._triggers",
    "cron_trigger": "._events._triggers",
    "invoke_trigger": "._events._triggers",
    "redact_string": "._redact",
    "retry": ".retry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trigger_nb' has no attribute {name!r}")
    if name == "retry":
        value = importlib.import_module(module, __name__)
    else:
        value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext trigger_nb``: register the ``%%job`` cell magic and ``%job`` line magic."""
    from ._notebook._magic import register

    register(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from ._notebook._magic import unregister

    unregister(ipython)


__all__ = [
    "CallbackTimeoutError",
    "ConfigError",
    "DuplicateTaskKeyError",
    "EventFilterError",
    "FetchError",
    "PayloadError",
    "Run",
    "RunBusyError",
    "RunCanceledError",
    "RunFailedError",
    "RunTimeoutError",
    "StoreError",
    "TaskError",
    "TaskOutputError",
    "TriggerClient",
    "TriggerNbError",
    "cron_trigger",
    "default_client",
    "event_trigger",
    "interval_trigger",
    "invoke_trigger",
    "load_ipython_extension",
    "redact_string",
    "retry",
]
