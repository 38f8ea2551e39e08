"""A real redis-server on a free loopback port, for the cluster tests (issue 19).

Why a real server and not a fake: the cluster's correctness lives in Redis's
semantics (SET NX, Lua scripts running atomically, PX expiry, pub/sub after a
reconnect), which a fake would only imitate. Persistence is off so nothing is
written to disk, and the test stops the server: ``stop()``/``start()`` on the
same port let outage tests cut Redis away and bring it back.

Use the context manager ``redis_server()``, or conftest's ``redis`` fixture
(and ``no_tracebacks``, which fails a test that logged a traceback).
``until`` and ``settle`` let Twisted tests (pytest_twisted.ensureDeferred)
wait for a condition on the running reactor without sleeping blindly.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import LogEvent

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
#: How long to wait for the server to accept (or refuse) connections.
STARTUP_TIMEOUT = 15.0
#: Default bound for `until`: a link's back-off reaches 8 s.
DEADLINE = 25.0


def _free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class RedisServer:
    """One redis-server subprocess; ``stop()`` and ``start()`` keep the port."""

    def __init__(
        self,
        port: int | None = None,
        password: str | None = None,
        tls_pem: Path | None = None,
    ) -> None:
        """``tls_pem``: key and certificate in one PEM; then TLS only."""
        self.port = port or _free_port()
        self.password = password
        self.tls_pem = tls_pem
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls_pem:
            return f"rediss://{auth}localhost:{self.port}/0"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again) on the same port; wait until it answers."""
        if self.proc is not None and self.proc.poll() is None:
            return
        args = [
            REDIS_SERVER,
            *self._port_args(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            "/tmp",
            "--loglevel",
            "warning",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited early on port {self.port}")
            if _accepts(self.port) and self.cli("PING") == "PONG":
                return
            time.sleep(0.02)  # polling a condition, bounded by the deadline
        raise AssertionError(f"redis-server never answered on port {self.port}")

    def _port_args(self) -> list[str]:
        if self.tls_pem is None:
            return ["--port", str(self.port)]
        pem = str(self.tls_pem)
        return [
            *("--port", "0", "--tls-port", str(self.port)),
            *("--tls-cert-file", pem, "--tls-key-file", pem),
            *("--tls-ca-cert-file", pem, "--tls-auth-clients", "no"),
        ]

    def stop(self) -> None:
        """Stop the server (SIGKILL: an outage, not a shutdown); wait until gone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=STARTUP_TIMEOUT)
        self.proc = None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while _accepts(self.port):
            if time.monotonic() > deadline:
                raise AssertionError(f"port {self.port} still accepts after stop")
            time.sleep(0.02)  # polling a condition, bounded by the deadline

    def cli(self, *args: str) -> str:
        """Run ``redis-cli`` against this server; its stdout, stripped."""
        command = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port)]
        if self.tls_pem:
            command += ["--tls", "--cacert", str(self.tls_pem), "--sni", "localhost"]
        if self.password:
            command += ["--no-auth-warning", "-a", self.password]
        done = subprocess.run(
            [*command, *args],
            capture_output=True,
            timeout=STARTUP_TIMEOUT,
            check=False,
        )
        return done.stdout.decode("utf-8", "replace").strip()


@contextlib.contextmanager
def redis_server(
    password: str | None = None, tls_pem: Path | None = None
) -> Iterator[RedisServer]:
    """A started RedisServer, stopped on exit whatever happened."""
    server = RedisServer(password=password, tls_pem=tls_pem)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def until(condition: Callable[[], object], timeout: float = DEADLINE) -> None:
    """Let the reactor run until ``condition()`` is true; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held within {timeout:g} s")
        await deferLater(reactor, 0.02)


async def settle(seconds: float) -> None:
    """Let the reactor run ``seconds``: to show something does NOT happen."""
    await deferLater(reactor, seconds)


def failures(events: list[LogEvent]) -> list[str]:
    """The tracebacks among ``events`` (conftest's ``log_events``), as text."""
    return [
        event["log_failure"].getTraceback()
        for event in events
        if "log_failure" in event
    ]


__all__ = [
    "DEADLINE",
    "REDIS_CLI",
    "REDIS_SERVER",
    "RedisServer",
    "failures",
    "redis_server",
    "settle",
    "until",
]
