# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Tests for the load generator's IRC mode (``--proto irc``).

The counting is checked on byte streams split at every point; the runs go
against a tiny fake IRC server (asyncio, in a thread of this process, on
127.0.0.1 port 0) that speaks just enough IRC: ``001``, ``PING``/``PONG``,
``JOIN`` with ``353``/``366``, ``PRIVMSG`` fan-out without echo, and
deliberately broken variants of it.  One slow test runs against the real
ngircd as ``bench/ngircd.py`` configures it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import sys
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _loop_thread import LoopThread
from attrs import define, field

from twisted_chat.bench import RunConfig, get_workload, run
from twisted_chat.bench.__main__ import parse_args
from twisted_chat.bench.irc_client import MAX_SETUP_PENDING
from twisted_chat.bench.irc_wire import (
    KEEP,
    MAX_IRC_SIZE,
    MAX_LINE,
    PING_TOKEN,
    SMALL_READ,
    IrcStreamCounter,
    delivery_mark,
    irc_latency_ns,
    irc_message,
    nick_for,
    parse_line,
    pong_for,
    privmsg_prefix,
)
from twisted_chat.bench.wire import encode_message

if TYPE_CHECKING:
    from twisted_chat.bench.report import Report

ROOM = "#bench-abc123-0"
MARK = delivery_mark(ROOM)


# Counting.


def _delivery(nick: str, room: str, sent_ns: int) -> bytes:
    body = encode_message(3, sent_ns, 60)
    return f":{nick}!~{nick}@127.0.0.1 ".encode() + irc_message(
        privmsg_prefix(room), body
    )


def _stream() -> bytes:
    """Deliveries in our room mixed with everything that must not count."""
    return b"".join(
        [
            _delivery("ba", ROOM, 1),
            b":bb!~bb@127.0.0.1 JOIN :" + ROOM.encode() + b"\r\n",
            _delivery("bb", "#bench-abc123-01", 2),  # a longer room's name
            b":irc.test NOTICE ba :PRIVMSG " + ROOM.encode() + b" said\r\n",
            b":irc.test PONG irc.test :" + PING_TOKEN + b"\r\n",
            _delivery("bc", ROOM, 3),
            b"PING :irc.test\r\n",
            _delivery("bd", ROOM, 4),
            b":irc.test PING :tok2\r\n",
            b":irc.test PONG irc.test :" + PING_TOKEN + b"\r\n",
        ]
    )


def _feed_all(chunks: list[bytes]) -> tuple[IrcStreamCounter, list[bytes]]:
    counter = IrcStreamCounter(MARK)
    replies: list[bytes] = []
    for chunk in chunks:
        buf = bytearray(chunk) + b"\0" * 7  # only the first n bytes count
        replies += counter.feed(buf, len(chunk), 10**9, None)[2]
    return counter, replies


def test_counter_counts_own_room_deliveries_pongs_and_finds_pings() -> None:
    """Three deliveries, two pongs, and a PONG for each server PING."""
    counter, replies = _feed_all([_stream()])
    assert (counter.messages, counter.pongs) == (3, 2)
    assert replies == [b"PONG :irc.test\r\n", b"PONG :tok2\r\n"]


def test_counter_counts_the_same_however_the_stream_is_split() -> None:
    """Every split into two and many three-way splits give the same totals, and
    every server PING is answered exactly once."""
    data = _stream()
    for i in range(len(data) + 1):
        counter, replies = _feed_all([data[:i], data[i:]])
        assert (counter.messages, counter.pongs, len(replies)) == (3, 2, 2), i
    for i in range(0, len(data), 7):
        for j in range(i, len(data), 11):
            counter, replies = _feed_all([data[:i], data[i:j], data[j:]])
            assert (counter.messages, len(replies)) == (3, 2), (i, j)
            assert replies == [b"PONG :irc.test\r\n", b"PONG :tok2\r\n"]


def test_counter_finds_pings_by_the_servers_name_in_big_reads() -> None:
    """Once ``001`` named the server, a big read is searched for its name at
    a line's end, not for ``PING ``; every split still answers once."""
    filler = _delivery("bz", ROOM, 9) * (SMALL_READ // 40)
    data = filler + b"PING :irc.test.example\r\n" + filler
    assert len(data) > 2 * SMALL_READ
    at = len(filler)
    for i in range(at - 30, at + 30):
        counter = IrcStreamCounter(MARK)
        counter.server_named("irc.test.example")
        replies: list[bytes] = []
        for chunk in (data[:i], data[i:]):
            replies += counter.feed(chunk, len(chunk), 0, None)[2]
        assert replies == [b"PONG :irc.test.example\r\n"], i
        assert counter.messages == 2 * filler.count(MARK)


def test_counter_ignores_ping_in_a_message_text() -> None:
    """``PING `` inside a PRIVMSG is text, not a command."""
    line = b":bb!~bb@h PRIVMSG " + ROOM.encode() + b" :PING me 1 2\r\n"
    counter, replies = _feed_all([line])
    assert (counter.messages, replies) == (1, [])


def test_counter_skips_pongs_when_none_is_due() -> None:
    counter = IrcStreamCounter(MARK)
    data = b":s PONG s :b\r\n"
    assert counter.feed(data, len(data), 0, None, pongs_due=False)[:2] == (0, 0)


def test_counter_bounds_an_unterminated_ping_line() -> None:
    """A PING line that never ends holds at most MAX_LINE bytes, however much
    comes; the tail kept between reads is KEEP bytes."""
    counter = IrcStreamCounter(MARK)
    first = b"PING :" + b"x" * 100
    counter.feed(first, len(first), 0, None)
    for _ in range(20):
        more = b"y" * 5000
        counter.feed(more, len(more), 0, None)
        assert counter.partial is not None
        assert len(counter.partial) <= MAX_LINE
        assert len(counter.tail) <= KEEP
    done = b"\r\n"
    replies = counter.feed(done, len(done), 0, None)[2]
    assert len(replies) == 1
    assert replies[0].startswith(b"PONG :" + b"x" * 100)
    assert counter.partial is None


def test_counter_samples_latency_from_delivery_lines() -> None:
    counter = IrcStreamCounter(MARK)
    data = _delivery("ba", ROOM, 1000) + _delivery("bb", ROOM, 4000)
    samples: array[int] = array("q")
    counter.feed(data, len(data), 5000, samples)
    assert sorted(samples) == [1000, 4000]


def test_irc_latency_ignores_other_lines() -> None:
    line = b":s 372 ba :- 12345"
    assert irc_latency_ns(line, 0, len(line), 10**6) is None
    line = b":a!b@c PRIVMSG #r :x 1 nope"
    assert irc_latency_ns(line, 0, len(line), 10**6) is None


def test_parse_line_and_pong_for() -> None:
    parsed = parse_line(b":irc.test 366 ba #Room :End of NAMES list\r")
    assert parsed is not None
    assert (parsed.source, parsed.command, parsed.params) == (
        "irc.test",
        "366",
        ("ba", "#Room", "End of NAMES list"),
    )
    tagged = parse_line(b"@time=x :s ping tok")
    assert tagged is not None
    assert (tagged.command, tagged.params) == ("PING", ("tok",))
    assert parse_line(b"   \r") is None
    assert pong_for(b"PING :a b") == b"PONG :a b\r\n"
    assert pong_for(b":s NOTICE x :PING y") is None


def test_nicks_fit_nine_characters_and_differ_in_digits_only() -> None:
    """Up to 100,000 clients fit RFC 2812's 9 characters, and nicks differ only
    in digits, so none is a confusable of another (``l``/``1``, ``o``/``0``)."""
    nicks = [nick_for("abc123", i) for i in range(100_000)]
    assert len(set(nicks)) == len(nicks)
    assert max(len(n) for n in nicks) <= 9
    assert all(n.startswith("babc") and n[4:].isdigit() for n in nicks)


def test_privmsg_line_ends_in_crlf_and_keeps_the_body() -> None:
    line = irc_message(privmsg_prefix(ROOM), encode_message(1, 42, 100))
    assert line.startswith(b"PRIVMSG " + ROOM.encode() + b" :xxx")
    assert line.endswith(b" 1 42\r\n")
    assert line.count(b"\n") == 1


# Options.


def test_proto_selects_irc_and_defaults_to_line() -> None:
    """The same workload and window for both protocols: only what is spoken
    differs."""
    cfg, _ = parse_args(["--proto", "irc", "--workload", "rooms"])
    assert (cfg.proto, cfg.window, cfg.workload.name) == ("irc", 200, "rooms")
    cfg, _ = parse_args(["--proto", "irc", "--window", "40"])
    assert cfg.window == 40
    cfg, _ = parse_args([])
    assert (cfg.proto, cfg.window) == ("line", 200)


@pytest.mark.parametrize(
    "argv",
    [
        ["--proto", "irc", "--udp-port", "9001"],
        ["--proto", "irc", "--size", str(MAX_IRC_SIZE + 1)],
        ["--proto", "smtp"],
    ],
)
def test_proto_irc_refuses_what_irc_cannot_do(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2


def test_help_documents_the_irc_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    for text in ("--proto", "PRIVMSG #room", "366", "bench/ngircd.py", "350"):
        assert text in out


# A fake IRC server.


@define(eq=False)
class _Member:
    writer: asyncio.StreamWriter
    nick: str = ""
    user: bool = False
    rooms: set[str] = field(factory=set)


@define
class FakeIrc:
    """Enough of an IRC server for the bench; subclasses break it on purpose."""

    rooms: dict[str, list[_Member]] = field(factory=dict)
    server: asyncio.Server | None = None
    pongs: list[str] = field(factory=list)
    privmsgs: int = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def handle(self, reader: asyncio.StreamReader, writer: Any) -> None:
        member = _Member(writer)
        try:
            while raw := await reader.readline():
                line = parse_line(raw)
                if line is not None:
                    self.command(member, line.command, line.params)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for room in member.rooms:
                self.rooms[room].remove(member)
            writer.close()

    def send(self, member: _Member, text: str) -> None:
        member.writer.write(text.encode() + b"\r\n")

    def command(self, m: _Member, command: str, params: tuple[str, ...]) -> None:
        if command == "NICK":
            m.nick = params[0]
        elif command == "USER":
            m.user = True
        if command in ("NICK", "USER") and m.nick and m.user:
            self.welcome(m)
        elif command == "PING":
            self.send(m, f":irc.test PONG irc.test :{params[-1]}")
        elif command == "PONG":
            self.pongs.append(params[-1])
        elif command == "JOIN":
            self.join(m, params[0])
        elif command == "PRIVMSG":
            self.privmsgs += 1
            self.deliver(m, params[0], params[1])

    def welcome(self, m: _Member) -> None:
        self.send(m, f":irc.test 001 {m.nick} :Welcome {m.nick}")
        # Not an error: a normal welcome without a MOTD file (our server's).
        self.send(m, f":irc.test 422 {m.nick} :MOTD File is missing")
        self.send(m, f":irc.test 404 {m.nick} #elsewhere :Not about us")

    def join(self, m: _Member, room: str) -> None:
        members = self.rooms.setdefault(room, [])
        members.append(m)
        m.rooms.add(room)
        for other in members:
            self.send(other, f":{m.nick}!~{m.nick}@127.0.0.1 JOIN :{room}")
        names = " ".join(x.nick for x in members)
        self.send(m, f":irc.test 353 {m.nick} = {room} :{names}")
        self.send(m, f":irc.test 366 {m.nick} {room} :End of NAMES list")

    def deliver(self, m: _Member, room: str, text: str) -> None:
        line = f":{m.nick}!~{m.nick}@127.0.0.1 PRIVMSG {room} :{text}"
        for other in self.rooms.get(room, []):
            if other is not m:
                self.send(other, line)


class LossyIrc(FakeIrc):
    """Loses the very first delivery."""

    lost = False

    def send(self, member: _Member, text: str) -> None:
        if " PRIVMSG " in text and not self.lost:
            self.lost = True
            return
        super().send(member, text)


class EchoIrc(FakeIrc):
    """Echoes every message to its sender, as echo-message would."""

    def deliver(self, m: _Member, room: str, text: str) -> None:
        super().deliver(m, room, text)
        self.send(m, f":{m.nick}!~{m.nick}@127.0.0.1 PRIVMSG {room} :{text}")


class BanningIrc(FakeIrc):
    """Refuses every JOIN with 474."""

    def join(self, m: _Member, room: str) -> None:
        self.send(m, f":irc.test 474 {m.nick} {room} :Cannot join channel (+b)")


class NickTakenIrc(FakeIrc):
    """Refuses every nickname with 433, before any 001."""

    def command(self, m: _Member, command: str, params: tuple[str, ...]) -> None:
        if command == "NICK":
            self.send(m, f":irc.test 433 * {params[0]} :Nickname already in use")
        else:
            super().command(m, command, params)


class PingingIrc(FakeIrc):
    """PINGs a client on registration and before each delivery it sends."""

    def welcome(self, m: _Member) -> None:
        self.send(m, f"PING :hello-{m.nick}")
        super().welcome(m)

    def deliver(self, m: _Member, room: str, text: str) -> None:
        for other in self.rooms.get(room, []):
            if other is not m:
                self.send(other, ":irc.test PING :again")
        super().deliver(m, room, text)


class EndlessIrc(FakeIrc):
    """Sends one line that never ends during registration."""

    def welcome(self, m: _Member) -> None:
        m.writer.write(b":irc.test NOTICE * :" + b"z" * (MAX_SETUP_PENDING + 4096))


def irc_run(
    lt: LoopThread, server: FakeIrc, workload: str = "fanout", **overrides: Any
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
        return run(RunConfig(workload=w, port=port, proto="irc", **options))
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
def test_each_workload_counts_exactly_over_irc(
    loop_thread: LoopThread, workload: str, overrides: dict[str, Any]
) -> None:
    """Every workload registers, joins and counts every PRIVMSG exactly once."""
    server = FakeIrc()
    report = irc_run(loop_thread, server, workload, **overrides)
    assert report.errors == ()
    assert report.connections == overrides["clients"]
    assert report.received == report.expected
    assert server.privmsgs == report.sent
    if workload == "idle":
        assert report.expected == 0
    else:
        assert report.expected > 0
        assert report.latency is not None


def test_irc_clients_spread_over_processes_and_source_addresses(
    loop_thread: LoopThread,
) -> None:
    server = FakeIrc()
    report = irc_run(
        loop_thread, server, clients=9, senders=3, messages=7, procs=2, source_addrs=3
    )
    assert report.errors == ()
    assert (report.expected, report.received) == (8 * 7 * 3, 8 * 7 * 3)


@pytest.mark.parametrize("window", [0, 2, 11, 200])
def test_windows_of_every_size_count_exactly(
    loop_thread: LoopThread, window: int
) -> None:
    report = irc_run(
        loop_thread, FakeIrc(), clients=4, senders=2, messages=25, window=window
    )
    assert report.errors == ()
    assert report.received == report.expected == 150


def test_a_refused_connection_is_reported() -> None:
    """Nothing listening: each IRC client says it cannot connect."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: connects are refused
        w = get_workload("fanout", clients=2, senders=1, messages=1)
        port = s.getsockname()[1]
        report = run(RunConfig(workload=w, port=port, proto="irc", timeout=5.0))
    assert not report.ok
    assert any("cannot connect: Connection refused" in e for e in report.errors)


def test_a_lost_delivery_is_an_error(loop_thread: LoopThread) -> None:
    report = irc_run(loop_thread, LossyIrc(), clients=3, senders=1, messages=4)
    assert not report.ok
    assert report.missing == 1
    assert any("missing 1 of 8 deliveries" in e for e in report.errors)


def test_an_echo_is_an_unexpected_delivery(loop_thread: LoopThread) -> None:
    report = irc_run(loop_thread, EchoIrc(), clients=3, senders=1, messages=4)
    assert not report.ok
    assert report.unexpected == 4


def test_a_refused_join_fails_setup_with_the_servers_words(
    loop_thread: LoopThread,
) -> None:
    report = irc_run(loop_thread, BanningIrc(), clients=2, senders=1, messages=1)
    assert not report.ok
    assert any("could not register and join" in e for e in report.errors)
    assert any("474" in e and "Cannot join channel" in e for e in report.errors)


def test_a_refused_nick_fails_setup(loop_thread: LoopThread) -> None:
    report = irc_run(loop_thread, NickTakenIrc(), clients=2, senders=1, messages=1)
    assert not report.ok
    assert any("433" in e and "already in use" in e for e in report.errors)


def test_server_pings_are_answered_and_do_not_count(loop_thread: LoopThread) -> None:
    server = PingingIrc()
    report = irc_run(loop_thread, server, clients=3, senders=1, messages=5)
    assert report.errors == ()
    assert report.received == report.expected == 10
    hellos = {p for p in server.pongs if p.startswith("hello-")}
    assert len(hellos) == 3
    assert server.pongs.count("again") == 10


def test_an_endless_setup_line_is_bounded(loop_thread: LoopThread) -> None:
    report = irc_run(loop_thread, EndlessIrc(), clients=1, senders=1, messages=1)
    assert not report.ok
    assert any("setup line longer than 8 KiB" in e for e in report.errors)


# The real ngircd.


def _bench_module(name: str) -> Any:
    """``bench/NAME.py``, loaded as the scripts load each other."""
    path = Path(__file__).parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize(
    ("server_kind", "workload", "overrides"),
    [
        ("ngircd", "fanout", {"clients": 20, "senders": 4, "messages": 200}),
        ("ngircd", "rooms", {"clients": 60, "rooms": 6, "senders": 60, "messages": 10}),
        ("inspircd", "fanout", {"clients": 20, "senders": 4, "messages": 200}),
    ],
)
def test_irc_mode_against_ngircd_and_inspircd(
    server_kind: str, workload: str, overrides: dict[str, Any]
) -> None:
    """ngircd and InspIRCd, configured by bench/ngircd.py and bench/inspircd.py,
    deliver every message once; needs Debian's ngircd and inspircd."""
    module = _bench_module(server_kind)
    server_class = module.Ngircd if server_kind == "ngircd" else module.Inspircd
    with server_class() as server:
        w = get_workload(workload, **overrides)
        report = run(
            RunConfig(
                workload=w,
                port=server.port,
                proto="irc",
                server_pid=server.pid,
                source_addrs=4,
                timeout=20.0,
            )
        )
    assert report.errors == ()
    assert report.received == report.expected > 0
    assert report.server is not None
    assert report.server.pid != os.getpid()
