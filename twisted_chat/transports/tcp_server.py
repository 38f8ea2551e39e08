"""
The server side of one plain TCP connection, lighter than Twisted's.

Twisted's ``tcp.Server`` makes two labels for every connection it accepts,
its log prefix (``ChatLineProtocol,123,192.0.2.7``) and its ``repr``
(``<ChatLineProtocol #123 on 9000>``), and keeps both for the connection's
life: about 160 bytes of each idle client's 2.5 KiB, and two string
formattings per connect, for text that is read only when Twisted logs an
error from the connection's callbacks.  :class:`LeanServer` makes them when
they are read instead, from what the connection keeps anyway, except the log
prefix the reactor asks for on every event of the connection: that is one
string per port, the protocol's name and ``tcp`` (``ChatLineProtocol,tcp``),
without the session number and the peer's address, which our own log lines
carry (``peer=tcp 192.0.2.7:50312``).

A listening port builds its connections with its ``transport`` class; the
first connection a :class:`~twisted_chat.transports.stream_client.StreamChatProtocol`
gets through a port sets that port's class to :class:`LeanServer`
(:func:`lean_port`), so that every later connection of the port is one.
Nothing else differs: ``LeanServer`` is a ``tcp.Server``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

__all__ = ["LeanServer", "lean_port", "plain_tcp"]


class LeanServer(tcp.Server):
    """
    A ``tcp.Server`` that keeps no labels of its own: the reactor's log
    prefix is the port's (:attr:`prefix`), ``repr`` and ``logstr`` are made
    when read.
    """

    #: What the reactor logs this connection's events under (per port:
    #: :func:`lean_port` makes a subclass with the protocol's name).
    prefix = "-,tcp"

    def logPrefix(self) -> str:
        """Read for every event the reactor hands the connection: one string."""
        return self.prefix

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


def plain_tcp(transport: object) -> bool:
    """
    Whether ``transport`` is a plain TCP connection's (its socket carries the
    chat: neither TLS nor a UNIX socket): Twisted's own ``tcp.Server``, or
    one of the :class:`LeanServer` classes :func:`lean_port` makes.
    """
    return type(transport) is tcp.Server or isinstance(transport, LeanServer)


#: The LeanServer class for each log prefix (a protocol's name).
_CLASSES: dict[str, type[LeanServer]] = {}


def lean_port(port: Any, protocol: object) -> None:
    """
    Make ``port`` (a ``tcp.Port``) build its next connections as a
    :class:`LeanServer` whose log prefix names ``protocol``'s kind, if it
    builds Twisted's own ``tcp.Server``.
    """
    if getattr(port, "transport", None) is not tcp.Server:
        return
    prefix = f"{tcp.Server._getLogPrefix(port, protocol)},tcp"
    lean = _CLASSES.get(prefix)
    if lean is None:
        lean = _CLASSES[prefix] = type("LeanServer", (LeanServer,), {"prefix": prefix})
    port.transport = lean
