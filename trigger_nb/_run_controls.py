"""The library's side of :class:`~trigger_nb._run.RunControls`: what ``Run`` handles use.

Built by the composition root (``TriggerClient.run_controls``) from the parts it owns; imports
only the engine's notice types and the run handle's protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._engine import Runner
    from ._engine._bus import Listener, NoticeBus
    from ._loop import LoopHost
    from ._run import Run
    from ._store import Repository


class RunControlsImpl:
    """Records from the repository, waiting through the runner on the home loop, retry and
    cancel through the library API, notices from the bus. ``repo``/``runner`` are callables
    because the client opens them lazily (a handle made before the store is opened)."""

    def __init__(
        self,
        *,
        repo: Callable[[], Repository],
        runner: Callable[[], Runner],
        host: LoopHost,
        bus: NoticeBus,
        retry: Callable[[str], Awaitable[Run]],
        cancel: Callable[[str], Awaitable[Run]],
    ) -> None:
        self._repo = repo
        self._runner = runner
        self._host = host
        self._bus = bus
        self._retry = retry
        self._cancel = cancel

    def load_run(self, run_id: str) -> dict[str, Any] | None:
        return self._repo().load_run(run_id)

    def load_tasks(self, run_id: str) -> list[dict[str, Any]]:
        return self._repo().load_tasks(run_id)

    def load_journal(self, run_id: str, execution: int) -> list[Any]:
        return self._repo().load_journal(run_id, execution)

    def load_journals(self, run_id: str) -> dict[int, list[Any]]:
        return self._repo().load_journals(run_id)

    def load_blob(self, task: dict[str, Any]) -> bytes | None:
        return self._repo().load_blob(task)

    async def wait_finished(self, run_id: str, timeout: float | None) -> None:
        await self._host.run_async(self._runner().wait_finished(run_id, timeout))

    def wait_finished_sync(self, run_id: str, timeout: float | None) -> None:
        self._host.run_sync(self._runner().wait_finished(run_id, timeout))

    async def retry(self, run_id: str) -> Run:
        return await self._retry(run_id)

    async def cancel(self, run_id: str) -> Run:
        return await self._cancel(run_id)

    def subscribe(self, listener: Listener, *, run_id: str) -> Callable[[], None]:
        return self._bus.subscribe(listener, run_id=run_id)
