# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""A bench client over TCP: a non-blocking connect, big reads counted without
splitting lines (:class:`~twisted_chat.bench.wire.StreamCounter`), and writes
from one output buffer."""

from __future__ import annotations

import errno
import os
import selectors
import socket
from typing import TYPE_CHECKING

from twisted_chat.bench.client import Client, Stage
from twisted_chat.bench.wire import StreamCounter, message_mark, setup_lines

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted_chat.bench.worker import Worker
    from twisted_chat.bench.workloads import ClientPlan

#: Linux's IP_BIND_ADDRESS_NO_PORT (``socket`` names it from Python 3.12):
#: a bound source address gets its port at ``connect``, unique for the whole
#: (source, destination) pair, instead of at ``bind``, unique for the source
#: alone; tens of thousands of clients then never run out of ports.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

#: Sample a TCP connection's latency at most this often: enough samples for
#: percentiles, without parsing lines on every read.
SAMPLE_INTERVAL_NS = 10_000_000


class TcpClient(Client):
    """One TCP connection: counts with :class:`StreamCounter`, writes from a buffer."""

    def __init__(self, worker: Worker, plan: ClientPlan) -> None:
        super().__init__(worker, plan)
        self.counter = StreamCounter(message_mark(plan.room))
        self.out = bytearray()
        self.next_sample = 0
        sock = socket.socket(worker.spec.family, socket.SOCK_STREAM)
        self.sock = sock
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if plan.source is not None:
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((plan.source, 0))
            err = sock.connect_ex(worker.spec.address_of(plan))
        except OSError:
            sock.close()
            raise
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(err, os.strerror(err))
        # Writable means connected (or failed: see connected()).
        worker.selector.register(sock, selectors.EVENT_WRITE, self)
        self.writing = True

    def connected(self) -> bool:
        """The connection attempt ended: start setup, or fail."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.worker.fail(self, f"cannot connect: {os.strerror(err)}")
            return False
        self.stage = Stage.SETUP
        self.worker.selector.modify(self.sock, selectors.EVENT_READ, self)
        self.writing = False
        self.queue(self.first_bytes())
        return True

    def first_bytes(self) -> bytes:
        """What the client sends once connected: the line mode's setup lines."""
        self.pings = 1
        return setup_lines(self.plan.room)

    def receive(self, last_words: Callable[[], str] | None = None) -> int:
        """Read into the worker's buffer: how many bytes, or 0 when there was
        nothing to read or the connection failed (reported to the worker,
        with ``last_words()`` when the server closed it)."""
        try:
            n = self.sock.recv_into(self.worker.buf)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as e:
            self.worker.fail(self, f"connection lost: {e.strerror}")
            return 0
        if n == 0:
            said = last_words() if last_words is not None else ""
            self.worker.fail(self, "connection closed by the server" + said)
        return n

    def on_readable(self, now: int) -> None:
        n = self.receive()
        if not n:
            return
        worker = self.worker
        buf = worker.buf
        worker.reads += 1
        worker.read_bytes += n
        if self.stage <= Stage.SETUP:
            self.remember_setup(buf[:n])
        samples = worker.samples if now >= self.next_sample else None
        messages, pongs = self.counter.feed(
            buf, n, now, samples, self.pongs < self.pings
        )
        self.counted(messages, pongs, samples is not None, now)

    def counted(self, messages: int, pongs: int, sampled: bool, now: int) -> None:
        """What one read held: deliveries (and whether they were sampled) and
        pongs, into the client's and the worker's totals."""
        worker = self.worker
        if messages:
            if sampled:
                self.next_sample = now + SAMPLE_INTERVAL_NS
            self.received += messages
            worker.received += messages
            worker.last_rx_ns = now
        if pongs:
            self.pongs += pongs
            worker.on_pong(self)
        elif messages and self.stage == Stage.DRAINING:
            worker.drained(self)

    def on_writable(self) -> None:
        if self.stage == Stage.CONNECTING and not self.connected():
            return
        super().on_writable()

    def queue(self, data: bytes) -> None:
        self.out += data
        self.flush()

    def buffered(self) -> bool:
        return bool(self.out)

    def flush(self) -> None:
        if self.stage in (Stage.CONNECTING, Stage.CLOSED):
            return
        out = self.out
        try:
            while out:
                sent = self.sock.send(out)
                del out[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            self.worker.fail(self, f"connection lost: {e.strerror}")
            return
        self.worker.want_write(self, self.pending_output())
