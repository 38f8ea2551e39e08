"""The TCP adapter against StringTransport: framing, cleaning and limits."""

from __future__ import annotations

import itertools
import tracemalloc
from typing import cast

import attrs
from twisted.internet import ssl
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from twisted_chat.core.admission import CONNECT_BURST, CONNECT_WINDOW, Admission
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.settings import Settings
from twisted_chat.testing_tls import self_signed_pem
from twisted_chat.transports.stream_output import tls_held, unsent_bytes
from twisted_chat.transports.tcp import (
    HANDSHAKE_TIMEOUT,
    ChatLineProtocol,
    ChatServerFactory,
)

_ports = itertools.count(40000)


class Harness:
    """A factory on a Clock, and StringTransport clients connected to it."""

    def __init__(self, **settings: object) -> None:
        self.clock = Clock()
        self.settings = attrs.evolve(Settings(), **settings)  # type: ignore[arg-type]
        self.server = ChatServer(self.settings, self.clock.seconds)
        self.admission = Admission(
            max_clients=self.settings.max_clients,
            max_per_ip=self.settings.max_per_ip,
        )
        self.factory = ChatServerFactory(self.server, self.admission, self.clock)

    def connect(
        self, host: str = "127.0.0.1", nick: str | None = None, *, keep: bool = False
    ) -> tuple[ChatLineProtocol, StringTransport]:
        address: IPv4Address | IPv6Address
        if ":" in host:
            address = IPv6Address("TCP", host, next(_ports))
        else:
            address = IPv4Address("TCP", host, next(_ports))
        protocol = cast("ChatLineProtocol", self.factory.buildProtocol(address))
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        if nick is not None:
            protocol.dataReceived(f"/nick {nick}\n".encode())
        if not keep:
            transport.clear()
        return protocol, transport


def lines_of(transport: StringTransport) -> list[str]:
    """What the server wrote, as text lines without CRLF."""
    data: bytes = transport.value()
    assert data == b"" or data.endswith(b"\r\n"), data
    return data.decode("utf-8").split("\r\n")[:-1]


def test_accepts_lf_crlf_and_bare_cr() -> None:
    """Lines ending in LF, CRLF or a bare CR all reach the room."""
    chat = Harness(flood_burst=0)
    alice, _ = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice.dataReceived(b"one\ntwo\r\nthree\rfour\r\n")
    assert lines_of(bob) == [
        "[#lobby] <alice> one",
        "[#lobby] <alice> two",
        "[#lobby] <alice> three",
        "[#lobby] <alice> four",
    ]


def test_crlf_split_across_reads_is_one_line_ending() -> None:
    """A CR at the end of one read and its LF in the next make one line end."""
    chat = Harness()
    alice, _ = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice.dataReceived(b"hello\r")
    alice.dataReceived(b"\nworld\r\n")
    assert lines_of(bob) == ["[#lobby] <alice> hello", "[#lobby] <alice> world"]


def test_line_split_across_reads() -> None:
    """A line arriving in pieces is delivered once, whole."""
    chat = Harness()
    alice, _ = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    for piece in (b"hel", b"lo wo", b"rld", b"\n"):
        alice.dataReceived(piece)
    assert lines_of(bob) == ["[#lobby] <alice> hello world"]


def test_multibyte_character_split_across_reads() -> None:
    """A UTF-8 character cut between two reads is decoded whole, not replaced."""
    chat = Harness()
    alice, _ = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    data = "你好 ✓\n".encode()
    alice.dataReceived(data[:1])
    alice.dataReceived(data[1:4])
    alice.dataReceived(data[4:])
    assert lines_of(bob) == ["[#lobby] <alice> 你好 ✓"]


def test_invalid_utf8_is_replaced() -> None:
    """Bytes that are not UTF-8 become U+FFFD instead of breaking anything."""
    chat = Harness()
    alice, _ = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice.dataReceived(b"caf\xe9 \xc3\x28 ok\n")
    assert lines_of(bob) == ["[#lobby] <alice> caf\ufffd \ufffd( ok"]


def test_server_lines_end_in_crlf() -> None:
    """Every byte the server writes belongs to a CRLF-terminated line."""
    chat = Harness()
    protocol, transport = chat.connect()
    protocol.dataReceived(b"/help\n/rooms\n")
    value = transport.value()
    assert value.endswith(b"\r\n")
    assert value.count(b"\n") == value.count(b"\r\n")


def test_blank_and_whitespace_lines_are_ignored() -> None:
    """Empty and all-whitespace lines produce nothing for anyone."""
    chat = Harness()
    alice, alice_out = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice_out.clear()
    alice.dataReceived(b"\n\r\n   \n\t\n")
    assert bob.value() == b""
    assert alice_out.value() == b""


def test_control_and_escape_sequences_never_reach_others() -> None:
    """Telnet negotiation, ANSI escapes and the bell are removed from messages."""
    chat = Harness()
    alice, _ = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice.dataReceived(b"\xff\xfb\x01hi \x1b[2J\x1b[31mred\x1b[0m\x07 there\n")
    assert lines_of(bob) == ["[#lobby] <alice> hi red there"]


def test_overlong_line_is_refused_and_the_next_line_works() -> None:
    """A line over --max-line gets an error; the next line in the same read goes."""
    chat = Harness(max_line=32)
    alice, alice_out = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice_out.clear()
    alice.dataReceived(b"x" * 33 + b"\nshort\n")
    assert lines_of(alice_out) == [
        "! line-too-long: Lines are at most 32 bytes; that one was not sent."
    ]
    assert lines_of(bob) == ["[#lobby] <alice> short"]
    assert not alice_out.disconnecting


def test_line_of_exactly_the_limit_is_accepted() -> None:
    """--max-line counts bytes without the line ending, inclusive."""
    chat = Harness(max_line=32)
    alice, _ = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice.dataReceived(b"y" * 32 + b"\r\n")
    assert lines_of(bob) == ["[#lobby] <alice> " + "y" * 32]


def test_unterminated_flood_is_discarded_without_buffering() -> None:
    """An endless line is refused once and never held in memory."""
    chat = Harness(max_line=1024)
    alice, alice_out = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice_out.clear()
    chunk = b"z" * 65536
    for _ in range(128):  # 8 MiB with no newline
        alice.dataReceived(chunk)
        assert alice._intake.held <= 1024
    alice.dataReceived(b"tail of the long line\nnext\n")
    assert lines_of(alice_out) == [
        "! line-too-long: Lines are at most 1024 bytes; that one was not sent."
    ]
    assert lines_of(bob) == ["[#lobby] <alice> next"]


def test_paste_is_delayed_not_dropped_by_flood_control() -> None:
    """Past the burst, reading pauses and the rest arrives at the rate, in order."""
    chat = Harness(flood_burst=10, flood_rate=5)
    alice, alice_out = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice_out.clear()
    alice.dataReceived(b"".join(b"line %d\n" % n for n in range(50)))
    assert len(lines_of(bob)) == 9  # the burst of 10, less the /nick line
    assert alice_out.producerState == "paused"
    for _ in range(100):
        chat.clock.advance(0.2)
    assert lines_of(bob) == [f"[#lobby] <alice> line {n}" for n in range(50)]
    assert alice_out.producerState == "producing"
    assert not any(line.startswith("!") for line in lines_of(alice_out))


def test_flood_control_off_takes_everything_at_once() -> None:
    """--flood-burst 0 turns flood control off."""
    chat = Harness(flood_burst=0)
    alice, alice_out = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice_out.clear()
    alice.dataReceived(b"".join(b"m%d\n" % n for n in range(100)))
    assert len(lines_of(bob)) == 100
    assert alice_out.producerState == "producing"


def test_slow_reader_is_dropped_at_the_send_queue_limit() -> None:
    """A client that stops reading is cut off once its unsent output passes the cap."""
    chat = Harness(max_sendq=128 * 1024, flood_burst=0)
    alice, _ = chat.connect(nick="alice")
    slow, slow_out = chat.connect(nick="slow")
    _, bob = chat.connect(nick="bob")
    slow.transport.producer.pauseProducing()  # type: ignore[attr-defined]  # what Twisted does at 64 KiB unsent
    text = b"x" * 900 + b"\n"
    for _ in range(80):
        alice.dataReceived(text)
    assert slow_out.disconnected  # aborted, not a graceful close
    assert len(lines_of(bob)) == 80
    slow.connectionLost(Failure(ConnectionError("aborted")))
    assert lines_of(bob)[-1] == "* slow quit (too slow to read, send queue full)"


def test_reader_that_catches_up_is_kept() -> None:
    """Output that drains before the cap resets the count."""
    chat = Harness(max_sendq=128 * 1024, flood_burst=0)
    alice, _ = chat.connect(nick="alice")
    _, reader = chat.connect(nick="reader")
    for _ in range(10):
        reader.producer.pauseProducing()  # type: ignore[union-attr]
        for _ in range(50):
            alice.dataReceived(b"y" * 900 + b"\n")
        reader.producer.resumeProducing()  # type: ignore[union-attr]
    assert not reader.disconnecting


def test_per_ip_cap_refuses_with_a_reason() -> None:
    """Past --max-per-ip, a new connection gets one ! line and is closed."""
    chat = Harness(max_per_ip=2)
    chat.connect()
    chat.connect()
    _, refused = chat.connect(keep=True)
    assert lines_of(refused)[0].startswith("! too-many-connections:")
    assert refused.disconnecting
    _, other = chat.connect(host="127.0.0.2")
    assert not other.disconnecting


def test_ipv6_clients_are_counted_per_64() -> None:
    """Two addresses in one IPv6 /64 share one per-address allowance."""
    chat = Harness(max_per_ip=1)
    chat.connect(host="2001:db8::1")
    _, refused = chat.connect(host="2001:db8::2")
    assert refused.disconnecting
    _, other = chat.connect(host="2001:db8:0:1::1")
    assert not other.disconnecting


def test_max_clients_refuses_and_frees_on_disconnect() -> None:
    """--max-clients counts connections; a slot frees when one leaves."""
    chat = Harness(max_clients=1)
    first, _ = chat.connect()
    _, refused = chat.connect(host="127.0.0.3", keep=True)
    assert lines_of(refused)[0].startswith("! server-full:")
    first.connectionLost(Failure(ConnectionError()))
    _, later = chat.connect(host="127.0.0.4")
    assert not later.disconnecting


def test_lost_connection_tells_the_room() -> None:
    """A dropped connection leaves its rooms and the others see why."""
    chat = Harness()
    alice, _ = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice.connectionLost(Failure(ConnectionError()))
    assert lines_of(bob) == [
        "* alice quit (connection lost)",
    ]
    assert "alice" not in chat.server.participants


def test_quit_closes_the_connection_and_ignores_what_follows() -> None:
    """After /quit nothing more from that client reaches the room."""
    chat = Harness()
    alice, alice_out = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice_out.clear()
    alice.dataReceived(b"/quit gone fishing\nstill here?\n")
    assert alice_out.disconnecting
    assert lines_of(bob) == [
        "* alice quit (gone fishing)",
    ]


def test_telnet_cr_nul_counts_as_cr() -> None:
    """Telnet clients end lines with CR NUL; that is one line end."""
    chat = Harness()
    alice, _ = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice.dataReceived(b"one\r\x00two\r\x00")
    assert lines_of(bob) == ["[#lobby] <alice> one", "[#lobby] <alice> two"]


def test_unsent_bytes_reads_socket_and_tls_buffers() -> None:
    """The send queue is measured from the transport, through a TLS layer too."""

    class Socket:
        dataBuffer = b"x" * 100
        offset = 40
        _tempDataLen = 7

    class Tls:
        transport = Socket()

    assert unsent_bytes(Socket()) == 67
    assert unsent_bytes(Tls()) == 67
    assert unsent_bytes(StringTransport()) is None


class PartialSocket:
    """A socket that takes at most ``room`` bytes per send, or fails."""

    def __init__(self, room: int, error: OSError | None = None) -> None:
        self.room = room
        self.error = error
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        self.sent.append(data[: self.room])
        return min(self.room, len(data))


def write_through_client(
    sock: PartialSocket,
) -> tuple[ChatLineProtocol, StringTransport]:
    chat = Harness()
    protocol, transport = chat.connect(nick="alice")
    transport.dataBuffer = b""  # type: ignore[attr-defined]
    transport._tempDataLen = 0  # type: ignore[attr-defined]
    protocol._socket = sock  # type: ignore[assignment]
    return protocol, transport


def test_write_through_sends_now_and_queues_the_rest() -> None:
    """With nothing queued, lines go straight to the socket; the rest is queued."""
    sock = PartialSocket(room=5)
    protocol, transport = write_through_client(sock)
    protocol.send(b"hello world\r\n")
    assert sock.sent == [b"hello"]
    assert transport.value() == b" world\r\n"


def test_write_through_never_overtakes_queued_output() -> None:
    """Once output is queued, new lines queue behind it, in order."""
    sock = PartialSocket(room=100)
    protocol, transport = write_through_client(sock)
    transport._tempDataLen = 3  # type: ignore[attr-defined]
    protocol.send(b"second\r\n")
    assert sock.sent == []
    assert transport.value() == b"second\r\n"


def test_write_through_error_leaves_it_to_the_transport() -> None:
    """A socket error hands the whole line to Twisted, which reports it as usual."""
    sock = PartialSocket(room=100, error=ConnectionResetError())
    protocol, transport = write_through_client(sock)
    protocol.send(b"line\r\n")
    assert transport.value() == b"line\r\n"


def test_a_stream_of_telnet_commands_is_flood_controlled() -> None:
    """Telnet negotiation makes no lines, but a flood of it still pauses reading."""
    chat = Harness(flood_burst=10, flood_rate=5)
    alice, alice_out = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice.dataReceived(b"\xff\xf1" * 32768 + b"still here\n")
    assert alice_out.producerState == "paused"
    assert bob.value() == b""
    for _ in range(3000):
        if alice_out.producerState == "producing":
            break
        chat.clock.advance(1)
    assert lines_of(bob) == ["[#lobby] <alice> still here"]


def test_ordinary_telnet_negotiation_costs_nothing_noticeable() -> None:
    """A real telnet client's few negotiation bytes do not delay its first line."""
    chat = Harness(flood_burst=10, flood_rate=5)
    alice, alice_out = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice.dataReceived(b"\xff\xfd\x03\xff\xfb\x18\xff\xfb\x1f\xff\xfb\x20hi\r\n")
    assert alice_out.producerState == "producing"
    assert lines_of(bob) == ["[#lobby] <alice> hi"]


# -- TLS: nobody chats, or is sent anything, before the handshake -------------


class TcpStringTransport(StringTransport):
    """A StringTransport with the TCP option TLS passes through."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        """Nothing to do in memory."""


class TlsHarness(Harness):
    """The chat factory behind Twisted's TLS wrapper, over memory transports."""

    def __init__(self, **settings: object) -> None:
        super().__init__(**settings)
        self.pem = self_signed_pem()
        server_options = ssl.PrivateCertificate.loadPEM(self.pem).options()
        self.tls_factory = TLSMemoryBIOFactory(
            server_options, False, self.factory, clock=self.clock
        )

    def connect_tls(
        self, host: str = "127.0.0.1"
    ) -> tuple[ChatLineProtocol, TLSMemoryBIOProtocol, StringTransport]:
        """A TLS connection whose client has sent nothing yet."""
        address = IPv4Address("TCP", host, next(_ports))
        wrapper = self.tls_factory.buildProtocol(address)
        transport = TcpStringTransport(peerAddress=address)
        wrapper.makeConnection(transport)
        return cast("ChatLineProtocol", wrapper.wrappedProtocol), wrapper, transport

    def tls_client(self) -> tuple[TLSMemoryBIOProtocol, StringTransport, list[bytes]]:
        """A TLS client protocol that trusts our certificate; records cleartext."""
        received: list[bytes] = []

        class Collect(Protocol):
            def dataReceived(self, data: bytes) -> None:
                received.append(data)

        authority = ssl.Certificate.loadPEM(self.pem)
        options = ssl.optionsForClientTLS("localhost", trustRoot=authority)
        factory = TLSMemoryBIOFactory(
            options, True, Factory.forProtocol(Collect), clock=self.clock
        )
        client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9000))
        transport = StringTransport()
        client.makeConnection(transport)
        return client, transport, received


def pump(
    client: TLSMemoryBIOProtocol,
    client_out: StringTransport,
    server: TLSMemoryBIOProtocol,
    server_out: StringTransport,
) -> None:
    """Move bytes both ways until neither side has anything more to say."""
    for _ in range(20):
        to_server, to_client = client_out.value(), server_out.value()
        if not to_server and not to_client:
            return
        client_out.clear()
        server_out.clear()
        if to_server:
            server.dataReceived(to_server)
        if to_client:
            client.dataReceived(to_client)


def test_tls_client_joins_the_chat_only_once_its_handshake_is_done() -> None:
    """Over TLS the welcome, and a place in #lobby, wait for the handshake."""
    chat = TlsHarness()
    protocol, wrapper, server_out = chat.connect_tls()
    assert protocol.participant is None
    assert len(chat.server.participants) == 0
    client, client_out, received = chat.tls_client()
    pump(client, client_out, wrapper, server_out)
    assert [p.client for p in chat.server.participants.values()] == [protocol]
    chat.clock.advance(0)  # TLS sends small writes at the end of the turn
    pump(client, client_out, wrapper, server_out)
    assert b"".join(received).startswith(b"* Welcome to twisted-chat, guest1!")
    chat.clock.advance(HANDSHAKE_TIMEOUT * 2)
    assert not server_out.disconnecting


def test_a_refused_tls_client_that_finishes_its_handshake_does_not_join() -> None:
    """Past --max-clients the handshake only carries the refusal; nobody joins."""
    chat = TlsHarness(max_clients=1)
    chat.connect(nick="alice")
    protocol, wrapper, server_out = chat.connect_tls()
    client, client_out, received = chat.tls_client()
    pump(client, client_out, wrapper, server_out)
    chat.clock.advance(0)
    pump(client, client_out, wrapper, server_out)
    assert b"".join(received).startswith(b"! server-full: ")
    assert protocol.participant is None
    assert len(chat.server.participants) == 1
    assert chat.admission.total == 1


def test_tls_client_that_never_finishes_its_handshake_is_cut_off() -> None:
    """Half a ClientHello, then nothing: the connection is aborted at the deadline."""
    chat = TlsHarness()
    protocol, wrapper, server_out = chat.connect_tls()
    _, client_out, _ = chat.tls_client()
    hello = client_out.value()
    wrapper.dataReceived(hello[: len(hello) // 2])
    chat.clock.advance(HANDSHAKE_TIMEOUT - 0.1)
    assert (server_out.disconnecting, server_out.disconnected) == (False, False)
    chat.clock.advance(0.2)
    # Aborted, not waiting for a close alert.
    assert (server_out.disconnecting, server_out.disconnected) == (True, True)
    protocol.connectionLost(Failure(ConnectionError("aborted")))
    assert chat.admission.total == 0
    assert not chat.clock.getDelayedCalls()


def test_nothing_is_queued_for_a_tls_client_in_its_handshake() -> None:
    """Room traffic never reaches, or piles up for, a client that has not handshaken."""
    chat = TlsHarness(flood_burst=0)
    alice, _ = chat.connect(nick="alice")
    _, wrapper, server_out = chat.connect_tls()
    server_out.clear()
    for _ in range(1000):
        alice.dataReceived(b"x" * 500 + b"\n")
    chat.clock.advance(0)
    assert wrapper._appSendBuffer == []
    assert tls_held(wrapper) == 0
    assert server_out.value() == b""


def test_unsent_bytes_counts_what_tls_holds() -> None:
    """Cleartext waiting in the TLS layer counts towards --max-sendq."""
    chat = TlsHarness()
    _, wrapper, under = chat.connect_tls()
    under.dataBuffer = b"c" * 10  # type: ignore[attr-defined]
    under.offset = 0  # type: ignore[attr-defined]
    under._tempDataLen = 5  # type: ignore[attr-defined]
    wrapper.write(b"a" * 3000)  # aggregated for the end of the turn
    assert unsent_bytes(wrapper) == 3015
    chat.clock.advance(0)  # handed to OpenSSL, which waits for the handshake
    assert sum(map(len, wrapper._appSendBuffer)) == 3000
    assert unsent_bytes(wrapper) == 3015


def test_unsent_bytes_counts_ciphertext_left_in_the_tls_memory_bio() -> None:
    """Ciphertext OpenSSL made but Twisted has not moved to the socket counts too."""
    chat = TlsHarness()
    _, wrapper, under = chat.connect_tls()
    client, client_out, _ = chat.tls_client()
    pump(client, client_out, wrapper, under)
    chat.clock.advance(0)  # the welcome leaves the end-of-turn aggregator
    pump(client, client_out, wrapper, under)
    under.dataBuffer = b""  # type: ignore[attr-defined]
    under.offset = 0  # type: ignore[attr-defined]
    under._tempDataLen = 0  # type: ignore[attr-defined]
    assert unsent_bytes(wrapper) == 0
    wrapper._tlsConnection.send(b"a" * 1000)  # encrypted, still in the BIO
    held = unsent_bytes(wrapper)
    assert held is not None
    assert held > 1000
    wrapper._flushSendBIO()  # handed to the socket transport (a fake here)
    assert unsent_bytes(wrapper) == 0


# -- per address: connection rate and flood credit ---------------------------


def test_reconnecting_does_not_refill_the_flood_burst() -> None:
    """A new connection from the same address starts from what the last one left."""
    chat = Harness(flood_burst=10, flood_rate=5)
    _, bob = chat.connect(nick="bob")
    alice, _ = chat.connect()
    bob.clear()
    alice.dataReceived(b"".join(b"a%d\n" % n for n in range(10)))
    assert len(lines_of(bob)) == 10
    alice.connectionLost(Failure(ConnectionError("closed")))
    again, again_out = chat.connect()
    bob.clear()
    again_out.clear()
    again.dataReceived(b"b0\nb1\n")
    assert lines_of(bob) == []
    assert again_out.producerState == "paused"
    chat.clock.advance(0.2)
    assert lines_of(bob) == ["[#lobby] <guest3> b0"]


def test_another_address_keeps_its_own_flood_credit() -> None:
    """Credit is per address: one address's flood does not slow another."""
    chat = Harness(flood_burst=10, flood_rate=5)
    _, bob = chat.connect(host="192.0.2.1", nick="bob")
    alice, _ = chat.connect()
    alice.dataReceived(b"".join(b"a%d\n" % n for n in range(10)))
    alice.connectionLost(Failure(ConnectionError("closed")))
    other, _ = chat.connect(host="192.0.2.9")
    bob.clear()
    other.dataReceived(b"".join(b"c%d\n" % n for n in range(10)))
    assert len(lines_of(bob)) == 10


def test_reconnect_loop_is_refused_with_one_line() -> None:
    """Past the connection rate a new connection gets one ! line and is closed."""
    chat = Harness(max_per_ip=4)
    for _ in range(CONNECT_BURST):
        protocol, transport = chat.connect()
        assert not transport.disconnecting
        protocol.connectionLost(Failure(ConnectionError("closed")))
    protocol, transport = chat.connect(keep=True)
    assert transport.disconnecting
    (line,) = lines_of(transport)
    assert line.startswith("! too-many-connections: Too many new connections")
    assert "wait a second" in line
    chat.clock.advance(CONNECT_WINDOW / CONNECT_BURST)
    _, transport = chat.connect()
    assert not transport.disconnecting


# -- input held by flood control costs O(1) a line ------------------------------


def test_waking_up_for_one_line_of_a_held_paste_copies_no_more_than_that_line() -> None:
    """Each wake-up lets a line through without re-splitting what still waits."""
    chat = Harness(flood_burst=10, flood_rate=5)
    alice, _ = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice.dataReceived(b"x\n" * 32768)
    bob.clear()
    tracemalloc.start()
    try:
        peaks = []
        for _ in range(20):
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            chat.clock.advance(0.2)
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()
    assert len(lines_of(bob)) == 20
    assert max(peaks) < 16 * 1024, peaks  # the paste is 64 KiB


def test_blank_lines_cost_no_token_and_no_wake_up() -> None:
    """A paste of empty lines is skipped whole; the line after it is not held up."""
    chat = Harness(flood_burst=10, flood_rate=5)
    alice, alice_out = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice.dataReceived(b"\r\n" * 32768 + b"\n" * 32768 + b"\r" * 10 + b"hi\n")
    assert lines_of(bob) == ["[#lobby] <alice> hi"]
    assert alice_out.producerState == "producing"
    assert alice._intake.held == 0


def test_lines_of_spaces_take_a_token_each() -> None:
    """A line of blanks is a line: it is charged, so it is no free CPU burner."""
    chat = Harness(flood_burst=10, flood_rate=5)
    alice, alice_out = chat.connect(nick="alice")
    _, bob = chat.connect(nick="bob")
    alice.dataReceived(b" \n" * 9 + b"hi\n")
    assert alice_out.producerState == "paused"
    assert lines_of(bob) == []
    chat.clock.advance(0.2)
    assert lines_of(bob) == ["[#lobby] <alice> hi"]


def test_overlong_line_in_a_held_paste_is_refused_in_turn() -> None:
    """The --max-line rule holds for lines waiting behind flood control."""
    chat = Harness(flood_burst=2, flood_rate=5, max_line=10)
    alice, alice_out = chat.connect()
    _, bob = chat.connect(nick="bob")
    alice_out.clear()
    alice.dataReceived(b"a\nb\nc\n" + b"z" * 11 + b"\nd\n" + b"y" * 20)
    assert lines_of(bob) == ["[#lobby] <guest1> a", "[#lobby] <guest1> b"]
    for _ in range(5):
        chat.clock.advance(0.2)
    assert lines_of(bob)[2:] == ["[#lobby] <guest1> c", "[#lobby] <guest1> d"]
    assert (
        lines_of(alice_out)
        == ["! line-too-long: Lines are at most 10 bytes; that one was not sent."] * 2
    )
    alice.dataReceived(b"yyy\ne\n")
    chat.clock.advance(0.2)
    assert lines_of(bob)[-1] == "[#lobby] <guest1> e"


def test_refused_tls_client_that_never_handshakes_is_cut_off_too() -> None:
    """TLS holds a refusal line until the handshake; the deadline still applies."""
    chat = TlsHarness(max_clients=1)
    chat.connect()
    protocol, wrapper, server_out = chat.connect_tls()
    assert chat.admission.total == 1
    assert wrapper.disconnecting  # closing, but waiting to send the refusal
    chat.clock.advance(HANDSHAKE_TIMEOUT - 0.1)
    assert not server_out.disconnecting
    chat.clock.advance(0.1)
    assert (server_out.disconnecting, server_out.disconnected) == (True, True)
    protocol.connectionLost(Failure(ConnectionError("aborted")))
    assert chat.admission.total == 1


def test_lines_read_together_are_charged_a_token_each() -> None:
    """Lines the bucket can pay for go at once, and each one is paid for."""
    chat = Harness(flood_burst=10, flood_rate=5)
    alice, alice_out = chat.connect()
    _, bob = chat.connect(nick="bob")
    bob.clear()
    alice.dataReceived(b"a\nb\n\nc\nd\ne\n")
    assert len(lines_of(bob)) == 5
    alice.dataReceived(b"".join(b"f%d\n" % n for n in range(6)))
    assert len(lines_of(bob)) == 10
    assert alice_out.producerState == "paused"
    chat.clock.advance(0.2)
    assert lines_of(bob)[-1] == "[#lobby] <guest1> f5"


def test_a_paste_held_from_its_first_line_arrives_whole() -> None:
    """With no credit left at all, a paste still arrives in order, at the rate."""
    chat = Harness(flood_burst=3, flood_rate=5)
    _, bob = chat.connect(nick="bob")
    alice, _ = chat.connect()
    alice.dataReceived(b"x\ny\nz\n")
    alice.connectionLost(Failure(ConnectionError("closed")))
    again, _ = chat.connect()
    bob.clear()
    again.dataReceived(b"".join(b"p%d\n" % n for n in range(20)))
    assert lines_of(bob) == []
    for _ in range(40):
        chat.clock.advance(0.2)
    assert lines_of(bob) == [f"[#lobby] <guest3> p{n}" for n in range(20)]
