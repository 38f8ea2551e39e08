# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""
The UDP listeners: one service per ``--udp`` entry, each carrying its own
:class:`~twisted_chat.transports.udp.ChatDatagramProtocol`.

This module owns the UDP front-end's assembly, not the chat: the syntax of a
``--udp`` value (:func:`parse_udp`), :func:`udp_listeners`, which turns the
values into services that share one token secret and one challenge limiter,
:class:`ChatUDPServer`, which binds a port as ``internet.UDPServer`` does, and
:class:`SystemdUDPService`, which adopts a datagram socket systemd passed in
through the ``adopt`` function the daemon hands it (so nothing here knows how
sockets are inherited).  Both services are the
:class:`~twisted_chat.transports.listener.IChatListener` of their sessions.
What happens to the datagrams is :mod:`twisted_chat.transports.udp`'s
business.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from attrs import frozen
from twisted.application.internet import UDPServer
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from zope.interface import implementer

from twisted_chat.transports.listener import IChatListener
from twisted_chat.transports.udp import ChatDatagramProtocol
from twisted_chat.transports.udp_handshake import ChallengeLimiter, TokenMint
from twisted_chat.transports.udp_session import MAX_DATAGRAM

if TYPE_CHECKING:
    from twisted.internet.interfaces import IListeningPort

    from twisted_chat.core.admission import Admission
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.settings import Settings

__all__ = [
    "Adopt",
    "ChatUDPServer",
    "SystemdUDPService",
    "UdpAddress",
    "parse_udp",
    "udp_listeners",
]


@frozen
class UdpAddress:
    """Where a UDP listener binds, or which inherited socket it adopts."""

    host: str
    port: int
    systemd_name: str = ""

    def describe(self) -> str:
        """The canonical spelling, as ``--udp`` accepts it back."""
        if self.systemd_name:
            return f"systemd:name={self.systemd_name}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


_UDP_FORMS = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]:|(?P<host>[^:\[\]]+):)?(?P<port>\d+)$"
)


def parse_udp(value: str, wildcard: str = "0.0.0.0") -> UdpAddress:
    """
    ``PORT``, ``HOST:PORT``, ``[IPv6]:PORT`` or ``systemd:name=NAME``.

    :param wildcard: the host a bare ``PORT`` binds (the daemon passes
        ``::`` where that takes IPv4 clients too).
    :raises ValueError: saying what a ``--udp`` value may be.
    """
    value = value.strip()
    if value.startswith("systemd:"):
        name = value.removeprefix("systemd:").removeprefix("name=")
        if not name:
            raise ValueError(
                "systemd: needs a socket name, as in systemd:name=chat-udp"
            )
        return UdpAddress(host="", port=0, systemd_name=name)
    match = _UDP_FORMS.match(value)
    if match is None:
        raise ValueError(
            f"{value!r} is not a UDP address; write PORT, HOST:PORT or [IPv6]:PORT"
        )
    port = int(match["port"])
    if port > 65535:
        raise ValueError(f"expected a number from 0 to 65535, not {port}")
    host = match["v6"] or match["host"] or wildcard
    return UdpAddress(host=host, port=port)


@implementer(IChatListener)
class _Sessions:
    """``IChatListener`` over the sessions of a service's ``chat_protocol``."""

    chat_protocol: ChatDatagramProtocol

    def close_clients(self) -> None:
        for session in list(self.chat_protocol.sessions.values()):
            session.close()

    def abort_clients(self) -> None:
        # Nothing is queued in UDP, so closing is all aborting can do: for
        # the sessions that began after close_clients.
        self.close_clients()

    def apply_settings(self, settings: Settings) -> None:
        self.chat_protocol.apply_settings(settings)

    def wait_until_empty(self) -> Deferred[None]:
        # A session ends the moment it is closed; there is nothing to drain.
        return succeed(None)

    def client_count(self) -> int:
        return len(self.chat_protocol.sessions)


class ChatUDPServer(_Sessions, UDPServer):
    """``internet.UDPServer`` that keeps its chat protocol where the daemon looks."""

    def __init__(
        self, port: int, protocol: ChatDatagramProtocol, interface: str, reactor: Any
    ) -> None:
        super().__init__(
            port,
            protocol,
            interface=interface,
            maxPacketSize=MAX_DATAGRAM,
            reactor=reactor,
        )
        self.chat_protocol = protocol


class Adopt(Protocol):
    """
    How a :class:`SystemdUDPService` gets its port: start ``protocol`` on the
    inherited datagram socket ``name`` (the daemon passes
    ``twisted_chat.daemon.inherited_sockets.adopt_udp``, bound to the sockets
    this process inherited).
    """

    def __call__(
        self,
        reactor: Any,
        name: str,
        protocol: ChatDatagramProtocol,
        *,
        max_packet_size: int,
    ) -> IListeningPort: ...


class SystemdUDPService(_Sessions, Service):
    """
    A UDP listener on a socket systemd passed in (``--udp systemd:name=NAME``).

    Adopted in :meth:`privilegedStartService`, like ``UDPServer`` binds.
    The daemon checks before that that the socket was passed, so a missing
    one stops ``makeService`` with one line, before any port is bound.

    :param adopt: starts the protocol on the inherited socket; required to
        start the service.
    """

    def __init__(
        self,
        name: str,
        protocol: ChatDatagramProtocol,
        reactor: Any,
        adopt: Adopt | None = None,
    ) -> None:
        self.socket_name = name
        self.chat_protocol = protocol
        self.reactor = reactor
        self._adopt = adopt
        self._port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        if self._port is None:
            self._listen()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        port, self._port = self._port, None
        if port is None:
            return None
        return maybeDeferred(port.stopListening).addCallback(lambda _: None)

    def _listen(self) -> None:
        if self._adopt is None:
            raise RuntimeError(
                f"no way to adopt the inherited socket {self.socket_name!r} "
                "was given (SystemdUDPService needs adopt=)"
            )
        self._port = self._adopt(
            self.reactor,
            self.socket_name,
            self.chat_protocol,
            max_packet_size=MAX_DATAGRAM,
        )


def udp_listeners(
    settings: Settings,
    server: ChatServer,
    admission: Admission,
    reactor: Any,
    *,
    values: Sequence[str] | None = None,
    adopt: Adopt | None = None,
) -> list[ChatUDPServer | SystemdUDPService]:
    """
    One service per ``--udp`` entry, each with its own protocol.

    All of them share one token secret and one challenge limiter: a token
    from one listener works on another, and the global challenge cap counts
    every listener.  Each is the ``IChatListener`` of its own sessions.

    :param values: the ``--udp`` values; ``settings.udp`` by default.
    :param adopt: how ``systemd:name=`` entries get their socket (see
        :class:`Adopt`).
    """
    mint = TokenMint()
    limiter = ChallengeLimiter()
    services: list[ChatUDPServer | SystemdUDPService] = []
    for value in settings.udp if values is None else values:
        where = parse_udp(value)
        protocol = ChatDatagramProtocol(server, admission, reactor, mint, limiter)
        if where.systemd_name:
            services.append(
                SystemdUDPService(where.systemd_name, protocol, reactor, adopt)
            )
        else:
            services.append(ChatUDPServer(where.port, protocol, where.host, reactor))
    return services
