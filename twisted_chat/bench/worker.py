# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""A worker process: many raw non-blocking sockets on one ``selectors`` (epoll) loop.

The parent (:mod:`twisted_chat.bench.runner`) starts one or more workers and
hands each a share of the clients (:class:`~twisted_chat.bench.spec.WorkerSpec`).
A worker owns the loop, the global barriers and the tallies; the clients it
drives are :mod:`twisted_chat.bench.tcp_client`,
:mod:`twisted_chat.bench.irc_client` (``--proto irc``),
:mod:`twisted_chat.bench.web_client` (``--proto web``) and
:mod:`twisted_chat.bench.udp_client`.  A worker and its parent talk over a
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

import contextlib
import heapq
import resource
import selectors
import signal
import time
from array import array
from typing import TYPE_CHECKING

from twisted_chat.bench.client import Stage
from twisted_chat.bench.irc_client import IrcClient
from twisted_chat.bench.spec import Progress, WorkerResult
from twisted_chat.bench.tcp_client import TcpClient
from twisted_chat.bench.udp_client import HELLO_RETRY_NS, UdpClient
from twisted_chat.bench.web_client import WebClient

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from twisted_chat.bench.client import Client
    from twisted_chat.bench.spec import WorkerSpec

#: Bytes per ``recv``: big reads are what keeps the generator cheap.
CHUNK = 256 * 1024
#: Connections being set up at once.
MAX_INFLIGHT = 64
#: How often a worker tells its parent how far it got.
PROGRESS_EVERY_NS = 200_000_000
#: Reads smaller than this on average are "small": see ``read_delay_ns``.
SMALL_READ = 16 * 1024
#: Short-listed per-client discrepancies in a worker's result.
MAX_SHORT = 20


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


_CONTROL = object()


class Worker:
    """Runs one share of the clients; see the module docstring for the phases."""

    def __init__(self, spec: WorkerSpec, control: Connection) -> None:
        self.spec = spec
        self.control = control
        self.selector = selectors.DefaultSelector()
        self.buf = bytearray(CHUNK)
        self.samples: array[int] = array("q")
        self.clients: list[Client] = []
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
        self.rate_heap: list[tuple[int, int, Client]] = []
        self.t0 = 0
        self.reads = 0
        self.read_bytes = 0
        self.cpu_at_go = 0.0
        self.next_progress = 0
        self.next_hello_check = 0
        self.setup_start_ns = self.setup_end_ns = 0
        self.selector.register(control.fileno(), selectors.EVENT_READ, _CONTROL)

    # Plumbing.
    def send_parent(self, *message: object) -> None:
        with contextlib.suppress(OSError):
            self.control.send(message)

    def want_write(self, client: Client, wanted: bool) -> None:
        if wanted == client.writing or client.stage == Stage.CLOSED:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wanted else 0)
        self.selector.modify(client.sock, events, client)
        client.writing = wanted

    def fail(self, client: Client, reason: str) -> None:
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
        if not self.setup_start_ns:
            self.setup_start_ns = time.monotonic_ns()
        while self.to_connect and self.inflight < MAX_INFLIGHT:
            plan = self.to_connect.pop()
            self.inflight += 1
            try:
                client: Client
                if plan.udp:
                    client = UdpClient(self, plan)
                elif self.spec.proto == "irc":
                    client = IrcClient(self, plan, self.spec.run_id)
                elif self.spec.proto == "web":
                    client = WebClient(self, plan)
                else:
                    client = TcpClient(self, plan)
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

    def on_pong(self, client: Client) -> None:
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
            self.setup_end_ns = time.monotonic_ns()
            self.ready += 1
            self.inflight -= 1
            self.setup_pending -= 1
            self.open_more()
        elif stage == Stage.DRAINING:
            self.drained(client)

    def drained(self, client: Client) -> None:
        """Done draining once the last pong is in; a reader on a port of its
        own (another node of a cluster) also waits for all its deliveries,
        which cross Redis and may come after the pong of its own node."""
        if client.pongs < client.pings or (
            client.plan.port and client.received < client.plan.expected
        ):
            return
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
            setup_start_ns=self.setup_start_ns,
            setup_end_ns=self.setup_end_ns,
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
