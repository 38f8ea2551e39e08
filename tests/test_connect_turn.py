"""
A new client's output in one write (issue 18): held to the end of the
reactor turn, and what it sent before it was accepted read at once.

- With a reactor, the answers a read draws and a new client's welcome wait
  for the end of the turn and go out with the turn's room lines and pong in
  one write, in the order they were said; a read of plain messages holds
  nothing (the fan-out path is unchanged); without a reactor (``defer``
  None) everything goes at once, as before.
- A client that spoke before the daemon accepted it (real sockets on
  127.0.0.1, the real reactor) gets its welcome and the answers in one
  write; so does an IRC client's registration.
"""

from __future__ import annotations

import socket
from typing import Any, cast

import attrs
import pytest
import pytest_twisted
from conftest import TIMEOUT
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from twisted_chat.core.admission import Admission
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.settings import Settings
from twisted_chat.daemon.service import make_chat_service
from twisted_chat.transports.stream_writes import StreamWrites
from twisted_chat.transports.tcp import ChatLineProtocol, ChatServerFactory


class CountingTransport(StringTransport):
    """A StringTransport that remembers every write separately."""

    def __init__(self, peer: IPv4Address) -> None:
        self.writes: list[bytes] = []
        super().__init__(peerAddress=peer)

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


class TurnRig:
    """A factory whose core ends its turns on a Clock, as the daemon's does."""

    def __init__(self, **settings: object) -> None:
        self.clock = Clock()
        self.settings = attrs.evolve(Settings(), **settings)  # type: ignore[arg-type]
        self.server = ChatServer(
            self.settings,
            self.clock.seconds,
            defer=lambda f: self.clock.callLater(0, f),
            call_later=self.clock.callLater,
        )
        self.factory = ChatServerFactory(
            self.server, Admission(max_clients=0, max_per_ip=0), self.clock
        )
        self.port = 40000

    def connect(self) -> tuple[ChatLineProtocol, CountingTransport]:
        self.port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self.port)
        protocol = cast("ChatLineProtocol", self.factory.buildProtocol(peer))
        transport = CountingTransport(peer)
        protocol.makeConnection(transport)
        return protocol, transport

    def turn(self) -> None:
        self.clock.advance(0)


def lines(data: bytes) -> list[str]:
    return data.decode().split("\r\n")[:-1]


def test_a_new_clients_welcome_waits_for_the_turns_end_with_its_first_answers() -> None:
    rig = TurnRig()
    protocol, transport = rig.connect()
    assert transport.writes == []  # held to the end of the turn
    protocol.dataReceived(b"/join #r1\n/part #lobby\n/ping\n")
    assert transport.writes == []
    rig.turn()
    assert len(transport.writes) == 1
    said = lines(transport.writes[0])
    assert said[0].startswith("* Welcome to twisted-chat, guest1!")
    assert said[1:] == [
        "* You joined #lobby; nobody else is here yet.",
        "* You joined #r1; nobody else is here yet.",
        "* You left #lobby; your current room is now #r1.",
        "* pong",
    ]
    assert protocol._held is None
    assert rig.server.outbox._after == []


def test_the_turns_room_lines_join_the_held_answers_in_order() -> None:
    rig = TurnRig()
    bob, _ = rig.connect()
    alice, alices = rig.connect()
    bob.dataReceived(b"/nick bob\n/join #r1\n")
    rig.turn()
    alices.writes.clear()
    alice.dataReceived(b"/join #r1\n")  # an answer, held
    bob.dataReceived(b"hello\n")  # a room line for alice, this turn
    rig.turn()
    assert len(alices.writes) == 1
    assert lines(alices.writes[0]) == [
        "* You joined #r1; 1 other person here (/who lists them).",
        "[#r1] <bob> hello",
    ]


def test_a_read_of_plain_messages_holds_nothing() -> None:
    """The fan-out path: a sender's read leaves no output held and nothing
    waiting for the turn's end but its room."""
    rig = TurnRig()
    alice, _ = rig.connect()
    _, bobs = rig.connect()
    rig.turn()
    bobs.writes.clear()
    alice.dataReceived(b"one\ntwo\n")
    assert alice._held is None
    assert rig.server.outbox._after == []
    rig.turn()
    assert [lines(w) for w in bobs.writes] == [
        ["[#lobby] <guest1> one", "[#lobby] <guest1> two"]
    ]


def test_output_held_for_a_client_that_left_meanwhile_is_dropped() -> None:
    rig = TurnRig()
    protocol, transport = rig.connect()
    protocol.dataReceived(b"/join #r1\n")
    protocol.connectionLost()
    rig.turn()
    assert transport.writes == []
    assert rig.server.outbox._after == []


def test_without_a_reactor_nothing_waits() -> None:
    """``defer`` None (tools, the simplest tests): every answer at once."""
    clock = Clock()
    server = ChatServer(Settings(), clock.seconds)
    factory = ChatServerFactory(server, Admission(0, 0), clock)
    peer = IPv4Address("TCP", "127.0.0.1", 40001)
    protocol = cast("ChatLineProtocol", factory.buildProtocol(peer))
    transport = CountingTransport(peer)
    protocol.makeConnection(transport)
    assert len(transport.writes) == 1
    protocol.dataReceived(b"/join #r1\n")
    assert len(transport.writes) == 2


# -- real sockets: the early read --------------------------------------------


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, bytes]]:
    """Every write a stream connection makes straight to its socket."""
    seen: list[tuple[object, bytes]] = []
    original = StreamWrites._write_through

    def write_through(self: StreamWrites, data: bytes) -> None:
        seen.append((self, data))
        original(self, data)

    monkeypatch.setattr(StreamWrites, "_write_through", write_through)
    return seen


async def _until(seen: list[tuple[object, bytes]], marker: bytes) -> None:
    """Wait (bounded) until a write carrying ``marker`` went out."""
    deadline = reactor.seconds() + TIMEOUT
    while not any(marker in data for _, data in seen):
        assert reactor.seconds() < deadline, f"no write with {marker!r}"
        ready: Deferred[None] = Deferred()
        reactor.callLater(0.01, ready.callback, None)
        await ready


def _spoke_first(port: int, data: bytes) -> socket.socket:
    """A client that connects and speaks while the reactor is not running
    (this coroutine holds it), so its lines are there before the accept."""
    client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    client.sendall(data)
    return client


def _port_of(service: Any, name: str) -> int:
    listener = next(iter(service.getServiceNamed(name)))
    return int(listener._waitingForPort.result.getHost().port)


@pytest_twisted.ensureDeferred
async def test_a_client_that_spoke_first_gets_welcome_and_answers_in_one_write(
    writes: list[tuple[object, bytes]],
) -> None:
    service = make_chat_service(
        Settings(tcp=("tcp:0:interface=127.0.0.1",), history_db="off"), reactor
    )
    service.startService()
    try:
        for listener in service.getServiceNamed("tcp"):
            await listener._waitingForPort
        client = _spoke_first(_port_of(service, "tcp"), b"/nick early\n/ping\n")
        await _until(writes, b"* pong")
        assert len(writes) == 1
        said = lines(writes[0][1])
        assert said[0].startswith("* Welcome to twisted-chat, guest")
        assert said[1:] == [
            "* You joined #lobby; nobody else is here yet.",
            "* You are now known as early.",
            "* pong",
        ]
        client.settimeout(TIMEOUT)
        got = b""
        while b"* pong\r\n" not in got:
            got += client.recv(4096)
        assert got == writes[0][1]
        client.close()
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_an_irc_client_that_spoke_first_is_registered_in_one_write(
    writes: list[tuple[object, bytes]],
) -> None:
    service = make_chat_service(
        Settings(tcp=("tcp:0:interface=127.0.0.1",), history_db="off").with_listeners(
            {"irc": ("tcp:0:interface=127.0.0.1",)}
        ),
        reactor,
    )
    service.startService()
    try:
        for listener in service.getServiceNamed("irc"):
            await listener._waitingForPort
        client = _spoke_first(
            _port_of(service, "irc"), b"NICK early\r\nUSER e 0 * :E\r\nPING :x\r\n"
        )
        await _until(writes, b"PONG")
        assert len(writes) == 1
        said = writes[0][1].decode()
        assert " 001 early :" in said
        assert said.index(" 001 ") < said.index(" 422 ") < said.index("PONG")
        client.close()
    finally:
        await service.stopService()
