# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""What one simulated chat client does, whatever it speaks: the run's stages,
its window of unanswered messages, its pings and its failure notes.

:class:`Client` is the part TCP and UDP share.  The byte handling of each
lives beside it (:mod:`twisted_chat.bench.tcp_client`, a stream read in big
chunks; :mod:`twisted_chat.bench.udp_client`, the ``/hello`` handshake and a
line per datagram), and the loop that drives them all is
:mod:`twisted_chat.bench.worker`.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import time
from typing import TYPE_CHECKING

from twisted_chat.bench.wire import PING, encode_message

if TYPE_CHECKING:
    import socket

    from twisted_chat.bench.worker import Worker
    from twisted_chat.bench.workloads import ClientPlan

#: Bytes of setup-time traffic kept per connection to explain a failure.
KEEP_SETUP_BYTES = 2048


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


class Client:
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
