# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""The churn workload's connections: a process that opens, registers and closes
connections at a steady rate while the run's workers hold everyone else.

Issue 18 asks what 1,000 connects and disconnects a second cost an
18,000-client server's other users.  The churn process
(:func:`churn_main`) owns only those short-lived connections: from ``go``
on, for ``duration`` seconds, it opens connection number ``k`` at
``start + k / rate`` (each from its own loopback address of
``127.3.0.0/16``, so that no address runs out of ports and a per-address
cap sees each one apart), sends ``/ping``, and closes as soon as the
``* pong`` arrives: the pong proves the server has registered the client
and put it in its default room.  It keeps at most ``max_inflight``
connections open; a connection that is due while that many are still
waiting is not opened, and the achieved rate says so.  Its result
(:class:`ChurnStats`) is how many connections registered, how fast, and
how long each took from ``connect`` to its pong.

The runner (:mod:`twisted_chat.bench.runner`) starts the process with the
workers (:class:`ChurnProcess`) and tells it ``go`` with them; the
bystanders' latency is measured by the workers as in any paced workload.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from attrs import frozen

from twisted_chat.bench.report import summarize_latency
from twisted_chat.bench.tcp_client import IP_BIND_ADDRESS_NO_PORT
from twisted_chat.bench.wire import PING, PONG_MARK
from twisted_chat.bench.worker import _cpu_seconds, raise_fd_limit

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import SpawnContext
    from multiprocessing.process import BaseProcess

    from twisted_chat.bench.report import Latency

#: Loopback addresses the churn connections come from, 127.3.x.y.
CHURN_SOURCES = 16 * 254
#: Seconds, after the churn window, that connections still waiting get.
GRACE_S = 5.0
#: Failures listed one by one in the result.
MAX_ERRORS = 5


def churn_source(k: int) -> str:
    """The source address of churn connection ``k``."""
    n = k % CHURN_SOURCES
    return f"127.3.{n // 254}.{1 + n % 254}"


@frozen
class ChurnSpec:
    """What the churn process does: ``rate`` connections a second for ``duration``."""

    family: int
    address: tuple[Any, ...]
    rate: float
    duration: float
    max_inflight: int = 1000


@frozen
class ChurnStats:
    """What the churn process measured.

    :param opened: connections opened; ``skipped``: due but not opened because
        ``max_inflight`` were still waiting.
    :param registered: connections that got their pong (then closed).
    :param failed: refused, reset or closed by the server before the pong.
    :param window_s: from the first ``connect`` to the last close.
    :param setup: ``connect`` to pong, in ms.
    """

    rate: float
    duration: float
    opened: int
    skipped: int
    registered: int
    failed: int
    window_s: float
    cpu_s: float
    setup: Latency | None
    errors: tuple[str, ...]

    @property
    def achieved_per_s(self) -> float:
        """Connections registered (and closed) a second over the window."""
        return self.registered / self.window_s if self.window_s > 0 else 0.0


class _Conn:
    __slots__ = ("connected", "sock", "started", "tail")

    def __init__(self, sock: socket.socket, started: int) -> None:
        self.sock = sock
        self.started = started
        self.connected = False
        self.tail = b""


class Churner:
    """The churn process's loop (see the module docstring)."""

    def __init__(self, spec: ChurnSpec) -> None:
        self.spec = spec
        self.selector = selectors.DefaultSelector()
        self.open: dict[int, _Conn] = {}
        self.setup_ns: list[int] = []
        self.opened = self.skipped = self.registered = self.failed = 0
        self.errors: list[str] = []
        self.first = self.last = 0

    def fail(self, conn: _Conn, reason: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_ERRORS:
            said = conn.tail.decode("utf-8", "replace").strip().splitlines()[-1:]
            self.errors.append(f"churn connection: {reason}" + "".join(
                f" (server said: {s})" for s in said
            ))  # fmt: skip
        self.close(conn)

    def close(self, conn: _Conn) -> None:
        self.selector.unregister(conn.sock)
        del self.open[conn.sock.fileno()]
        conn.sock.close()
        self.last = time.monotonic_ns()

    def connect(self, k: int, now: int) -> None:
        if len(self.open) >= self.spec.max_inflight:
            self.skipped += 1
            return
        sock = socket.socket(self.spec.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((churn_source(k), 0))
            err = sock.connect_ex(self.spec.address)
        except OSError as e:
            sock.close()
            self.failed += 1
            if len(self.errors) < MAX_ERRORS:
                self.errors.append(f"churn connection: cannot connect: {e}")
            return
        conn = _Conn(sock, now)
        self.open[sock.fileno()] = conn
        self.opened += 1
        self.first = self.first or now
        self.selector.register(sock, selectors.EVENT_WRITE, conn)
        if err not in (0, errno.EINPROGRESS):
            self.fail(conn, f"cannot connect: {errno.errorcode.get(err, err)}")

    def on_event(self, conn: _Conn, now: int) -> None:
        sock = conn.sock
        if not conn.connected:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.fail(conn, f"cannot connect: {errno.errorcode.get(err, err)}")
                return
            conn.connected = True
            self.selector.modify(sock, selectors.EVENT_READ, conn)
            try:
                sock.send(PING)
            except OSError as e:
                self.fail(conn, f"connection lost: {e.strerror}")
            return
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.fail(conn, f"connection lost: {e.strerror}")
            return
        if not data:
            self.fail(conn, "connection closed by the server")
            return
        seen = conn.tail + data
        if PONG_MARK in seen:
            self.registered += 1
            self.setup_ns.append(now - conn.started)
            self.close(conn)
        else:
            conn.tail = seen[-512:]

    def run(self, start: int) -> None:
        spec = self.spec
        period = 1e9 / spec.rate
        end = start + int(spec.duration * 1e9)
        k = 0
        while True:
            now = time.monotonic_ns()
            while now < end and start + k * period <= now:
                self.connect(k, now)
                k += 1
            if now >= end and (not self.open or now >= end + GRACE_S * 1e9):
                break
            due = start + k * period if now < end else end + GRACE_S * 1e9
            for key, _ in self.selector.select(max(0.0, (due - now) / 1e9)):
                self.on_event(key.data, time.monotonic_ns())
        for conn in list(self.open.values()):
            self.fail(conn, "no pong within the grace period")

    def stats(self, cpu_s: float) -> ChurnStats:
        window = (self.last - self.first) / 1e9 if self.last > self.first else 0.0
        return ChurnStats(
            rate=self.spec.rate,
            duration=self.spec.duration,
            opened=self.opened,
            skipped=self.skipped,
            registered=self.registered,
            failed=self.failed,
            window_s=round(window, 3),
            cpu_s=round(cpu_s, 3),
            setup=summarize_latency(self.setup_ns),
            errors=tuple(self.errors),
        )


def churn_main(spec: ChurnSpec, control: Connection) -> None:
    """Entry point of the churn process: wait for ``go``, churn, send the stats."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_fd_limit()
    try:
        message = control.recv()
    except (EOFError, OSError):
        return
    if message[0] != "go":
        return
    churner = Churner(spec)
    cpu = _cpu_seconds()
    # Started late (the process came up after the go), it starts now rather
    # than opening the connections it missed all at once.
    churner.run(max(int(message[1]), time.monotonic_ns()))
    with contextlib.suppress(OSError):
        control.send(("churn", churner.stats(_cpu_seconds() - cpu)))
    control.close()


class ChurnProcess:
    """The runner's handle on the churn process."""

    def __init__(self, ctx: SpawnContext, spec: ChurnSpec) -> None:
        self.spec = spec
        self.conn, child = ctx.Pipe()
        self.process: BaseProcess = ctx.Process(
            target=churn_main, args=(spec, child), name="bench-churn", daemon=True
        )
        self.process.start()
        child.close()

    def go(self, t0: int) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("go", t0))

    def result(self) -> ChurnStats | str:
        """The stats, or why there are none (waits out the churn window)."""
        timeout = self.spec.duration + GRACE_S + 10.0
        try:
            if self.conn.poll(timeout):
                _, stats = self.conn.recv()
                return stats  # type: ignore[no-any-return]
        except (EOFError, OSError):
            return f"the churn process died (exit code {self.process.exitcode})"
        return "the churn process sent no result"

    def stop(self) -> None:
        self.conn.close()
        self.process.join(timeout=GRACE_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
