"""
The IRC protocol (transports/irc.py, irc_session.py) against StringTransport
on a Clock, no sockets: the limits it shares with the line protocol (flood
control, the send queue, the caps and server bans), its own clocks (the
registration deadline, idle pings), bad input, registration and SASL through
the core, the room fan-out of one rendering per kind of client, and ``QUIT``.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable
from typing import cast

import attrs
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from twisted_chat.accounts.passwords import FakeHasher
from twisted_chat.accounts.store import MemoryAccountStore
from twisted_chat.core.account_ports import AccountServices
from twisted_chat.core.admission import Admission
from twisted_chat.core.bans import Ban, parse_pattern
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.settings import Settings
from twisted_chat.transports import irc_caps
from twisted_chat.transports.irc import (
    PING_AFTER,
    PING_TIMEOUT,
    IrcFactory,
    IrcProtocol,
)
from twisted_chat.transports.irc_commands import IrcCommands
from twisted_chat.transports.irc_registration import (
    MAX_PREREG_ERRORS,
    REGISTRATION_DEADLINE,
)
from twisted_chat.transports.irc_session import IrcSettings
from twisted_chat.transports.irc_text import cloak
from twisted_chat.transports.tcp import ChatLineProtocol, ChatServerFactory

SERVER = "irc.test"
PASSWORD = "correct-horse-9"  # noqa: S105 - a test password
OPER_PASSWORD = "open-sesame-42"  # noqa: S105 - a test password
OPER_HASH = FakeHasher.PREFIX + OPER_PASSWORD[::-1]
_ports = itertools.count(41000)


class Rig:
    """
    One ChatServer (FakeHasher accounts, rooms flushed at the end of a Clock
    turn) with an IRC factory and a line-protocol factory in front of it.
    """

    def __init__(self, **settings: object) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.settings = attrs.evolve(Settings(), **settings)  # type: ignore[arg-type]
        self.store = MemoryAccountStore(self.clock)
        self.hasher = FakeHasher()
        self.server = ChatServer(
            self.settings,
            self.clock.seconds,
            defer=lambda f: self.clock.callLater(0, f),
            accounts=AccountServices(self.store, self.hasher),
        )
        self.admission = Admission(
            max_clients=self.settings.max_clients,
            max_per_ip=self.settings.max_per_ip,
        )
        self.irc = IrcFactory(
            self.server,
            self.admission,
            self.clock,
            IrcSettings(SERVER, "TestNet", b"k" * 32, "today"),
        )
        self.tcp = ChatServerFactory(self.server, self.admission, self.clock)
        #: Every transport made, for :meth:`clear_all`.
        self.transports: list[StringTransport] = []

    def _connect(
        self, factory: IrcFactory | ChatServerFactory, host: str
    ) -> tuple[object, StringTransport]:
        address = IPv4Address("TCP", host, next(_ports))
        protocol = factory.buildProtocol(address)
        assert protocol is not None
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        self.transports.append(transport)
        return protocol, transport

    def connect(self, host: str = "127.0.0.1") -> tuple[IrcProtocol, StringTransport]:
        """An IRC connection that has sent nothing yet."""
        protocol, transport = self._connect(self.irc, host)
        return cast("IrcProtocol", protocol), transport

    def register(
        self, nick: str, *caps: str, host: str = "127.0.0.1", room: str | None = None
    ) -> tuple[IrcProtocol, StringTransport]:
        """An IRC client through 001 (with ``caps``), in ``room`` if given, cleared."""
        protocol, transport = self.connect(host)
        lines = ["CAP LS 302"] if caps else []
        lines += [f"NICK {nick}", f"USER {nick} 0 * :{nick} tester"]
        if caps:
            lines += [f"CAP REQ :{' '.join(caps)}", "CAP END"]
        send(protocol, *lines)
        assert f" 001 {nick} " in text(transport), text(transport)
        if room is not None:
            send(protocol, f"JOIN {room}")
            self.turn()
            assert f" 366 {nick} {room} " in text(transport), text(transport)
        transport.clear()
        return protocol, transport

    def member(
        self, nick: str, room: str = "#dev", host: str = "127.0.0.5"
    ) -> tuple[ChatLineProtocol, StringTransport]:
        """A line-protocol user in ``room``, cleared."""
        protocol, transport = self._connect(self.tcp, host)
        line = cast("ChatLineProtocol", protocol)
        line.dataReceived(f"/nick {nick}\n/join {room}\n".encode())
        self.turn()
        transport.clear()
        return line, transport

    def clear_all(self) -> None:
        """Forget what every client was sent so far (joins of later members)."""
        for transport in self.transports:
            transport.clear()

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass a second at a time, as a reactor would."""
        whole = int(seconds)
        for _ in range(whole):
            self.clock.advance(1)
        self.clock.advance(seconds - whole)

    def turn(self) -> None:
        """End the reactor turn: the hasher's answers, then the rooms' flush."""
        while self.hasher.run_pending():
            pass
        self.clock.advance(0)

    def account(self, nick: str, password: str = PASSWORD) -> None:
        """An account ``nick`` made by a line user, who then leaves."""
        protocol, transport = self._connect(self.tcp, "127.0.0.9")
        line = cast("ChatLineProtocol", protocol)
        line.dataReceived(f"/nick {nick}\n/register {password}\n".encode())
        self.turn()
        assert "* The account" in text(transport), text(transport)
        line.connectionLost(Failure(ConnectionError("closed")))


def send(protocol: IrcProtocol | ChatLineProtocol, *lines: str | bytes) -> None:
    """Lines from the client, CRLF-terminated, in one read."""
    data = [line if isinstance(line, bytes) else line.encode() for line in lines]
    protocol.dataReceived(b"".join(line + b"\r\n" for line in data))


def text(transport: StringTransport) -> str:
    return cast("bytes", transport.value()).decode("utf-8")


def lines_of(transport: StringTransport) -> list[str]:
    """What the server wrote, as lines without CRLF (all of it CRLF-terminated)."""
    data: bytes = transport.value()
    assert data == b"" or data.endswith(b"\r\n"), data
    return data.decode("utf-8").split("\r\n")[:-1]


def numerics(transport: StringTransport) -> list[str]:
    """The numerics among the lines, as their codes."""
    found = []
    for line in lines_of(transport):
        words = line.split(" ")
        if len(words) > 1 and words[0] == f":{SERVER}" and words[1].isdigit():
            found.append(words[1])
    return found


def closing(transport: StringTransport) -> bool:
    """Whether the server has closed (or aborted) the connection."""
    return bool(transport.disconnecting)


def pong(token: str) -> str:
    """The server's answer to ``PING :token``."""
    return f":{SERVER} PONG {SERVER} :{token}"


def lost(protocol: IrcProtocol | ChatLineProtocol) -> None:
    """What Twisted does once a connection closed by the server is gone."""
    protocol.connectionLost(Failure(ConnectionError("closed")))


def plain(authcid: str, password: str) -> str:
    return base64.b64encode(f"{authcid}\0{authcid}\0{password}".encode()).decode()


# -- the registration deadline ----------------------------------------------------


def test_unregistered_connection_is_closed_at_the_deadline() -> None:
    """60 s without 001: ERROR ... (Registration timeout), closed, forgotten."""
    rig = Rig(flood_burst=0)
    protocol, transport = rig.connect()
    send(protocol, "NICK slowpoke")  # no USER: never registers
    transport.clear()
    rig.wait(REGISTRATION_DEADLINE - 0.1)  # the pinger ran at 15, 30, 45
    assert transport.value() == b""
    assert not closing(transport)
    rig.wait(0.1)  # and at 60
    [line] = lines_of(transport)
    assert line.startswith("ERROR :Closing Link: ")
    assert line.endswith(" (Registration timeout)")
    assert "127.0.0.1" not in line  # the cloak, as everywhere before 001
    assert closing(transport)
    lost(protocol)
    assert rig.server.participants == {}
    assert rig.admission.total == 0


def test_registered_connection_outlives_the_deadline() -> None:
    """The deadline is for registering only."""
    rig = Rig(flood_burst=0)
    _, transport = rig.register("alice")
    rig.wait(REGISTRATION_DEADLINE * 1.5)
    assert "ERROR" not in text(transport)
    assert not closing(transport)


def test_pinging_before_registration_does_not_extend_the_deadline() -> None:
    """PING keeps a registered client alive, not an unregistered one."""
    rig = Rig(flood_burst=0)
    protocol, transport = rig.connect()
    for n in range(5):
        send(protocol, f"PING :k{n}")
        rig.wait(10)
    assert lines_of(transport)[-1] == f":{SERVER} PONG {SERVER} k4"
    assert not closing(transport)
    send(protocol, "PING :k5")
    rig.wait(10)
    assert lines_of(transport)[-1].endswith(" (Registration timeout)")
    assert closing(transport)


# -- idle pings ----------------------------------------------------------------------


def test_idle_client_is_pinged_then_dropped_and_its_rooms_told() -> None:
    """Silent 120 s: PING; 60 s more: ERROR, closed, * nick quit (Ping timeout)."""
    rig = Rig(flood_burst=0)
    alice, alice_out = rig.register("alice", room="#dev")
    bob, bob_out = rig.register("bob", host="127.0.0.2", room="#dev")
    _, lina_out = rig.member("lina")
    alice_out.clear()
    bob_out.clear()
    rig.wait(PING_AFTER - 1)
    assert alice_out.value() == b""
    rig.wait(1)
    assert lines_of(alice_out) == [f"PING :{SERVER}"]
    assert lines_of(bob_out) == [f"PING :{SERVER}"]
    send(bob, f"PONG :{SERVER}")
    alice_out.clear()
    bob_out.clear()
    rig.wait(PING_TIMEOUT - 1)
    assert alice_out.value() == b""
    assert not closing(alice_out)
    rig.wait(1)
    [error] = lines_of(alice_out)
    assert error.startswith("ERROR :Closing Link:")
    assert error.endswith("(Ping timeout)")
    assert closing(alice_out)
    assert not closing(bob_out)  # it answered
    lost(alice)
    rig.turn()
    assert lines_of(lina_out) == ["* alice quit (Ping timeout)"]
    [quit_line] = lines_of(bob_out)
    assert quit_line.startswith(":alice!")
    assert quit_line.endswith(" QUIT :Ping timeout")  # the server's words, no Quit:
    assert "alice" not in rig.server.participants


def test_a_client_that_answers_every_ping_stays() -> None:
    """Any line resets the clock: a client that answers within 60 s is never dropped."""
    rig = Rig(flood_burst=0)
    bob, bob_out = rig.register("bob")
    for _ in range(5):
        for _ in range(int(PING_AFTER) + 15):  # the pinger runs every 15 s
            if bob_out.value():
                break
            rig.wait(1)
        assert lines_of(bob_out) == [f"PING :{SERVER}"]
        bob_out.clear()
        rig.wait(PING_TIMEOUT - 1)  # late, but in time
        send(bob, f"PONG :{SERVER}")
    assert not closing(bob_out)
    assert "ERROR" not in text(bob_out)


def test_ping_timeout_error_names_the_host_as_the_other_closing_lines() -> None:
    rig = Rig(flood_burst=0)
    _, out = rig.register("alice")
    rig.wait(PING_AFTER + PING_TIMEOUT)
    error = lines_of(out)[-1]
    assert error.startswith("ERROR :Closing Link: ")
    host = error.removeprefix("ERROR :Closing Link: ").split(" ")[0]
    assert host, error
    assert not host.startswith("("), error


def test_any_line_after_a_ping_earns_another_ping_before_a_drop() -> None:
    rig = Rig(flood_burst=0)
    alice, out = rig.register("alice")
    rig.wait(PING_AFTER)
    assert lines_of(out) == [f"PING :{SERVER}"]
    out.clear()
    send(alice, "F00 pong?")  # a line, if not one the server understands
    assert numerics(out) == ["421"]
    out.clear()
    rig.wait(PING_AFTER + PING_TIMEOUT)
    assert lines_of(out)[0] == f"PING :{SERVER}", lines_of(out)


# -- flood control -------------------------------------------------------------------


def test_a_burst_of_privmsgs_is_delayed_not_dropped() -> None:
    """Past the burst reading pauses; later every message arrives, in order."""
    rig = Rig(flood_burst=10, flood_rate=5)
    alice, alice_out = rig.register("alice", room="#dev")
    _, bob_out = rig.register("bob", host="127.0.0.2", room="#dev")
    _, lina_out = rig.member("lina")
    rig.clear_all()
    send(alice, *(f"PRIVMSG #dev :line {n}" for n in range(30)))
    rig.turn()
    assert 0 < len(lines_of(lina_out)) < 30  # the burst, less registration's lines
    assert alice_out.producerState == "paused"
    for _ in range(100):
        rig.clock.advance(0.2)
    assert lines_of(lina_out) == [f"[#dev] <alice> line {n}" for n in range(30)]
    said = [
        line.split(" PRIVMSG ", 1)[1]
        for line in lines_of(bob_out)
        if " PRIVMSG " in line
    ]
    assert said == [f"#dev :line {n}" for n in range(30)]
    assert alice_out.producerState == "producing"
    assert alice_out.value() == b""  # no error, no numeric: nothing refused


def test_flood_control_off_takes_a_burst_at_once() -> None:
    """--flood-burst 0: the same burst goes in one turn, reading never paused."""
    rig = Rig(flood_burst=0)
    alice, alice_out = rig.register("alice", room="#dev")
    _, lina_out = rig.member("lina")
    send(alice, *(f"PRIVMSG #dev :line {n}" for n in range(30)))
    rig.turn()
    assert len(lines_of(lina_out)) == 30
    assert alice_out.producerState == "producing"


# -- the send queue ------------------------------------------------------------------


def test_irc_client_that_stops_reading_is_dropped_at_max_sendq() -> None:
    """A stalled IRC reader is aborted past --max-sendq; its rooms see the quit."""
    rig = Rig(max_sendq=128 * 1024, flood_burst=0)
    slow, slow_out = rig.register("slow", room="#dev")
    _, bob_out = rig.register("bob", host="127.0.0.2", room="#dev")
    lina, lina_out = rig.member("lina")
    # What Twisted does at 64 KiB unsent: the transport pauses its producer.
    slow_out.producer.pauseProducing()  # type: ignore[union-attr]
    for _ in range(80):
        lina.dataReceived(b"x" * 900 + b"\n")
        rig.turn()
    assert slow_out.disconnected  # aborted, not flushed and closed
    assert not closing(bob_out)
    lost(slow)
    rig.turn()
    assert lines_of(lina_out)[-1] == "* slow quit (too slow to read, send queue full)"
    assert lines_of(bob_out)[-1].startswith(":slow!")
    assert lines_of(bob_out)[-1].endswith(" QUIT :too slow to read, send queue full")


def test_irc_reader_that_catches_up_is_kept() -> None:
    """Output that drains before the cap resets the count."""
    rig = Rig(max_sendq=128 * 1024, flood_burst=0)
    _, reader_out = rig.register("reader", room="#dev")
    lina, _ = rig.member("lina")
    for _ in range(10):
        reader_out.producer.pauseProducing()  # type: ignore[union-attr]
        for _ in range(50):
            lina.dataReceived(b"y" * 900 + b"\n")
            rig.turn()
        reader_out.producer.resumeProducing()  # type: ignore[union-attr]
    assert not closing(reader_out)


def test_irc_client_asking_for_replies_it_never_reads_is_dropped() -> None:
    """Its own numerics count toward --max-sendq like room lines do."""
    rig = Rig(flood_burst=0, max_sendq=128 * 1024)
    alice, alice_out = rig.register("alice", room="#dev")
    for n in range(30):
        rig.register(f"user{n}", host=f"127.0.1.{n}", room="#dev")
    alice_out.producer.pauseProducing()  # type: ignore[union-attr]
    for _ in range(100):
        if closing(alice_out):
            break
        send(alice, "NAMES #dev", "WHO #dev", "LUSERS")
    assert alice_out.disconnected
    assert len(alice_out.value()) < 128 * 1024  # nothing more once past the cap
    assert rig.irc.quit_reasons[alice] == "too slow to read, send queue full"


# -- caps and server bans at connect --------------------------------------------------


def _ban(rig: Rig, host: str) -> None:
    ban = Ban(parse_pattern(host), "Root", "go away", rig.clock.seconds())
    rig.server.operators.server_bans.bans.add(ban, rig.clock.seconds())


def _refused(kind: str) -> tuple[Rig, IrcProtocol, StringTransport]:
    """An IRC connection refused by the per-address cap, the total cap, or a ban."""
    if kind == "per-address":
        rig = Rig(max_per_ip=2, flood_burst=0)
        rig.connect()
        rig.connect()
    elif kind == "total":
        rig = Rig(max_clients=1, flood_burst=0)
        rig.connect("127.0.0.2")
    else:
        rig = Rig(flood_burst=0)
        _ban(rig, "127.0.0.1")
    protocol, transport = rig.connect()
    return rig, protocol, transport


REFUSALS = ["per-address", "total", "server-ban"]


@pytest.mark.parametrize("kind", REFUSALS)
def test_refused_irc_connection_gets_one_line_and_is_closed(kind: str) -> None:
    """One line, then the close; nobody joins, no slot is taken."""
    rig, protocol, transport = _refused(kind)
    before = rig.admission.total
    assert len(lines_of(transport)) == 1
    assert closing(transport)
    assert protocol.participant is None
    send(protocol, "NICK late", "USER late 0 * :late")
    assert len(lines_of(transport)) == 1
    lost(protocol)
    assert rig.admission.total == before
    assert all(p.nick.display != "late" for p in rig.server.participants.values())


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("per-address", "too-many-connections"),
        ("total", "server-full"),
        ("server-ban", "banned"),
    ],
)
def test_refused_irc_connection_is_told_in_irc(kind: str, code: str) -> None:
    """Not the line protocol's ``! code:``: ERROR :Closing Link: HOST (code: ...)."""
    _, _, transport = _refused(kind)
    [line] = lines_of(transport)
    # The client's cloak, as every closing line names it.
    assert re.match(rf"ERROR :Closing Link: \S+\.tc \({code}: ", line), line
    assert line.endswith(")")


def test_a_server_ban_ejects_a_registered_irc_client_in_irc() -> None:
    """/serverban of a connected IRC client: one ERROR, the close, a quit (banned)."""
    rig = Rig(flood_burst=0, operators=(("Root", OPER_HASH),))
    alice, alice_out = rig.register("alice", host="127.0.0.3", room="#dev")
    root, root_out = rig.member("root")
    root.dataReceived(f"/oper root {OPER_PASSWORD}\n".encode())
    rig.turn()
    assert "server operator" in text(root_out), text(root_out)
    rig.clear_all()
    root.dataReceived(b"/serverban 127.0.0.3 go away\n")
    rig.turn()
    [line] = lines_of(alice_out)
    assert re.match(r"ERROR :Closing Link: \S+\.tc \(banned: ", line), line
    assert "go away" in line
    assert closing(alice_out)
    lost(alice)
    rig.turn()
    assert "* alice quit (banned)" in lines_of(root_out)


def test_a_refused_connection_frees_nothing_of_the_others() -> None:
    """Past the per-address cap another address is still let in."""
    rig = Rig(max_per_ip=1, flood_burst=0)
    rig.register("alice")
    _, refused = rig.connect()
    assert closing(refused)
    _, other = rig.register("bob", host="127.0.0.2")
    assert not closing(other)


def test_line_and_irc_connections_share_the_per_address_cap() -> None:
    """One allowance per address, whichever front-end the connections use."""
    rig = Rig(max_per_ip=2, flood_burst=0)
    rig.member("lina", host="127.0.0.1")
    rig.register("alice")
    _, refused = rig.connect()
    assert closing(refused)
    assert "too-many-connections" in text(refused)


def test_reconnecting_irc_client_does_not_refill_its_flood_burst() -> None:
    """Flood credit is per address: a new IRC connection starts where the last left."""
    rig = Rig(flood_burst=10, flood_rate=5)
    rig.member("lina", host="127.0.0.5")
    alice, _ = rig.register("alice", room="#dev")
    send(alice, *(f"PRIVMSG #dev :a{n}" for n in range(10)))
    rig.turn()
    lost(alice)
    again, again_out = rig.connect()
    send(again, "NICK again", "USER a 0 * :A")
    assert closing(again_out) is False
    assert again_out.producerState == "paused"
    assert again_out.value() == b""  # even 001 waits for a token
    rig.wait(1)
    assert " 001 again " in text(again_out)


# -- bad input -----------------------------------------------------------------------


def test_overlong_line_gets_417_and_the_connection_stays() -> None:
    """Over 512 bytes: 417, nothing relayed, the next line in the read still works."""
    rig = Rig(flood_burst=0)
    alice, alice_out = rig.register("alice", room="#dev")
    _, lina_out = rig.member("lina")
    rig.clear_all()
    send(alice, "PRIVMSG #dev :" + "y" * 600, "PRIVMSG #dev :short")
    rig.turn()
    assert lines_of(alice_out) == [f":{SERVER} 417 alice :Input line was too long"]
    assert lines_of(lina_out) == ["[#dev] <alice> short"]
    assert not closing(alice_out)


def test_endless_line_gets_one_417_and_is_never_held() -> None:
    """A mebibyte without a line end is refused once and costs the framer's bound."""
    rig = Rig(flood_burst=0)
    alice, alice_out = rig.register("alice")
    for _ in range(16):
        alice.dataReceived(b"PRIVMSG #dev :" + b"z" * 65536)
        assert alice.lines_in.held <= alice.lines_in.limit
    send(alice, "end of it", "PING :ok")
    assert numerics(alice_out) == ["417"]
    assert lines_of(alice_out)[-1] == pong("ok")


def test_a_line_with_a_nul_is_not_relayed() -> None:
    """NUL is refused (irc_wire): nothing reaches the room, the connection stays."""
    rig = Rig(flood_burst=0)
    alice, alice_out = rig.register("alice", room="#dev")
    _, lina_out = rig.member("lina")
    send(alice, b"PRIVMSG #dev :a\x00b", b"PING :ok")
    rig.turn()
    assert lina_out.value() == b""
    assert lines_of(alice_out)[-1] == pong("ok")
    assert not closing(alice_out)


def test_a_line_with_a_nul_gets_an_error_reply() -> None:
    rig = Rig(flood_burst=0)
    alice, alice_out = rig.register("alice", room="#dev")
    send(alice, b"PRIVMSG #dev :a\x00b")
    replies = lines_of(alice_out)
    assert replies, "no reply at all to a line with a NUL"
    [line] = replies
    assert line.startswith((f":{SERVER} 417 alice ", "ERROR :")), line


def test_invalid_utf8_becomes_the_replacement_character() -> None:
    """Bytes that are not UTF-8 reach line and IRC users as U+FFFD."""
    rig = Rig(flood_burst=0)
    alice, _ = rig.register("alice", room="#dev")
    _, bob_out = rig.register("bob", host="127.0.0.2", room="#dev")
    _, lina_out = rig.member("lina")
    rig.clear_all()
    send(alice, b"PRIVMSG #dev :caf\xe9 \xc3\x28 ok")
    rig.turn()
    assert lines_of(lina_out) == ["[#dev] <alice> caf\ufffd \ufffd( ok"]
    assert lines_of(bob_out)[0].endswith(" PRIVMSG #dev :caf\ufffd \ufffd( ok")


def test_unknown_command_gets_421() -> None:
    """After registration an unknown command, or one that is no command, is 421."""
    rig = Rig(flood_burst=0)
    alice, alice_out = rig.register("alice")
    send(alice, "FROBNICATE now", "F00 x")
    assert lines_of(alice_out) == [
        f":{SERVER} 421 alice FROBNICATE :Unknown command",
        f":{SERVER} 421 alice F00 :Unknown command",
    ]
    assert not closing(alice_out)


def test_commands_before_registration_get_451() -> None:
    """JOIN and PRIVMSG before 001: 451, and nothing done."""
    rig = Rig(flood_burst=0)
    _, lina_out = rig.member("lina")
    protocol, transport = rig.connect()
    send(protocol, "JOIN #dev", "PRIVMSG #dev :hello")
    rig.turn()
    assert lines_of(transport) == [f":{SERVER} 451 * :You have not registered"] * 2
    assert protocol.participant is not None
    assert protocol.participant.rooms == {}
    assert lina_out.value() == b""


def test_a_bug_in_a_command_is_answered_400_and_the_connection_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler that raises: logged, 400 to the client, the next command works."""
    rig = Rig(flood_burst=0)
    alice, alice_out = rig.register("alice", room="#dev")

    def broken(self: IrcCommands, params: tuple[str, ...]) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(IrcCommands, "do_topic", broken)
    send(alice, "TOPIC #dev :new", "PING :after")
    assert lines_of(alice_out) == [
        f":{SERVER} 400 alice TOPIC :Internal server error",
        pong("after"),
    ]
    assert "a bug" not in text(alice_out)
    assert not closing(alice_out)


def test_an_unregistered_client_that_only_errs_is_closed() -> None:
    """451 is bounded: after 20 errors before 001, ERROR and the close."""
    rig = Rig(flood_burst=0)
    protocol, transport = rig.connect()
    send(protocol, *(["JOIN #x"] * 25))
    assert numerics(transport) == ["451"] * MAX_PREREG_ERRORS
    assert lines_of(transport)[-1].endswith(" (Too many errors before registration)")
    assert closing(transport)


def _broken(*args: object, **kwargs: object) -> None:
    raise RuntimeError("a bug")


@pytest.mark.parametrize("registered", [True, False])
def test_a_bug_in_registration_is_answered_400_and_the_connection_kept(
    monkeypatch: pytest.MonkeyPatch, registered: bool
) -> None:
    rig = Rig(flood_burst=0)
    if registered:
        protocol, transport = rig.register("alice")
    else:
        protocol, transport = rig.connect()
    monkeypatch.setattr(irc_caps.CapNegotiation, "handle", _broken)
    send(protocol, "CAP LS 302", "PING :after")
    replies = lines_of(transport)
    assert replies[0].startswith(f":{SERVER} 400 "), replies
    assert " CAP " in replies[0]
    assert replies[1].endswith("after")


# -- registration, nicks and SASL ------------------------------------------------------


def test_registered_client_takes_its_nick_and_is_in_no_room() -> None:
    """No default room for IRC; the guest nick becomes the registered one."""
    rig = Rig(flood_burst=0)
    _, lobby = rig.member("lina", room=rig.settings.default_room or "#lobby")
    protocol, _ = rig.register("alice")
    participant = protocol.participant
    assert participant is not None
    assert participant.nick.display == "alice"
    assert participant.rooms == {}
    assert rig.server.participants["alice"] is participant
    rig.turn()
    assert lobby.value() == b""  # nobody joined the default room


def test_a_nick_in_use_gets_433_and_another_registers() -> None:
    rig = Rig(flood_burst=0)
    rig.member("lina")
    protocol, transport = rig.connect()
    send(protocol, "NICK lina", "USER l 0 * :L")
    assert numerics(transport) == ["433"]
    assert lines_of(transport)[0].startswith(f":{SERVER} 433 * lina :")
    transport.clear()
    send(protocol, "NICK lina_")
    assert numerics(transport)[0] == "001"
    assert protocol.participant is not None
    assert protocol.participant.nick.display == "lina_"


def _sasl(rig: Rig, nick: str, password: str) -> tuple[IrcProtocol, StringTransport]:
    protocol, transport = rig.connect()
    send(protocol, "CAP LS 302", f"NICK {nick}", f"USER {nick} 0 * :x", "CAP REQ :sasl")
    send(protocol, "AUTHENTICATE PLAIN")
    assert lines_of(transport)[-1] == "AUTHENTICATE +"
    transport.clear()
    send(protocol, f"AUTHENTICATE {plain(nick, password)}")
    rig.turn()
    return protocol, transport


def test_sasl_plain_logs_in_through_the_core() -> None:
    """The right password: 900, 903, then 001 under the account's nick."""
    rig = Rig(flood_burst=0)
    rig.account("carol")
    protocol, transport = _sasl(rig, "carol", PASSWORD)
    assert numerics(transport) == ["900", "903"]
    send(protocol, "CAP END")
    assert numerics(transport)[2] == "001"
    assert protocol.participant is not None
    assert protocol.participant.account is not None
    assert protocol.participant.nick.display == "carol"


def test_sasl_plain_wrong_password_is_904_and_no_account() -> None:
    rig = Rig(flood_burst=0)
    rig.account("carol")
    protocol, transport = _sasl(rig, "carol", "not-the-password")
    assert numerics(transport) == ["904"]
    assert protocol.participant is not None
    assert protocol.participant.account is None
    send(protocol, "CAP END")
    assert numerics(transport)[-1] == "433"  # a registered nick, not logged in


def test_sasl_is_throttled_by_the_core_after_five_failures() -> None:
    """After 5 failures login-throttled: even the right password gets 904."""
    rig = Rig(flood_burst=0)
    rig.account("carol")
    for _ in range(5):  # one a connection: the protocol's own cap is 3
        _, transport = _sasl(rig, "carol", "not-the-password")
        assert numerics(transport) == ["904"]
    verified = rig.hasher.pending
    protocol, transport = _sasl(rig, "carol", PASSWORD)
    assert numerics(transport) == ["904"]
    assert rig.hasher.pending == verified  # refused without a password check
    assert protocol.participant is not None
    assert protocol.participant.account is None
    rig.clock.advance(61)  # the lockout's minute
    protocol, transport = _sasl(rig, "carol", PASSWORD)
    assert numerics(transport) == ["900", "903"]


def test_replies_after_an_oper_wait_for_its_answer() -> None:
    """The password is checked later (argon2 on a worker): a ``PING`` sent
    after ``OPER`` is answered after the ``381``, as clients (and irctest)
    that sync on a ``PING`` expect; the room's traffic does not wait."""
    rig = Rig(flood_burst=0, operators=(("Root", OPER_HASH),))
    root, out = rig.register("root", room="#dev")
    line_user, _ = rig.member("bob")
    send(root, f"OPER root {OPER_PASSWORD}", "PING :after-oper", "JOIN #two")
    line_user.dataReceived(b"hello\n")
    assert "PONG" not in text(out)
    assert " 366 " not in text(out)
    rig.turn()
    got = lines_of(out)
    said = [i for i, line in enumerate(got) if "PRIVMSG #dev :hello" in line]
    oper = [i for i, line in enumerate(got) if " 381 root " in line]
    pong = [i for i, line in enumerate(got) if "PONG" in line and "after-oper" in line]
    names = [i for i, line in enumerate(got) if " 366 root #two " in line]
    assert all((oper, pong, names, said)), got
    assert oper[0] < pong[0] < names[0], got


def test_replies_waiting_behind_an_answer_are_bounded() -> None:
    """A client that piles up replies behind a pending ``OPER`` is dropped
    at MAX_HELD, as a reader that does not keep up."""
    from twisted_chat.transports.irc import MAX_HELD

    rig = Rig(flood_burst=0, operators=(("Root", OPER_HASH),))
    root, out = rig.register("root")
    send(root, f"OPER root {OPER_PASSWORD}", *["PING :x"] * MAX_HELD)
    assert len(root.wire_held or ()) == MAX_HELD
    assert not out.disconnecting
    send(root, "PING :one-too-many")
    assert out.disconnecting


def test_sasl_to_a_banned_account_is_told_it_is_banned() -> None:
    rig = Rig(flood_burst=0, operators=(("Root", OPER_HASH),))
    rig.account("carol")
    root, root_out = rig.member("root")
    root.dataReceived(f"/oper root {OPER_PASSWORD}\n".encode())
    rig.turn()
    root.dataReceived(b"/serverban account:carol\n")
    rig.turn()
    assert "Server ban on account:carol added" in text(root_out), text(root_out)
    _, transport = _sasl(rig, "carol", PASSWORD)
    assert closing(transport)  # the ban holds; what it says is the bug
    assert lines_of(transport)[-1].startswith("ERROR :Closing Link: "), text(transport)
    assert "(banned: " in lines_of(transport)[-1]


# -- the room fan-out ------------------------------------------------------------------


Recorded = list[bytes]


def recording(protocol: IrcProtocol) -> Recorded:
    """
    Every bytes object the client is handed, by its replies' writer
    (``send_wire``) or the room fan-out's (``send_fanout``, when it has one):
    set up before the JOIN, which binds them.
    """
    calls: Recorded = []
    for name in ("send_wire", "send_fanout"):
        original: Callable[[bytes], None] | None = getattr(protocol, name, None)
        if original is None:
            continue

        def record(data: bytes, original: Callable[[bytes], None] = original) -> None:
            calls.append(data)
            original(data)

        setattr(protocol, name, record)
    return calls


def test_irc_members_of_one_kind_get_the_same_bytes_object() -> None:
    """One rendering per kind of client a turn; server-time adds @time= tags."""
    rig = Rig(flood_burst=0)
    clients = {}
    for n, (nick, caps) in enumerate(
        [
            ("alice", ()),
            ("bob", ()),
            ("carl", ()),
            ("tina", ("server-time",)),
            ("tom", ("server-time",)),
        ]
    ):
        protocol, _ = rig.register(nick, *caps, host=f"127.0.0.{n + 1}")
        calls = recording(protocol)
        send(protocol, "JOIN #dev")
        clients[nick] = (protocol, calls)
    _, lina_out = rig.member("lina")
    _, lena_out = rig.member("lena", host="127.0.0.6")
    rig.turn()
    for _, calls in clients.values():
        calls.clear()
    lina_out.clear()
    send(clients["alice"][0], "PRIVMSG #dev :one", "PRIVMSG #dev :two")
    rig.turn()
    [bob], [carl], [tina], [tom] = (
        clients[n][1] for n in ("bob", "carl", "tina", "tom")
    )
    assert bob is carl  # the very same object: rendered once for both
    one, two, end = bob.split(b"\r\n")  # both lines of the turn in one write
    assert one.startswith(b":alice!~alice@")
    assert one.endswith(b" PRIVMSG #dev :one")
    assert two.endswith(b" PRIVMSG #dev :two")
    assert end == b""
    assert tina.startswith(b"@time=")
    assert tina.split(b" ", 1)[1].startswith(b":alice!")
    assert tina is not bob
    assert tom is tina
    assert clients["alice"][1] == []  # no echo-message: nothing back
    assert lina_out.value() == b"[#dev] <alice> one\r\n[#dev] <alice> two\r\n"
    assert lena_out.value() == lina_out.value()


def _recording_line_member(rig: Rig, nick: str, host: str) -> Recorded:
    """A line user in #dev whose every ``send`` is recorded (before /join binds it)."""
    protocol, _ = rig._connect(rig.tcp, host)
    line = cast("ChatLineProtocol", protocol)
    calls: Recorded = []
    original = line.send

    def record(data: bytes) -> None:
        calls.append(data)
        original(data)

    line.send = record  # type: ignore[method-assign]
    line.dataReceived(f"/nick {nick}\n/join #dev\n".encode())
    return calls


def test_line_members_get_the_unchanged_line_bytes() -> None:
    """With IRC members in the room, line users get the line, one object for all."""
    rig = Rig(flood_burst=0)
    alice, _ = rig.register("alice", room="#dev")
    lina, _ = rig.member("lina")
    lena = _recording_line_member(rig, "lena", "127.0.0.6")
    leo = _recording_line_member(rig, "leo", "127.0.0.7")
    rig.turn()
    lena.clear()
    leo.clear()
    lina.dataReceived(b"plain words\n")
    rig.turn()
    assert lena == [b"[#dev] <lina> plain words\r\n"]
    assert leo[0] is lena[0]
    send(alice, "PRIVMSG #dev :from irc")
    rig.turn()
    assert lena[1] == b"[#dev] <alice> from irc\r\n"
    assert leo[1] is lena[1]


def test_echo_message_gives_the_sender_its_own_privmsg() -> None:
    """With echo-message the sender gets its PRIVMSG, as the others do."""
    rig = Rig(flood_burst=0)
    alice, alice_out = rig.register("alice", "echo-message", room="#dev")
    _, bob_out = rig.register("bob", host="127.0.0.2", room="#dev")
    rig.clear_all()
    send(alice, "PRIVMSG #dev :hello")
    rig.turn()
    [echo] = lines_of(alice_out)
    assert echo.startswith(":alice!~alice@")
    assert echo.endswith(" PRIVMSG #dev :hello")
    assert lines_of(bob_out) == [echo]


# -- QUIT -----------------------------------------------------------------------------


def test_quit_sends_error_closes_and_tells_the_rooms() -> None:
    """QUIT :reason: ERROR to the client, the close, * nick quit (Quit: reason)."""
    rig = Rig(flood_burst=0)
    alice, alice_out = rig.register("alice", room="#dev")
    _, lina_out = rig.member("lina")
    rig.clear_all()
    send(alice, "QUIT :gone fishing", "PRIVMSG #dev :still here?")
    rig.turn()
    assert lines_of(alice_out) == [
        f"ERROR :Closing Link: {cloak(b'k' * 32, '127.0.0.1')} (Quit: gone fishing)"
    ]
    assert closing(alice_out)
    assert lines_of(lina_out) == ["* alice quit (Quit: gone fishing)"]
    lost(alice)
    rig.turn()
    assert lines_of(lina_out) == ["* alice quit (Quit: gone fishing)"]
    assert "alice" not in rig.server.participants


def test_irc_members_see_a_quit_reason_prefixed_once() -> None:
    """``Quit: reason`` once (it was ``Quit: Quit: reason``; fixed in 624675c)."""
    rig = Rig(flood_burst=0)
    alice, _ = rig.register("alice", room="#dev")
    _, bob_out = rig.register("bob", host="127.0.0.2", room="#dev")
    rig.clear_all()
    send(alice, "QUIT :gone fishing")
    rig.turn()
    [line] = lines_of(bob_out)
    assert line.endswith(" QUIT :Quit: gone fishing"), line


def test_invite_answers_as_the_mainstream_servers_do() -> None:
    """Someone already in the channel: 443, whoever asks; a member who is
    not an operator: 482; an operator: 341, and the invitee gets INVITE."""
    rig = Rig(flood_burst=0)
    alice, alice_out = rig.register("alice", room="#dev")
    bob, bob_out = rig.register("bob", room="#dev")
    _, carol_out = rig.register("carol")
    send(bob, "INVITE alice #dev")
    assert lines_of(bob_out) == [f":{SERVER} 443 bob alice #dev :is already on channel"]
    bob_out.clear()
    send(bob, "INVITE carol #dev")
    assert numerics(bob_out) == ["482"]
    alice_out.clear()
    send(alice, "INVITE carol #dev")
    assert numerics(alice_out) == ["341"]
    assert lines_of(carol_out)[-1].endswith(" INVITE carol #dev")
    assert lines_of(carol_out)[-1].startswith(":alice!~alice@")


def test_a_pong_does_not_overtake_room_lines_of_the_same_turn() -> None:
    """A line user speaks, then (same turn) an IRC member pings to sync:
    the room's line comes first, as the line protocol orders its replies."""
    rig = Rig(flood_burst=0)
    irc, out = rig.register("ircer", room="#dev")
    line_user, _ = rig.member("bob")
    line_user.dataReceived(b"hello before the ping\n")
    send(irc, "PING :sync")
    got = lines_of(out)
    said = [i for i, line in enumerate(got) if "hello before the ping" in line]
    pong = [i for i, line in enumerate(got) if " PONG " in line]
    assert said, got
    assert pong, got
    assert said[0] < pong[0], got
    rig.turn()
    assert sum("hello before the ping" in line for line in lines_of(out)) == 1
