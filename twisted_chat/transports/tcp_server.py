"""
The server side of one plain TCP connection, lighter than Twisted's.

Twisted's ``tcp.Server`` makes two labels for every connection it accepts,
its log prefix (``ChatLineProtocol,123,192.0.2.7``) and its ``repr``
(``<ChatLineProtocol #123 on 9000>``), and keeps both for the connection's
life: about 160 bytes of each idle client's 2.5 KiB, and two string
formattings per connect, for text that is read only when Twisted logs an
error from the connection's callbacks.  :class:`LeanServer` makes them when
they are read instead, from what the connection keeps anyway.

A listening port builds its connections with its ``transport`` class; the
first connection a :class:`~twisted_chat.transports.stream_client.StreamChatProtocol`
gets through a port sets that port's class to :class:`LeanServer`
(:func:`lean_port`), so that every later connection of the port is one.
Nothing else differs: ``LeanServer`` is a ``tcp.Server``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

__all__ = ["PLAIN_TCP", "LeanServer", "lean_port"]


class LeanServer(tcp.Server):
    """A ``tcp.Server`` that makes its log prefix and ``repr`` when asked."""

    @property
    def logstr(self) -> str:
        """``PROTOCOL,SESSION,HOST``, as Twisted's own."""
        protocol = self.__dict__.get("protocol")
        prefix = "-" if protocol is None else self._getLogPrefix(protocol)
        return f"{prefix},{self.sessionno},{self.hostname}"

    @logstr.setter
    def logstr(self, value: str) -> None:
        """``tcp.Server.__init__`` sets it: not kept (made when read)."""

    @property
    def repstr(self) -> str:
        """``<PROTOCOL #SESSION on PORT>``, as Twisted's own."""
        protocol = self.__dict__.get("protocol")
        name = "?" if protocol is None else type(protocol).__name__
        port = getattr(self.server, "_realPortNumber", None)
        return f"<{name} #{self.sessionno} on {port}>"

    @repstr.setter
    def repstr(self, value: str) -> None:
        """``tcp.Server.__init__`` sets it: not kept (made when read)."""


#: The transports of plain TCP connections (the socket carries the chat).
PLAIN_TCP = (tcp.Server, LeanServer)


def lean_port(port: Any) -> None:
    """Make ``port`` (a ``tcp.Port``) build its next connections as
    :class:`LeanServer`, if it builds Twisted's own ``tcp.Server``."""
    if getattr(port, "transport", None) is tcp.Server:
        port.transport = LeanServer
