"""A throw-away PostgreSQL server in a temporary directory, for tests and benchmarks.

Used by ``trigger_nb.testing.temporary_postgres``. It needs the server binaries (Debian:
``apt-get install postgresql``); they are looked up in ``PATH`` and then under
``/usr/lib/postgresql/*/bin``. ``initdb`` refuses to run as root, so as root the server is
initialised and run as the ``postgres`` user (``runuser -u postgres --``). The server listens on
127.0.0.1 only, on a free port, with password authentication for TCP (so that a wrong password
is refused, as on a real server) and durability switched off (``fsync=off``: it is thrown away).
It is stopped by the PID in its ``postmaster.pid``, never by name.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed (the message says what to install)."""


def find_binaries() -> str:
    """The directory holding ``initdb`` and ``postgres``; :class:`PostgresUnavailable` if none."""
    found = shutil.which("initdb")
    if found and os.path.exists(os.path.join(os.path.dirname(os.path.realpath(found)), "postgres")):
        return os.path.dirname(os.path.realpath(found))
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return os.path.dirname(candidates[0])
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, postgres) not found. Install them: "
        "`apt-get install -y postgresql` (Debian/Ubuntu), or put their bin directory in PATH."
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TemporaryPostgres:
    """A running throw-away server. ``url`` connects as the superuser (with its password)."""

    directory: str
    port: int
    password: str
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return self.url_for(SUPERUSER, self.password, "postgres")

    def url_for(self, user: str, password: str, database: str) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's PID (from ``postmaster.pid``), or ``None`` once it is gone."""
        try:
            with open(os.path.join(self.directory, "data", "postmaster.pid")) as fh:
                return int(fh.readline().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT to the postmaster), then remove the directory."""
        pid = self.pid
        if pid is not None and self.process.poll() is None:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start(*, timeout: float = 60.0) -> TemporaryPostgres:
    """Initialise and start a server; :class:`PostgresUnavailable` without the binaries,
    ``RuntimeError`` (with the server's log) if it does not come up."""
    bindir = find_binaries()
    as_root = os.geteuid() == 0
    directory = tempfile.mkdtemp(prefix="trigger_nb_pg_")
    os.chmod(directory, 0o700)
    prefix: list[str] = []
    if as_root:
        shutil.chown(directory, SUPERUSER, SUPERUSER)
        prefix = ["runuser", "-u", SUPERUSER, "--"]
    password = "pw-" + os.urandom(8).hex()
    pwfile = os.path.join(directory, "pwfile")
    with open(pwfile, "w") as fh:
        fh.write(password + "\n")
    if as_root:
        shutil.chown(pwfile, SUPERUSER, SUPERUSER)
    data = os.path.join(directory, "data")
    init = subprocess.run(
        [*prefix, os.path.join(bindir, "initdb"), "-D", data, "-U", SUPERUSER, f"--pwfile={pwfile}",
         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    port = _free_port()
    log_path = os.path.join(directory, "server.log")
    log = open(log_path, "wb")  # noqa: SIM115 - the server writes it until stopped
    process = subprocess.Popen(
        [*prefix, os.path.join(bindir, "postgres"), "-D", data, "-p", str(port), "-k", directory,
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off", "-c", "max_connections=200"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C in the terminal is not the server's to handle
    )
    log.close()
    server = TemporaryPostgres(directory, port, password, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        ready = subprocess.run(
            [os.path.join(bindir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
            check=False,
        )
        if ready.returncode == 0 and server.pid is not None:
            return server
        time.sleep(0.05)
    with open(log_path, errors="replace") as fh:
        text = fh.read()
    server.stop()
    raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{port}:\n{text}")
