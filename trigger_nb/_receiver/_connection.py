"""One client connection of the receiver: HTTP/1.1 parsed by httptools, each request handed to the
pure `handle_request`, the answers written in order. Runs on the receiver's loop (``_server.py``).

Why httptools on an asyncio protocol, not tornado's HTTP layer: the parsing is llhttp's (the
parser of Node.js, through httptools, as uvicorn uses it), and routing and answers were already
the pure layer's job. tornado added its stream and connection machinery around every request:
measured with the same clients, a receiver with a counting backend spent ~155 µs of CPU per
request on tornado's layer and ~40 µs on this one — the receiver's thread shares one interpreter
lock with the kernel's loop, which resumes the runs (SPEC §13: 1,000 callbacks/s).

What this module therefore does itself, each covered by tests/test_receiver.py:

* one request after another per connection, answered in order (pipelined ones too); keep-alive
  for HTTP/1.1 unless the client says ``Connection: close``; HTTP/1.0 gets its answer and a close;
* the body is counted as it arrives and only the first ``max_body_bytes + 1`` bytes are kept:
  an oversized body gets a proper ``413`` once the client has finished sending, so the client
  reads it instead of a reset and the connection stays usable; a body announced absurdly large
  (``Content-Length``) is answered at once and its connection closed;
* request line and headers over 64 KiB get ``431``; a request that is not HTTP gets ``400``; both
  close the connection, as nothing after them can be trusted to be a request;
* ``Expect: 100-continue`` is answered, so that a client such as curl sends its body at once;
* slow clients are cut by `Deadlines` (headers within 120 s, a body within 60 s).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections import deque
from http import HTTPStatus

import httptools

from ._deadlines import Deadlines
from ._handling import (
    INTERNAL_ERROR,
    ReceiverBackend,
    Response,
    decide,
    error_response,
    handle_request,
    header_value,
    render,
)

logger = logging.getLogger("trigger_nb.receiver")

# How far past the limit a body is still read (and discarded) so that the client gets its 413.
# A body that announces more than this is answered at once and its connection closed.
_DISCARD_BYTES = 64 * 1024 * 1024
# Request line + headers: over _MAX_HEADER_BYTES the answer is 431. A head still incomplete
# after _READ_HEADER_BYTES is answered 431 there, without reading (or holding) more of it.
_MAX_HEADER_BYTES = 64 * 1024
_READ_HEADER_BYTES = 1024 * 1024
# Bounded timeouts (STYLE habit 4): a stalled upload or an idle keep-alive connection must not
# hold a socket forever (enforced by `Deadlines`: see _deadlines.py).
_BODY_TIMEOUT_S = 60.0
_IDLE_CONNECTION_TIMEOUT_S = 120.0
# Pipelined requests read ahead of their answers before the connection stops reading: bounds
# what one connection holds (each keeps at most max_body_bytes + 1 bytes of body).
_READ_AHEAD = 16

_NOT_HTTP = (
    "the request is not valid HTTP/1.1 ({reason}); send a request such as "
    "POST /callbacks/{{task_id}}/{{secret}} with a JSON body"
)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Request:
    """One request as it is read: its head, the kept part of its body, and how it ends."""

    __slots__ = ("method", "url", "headers", "header_bytes", "body", "body_bytes", "keep_alive", "refusal")

    def __init__(self) -> None:
        self.method = ""
        self.url = bytearray()
        self.headers: dict[str, str] = {}
        self.header_bytes = 0
        self.body = bytearray()
        self.body_bytes = 0  # all of it, also what was not kept
        self.keep_alive = False
        #: The answer to a request refused before its body was read (431, 400, a 413 for an
        #: absurd announced size): sent in its turn, then the connection closes.
        self.refusal: Response | None = None


class Connection(asyncio.Protocol):
    """One client connection: parses its requests as the bytes arrive (httptools calls the
    ``on_*`` methods) and answers them in order, one at a time."""

    def __init__(
        self,
        backend: ReceiverBackend,
        max_body_bytes: int,
        deadlines: Deadlines,
        connections: set[Connection],
    ) -> None:
        self._backend = backend
        self._max_body_bytes = max_body_bytes
        self._deadlines = deadlines
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._reading: _Request | None = None  # the request being read
        self._head_bytes = 0  # bytes received since the request being read began
        self._queue: deque[_Request] = deque()  # read, waiting for their answers
        self._answering: asyncio.Task[None] | None = None  # referenced until it is done
        self._paused = False
        self._done_reading = False  # after a refusal, an upgrade or the client's EOF
        self._closed = False

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._connections.add(self)
        self._deadlines.watch(self, _IDLE_CONNECTION_TIMEOUT_S)  # until a request's head is in

    def connection_lost(self, exc: Exception | None) -> None:
        # A client gone while its callback resolves: the answering goes on (the callback is
        # still stored) and its answer is dropped.
        self._closed = True
        self._connections.discard(self)
        self._deadlines.forget(self)

    def eof_received(self) -> bool:
        # The client will send nothing more (it shut its side down after its request, as some
        # do): answer what was read, then close. True keeps the socket open for the answers.
        self._done_reading = True
        if self._answering is None and not self._queue:
            self.close()
        return True

    def data_received(self, data: bytes) -> None:
        if self._done_reading:
            return
        if self._reading is None or not self._reading.method:  # a head is being read
            self._head_bytes += len(data)
            if self._head_bytes > _READ_HEADER_BYTES:
                self._refuse(self._reading or _Request(), self._too_big_head(self._head_bytes))
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Answer what was read (a request with "Upgrade:" is answered as a plain one),
            # then close: what follows is another protocol, which is not spoken here.
            self._done_reading = True
            if self._answering is None and not self._queue:
                self.close()
        except httptools.HttpParserCallbackError:
            if not self._done_reading:  # not a refusal (see _refuse): a bug in a callback here
                logger.exception("receiver: unexpected error in the server")
                self._refuse(self._reading or _Request(), error_response(500, INTERNAL_ERROR))
        except httptools.HttpParserError as exc:
            reason = str(exc) or type(exc).__name__
            self._refuse(self._reading or _Request(), error_response(400, _NOT_HTTP.format(reason=reason)))

    # -- Deadlines' Watched ----------------------------------------------------------------
    def stalled(self) -> None:
        """A head or a body did not arrive in time: close the connection."""
        if self._reading is not None and self._reading.method:  # a client stopped sending a body
            logger.info(  # not the path: a callback's holds its secret
                "receiver: closed a connection: the body of a %s request did not arrive within %s s",
                self._reading.method,
                _BODY_TIMEOUT_S,
            )
        self.close()

    def gone(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the connection (what was written still goes out)."""
        self._done_reading = True
        if not self._closed and self._transport is not None:
            self._closed = True
            self._transport.close()  # connection_lost follows

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reading = _Request()
        if self._answering is not None or self._queue:  # pipelined: not watched meanwhile
            self._deadlines.watch(self, _IDLE_CONNECTION_TIMEOUT_S)

    def on_url(self, url: bytes) -> None:
        assert self._reading is not None
        self._reading.url += url  # may come in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._reading
        assert request is not None
        key, text = name.decode("latin-1"), value.decode("latin-1")
        request.headers[key] = f"{request.headers[key]}, {text}" if key in request.headers else text
        request.header_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        request = self._reading
        assert request is not None
        parser = self._parser
        request.method = parser.get_method().decode("latin-1")
        # HTTP/1.0 gets its answer and a close: no keep-alive header dance for it.
        request.keep_alive = parser.should_keep_alive() and parser.get_http_version() == "1.1"
        self._head_bytes = 0
        self._deadlines.watch(self, _BODY_TIMEOUT_S)  # until its body is in
        head_bytes = len(request.method) + len(request.url) + 12 + request.header_bytes
        if head_bytes > _MAX_HEADER_BYTES:
            self._refuse(request, self._too_big_head(head_bytes))
            raise _StopReading
        declared = header_value(request.headers, "Content-Length") or ""
        if declared.isdigit() and int(declared) > self._max_body_bytes + _DISCARD_BYTES:
            # Not worth reading even to throw away. The stand-in body only needs the length
            # that makes the pure layer answer 413 (after its 404/405/401 checks).
            self._refuse(request, self._decide_unread(request))
            raise _StopReading
        if (
            (header_value(request.headers, "Expect") or "").lower() == "100-continue"
            and self._answering is None
            and not self._queue
            and self._transport is not None
        ):
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        request = self._reading
        assert request is not None
        request.body_bytes += len(body)
        room = self._max_body_bytes + 1 - len(request.body)
        if room > 0:
            request.body += body[:room]
        elif request.body_bytes > self._max_body_bytes + _DISCARD_BYTES:  # chunked, endless
            self._refuse(request, self._decide_unread(request))
            raise _StopReading

    def on_message_complete(self) -> None:
        request, self._reading = self._reading, None
        assert request is not None
        self._deadlines.forget(self)
        self._queue.append(request)
        if len(self._queue) >= _READ_AHEAD and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._answer_soon()

    # -- answering -------------------------------------------------------------------------
    def _refuse(self, request: _Request, response: Response) -> None:
        """Answer ``request`` without its body (in its turn), then close; read nothing more."""
        self._done_reading = True
        self._reading = None
        request.refusal = response
        self._queue.append(request)
        self._answer_soon()

    def _answer_soon(self) -> None:
        if self._answering is None:
            self._answering = asyncio.get_running_loop().create_task(self._answer_queued())

    async def _answer_queued(self) -> None:
        try:
            while self._queue and not self._closed:
                request = self._queue[0]
                if request.refusal is not None:
                    self._write(request, request.refusal, close=True)
                    break
                response = await self._handle(request)
                self._queue.popleft()
                self._write(request, response, close=not request.keep_alive)
                if self._paused and len(self._queue) < _READ_AHEAD and self._transport is not None:
                    self._paused = False
                    self._transport.resume_reading()
        finally:
            self._answering = None
        if self._done_reading and not self._queue:
            self.close()  # after an upgrade or the client's end of sending: all read is answered
        elif not self._closed and self._reading is None and not self._queue:
            self._deadlines.watch(self, _IDLE_CONNECTION_TIMEOUT_S)  # until the next head

    async def _handle(self, request: _Request) -> Response:
        try:
            return await handle_request(
                request.method,
                request.url.decode("latin-1"),
                request.headers,
                bytes(request.body),
                self._backend,
                max_body_bytes=self._max_body_bytes,
            )
        except Exception:  # handle_request never raises: this is a bug
            logger.exception("receiver: unexpected error in the server")
            return error_response(500, INTERNAL_ERROR)

    def _decide_unread(self, request: _Request) -> Response:
        """The answer to a request refused before its body is read (these never reach the
        backend's callback resolution: a stand-in body over the limit gets 413)."""
        decided = decide(
            request.method,
            request.url.decode("latin-1"),
            request.headers,
            bytes(self._max_body_bytes + 1),
            self._backend,
            max_body_bytes=self._max_body_bytes,
        )
        if isinstance(decided, Response):
            return decided
        # Unreachable (the body is over the limit); answered like any internal error.
        return error_response(500, INTERNAL_ERROR)

    @staticmethod
    def _too_big_head(head_bytes: int) -> Response:
        return error_response(
            431,
            f"the request line and headers are {head_bytes} bytes, over the receiver's limit "
            f"of {_MAX_HEADER_BYTES}; send smaller headers",
        )

    def _write(self, request: _Request, response: Response, *, close: bool) -> None:
        if self._closed or self._transport is None:
            return  # the client is gone: nothing to write to
        status, headers, payload = render(response)
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append(f"Content-Length: {len(payload)}")
        lines.append(f"Date: {_http_date()}")
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._transport.write(head if request.method == "HEAD" else head + payload)
        if close:
            self.close()


class _StopReading(Exception):
    """Raised from an httptools callback to stop parsing a connection's bytes (a refusal)."""


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The ``Date`` header's value, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]
