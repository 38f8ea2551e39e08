"""The transports' side of accounts: the host they pass, and a banned client.

A server-banned client gets exactly one ``! banned:`` line and nothing
else: over TCP no welcome, no later line, and the connection closes; over
UDP the ``/hello`` that proved the address draws that one datagram, no
session starts, and the address is unproven again, with at most one such
line every 10 seconds.  ``server.operators.refusal`` is replaced here, so
these tests hold whatever the ban rules are.
"""

from __future__ import annotations

import re
from typing import cast

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from twisted_chat.core.admission import Admission
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.settings import Settings
from twisted_chat.transports.tcp import ChatLineProtocol, ChatServerFactory
from twisted_chat.transports.udp import ChatDatagramProtocol
from twisted_chat.transports.udp_handshake import Address, ChallengeLimiter

BANNED = b"! banned: You are banned from this server (spam); until lifted.\r\n"
BAD_HOST = "203.0.113.7"
CHALLENGE = re.compile(rb"^\* Reply /hello ([a-z2-7]{16}) to chat over UDP\.\r\n\Z")


class Bans:
    """Stands in for ``server.operators.refusal``: records who was checked."""

    def __init__(self, *hosts: str) -> None:
        self.hosts = set(hosts)
        self.asked: list[tuple[str, str | None]] = []
        #: Refusals to give before the ban "is set" (a ban set meanwhile).
        self.miss = 0

    def refusal(self, host: str, account_key: str | None) -> bytes | None:
        self.asked.append((host, account_key))
        if self.miss:
            self.miss -= 1
            return None
        return BANNED if host in self.hosts else None


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> ChatServer:
    return ChatServer(Settings(), clock.seconds)


@pytest.fixture
def bans(server: ChatServer, monkeypatch: pytest.MonkeyPatch) -> Bans:
    fake = Bans(BAD_HOST)
    monkeypatch.setattr(server.operators, "refusal", fake.refusal)
    return fake


# -- TCP ------------------------------------------------------------------------


class Tcp:
    def __init__(self, server: ChatServer, clock: Clock) -> None:
        self.server = server
        self.admission = Admission(max_clients=100, max_per_ip=10)
        self.factory = ChatServerFactory(server, self.admission, clock)

    def connect(
        self, address: IPv4Address | IPv6Address
    ) -> tuple[ChatLineProtocol, StringTransport]:
        protocol = cast("ChatLineProtocol", self.factory.buildProtocol(address))
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport


def test_tcp_passes_the_host_and_its_name(
    server: ChatServer, clock: Clock, bans: Bans
) -> None:
    tcp = Tcp(server, clock)
    protocol, _ = tcp.connect(IPv4Address("TCP", "198.51.100.1", 40000))
    assert protocol.participant is not None
    assert (protocol.participant.host, protocol.participant.transport) == (
        "198.51.100.1",
        "tcp",
    )


def test_tcp_passes_an_ipv4_mapped_host_as_ipv4(
    server: ChatServer, clock: Clock, bans: Bans
) -> None:
    tcp = Tcp(server, clock)
    _, transport = tcp.connect(IPv6Address("TCP", f"::ffff:{BAD_HOST}", 40000))
    assert transport.value() == BANNED
    protocol, _ = tcp.connect(IPv6Address("TCP", "2001:DB8::0:1", 40001))
    assert protocol.participant is not None
    assert protocol.participant.host == "2001:db8::1"


def test_a_banned_tcp_client_gets_one_line_and_is_closed(
    server: ChatServer, clock: Clock, bans: Bans
) -> None:
    tcp = Tcp(server, clock)
    protocol, transport = tcp.connect(IPv4Address("TCP", BAD_HOST, 40000))
    assert transport.value() == BANNED
    assert transport.disconnecting
    assert bans.asked == [(BAD_HOST, None)]
    # No slot, no flood credit, no participant.
    assert (tcp.admission.total, tcp.admission.per_group) == (0, {})
    assert protocol.participant is None
    assert server.participants == {}
    protocol.dataReceived(b"/rooms\n/help\nhello\n")
    clock.advance(10)
    protocol.connectionLost()
    assert transport.value() == BANNED
    assert tcp.admission.total == 0


def test_a_ban_set_before_tcp_joins_still_gives_one_line(
    server: ChatServer, clock: Clock, bans: Bans
) -> None:
    """The core's check at connect (a ban set during a TLS handshake)."""
    bans.miss = 1  # the transport's check passes, the core's does not
    tcp = Tcp(server, clock)
    protocol, transport = tcp.connect(IPv4Address("TCP", BAD_HOST, 40000))
    assert transport.value() == BANNED
    assert transport.disconnecting
    assert protocol.participant is not None
    assert protocol.participant.gone
    assert server.participants == {}
    protocol.dataReceived(b"/rooms\nhello\n")
    clock.advance(10)
    protocol.connectionLost()
    assert transport.value() == BANNED
    assert tcp.admission.total == 0


def test_others_still_get_in_over_tcp(
    server: ChatServer, clock: Clock, bans: Bans
) -> None:
    tcp = Tcp(server, clock)
    tcp.connect(IPv4Address("TCP", BAD_HOST, 40000))
    _, transport = tcp.connect(IPv4Address("TCP", "203.0.113.8", 40000))
    assert transport.value().startswith(b"* Welcome")


# -- UDP ------------------------------------------------------------------------


class FakeDatagrams:
    def __init__(self) -> None:
        self.written: list[tuple[bytes, Address]] = []

    def write(self, packet: bytes, addr: Address) -> None:
        self.written.append((packet, addr))


class Udp:
    def __init__(
        self, server: ChatServer, clock: Clock, banned: ChallengeLimiter | None = None
    ) -> None:
        self.clock = clock
        self.admission = Admission(max_clients=100, max_per_ip=10)
        self.protocol = ChatDatagramProtocol(
            server, self.admission, clock, banned=banned
        )
        self.transport = FakeDatagrams()
        self.protocol.makeConnection(self.transport)  # type: ignore[arg-type]
        self._seen = 0

    def send(self, data: bytes, address: Address) -> None:
        self.protocol.datagramReceived(data, address)

    def take(self) -> list[tuple[bytes, Address]]:
        new = self.transport.written[self._seen :]
        self._seen = len(self.transport.written)
        return new

    def hello(self, address: Address) -> list[tuple[bytes, Address]]:
        """Be challenged, answer; what the answer drew."""
        self.send(b"hi\n", address)
        ((challenge, to),) = self.take()
        assert to == address
        match = CHALLENGE.match(challenge)
        assert match is not None
        self.token = match[1]
        self.send(b"/hello " + match[1] + b"\n/rooms\n/who\n", address)
        return self.take()


def test_udp_passes_the_host_and_its_name(
    server: ChatServer, clock: Clock, bans: Bans
) -> None:
    udp = Udp(server, clock)
    address = ("::ffff:198.51.100.1", 5555)
    assert udp.hello(address)[0][0].startswith(b"* Welcome")
    participant = udp.protocol.sessions[address].participant
    assert participant is not None
    assert (participant.host, participant.transport) == ("198.51.100.1", "udp")


@pytest.mark.parametrize("host", [BAD_HOST, f"::ffff:{BAD_HOST}"])
def test_a_banned_udp_hello_gets_one_datagram_and_no_session(
    server: ChatServer, clock: Clock, bans: Bans, host: str
) -> None:
    udp = Udp(server, clock)
    address = (host, 5555)
    assert udp.hello(address) == [(BANNED, address)]
    assert bans.asked == [(BAD_HOST, None)]
    assert udp.protocol.sessions == {}
    assert (udp.admission.total, udp.admission.per_group) == (0, {})
    assert server.participants == {}
    assert udp.protocol.stats.banned == 1
    # Unproven again: a line that is not /hello draws no challenge this soon.
    udp.send(b"/rooms\n", address)
    assert udp.take() == []


def test_a_banned_address_gets_at_most_one_line_every_10_seconds(
    server: ChatServer, clock: Clock, bans: Bans
) -> None:
    udp = Udp(server, clock)
    address = (BAD_HOST, 5555)
    assert udp.hello(address) == [(BANNED, address)]
    for _ in range(20):
        clock.advance(0.4)
        udp.send(b"/hello " + udp.token + b"\n", address)
    assert udp.take() == []
    assert udp.protocol.stats.banned == 21
    clock.advance(2.1)  # 10.1 s after the first
    udp.send(b"/hello " + udp.token + b"\n", address)
    assert udp.take() == [(BANNED, address)]


def test_the_banned_lines_table_is_bounded(
    server: ChatServer, clock: Clock, bans: Bans
) -> None:
    limiter = ChallengeLimiter(capacity=3)
    udp = Udp(server, clock, banned=limiter)
    sent = [udp.hello((BAD_HOST, port)) for port in range(1000, 1010)]
    assert sent[:3] == [[(BANNED, (BAD_HOST, port))] for port in range(1000, 1003)]
    assert sent[3:] == [[]] * 7
    assert len(limiter) == 3


def test_a_ban_the_core_finds_at_connect_ends_the_udp_session(
    server: ChatServer, clock: Clock, bans: Bans
) -> None:
    bans.miss = 1  # the transport's check passes, the core's does not
    udp = Udp(server, clock)
    address = (BAD_HOST, 5555)
    assert udp.hello(address) == [(BANNED, address)]
    assert udp.protocol.sessions == {}
    assert udp.admission.total == 0
    assert server.participants == {}
    udp.send(b"/rooms\n", address)
    assert udp.take() == []  # unproven, and challenged a moment ago
