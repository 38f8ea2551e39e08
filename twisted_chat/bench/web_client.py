# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""A bench client that speaks WebSocket (``--proto web``) to ``twistd chat --web``.

It is a :class:`~twisted_chat.bench.tcp_client.TcpClient` (the same
non-blocking connect, source address, big reads and output buffer) with a
WebSocket handshake, masked frames out, and the web dialect's marks in:
setup is read frame by frame, because it is short and its errors must be
explained; after it, reads are only counted
(:class:`~twisted_chat.bench.web_wire.WebStreamCounter`).

Setup:

1. ``GET /ws`` with ``Upgrade: websocket`` and an ``Origin`` the server
   accepts by default (its own); the response must be ``101`` with the
   right ``Sec-WebSocket-Accept`` (RFC 6455 4.1-4.2).
2. The server's ``hello`` frame names us (and its ``max_line``, which the
   message size must fit); we send ``/join #room``, ``/part #lobby`` and
   ``/ping`` as the line mode does, a frame each.
3. The ``pong`` notice proves the server has handled them; by then the
   ``join`` frame for us in the room must have come, or the client fails
   with the last ``error`` frame the server sent.

A raw socket rather than a WebSocket library: a library would parse every
frame in Python, which is the per-delivery work the bench must not do.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from twisted_chat.bench.client import Stage
from twisted_chat.bench.tcp_client import TcpClient
from twisted_chat.bench.web_wire import (
    MAX_RESPONSE_HEAD,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PING,
    FrameReader,
    WebStreamCounter,
    check_response,
    client_frame,
    close_frame,
    delivery_mark,
    handshake_request,
    host_header,
    new_key,
    text_frame,
)

if TYPE_CHECKING:
    from twisted_chat.bench.worker import Worker
    from twisted_chat.bench.workloads import ClientPlan


class WebClient(TcpClient):
    """One WebSocket: upgrades, joins its room, then counts ``message`` frames."""

    def __init__(self, worker: Worker, plan: ClientPlan) -> None:
        super().__init__(worker, plan)
        self.web = WebStreamCounter(delivery_mark(plan.room))
        self.key = new_key()
        self.response = bytearray()
        self.upgraded = False
        self.frames = FrameReader()
        self.nick = ""
        self.joined = False
        # The last few error frames of setup (bounded), to explain a failure.
        self.errors: list[str] = []
        self.room_key = plan.room.lower()

    def first_bytes(self) -> bytes:
        """The upgrade request; the line mode's setup lines wait for ``hello``."""
        host = host_header(self.worker.spec.address_of(self.plan))
        return handshake_request(host, self.key)

    # Sending.
    def ping(self) -> None:
        self.pings += 1
        self.queue(PING)

    def queue_lines(self, line: bytes, count: int) -> None:
        self.queue(text_frame(line) * count)

    # Receiving.
    def on_readable(self, now: int) -> None:
        n = self.receive(self._said)
        if not n:
            return
        worker = self.worker
        buf = worker.buf
        if self.stage > Stage.SETUP:
            worker.reads += 1
            worker.read_bytes += n
            self._account(buf, n, now)
            return
        self.remember_setup(buf[:n])
        data = bytes(buf[:n])
        if not self.upgraded:
            data = self._response(data)
            if not self.upgraded:
                return
        self.frames.feed(data)
        self._setup_frames()

    def _response(self, data: bytes) -> bytes:
        """Read the upgrade response; return what follows its blank line."""
        self.response += data
        end = self.response.find(b"\r\n\r\n")
        if end < 0:
            if len(self.response) > MAX_RESPONSE_HEAD:
                self.worker.fail(self, "upgrade response longer than 8 KiB")
            return b""
        head = bytes(self.response[:end])
        rest = bytes(self.response[end + 4 :])
        self.response = bytearray()
        problem = check_response(head, self.key)
        if problem is not None:
            self.worker.fail(self, problem)
            return b""
        self.upgraded = True
        return rest

    def _setup_frames(self) -> None:
        while self.stage == Stage.SETUP:
            try:
                frame = self.frames.next_frame()
            except ValueError as e:
                self.worker.fail(self, str(e))
                return
            if frame is None:
                return
            self._setup_frame(*frame)
        if Stage.SETUP < self.stage < Stage.CLOSED:
            # What follows the setup's last frame is counted as a stream.
            rest = self.frames.rest()
            if rest:
                self._account(rest, len(rest), 0)

    def _setup_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.queue(client_frame(payload, OP_PONG))
        elif opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            reason = payload[2:].decode("utf-8", "replace")
            self.worker.fail(
                self, f"server closed the WebSocket: {code} {reason}".rstrip()
            )
        elif opcode == OP_TEXT:
            try:
                event = json.loads(payload)
            except ValueError:
                return  # a frame longer than we keep (members of a big room)
            if isinstance(event, dict):
                self._setup_event(event)

    def _setup_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "hello":
            self._hello(event)
        elif kind == "you":
            self.nick = str(event.get("nick", self.nick))
        elif kind == "join":
            self.joined = self.joined or (
                str(event.get("room", "")).lower() == self.room_key
                and event.get("nick") == self.nick
            )
        elif kind == "error":
            self.errors = [
                *self.errors[-2:],
                f"{event.get('code')}: {event.get('text')}",
            ]
        elif kind == "notice" and event.get("text") == "pong" and self.pings:
            self.pongs += 1
            if not self.joined:
                self.worker.fail(self, f"not in {self.plan.room} after /join")
                return
            self.worker.on_pong(self)

    def _hello(self, event: dict[str, Any]) -> None:
        self.nick = str(event.get("nick", ""))
        max_line = event.get("max_line")
        size = self.worker.spec.size - 1  # the body without its LF
        if isinstance(max_line, int) and size > max_line:
            self.worker.fail(
                self, f"--size {size + 1} is over the server's max_line {max_line}"
            )
            return
        room = self.plan.room.encode("utf-8")
        self.pings = 1
        self.queue(text_frame(b"/join " + room) + text_frame(b"/part #lobby") + PING)

    def _account(self, buf: bytes | bytearray, n: int, now: int) -> None:
        worker = self.worker
        samples = worker.samples if now and now >= self.next_sample else None
        messages, pongs = self.web.feed(buf, n, now, samples, self.pongs < self.pings)
        self.counted(messages, pongs, samples is not None, now)

    def _said(self) -> str:
        return self.web.last_words() if self.stage > Stage.SETUP else ""

    def last_words(self) -> str:
        """The last ``error`` frame of setup explains a failure better than
        raw frame bytes would."""
        if self.errors:
            return f" (server said: {' / '.join(self.errors)})"
        if not self.upgraded:
            return super().last_words()
        return ""

    def close(self, quit_line: bool) -> None:
        if quit_line and self.stage != Stage.CLOSED and self.upgraded:
            with contextlib.suppress(OSError):
                self.sock.send(text_frame(b"/quit benchmark finished") + close_frame())
        super().close(quit_line=False)
