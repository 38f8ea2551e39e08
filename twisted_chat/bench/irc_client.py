# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""A bench client that speaks IRC (``--proto irc``) over TCP.

It is a :class:`~twisted_chat.bench.tcp_client.TcpClient` (the same
non-blocking connect, source address, big reads and output buffer) with
IRC's setup and marks: setup is parsed line by line, because it is short
and its errors must be explained; after it, reads are only counted
(:class:`~twisted_chat.bench.irc_wire.IrcStreamCounter`).

Setup, as the Modern IRC client protocol document's "Connection
registration" and "JOIN message" give it:

1. ``NICK`` and ``USER``; wait for ``001`` (``RPL_WELCOME``).
2. ``JOIN #room`` and ``PING``; wait for ``366`` (``RPL_ENDOFNAMES``) for
   the room, which a server sends after a successful join, and for the
   ``PONG``, which proves the server has handled both.

``ERROR``, an error numeric (400-599) before ``001`` (but ``422``, no
MOTD), or one naming the room after it, fails the client with the
server's words.  The worker's barriers then work as for the line
mode: each ``PING`` is answered by one ``PONG`` after everything the server
did before it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from twisted_chat.bench.client import Stage
from twisted_chat.bench.irc_wire import (
    MAX_LINE,
    PING,
    IrcStreamCounter,
    delivery_mark,
    irc_message,
    join_lines,
    nick_for,
    parse_line,
    privmsg_prefix,
    registration,
)
from twisted_chat.bench.tcp_client import TcpClient

if TYPE_CHECKING:
    from twisted_chat.bench.irc_wire import IrcLine
    from twisted_chat.bench.worker import Worker
    from twisted_chat.bench.workloads import ClientPlan

#: Unparsed setup bytes a client keeps: the server's welcome burst (MOTD,
#: ``005``, ``NAMES`` of a room full of bench clients) is consumed line by
#: line, so only one incomplete line is ever held; more is a broken server.
MAX_SETUP_PENDING = 16 * MAX_LINE


class IrcClient(TcpClient):
    """One IRC connection: registers, joins its room, then counts ``PRIVMSG``."""

    def __init__(self, worker: Worker, plan: ClientPlan, run_id: str) -> None:
        super().__init__(worker, plan)
        self.irc = IrcStreamCounter(delivery_mark(plan.room))
        self.nick = nick_for(run_id, plan.index)
        self.prefix = privmsg_prefix(plan.room)
        self.room_key = plan.room.lower()
        self.welcomed = False
        self.joined = False
        self.pending = bytearray()

    def first_bytes(self) -> bytes:
        """Register; the line mode's setup lines are not sent."""
        return registration(self.nick)

    # Sending.
    def ping(self) -> None:
        self.pings += 1
        self.queue(PING)

    def queue_lines(self, line: bytes, count: int) -> None:
        self.queue(irc_message(self.prefix, line) * count)

    # Receiving.
    def on_readable(self, now: int) -> None:
        if self.stage > Stage.SETUP:
            self._count(now)
            return
        n = self.receive()
        if not n:
            return
        buf = self.worker.buf
        self.remember_setup(buf[:n])
        self.pending += buf[:n]
        self._setup_lines()

    def _setup_lines(self) -> None:
        pending = self.pending
        while self.stage == Stage.SETUP:
            end = pending.find(b"\n")
            if end < 0:
                if len(pending) > MAX_SETUP_PENDING:
                    self.worker.fail(self, "setup line longer than 8 KiB")
                return
            line = bytes(pending[:end])
            del pending[: end + 1]
            parsed = parse_line(line)
            if parsed is not None:
                self._setup_line(parsed)
        if Stage.SETUP < self.stage < Stage.CLOSED and pending:
            # What follows the setup's last line is counted as a stream.
            rest = bytes(pending)
            self.pending = bytearray()
            self._account(rest, len(rest), 0)

    def _setup_line(self, line: IrcLine) -> None:
        command = line.command
        if command == "PING":
            token = line.params[-1] if line.params else ""
            self.queue(b"PONG :" + token.encode("utf-8") + b"\r\n")
        elif command == "001":
            self.welcomed = True
            if line.source:
                self.irc.server_named(line.source)
            self.pings = 1
            self.queue(join_lines(self.plan.room))
        elif command == "366" and len(line.params) >= 2:
            self.joined = self.joined or line.params[1].lower() == self.room_key
        elif command == "PONG" and self.welcomed:
            self.pongs += 1
            if not self.joined:
                self.worker.fail(self, f"not in {self.plan.room} after JOIN")
                return
            self.worker.on_pong(self)
        elif command == "ERROR" or self._refused(line):
            said = " ".join(line.params[1:] if command.isdigit() else line.params)
            self.worker.fail(self, f"server refused: {command} {said}".rstrip())

    def _refused(self, line: IrcLine) -> bool:
        """An error numeric that fails setup: any before ``001`` (NICK, USER),
        after it one about our room (JOIN).  Others, such as ``422`` (no
        MOTD, part of a normal welcome), are not about us."""
        command = line.command
        if not (command.isdigit() and 400 <= int(command) < 600):
            return False
        if not self.welcomed:
            return command != "422"
        return len(line.params) >= 2 and line.params[1].lower() == self.room_key

    def _count(self, now: int) -> None:
        n = self.receive(self.irc.last_words)
        if not n:
            return
        worker = self.worker
        buf = worker.buf
        worker.reads += 1
        worker.read_bytes += n
        self._account(buf, n, now)

    def _account(self, buf: bytes | bytearray, n: int, now: int) -> None:
        worker = self.worker
        samples = worker.samples if now and now >= self.next_sample else None
        messages, pongs, replies = self.irc.feed(
            buf, n, now, samples, self.pongs < self.pings
        )
        for reply in replies:
            self.queue(reply)
        self.counted(messages, pongs, samples is not None, now)

    def close(self, quit_line: bool) -> None:
        if quit_line and self.stage != Stage.CLOSED:
            with contextlib.suppress(OSError):
                self.sock.send(b"QUIT :benchmark finished\r\n")
        super().close(quit_line=False)
