"""
Connecting many clients cheaply (issue 18): what a connection writes, holds
and keeps, with the behaviour PROTOCOL.md promises unchanged.

- A new client's welcome and default room, and the answers one read of its
  lines draws, go out in one write each (held output), in the order they
  were said; at most ``HOLD_MAX`` chunks are held; a refusal of an overlong
  line, a ``/quit`` and a flood pause keep their place.
- The dotted-quad fast path gives the address group and ban key the slow
  path gives.
- A connection keeps no label of its peer (``peer`` makes it), nor does its
  ``tcp.Server`` keep its log prefix and ``repr`` (:class:`LeanServer`).

A slow test runs bench/connect_rate.py against a real ``twistd -n chat``.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import cast

import attrs
import pytest
from twisted.internet import tcp
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport

from twisted_chat.core.admission import Admission, address_group, canonical_ipv4
from twisted_chat.core.bans import address_key
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.settings import Settings
from twisted_chat.transports.stream_writes import HOLD_MAX
from twisted_chat.transports.tcp import ChatLineProtocol, ChatServerFactory
from twisted_chat.transports.tcp_server import LeanServer, lean_port, plain_tcp

ROOT = Path(__file__).resolve().parent.parent


class CountingTransport(StringTransport):
    """A StringTransport that remembers every write separately."""

    def __init__(self, peer: IPv4Address | IPv6Address) -> None:
        self.writes: list[bytes] = []
        super().__init__(peerAddress=peer)

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def clear(self) -> None:
        super().clear()
        self.writes.clear()


class Rig:
    """A factory on a Clock; clients over CountingTransports."""

    def __init__(self, **settings: object) -> None:
        self.clock = Clock()
        self.settings = attrs.evolve(Settings(), **settings)  # type: ignore[arg-type]
        self.server = ChatServer(self.settings, self.clock.seconds)
        self.factory = ChatServerFactory(
            self.server,
            Admission(
                max_clients=self.settings.max_clients,
                max_per_ip=self.settings.max_per_ip,
            ),
            self.clock,
        )
        self.port = 40000

    def connect(
        self, host: str = "127.0.0.1"
    ) -> tuple[ChatLineProtocol, CountingTransport]:
        self.port += 1
        peer: IPv4Address | IPv6Address = (
            IPv6Address("TCP", host, self.port)
            if ":" in host
            else IPv4Address("TCP", host, self.port)
        )
        protocol = cast("ChatLineProtocol", self.factory.buildProtocol(peer))
        transport = CountingTransport(peer)
        protocol.makeConnection(transport)
        return protocol, transport


def lines(data: bytes) -> list[str]:
    return data.decode().split("\r\n")[:-1]


# -- held output ---------------------------------------------------------------


def test_a_new_clients_welcome_and_default_room_are_one_write() -> None:
    rig = Rig()
    rig.connect()
    _, transport = rig.connect()
    assert len(transport.writes) == 1
    said = lines(transport.writes[0])
    assert said[0].startswith("* Welcome to twisted-chat, guest2!")
    assert said[1] == "* You joined #lobby; 1 other person here (/who lists them)."


def test_what_one_read_draws_is_one_write_in_order() -> None:
    rig = Rig()
    protocol, transport = rig.connect()
    transport.clear()
    protocol.dataReceived(b"/join #r1\n/part #lobby\n/ping\n")
    assert len(transport.writes) == 1
    assert lines(transport.writes[0]) == [
        "* You joined #r1; nobody else is here yet.",
        "* You left #lobby; your current room is now #r1.",
        "* pong",
    ]
    assert protocol._held is None


def test_others_are_not_held_by_somebodys_read() -> None:
    """Only the reader's own output waits for the end of its read."""
    rig = Rig(flood_burst=0)
    alice, _ = rig.connect()
    _, bobs = rig.connect()
    alice.dataReceived(b"/nick alice\n")
    bobs.clear()
    seen: list[int] = []
    original = alice._process

    def process() -> None:
        original()
        seen.append(len(bobs.writes))

    alice._process = process  # type: ignore[method-assign]
    alice.dataReceived(b"/msg guest2 hi\n")
    assert seen == [1]
    assert lines(bobs.value()) == ["[PM] <alice> hi"]


def test_at_most_hold_max_chunks_are_held() -> None:
    rig = Rig(flood_burst=0)
    protocol, transport = rig.connect()
    transport.clear()
    pings = HOLD_MAX * 2 + 3
    protocol.dataReceived(b"".join(b"/ping %d\n" % n for n in range(pings)))
    assert len(transport.writes) == 3  # HOLD_MAX, HOLD_MAX, then the rest
    assert lines(transport.value()) == [f"* pong {n}" for n in range(pings)]


def test_an_overlong_line_is_refused_in_its_place() -> None:
    rig = Rig()
    protocol, transport = rig.connect()
    transport.clear()
    too_long = b"x" * (rig.settings.max_line + 1)
    protocol.dataReceived(b"/ping 1\n" + too_long + b"\n/ping 2\n")
    said = lines(transport.value())
    assert said[0] == "* pong 1"
    assert said[1].startswith("! line-too-long:")
    assert said[2] == "* pong 2"
    assert len(transport.writes) == 1


def test_a_quit_flushes_what_was_held_before_hanging_up() -> None:
    rig = Rig()
    protocol, transport = rig.connect()
    transport.clear()
    written_before_close: list[int] = []
    lose = transport.loseConnection

    def lose_connection() -> None:
        written_before_close.append(len(transport.writes))
        lose()

    transport.loseConnection = lose_connection  # type: ignore[method-assign]
    protocol.dataReceived(b"/ping\n/quit bye\n/ping again\n")
    assert written_before_close == [1]
    assert lines(transport.value())[0] == "* pong"
    assert "* pong again" not in lines(transport.value())


def test_a_flood_pause_lets_the_answers_so_far_go_out() -> None:
    rig = Rig(flood_burst=2, flood_rate=1.0)
    protocol, transport = rig.connect()
    transport.clear()
    protocol.dataReceived(b"/ping 1\n/ping 2\n/ping 3\n")
    assert lines(transport.value()) == ["* pong 1", "* pong 2"]
    assert protocol._held is None
    transport.clear()
    rig.clock.advance(1.0)
    assert [lines(w) for w in transport.writes] == [["* pong 3"]]


def test_a_failing_read_does_not_leave_output_held() -> None:
    rig = Rig()
    protocol, transport = rig.connect()

    def broken() -> None:
        protocol.send(b"* before\r\n")
        raise RuntimeError("boom")

    protocol._process = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        protocol.dataReceived(b"/ping\n")
    assert protocol._held is None
    assert transport.writes[-1] == b"* before\r\n"


def test_bytes_sent_counts_held_output_once() -> None:
    rig = Rig()
    stats = rig.server.operators.stats
    before = stats.bytes_sent
    protocol, transport = rig.connect()
    protocol.dataReceived(b"/join #r\n/ping\n")
    assert stats.bytes_sent - before == len(transport.value())


def test_a_slow_reader_is_still_dropped_at_the_send_queue_limit() -> None:
    """Held output goes through the send-queue count when it is released."""
    rig = Rig(flood_burst=0, max_sendq=4096)
    protocol, transport = rig.connect()
    protocol.output_stalled()
    protocol.dataReceived(b"/help\n" * 40)
    assert transport.disconnecting or protocol._dropped


# -- addresses -----------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["192.0.2.7", "0.0.0.0", "255.255.255.255", "10.20.30.40", "127.1.0.9"],
)
def test_a_canonical_dotted_quad_is_its_own_group_and_key(host: str) -> None:
    assert canonical_ipv4(host)
    assert address_group(host) is host
    assert str(address_key(host)) == host
    assert str(ipaddress.ip_address(host)) == host


@pytest.mark.parametrize(
    "host",
    [
        "01.2.3.4",
        "1.2.3",
        "256.1.1.1",
        "1.2.3.4 ",
        "::ffff:192.0.2.7",
        "2001:db8::1",
        "fe80::1%eth0",
        "localhost",
        "",
        "1.2.3.04",
    ],
)
def test_anything_else_takes_the_slow_path(host: str) -> None:
    assert not canonical_ipv4(host)


def test_groups_are_what_they_were() -> None:
    assert address_group("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_group("2001:db8::1") == "2001:db8::/64"
    assert address_group("") == ""
    assert address_group("not an address") == "not an address"


def test_an_ipv4_client_is_banned_and_capped_by_its_address() -> None:
    rig = Rig(max_per_ip=2)
    rig.connect("192.0.2.7")
    rig.connect("192.0.2.7")
    _, transport = rig.connect("192.0.2.7")
    assert lines(transport.value())[0].startswith("! too-many-connections:")
    other, _ = rig.connect("192.0.2.8")
    assert other._group == other._host == "192.0.2.8"


def test_an_ipv6_client_keeps_its_64_and_its_canonical_key() -> None:
    rig = Rig()
    protocol, _ = rig.connect("2001:db8::1")
    assert protocol._group == "2001:db8::/64"
    assert protocol._host == "2001:db8::1"


# -- what a connection keeps ---------------------------------------------------


def test_peer_is_made_when_asked_not_kept() -> None:
    rig = Rig()
    protocol, _ = rig.connect("192.0.2.7")
    assert protocol.peer == f"tcp 192.0.2.7:{rig.port}"
    protocol6, _ = rig.connect("2001:db8::1")
    assert protocol6.peer == f"tcp [2001:db8::1]:{rig.port}"
    assert not hasattr(protocol, "__dict__") or "peer" not in protocol.__dict__
    assert ChatLineProtocol().peer == "tcp ?"


# -- against a real daemon -----------------------------------------------------


@pytest.mark.slow
def test_connect_rate_registers_every_client_of_a_real_daemon() -> None:
    """bench/connect_rate.py: every client registered, and the figures sane."""
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "connect_rate.py")),
            *("--steps", "20,60", "--procs", "2", "--inflight", "8", "--json"),
            *("--churn", "20", "--seconds", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    report = json.loads(done.stdout)
    steps = report["medians"]["steps"]
    assert [step["clients"] for step in steps] == [20, 60]
    assert all(step["failed"] == 0 for step in steps)
    assert all(step["clients_per_s"] > 0 for step in steps)
    churn = report["medians"]["churn"]
    assert churn["churn_failed"] == 0
    assert churn["churn_registered"] == churn["churn_opened"] > 0
    assert churn["pings_lost"] == 0


# -- the lean tcp.Server -------------------------------------------------------


class FakePort:
    """What a tcp.Server reads of its port."""

    transport = tcp.Server
    _realPortNumber = 9000


def lean_connection(port: object) -> tuple[LeanServer, socket.socket]:
    ours, theirs = socket.socketpair()
    server = LeanServer(
        ours,
        ChatLineProtocol(),
        ("192.0.2.7", 50312),
        cast("tcp.Port", port),
        17,
        MemoryReactor(),
    )
    return server, theirs


def test_a_lean_connection_keeps_no_labels_but_shows_twisteds() -> None:
    server, other = lean_connection(FakePort())
    with other:
        assert "logstr" not in server.__dict__
        assert "repstr" not in server.__dict__
        assert server.logstr == "ChatLineProtocol,17,192.0.2.7"
        assert repr(server) == "<ChatLineProtocol #17 on 9000>"
        server.socket.close()


def test_the_reactor_logs_a_lean_connection_under_its_ports_prefix() -> None:
    port = FakePort()
    lean_port(port, ChatLineProtocol())
    ours, theirs = socket.socketpair()
    with theirs:
        server = port.transport(
            ours,
            ChatLineProtocol(),
            ("192.0.2.7", 1),
            cast("tcp.Port", port),
            3,
            MemoryReactor(),
        )
        assert isinstance(server, LeanServer)
        assert server.logPrefix() == "ChatLineProtocol,tcp"
        # Written straight to, as Twisted's own (the port's class is made).
        assert plain_tcp(server)
        server.socket.close()


def test_a_lean_connection_is_a_plain_tcp_server() -> None:
    server, other = lean_connection(FakePort())
    with other:
        assert isinstance(server, tcp.Server)
        assert plain_tcp(server)
        del server.protocol  # as connectionLost does
        assert server.logstr == "-,17,192.0.2.7"
        server.socket.close()


def test_lean_port_changes_only_a_port_that_builds_twisteds_server() -> None:
    port = FakePort()
    lean_port(port, ChatLineProtocol())
    assert issubclass(port.transport, LeanServer)
    lean_port(port, ChatLineProtocol())  # a second time: no change
    assert issubclass(port.transport, LeanServer)

    class Custom(tcp.Server):
        pass

    other = FakePort()
    other.transport = Custom
    lean_port(other, ChatLineProtocol())
    assert other.transport is Custom


def test_a_lean_ports_connections_are_written_straight_to() -> None:
    """Through the protocol: the second connection of a port is a lean one,
    and its output still goes straight to its socket."""
    port = FakePort()
    factory = Rig().factory
    for n in range(2):
        ours, theirs = socket.socketpair()
        protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.9", n))
        assert protocol is not None
        server = port.transport(
            ours, protocol, ("192.0.2.9", n), cast("tcp.Port", port), n, MemoryReactor()
        )
        protocol.makeConnection(server)
        chat = cast("ChatLineProtocol", protocol)
        assert chat._socket is ours
        theirs.setblocking(False)
        assert theirs.recv(4096).startswith(b"* Welcome")
        theirs.close()
        ours.close()
    assert issubclass(port.transport, LeanServer)


def test_other_transports_are_not_plain_tcp() -> None:
    assert not plain_tcp(StringTransport())

    class Custom(tcp.Server):
        pass

    assert not plain_tcp(Custom.__new__(Custom))


@pytest.mark.slow
def test_connect_ab_alternates_builds_on_fresh_daemons(tmp_path: Path) -> None:
    """bench/connect_ab.py: each build's runs alternate, each on its own
    daemon (a PYTHONPATH build included), and every client registers."""
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "connect_ab.py")),
            *("--runs", "2", "--steps", "20,40", "--procs", "2", "--inflight", "8"),
            f"a={sys.executable}",
            f"b={sys.executable}:{ROOT}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
    )
    runs = [line for line in done.stdout.splitlines() if line.startswith("run ")]
    assert [line.split(":")[0] for line in runs] == [
        "run 1 a",
        "run 1 b",
        "run 2 b",
        "run 2 a",
    ]
    table = [line for line in done.stdout.splitlines() if line.startswith("| a ")]
    table += [line for line in done.stdout.splitlines() if line.startswith("| b ")]
    assert [row.split("|")[2].strip() for row in table] == ["20", "40", "20", "40"]
    assert all(row.split("|")[5].strip() == "0" for row in table)  # none failed
