"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def poll(condition: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Return ``condition()`` once it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class Step:
    """One scripted response. ``headers`` may be a function called when the request arrives;
    ``body`` may be a function of the request headers (to echo them)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] | Callable[[], dict[str, str]] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    sent_headers: dict[str, str]


class ScriptedServer:
    """A threaded HTTP server with a scripted sequence of responses per path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Step]] = {}
        self.requests: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                step = server._next(path)
                headers = step.headers() if callable(step.headers) else dict(step.headers)
                with server._lock:
                    server.requests.append(
                        Seen(self.command, path, dict(self.headers), body, time.time(), headers)
                    )
                if step.delay:
                    time.sleep(step.delay)
                payload = step.body(dict(self.headers)) if callable(step.body) else step.body
                if payload is None:
                    data = b""
                elif isinstance(payload, str):
                    data = payload.encode()
                    headers.setdefault("content-type", "text/plain")
                else:
                    data = json.dumps(payload).encode()
                    headers.setdefault("content-type", "application/json")
                self.send_response(step.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out closed its socket: expected here

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _next(self, path: str) -> Step:
        with self._lock:
            steps = self._scripts.get(path)
            if not steps:
                return Step(404, {"error": "no script"})
            return steps.pop(0) if len(steps) > 1 else steps[0]

    def script(self, path: str, *steps: Step) -> str:
        """Answer requests to ``path`` with ``steps`` in order; return the URL."""
        with self._lock:
            self._scripts[path] = list(steps)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def seen(self, path: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def hits(self, path: str) -> int:
        return len(self.seen(path))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def client_at(location: str, **kwargs: Any) -> Any:
    """A client on the store at ``location``: a ``postgresql://`` URL or a directory."""
    from trigger_nb import TriggerClient
    from trigger_nb._config import is_store_url

    if is_store_url(location):
        return TriggerClient(store=location, **kwargs)
    return TriggerClient(dir=location, **kwargs)


#: For child-process scripts: ``open_client(location)``, the same rule as :func:`client_at`.
CLIENT_AT_SOURCE = (
    "def open_client(location, **kwargs):\n"
    "    from trigger_nb import TriggerClient\n"
    "    key = 'store' if location.startswith(('postgresql://', 'postgres://')) else 'dir'\n"
    "    return TriggerClient(**{key: location}, **kwargs)\n"
)
