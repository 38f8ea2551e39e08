"""
The seam between the daemon and its front-ends: :class:`IChatListener`.

The daemon shuts down, reloads and counts clients through this interface
alone, never through a factory's protocols or a datagram protocol's sessions,
so a new front-end (IRC, a web socket) needs no change to the service: it
provides ``IChatListener`` for its clients and is listed once in
:mod:`twisted_chat.daemon.frontends`.

This module also holds the TCP front-end's provider, :class:`TcpClients`,
over :class:`~twisted_chat.transports.tcp.ChatServerFactory`; the UDP
listeners provide the interface themselves
(:mod:`twisted_chat.transports.udp_listeners`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Interface, implementer

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from twisted_chat.core.settings import Settings
    from twisted_chat.transports.stream_client import StreamChatFactory

__all__ = ["IChatListener", "TcpClients"]


class IChatListener(Interface):
    """
    The clients of one front-end, as the daemon handles them at shutdown and
    on reload.

    Shutdown goes: the core tells every member (``ChatServer.shut_down``),
    then each listener :meth:`close_clients`; the daemon waits on
    :meth:`wait_until_empty` for a grace period, and then
    :meth:`abort_clients` cuts off whoever is left.
    """

    def close_clients() -> None:
        """Flush what is queued for every client, then end its connection."""

    def abort_clients() -> None:
        """End every client still there at once, dropping what it has unread."""

    def apply_settings(settings: Settings) -> None:  # noqa: N805 - zope, no self
        """Give every client the reloaded settings (flood control)."""

    def wait_until_empty() -> Deferred[None]:
        """A Deferred that fires once no client is left (at once if none)."""

    def client_count() -> int:
        """How many clients this listener has now."""


@implementer(IChatListener)
class TcpClients:
    """
    The connections of one stream factory (``--tcp``, ``--irc``), whichever
    of its ports (each may be repeated) they came in on.
    """

    def __init__(self, factory: StreamChatFactory) -> None:
        self.factory = factory

    def close_clients(self) -> None:
        for protocol in list(self.factory.protocols):
            protocol.close()

    def abort_clients(self) -> None:
        for protocol in list(self.factory.protocols):
            protocol.transport.abortConnection()

    def apply_settings(self, settings: Settings) -> None:
        for protocol in list(self.factory.protocols):
            protocol.apply_settings(settings)

    def wait_until_empty(self) -> Deferred[None]:
        return self.factory.wait_until_empty()

    def client_count(self) -> int:
        return len(self.factory.protocols)
