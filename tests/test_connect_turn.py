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
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import attrs
import pytest
import pytest_twisted
from _redis import failures
from conftest import TIMEOUT
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent

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


def test_a_release_that_fails_is_logged_and_the_others_still_go(
    log_events: list[LogEvent],
) -> None:
    rig = TurnRig()
    first, firsts = rig.connect()
    second, seconds = rig.connect()

    def broken() -> None:
        raise RuntimeError("boom")

    first.dataReceived(b"/ping\n")
    rig.server.outbox.after_turn(broken)
    second.dataReceived(b"/join #r1\n")
    rig.turn()
    assert len(failures(log_events)) == 1
    assert len(seconds.writes) == 1
    assert rig.server.outbox._after == []
    assert firsts.writes  # its welcome went out before the broken release


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


async def _wait_for(done: Callable[[], bool], what: str) -> None:
    """Let the reactor run until ``done()``, at most TIMEOUT seconds."""
    deadline = reactor.seconds() + TIMEOUT
    while not done():
        assert reactor.seconds() < deadline, f"never saw {what}"
        ready: Deferred[None] = Deferred()
        reactor.callLater(0.01, ready.callback, None)
        await ready


async def _until(seen: list[tuple[object, bytes]], marker: bytes) -> None:
    """Wait (bounded) until a write carrying ``marker`` went out."""
    await _wait_for(
        lambda: any(marker in data for _, data in seen), f"a write with {marker!r}"
    )


def _spoke_first(port: int, data: bytes) -> socket.socket:
    """A client that connects and speaks while the reactor is not running
    (this coroutine holds it), so its lines are there before the accept."""
    client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    client.sendall(data)
    return client


def _read_until(client: socket.socket, marker: bytes) -> bytes:
    """What ``client`` reads until ``marker`` (the daemon wrote it already)."""
    client.settimeout(TIMEOUT)
    got = b""
    while marker not in got:
        got += client.recv(4096)
    return got


def _port_of(service: Any, name: str) -> int:
    listener = next(iter(service.getServiceNamed(name)))
    return int(listener._waitingForPort.result.getHost().port)


@pytest_twisted.async_yield_fixture
async def ports() -> AsyncIterator[dict[str, int]]:
    """A daemon with a line and an IRC listener on loopback (its ports),
    stopped with its clients afterwards."""
    settings = Settings(tcp=("tcp:0:interface=127.0.0.1",), history_db="off")
    service = make_chat_service(
        settings.with_listeners({"irc": ("tcp:0:interface=127.0.0.1",)}), reactor
    )
    service.startService()
    for name in ("tcp", "irc"):
        for listener in service.getServiceNamed(name):
            await listener._waitingForPort
    yield {name: _port_of(service, name) for name in ("tcp", "irc")}
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_client_that_spoke_first_gets_welcome_and_answers_in_one_write(
    writes: list[tuple[object, bytes]],
    ports: dict[str, int],
) -> None:
    client = _spoke_first(ports["tcp"], b"/nick early\n/ping\n")
    await _until(writes, b"* pong")
    assert len(writes) == 1
    said = lines(writes[0][1])
    assert said[0].startswith("* Welcome to twisted-chat, guest")
    assert said[1:] == [
        "* You joined #lobby; nobody else is here yet.",
        "* You are now known as early.",
        "* pong",
    ]
    assert _read_until(client, b"* pong\r\n") == writes[0][1]
    client.close()


@pytest_twisted.ensureDeferred
async def test_an_irc_client_that_spoke_first_is_registered_in_one_write(
    writes: list[tuple[object, bytes]],
    ports: dict[str, int],
) -> None:
    client = _spoke_first(ports["irc"], b"NICK early\r\nUSER e 0 * :E\r\nPING :x\r\n")
    await _until(writes, b"PONG")
    assert len(writes) == 1
    said = writes[0][1].decode()
    assert " 001 early :" in said
    assert said.index(" 001 ") < said.index(" 422 ") < said.index("PONG")
    client.close()


@pytest_twisted.ensureDeferred
async def test_a_client_gone_before_the_accept_is_a_quit(
    writes: list[tuple[object, bytes]],
    ports: dict[str, int],
) -> None:
    port = ports["tcp"]
    watcher = _spoke_first(port, b"/nick watcher\n")
    await _until(writes, b"known as watcher")
    _spoke_first(port, b"").close()
    await _until(writes, b" quit (connection lost)")
    assert b"joined #lobby" in _read_until(watcher, b" quit (connection lost)")
    watcher.close()


@pytest_twisted.ensureDeferred
async def test_an_early_read_that_fails_drops_that_client_only(
    writes: list[tuple[object, bytes]],
    ports: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    log_events: list[LogEvent],
) -> None:
    port = ports["tcp"]
    real = ChatLineProtocol.dataReceived

    def broken(self: ChatLineProtocol, data: bytes) -> None:
        if b"boom" in data:
            raise RuntimeError("a bug")
        real(self, data)

    monkeypatch.setattr(ChatLineProtocol, "dataReceived", broken)
    victim = _spoke_first(port, b"boom\n")
    await _wait_for(lambda: bool(failures(log_events)), "a failure logged")
    victim.settimeout(TIMEOUT)
    with pytest.raises(ConnectionResetError):  # aborted, as the reactor does
        victim.recv(4096)  # nothing was written to it
    assert len(failures(log_events)) == 1
    other = _spoke_first(port, b"/ping\n")
    await _until(writes, b"* pong")
    other.close()
    victim.close()
