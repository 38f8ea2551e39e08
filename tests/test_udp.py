# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Unit tests of the UDP adapter and handshake, with a fake transport and a Clock."""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING, cast

import attrs
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import MessageLengthError
from twisted.internet.interfaces import IUDPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from zope.interface import implementer

from twisted_chat.core.admission import Admission
from twisted_chat.core.chat import ChatServer, Participant
from twisted_chat.core.settings import Settings
from twisted_chat.testing import RecordingClient
from twisted_chat.transports.tcp import ChatLineProtocol, ChatServerFactory
from twisted_chat.transports.udp import ChatDatagramProtocol
from twisted_chat.transports.udp_handshake import (
    CHALLENGE_TABLE_SIZE,
    CHALLENGES_PER_SECOND,
    Address,
    ChallengeLimiter,
    TokenMint,
)
from twisted_chat.transports.udp_listeners import (
    ChatUDPServer,
    SystemdUDPService,
    udp_listeners,
)
from twisted_chat.transports.udp_session import (
    MAX_DATAGRAM,
    MAX_PAYLOAD,
    MAX_REPLY_DATAGRAMS,
    cut,
    datagrams,
    describe,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CHALLENGE = re.compile(rb"^\* Reply /hello ([a-z2-7]{16}) to chat over UDP\.\r\n\Z")

CAROL: Address = ("192.0.2.10", 5555)
DAVE: Address = ("192.0.2.11", 6666)
MALLORY: Address = ("203.0.113.66", 53)


@implementer(IUDPTransport)
class FakeDatagramTransport:
    """
    Records ``write(data, addr)`` calls; raises a chosen error for chosen
    addresses, as a real socket does on ENOBUFS or EMSGSIZE.
    """

    def __init__(self) -> None:
        self.written: list[tuple[bytes, Address]] = []
        self.failures: dict[Address, Exception] = {}

    def write(self, packet: bytes, addr: tuple[str, int] | None = None) -> None:
        assert addr is not None
        problem = self.failures.get(addr)
        if problem is not None:
            raise problem
        self.written.append((packet, addr))

    def connect(self, host: str, port: int) -> None:
        raise NotImplementedError

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", 9001)

    def stopListening(self) -> None:
        raise NotImplementedError

    def setBroadcastAllowed(self, enabled: bool) -> None:
        raise NotImplementedError

    def getBroadcastAllowed(self) -> bool:
        raise NotImplementedError


class Rig:
    """One UDP protocol on a fake transport, its core, and a TCP-like user."""

    def __init__(
        self,
        settings: Settings,
        admission: Admission | None = None,
        limiter: ChallengeLimiter | None = None,
    ) -> None:
        self.clock = Clock()
        self.server = ChatServer(settings, self.clock.seconds)
        self.admission = admission or Admission(max_clients=100, max_per_ip=10)
        self.protocol = ChatDatagramProtocol(
            self.server, self.admission, self.clock, limiter=limiter
        )
        self.transport = FakeDatagramTransport()
        self.protocol.makeConnection(self.transport)
        self.bob = RecordingClient(peer="tcp 198.51.100.1:40000")
        self.bob_participant: Participant = self.server.connect(self.bob)
        self.bob.sent.clear()

    def send(self, data: bytes, address: Address = CAROL) -> None:
        self.protocol.datagramReceived(data, address)

    def to(self, address: Address) -> list[bytes]:
        """Every datagram written to ``address`` so far."""
        return [data for data, where in self.transport.written if where == address]

    def take(self, address: Address = CAROL) -> list[bytes]:
        """The datagrams written to ``address`` since the last ``take``."""
        taken = self.to(address)
        self.transport.written = [
            (data, where) for data, where in self.transport.written if where != address
        ]
        return taken

    def challenge(self, address: Address = CAROL, data: bytes = b"hi\n") -> str:
        """Send ``data`` from an unknown address and return the token it gets."""
        self.send(data, address)
        replies = self.take(address)
        assert len(replies) == 1
        match = CHALLENGE.match(replies[0])
        assert match is not None, replies
        return match[1].decode("ascii")

    def join(self, address: Address = CAROL) -> list[bytes]:
        """Do the whole handshake; return the datagrams the welcome made."""
        token = self.challenge(address)
        self.send(f"/hello {token}\n".encode(), address)
        assert address in self.protocol.sessions
        return self.take(address)

    def bob_says(self, text: str) -> None:
        self.server.receive(self.bob_participant, text)


@pytest.fixture
def rig() -> Rig:
    return Rig(Settings(udp_idle=30.0))


@implementer(ILogObserver)
class _Collector:
    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        self.events.append(event)


@pytest.fixture
def logged() -> Iterator[list[LogEvent]]:
    collector = _Collector()
    globalLogPublisher.addObserver(collector)
    yield collector.events
    globalLogPublisher.removeObserver(collector)


# -- the handshake ---------------------------------------------------------------


def test_first_datagram_gets_exactly_one_challenge_line(rig: Rig) -> None:
    """An unknown address gets one challenge datagram, no session, no room traffic."""
    rig.send(b"hello everybody\n")
    rig.bob_says("anyone there?")
    replies = rig.take()
    assert len(replies) == 1
    assert CHALLENGE.match(replies[0])
    assert rig.protocol.sessions == {}
    assert rig.bob.sent == []


def test_challenges_are_limited_to_one_per_address_per_ten_seconds(rig: Rig) -> None:
    """Within 10 seconds an address gets no second challenge; after 10 it does."""
    rig.challenge()
    for _ in range(20):
        rig.send(b"let me in\n")
    rig.clock.advance(9.9)
    rig.send(b"let me in\n")
    assert rig.take() == []
    rig.clock.advance(0.1)
    rig.challenge()


def test_challenges_per_second_are_capped_for_all_addresses(rig: Rig) -> None:
    """Hundreds of forged sources get at most the global cap of challenges a second."""
    sources = [(f"10.0.{n // 256}.{n % 256}", 1000 + n) for n in range(300)]
    for source in sources:
        rig.send(b"x", source)
    assert len(rig.transport.written) == CHALLENGES_PER_SECOND
    rig.clock.advance(1.0)
    for n in range(300):
        rig.send(b"x", (f"10.9.{n // 256}.{n % 256}", 1))
    assert len(rig.transport.written) == 2 * CHALLENGES_PER_SECOND


def test_flood_of_forged_sources_does_not_grow_memory() -> None:
    """The table of challenged addresses never passes its bound, whatever the flood."""
    rig = Rig(Settings(), limiter=ChallengeLimiter(rate=1e9, capacity=500))
    largest = 0
    for n in range(3000):
        rig.send(b"x", (f"10.0.{n // 256}.{n % 256}", 9))
        rig.clock.advance(0.001)
        largest = max(largest, len(rig.protocol.limiter))
    assert largest == 500
    assert rig.protocol.sessions == {}


def test_default_challenge_table_outlasts_the_global_cap() -> None:
    """The default table holds every address the global cap admits in 10 seconds."""
    limiter = ChallengeLimiter()
    assert limiter.capacity > limiter.rate * (limiter.interval + 1)
    assert limiter.capacity == CHALLENGE_TABLE_SIZE


def test_challenge_table_refuses_rather_than_forgets_when_full() -> None:
    """A full table of recent addresses refuses newcomers instead of evicting one."""
    limiter = ChallengeLimiter(interval=10.0, rate=1000.0, capacity=3)
    assert [limiter.allow((f"10.0.0.{n}", 1), 0.0) for n in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert len(limiter) == 3
    assert not limiter.allow(("10.0.0.0", 1), 5.0)
    assert limiter.allow(("10.0.0.9", 1), 10.0)
    assert len(limiter) == 1


def test_hello_with_the_token_starts_a_session_like_tcp(rig: Rig) -> None:
    """/hello TOKEN gets welcome, guest nick and #lobby, one line per datagram."""
    welcome = rig.join()
    assert welcome[0].startswith(b"* Welcome to twisted-chat, guest2!")
    assert welcome[1].startswith(b"* You joined #lobby; 1 other person here")
    assert all(d.endswith(b"\r\n") and d.count(b"\r\n") == 1 for d in welcome)
    assert rig.bob.lines() == ["* guest2 joined #lobby"]
    assert rig.admission.total == 1
    assert rig.protocol.sessions[CAROL].peer == "udp 192.0.2.10:5555"


def test_hello_token_is_case_insensitive_and_may_follow_blank_lines(rig: Rig) -> None:
    """A retyped token in capitals, after empty lines, still proves the address."""
    token = rig.challenge()
    rig.send(f"\r\n\n  /HELLO {token.upper()}  \r\n".encode())
    assert CAROL in rig.protocol.sessions


def test_lines_after_hello_in_the_same_datagram_are_handled(rig: Rig) -> None:
    """Lines that follow /hello in its datagram are the session's first lines."""
    token = rig.challenge()
    rig.send(f"/hello {token}\n/nick carol\nhi bob".encode())
    assert rig.take()[-1] == b"* You are now known as carol.\r\n"
    assert rig.bob.lines()[-1] == "[#lobby] <carol> hi bob"


def test_wrong_token_gets_nothing_and_starts_nothing(rig: Rig) -> None:
    """A wrong token within the challenge interval gets no reply and no session."""
    token = rig.challenge()
    wrong = "a" * 16 if token != "a" * 16 else "b" * 16
    rig.send(f"/hello {wrong}\n".encode())
    rig.send(b"/hello\n")
    assert rig.take() == []
    assert rig.protocol.sessions == {}
    assert rig.protocol.stats.bad_tokens == 2
    assert rig.bob.sent == []


def test_token_of_another_address_is_refused(rig: Rig) -> None:
    """A token proves only the address (host and port) it was sent to."""
    token = rig.challenge(CAROL)
    rig.send(f"/hello {token}\n".encode(), (CAROL[0], CAROL[1] + 1))
    rig.send(f"/hello {token}\n".encode(), DAVE)
    assert rig.protocol.sessions == {}


def test_token_is_good_for_at_least_one_whole_window(rig: Rig) -> None:
    """A token still works one window later (minus a moment)."""
    token = rig.challenge()
    rig.clock.advance(2 * rig.protocol.mint.window - 0.5)
    rig.send(f"/hello {token}\n".encode())
    assert CAROL in rig.protocol.sessions


def test_stale_token_gets_a_fresh_rate_limited_challenge(rig: Rig) -> None:
    """A token two windows old is stale: no session, but a fresh working challenge."""
    token = rig.challenge()
    rig.clock.advance(2 * rig.protocol.mint.window)
    fresh = rig.challenge(data=f"/hello {token}\n".encode())
    assert fresh != token
    assert rig.protocol.sessions == {}
    rig.send(f"/hello {fresh}\n".encode())
    assert CAROL in rig.protocol.sessions


def test_hello_from_a_session_is_a_usage_error(rig: Rig) -> None:
    """/hello again from a proven address is answered as a command, with an error."""
    rig.join()
    rig.send(b"/hello whatever\n")
    assert rig.take() == [
        b"! usage: /hello is the UDP handshake; you are already in.\r\n"
    ]


def test_tokens_depend_on_the_secret_address_and_window() -> None:
    """Tokens differ by secret, host, port and window."""
    mint = TokenMint(secret=b"k" * 32, window=100.0)
    token = mint.token(CAROL, 0.0)
    assert re.fullmatch(r"[a-z2-7]{16}", token)
    assert mint.token(CAROL, 99.0) == token
    assert mint.token(CAROL, 100.0) != token
    assert mint.token(DAVE, 0.0) != token
    assert TokenMint(secret=b"j" * 32).token(CAROL, 0.0) != token
    assert mint.check(token, CAROL, 199.9)
    assert not mint.check(token, CAROL, 200.0)
    assert not mint.check("ünïcödé", CAROL, 0.0)


def test_refused_admission_gets_one_error_line() -> None:
    """A proven address over --max-per-ip gets one ! line and no session."""
    rig = Rig(Settings(), Admission(max_clients=100, max_per_ip=1))
    rig.join(CAROL)
    second = (CAROL[0], 7777)
    token = rig.challenge(second)
    rig.send(f"/hello {token}\n".encode(), second)
    replies = rig.take(second)
    assert len(replies) == 1
    assert replies[0].startswith(b"! too-many-connections: ")
    assert second not in rig.protocol.sessions
    assert rig.admission.total == 1


# -- sessions --------------------------------------------------------------------


def test_udp_and_other_users_chat_both_ways(rig: Rig) -> None:
    """A session's lines reach the room and the room's lines reach the session."""
    rig.join()
    rig.send(b"hi bob")
    rig.bob_says("hi carol")
    assert rig.bob.lines()[-1] == "[#lobby] <guest2> hi bob"
    assert rig.take() == [b"[#lobby] <guest1> hi carol\r\n"]


def test_multi_line_datagram_gives_one_datagram_per_server_line(rig: Rig) -> None:
    """Lines split on LF, CRLF and CR are handled in order; blank lines are ignored."""
    rig.join()
    rig.send(b"/nick carol\r\nhello room\r/join #dev\n\n   \n/who")
    replies = rig.take()
    assert replies[0] == b"* You are now known as carol.\r\n"
    assert replies[1].startswith(b"* You joined #dev;")
    assert replies[2:] == [b"* 1 person in #dev:\r\n", b"* @carol\r\n"]
    assert rig.bob.lines()[-1] == "[#lobby] <carol> hello room"


def test_datagram_lines_are_cleaned_like_tcp_lines(rig: Rig) -> None:
    """Telnet commands, escapes and controls are removed; bad UTF-8 is replaced."""
    rig.join()
    rig.send(b"\xff\xfb\x01hi \x1b[2J\x1b[31mred\x1b[0m\x07 there \xc3\n\x1b[0m\n")
    assert rig.bob.lines()[-1] == "[#lobby] <guest2> hi red there \ufffd"
    assert rig.bob.lines().count("[#lobby] <guest2> hi red there \ufffd") == 1


def test_line_over_max_line_is_refused_and_the_next_works() -> None:
    """A line over --max-line gets the line-too-long error; the rest is handled."""
    rig = Rig(Settings(max_line=16))
    rig.join()
    rig.send(b"x" * 17 + b"\nshort one\n")
    assert rig.take()[0].startswith(b"! line-too-long: Lines are at most 16 bytes")
    assert rig.bob.lines()[-1] == "[#lobby] <guest2> short one"


def test_oversized_datagram_is_dropped_unread(rig: Rig) -> None:
    """A datagram over the read size limit is not processed at all."""
    rig.join()
    rig.send(b"a" * (MAX_DATAGRAM + 1))
    assert rig.take() == []
    assert rig.protocol.stats.oversized == 1


def test_flood_drops_lines_with_at_most_one_notice_a_second() -> None:
    """Over the rate, lines are dropped and ! slow-down comes once a second at most."""
    rig = Rig(Settings(flood_burst=3, flood_rate=1.0))
    rig.join()
    for n in range(6):
        rig.send(f"line {n}".encode())
    said = [line for line in rig.bob.lines() if "<guest2>" in line]
    assert said == [
        "[#lobby] <guest2> line 0",
        "[#lobby] <guest2> line 1",
        "[#lobby] <guest2> line 2",
    ]
    replies = rig.take()
    assert len(replies) == 1
    assert replies[0].startswith(b"! slow-down: ")
    rig.clock.advance(1.0)
    rig.send(b"line 6\nline 7")
    assert rig.bob.lines()[-1] == "[#lobby] <guest2> line 6"
    assert rig.take()[0].startswith(b"! slow-down: ")


def test_ping_answers_pong_and_keeps_the_session(rig: Rig) -> None:
    """/ping gets * pong and resets the idle timer."""
    rig.join()
    rig.clock.advance(29)
    rig.send(b"/ping\n")
    assert rig.take() == [b"* pong\r\n"]
    rig.clock.advance(29)
    assert CAROL in rig.protocol.sessions


def test_idle_session_expires_as_a_quit_with_reason(rig: Rig) -> None:
    """--udp-idle seconds without a datagram end the session; others see a quit."""
    rig.join(DAVE)
    rig.join(CAROL)
    rig.clock.advance(20)
    rig.send(b"/ping", DAVE)
    rig.clock.advance(15)
    assert CAROL not in rig.protocol.sessions
    assert DAVE in rig.protocol.sessions
    assert "* guest3 quit (timed out)" in rig.bob.lines()
    assert rig.take()[-1].startswith(b"* Your UDP session ended after 30 seconds")
    assert rig.admission.total == 1
    rig.bob_says("still there?")
    assert rig.take() == []
    assert rig.take(DAVE)[-1] == b"[#lobby] <guest1> still there?\r\n"


def test_quit_ends_the_session(rig: Rig) -> None:
    """/quit says bye, others see the quit, and later lines reach nobody."""
    rig.join()
    rig.send(b"/quit gotta go\nthis is never said")
    assert rig.take() == [b"* Bye!\r\n"]
    assert rig.bob.lines()[-1] == "* guest2 quit (gotta go)"
    assert rig.protocol.sessions == {}
    assert rig.admission.total == 0
    rig.send(b"hello?")
    assert rig.take() == []
    assert not any("never said" in line for line in rig.bob.lines())


def test_close_ends_the_session_for_everybody(rig: Rig) -> None:
    """close() (daemon shutdown) ends the session, which sends nothing after it."""
    rig.join()
    session = rig.protocol.sessions[CAROL]
    session.close()
    session.close()
    assert rig.bob.lines()[-1] == "* guest2 quit (session closed)"
    assert rig.admission.total == 0
    session.send(b"* too late\r\n")
    assert rig.take() == []


def test_ipv4_mapped_source_is_answered_at_its_own_address(rig: Rig) -> None:
    """A dual-stack socket's IPv4-mapped source gets replies and counts as IPv4."""
    mapped = ("::ffff:192.0.2.20", 4000)
    rig.join(mapped)
    session = rig.protocol.sessions[mapped]
    assert session.peer == "udp 192.0.2.20:4000"
    assert rig.admission.per_group == {"192.0.2.20": 1}


@pytest.mark.parametrize(
    "problem",
    [
        OSError(errno.ENOBUFS, "No buffer space available"),
        OSError(errno.EAGAIN, "Resource temporarily unavailable"),
        OSError(errno.ECONNREFUSED, "Connection refused"),
        MessageLengthError("message too long"),
    ],
)
def test_failed_send_to_one_member_does_not_stop_the_fanout(
    rig: Rig, problem: Exception, logged: list[LogEvent]
) -> None:
    """A send error for one recipient is logged; the others still get the line."""
    rig.join(CAROL)
    rig.join(DAVE)
    rig.transport.failures[CAROL] = problem
    rig.bob_says("one")
    rig.bob_says("two")
    assert rig.take(DAVE) == [
        b"[#lobby] <guest1> one\r\n",
        b"[#lobby] <guest1> two\r\n",
    ]
    assert rig.protocol.stats.send_failures == 2
    assert len([e for e in logged if "could not send" in e.get("log_format", "")]) == 1


def test_datagram_received_never_raises(rig: Rig, logged: list[LogEvent]) -> None:
    """A bug behind datagramReceived is logged, and the next datagram still works."""
    rig.join()

    def broken(participant: Participant, text: str) -> None:
        raise RuntimeError("bug")

    receive = rig.server.receive
    rig.server.receive = broken  # type: ignore[method-assign]
    rig.send(b"boom")
    rig.server.receive = receive  # type: ignore[method-assign]
    rig.send(b"/ping")
    assert rig.take() == [b"* pong\r\n"]
    assert any(e.get("log_failure") is not None for e in logged)


def test_unproven_burst_during_busy_room_sends_less_than_it_gets(rig: Rig) -> None:
    """100 datagrams from an unproven address get fewer bytes back, no room traffic."""
    rig.join()
    received = 0
    for n in range(100):
        attack = [
            b"/join #lobby\n",
            b"/hello aaaaaaaaaaaaaaaa\n",
            b"x",
            b"/msg guest1 hi",
        ]
        data = attack[n % len(attack)]
        received += len(data)
        rig.send(data, MALLORY)
        rig.bob_says(f"busy {n}")
        rig.send(f"reply {n}".encode())
        rig.clock.advance(0.5)
    sent = rig.to(MALLORY)
    assert sum(len(data) for data in sent) <= received
    assert sent
    assert all(CHALLENGE.match(data) for data in sent)


# -- payloads --------------------------------------------------------------------


def test_long_server_line_is_cut_at_1200_bytes_on_a_character_boundary() -> None:
    """A room line over 1200 bytes arrives as at most 1200, ending in … and CRLF."""
    rig = Rig(Settings(max_line=8192))
    rig.join()
    rig.bob_says("é" * 700)
    (payload,) = rig.take()
    assert len(payload) <= MAX_PAYLOAD
    assert payload.endswith("…".encode() + b"\r\n")
    text = payload.decode("utf-8")
    assert text.startswith("[#lobby] <guest1> ééé")


@pytest.mark.parametrize("size", [1197, 1198, 1199, 1200, 5000])
@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_cut_keeps_whole_characters(size: int, char: str) -> None:
    """Lines that fit are kept whole; others are cut to whole characters plus …."""
    line = (char * size).encode()[:size]
    line = line.decode("utf-8", "ignore").encode()
    payload = cut(line)
    assert len(payload) <= MAX_PAYLOAD
    if len(line) + 2 <= MAX_PAYLOAD:
        assert payload == line + b"\r\n"
    else:
        body = payload.removesuffix("…\r\n".encode())
        assert line.startswith(body)
        assert body.decode("utf-8")
        assert len(payload) > MAX_PAYLOAD - 4


def test_several_lines_in_one_send_become_several_datagrams() -> None:
    """IChatClient.send with several CRLF lines gives one datagram each."""
    single = b"* one\r\n"
    assert datagrams(single)[0] is single
    assert datagrams(b"* one\r\n* two\r\n") == [b"* one\r\n", b"* two\r\n"]
    assert datagrams(b"* one\r\n" + b"x" * 2000 + b"\r\n")[1].endswith("…\r\n".encode())


def test_describe_spells_addresses_for_logs() -> None:
    """Peers read udp HOST:PORT, IPv6 in brackets, IPv4-mapped as IPv4."""
    assert describe(("127.0.0.1", 5555)) == "udp 127.0.0.1:5555"
    assert describe(("::1", 5555)) == "udp [::1]:5555"
    assert describe(("::ffff:127.0.0.1", 5555)) == "udp 127.0.0.1:5555"


# -- assembly --------------------------------------------------------------------


def test_udp_listeners_builds_one_service_per_entry() -> None:
    """Each --udp entry gets a service with its own protocol and a shared secret."""
    clock = Clock()
    settings = Settings(udp=("127.0.0.1:0", "[::1]:9001", "systemd:name=chat-udp"))
    server = ChatServer(settings, clock.seconds)
    admission = Admission(max_clients=10, max_per_ip=10)
    first, second, third = udp_listeners(settings, server, admission, clock)
    assert isinstance(first, ChatUDPServer)
    assert isinstance(second, ChatUDPServer)
    assert isinstance(third, SystemdUDPService)
    assert first.args == (0, first.chat_protocol)
    assert first.kwargs["interface"] == "127.0.0.1"
    assert second.args == (9001, second.chat_protocol)
    assert second.kwargs["interface"] == "::1"
    assert third.socket_name == "chat-udp"
    protocols = [first.chat_protocol, second.chat_protocol, third.chat_protocol]
    assert len({id(p) for p in protocols}) == 3
    assert all(p.mint is protocols[0].mint for p in protocols)
    assert all(p.limiter is protocols[0].limiter for p in protocols)
    assert all(p.server is server and p.admission is admission for p in protocols)


class _FakePort:
    stopped = False

    def stopListening(self) -> None:
        self.stopped = True


def test_systemd_service_adopts_the_named_socket_and_stops_it() -> None:
    """The socket-activation service adopts its socket on start and stops it on stop."""
    calls: list[tuple[object, str, ChatDatagramProtocol, int]] = []
    port = _FakePort()

    def adopt(
        reactor: object,
        name: str,
        protocol: ChatDatagramProtocol,
        *,
        max_packet_size: int,
    ) -> _FakePort:
        calls.append((reactor, name, protocol, max_packet_size))
        return port

    clock = Clock()
    server = ChatServer(Settings(), clock.seconds)
    protocol = ChatDatagramProtocol(
        server, Admission(max_clients=1, max_per_ip=1), clock
    )
    service = SystemdUDPService("chat-udp", protocol, clock, adopt=adopt)  # type: ignore[arg-type]
    service.privilegedStartService()
    service.startService()
    assert calls == [(clock, "chat-udp", protocol, MAX_DATAGRAM)]
    service.stopService()
    assert port.stopped


# -- one datagram, a few datagrams back ------------------------------------------


def test_one_datagram_draws_at_most_a_few_datagrams_back() -> None:
    """Twenty /ping in one datagram get seven pongs and one line saying it was cut."""
    rig = Rig(Settings(flood_burst=0))
    rig.join()
    rig.send(b"/ping\n" * 20)
    replies = rig.take()
    assert len(replies) == MAX_REPLY_DATAGRAMS
    assert replies[:-1] == [b"* pong\r\n"] * (MAX_REPLY_DATAGRAMS - 1)
    assert replies[-1].startswith(b"* Reply cut: 13 more lines not sent")
    assert b"Use TCP" in replies[-1]
    assert b"/rooms PATTERN" in replies[-1]
    assert len(replies[-1]) <= MAX_PAYLOAD
    rig.send(b"/ping\n")
    assert rig.take() == [b"* pong\r\n"]


def test_a_long_reply_is_cut_whatever_the_command(rig: Rig) -> None:
    """/help is many lines; over UDP it is cut to the cap like anything else."""
    rig.join()
    rig.send(b"/help")
    replies = rig.take()
    assert len(replies) <= MAX_REPLY_DATAGRAMS
    assert replies[-1].startswith(b"* Reply cut: ")


def test_a_reply_that_fits_is_not_cut() -> None:
    """Exactly the cap in replies, and no cut line."""
    rig = Rig(Settings(flood_burst=0))
    rig.join()
    rig.send(b"/ping\n" * MAX_REPLY_DATAGRAMS)
    assert rig.take() == [b"* pong\r\n"] * MAX_REPLY_DATAGRAMS


def test_room_traffic_from_others_is_never_counted_or_cut() -> None:
    """Room lines queued this turn reach the session whole, and its reply too."""
    turn: list[Callable[[], None]] = []
    clock = Clock()
    server = ChatServer(Settings(flood_burst=0), clock.seconds, defer=turn.append)
    protocol = ChatDatagramProtocol(
        server, Admission(max_clients=100, max_per_ip=10), clock
    )
    transport = FakeDatagramTransport()
    protocol.makeConnection(transport)
    bob = RecordingClient(peer="tcp 198.51.100.1:40000")
    bob_participant = server.connect(bob)
    protocol.datagramReceived(b"hi", CAROL)
    ((challenge, _),) = transport.written
    token = CHALLENGE.match(challenge)[1]  # type: ignore[index]
    protocol.datagramReceived(b"/hello " + token, CAROL)
    server.flush()
    transport.written.clear()
    for n in range(30):
        server.receive(bob_participant, f"line {n}")
    protocol.datagramReceived(b"/ping\n/ping", CAROL)
    got = [data for data, _ in transport.written]
    assert got == [
        *(f"[#lobby] <guest1> line {n}\r\n".encode() for n in range(30)),
        b"* pong\r\n",
        b"* pong\r\n",
    ]


def test_the_hello_datagram_is_capped_too() -> None:
    """A long MOTD does not make /hello draw more than the cap."""
    rig = Rig(Settings(motd=tuple(f"motd line {n}" for n in range(20))))
    replies = rig.join()
    assert len(replies) == MAX_REPLY_DATAGRAMS
    assert replies[0].startswith(b"* Welcome")
    assert replies[-1].startswith(b"* Reply cut: ")


# -- flood credit per address ----------------------------------------------------


def test_a_new_session_from_the_same_address_keeps_its_flood_credit() -> None:
    """/quit and /hello again from another port: the burst is not refilled."""
    rig = Rig(Settings(flood_burst=3, flood_rate=1.0))
    rig.join()
    rig.send(b"a\nb\n/quit")
    assert CAROL not in rig.protocol.sessions
    other_port = (CAROL[0], CAROL[1] + 1)
    rig.join(other_port)
    rig.bob.sent.clear()
    rig.send(b"c", other_port)
    assert rig.bob.lines() == []
    assert rig.take(other_port)[0].startswith(b"! slow-down: ")
    rig.clock.advance(1.0)
    rig.send(b"d", other_port)
    assert rig.bob.lines() == ["[#lobby] <guest3> d"]


# -- one intake: the same verdicts as over TCP ----------------------------------

TOO_LONG = b"! line-too-long: Lines are at most 32 bytes; that one was not sent.\r\n"


def tcp_client(rig: Rig) -> tuple[ChatLineProtocol, StringTransport]:
    """A TCP connection to the rig's core, its welcome cleared."""
    factory = ChatServerFactory(rig.server, rig.admission, rig.clock)
    address = IPv4Address("TCP", "198.51.100.7", 40001)
    protocol = cast("ChatLineProtocol", factory.buildProtocol(address))
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    transport.clear()
    return protocol, transport


def errors(received: list[bytes]) -> list[bytes]:
    """The ``!`` lines among what a client received."""
    return [line for line in received if line.startswith(b"!")]


def test_a_burst_gets_the_same_verdicts_over_tcp_and_udp() -> None:
    """
    The line-length check comes before flood control on both: the overlong
    line is refused and costs no token, so the lines after it that the
    burst pays for go; then TCP waits and UDP drops.
    """
    rig = Rig(Settings(flood_burst=3, flood_rate=1.0, max_line=32))
    rig.join()
    tcp, tcp_out = tcp_client(rig)
    rig.bob.sent.clear()
    burst = b"a\n" + b"z" * 40 + b"\n\n \nb\nc\nd"
    tcp.dataReceived(burst + b"\n")
    rig.send(burst)
    assert rig.bob.lines() == [
        "[#lobby] <guest3> a",
        "[#lobby] <guest3> b",
        "[#lobby] <guest2> a",
        "[#lobby] <guest2> b",
    ]
    assert errors(tcp_out.value().splitlines(True)) == [TOO_LONG]
    udp_errors = errors(rig.take())
    assert udp_errors[0] == TOO_LONG
    assert udp_errors[1].startswith(b"! slow-down: ")
    assert len(udp_errors) == 2
    rig.clock.advance(2.0)
    assert rig.bob.lines()[4:] == ["[#lobby] <guest3> c", "[#lobby] <guest3> d"]


def test_an_overlong_line_is_refused_even_with_no_tokens_left() -> None:
    """As over TCP: it costs nothing, so it is refused, not dropped as a flood."""
    rig = Rig(Settings(flood_burst=2, flood_rate=1.0, max_line=32))
    rig.join()
    rig.send(b"a\nb")
    rig.take()
    rig.send(b"z" * 40)
    assert rig.take() == [TOO_LONG]
    assert rig.protocol.stats.dropped_lines == 0


# -- SIGHUP reaches existing sessions -------------------------------------------


def reload(rig: Rig, burst: int, rate: float = 1.0) -> Settings:
    """What the daemon's reload does to the core and to each listener."""
    settings = attrs.evolve(rig.server.settings, flood_burst=burst, flood_rate=rate)
    rig.server.settings = settings
    rig.protocol.apply_settings(settings)
    return settings


def test_a_reload_that_lowers_the_burst_applies_to_an_existing_session() -> None:
    """The session gets the new numbers, and the notice quotes them."""
    rig = Rig(Settings(flood_burst=10, flood_rate=1.0))
    rig.join()
    rig.bob.sent.clear()
    reload(rig, 2)
    rig.send(b"a\nb\nc\nd")
    assert rig.bob.lines() == ["[#lobby] <guest2> a", "[#lobby] <guest2> b"]
    assert rig.take() == [
        (
            b"! slow-down: Slow down: at most 2 lines at once, then 1 a second; "
            b"the rest was dropped.\r\n"
        )
    ]


def test_a_reload_keeps_a_sessions_tokens() -> None:
    """A bigger burst is no fresh burst: what was spent stays spent."""
    rig = Rig(Settings(flood_burst=2, flood_rate=1.0))
    rig.join()
    rig.send(b"a\nb")
    reload(rig, 20, 2.0)
    rig.bob.sent.clear()
    rig.send(b"c")
    assert rig.bob.lines() == []
    rig.clock.advance(0.5)
    rig.send(b"d\ne")
    assert rig.bob.lines() == ["[#lobby] <guest2> d"]


def test_a_reload_turns_flood_control_off_and_on_for_a_session() -> None:
    """Off: every line goes.  On again: the session starts from a full burst."""
    rig = Rig(Settings(flood_burst=2, flood_rate=1.0))
    rig.join()
    rig.bob.sent.clear()
    reload(rig, 0)
    rig.send(b"\n".join(b"x%d" % n for n in range(20)))
    assert len(rig.bob.lines()) == 20
    reload(rig, 3)
    rig.bob.sent.clear()
    rig.send(b"a\nb\nc\nd")
    assert len(rig.bob.lines()) == 3


def test_a_reload_retunes_tcp_and_udp_buckets_alike() -> None:
    """One rule for every transport: same spend, same reload, same bucket."""
    rig = Rig(Settings(flood_burst=5, flood_rate=1.0))
    rig.join()
    tcp, _ = tcp_client(rig)
    tcp.dataReceived(b"a\nb\nc\n")
    rig.send(b"a\nb\nc")
    settings = reload(rig, 3, 0.5)
    tcp.apply_settings(settings)
    udp_bucket = rig.protocol.sessions[CAROL].bucket
    assert udp_bucket is not None
    assert tcp._bucket == udp_bucket
