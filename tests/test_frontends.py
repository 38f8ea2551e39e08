"""
The table of front-ends drives the daemon, and the daemon reaches clients
only through ``IChatListener``.

A fake front-end added to the table (and nowhere else) must become an
option and a config key, be built, started, stopped and closed at shutdown,
hear reloads and adopt its systemd socket, all without any change to the
service.  The real TCP and UDP listeners must do what the interface says.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest
from twisted.application.service import Service
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, formatEvent
from twisted.python import usage
from twisted.python.systemd import ListenFDs
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_chat.core.settings import Settings
from twisted_chat.daemon.frontends import FRONT_ENDS, Built, FrontEnd, Wiring
from twisted_chat.daemon.inherited_sockets import InheritedSockets
from twisted_chat.daemon.options import Options
from twisted_chat.daemon.service import (
    SHUTDOWN_GRACE,
    ChatService,
    make_chat_service,
)
from twisted_chat.daemon.startup import (
    ListenerGroup,
    adopt_inherited,
    unadopted_socket,
)
from twisted_chat.transports.listener import IChatListener, TcpClients
from twisted_chat.transports.tcp import ChatLineProtocol, ChatServerFactory
from twisted_chat.transports.udp_listeners import ChatUDPServer

NOTHING = InheritedSockets(ListenFDs([], ()))


@implementer(IChatListener)
class FakeListener:
    """Records what the daemon asks of it; its clients leave when told."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.settings: list[Settings] = []
        self.clients = 0
        self.emptied: Deferred[None] = Deferred()

    def close_clients(self) -> None:
        self.calls.append("close")

    def abort_clients(self) -> None:
        self.calls.append("abort")

    def apply_settings(self, settings: Settings) -> None:
        self.calls.append("apply")
        self.settings.append(settings)

    def wait_until_empty(self) -> Deferred[None]:
        self.calls.append("wait")
        return self.emptied if self.clients else succeed(None)

    def client_count(self) -> int:
        return self.clients


class FakeService(Service):
    """A listening service that only says whether it runs."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.bound = False

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self.bound = True


def parse_fake(value: str) -> str:
    value = value.strip()
    if not value.isalpha():
        raise ValueError(f"{value!r} is not a word")
    return value.lower()


class Fake:
    """The fake front-end's table entry, and what its builder made."""

    def __init__(self) -> None:
        self.listener = FakeListener()
        self.services: list[FakeService] = []
        self.wiring: list[Wiring] = []
        self.entry = FrontEnd(
            name="fake",
            kind="Fake",
            help="Listen for fake chat: a WORD.",
            parse=parse_fake,
            build=self.build,
            activation_socket="chat-fake",
        )

    def build(self, wiring: Wiring, values: tuple[str, ...]) -> Built:
        self.wiring.append(wiring)
        self.services = [FakeService(value) for value in values]
        return Built(self.services, [self.listener])


@pytest.fixture
def fake() -> Fake:
    return Fake()


@pytest.fixture
def fake_options(fake: Fake) -> type[Options]:
    """``Options`` whose table has the fake front-end after TCP and UDP."""

    class FakeOptions(Options):
        front_ends: ClassVar[tuple[FrontEnd, ...]] = (*FRONT_ENDS, fake.entry)

    return FakeOptions


def parse(options: type[Options], *argv: str) -> Options:
    parsed = options()
    parsed.parseOptions([*argv, "--history-db", "off"])
    return parsed


def daemon(
    options: type[Options],
    *argv: str,
    inherited: InheritedSockets = NOTHING,
    reactor: MemoryReactorClock | None = None,
) -> ChatService:
    parsed = parse(options, *argv)
    return make_chat_service(
        parsed["settings"],
        MemoryReactorClock() if reactor is None else reactor,
        parsed["given"],
        inherited=inherited,
        front_ends=parsed.front_ends,
    )


def formatted(events: list[LogEvent], start: str) -> list[str]:
    return [text for e in events if (text := formatEvent(e)).startswith(start)]


# --- the table drives the options -------------------------------------------


def test_a_front_end_in_the_table_is_a_repeatable_option(
    fake_options: type[Options],
) -> None:
    """--fake appears in --help, takes values through its parser, and repeats."""
    assert "--fake=" in str(fake_options().getUsage())
    assert "Listen for fake chat: a WORD." in str(fake_options().getUsage())
    settings = parse(fake_options, "--fake", "One", "--fake", "two")["settings"]
    assert settings.listeners("fake") == ("one", "two")
    # A listener was configured: TCP 9000 and UDP 9001 are not opened.
    assert (settings.tcp, settings.udp) == ((), ())
    assert not settings.listeners_defaulted
    with pytest.raises(usage.UsageError, match=r"--fake: '9' is not a word"):
        parse(fake_options, "--fake", "9")
    with pytest.raises(usage.UsageError, match="option --fake not recognized"):
        parse(Options, "--fake", "one")


def test_a_front_end_in_the_table_is_a_config_key(
    fake_options: type[Options], tmp_path: Path
) -> None:
    """Its option name is a TOML key, checked by the same parser."""
    config = tmp_path / "chat.toml"
    config.write_text('fake = ["Three"]\n', encoding="utf-8")
    settings = parse(fake_options, "--config", str(config))["settings"]
    assert settings.listeners("fake") == ("three",)
    config.write_text('fake = ["3"]\n', encoding="utf-8")
    with pytest.raises(usage.UsageError, match="key 'fake': '3' is not a word"):
        parse(fake_options, "--config", str(config))
    config.write_text('fake = ["three"]\n', encoding="utf-8")
    with pytest.raises(usage.UsageError, match="unknown key 'fake'"):
        parse(Options, "--config", str(config))


# --- the service builds, starts and stops what the table says ----------------


def test_a_front_end_is_built_started_and_stopped_by_the_service(
    fake: Fake, fake_options: type[Options], log_events: list[LogEvent]
) -> None:
    """Its services run in a ListenerGroup named after it; shutdown closes it."""
    service = daemon(fake_options, "--fake", "one", "--fake", "two")
    (wiring,) = fake.wiring
    assert wiring.server is service.server
    assert wiring.admission is service.admission
    group = service.getServiceNamed("fake")
    assert isinstance(group, ListenerGroup)
    assert (group.kind, group.option) == ("Fake", "--fake")
    assert list(group) == fake.services
    assert "tcp" not in service.namedServices

    service.privilegedStartService()
    service.startService()
    assert [(s.bound, s.running) for s in fake.services] == [(True, True)] * 2
    assert formatted(log_events, "twisted-chat ready") == [
        "twisted-chat ready: tcp=[] udp=[] irc=[] web=[] metrics=[] fake=['one', 'two']"
    ]

    done = service.stopService()
    assert fake.listener.calls == ["close", "wait"]
    assert not service.running
    assert [s.running for s in fake.services] == [False, False]
    assert done.called
    # The grace timer was cancelled: nothing is aborted later.
    cast("MemoryReactorClock", service.reactor).advance(SHUTDOWN_GRACE + 1)
    assert fake.listener.calls == ["close", "wait"]


@pytest.mark.parametrize(
    ("clients", "said"), [(2, "2 connections"), (1, "1 connection")]
)
def test_clients_left_after_the_grace_are_aborted_through_the_listener(
    fake: Fake,
    fake_options: type[Options],
    log_events: list[LogEvent],
    clients: int,
    said: str,
) -> None:
    """Shutdown waits on wait_until_empty, then counts and aborts the rest."""
    service = daemon(fake_options, "--fake", "one")
    service.startService()
    fake.listener.clients = clients
    stopped: list[None] = []
    service.stopService().addCallback(stopped.append)
    clock = cast("MemoryReactorClock", service.reactor)
    clock.advance(SHUTDOWN_GRACE - 0.1)
    assert fake.listener.calls == ["close", "wait"]
    assert fake.services[0].running
    clock.advance(0.2)
    assert fake.listener.calls == ["close", "wait", "abort"]
    assert formatted(log_events, "aborting") == [
        f"aborting {said} that did not close in time"
    ]
    assert stopped == []
    fake.listener.clients = 0
    fake.listener.emptied.callback(None)
    assert stopped == [None]
    assert not fake.services[0].running


def test_reload_reaches_a_front_ends_listener_and_keeps_its_values(
    fake: Fake, fake_options: type[Options], tmp_path: Path, log_events: list[LogEvent]
) -> None:
    """apply_settings gets the live settings; a changed listener waits for a restart."""
    config = tmp_path / "chat.toml"
    config.write_text('fake = ["one"]\nhistory-db = "off"\nflood-burst = 4\n')
    service = daemon(fake_options, "--config", str(config))
    config.write_text('fake = ["two"]\nhistory-db = "off"\nflood-burst = 7\n')
    assert service.reload()
    assert fake.listener.calls == ["apply"]
    (live,) = fake.listener.settings
    assert live is service.settings
    assert live.flood_burst == 7
    assert live.listeners("fake") == ("one",)
    assert formatted(log_events, "reload: ") == [
        "reload: fake changed; it takes effect after a restart"
    ]


# --- socket activation follows the table -------------------------------------


@pytest.fixture
def passed_fake() -> Iterator[InheritedSockets]:
    with socket.socket() as sock:
        yield InheritedSockets(ListenFDs([sock.fileno()], ("chat-fake",)))


def test_a_front_end_adopts_its_systemd_socket(
    fake: Fake, fake_options: type[Options], passed_fake: InheritedSockets
) -> None:
    """Nothing configured and chat-fake passed: it is adopted, the defaults go."""
    front_ends = fake_options.front_ends
    settings = parse(fake_options)["settings"]
    assert settings.listeners_defaulted
    adopted = adopt_inherited(settings, passed_fake, front_ends=front_ends)
    assert adopted.listeners("fake") == ("systemd:name=chat-fake",)
    assert (adopted.tcp, adopted.udp) == ((), ())
    assert not adopted.listeners_defaulted

    configured = parse(fake_options, "--fake", "word")["settings"]
    assert adopt_inherited(configured, passed_fake, front_ends=front_ends) is configured
    # When its listener then fails to bind, the one line names the socket.
    assert unadopted_socket(fake.entry, configured, passed_fake) == "chat-fake"
    service = daemon(fake_options, "--fake", "word", inherited=passed_fake)
    assert cast("ListenerGroup", service.getServiceNamed("fake")).passed == (
        "chat-fake"
    )


# --- the real front-ends keep the interface's promises -----------------------


def connect(factory: ChatServerFactory, port: int) -> ChatLineProtocol:
    address = IPv4Address("TCP", "127.0.0.1", port)
    protocol = cast("ChatLineProtocol", factory.buildProtocol(address))
    protocol.makeConnection(StringTransport(peerAddress=address))
    return protocol


def test_tcp_clients_are_a_factorys_connections() -> None:
    """TcpClients counts, updates, closes and aborts every connection."""
    service = daemon(Options, "--tcp", "tcp:0", "--flood-burst", "5")
    (clients,) = service.listeners["tcp"]
    assert isinstance(clients, TcpClients)
    assert verifyObject(IChatListener, clients)
    factory = service.tcp_factory
    assert clients.factory is factory
    first, second = connect(factory, 40000), connect(factory, 40001)
    assert clients.client_count() == 2
    clients.apply_settings(Settings(flood_burst=9))
    assert first._bucket is not None
    assert first._bucket.burst == 9
    emptied: list[None] = []
    clients.wait_until_empty().addCallback(emptied.append)
    clients.close_clients()
    assert [p.transport.disconnecting for p in (first, second)] == [True, True]
    clients.abort_clients()
    assert [cast("Any", p.transport).disconnected for p in (first, second)] == [
        True,
        True,
    ]
    assert emptied == []
    for protocol in (first, second):
        protocol.connectionLost()
    assert emptied == [None]
    assert clients.client_count() == 0


class Datagrams:
    """A datagram port that keeps what is written to each address."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, Any]] = []
        self.listening = True

    def write(self, packet: bytes, addr: Any = None) -> None:
        self.written.append((packet, addr))

    def stopListening(self) -> None:
        self.listening = False


class DatagramReactor(MemoryReactorClock):
    """A memory reactor whose one UDP port is :class:`Datagrams`."""

    def __init__(self) -> None:
        super().__init__()
        self.wire = Datagrams()

    def listenUDP(self, _port: int, protocol: Any, *_: Any, **__: Any) -> Datagrams:
        protocol.makeConnection(self.wire)
        return self.wire


def test_udp_listeners_are_their_sessions(tmp_path: Path) -> None:
    """Reload and shutdown reach a UDP session through its listener."""
    config = tmp_path / "chat.toml"
    config.write_text('udp = ["127.0.0.1:0"]\nhistory-db = "off"\nflood-burst = 5\n')
    reactor = DatagramReactor()
    service = daemon(Options, "--config", str(config), reactor=reactor)
    (udp,) = service.listeners["udp"]
    assert isinstance(udp, ChatUDPServer)
    assert verifyObject(IChatListener, udp)
    service.startService()
    carol = ("127.0.0.1", 5555)
    udp.chat_protocol.datagramReceived(b"hi\n", carol)
    token = reactor.wire.written[-1][0].split()[3]
    udp.chat_protocol.datagramReceived(b"/hello " + token + b"\n", carol)
    (session,) = udp.chat_protocol.sessions.values()
    assert udp.client_count() == 1

    config.write_text('udp = ["127.0.0.1:0"]\nhistory-db = "off"\nflood-burst = 8\n')
    assert service.reload()
    assert session.bucket is not None
    assert session.bucket.burst == 8

    reactor.wire.written.clear()
    done = service.stopService()
    assert done.called
    assert udp.client_count() == 0
    assert (b"* Server shutting down\r\n", carol) in reactor.wire.written
    assert not reactor.wire.listening


def test_a_udp_session_begun_after_close_is_ended_by_abort(tmp_path: Path) -> None:
    """UDP has nothing to drain, so ``abort_clients`` closes late arrivals."""
    config = tmp_path / "chat.toml"
    config.write_text('udp = ["127.0.0.1:0"]\nhistory-db = "off"\n')
    reactor = DatagramReactor()
    service = daemon(Options, "--config", str(config), reactor=reactor)
    (udp,) = service.listeners["udp"]
    assert isinstance(udp, ChatUDPServer)
    service.startService()
    udp.close_clients()
    assert udp.wait_until_empty().called
    dave = ("127.0.0.1", 6666)
    udp.chat_protocol.datagramReceived(b"hi\n", dave)
    token = reactor.wire.written[-1][0].split()[3]
    udp.chat_protocol.datagramReceived(b"/hello " + token + b"\n", dave)
    assert udp.client_count() == 1
    udp.abort_clients()
    assert udp.client_count() == 0


def test_settings_keep_listener_values_by_front_end_name() -> None:
    """tcp/udp have fields; any other front-end's values go in more_listeners."""
    settings = Settings(tcp=("9000",)).with_listeners({"irc": ("6667",)})
    assert settings.listeners("tcp") == ("9000",)
    assert settings.listeners("irc") == ("6667",)
    assert settings.with_listeners({"irc": ()}).listeners("irc") == ()
    # A setting that is not a front-end is never read or set as one.
    odd = settings.with_listeners({"max_line": ("5",)})
    assert odd.max_line == Settings().max_line
    assert odd.listeners("max_line") == ("5",)
