# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""
Socket activation: the sockets systemd passed to this process, by name.

Twisted adopts inherited *stream* sockets (the ``systemd:`` endpoint) and
nothing else.  This module owns the rest: :class:`InheritedSockets` looks a
socket up by the ``FileDescriptorName=`` of its ``.socket`` unit and checks
its kind, :func:`systemd_socket_name` reads the name out of a ``--tcp`` or
``--udp`` value, and :func:`adopt_udp` starts a datagram protocol on an
inherited datagram socket, which Twisted cannot do.  Anything wrong is an
:class:`InheritedSocketError` whose message says what was inherited instead.

Inherited descriptors are read once per process, by Twisted: importing
:mod:`twisted.internet.endpoints` builds ``_SystemdParser._sddaemon`` from
``LISTEN_PID``/``LISTEN_FDS``/``LISTEN_FDNAMES`` and deletes the first two
from ``os.environ``, so any later reading of the environment finds nothing.
:meth:`InheritedSockets.for_process` therefore wraps that same
:class:`~twisted.python.systemd.ListenFDs` object, and the TCP and UDP
listeners agree on which descriptor carries which name.

Nothing here imports the reactor; callers pass it in.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from attrs import field, frozen
from twisted.internet.endpoints import _SystemdParser
from twisted.python.systemd import ListenFDs

if TYPE_CHECKING:
    from collections.abc import Mapping

    from twisted.internet.interfaces import IListeningPort, IReactorSocket
    from twisted.internet.protocol import DatagramProtocol

__all__ = [
    "InheritedSocketError",
    "InheritedSockets",
    "adopt_udp",
    "systemd_socket_name",
]

#: How a ``--tcp``/``--udp`` value that names an inherited socket starts.
_PREFIX = "systemd:"


class InheritedSocketError(Exception):
    """
    A ``systemd:`` listener names a socket that systemd did not pass, or one
    of the wrong kind.  The message says what was inherited instead.
    """


def systemd_socket_name(description: str) -> str | None:
    """
    Return ``NAME`` from a ``systemd:name=NAME`` listener description (TCP
    descriptions may also carry ``domain=``), or ``None`` for any other
    description.

    :raises InheritedSocketError: for a ``systemd:`` description without
        ``name=``: numbering by ``index=`` depends on unit order, so the
        daemon accepts names only.
    """
    if not description.startswith(_PREFIX):
        return None
    for argument in description[len(_PREFIX) :].split(":"):
        key, _, value = argument.partition("=")
        if key == "name" and value:
            return value
    raise InheritedSocketError(
        f"{description!r} names no socket: write systemd:name=NAME, with the "
        "FileDescriptorName= of the .socket unit (chat-tcp or chat-udp)"
    )


def _kind(fd: int) -> tuple[socket.AddressFamily, socket.SocketKind]:
    """Return the family and type of the socket ``fd``, leaving it open."""
    sock = socket.socket(fileno=fd)
    try:
        return sock.family, sock.type
    finally:
        sock.detach()


@frozen
class InheritedSockets:
    """
    The sockets systemd passed to this process, looked up by the
    ``FileDescriptorName=`` of their ``.socket`` unit.

    Build it with :meth:`for_process` in the daemon (it shares Twisted's one
    reading of the environment, see the module docstring) and with
    :meth:`from_environment` in tests.
    """

    listen_fds: ListenFDs = field()

    @classmethod
    def for_process(cls) -> InheritedSockets:
        """
        Return the sockets this process inherited, exactly as Twisted's
        ``systemd:`` stream endpoint sees them.
        """
        shared = getattr(_SystemdParser, "_sddaemon", None)
        if isinstance(shared, ListenFDs):
            return cls(shared)
        # A Twisted that no longer reads the environment at import time
        # leaves it to us.
        return cls(ListenFDs.fromEnvironment())

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str], start: int | None = None
    ) -> InheritedSockets:
        """
        Parse ``LISTEN_PID``, ``LISTEN_FDS`` and ``LISTEN_FDNAMES`` from
        ``environ``, which is left unchanged.

        :param start: the first descriptor; systemd always uses 3.
        """
        # ListenFDs deletes what it read; work on a copy.
        return cls(ListenFDs.fromEnvironment(dict(environ), start))

    def names(self) -> dict[str, int]:
        """Map each inherited name to its descriptor."""
        return self.listen_fds.inheritedNamedDescriptors()

    def _lookup(self, name: str, kind: socket.SocketKind) -> int:
        named = self.names()
        if name not in named:
            inherited = ", ".join(sorted(named)) or "none"
            raise InheritedSocketError(
                f"systemd passed no socket named {name!r} (inherited: "
                f"{inherited}); is the .socket unit with "
                f"FileDescriptorName={name} running, and did it start "
                "this service?"
            )
        fd = named[name]
        try:
            actual = _kind(fd)[1]
        except OSError as e:
            raise InheritedSocketError(
                f"Inherited descriptor {fd} ({name!r}) is not a socket: {e}"
            ) from e
        if actual != kind:
            wanted = (
                "ListenStream=" if kind == socket.SOCK_STREAM else "ListenDatagram="
            )
            raise InheritedSocketError(
                f"Inherited socket {name!r} is {actual.name}, not {kind.name}: "
                f"its .socket unit needs {wanted}"
            )
        return fd

    def stream_fd(self, name: str) -> int:
        """
        Return the descriptor of the inherited stream socket ``name``.

        :raises InheritedSocketError: when there is none by that name, or it
            is not a stream socket.
        """
        return self._lookup(name, socket.SOCK_STREAM)

    def datagram_fd(self, name: str) -> int:
        """
        Return the descriptor of the inherited datagram socket ``name``.

        :raises InheritedSocketError: when there is none by that name, or it
            is not a datagram socket.
        """
        return self._lookup(name, socket.SOCK_DGRAM)

    def stream_description(self, description: str) -> str:
        """
        Complete a ``systemd:name=NAME`` TCP description for
        ``strports.service``: check the socket was inherited, and add the
        ``domain=`` that Twisted requires, read from the socket itself.  An
        explicit ``domain=`` must match it.  Other descriptions are returned
        unchanged.

        Twisted would otherwise fail with a bare ``KeyError`` for a missing
        name, and a ``domain=`` that does not match the socket (``INET6`` for
        a bare ``ListenStream=9000``) yields garbled addresses.

        :raises InheritedSocketError: see :meth:`stream_fd`, and for a
            ``domain=`` that does not match.
        """
        name = systemd_socket_name(description)
        if name is None:
            return description
        family = _kind(self.stream_fd(name))[0].name.removeprefix("AF_")
        arguments = description[len(_PREFIX) :].split(":")
        domains = [a.partition("=")[2] for a in arguments if a.startswith("domain=")]
        if not domains:
            return f"{description}:domain={family}"
        if domains != [family]:
            raise InheritedSocketError(
                f"{description!r}: inherited socket {name!r} is {family}; "
                f"write domain={family} or leave domain= out"
            )
        return description


def adopt_udp(
    reactor: IReactorSocket,
    name: str,
    protocol: DatagramProtocol,
    *,
    sockets: InheritedSockets,
    max_packet_size: int = 8192,
) -> IListeningPort:
    """
    Start ``protocol`` on the inherited datagram socket ``name``, as
    ``reactor.listenUDP`` would on a port it bound itself.

    The inherited descriptor stays open: Twisted works on a duplicate, which
    stopping the port closes, and systemd keeps its own copy bound for the
    next start anyway; closing ours could let the number be reused while
    :class:`InheritedSockets` still maps the name to it.

    :param sockets: where to look ``name`` up (the daemon's
        :meth:`InheritedSockets.for_process`).
    :param max_packet_size: the largest datagram read whole.
    :raises InheritedSocketError: see :meth:`InheritedSockets.datagram_fd`,
        and for a datagram socket that is not IPv4 or IPv6.
    """
    fd = sockets.datagram_fd(name)
    family = _kind(fd)[0]
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise InheritedSocketError(
            f"Inherited socket {name!r} is {family.name}; chat over UDP needs "
            "an IPv4 or IPv6 address in ListenDatagram="
        )
    # Twisted requires a non-blocking socket; systemd passes blocking ones
    # unless the unit says NonBlocking=yes.
    os.set_blocking(fd, False)
    port: IListeningPort = reactor.adoptDatagramPort(
        fd, family, protocol, max_packet_size
    )
    return port
