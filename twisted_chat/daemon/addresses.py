"""
What a ``--tcp`` or ``--udp`` value may say, checked before any port is bound.

Each parser turns what a person wrote into the one spelling the settings
keep (and a reload compares): a bare port becomes an address on every
interface, IPv6 too where the host has it, with a listen backlog for TCP.  A
``systemd:`` value is only read here; whether systemd really passed that
socket is checked when the service is built, against the sockets it passed
(:mod:`twisted_chat.daemon.inherited_sockets`).
"""

from __future__ import annotations

import socket

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor

from twisted_chat.daemon.config import integer
from twisted_chat.transports.udp_listeners import parse_udp

__all__ = ["BACKLOG", "dual_stack", "tcp_description", "udp_description"]

#: The listen backlog for a bare ``--tcp PORT``: Linux's default
#: ``net.core.somaxconn`` (the kernel caps it there).  With 2,000 connects in
#: flight, 1,024 took 1,753 clients a second and 4,096 1,885 (issue 18,
#: ``bench/connect_rate.py --backlog``): a full queue drops the handshake's
#: last packet and the client waits for a retransmit.
BACKLOG = 4096


def dual_stack() -> bool:
    """Whether an IPv6 socket on ``::`` here also takes IPv4 clients."""
    if not socket.has_ipv6:
        return False
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    with probe:
        try:
            return probe.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        except OSError:
            return False


_port = integer(0, 65535)


def tcp_description(value: str) -> str:
    """
    Turn ``--tcp`` input into a Twisted endpoint description.

    A bare port listens on every address, IPv6 too where the host has it;
    anything else must be an endpoint description Twisted can parse.
    """
    value = value.strip()
    if value.isdigit():
        port = _port(value)
        # Twisted's default backlog of 50 makes a burst of connections (a
        # restart with many clients reconnecting) wait for retransmits.
        if dual_stack():
            return f"tcp6:{port}:interface=\\:\\::backlog={BACKLOG}"
        return f"tcp:{port}:backlog={BACKLOG}"
    if ":" not in value:
        raise ValueError(
            f"{value!r} is neither a port number nor an endpoint description "
            f"such as tcp:9000:interface=127.0.0.1"
        )
    if value.startswith("systemd:"):
        return value
    try:
        serverFromString(MemoryReactor(), value)
    except Exception as problem:
        raise ValueError(
            f"{value!r} is not a usable endpoint description: {problem}"
        ) from None
    return value


def udp_description(value: str) -> str:
    """Turn ``--udp`` input into the canonical ``HOST:PORT`` (or ``systemd:``)."""
    wildcard = "::" if dual_stack() else "0.0.0.0"
    return parse_udp(value, wildcard).describe()
