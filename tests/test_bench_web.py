# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Tests for the load generator's web mode (``--proto web``).

The counting is checked on frame streams split at every point; the
handshake and frames against RFC 6455's own example; the runs go against a
tiny stand-in WebSocket server (asyncio, in a thread of this process, on
127.0.0.1 port 0) that speaks just enough of the web dialect: the upgrade
with its ``Origin`` check, ``hello``, ``/join`` with ``join`` and
``members``, ``/ping`` answered by the ``pong`` notice, and room messages
fanned out as ``message`` frames without echo, plus deliberately broken
variants of it.  One slow test runs against a real ``twistd chat --web``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _loop_thread import LoopThread
from attrs import define, field

from twisted_chat.bench import RunConfig, get_workload, run
from twisted_chat.bench.__main__ import parse_args
from twisted_chat.bench.web_wire import (
    KEEP,
    MAX_SETUP_FRAME,
    PING,
    PONG_MARK,
    FrameReader,
    WebStreamCounter,
    accept_for,
    check_response,
    client_frame,
    delivery_mark,
    handshake_request,
    host_header,
    mask,
    text_frame,
    web_latency_ns,
)
from twisted_chat.bench.wire import encode_message

if TYPE_CHECKING:
    from twisted_chat.bench.report import Report

ROOM = "#bench-abc123-0"
MARK = delivery_mark(ROOM)


def server_frame(obj: dict[str, Any] | bytes, opcode: int = 0x1) -> bytes:
    """A server frame as WebFormat makes one (unmasked, final)."""
    if isinstance(obj, bytes):
        payload = obj
    else:
        payload = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def message(room: str, nick: str, text: str) -> bytes:
    return server_frame(
        {
            "type": "message",
            "room": room,
            "nick": nick,
            "text": text,
            "time": "2026-12-01T10:00:00Z",
        }
    )


def _body(sent_ns: int, size: int = 60) -> str:
    return encode_message(3, sent_ns, size)[:-1].decode()


# Counting.


def _stream() -> bytes:
    """Deliveries in our room mixed with everything that must not count."""
    own = delivery_mark(ROOM).decode()
    return b"".join(
        [
            message(ROOM, "b1", _body(1)),
            server_frame({"type": "join", "room": ROOM, "nick": "b2", "time": "t"}),
            message("#bench-abc123-01", "b2", _body(2)),  # a longer room's name
            # Text that quotes the mark is escaped by JSON: it never matches.
            message(ROOM, "b3", own + '{"type":"notice","text":"pong"}'),
            server_frame(
                {
                    "type": "history",
                    "room": ROOM,
                    "messages": [{"type": "message", "nick": "b4", "text": "x"}],
                }
            ),
            server_frame({"type": "notice", "text": "pong"}),
            server_frame({"type": "action", "room": ROOM, "nick": "b5", "text": "y"}),
            message(ROOM, "b6", "x" * 300 + " 6 4"),  # a 2-byte length header
            server_frame({"type": "notice", "room": ROOM, "text": "pong"}),
            server_frame({"type": "notice", "text": "pong"}),
            message(ROOM, "b7", _body(3)),
        ]
    )


def _feed_all(chunks: list[bytes]) -> WebStreamCounter:
    counter = WebStreamCounter(MARK)
    for chunk in chunks:
        buf = bytearray(chunk) + b"\0" * 7  # only the first n bytes count
        counter.feed(buf, len(chunk), 10**9, None)
    return counter


def test_counter_counts_own_room_deliveries_and_pongs_only() -> None:
    counter = _feed_all([_stream()])
    assert (counter.messages, counter.pongs) == (4, 2)


def test_counter_counts_the_same_however_the_stream_is_split() -> None:
    """Every split into two and many three-way splits give the same totals."""
    data = _stream()
    for i in range(len(data) + 1):
        counter = _feed_all([data[:i], data[i:]])
        assert (counter.messages, counter.pongs) == (4, 2), i
    for i in range(0, len(data), 5):
        for j in range(i, len(data), 13):
            counter = _feed_all([data[:i], data[i:j], data[j:]])
            assert (counter.messages, counter.pongs) == (4, 2), (i, j)


def test_counter_counts_byte_by_byte_and_keeps_a_bounded_tail() -> None:
    data = _stream() * 3
    counter = WebStreamCounter(MARK)
    for k in range(len(data)):
        counter.feed(data[k : k + 1], 1, 0, None)
        assert len(counter.tail) <= KEEP
    assert (counter.messages, counter.pongs) == (12, 6)


def test_counter_skips_pongs_when_none_is_due() -> None:
    counter = WebStreamCounter(MARK)
    data = server_frame({"type": "notice", "text": "pong"})
    assert counter.feed(data, len(data), 0, None, pongs_due=False) == (0, 0)


def test_marks_cannot_overlap_themselves() -> None:
    """``count`` skips overlapping matches: no mark may start as it ends."""
    for mark in (MARK, PONG_MARK, delivery_mark("#bench-zz-12")):
        assert mark.count(b"{") == 1
        assert mark.startswith(b"{")


def test_counter_samples_the_first_and_last_delivery_of_a_chunk() -> None:
    counter = WebStreamCounter(MARK)
    data = (
        message(ROOM, "b1", _body(1000))
        + message(ROOM, "b1", _body(2000))
        + message(ROOM, "b1", _body(4000))
    )
    samples: array[int] = array("q")
    counter.feed(data, len(data), 5000, samples)
    assert sorted(samples) == [1000, 4000]


def test_latency_ignores_a_cut_or_foreign_text() -> None:
    data = message(ROOM, "b1", _body(1000))
    at = data.find(MARK)
    assert web_latency_ns(data, at, len(data), 1500) == 500
    assert web_latency_ns(data, at, data.rfind(b'","time"'), 1500) is None
    other = message(ROOM, "b1", "hello there")
    assert web_latency_ns(other, other.find(MARK), len(other), 1500) is None


def test_the_counter_refuses_a_mark_longer_than_its_tail() -> None:
    with pytest.raises(ValueError, match="too long"):
        WebStreamCounter(delivery_mark("#" + "r" * KEEP))


# Frames and the handshake.


def _unmask(frame: bytes) -> tuple[int, bytes]:
    assert frame[0] & 0x80  # final
    assert frame[1] & 0x80  # masked
    n = frame[1] & 0x7F
    at = 2
    if n == 126:
        n, at = int.from_bytes(frame[2:4], "big"), 4
    key = frame[at : at + 4]
    payload = frame[at + 4 :]
    assert len(payload) == n
    return frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_accept_is_rfc_6455s_example() -> None:
    """RFC 6455 1.3: the key ``dGhlIHNhbXBsZSBub25jZQ==`` is answered with
    ``s3pPLMBiTxaQ9kYGzzhZRbK+xOo=``."""
    assert accept_for(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_client_frames_are_masked_and_unmask_to_the_line() -> None:
    body = encode_message(7, 123, 100)
    assert _unmask(text_frame(body)) == (0x1, body[:-1])
    assert _unmask(PING) == (0x1, b"/ping")
    short = client_frame(b"x" * 125)
    assert short[1] == 0x80 | 125
    long = client_frame(b"y" * 300)
    assert long[1] == 0x80 | 126
    assert _unmask(long) == (0x1, b"y" * 300)
    assert mask(mask(b"abcdefg", b"1234"), b"1234") == b"abcdefg"
    assert mask(b"", b"1234") == b""


def test_handshake_request_has_a_matching_origin() -> None:
    request = handshake_request(host_header(("127.0.0.1", 8080)), b"KEY")
    assert request.startswith(b"GET /ws HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:8080\r\n" in request
    assert b"\r\nOrigin: http://127.0.0.1:8080\r\n" in request
    assert b"\r\nSec-WebSocket-Key: KEY\r\n" in request
    assert b"Sec-WebSocket-Extensions" not in request
    assert request.endswith(b"\r\n\r\n")
    assert host_header(("::1", 80, 0, 0)) == "[::1]:80"


def test_check_response_accepts_only_a_proper_upgrade() -> None:
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    good = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    )
    assert check_response(good, key) is None
    assert check_response(b"HTTP/1.1 403 Forbidden\r\nX: y", key) == (
        "server refused the upgrade: HTTP/1.1 403 Forbidden"
    )
    wrong = check_response(good.replace(b"s3pP", b"AAAA"), key)
    assert wrong is not None
    assert "Sec-WebSocket-Accept" in wrong
    deflate = check_response(good + b"\r\nSec-WebSocket-Extensions: x", key)
    assert deflate is not None
    assert "extension" in deflate
    assert check_response(b"", key) is not None


def test_frame_reader_splits_frames_and_bounds_a_long_one() -> None:
    big = server_frame(b'{"type":"members"' + b"m" * 100_000 + b"}")
    small = server_frame({"type": "notice", "text": "pong"})
    data = small + big + small + b"\x81\x05ab"
    reader = FrameReader()
    got = []
    for k in range(0, len(data), 1000):
        reader.feed(data[k : k + 1000])
        assert len(reader.pending) <= 1000 + MAX_SETUP_FRAME + 10
        while (frame := reader.next_frame()) is not None:
            got.append(frame)
    assert [len(p) for _, p in got] == [len(PONG_MARK), MAX_SETUP_FRAME, 31]
    assert got[1][1].startswith(b'{"type":"members"')
    assert reader.rest() == b"\x81\x05ab"


def test_frame_reader_refuses_a_masked_server_frame() -> None:
    reader = FrameReader()
    reader.feed(b"\x81\x85abcd12345")
    with pytest.raises(ValueError, match="masked"):
        reader.next_frame()


# Options.


def test_proto_web_keeps_the_workloads_and_window() -> None:
    cfg, _ = parse_args(["--proto", "web", "--workload", "rooms", "--port", "8080"])
    assert (cfg.proto, cfg.window, cfg.workload.name, cfg.port) == (
        "web",
        200,
        "rooms",
        8080,
    )


def test_proto_web_refuses_udp() -> None:
    with pytest.raises(SystemExit) as e:
        parse_args(["--proto", "web", "--udp-port", "9001"])
    assert e.value.code == 2


def test_help_documents_the_web_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    for text in ('{"type":"message","room":"#room","nick":"', "bench_web.md", "web"):
        assert text in out


# A stand-in WebSocket server.


@define(eq=False)
class _Member:
    writer: asyncio.StreamWriter
    nick: str
    rooms: set[str] = field(factory=set)


@define
class FakeWeb:
    """Enough of ``twistd chat --web`` for the bench; subclasses break it."""

    rooms: dict[str, list[_Member]] = field(factory=dict)
    server: asyncio.Server | None = None
    messages: int = 0
    pongs: list[bytes] = field(factory=list)
    origins: list[str] = field(factory=list)
    count: int = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def handle(self, reader: asyncio.StreamReader, writer: Any) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (x.partition(":") for x in head.split("\r\n")[1:])
        }
        self.origins.append(headers.get("origin", ""))
        if not head.startswith("GET /ws ") or not self.origin_ok(headers):
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        writer.write(self.upgrade(headers["sec-websocket-key"].encode()))
        self.count += 1
        member = _Member(writer, f"guest{self.count}")
        self.send(member, {"type": "hello", "nick": member.nick, "server": "fake",
                           "max_line": 1024})  # fmt: skip
        try:
            while True:
                opcode, payload = await self.read_frame(reader)
                if opcode == 0x8:
                    break
                if opcode == 0xA:
                    self.pongs.append(payload)
                elif opcode == 0x1:
                    self.line(member, payload.decode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            for room in member.rooms:
                self.rooms[room].remove(member)
            writer.close()

    def origin_ok(self, headers: dict[str, str]) -> bool:
        return headers.get("origin") == "http://" + headers.get("host", "")

    def upgrade(self, key: bytes) -> bytes:
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()  # noqa: S324
        )
        return (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )

    async def read_frame(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readexactly(2)
        assert head[1] & 0x80, "client frames must be masked"
        n = head[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        key = await reader.readexactly(4)
        data = await reader.readexactly(n)
        return head[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data))

    def send(self, member: _Member, obj: dict[str, Any] | bytes, op: int = 1) -> None:
        member.writer.write(server_frame(obj, op))

    def line(self, m: _Member, text: str) -> None:
        if text.startswith("/join "):
            self.join(m, text[6:])
        elif text == "/part #lobby":
            self.send(m, {"type": "error", "code": "not-in-room",
                          "text": "you are not in #lobby"})  # fmt: skip
        elif text == "/ping":
            self.send(m, {"type": "notice", "text": "pong"})
        elif text.startswith("/quit"):
            pass
        else:
            self.messages += 1
            for room in m.rooms:
                self.deliver(m, room, text)

    def join(self, m: _Member, room: str) -> None:
        members = self.rooms.setdefault(room, [])
        members.append(m)
        m.rooms.add(room)
        for other in members:
            self.send(other, {"type": "join", "room": room, "nick": m.nick,
                              "time": "2026-12-01T10:00:00Z"})  # fmt: skip
        # Big enough to be cut by the client's setup reader in bigger runs.
        names = [{"nick": x.nick, "op": False, "voice": False} for x in members]
        self.send(m, {"type": "members", "room": room, "members": names * 50})

    def deliver(self, m: _Member, room: str, text: str) -> None:
        frame = message(room, m.nick, text)
        for other in self.rooms.get(room, []):
            if other is not m:
                other.writer.write(frame)


class LossyWeb(FakeWeb):
    """Loses the very first delivery."""

    lost = False

    def deliver(self, m: _Member, room: str, text: str) -> None:
        if not self.lost:
            self.lost = True
            return
        super().deliver(m, room, text)


class EchoWeb(FakeWeb):
    """Echoes every message to its sender."""

    def deliver(self, m: _Member, room: str, text: str) -> None:
        super().deliver(m, room, text)
        m.writer.write(message(room, m.nick, text))


class StrictOriginWeb(FakeWeb):
    """Accepts no Origin at all."""

    def origin_ok(self, headers: dict[str, str]) -> bool:  # noqa: ARG002
        return False


class BadAcceptWeb(FakeWeb):
    def upgrade(self, key: bytes) -> bytes:
        return super().upgrade(key + b"x")


class BanningWeb(FakeWeb):
    """Refuses every join with an error frame, and closes on the ping."""

    def join(self, m: _Member, room: str) -> None:  # noqa: ARG002
        self.send(m, {"type": "error", "code": "banned", "text": "you are banned"})


class PingingWeb(FakeWeb):
    """Sends a WebSocket ping before the hello: it must be answered."""

    def send(self, member: _Member, obj: dict[str, Any] | bytes, op: int = 1) -> None:
        if isinstance(obj, dict) and obj.get("type") == "hello":
            super().send(member, b"are-you-there", 0x9)
        super().send(member, obj, op)


class ClosingWeb(FakeWeb):
    """Closes the WebSocket (code 1008) instead of answering the join."""

    def join(self, m: _Member, room: str) -> None:  # noqa: ARG002
        self.send(m, (1008).to_bytes(2, "big") + b"go away", 0x8)


class SmallLineWeb(FakeWeb):
    """Says its line limit is 50 bytes."""

    def send(self, member: _Member, obj: dict[str, Any] | bytes, op: int = 1) -> None:
        if isinstance(obj, dict) and obj.get("type") == "hello":
            obj = {**obj, "max_line": 50}
        super().send(member, obj, op)


class EndlessHeadWeb(FakeWeb):
    """Answers the upgrade with headers that never end."""

    def upgrade(self, key: bytes) -> bytes:  # noqa: ARG002
        return b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Pad: y\r\n" * 2000


def web_run(
    lt: LoopThread, server: FakeWeb, workload: str = "fanout", **overrides: Any
) -> Report:
    port = lt.call(server.start())
    options = {
        k: overrides.pop(k)
        for k in list(overrides)
        if k in {"procs", "source_addrs", "timeout", "window", "read_delay"}
    }
    options.setdefault("timeout", 5.0)
    w = get_workload(workload, **overrides)
    try:
        return run(RunConfig(workload=w, port=port, proto="web", **options))
    finally:
        lt.call(server.close())


# Runs.


@pytest.mark.parametrize(
    ("workload", "overrides"),
    [
        ("fanout", {"clients": 6, "senders": 2, "messages": 30}),
        ("rooms", {"clients": 12, "rooms": 3, "senders": 12, "messages": 5}),
        ("latency", {"clients": 6, "senders": 2, "rate": 100.0, "duration": 0.05}),
        ("idle", {"clients": 5, "rooms": 2, "duration": 0.0}),
    ],
)
def test_each_workload_counts_exactly_over_websocket(
    loop_thread: LoopThread, workload: str, overrides: dict[str, Any]
) -> None:
    """Every workload upgrades, joins and counts every delivery exactly once."""
    server = FakeWeb()
    report = web_run(loop_thread, server, workload, **overrides)
    assert report.errors == ()
    assert report.connections == overrides["clients"]
    assert report.received == report.expected
    assert server.messages == report.sent
    assert all(o.startswith("http://127.0.0.1:") for o in server.origins)
    if workload == "idle":
        assert report.expected == 0
    else:
        assert report.expected > 0
        assert report.latency is not None


def test_web_clients_spread_over_processes_and_source_addresses(
    loop_thread: LoopThread,
) -> None:
    report = web_run(
        loop_thread, FakeWeb(), clients=9, senders=3, messages=7, procs=2,
        source_addrs=3,
    )  # fmt: skip
    assert report.errors == ()
    assert (report.expected, report.received) == (8 * 7 * 3, 8 * 7 * 3)


@pytest.mark.parametrize("window", [0, 2, 11, 200])
def test_windows_of_every_size_count_exactly(
    loop_thread: LoopThread, window: int
) -> None:
    report = web_run(
        loop_thread, FakeWeb(), clients=4, senders=2, messages=25, window=window
    )
    assert report.errors == ()
    assert report.received == report.expected == 150


def test_a_lost_delivery_is_an_error(loop_thread: LoopThread) -> None:
    report = web_run(loop_thread, LossyWeb(), clients=3, senders=1, messages=4)
    assert not report.ok
    assert report.missing == 2  # the one lost message had two readers


def test_an_echo_is_an_unexpected_delivery(loop_thread: LoopThread) -> None:
    report = web_run(loop_thread, EchoWeb(), clients=3, senders=1, messages=4)
    assert not report.ok
    assert report.unexpected == 4


@pytest.mark.parametrize(
    ("server", "words"),
    [
        (StrictOriginWeb(), "server refused the upgrade: HTTP/1.1 403 Forbidden"),
        (BadAcceptWeb(), "wrong Sec-WebSocket-Accept"),
        (
            BanningWeb(),
            "after /join (server said: banned: you are banned / not-in-room",
        ),
        (ClosingWeb(), "server closed the WebSocket: 1008 go away"),
        (EndlessHeadWeb(), "upgrade response longer than 8 KiB"),
    ],
)
def test_a_refused_setup_is_explained(
    loop_thread: LoopThread, server: FakeWeb, words: str
) -> None:
    report = web_run(loop_thread, server, clients=2, senders=1, messages=1)
    assert not report.ok
    assert any("could not register and join" in e for e in report.errors)
    assert any(words in e for e in report.errors), report.errors


def test_a_websocket_ping_is_answered(loop_thread: LoopThread) -> None:
    server = PingingWeb()
    report = web_run(loop_thread, server, clients=3, senders=1, messages=5)
    assert report.errors == ()
    assert report.received == report.expected == 10
    assert server.pongs == [b"are-you-there"] * 3


def test_a_refused_connection_is_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: connects are refused
        w = get_workload("fanout", clients=2, senders=1, messages=1)
        report = run(
            RunConfig(workload=w, port=s.getsockname()[1], proto="web", timeout=5.0)
        )
    assert not report.ok
    assert any("cannot connect: Connection refused" in e for e in report.errors)


def test_a_message_over_the_servers_max_line_fails_setup(
    loop_thread: LoopThread,
) -> None:
    report = web_run(
        loop_thread, SmallLineWeb(), clients=2, senders=1, messages=1, size=100
    )
    assert not report.ok
    assert any(
        "--size 100 is over the server's max_line 50" in e for e in report.errors
    )
    report = web_run(loop_thread, SmallLineWeb(), clients=2, senders=1, messages=1,
                     size=51)  # fmt: skip
    assert report.errors == ()  # a 50-byte body fits


# The real server.


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            assert daemon.poll() is None, "twistd exited"
            assert time.monotonic() < deadline, "twistd did not open its port"
            time.sleep(0.05)
        else:
            return


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["fanout", "rooms", "latency", "idle"])
def test_web_mode_against_twistd(workload: str) -> None:
    """A real ``twistd chat --web`` delivers every message once, as frames
    the counter's marks match."""
    tcp, web = _free_port(), _free_port()
    twistd = str(Path(sys.executable).with_name("twistd"))
    with tempfile.TemporaryDirectory(prefix="bench-web-") as directory:
        daemon = subprocess.Popen(
            [twistd, "--nodaemon", "--pidfile=", "chat",
             "--tcp", f"tcp:{tcp}:interface=127.0.0.1",
             "--web", f"tcp:{web}:interface=127.0.0.1", "--history-db", "off",
             "--flood-burst", "0", "--flood-rate", "0", "--max-per-ip", "0"],
            cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for_port(web, daemon)
            overrides: dict[str, Any] = {"clients": 5}
            if workload == "idle":
                overrides["duration"] = 0.0
            elif workload == "latency":
                overrides.update(senders=2, rate=50.0, duration=0.2)
            else:
                overrides.update(senders=5, messages=50)
            if workload == "rooms":
                overrides["rooms"] = 2
            w = get_workload(workload, **overrides)
            report = run(
                RunConfig(
                    workload=w, port=web, proto="web", server_pid=daemon.pid,
                    timeout=20.0,
                )
            )  # fmt: skip
        finally:
            daemon.kill()
            daemon.wait(timeout=30)
    assert report.errors == ()
    assert report.connections == 5
    assert report.received == report.expected
    if workload != "idle":
        assert report.expected > 0
        assert report.latency is not None
    assert report.server is not None
    assert report.server.pid != os.getpid()


# bench/ab_web.py


def _ab_web() -> Any:
    path = Path(__file__).parent.parent / "bench" / "ab_web.py"
    spec = importlib.util.spec_from_file_location("bench_ab_web", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ab_web"] = module
    spec.loader.exec_module(module)
    return module


def test_ab_web_alternates_and_prints_medians_and_ratios(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs alternate (line, web, web, line, ...), each side's medians are
    taken apart, and the ratios are of the medians."""
    ab = _ab_web()
    order: list[str] = []
    cpu = {"line": iter([10.0, 30.0, 20.0]), "web": iter([40.0, 60.0, 50.0])}

    def fake_run(python: str, proto: str, workload: str, extra: list[str]) -> Any:
        order.append(proto)
        assert extra == ["--messages", "5"]
        return {
            "ok": True,
            "errors": [],
            "deliveries_per_s": 1e6 if proto == "line" else 5e5,
            "server": {"cpu_percent": next(cpu[proto])},
            "latency_ms": {"p50_ms": 1.0, "p99_ms": 2.0},
            "received": 10,
            "expected": 10,
        }

    monkeypatch.setattr(ab, "one_run", fake_run)
    assert ab.main(["--runs", "3", "--", "--messages", "5"]) == 0
    assert order == ["line", "web", "web", "line", "line", "web"]
    out = capsys.readouterr().out
    # line: 20 % of a core at 1e6/s = 0.2 us; web: 50 % at 5e5/s = 1.0 us.
    assert "| fanout | line | 1,000,000 | 0.200 |" in out
    assert "| fanout | web | 500,000 | 1.000 |" in out
    assert "web/TCP server CPU per delivery 5.00x" in out
    assert "TCP/web deliveries per second 2.00x" in out
