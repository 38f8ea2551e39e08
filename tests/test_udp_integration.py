# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""UDP and TCP users on real sockets on 127.0.0.1, in one in-process daemon."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, connectionDone
from twisted.protocols.basic import LineReceiver

from twisted_chat.core.settings import Settings
from twisted_chat.daemon.options import _dual_stack
from twisted_chat.daemon.service import ChatService, make_chat_service
from twisted_chat.transports.udp_session import MAX_REPLY_DATAGRAMS

if TYPE_CHECKING:
    from twisted.python.failure import Failure

    from twisted_chat.transports.udp import ChatDatagramProtocol

#: The global reactor, which pytest-twisted runs; typed loosely because its
#: stub type does not list every reactor interface.
reactor: Any = _reactor
_F = TypeVar("_F", bound=Callable[..., Any])
#: ``pytest_twisted.ensureDeferred``, typed.
ensure_deferred: Callable[[_F], _F] = pytest_twisted.ensureDeferred

CHALLENGE = re.compile(r"\* Reply /hello ([a-z2-7]{16}) to chat over UDP\.")
#: A safety net so a broken server fails a test instead of hanging it; no
#: assertion depends on it.
TIMEOUT = 10.0

Pattern = str | re.Pattern[str]


class Inbox:
    """Lines as they arrive, and a way to wait for the next one that matches."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._cursor = 0
        self._waiting: tuple[Pattern, Deferred[str]] | None = None

    def add(self, line: str) -> None:
        self.lines.append(line)
        self._check()

    def expect(self, pattern: Pattern) -> Deferred[str]:
        """The first unread line equal to ``pattern`` (a string) or matching it."""
        waiter: Deferred[str] = Deferred()
        self._waiting = (pattern, waiter)
        self._check()
        return waiter.addTimeout(TIMEOUT, reactor)

    def _check(self) -> None:
        if self._waiting is None:
            return
        pattern, waiter = self._waiting
        while self._cursor < len(self.lines):
            line = self.lines[self._cursor]
            self._cursor += 1
            if line == pattern if isinstance(pattern, str) else pattern.fullmatch(line):
                self._waiting = None
                waiter.callback(line)
                return


class TcpUser(LineReceiver):
    """A telnet-like user."""

    delimiter = b"\r\n"

    def __init__(self) -> None:
        self.inbox = Inbox()
        self.lost: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        self.inbox.add(line.decode("utf-8"))

    def say(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(text.encode("utf-8") + b"\n")

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: ARG002
        self.lost.callback(None)


class UdpUser(DatagramProtocol):
    """An ``nc -u`` user: every datagram it gets must be one CRLF line."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.inbox = Inbox()
        self.payloads: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:  # noqa: ARG002
        self.payloads.append(datagram)
        self.inbox.add(datagram.decode("utf-8").removesuffix("\r\n"))

    def say(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(text.encode("utf-8") + b"\n", self.server)


class Scene:
    """The daemon listening on 127.0.0.1, and the users it has; all cleaned up."""

    def __init__(self, udp: str = "127.0.0.1:0") -> None:
        settings = Settings(tcp=("tcp:0:interface=127.0.0.1",), udp=(udp,))
        self.service: ChatService = make_chat_service(settings, reactor)
        self.tcp_users: list[TcpUser] = []
        self.udp_ports: list[Any] = []
        self.tcp_port = 0
        self.udp_port = 0
        self.protocol: ChatDatagramProtocol | None = None

    async def start(self) -> None:
        self.service.startService()
        (tcp,) = self.service.getServiceNamed("tcp")
        (udp,) = self.service.getServiceNamed("udp")
        ports: list[Any] = []

        def found(port: Any) -> Any:
            ports.append(port)
            return port

        await tcp._waitingForPort.addCallback(found)
        self.tcp_port = ports[0].getHost().port
        self.protocol = udp.chat_protocol
        assert self.protocol is not None
        assert self.protocol.transport is not None
        self.udp_port = self.protocol.transport.getHost().port

    async def stop(self) -> None:
        await self.service.stopService()
        for user in self.tcp_users:
            await user.lost
        for port in self.udp_ports:
            await port.stopListening()

    async def tcp_user(self, nick: str) -> TcpUser:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.tcp_port)
        user = TcpUser()
        await connectProtocol(endpoint, user)
        self.tcp_users.append(user)
        await user.inbox.expect(re.compile(r"\* You joined #lobby;.*"))
        user.say(f"/nick {nick}")
        await user.inbox.expect(f"* You are now known as {nick}.")
        return user

    def udp_socket(self, host: str = "127.0.0.1") -> UdpUser:
        user = UdpUser((host, self.udp_port))
        self.udp_ports.append(reactor.listenUDP(0, user, interface="127.0.0.1"))
        return user

    async def udp_user(self, nick: str, host: str = "127.0.0.1") -> UdpUser:
        user = self.udp_socket(host)
        user.say("hi")
        challenge = await user.inbox.expect(CHALLENGE)
        match = CHALLENGE.fullmatch(challenge)
        assert match is not None
        user.say(f"/hello {match[1]}")
        await user.inbox.expect(re.compile(r"\* You joined #lobby;.*"))
        user.say(f"/nick {nick}")
        await user.inbox.expect(f"* You are now known as {nick}.")
        return user


@ensure_deferred
async def test_udp_and_tcp_users_chat_both_ways_in_a_room() -> None:
    """A UDP user and a TCP user see each other's room messages."""
    scene = Scene()
    await scene.start()
    try:
        tina = await scene.tcp_user("tina")
        uma = await scene.udp_user("uma")
        tina.say("hello from tcp")
        await uma.inbox.expect("[#lobby] <tina> hello from tcp")
        uma.say("hello from udp\nand a second line")
        await tina.inbox.expect("[#lobby] <uma> hello from udp")
        await tina.inbox.expect("[#lobby] <uma> and a second line")
        assert all(p.endswith(b"\r\n") and p.count(b"\r\n") == 1 for p in uma.payloads)
    finally:
        await scene.stop()


@ensure_deferred
async def test_private_messages_cross_transports_both_ways() -> None:
    """/msg goes from UDP to TCP and from TCP to UDP."""
    scene = Scene()
    await scene.start()
    try:
        tina = await scene.tcp_user("tina")
        uma = await scene.udp_user("uma")
        uma.say("/msg tina psst")
        await tina.inbox.expect("[PM] <uma> psst")
        tina.say("/msg UMA hi back")
        await uma.inbox.expect("[PM] <tina> hi back")
    finally:
        await scene.stop()


@ensure_deferred
async def test_nicknames_collide_across_transports() -> None:
    """A nick held over TCP is taken for UDP users, and the other way round."""
    scene = Scene()
    await scene.start()
    try:
        tina = await scene.tcp_user("tina")
        uma = await scene.udp_user("uma")
        uma.say("/nick TINA")
        await uma.inbox.expect(re.compile(r"! nick-in-use: TINA is taken .*"))
        tina.say("/nick Uma")
        await tina.inbox.expect(re.compile(r"! nick-in-use: Uma is taken .*"))
        uma.say("/who")
        await uma.inbox.expect("* @tina, uma")  # tina made #lobby
    finally:
        await scene.stop()


@ensure_deferred
async def test_udp_quit_is_seen_by_tcp_users() -> None:
    """/quit over UDP says bye, ends the session, and TCP users see the quit."""
    scene = Scene()
    await scene.start()
    try:
        tina = await scene.tcp_user("tina")
        uma = await scene.udp_user("uma")
        uma.say("/quit see you")
        await uma.inbox.expect("* Bye!")
        await tina.inbox.expect("* uma quit (see you)")
        assert scene.protocol is not None
        assert scene.protocol.sessions == {}
        assert scene.service.admission.total == 1
    finally:
        await scene.stop()


@ensure_deferred
async def test_unproven_burst_gets_fewer_bytes_back_and_no_room_traffic() -> None:
    """100 datagrams from an unproven address while a room chats: less back, no chat."""
    scene = Scene()
    await scene.start()
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        attacker.bind(("127.0.0.1", 0))
        attacker.setblocking(False)
        tina = await scene.tcp_user("tina")
        uma = await scene.udp_user("uma")
        target = ("127.0.0.1", scene.udp_port)
        forged = [b"/join #lobby\n", b"/hello aaaaaaaaaaaaaaaa\n", b"hi all\n", b"/who"]
        sent_bytes = 0
        for n in range(100):
            payload = forged[n % len(forged)]
            sent_bytes += attacker.sendto(payload, target)
            if n % 20 == 0:
                tina.say(f"tcp chatter {n}")
                uma.say(f"udp chatter {n}")
        await uma.inbox.expect("[#lobby] <tina> tcp chatter 80")
        await tina.inbox.expect("[#lobby] <uma> udp chatter 80")
        # Datagrams to one socket are handled in arrival order, and loopback
        # delivers a reply before sendto returns: once the pong is here,
        # every reply the burst caused is in the attacker's buffer.
        uma.say("/ping")
        await uma.inbox.expect("* pong")
        replies = _drain(attacker)
        assert sum(len(reply) for reply in replies) <= sent_bytes
        assert all(
            CHALLENGE.fullmatch(r.decode().removesuffix("\r\n")) for r in replies
        )
        assert len(replies) == 1
    finally:
        attacker.close()
        await scene.stop()


@pytest.mark.skipif(not _dual_stack(), reason="needs a dual-stack IPv6 socket")
@ensure_deferred
async def test_ipv4_client_on_a_dual_stack_socket() -> None:
    """An IPv4 client reaches a listener on [::] and chats as an IPv4 address."""
    scene = Scene(udp="[::]:0")
    await scene.start()
    try:
        tina = await scene.tcp_user("tina")
        uma = await scene.udp_user("uma")
        uma.say("over v4-mapped")
        await tina.inbox.expect("[#lobby] <uma> over v4-mapped")
        assert scene.protocol is not None
        (session,) = scene.protocol.sessions.values()
        assert session.peer.startswith("udp 127.0.0.1:")
    finally:
        await scene.stop()


def _drain(sock: socket.socket) -> list[bytes]:
    """Every datagram already waiting on a non-blocking socket."""
    datagrams: list[bytes] = []
    try:
        while True:
            datagrams.append(sock.recv(65536))
    except BlockingIOError:
        return datagrams


@ensure_deferred
async def test_one_datagram_draws_at_most_eight_datagrams_back() -> None:
    """Twenty /ping in one 120-byte datagram: seven pongs and the cut line, no more."""
    scene = Scene()
    await scene.start()
    try:
        uma = await scene.udp_user("uma")
        before = len(uma.payloads)
        assert uma.transport is not None
        uma.transport.write(b"/ping\n" * 20, uma.server)
        await uma.inbox.expect(re.compile(r"\* Reply cut: .*"))
        replies = uma.payloads[before:]
        assert replies[:-1] == [b"* pong\r\n"] * (MAX_REPLY_DATAGRAMS - 1)
        assert len(replies) == MAX_REPLY_DATAGRAMS
    finally:
        await scene.stop()
