"""The receiver's HTTP server: tornado in its own thread, the only socket code of trigger_nb.

Everything a request means is decided by the pure `handle_request`; this module reads requests,
hands them over, writes the answer, and owns the lifecycle of the socket and the thread.

Why a thread of its own (SPEC §9): a notebook cell may sit in synchronous code — ``time.sleep``,
a blocking ``httpx.post`` to this very receiver — while a callback arrives. The receiver's event
loop must not be the kernel's, or it would wait for the cell.

Why tornado's HTTP layer (``HTTPServer`` with a message delegate) and not its web framework:
routing and answers are the pure layer's job, so ``tornado.web`` only added work — measured,
15-20% of the receiver's CPU per request (SPEC §13: 1,000 callbacks/s).

Why the body is streamed (the delegate gets it chunk by chunk): an oversized body must get a
proper ``413``. tornado's own limit answers a too-long body by dropping the connection, and it
trusts ``Content-Length`` (absent for chunked uploads). Here the bytes are counted as they
arrive, only the first ``max_body_bytes + 1`` are kept, the rest is read and thrown away, and
the ``413`` goes out once the client has finished sending — so the client reads it instead of a
reset, and a keep-alive connection stays usable.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from types import TracebackType

import tornado.httpserver
import tornado.httputil
import tornado.netutil
from tornado.http1connection import HTTP1Connection
from tornado.platform.asyncio import AsyncIOLoop

from .._exceptions import ConfigError
from ._deadlines import Deadlines
from ._handling import (
    INTERNAL_ERROR,
    ReceiverBackend,
    Response,
    decide,
    error_response,
    handle_request,
    render,
)

__all__ = ["Receiver"]

logger = logging.getLogger("trigger_nb.receiver")

# How far past the limit a body is still read (and discarded) so that the client gets its 413.
# A body that announces more than this is answered at once and its connection closed.
_DISCARD_BYTES = 64 * 1024 * 1024
# Bounded timeouts (STYLE habit 4): a stalled upload or an idle keep-alive connection must not
# hold a socket forever (enforced by `Deadlines`, not by tornado: see _deadlines.py).
# Request line + headers: over _MAX_HEADER_BYTES the answer is 431. tornado reads up to
# _READ_HEADER_BYTES before its own limit drops the connection without an answer, so the
# client of a merely too-big header (a huge cookie, a runaway proxy) is told what is wrong.
_MAX_HEADER_BYTES = 64 * 1024
_READ_HEADER_BYTES = 1024 * 1024
_BODY_TIMEOUT_S = 60.0
_IDLE_CONNECTION_TIMEOUT_S = 120.0
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


class _Request(tornado.httputil.HTTPMessageDelegate):
    """One request on a connection: counts the body as it arrives and hands the whole request
    to `handle_request`; or answers at once a request refused before its body is read."""

    def __init__(
        self,
        connection: HTTP1Connection,
        backend: ReceiverBackend,
        max_body_bytes: int,
        deadlines: Deadlines,
    ) -> None:
        self._connection = connection
        self._backend = backend
        self._max_body_bytes = max_body_bytes
        self._deadlines = deadlines
        deadlines.watch(self, _IDLE_CONNECTION_TIMEOUT_S)  # until its headers are in
        self._method = ""
        self._path = ""
        self._headers = tornado.httputil.HTTPHeaders()
        self._body = bytearray()
        self._answered = False
        self._responding: asyncio.Task[None] | None = None  # referenced until it is done

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> None:
        assert isinstance(start_line, tornado.httputil.RequestStartLine)  # a server's delegate
        self._deadlines.watch(self, _BODY_TIMEOUT_S)  # until its body is in
        self._method, uri = start_line.method, start_line.path
        self._path = uri.partition("?")[0]
        self._headers = headers
        header_bytes = (
            len(self._method)
            + len(uri)
            + 12
            + sum(len(name) + len(value) + 4 for name, value in headers.get_all())
        )
        if header_bytes > _MAX_HEADER_BYTES:
            self._send(
                error_response(
                    431,
                    f"the request line and headers are {header_bytes} bytes, over the receiver's "
                    f"limit of {_MAX_HEADER_BYTES}; send smaller headers",
                ),
                close_connection=True,
            )
            return
        self._connection.set_max_body_size(self._max_body_bytes + _DISCARD_BYTES)
        declared = headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_body_bytes + _DISCARD_BYTES:
            # Not worth reading even to throw away. The stand-in body only needs the length
            # that makes the pure layer answer 413 (after its 404/405/401 checks). Raising
            # tornado's limit to the announced size keeps it from writing its own bare 400
            # after ours; it then closes the connection, as the body stays unread.
            self._connection.set_max_body_size(int(declared))
            self._send(self._decide(bytes(self._max_body_bytes + 1)), close_connection=True)

    def data_received(self, chunk: bytes) -> None:
        room = self._max_body_bytes + 1 - len(self._body)
        if room > 0:
            self._body += chunk[:room]

    def finish(self) -> None:
        # The whole body is in (tornado calls this only when no answer was written yet).
        self._deadlines.forget(self)
        self._responding = asyncio.get_running_loop().create_task(self._respond())

    async def _respond(self) -> None:
        try:
            response = await handle_request(
                self._method,
                self._path,
                self._headers,
                bytes(self._body),
                self._backend,
                max_body_bytes=self._max_body_bytes,
            )
        except Exception:  # handle_request never raises: this is a bug
            logger.exception("receiver: unexpected error in the server")
            response = error_response(500, INTERNAL_ERROR)
        self._send(response)

    def _decide(self, body: bytes) -> Response:
        """The answer to a request refused before its body is read (these never reach the
        backend's callback resolution: an oversized body gets 413)."""
        decided = decide(
            self._method,
            self._path,
            self._headers,
            body,
            self._backend,
            max_body_bytes=self._max_body_bytes,
        )
        if isinstance(decided, Response):
            return decided
        # Unreachable (see above); answered like any internal error rather than assumed away.
        return error_response(500, INTERNAL_ERROR)

    def _send(self, response: Response, *, close_connection: bool = False) -> None:
        if self._answered:
            return
        self._answered = True
        status, headers, payload = render(response)
        response_headers = tornado.httputil.HTTPHeaders()
        for name, value in headers:
            response_headers.add(name, value)
        response_headers["Content-Length"] = str(len(payload))
        response_headers["Date"] = tornado.httputil.format_timestamp(time.time())
        if close_connection:
            # tornado closes a connection whose request body it has not read, without saying
            # so: say it, or a keep-alive client reuses the connection and gets a reset.
            response_headers["Connection"] = "close"
        start_line = tornado.httputil.ResponseStartLine(
            "HTTP/1.1", status, tornado.httputil.responses.get(status, "Unknown")
        )
        # A client gone meanwhile: tornado drops the writes (no error, nothing logged).
        self._connection.write_headers(
            start_line, response_headers, b"" if self._method == "HEAD" else payload
        )
        self._connection.finish()

    def on_connection_close(self) -> None:
        self._deadlines.forget(self)
        self._answered = True  # nothing more to write: the client is gone

    def gone(self) -> bool:
        stream = self._connection.stream
        return stream is None or stream.closed()

    def stalled(self) -> None:
        """Its headers or its body did not arrive in time: close the connection."""
        if self._method:  # the headers were in: a client stopped sending its body
            logger.info(  # not the path: a callback's holds its secret
                "receiver: closed a connection: the body of a %s request did not arrive within %s s",
                self._method,
                _BODY_TIMEOUT_S,
            )
        self._answered = True
        self._connection.close()  # tornado then tells on_connection_close


class _Requests(tornado.httputil.HTTPServerConnectionDelegate):
    """A `_Request` for every request on every connection."""

    def __init__(self, backend: ReceiverBackend, max_body_bytes: int, deadlines: Deadlines) -> None:
        self._backend = backend
        self._max_body_bytes = max_body_bytes
        self._deadlines = deadlines

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        # tornado calls this when it starts reading a request: on a new connection, and on a
        # kept-alive one once the previous answer is written.
        assert isinstance(request_conn, HTTP1Connection)  # HTTPServer speaks HTTP/1.x
        return _Request(request_conn, self._backend, self._max_body_bytes, self._deadlines)


class _ServerThread(threading.Thread):
    """One serving session: its own asyncio/tornado loop, serving ``sockets`` until asked."""

    def __init__(
        self, sockets: list[socket.socket], backend: ReceiverBackend, max_body_bytes: int
    ) -> None:
        super().__init__(name=f"trigger_nb-receiver-{sockets[0].getsockname()[1]}", daemon=True)
        self._sockets = sockets
        self._backend = backend
        self._max_body_bytes = max_body_bytes
        self.started = threading.Event()
        self.failure: BaseException | None = None
        self._io_loop: AsyncIOLoop | None = None
        self._stop_requested: asyncio.Event | None = None

    def request_stop(self) -> None:
        """Ask the loop to close the server and return; callable from any thread."""
        io_loop, stop_requested = self._io_loop, self._stop_requested
        if io_loop is not None and stop_requested is not None:
            io_loop.add_callback(stop_requested.set)  # add_callback is thread-safe

    def run(self) -> None:
        io_loop = AsyncIOLoop()
        try:
            io_loop.run_sync(lambda: self._serve(io_loop))
        except BaseException as exc:  # reported by start(), or logged once serving
            if self.started.is_set():
                logger.error("receiver: the server stopped on an error", exc_info=exc)
            else:
                self.failure = exc
                self.started.set()
        finally:
            io_loop.close(all_fds=True)
            for sock in self._sockets:
                sock.close()

    async def _serve(self, io_loop: AsyncIOLoop) -> None:
        deadlines = Deadlines()
        server = tornado.httpserver.HTTPServer(
            _Requests(self._backend, self._max_body_bytes, deadlines),
            max_header_size=_READ_HEADER_BYTES,
        )
        # No body timeout is given above, and none for the headers here (HTTPServer makes one
        # of an hour when given none): `deadlines` enforces both, at a fraction of the cost.
        server.conn_params.header_timeout = None
        server.add_sockets(self._sockets)
        self._stop_requested = stop_requested = asyncio.Event()
        self._io_loop = io_loop
        self.started.set()
        try:
            await stop_requested.wait()
        finally:
            deadlines.close()
            server.stop()  # closes the listening sockets
            await asyncio.wait_for(server.close_all_connections(), _STOP_TIMEOUT_S)


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
            return tornado.netutil.bind_sockets(self._requested_port, address=self._host)
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
