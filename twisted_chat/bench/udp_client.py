# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""A bench client over UDP: the ``/hello`` challenge (asked again from a new
port when it does not come), then one line per datagram each way."""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from typing import TYPE_CHECKING

from twisted_chat.bench.client import Client, Stage
from twisted_chat.bench.wire import (
    PING,
    hello_reply,
    line_latency_ns,
    message_mark,
    parse_hello_challenge,
    setup_lines,
)

if TYPE_CHECKING:
    from twisted_chat.bench.worker import Worker
    from twisted_chat.bench.workloads import ClientPlan

#: A UDP client with no challenge after this long asks again from a new port.
HELLO_RETRY_NS = 2_000_000_000
#: The largest UDP payload the server accepts (PROTOCOL.md).
MAX_DATAGRAM = 1200
#: Datagrams read per readiness event before going back to the loop.
UDP_READS = 64
#: Keep one UDP latency sample in this many messages (each datagram is one line).
UDP_SAMPLE_EVERY = 8


class UdpClient(Client):
    """One UDP pseudo-connection: the ``/hello`` handshake, then a line per datagram."""

    def __init__(self, worker: Worker, plan: ClientPlan) -> None:
        super().__init__(worker, plan)
        self.out_datagrams: list[bytes] = []
        self.mark = message_mark(plan.room)[1:]  # a datagram is one line
        self.seen = 0
        self.hello_done = False
        self.hello_sent_ns = 0
        self.sock = self._open_socket()
        self.stage = Stage.SETUP
        self._ask_for_challenge()

    def _open_socket(self) -> socket.socket:
        address = self.worker.spec.udp_address
        if address is None:
            raise ValueError("no UDP address for a UDP client")
        sock = socket.socket(self.worker.spec.family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            if self.plan.source is not None:
                sock.bind((self.plan.source, 0))
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        self.worker.selector.register(sock, selectors.EVENT_READ, self)
        return sock

    def _ask_for_challenge(self) -> None:
        # Any first datagram from a new address is answered with the challenge.
        self.hello_sent_ns = time.monotonic_ns()
        self.queue(PING)

    def retry_hello(self, now: int) -> None:
        """
        Ask again from a new port when no challenge came.

        The server answers an address at most once every 10 seconds and
        challenges at most 100 new addresses a second in all; a port reused
        from an earlier run, or a lost datagram, would otherwise leave this
        client waiting for ever.
        """
        if self.hello_done or now - self.hello_sent_ns < HELLO_RETRY_NS:
            return
        self.worker.selector.unregister(self.sock)
        self.sock.close()
        self.out_datagrams.clear()
        self.sock = self._open_socket()
        self._ask_for_challenge()

    def on_readable(self, now: int) -> None:
        worker = self.worker
        buf = worker.buf
        for _ in range(UDP_READS):
            try:
                n = self.sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                worker.fail(self, f"UDP error: {e.strerror}")
                return
            if self.stage <= Stage.SETUP:
                self.remember_setup(buf[:n])
            if not self.hello_done:
                token = parse_hello_challenge(buf[:n])
                if token is not None:
                    self.hello_done = True
                    self.queue(hello_reply(token))
                    self.pings = 1
                    self.queue(setup_lines(self.plan.room))
                continue
            if buf.startswith(self.mark):
                self.received += 1
                worker.received += 1
                worker.last_rx_ns = now
                self.seen += 1
                if self.seen % UDP_SAMPLE_EVERY == 1:
                    latency = line_latency_ns(buf, 0, n - 1, now)
                    if latency is not None:
                        worker.samples.append(latency)
            elif buf.startswith(b"* pong\r\n"):
                self.pongs += 1
                worker.on_pong(self)

    def queue(self, data: bytes) -> None:
        self.out_datagrams.append(data)
        self.flush()

    def queue_lines(self, line: bytes, count: int) -> None:
        per_datagram = max(1, MAX_DATAGRAM // len(line))
        while count > 0:
            k = min(count, per_datagram)
            self.out_datagrams.append(line * k)
            count -= k
        self.flush()

    def buffered(self) -> bool:
        return bool(self.out_datagrams)

    def flush(self) -> None:
        if self.stage == Stage.CLOSED:
            return
        pending = self.out_datagrams
        sent = 0
        try:
            for datagram in pending:
                self.sock.send(datagram)
                sent += 1
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            del pending[:sent]
            self.worker.fail(self, f"UDP error: {e.strerror}")
            return
        del pending[:sent]
        self.worker.want_write(self, self.pending_output())
