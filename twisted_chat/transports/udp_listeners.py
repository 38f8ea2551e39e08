# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""
The UDP listeners: one service per ``--udp`` entry, each carrying its own
:class:`~twisted_chat.transports.udp.ChatDatagramProtocol`.

This module owns the assembly, not the chat: :func:`udp_listeners` turns the
``--udp`` values into services that share one token secret and one challenge
limiter, :class:`ChatUDPServer` binds a port as ``internet.UDPServer`` does,
and :class:`SystemdUDPService` adopts a datagram socket systemd passed in
(:func:`twisted_chat.daemon.inherited_sockets.adopt_udp`).  What happens to the
datagrams is :mod:`twisted_chat.transports.udp`'s business.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from twisted.application.internet import UDPServer
from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, maybeDeferred

from twisted_chat.daemon.options import parse_udp
from twisted_chat.transports.udp import ChatDatagramProtocol
from twisted_chat.transports.udp_handshake import ChallengeLimiter, TokenMint
from twisted_chat.transports.udp_session import MAX_DATAGRAM

if TYPE_CHECKING:
    from twisted.internet.interfaces import IListeningPort

    from twisted_chat.core.admission import Admission
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.settings import Settings
    from twisted_chat.daemon.inherited_sockets import InheritedSockets

__all__ = [
    "Adopt",
    "ChatUDPServer",
    "SystemdUDPService",
    "udp_listeners",
]


class ChatUDPServer(UDPServer):
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
    """The shape of :func:`twisted_chat.daemon.inherited_sockets.adopt_udp`."""

    def __call__(
        self,
        reactor: Any,
        name: str,
        protocol: ChatDatagramProtocol,
        *,
        max_packet_size: int,
    ) -> IListeningPort: ...


class SystemdUDPService(Service):
    """
    A UDP listener on a socket systemd passed in (``--udp systemd:name=NAME``).

    Adopted in :meth:`privilegedStartService`, like ``UDPServer`` binds.
    The daemon checks before that that the socket was passed
    (:func:`twisted_chat.daemon.service.make_chat_service`), so a missing one stops
    ``makeService`` with one line, before any port is bound.

    :param adopt: ``adopt_udp(reactor, name, protocol) -> IListeningPort``;
        :func:`twisted_chat.daemon.inherited_sockets.adopt_udp` by default.
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
        adopt = self._adopt if self._adopt is not None else _systemd_adopt()
        self._port = adopt(
            self.reactor,
            self.socket_name,
            self.chat_protocol,
            max_packet_size=MAX_DATAGRAM,
        )


def _systemd_adopt(sockets: InheritedSockets | None = None) -> Adopt:
    """:func:`.adopt_udp` with names looked up in ``sockets``."""
    from twisted_chat.daemon.inherited_sockets import adopt_udp

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

    return adopt


def udp_listeners(
    settings: Settings,
    server: ChatServer,
    admission: Admission,
    reactor: Any,
    *,
    inherited: InheritedSockets | None = None,
) -> list[IService]:
    """
    One service per ``--udp`` entry, each with its own protocol.

    All of them share one token secret and one challenge limiter: a token
    from one listener works on another, and the global challenge cap counts
    every listener.  Each service has a ``chat_protocol`` attribute whose
    ``sessions`` the daemon closes at shutdown.

    :param inherited: the sockets systemd passed, where ``systemd:name=``
        entries are looked up when they are adopted;
        :meth:`InheritedSockets.for_process` by default.
    """
    mint = TokenMint()
    limiter = ChallengeLimiter()
    services: list[IService] = []
    for value in settings.udp:
        where = parse_udp(value)
        protocol = ChatDatagramProtocol(server, admission, reactor, mint, limiter)
        service: IService
        if where.systemd_name:
            service = SystemdUDPService(
                where.systemd_name, protocol, reactor, _systemd_adopt(inherited)
            )
        else:
            service = ChatUDPServer(where.port, protocol, where.host, reactor)
        services.append(service)
    return services
