"""
The one table of ways in: :data:`FRONT_ENDS`.

Each :class:`FrontEnd` says everything the daemon needs to know about one
kind of listener: its option (``--tcp``; the same key in the TOML file),
what it is called in messages, how a value is checked, its default and the
socket-activation name it adopts, and a builder that makes its listening
services and the :class:`~twisted_chat.transports.listener.IChatListener`
of its clients.  The command line, the config file, ``--help``, start-up,
socket activation, reload and shutdown all loop over this table; none of
them names a front-end.

The builders are where the daemon's knowledge meets a transport: they look
``systemd:`` sockets up in the inherited ones and hand the transport plain
descriptions and functions, so no transport imports the daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from attrs import frozen
from twisted.application import strports
from twisted.application.service import IService

from twisted_chat.daemon.addresses import tcp_description, udp_description
from twisted_chat.daemon.inherited_sockets import (
    InheritedSocketError,
    InheritedSockets,
    adopt_udp,
)
from twisted_chat.daemon.irc import irc_settings
from twisted_chat.daemon.startup import StartupError
from twisted_chat.transports.irc import IrcFactory
from twisted_chat.transports.listener import IChatListener, TcpClients
from twisted_chat.transports.tcp import ChatServerFactory
from twisted_chat.transports.udp_listeners import parse_udp, udp_listeners

if TYPE_CHECKING:
    from twisted.internet.interfaces import IListeningPort

    from twisted_chat.core.admission import Admission
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.settings import Settings
    from twisted_chat.transports.udp import ChatDatagramProtocol

__all__ = [
    "FRONT_ENDS",
    "IRC",
    "METRICS",
    "TCP",
    "UDP",
    "WEB",
    "Built",
    "FrontEnd",
    "Wiring",
    "blaming",
]


@frozen
class Wiring:
    """What every front-end's listeners are built from."""

    settings: Settings
    server: ChatServer
    admission: Admission
    reactor: Any
    #: The sockets systemd passed, for ``systemd:name=`` values.
    inherited: InheritedSockets
    #: Every front-end's chat listeners by name, filled in as each is built
    #: (the daemon's ``ChatService.listeners``): ``--metrics`` reads the UDP
    #: ones' counters from it at scrape time.
    listeners: Mapping[str, Sequence[IChatListener]]


@frozen
class Built:
    """A front-end's part of the daemon."""

    #: Started in this order under the front-end's ``ListenerGroup``.
    services: Sequence[IService]
    #: Whose clients shutdown closes, reload updates and shutdown counts.
    listeners: Sequence[IChatListener]


@frozen
class FrontEnd:
    """One way in, as the daemon configures, starts and stops it."""

    #: The option (``tcp`` is ``--tcp``), the TOML key, the ``Settings``
    #: listener name and the name of the front-end's service.
    name: str
    #: What people call it in messages: ``TCP``.
    kind: str
    #: The ``--help`` line of the option.
    help: str
    #: One value as written, to the spelling the settings keep;
    #: :class:`ValueError` says what is wrong with it.
    parse: Callable[[str], str]
    #: The services and listeners for the (checked) values; raises
    #: :class:`~twisted_chat.daemon.startup.StartupError`.
    build: Callable[[Wiring, tuple[str, ...]], Built]
    #: Where it listens when no front-end is configured ("" = nowhere).
    default: str = ""
    #: The ``FileDescriptorName=`` of the socket it adopts from systemd
    #: when its option is not configured ("" = none).
    activation_socket: str = ""
    #: Whether chat clients come in through it: with none of these
    #: configured, the defaults listen (``--metrics`` alone still chats).
    chat: bool = True

    @property
    def option(self) -> str:
        """The command-line spelling: ``--tcp``."""
        return f"--{self.name}"


@contextmanager
def blaming(option: str, value: str) -> Iterator[None]:
    """Turn a bad inherited socket into one start-up line naming the value."""
    try:
        yield
    except InheritedSocketError as problem:
        raise StartupError(f"{option} {value}: {problem}") from None


def _stream_services(
    wiring: Wiring, option: str, values: tuple[str, ...], factory: Any
) -> list[IService]:
    """One ``strports`` service per value of a stream option, all on ``factory``."""
    services: list[IService] = []
    for value in values:
        with blaming(option, value):
            endpoint = wiring.inherited.stream_description(value)
        services.append(strports.service(endpoint, factory, reactor=wiring.reactor))
    return services


def _build_tcp(wiring: Wiring, values: tuple[str, ...]) -> Built:
    """One ``strports`` service per ``--tcp``, all on one factory."""
    factory = ChatServerFactory(wiring.server, wiring.admission, wiring.reactor)
    return Built(
        _stream_services(wiring, "--tcp", values, factory), [TcpClients(factory)]
    )


def _build_irc(wiring: Wiring, values: tuple[str, ...]) -> Built:
    """One ``strports`` service per ``--irc``, all on one factory."""
    irc = irc_settings(wiring.settings)
    factory = IrcFactory(wiring.server, wiring.admission, wiring.reactor, irc)
    return Built(
        _stream_services(wiring, "--irc", values, factory), [TcpClients(factory)]
    )


def _build_web(wiring: Wiring, values: tuple[str, ...]) -> Built:
    """One ``strports`` service per ``--web``, all on one Site (and WebFormat).

    Imported here, not at the top: a daemon without ``--web`` loads none of
    twisted.web and wsproto (about 5 MB of memory it would never use).
    """
    from twisted_chat.daemon.web import web_factory
    from twisted_chat.transports.web import WebClients

    factory = web_factory(
        wiring.settings, wiring.server, wiring.admission, wiring.reactor
    )
    return Built(
        _stream_services(wiring, "--web", values, factory), [WebClients(factory)]
    )


def _build_udp(wiring: Wiring, values: tuple[str, ...]) -> Built:
    """One listener per ``--udp``, each the ``IChatListener`` of its sessions."""
    for value in values:
        # Said now, as one line from makeService, rather than as a
        # traceback when twistd would adopt the socket.
        name = parse_udp(value).systemd_name
        if name:
            with blaming("--udp", value):
                wiring.inherited.datagram_fd(name)
    sockets = wiring.inherited

    def adopt(
        reactor: Any,
        name: str,
        protocol: ChatDatagramProtocol,
        *,
        max_packet_size: int,
    ) -> IListeningPort:
        return adopt_udp(
            reactor, name, protocol, sockets=sockets, max_packet_size=max_packet_size
        )

    services = udp_listeners(
        wiring.settings,
        wiring.server,
        wiring.admission,
        wiring.reactor,
        values=values,
        adopt=adopt,
    )
    return Built(services, services)


def _build_metrics(wiring: Wiring, values: tuple[str, ...]) -> Built:
    """The loop's timer, then one ``strports`` service per ``--metrics``.

    Imported here, not at the top: a daemon without ``--metrics`` loads
    none of prometheus_client nor twisted.web.  Its listeners are no chat
    clients' (``Built.listeners`` is empty); the collector reads the
    others' from ``Wiring.listeners`` at scrape time.
    """
    from twisted_chat.daemon.health import LoopWatch, LoopWatchService
    from twisted_chat.daemon.metrics import metrics_site

    watch = LoopWatch(wiring.reactor)
    ticking = LoopWatchService(watch)
    site = metrics_site(wiring.server, watch, wiring.reactor, wiring.listeners)
    services: list[IService] = [ticking]
    for value in values:
        with blaming("--metrics", value):
            endpoint = wiring.inherited.stream_description(value)
        services.append(strports.service(endpoint, site, reactor=wiring.reactor))
    return Built(services, [])


TCP = FrontEnd(
    name="tcp",
    kind="TCP",
    help="Listen for TCP chat: PORT or an endpoint (tcp:, ssl:, systemd:...).",
    parse=tcp_description,
    build=_build_tcp,
    default="9000",
    activation_socket="chat-tcp",
)
UDP = FrontEnd(
    name="udp",
    kind="UDP",
    help="Listen for UDP chat: PORT, HOST:PORT, [IPv6]:PORT, systemd:name=N.",
    parse=udp_description,
    build=_build_udp,
    default="9001",
    activation_socket="chat-udp",
)

IRC = FrontEnd(
    name="irc",
    kind="IRC",
    help="Listen for IRC clients: PORT or an endpoint (tcp:, ssl:, systemd:...).",
    parse=tcp_description,
    build=_build_irc,
    activation_socket="chat-irc",
)

WEB = FrontEnd(
    name="web",
    kind="web",
    help="Serve the chat page and its WebSocket: PORT or an endpoint (tcp:, ssl:...).",
    parse=tcp_description,
    build=_build_web,
    activation_socket="chat-web",
)

METRICS = FrontEnd(
    name="metrics",
    kind="metrics",
    help=(
        "Serve /metrics (Prometheus) and /healthz over HTTP, without "
        "authentication: bind it to loopback or a private address "
        "(tcp:9100:interface=127.0.0.1)."
    ),
    parse=tcp_description,
    build=_build_metrics,
    activation_socket="chat-metrics",
    chat=False,
)

#: Every way in, in the order they are started (the metrics last: it
#: reports on the others).
FRONT_ENDS: tuple[FrontEnd, ...] = (TCP, UDP, IRC, WEB, METRICS)
