"""
Admission control: how many clients in all, and how many per address.

Shared by the TCP and UDP adapters, so that ``--max-clients`` counts UDP
sessions too and one address cannot fill the server by mixing transports.
Sans-IO: the adapters say who arrives and leaves.
"""

from __future__ import annotations

import ipaddress

from attrs import define, field
from twisted.logger import Logger

from twisted_chat.errors import ChatError, ServerFull, TooManyConnections

_log = Logger()


def log_refusal(peer: str, refusal: ChatError) -> None:
    """
    Log a refused client in the one fixed format operators grep for:
    ``refused connection peer=tcp 192.0.2.7:50312 reason=too-many-connections``.
    """
    _log.warn(
        "refused connection peer={peer} reason={reason}",
        peer=peer,
        reason=refusal.code,
    )


def address_group(host: str) -> str:
    """
    The key the per-address cap counts by ("" for none: UNIX sockets).

    IPv6 hosts get a whole /64 each from their provider, so counting single
    addresses would let one of them open millions of connections: group by
    /64.  IPv4-mapped IPv6 addresses count as their IPv4 address.
    """
    if not host:
        return ""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@define
class Admission:
    """Counts clients in all and per address group; refuses past the caps."""

    max_clients: int
    max_per_ip: int
    total: int = 0
    per_group: dict[str, int] = field(factory=dict)

    def admit(self, group: str) -> ChatError | None:
        """Count a new client in, or say why it is refused (nothing counted)."""
        if self.max_clients and self.total >= self.max_clients:
            return ServerFull(
                f"The server is full ({self.max_clients} clients); try again later."
            )
        count = self.per_group.get(group, 0)
        if self.max_per_ip and group and count >= self.max_per_ip:
            return TooManyConnections(
                f"Too many connections from your address ({self.max_per_ip} "
                f"at most); close one and try again."
            )
        self.total += 1
        self.per_group[group] = count + 1
        return None

    def release(self, group: str) -> None:
        """A client counted by :meth:`admit` has gone."""
        self.total -= 1
        count = self.per_group.get(group, 0) - 1
        if count > 0:
            self.per_group[group] = count
        else:
            self.per_group.pop(group, None)
