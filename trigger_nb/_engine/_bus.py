"""The in-process notification bus: the engine publishes, views subscribe.

The engine never imports a view. It emits small immutable notices; the text/HTML log and the
widget subscribe and re-render. Emitting with no subscriber costs one attribute check, so the
replay hot path pays nothing when no view is attached.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("trigger_nb")


@dataclass(frozen=True)
class Notice:
    """Something happened to a run.

    ``kind`` is one of ``"run"`` (the run record changed), ``"task"`` (a task record changed;
    ``task`` holds it), ``"execution"`` (an execution started or ended; ``data`` says which).
    """

    kind: str
    run_id: str
    task: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[Notice], None]


class NoticeBus:
    """Thread-safe publish/subscribe of :class:`Notice` objects.

    Listeners are called synchronously in the emitting thread; a listener that raises is
    logged and never breaks the engine.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str | None, list[Listener]] = {}
        self.active = False

    def subscribe(self, listener: Listener, *, run_id: str | None = None) -> Callable[[], None]:
        """Call ``listener`` for notices of ``run_id`` (all runs if None). Returns unsubscribe."""
        with self._lock:
            self._listeners.setdefault(run_id, []).append(listener)
            self.active = True

        def unsubscribe() -> None:
            with self._lock:
                listeners = self._listeners.get(run_id, [])
                if listener in listeners:
                    listeners.remove(listener)
                if not listeners:
                    self._listeners.pop(run_id, None)
                self.active = bool(self._listeners)

        return unsubscribe

    def emit(self, notice: Notice) -> None:
        if not self.active:
            return
        with self._lock:
            listeners = [*self._listeners.get(notice.run_id, ()), *self._listeners.get(None, ())]
        for listener in listeners:
            try:
                listener(notice)
            except Exception:  # a broken view must never break a run
                log.exception("trigger_nb: a log view failed to handle %s", notice.kind)
