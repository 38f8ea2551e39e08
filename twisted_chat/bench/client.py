# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""A worker process: many raw non-blocking sockets on one ``selectors`` (epoll) loop.

The parent (:mod:`twisted_chat.bench.runner`) starts one or more workers and
hands each a share of the clients.  A worker and its parent talk over a
``multiprocessing`` pipe, which the worker watches in the same loop as its
sockets.  The run goes through global barriers, because clients in one room
may live in different workers:

1. setup: connect (at most ``MAX_INFLIGHT`` at a time, so a server's listen
   backlog never drops SYNs), register, join the room, leave ``#lobby``,
   ``/ping``; the ``* pong`` proves the server has done all of it.  The
   worker says ``ready``.
2. ``go``: senders send, flat out or paced at ``rate``, then ``/ping``.
   Flat out, a sender writes batches (at most 64 KiB, at most half its
   ``window``), each ending with ``/ping``, and keeps at most ``window``
   messages unanswered.  When every sender of the worker has its last pong,
   the server has handled, and so queued the deliveries of, every message
   of this worker: it says ``sent``.
3. ``drain`` (once every worker is ``sent``): every client pings; a client's
   pong comes after every delivery queued for it, so when all pongs are in
   the counts are final, and the worker says ``done`` with its results.

``stop`` ends the run early (the parent's timeout, or Ctrl-C); the worker
then reports what it has.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import errno
import heapq
import os
import resource
import selectors
import signal
import socket
import time
from array import array
from typing import TYPE_CHECKING, Any

from attrs import frozen

from twisted_chat.bench.wire import (
    PING,
    StreamCounter,
    encode_message,
    hello_reply,
    line_latency_ns,
    message_mark,
    parse_hello_challenge,
    setup_lines,
)

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from twisted_chat.bench.workloads import ClientPlan

#: Bytes per ``recv``: big reads are what keeps the generator cheap.
CHUNK = 256 * 1024
#: Connections being set up at once.
MAX_INFLIGHT = 64
#: Bytes a sender hands to ``send`` at once when not paced.
BATCH_BYTES = 64 * 1024
#: How often a worker tells its parent how far it got.
PROGRESS_EVERY_NS = 200_000_000
#: A UDP client with no challenge after this long asks again from a new port.
HELLO_RETRY_NS = 2_000_000_000
#: The largest UDP payload the server accepts (PROTOCOL.md).
MAX_DATAGRAM = 1200
#: Datagrams read per readiness event before going back to the loop.
UDP_READS = 64
#: Keep one UDP latency sample in this many messages (each datagram is one line).
UDP_SAMPLE_EVERY = 8
#: Sample a TCP connection's latency at most this often: enough samples for
#: percentiles, without parsing lines on every read.
SAMPLE_INTERVAL_NS = 10_000_000
#: Reads smaller than this on average are "small": see ``read_delay_ns``.
SMALL_READ = 16 * 1024
#: Bytes of setup-time traffic kept per connection to explain a failure.
KEEP_SETUP_BYTES = 2048
#: Short-listed per-client discrepancies in a worker's result.
MAX_SHORT = 20


class Stage(enum.IntEnum):
    """Where a client is in the run."""

    CONNECTING = 0
    SETUP = 1
    READY = 2
    SENDING = 3
    SENT = 4
    DRAINING = 5
    DONE = 6
    CLOSED = 7


@frozen
class WorkerSpec:
    """A worker's share of the run.

    :param family: address family of ``address`` and ``udp_address``.
    :param address: the server's TCP socket address.
    :param udp_address: the server's UDP socket address, when some clients use UDP.
    :param rate: messages a second per sender; 0 for as fast as possible.
    :param window: with ``rate`` 0, the most messages a sender has sent that
        the server has not yet answered (each batch ends with ``/ping``, its
        pong is the answer); 0 for no limit.
    :param read_delay_ns: once messages flow, pause this long before the next
        poll whenever the last reads were small.  A server that writes each
        delivery separately (the asyncio baseline) would otherwise cost one
        ``recv`` and its Python overhead per line; the pause lets lines pile
        up in the kernel, at the price of up to this much added latency.
    """

    index: int
    family: int
    address: tuple[Any, ...]
    udp_address: tuple[Any, ...] | None
    clients: tuple[ClientPlan, ...]
    messages: int
    size: int
    rate: float
    window: int = 0
    read_delay_ns: int = 0

    @property
    def batch_size(self) -> int:
        """Messages per ``send`` of an unpaced sender: about 64 KiB, and at most
        half the window so that two batches are in flight."""
        batch = BATCH_BYTES // self.size
        if self.window > 0:
            batch = min(batch, self.window // 2)
        return max(1, batch)


@frozen
class Progress:
    """A worker's running totals, sent to the parent a few times a second."""

    ready: int
    sent: int
    received: int
    pongs: int


@frozen
class WorkerResult:
    """What a worker measured.

    :param short: ``(client index, expected, received)`` for some clients whose
        count is off, to help find the culprit.
    :param cpu_s: the worker's CPU time from ``go`` to its end.
    """

    connected: int
    sent: int
    received: int
    samples: array[int]
    last_rx_ns: int
    cpu_s: float
    errors: tuple[str, ...]
    short: tuple[tuple[int, int, int], ...]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit() -> None:
    """Raise the soft open-files limit to the hard one: a thousand clients need
    more than the usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Client:
    """State shared by TCP and UDP clients; the worker's loop drives them."""

    sock: socket.socket

    def __init__(self, worker: Worker, plan: ClientPlan) -> None:
        self.worker = worker
        self.plan = plan
        self.stage = Stage.CONNECTING
        self.pings = 0
        self.received = 0
        self.pongs = 0
        # Messages still to queue (senders), and queued so far.
        self.remaining = worker.spec.messages if plan.sender else 0
        self.queued = 0
        self.final_ping = False
        # Window: (ping number, messages queued up to it) for unanswered
        # batch pings, and how many messages the server has answered for.
        self.unacked: collections.deque[tuple[int, int]] = collections.deque()
        self.acked = 0
        self.writing = False
        self.setup_bytes = bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    # Events from the loop.
    def on_readable(self, now: int) -> None:
        raise NotImplementedError

    def on_writable(self) -> None:
        self.flush()
        if not self.buffered() and self.bursting():
            self.fill()

    def queue(self, data: bytes) -> None:
        raise NotImplementedError

    def buffered(self) -> bool:
        """Whether output waits for the socket."""
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def bursting(self) -> bool:
        """Whether this is an unpaced sender with messages left to queue now
        (that is, with room left in its window)."""
        spec = self.worker.spec
        return (
            self.stage == Stage.SENDING
            and self.remaining > 0
            and spec.rate <= 0
            and (
                spec.window <= 0
                or self.queued - self.acked + spec.batch_size <= spec.window
            )
        )

    def acknowledge(self) -> None:
        """Pongs arrived: the server has handled every batch before them."""
        unacked = self.unacked
        while unacked and unacked[0][0] <= self.pongs:
            self.acked = unacked.popleft()[1]

    def pending_output(self) -> bool:
        """Whether the loop should tell us when the socket is writable."""
        return self.buffered() or self.bursting()

    def fill(self) -> None:
        """Queue the next batch of an unpaced sender (which also writes it)."""
        spec = self.worker.spec
        self.queue_messages(spec.batch_size, time.monotonic_ns(), spec.window > 0)

    # Sending.
    def ping(self) -> None:
        self.pings += 1
        self.queue(PING)

    def queue_messages(self, count: int, now: int, ping_after: bool = False) -> None:
        """Queue ``count`` messages stamped ``now``, then a ping if ``ping_after``
        (a windowed batch) or if they were the last (the final ping)."""
        count = min(count, self.remaining)
        if count > 0:
            line = encode_message(self.plan.index, now, self.worker.spec.size)
            self.queue_lines(line, count)
            self.remaining -= count
            self.queued += count
            self.worker.queued += count
        if self.stage != Stage.SENDING or self.final_ping:
            return
        if ping_after or self.remaining == 0:
            self.final_ping = self.remaining == 0
            self.ping()
            self.unacked.append((self.pings, self.queued))

    def queue_lines(self, line: bytes, count: int) -> None:
        self.queue(line * count)

    def remember_setup(self, data: bytes | bytearray) -> None:
        if self.stage <= Stage.SETUP and len(self.setup_bytes) < KEEP_SETUP_BYTES:
            self.setup_bytes += data[: KEEP_SETUP_BYTES - len(self.setup_bytes)]

    def last_words(self) -> str:
        """The last lines the server sent during setup, to explain a failure."""
        lines = bytes(self.setup_bytes).decode("utf-8", "replace").splitlines()
        said = " / ".join(line for line in lines[-2:] if line.strip())
        return f" (server said: {said})" if said else ""

    def close(self, quit_line: bool) -> None:
        if self.stage == Stage.CLOSED:
            return
        if quit_line:
            with contextlib.suppress(OSError):
                self.sock.send(b"/quit benchmark finished\n")
        self.stage = Stage.CLOSED
        with contextlib.suppress(KeyError, ValueError):
            self.worker.selector.unregister(self.sock)
        self.sock.close()


class TcpClient(_Client):
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
                sock.bind((plan.source, 0))
            err = sock.connect_ex(worker.spec.address)
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
        self.pings = 1
        self.queue(setup_lines(self.plan.room))
        return True

    def on_readable(self, now: int) -> None:
        worker = self.worker
        buf = worker.buf
        try:
            n = self.sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            worker.fail(self, f"connection lost: {e.strerror}")
            return
        if n == 0:
            worker.fail(self, "connection closed by the server")
            return
        worker.reads += 1
        worker.read_bytes += n
        if self.stage <= Stage.SETUP:
            self.remember_setup(buf[:n])
        samples = worker.samples if now >= self.next_sample else None
        messages, pongs = self.counter.feed(
            buf, n, now, samples, self.pongs < self.pings
        )
        if messages:
            if samples is not None:
                self.next_sample = now + SAMPLE_INTERVAL_NS
            self.received += messages
            worker.received += messages
            worker.last_rx_ns = now
        if pongs:
            self.pongs += pongs
            worker.on_pong(self)

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


class UdpClient(_Client):
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


_CONTROL = object()


class Worker:
    """Runs one share of the clients; see the module docstring for the phases."""

    def __init__(self, spec: WorkerSpec, control: Connection) -> None:
        self.spec = spec
        self.control = control
        self.selector = selectors.DefaultSelector()
        self.buf = bytearray(CHUNK)
        self.samples: array[int] = array("q")
        self.clients: list[_Client] = []
        self.to_connect = list(reversed(spec.clients))
        self.inflight = 0
        self.ready = 0
        self.setup_pending = len(spec.clients)
        self.senders_pending = 0
        self.drain_pending = 0
        self.received = 0
        self.queued = 0
        self.pong_total = 0
        self.last_rx_ns = 0
        self.errors: list[str] = []
        # ``reported``: the parent has our result; ``finished``: leave the loop.
        self.reported = False
        self.finished = False
        self.rate_heap: list[tuple[int, int, _Client]] = []
        self.t0 = 0
        self.reads = 0
        self.read_bytes = 0
        self.cpu_at_go = 0.0
        self.next_progress = 0
        self.next_hello_check = 0
        self.selector.register(control.fileno(), selectors.EVENT_READ, _CONTROL)

    # Plumbing.
    def send_parent(self, *message: object) -> None:
        with contextlib.suppress(OSError):
            self.control.send(message)

    def want_write(self, client: _Client, wanted: bool) -> None:
        if wanted == client.writing or client.stage == Stage.CLOSED:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wanted else 0)
        self.selector.modify(client.sock, events, client)
        client.writing = wanted

    def fail(self, client: _Client, reason: str) -> None:
        """Record why ``client`` is gone and take it out of every barrier."""
        stage = client.stage
        if stage == Stage.CLOSED:
            return
        where = "setup" if stage <= Stage.SETUP else "run"
        self.errors.append(
            f"client {client.plan.index} ({client.plan.room}, {where}): "
            f"{reason}{client.last_words() if where == 'setup' else ''}"
        )
        client.close(quit_line=False)
        if stage <= Stage.SETUP:
            self.inflight -= 1
            self.setup_pending -= 1
            self.open_more()
        elif stage == Stage.SENDING:
            self.senders_pending -= 1
            self.after_send_step()
        elif stage == Stage.DRAINING:
            self.drain_pending -= 1
            self.after_drain_step()

    # Setup.
    def open_more(self) -> None:
        while self.to_connect and self.inflight < MAX_INFLIGHT:
            plan = self.to_connect.pop()
            self.inflight += 1
            try:
                client: _Client = (
                    UdpClient(self, plan) if plan.udp else TcpClient(self, plan)
                )
            except OSError as e:
                self.errors.append(
                    f"client {plan.index} (setup): cannot connect: {e.strerror or e}"
                )
                self.inflight -= 1
                self.setup_pending -= 1
                continue
            self.clients.append(client)
        self.after_setup_step()

    def after_setup_step(self) -> None:
        if self.setup_pending == 0 and not self.to_connect:
            self.setup_pending = -1  # report once
            self.cpu_at_go = _cpu_seconds()
            self.send_parent("ready", tuple(self.errors))

    def on_pong(self, client: _Client) -> None:
        stage = client.stage
        if stage == Stage.SENDING:
            client.acknowledge()
            if client.remaining == 0 and client.pongs >= client.pings:
                client.stage = Stage.SENT
                self.senders_pending -= 1
                self.after_send_step()
            elif not client.buffered() and client.bursting():
                # Room in the window again: the next batch can go.
                client.fill()
            return
        if client.pongs < client.pings:
            return
        if stage == Stage.SETUP:
            client.stage = Stage.READY
            client.setup_bytes = bytearray()
            self.ready += 1
            self.inflight -= 1
            self.setup_pending -= 1
            self.open_more()
        elif stage == Stage.DRAINING:
            client.stage = Stage.DONE
            self.drain_pending -= 1
            self.after_drain_step()

    # Sending.
    def go(self, t0: int) -> None:
        self.t0 = t0
        self.cpu_at_go = _cpu_seconds()
        senders = [c for c in self.clients if c.plan.sender and c.stage == Stage.READY]
        self.senders_pending = len(senders)
        rate = self.spec.rate
        for c in senders:
            c.stage = Stage.SENDING
            if c.remaining == 0:
                c.queue_messages(0, 0)
            elif rate > 0:
                period = 1e9 / rate
                # Spread the senders over the period so they do not all
                # write in the same instant.
                offset = period * (c.plan.index % 16) / 16
                heapq.heappush(self.rate_heap, (int(t0 + offset), c.plan.index, c))
            else:
                c.on_writable()
        self.after_send_step()

    def send_due(self, now: int) -> None:
        """Queue the paced messages that are due, stamped with the real send time."""
        heap = self.rate_heap
        period = 1e9 / self.spec.rate
        while heap and heap[0][0] <= now:
            _, key, c = heapq.heappop(heap)
            if c.stage != Stage.SENDING:
                continue
            offset = period * (c.plan.index % 16) / 16
            due_count = int((now - self.t0 - offset) // period) + 1 - c.queued
            c.queue_messages(max(1, due_count), now)
            if c.remaining:
                next_due = int(self.t0 + offset + c.queued * period)
                heapq.heappush(heap, (next_due, key, c))

    def after_send_step(self) -> None:
        if self.senders_pending == 0:
            self.senders_pending = -1
            self.send_parent("sent")

    # Draining.
    def drain(self) -> None:
        live = [c for c in self.clients if c.stage in (Stage.READY, Stage.SENT)]
        self.drain_pending = len(live)
        for c in live:
            c.stage = Stage.DRAINING
            c.ping()
        self.after_drain_step()

    def after_drain_step(self) -> None:
        if self.drain_pending == 0:
            self.drain_pending = -1
            self.finish()

    def finish(self) -> None:
        """Report once.  Sockets stay open until ``stop``, so that clients of
        other workers, still draining, see no quit notices from us."""
        if not self.reported:
            self.reported = True
            self.report_progress(time.monotonic_ns(), force=True)
            self.send_parent("done", self.result())

    def result(self) -> WorkerResult:
        short = tuple(
            (c.plan.index, c.plan.expected, c.received)
            for c in self.clients
            if c.received != c.plan.expected
        )
        cpu = _cpu_seconds() - self.cpu_at_go if self.cpu_at_go else 0.0
        return WorkerResult(
            connected=self.ready,
            sent=self.queued,
            received=self.received,
            samples=self.samples,
            last_rx_ns=self.last_rx_ns,
            cpu_s=cpu,
            errors=tuple(self.errors),
            short=short[:MAX_SHORT],
        )

    # The loop.
    def on_control(self) -> None:
        while self.control.poll():
            try:
                message = self.control.recv()
            except (EOFError, OSError):
                self.finished = True  # the parent is gone
                return
            kind = message[0]
            if kind == "go":
                self.go(message[1])
            elif kind == "drain":
                self.drain()
            elif kind == "stop":
                self.finish()
                self.finished = True
                return

    def report_progress(self, now: int, force: bool = False) -> None:
        if now < self.next_progress and not force:
            return
        self.next_progress = now + PROGRESS_EVERY_NS
        pongs = sum(c.pongs for c in self.clients)
        self.send_parent(
            "progress", Progress(self.ready, self.queued, self.received, pongs)
        )

    def run(self) -> None:
        """Connect, then serve the parent's commands until ``done`` or ``stop``."""
        self.open_more()
        select = self.selector.select
        while not self.finished:
            now = time.monotonic_ns()
            timeout = (self.next_progress - now) / 1e9
            if self.rate_heap:
                timeout = min(timeout, (self.rate_heap[0][0] - now) / 1e9)
            for key, events in select(max(0.0, timeout)):
                client = key.data
                if client is _CONTROL:
                    self.on_control()
                    continue
                if client.stage == Stage.CLOSED:
                    continue
                if events & selectors.EVENT_READ:
                    client.on_readable(time.monotonic_ns())
                if events & selectors.EVENT_WRITE and client.stage != Stage.CLOSED:
                    client.on_writable()
            now = time.monotonic_ns()
            if self.rate_heap:
                self.send_due(now)
            if now >= self.next_hello_check:
                self.retry_hellos(now)
            self.report_progress(now)
            self.coalesce()
        self.close()

    def retry_hellos(self, now: int) -> None:
        """Give UDP clients whose challenge did not come a new port."""
        self.next_hello_check = now + HELLO_RETRY_NS // 4
        for client in self.clients:
            if isinstance(client, UdpClient):
                client.retry_hello(now)

    def coalesce(self) -> None:
        """Pause after small reads while messages flow (see ``read_delay_ns``)."""
        delay = self.spec.read_delay_ns
        if (
            delay
            and self.t0
            and self.reads
            and self.read_bytes < (self.reads * SMALL_READ)
        ):
            time.sleep(delay / 1e9)
        self.reads = self.read_bytes = 0

    def close(self) -> None:
        for c in self.clients:
            c.close(quit_line=True)
        self.selector.close()


def worker_main(spec: WorkerSpec, control: Connection) -> None:
    """Entry point of a worker process."""
    # Ctrl-C reaches the whole process group; the parent handles it and asks
    # us for what we have with ``stop``.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_fd_limit()
    Worker(spec, control).run()
    control.close()
