"""The receiver's HTTP server: asyncio in its own thread — the only socket code of trigger_nb.

Everything a request means is decided by the pure `handle_request`; each connection is read and
answered by `_connection.Connection` (HTTP/1.1 parsed by httptools); this module owns the
lifecycle of the sockets and the thread.

Why a thread of its own (SPEC §9): a notebook cell may sit in synchronous code — ``time.sleep``,
a blocking ``httpx.post`` to this very receiver — while a callback arrives. The receiver's event
loop must not be the kernel's, or it would wait for the cell.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from types import TracebackType

from .._exceptions import ConfigError
from ._connection import Connection
from ._deadlines import Deadlines
from ._handling import ReceiverBackend

__all__ = ["Receiver"]

logger = logging.getLogger("trigger_nb.receiver")

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_LISTEN_BACKLOG = 128


class _ServerThread(threading.Thread):
    """One serving session: its own asyncio loop, serving ``sockets`` until asked to stop."""

    def __init__(
        self, sockets: list[socket.socket], backend: ReceiverBackend, max_body_bytes: int
    ) -> None:
        super().__init__(name=f"trigger_nb-receiver-{sockets[0].getsockname()[1]}", daemon=True)
        self._sockets = sockets
        self._backend = backend
        self._max_body_bytes = max_body_bytes
        self.started = threading.Event()
        self.failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None

    def request_stop(self) -> None:
        """Ask the loop to close the server and return; callable from any thread."""
        loop, stop_requested = self._loop, self._stop_requested
        if loop is not None and stop_requested is not None:
            try:
                loop.call_soon_threadsafe(stop_requested.set)
            except RuntimeError:
                pass  # the loop has already ended

    def run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(loop))
        except BaseException as exc:  # reported by start(), or logged once serving
            if self.started.is_set():
                logger.error("receiver: the server stopped on an error", exc_info=exc)
            else:
                self.failure = exc
                self.started.set()
        finally:
            try:
                # Answers still awaiting a stuck backend: cancel them, let them unwind.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=_STOP_TIMEOUT_S))
            finally:
                loop.close()
                for sock in self._sockets:
                    sock.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        deadlines = Deadlines()
        connections: set[Connection] = set()

        def connection() -> Connection:
            return Connection(self._backend, self._max_body_bytes, deadlines, connections)

        servers = [await loop.create_server(connection, sock=sock) for sock in self._sockets]
        self._stop_requested = stop_requested = asyncio.Event()
        self._loop = loop
        self.started.set()
        try:
            await stop_requested.wait()
        finally:
            deadlines.close()
            for server in servers:
                server.close()  # stops listening
            for open_connection in list(connections):
                open_connection.close()
            ends = time.monotonic() + _STOP_TIMEOUT_S
            while connections and time.monotonic() < ends:  # until their sockets are closed
                await asyncio.sleep(0.005)


def _bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of ``host`` (``localhost``: IPv4 and IPv6), all on
    one port (``port=0``: the free port the first one got)."""
    infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, address in dict.fromkeys((info[0], info[4]) for info in infos):
            if sockets and port == 0:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sockets.append(socket.create_server(address, family=family, backlog=_LISTEN_BACKLOG))
            except OSError as exc:
                # An IPv6 address of "localhost" on a machine without IPv6: skip it, as
                # long as another address was bound.
                if exc.errno != errno.EADDRNOTAVAIL or family != socket.AF_INET6:
                    raise
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(errno.EADDRNOTAVAIL, f"no address of {host!r} can be bound")
    return sockets


class Receiver:
    """The HTTP receiver of SPEC §9: callbacks and inbound events, in a thread of its own.

    ``Receiver(backend)`` binds nothing; `start` binds ``host:port`` (``port=0``: a free port)
    and serves until `stop`. Also a context manager (``with Receiver(backend) as receiver:``).
    ``public_url`` replaces ``http://{host}:{port}`` in the URLs handed out, for a receiver
    reached through a proxy or tunnel. Bodies over ``max_body_bytes`` get ``413``.

    Thread-safety: `start` and `stop` may be called from any thread; requests are handled on the
    receiver's thread, which is where the backend is called (several callbacks may await the
    backend at once).
    """

    def __init__(
        self,
        backend: ReceiverBackend,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        max_body_bytes: int = 1024 * 1024,
    ) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(
                f"receiver port must be an int from 0 to 65535 (0: any free port), got {port!r}"
            )
        if not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be a positive int, got {max_body_bytes!r}")
        if public_url is not None and not public_url.startswith(("http://", "https://")):
            raise ConfigError(f"public_url must start with http:// or https://, got {public_url!r}")
        self._backend = backend
        self._host = host
        self._requested_port = port
        self._public_url = public_url.rstrip("/") if public_url is not None else None
        self._max_body_bytes = max_body_bytes
        self._lock = threading.Lock()
        self._thread: _ServerThread | None = None
        self._bound_port: int | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port while running (also when ``port=0`` was asked), else the one asked."""
        return self._bound_port if self._bound_port is not None else self._requested_port

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def base_url(self) -> str:
        """``public_url`` if given, else ``http://{host}:{port}``.

        Raises `ConfigError` when there is no port yet (``port=0`` and not started).
        """
        if self._public_url is not None:
            return self._public_url
        if self.port == 0:
            raise ConfigError(
                "the receiver has no port yet: call start() first, or give port= or public_url="
            )
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def callback_url(self, task_id: str, secret: str) -> str:
        """The URL a third party POSTs to, to complete task ``task_id``."""
        return f"{self.base_url}/callbacks/{task_id}/{secret}"

    def start(self) -> None:
        """Bind the socket and start serving in a daemon thread; a no-op when running.

        The socket is bound here, in the caller's thread, so that a port in use or a bad
        host raises `ConfigError` (with the address and a remedy) right here.
        """
        with self._lock:
            if self.running:
                return
            sockets = self._bind()
            thread = _ServerThread(sockets, self._backend, self._max_body_bytes)
            thread.start()
            if not thread.started.wait(_START_TIMEOUT_S) or thread.failure is not None:
                thread.request_stop()
                thread.join(_STOP_TIMEOUT_S)
                for sock in sockets:
                    sock.close()
                reason = repr(thread.failure) if thread.failure is not None else "timed out"
                raise ConfigError(
                    f"the receiver on {self._host}:{self._requested_port} did not start "
                    f"({reason}); see the log of this process"
                )
            self._thread = thread
            self._bound_port = sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close the listening socket and every connection, stop the loop, join the thread.

        Idempotent. The port is free again when this returns.
        """
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            thread.request_stop()
            thread.join(_STOP_TIMEOUT_S)
            if thread.is_alive():
                # The backend is stuck in a call; the daemon thread ends with the process.
                logger.warning(
                    "receiver: the server thread did not stop within %s s", _STOP_TIMEOUT_S
                )
            self._thread = None
            self._bound_port = None

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on port {self.port}" if self.running else "stopped"
        return f"<Receiver {self._host} {state}>"

    def _bind(self) -> list[socket.socket]:
        address = f"{self._host}:{self._requested_port}"
        try:
            return _bind_sockets(self._host, self._requested_port)
        except socket.gaierror as exc:
            raise ConfigError(
                f"the receiver cannot listen on {address}: unknown host ({exc.strerror}); "
                "use an IP address such as 127.0.0.1 (TRIGGER_NB_HOST)"
            ) from exc
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                remedy = (
                    "another program listens on this port; stop it, choose another port "
                    "(TRIGGER_NB_PORT), or use port 0 for any free port"
                )
            elif exc.errno == errno.EACCES:
                remedy = "ports below 1024 need privileges; choose a port from 1024 up"
            else:
                remedy = "check the host (TRIGGER_NB_HOST) and the port (TRIGGER_NB_PORT)"
            raise ConfigError(
                f"the receiver cannot listen on {address}: {exc.strerror or exc}; {remedy}"
            ) from exc
