"""Shared helpers: real-socket chat clients and a subprocess daemon."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from _loop_thread import LoopThread
from _redis import RedisServer, failures, redis_server
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.protocols.basic import LineReceiver

#: Generous bounds for real sockets on a loaded 2-core machine: a test waits
#: for a condition up to this long, and normally passes in milliseconds.
TIMEOUT = 20.0
#: A listening TCP socket and a bound UDP socket (the ``pair`` fixture).
Pair = tuple[socket.socket, socket.socket]
TWISTD = str(Path(sys.executable).with_name("twistd"))


class FakeClock:
    """A clock for ``logs.LogLimiter``: a test sets or moves ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def summaries(events: list[LogEvent]) -> list[LogEvent]:
    """The rate limiter's "suppressed N similar events" lines among ``events``."""
    return [event for event in events if "suppressed" in event]


class AsyncClient(LineReceiver):
    """A Twisted line client that records lines and lets tests wait for one."""

    delimiter = b"\r\n"

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._seen = 0
        self._waiters: list[tuple[Callable[[str], bool], defer.Deferred[str]]] = []
        self.lost: defer.Deferred[None] = defer.Deferred()

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line.decode("utf-8"))
        self._check()

    def connectionLost(self, reason: Any = None) -> None:  # noqa: ARG002
        self.lost.callback(None)
        for _, waiter in self._waiters:
            waiter.errback(AssertionError(f"connection lost; got {self.lines!r}"))
        self._waiters.clear()

    def _check(self) -> None:
        while self._waiters and self._seen < len(self.lines):
            line = self.lines[self._seen]
            self._seen += 1
            match, waiter = self._waiters[0]
            if match(line):
                self._waiters.pop(0)
                waiter.callback(line)

    def expect(self, pattern: str) -> defer.Deferred[str]:
        """Fire with the next line (after those awaited before) matching ``pattern``."""
        regex = re.compile(pattern)
        waiter: defer.Deferred[str] = defer.Deferred()
        waiter.addTimeout(TIMEOUT, reactor)
        self._waiters.append((lambda line: regex.search(line) is not None, waiter))
        self._check()
        return waiter

    def say(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(text.encode("utf-8") + b"\n")


async def connect_client(port: int, nick: str | None = None) -> AsyncClient:
    """A connected client on 127.0.0.1, renamed to ``nick`` if given."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=TIMEOUT)
    client: AsyncClient = await connectProtocol(endpoint, AsyncClient())
    await client.expect(r"^\* Welcome")
    if nick is not None:
        client.say(f"/nick {nick}")
        await client.expect(rf"^\* You are now known as {nick}\.")
    return client


class LineClient:
    """A blocking line client for talking to a subprocess daemon."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.buffer = b""
        self.lines: list[str] = []

    def say(self, text: str) -> None:
        self.sock.sendall(text.encode("utf-8") + b"\n")

    def expect(self, pattern: str) -> str:
        """Read until a line matches ``pattern``; fail after :data:`TIMEOUT`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + TIMEOUT
        while True:
            while b"\r\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\r\n", 1)
                line = raw.decode("utf-8")
                self.lines.append(line)
                if regex.search(line):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r} in {self.lines!r}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(
                    f"closed before {pattern!r}; got {self.lines!r} {self.buffer!r}"
                )
            self.buffer += data

    def read_until_closed(self) -> list[str]:
        """Everything up to the server closing the connection."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                break
            self.buffer += data
        return self.buffer.decode("utf-8").split("\r\n")

    def close(self) -> None:
        self.sock.close()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Daemon:
    """``twistd -n chat`` in a subprocess, with its log captured."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.log_path = cwd / "twistd.log"
        self.log_file = self.log_path.open("wb")
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            [TWISTD, "--nodaemon", "--pidfile=", "chat", *args],
            cwd=cwd,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            pass_fds=pass_fds,
            preexec_fn=preexec,  # noqa: PLW1509 - only to place inherited fds
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def wait_for_log(self, pattern: str) -> re.Match[str]:
        """Wait until the daemon's log matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            found = regex.search(self.log)
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)  # polling a condition, bounded by the deadline
        raise AssertionError(f"log never matched {pattern!r}:\n{self.log}")

    def wait_for_port(self, port: int) -> None:
        """Wait until something accepts TCP connections on ``port``."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited early:\n{self.log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        raise AssertionError(f"port {port} never opened:\n{self.log}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the daemon and wait for it to exit; return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=TIMEOUT)
        finally:
            self.log_file.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        self.log_file.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    """An asyncio loop in a thread for a test's stand-in servers."""
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(autouse=True)
def _fresh_log_limits() -> None:
    """Each test starts with no rate-limited log events counted (logs.LIMITER)."""
    from twisted_chat.core.logs import LIMITER

    LIMITER.reset()


@pytest.fixture(autouse=True)
def _own_state_directory(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A test that names no ``--state-dir`` gets a fresh one, never ./chat-state.

    The daemon's default state directory is ``$STATE_DIRECTORY``, else
    ``./chat-state``; without this, accounts registered by one test run
    would still be there in the next.
    """
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A fresh redis-server on a free loopback port for one test (``_redis``)."""
    with redis_server() as server:
        yield server


@pytest.fixture
def no_tracebacks(log_events: list[LogEvent]) -> Iterator[None]:
    """Nothing the code under test logs may be a traceback (the cluster's tests)."""
    yield
    assert failures(log_events) == []


@pytest.fixture
def log_events() -> Iterator[list[LogEvent]]:
    """Every event logged through twisted.logger while the test runs."""
    events: list[LogEvent] = []
    observer = cast("ILogObserver", events.append)
    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start subprocess daemons in ``tmp_path``; any left running are killed."""
    started: list[Daemon] = []

    def start(*args: str, **kwargs: Any) -> Daemon:
        daemon = Daemon(list(args), tmp_path, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


@pytest.fixture
def pair() -> Iterator[Pair]:
    """A listening TCP socket and a bound UDP socket on 127.0.0.1."""
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tcp, udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        yield tcp, udp
