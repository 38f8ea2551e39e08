"""Plain lines in one read go to the core together (``ChatServer.receive_run``):
what members see, the counts and the history are those of one line at a time."""

from __future__ import annotations

import itertools
from typing import cast

import attrs
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from twisted_chat.core.admission import Admission
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.intake import LineIntake
from twisted_chat.core.settings import Settings
from twisted_chat.history.memory import MemoryStore
from twisted_chat.transports.tcp import ChatLineProtocol, ChatServerFactory

_ports = itertools.count(41000)


class Harness:
    """A batching chat (a Clock's end of turn) with TCP clients on StringTransports."""

    def __init__(self, **settings: object) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.settings = attrs.evolve(Settings(), **settings)  # type: ignore[arg-type]
        self.server = ChatServer(
            self.settings,
            self.clock.seconds,
            self.store,
            defer=lambda f: self.clock.callLater(0, f),
        )
        admission = Admission(max_clients=0, max_per_ip=0)
        self.factory = ChatServerFactory(self.server, admission, self.clock)
        self.transports: list[StringTransport] = []

    def connect(self, nick: str) -> tuple[ChatLineProtocol, StringTransport]:
        address = IPv4Address("TCP", "127.0.0.1", next(_ports))
        protocol = cast("ChatLineProtocol", self.factory.buildProtocol(address))
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        protocol.dataReceived(f"/nick {nick}\n".encode())
        self.clock.advance(0)
        self.transports.append(transport)
        return protocol, transport

    def quiet(self) -> None:
        """Forget what was sent so far (welcomes, joins)."""
        self.clock.advance(0)
        for transport in self.transports:
            transport.clear()


def lines_of(transport: StringTransport) -> list[str]:
    data: bytes = transport.value()
    assert data == b"" or data.endswith(b"\r\n"), data
    return data.decode("utf-8").split("\r\n")[:-1]


def test_a_read_of_lines_reaches_the_others_line_by_line_in_order() -> None:
    chat = Harness(flood_burst=0, flood_rate=0)
    alice, alice_out = chat.connect("alice")
    _bob, bob_out = chat.connect("bob")
    _carol, carol_out = chat.connect("carol")
    chat.quiet()
    alice.dataReceived(b"one\ntwo\r\nthree\n")
    chat.clock.advance(0)
    said = ["[#lobby] <alice> one", "[#lobby] <alice> two", "[#lobby] <alice> three"]
    assert lines_of(bob_out) == said
    assert lines_of(carol_out) == said
    assert lines_of(alice_out) == []


def test_a_run_counts_every_line_in_the_stats() -> None:
    chat = Harness(flood_burst=0, flood_rate=0)
    alice, _ = chat.connect("alice")
    chat.connect("bob")
    chat.connect("carol")
    before = (chat.server.outbox.messages, chat.server.outbox.deliveries)
    alice.dataReceived(b"one\ntwo\nthree\nfour\n")
    chat.clock.advance(0)
    after = (chat.server.outbox.messages, chat.server.outbox.deliveries)
    # Lines times members, as for lines said one by one (core/stats.py).
    assert (after[0] - before[0], after[1] - before[1]) == (4, 12)


def test_a_run_counts_every_line_for_the_metrics_by_transport() -> None:
    """``--metrics``'s messages received (``Participant.said``) and deliveries
    by transport count a run's lines one by one too."""
    chat = Harness(flood_burst=0, flood_rate=0)
    alice, _ = chat.connect("alice")
    chat.connect("bob")
    chat.connect("carol")
    chat.quiet()
    participant = alice.participant
    assert participant is not None
    said = participant.said
    delivered = chat.server.outbox.deliveries_by.get("tcp", 0)
    alice.dataReceived(b"one\ntwo\nthree\nfour\n")
    chat.clock.advance(0)
    assert participant.said - said == 4
    assert chat.server.outbox.deliveries_by["tcp"] - delivered == 12


def test_a_run_is_remembered_line_by_line() -> None:
    chat = Harness(flood_burst=0, flood_rate=0)
    alice, _ = chat.connect("alice")
    chat.connect("bob")
    alice.dataReceived(b"one\ntwo\n")
    chat.clock.advance(0)
    said = [(m.sender, m.text) for m in chat.store.recent("#lobby", 10)]
    assert said == [("alice", "one"), ("alice", "two")]


def test_commands_between_lines_keep_their_place() -> None:
    """The pong after a run comes after the others' earlier lines; lines after
    a /nick carry the new nick; lines after a /join go to the new room."""
    chat = Harness(flood_burst=0, flood_rate=0)
    alice, alice_out = chat.connect("alice")
    bob, bob_out = chat.connect("bob")
    chat.quiet()
    bob.dataReceived(b"hi\n")
    alice.dataReceived(b"one\ntwo\n/ping\n/nick ann\nthree\nfour\n")
    chat.clock.advance(0)
    assert lines_of(alice_out) == [
        "[#lobby] <bob> hi",
        "* pong",
        "* You are now known as ann.",
    ]
    assert lines_of(bob_out)[:2] == ["[#lobby] <alice> one", "[#lobby] <alice> two"]
    assert lines_of(bob_out)[-2:] == ["[#lobby] <ann> three", "[#lobby] <ann> four"]


def test_a_moderated_room_refuses_each_line_of_a_run() -> None:
    """Speech rules take the lines one by one: one error per line."""
    chat = Harness(flood_burst=0, flood_rate=0)
    alice, _ = chat.connect("alice")
    bob, bob_out = chat.connect("bob")
    alice.dataReceived(b"/join #quiet\n/room moderated on\n")
    bob.dataReceived(b"/join #quiet\n")
    chat.quiet()
    bob.dataReceived(b"one\ntwo\n")
    chat.clock.advance(0)
    errors = [line for line in lines_of(bob_out) if line.startswith("!")]
    assert len(errors) == 2


def _one_by_one(data: bytes, limit: int) -> list[object]:
    got: list[object] = []
    for line in data.split(b"\n")[:-1]:
        intake = LineIntake(None)
        intake.feed(line + b"\n", 0.0)
        got += list(intake.verdicts(0.0, limit))
    return got


@pytest.mark.parametrize(
    "data",
    [
        b"plain one\nplain two\n",
        b"plain\n\tindented\n",
        b"plain\n\x1b[31mred\n",
        b"plain\n   \n",
        b"plain\ncaf\xc3\xa9\n",
        b"plain\nbad \xff byte\n",
        b"plain\n" + b"y" * 40 + b"\n",
        b"plain\n\x7fdel\n",
    ],
)
def test_a_read_of_lines_is_judged_as_line_by_line(data: bytes) -> None:
    """The intake's one-go check of a plain read gives the verdicts that
    judging each line alone gives, whatever line breaks the pattern."""
    intake = LineIntake(None)
    intake.feed(data, 0.0)
    assert list(intake.verdicts(0.0, 32)) == _one_by_one(data, 32)
