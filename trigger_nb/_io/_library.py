"""The rest of the ``io`` library: logger, key-value store, determinism helpers, statuses,
``parallel`` and integrations (SPEC §4.7, §6.7, §6.8, §6.10–6.13; v2 §5.6–5.12, §3.3).

Every method here is built on :meth:`Execution.run_task`, so each call is a task: cached,
logged, and replayed instead of repeated on later executions.

- ``io.logger.<level>(message, properties=None)``: noop tasks (v2 §2.10, §5.6). Filtered by the
  job's ``log_level`` with v2's *intended* rule (order ``log < error < warn < info < debug``;
  recorded iff ``idx(level) <= idx(job level)``), not the 2.1.8 bug that always compared with
  ``info`` (SPEC §12). The cache key is ``[message, LEVEL, n]`` where ``n`` counts the
  occurrences of that message at that level under the same parent task in this execution: the
  same message twice never raises ``DuplicateTaskKeyError`` (v2 2.2.5+ did), and a replay,
  which makes the same calls in the same order, derives the same keys.
- ``io.store``: see :mod:`trigger_nb._io._kv`.
- ``io.random`` / ``io.uuid`` / ``io.now``: values drawn once, at the first execution.
- ``io.create_status``: a status whose every update is a task; the task outputs are the full
  status after the update, which is also where the log finds the current status (so a
  forgotten run or an invalidated update takes its status with it).
- ``io.parallel``: one parent task whose callback runs every branch concurrently.
- ``io.integration``: wraps an API client so its calls become named, iconned, retried tasks.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import inspect
import random as _random
import re
import uuid as _uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._engine import Execution, JobDefinition, TaskSpec, current_parent, is_control_flow
from .._engine._fingerprint import WRAPS as FINGERPRINT_OF
from .._exceptions import ConfigError, PayloadError
from .._keys import display_key, slugify_job_id
from .._numbers import finite
from .._serde import error_record, json_tree
from ..retry import js_round, standard_backoff
from ._core import _check_cache_key
from ._kv import TaskKeyValueStores

# -- logger (SPEC §6.7, v2 §5.6) ---------------------------------------------------------------

#: v2's level order (LOGGER): a job set to level L records messages whose level is at or before L.
LOG_LEVELS = ("log", "error", "warn", "info", "debug")


def satisfies_log_level(level: str, job_level: str) -> bool:
    """The intended v2 rule: is a ``level`` message recorded by a job whose level is ``job_level``?

    ``idx(level) <= idx(job_level)`` in :data:`LOG_LEVELS`; ``log`` messages are always recorded,
    ``debug`` ones only at ``debug``. Raises ``ConfigError`` for an unknown level.
    """
    for name in (level, job_level):
        if name not in LOG_LEVELS:
            raise ConfigError(f"Unknown log level {name!r}; use one of {', '.join(LOG_LEVELS)}.")
    return LOG_LEVELS.index(level) <= LOG_LEVELS.index(job_level)


def log_params(properties: Any) -> Any:
    """What a log task stores as its params: an exception becomes ``{name, message, stack}``
    (v2 2.3.12+); anything else is kept as given (made displayable by the engine)."""
    if isinstance(properties, BaseException):
        return error_record(properties)
    return properties


def _one_line(text: str, limit: int = 80) -> str:
    """A log message as a row label: its first line, shortened (the full text is the
    task's description)."""
    first = text.splitlines()[0] if text else text
    return first if len(first) <= limit and first == text else first[: limit - 1] + "…"


class LogKeys:
    """Deterministic, unique cache keys for log tasks within one execution.

    ``next(parent_id, message, LEVEL)`` returns ``[message, LEVEL, n]`` with ``n`` = 1, 2, ...
    counting per ``(parent task, message, level)``. One instance lives per execution (the ``io``
    object is built per execution), so every replay starts counting from 1 again.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str | None, str, str], int] = {}

    def next(self, parent_id: str | None, message: str, level: str) -> list[Any]:
        counter = (parent_id, message, level)
        n = self._counts.get(counter, 0) + 1
        self._counts[counter] = n
        return [message, level, n]


class IOLogger:
    """``io.logger``: ``log``, ``debug``, ``info``, ``warn``, ``error`` — each records a noop
    task shown in the run's log (nothing is printed)."""

    def __init__(self, execution: Execution, job_level: str) -> None:
        self._execution = execution
        self._job_level = job_level
        self._keys = LogKeys()

    async def _record(self, level: str, message: Any, properties: Any) -> None:
        if not satisfies_log_level(level, self._job_level):
            return
        text = message if isinstance(message, str) else str(message)
        upper = level.upper()
        key = self._keys.next(current_parent.get(), text, upper)
        await self._execution.run_task(
            TaskSpec(
                cache_key=key,
                name="log",
                icon="log",
                description=text,
                display_key=_one_line(text),
                params=log_params(properties),
                properties=[{"label": "Level", "text": upper}],
                style={"style": "minimal", "variant": level},
                noop=True,
                kind="log",
            )
        )

    async def log(self, message: Any, properties: Any = None) -> None:
        """Record ``message`` at level ``log`` (recorded at every job level)."""
        await self._record("log", message, properties)

    async def error(self, message: Any, properties: Any = None) -> None:
        """Record ``message`` at level ``error``; ``properties`` may be an exception."""
        await self._record("error", message, properties)

    async def warn(self, message: Any, properties: Any = None) -> None:
        """Record ``message`` at level ``warn``."""
        await self._record("warn", message, properties)

    async def info(self, message: Any, properties: Any = None) -> None:
        """Record ``message`` at level ``info``."""
        await self._record("info", message, properties)

    async def debug(self, message: Any, properties: Any = None) -> None:
        """Record ``message`` at level ``debug`` (only for jobs with ``log_level="debug"``)."""
        await self._record("debug", message, properties)


# -- statuses (SPEC §6.11, v2 §5.10) -------------------------------------------------------------

STATUS_STATES = ("loading", "success", "failure")


def _status_data(data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"A status's data must be a dict (a JSON record), got {type(data).__name__}."
        )

    def not_json(path: str, obj: Any, reason: str) -> Any:
        raise PayloadError(f"A status's data must be JSON: {path} {reason}.")

    return json_tree(data, root="data", dates=True, nan_to_null=True, on_bad=not_json)


def status_changes(status: Any, *, creating: bool) -> dict[str, Any]:
    """Validate a ``{"label", "state", "data"}`` mapping; return the fields given (not None).

    Raises ``ConfigError`` for an unknown field, a missing label (when ``creating``), a label
    that is not a string, a state outside ``loading|success|failure``, data that is not a dict;
    ``PayloadError`` for data that is not JSON.
    """
    if not isinstance(status, Mapping):
        raise ConfigError(
            'A status is a dict like {"label": "Working", "state": "loading", "data": {...}}.'
        )
    unknown = set(status) - {"label", "state", "data"}
    if unknown:
        raise ConfigError(f"Unknown status field(s) {sorted(unknown)}; use label, state, data.")
    changes = {
        name: status[name] for name in ("label", "state", "data") if status.get(name) is not None
    }
    label = changes.get("label")
    if label is not None and not isinstance(label, str):
        raise ConfigError(f"A status label must be a string, got {type(label).__name__}.")
    if creating and not label:
        raise ConfigError('io.create_status(key, status) needs a non-empty "label".')
    state = changes.get("state")
    if state is not None and state not in STATUS_STATES:
        raise ConfigError(
            f"A status state must be one of {', '.join(STATUS_STATES)}; got {state!r}."
        )
    if "data" in changes:
        changes["data"] = _status_data(changes["data"])
    return changes


def apply_status_update(
    current: Mapping[str, Any] | None, status_id: str, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """v2's server upsert (§5.10): given fields replace old ones (``data`` replaced, not
    merged), missing ones stay; the previous ``{label, state, data}`` is appended to ``history``.
    """
    if current is None:
        return {
            "id": status_id,
            "label": changes.get("label"),
            "state": changes.get("state"),
            "data": changes.get("data"),
            "history": [],
        }
    previous = {name: current.get(name) for name in ("label", "state", "data")}
    return {
        **current,
        **changes,
        "id": status_id,
        "history": [*current.get("history", []), previous],
    }


class TriggerStatus:
    """A run status made by ``io.create_status``: ``id``, ``label``, ``state``, ``data``,
    ``history``; change it with ``await status.update(key, {...})``."""

    def __init__(self, execution: Execution, status_id: str) -> None:
        self._execution = execution
        self.id = status_id
        self._current: dict[str, Any] | None = None

    label = property(lambda self: (self._current or {}).get("label"))
    state = property(lambda self: (self._current or {}).get("state"))
    data = property(lambda self: (self._current or {}).get("data"))
    history = property(lambda self: list((self._current or {}).get("history", [])))

    def to_dict(self) -> dict[str, Any]:
        """The status as stored: ``{"id", "label", "state", "data", "history"}``."""
        return dict(self._current or apply_status_update(None, self.id, {}))

    async def update(self, key: Any, status: Mapping[str, Any]) -> dict[str, Any]:
        """Change the status (a task named by the new label or "Status update", icon "bell").

        Fields given replace the old ones (``data`` is replaced, not merged); the previous
        state goes to ``history``. Returns the status after the update.
        """
        return await self._apply(key, status_changes(status, creating=False))

    async def _apply(self, key: Any, changes: dict[str, Any]) -> dict[str, Any]:
        _check_cache_key(key)

        async def upsert(task: Any) -> dict[str, Any]:
            return apply_status_update(self._current, self.id, changes)

        properties = [
            {"label": name.title(), "text": changes[name]}
            for name in ("label", "state")
            if name in changes
        ]
        result = await self._execution.run_task(
            TaskSpec(
                cache_key=key,
                fn=upsert,
                name=changes.get("label") or "Status update",
                icon="bell",
                params=changes,
                properties=properties or None,
                kind="status",
                extra={"status_id": self.id},
            )
        )
        # From the task's output, fresh or replayed: later updates build on what was stored.
        self._current = result
        return dict(result)

    def __repr__(self) -> str:
        return f"<TriggerStatus {self.id!r} label={self.label!r} state={self.state!r}>"


# -- integrations (SPEC §6.13, v2 §3.3) ---------------------------------------------------------


def _positional_count(fn: Callable[..., Any], most: int) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return most
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return most
    return min(
        most, sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    )


class Integration:
    """An API client whose calls run as tasks (v2 integrations): see :meth:`LibraryIO.integration`."""

    def __init__(
        self, io: Any, name: str, client: Any, *, icon: str, retry: Mapping[str, Any] | None
    ) -> None:
        self._io = io
        self.name = name
        self.client = client
        self.icon = icon
        self.retry = retry

    async def run_task(self, key: Any, fn: Callable[..., Any], **options: Any) -> Any:
        """Run ``fn(client, task, io)`` as a task named ``"{name}: {options name or key}"``.

        ``fn`` may be sync (runs in a worker thread) or async and take 1–3 of ``client, task,
        io``. ``options`` are :meth:`io.run_task`'s; the integration's ``icon`` and ``retry``
        apply unless given (``retry=None`` switches retrying off for this call).
        """
        _check_cache_key(key)
        if not callable(fn):
            raise ConfigError(
                f"{self.name}.run_task({key!r}, fn): fn must be callable, got {type(fn).__name__}."
            )
        label = options.pop("name", None) or display_key(key)
        options.setdefault("icon", self.icon)
        options.setdefault("retry", self.retry)
        count = _positional_count(fn, 3)
        client = self.client
        call: Callable[..., Any]
        if inspect.iscoroutinefunction(fn):

            async def call(task: Any, io: Any) -> Any:
                return await fn(*(client, task, io)[:count])

        else:

            def call(task: Any, io: Any) -> Any:
                return fn(*(client, task, io)[:count])

        setattr(call, FINGERPRINT_OF, fn)  # fn's code is the task's, for changed-code detection
        return await self._io.run_task(key, call, name=f"{self.name}: {label}", **options)

    def __repr__(self) -> str:
        return f"<Integration {self.name!r} client={type(self.client).__name__}>"


def _js_number(x: float) -> str:
    """A number as JavaScript prints it in a template string (``4.0`` → ``4``)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


# -- the mixin ---------------------------------------------------------------------------------


class LibraryIO:
    """``io.logger``, ``io.store``, ``io.random``/``uuid``/``now``, ``io.create_status``,
    ``io.parallel`` and ``io.integration``. Mixed into :class:`trigger_nb._io.IO`."""

    _execution: Execution
    _job: JobDefinition

    @functools.cached_property
    def logger(self) -> IOLogger:
        """The run's logger (SPEC §6.7): ``await io.logger.info("message", {"any": "data"})``."""
        return IOLogger(self._execution, self._job.log_level)

    @functools.cached_property
    def store(self) -> TaskKeyValueStores:
        """The key-value store (SPEC §6.8): ``io.store.env`` / ``.job`` / ``.run``, each with
        ``get(key, store_key)``, ``set(key, store_key, value)``, ``delete``, ``has``."""
        execution = self._execution
        return TaskKeyValueStores(
            execution, execution.repo.store, job_id=slugify_job_id(self._job.id), run_id=execution.run_id
        )

    # -- determinism helpers (SPEC §4.7, §6.10) ---------------------------------------------
    async def random(
        self, key: Any, *, min: float = 0, max: float = 1, round: bool = False
    ) -> float:
        """A random number in ``[min, max)`` (``round=True``: an integer in ``[min, max]``),
        drawn at the first execution and replayed afterwards (v2 §5.8).

        Fails the task with "Lower bound can't be higher than upper bound" when ``min > max``;
        logs a warning (a child task) when ``min == max`` or when rounding non-integer bounds.
        """
        _check_cache_key(key)
        for name, value in (("min", min), ("max", max)):
            finite(value, f"io.random({key!r}): {name}")
        low, high, rounding = min, max, bool(round)
        bounds = f"min: {_js_number(low)}, max: {_js_number(high)}"  # as v2's messages print them

        async def draw(task: Any) -> float:
            if low > high:
                raise ValueError(f"Lower bound can't be higher than upper bound - {bounds}")
            if low == high:
                await self.logger.warn(f"Lower bound matches upper bound - {bounds}")
            value = (high - low) * _random.random() + low
            if not rounding:
                return value
            if not (float(low).is_integer() and float(high).is_integer()):
                await self.logger.warn(
                    "Rounding enabled with floating-point bounds. This may cause unexpected skew "
                    "and boundary inclusivity."
                )
            return js_round(value)  # JS Math.round: an integer max is reachable

        return await self._execution.run_task(
            TaskSpec(
                cache_key=key,
                fn=draw,
                name="random",
                icon="dice-5-filled",
                params={"min": low, "max": high, "round": rounding},
                kind="random",
            )
        )

    async def uuid(self, key: Any) -> str:
        """A random UUID (version 4) as a string, fixed at the first execution."""
        _check_cache_key(key)

        async def make(task: Any) -> str:
            return str(_uuid.uuid4())

        return await self._execution.run_task(
            TaskSpec(cache_key=key, fn=make, name="uuid", icon="fingerprint", kind="uuid")
        )

    async def now(self, key: Any) -> str:
        """The current time as an ISO 8601 UTC string (``2024-05-01T12:00:00.123456+00:00``),
        fixed at the first execution: parse it with ``datetime.fromisoformat``."""
        _check_cache_key(key)

        async def read_clock(task: Any) -> str:
            return _dt.datetime.now(_dt.timezone.utc).isoformat()

        return await self._execution.run_task(
            TaskSpec(cache_key=key, fn=read_clock, name="now", icon="clock", kind="now")
        )

    # -- statuses (SPEC §6.11) ------------------------------------------------------------------
    async def create_status(self, key: Any, status: Mapping[str, Any]) -> TriggerStatus:
        """Create a status ``{"label", "state": "loading"|"success"|"failure", "data": {...}}``
        shown at the top of the run's log; change it with ``await status.update(key, {...})``.

        The status id is the cache key (a list key joined with ``-``), as in v2 §5.10.
        """
        _check_cache_key(key)
        changes = status_changes(status, creating=True)
        trigger_status = TriggerStatus(self._execution, display_key(key))
        await trigger_status._apply(key, changes)
        return trigger_status

    # -- parallel (SPEC §4.4, §6.12; v2 §5.12) ----------------------------------------------
    async def parallel(
        self,
        key: Any,
        items: Iterable[Any],
        fn: Callable[[Any, int], Any],
        *,
        name: str | None = None,
        properties: list[dict[str, Any]] | None = None,
    ) -> list[Any]:
        """Run ``fn(item, index)`` for every item concurrently inside one parent task; return
        the values in item order.

        ``fn`` may be async (the usual case: it calls ``io`` tasks) or sync. Tasks started by
        the branches are children of the parent, so their keys only need to differ between
        branches: **use ``index`` in them**, e.g. ``io.run_task(["fetch", index], ...)``.
        If a branch fails, the parent fails with the first error (in item order) once every
        branch has settled. If branches only suspended (a wait, a retry delay, a callback), the
        run suspends and the parent runs again on the next execution, where finished branches
        replay. Completed parents replay without calling ``fn``. A sync ``fn`` runs on the
        event loop: keep it quick, and put slow work in ``io.run_task``. Logs with the same
        message in several branches are numbered in call order: put ``index`` in the message
        when they must stay tied to their branch across replays.
        """
        _check_cache_key(key)
        if not callable(fn):
            raise ConfigError(
                f"io.parallel({key!r}, items, fn): fn must be callable as fn(item, index)."
            )
        if isinstance(items, (str, bytes, Mapping)):
            raise ConfigError(
                f"io.parallel({key!r}, items, fn): items must be a list of items, not a {type(items).__name__}."
            )
        branches_items = list(items)

        async def branch(item: Any, index: int) -> Any:
            result = fn(item, index)
            if inspect.isawaitable(result):
                result = await result
            return result

        async def run_branches(task: Any) -> list[Any]:
            # gather starts the branches in order and, with return_exceptions, lets every one
            # settle: a suspension in one branch must not abandon the others half way.
            outcomes = await asyncio.gather(
                *(branch(item, index) for index, item in enumerate(branches_items)),
                return_exceptions=True,
            )
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if not failures:
                return list(outcomes)
            for failure in failures:
                if isinstance(failure, Exception) and not is_control_flow(failure):
                    raise failure
            raise failures[0]  # only engine control flow: suspend, the parent runs again later

        return await self._execution.run_task(
            TaskSpec(
                cache_key=key,
                fn=run_branches,
                name=name or "parallel",
                properties=properties,
                params={"items": len(branches_items)},
                kind="parallel",
                user_fn=fn,
            )
        )

    # -- integrations (SPEC §6.13) -------------------------------------------------------------
    def integration(
        self,
        name: str,
        client: Any,
        *,
        icon: str | None = None,
        retry: Mapping[str, Any] | None = standard_backoff,
    ) -> Integration:
        """Wrap an API ``client`` so that ``await integration.run_task(key, fn(client, task,
        io), **options)`` runs each call as a task named ``"{name}: {key}"`` with the
        integration's ``icon`` (default: the name in lowercase, like v2's integration ids) and ``retry`` (default
        ``retry.standard_backoff``, as v2 integrations; options given per call win).
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                "io.integration(name, client): name must be a non-empty string, e.g. 'github'."
            )
        default_icon = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "integration"
        return Integration(self, name, client, icon=icon or default_icon, retry=retry)


__all__ = [
    "LOG_LEVELS",
    "STATUS_STATES",
    "IOLogger",
    "Integration",
    "LibraryIO",
    "LogKeys",
    "TriggerStatus",
    "apply_status_update",
    "log_params",
    "satisfies_log_level",
    "status_changes",
]
