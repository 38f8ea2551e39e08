"""
Admission control: how many clients in all, how many per address, how often.

Shared by the TCP and UDP adapters, so that ``--max-clients`` counts UDP
sessions too and one address cannot fill the server by mixing transports.
Sans-IO: the adapters say who arrives and leaves, and when.

Per address group, ``--max-per-ip N`` bounds two things, as InspIRCd's
connflood and Ergo's ip-limits do: N connections at a time, and new
connections to N at once (at least :data:`CONNECT_BURST`), then as many
again every :data:`CONNECT_WINDOW` seconds, so a loop of connect and close
cannot churn the server.  The flood credit of a
group's connections outlives them (:class:`~twisted_chat.core.flood.FloodCredit`).

Refusals are counted by code in :attr:`Admission.refusals`, for ``/stats``
(:mod:`twisted_chat.core.stats`): the daemon hands it the chat's
``ServerStats.refusals``, so admission and server bans add up in one table.
"""

from __future__ import annotations

import ipaddress
import math
import re

from attrs import define, field

from twisted_chat.core.errors import ChatError, ServerFull, TooManyConnections
from twisted_chat.core.flood import BucketTable, FloodCredit, TokenBucket
from twisted_chat.core.lines import counted
from twisted_chat.core.logs import RateLimitedLogger

_log = RateLimitedLogger()

#: An address group may open ``--max-per-ip`` new connections at once (but
#: at least :data:`CONNECT_BURST`), then that many again in every window of
#: this many seconds.  Ten seconds, not a minute: a reconnect loop is still
#: cut from thousands of connections a second to a few, while a classroom
#: behind one NAT address, or a test suite on loopback, that reconnects
#: after a restart is not locked out for a minute.
CONNECT_WINDOW = 10.0
#: New connections a group may always open at once, however low
#: ``--max-per-ip`` is: a person whose link drops can reconnect at once.
CONNECT_BURST = 10
#: Address groups whose recent connections are counted at most.  An entry is
#: forgotten once its group could open a whole burst again (at most
#: :data:`CONNECT_WINDOW` seconds); when the table is full of recent ones
#: the oldest goes, and that group may open a whole burst again: what every
#: group could do before this limit existed, and no more than a group never
#: seen before may do anyway.
CONNECT_TABLE_SIZE = 16_384


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


#: An IPv4 address as ``str(IPv4Address(...))`` spells it (no leading zeros).
_CANONICAL_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)


def canonical_ipv4(host: str) -> bool:
    """
    Whether ``host`` is an IPv4 address spelt as ``ipaddress`` spells it, as
    the kernel reports every IPv4 peer: then it is its own address group and
    its own ban key, and the adapters need not parse it (one regular
    expression instead of building an address object, per connection).
    """
    return _CANONICAL_IPV4.fullmatch(host) is not None


def address_group(host: str) -> str:
    """
    The key the per-address cap counts by ("" for none: UNIX sockets).

    IPv6 hosts get a whole /64 each from their provider, so counting single
    addresses would let one of them open millions of connections: group by
    /64.  IPv4-mapped IPv6 addresses count as their IPv4 address.
    """
    if not host:
        return ""
    if canonical_ipv4(host):
        return host
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
    """
    Counts clients in all and per address group; refuses past the caps.

    :param max_clients: clients in all (0: no cap).
    :param max_per_ip: connections of one group at a time, and new ones per
        :data:`CONNECT_WINDOW` (0: neither is capped).
    """

    max_clients: int
    max_per_ip: int
    total: int = 0
    per_group: dict[str, int] = field(factory=dict)
    #: Flood credit left by ended connections, shared by every transport.
    credit: FloodCredit = field(factory=FloodCredit)
    #: Recent new connections per group, as token buckets.
    connects: BucketTable = field(factory=lambda: BucketTable(CONNECT_TABLE_SIZE))
    #: Refusals by error code (``server-full``, ``too-many-connections``).
    refusals: dict[str, int] = field(factory=dict)

    def admit(self, group: str, now: float) -> ChatError | None:
        """Count a new client in at ``now``, or say why not (and count the refusal)."""
        refusal = self._admit(group, now)
        if refusal is not None:
            refusals = self.refusals
            refusals[refusal.code] = refusals.get(refusal.code, 0) + 1
        return refusal

    def _admit(self, group: str, now: float) -> ChatError | None:
        if self.max_clients and self.total >= self.max_clients:
            clients = counted(self.max_clients, "client", "clients")
            return ServerFull(f"The server is full ({clients}); try again later.")
        count = self.per_group.get(group, 0)
        per_ip = self.max_per_ip
        if per_ip and group:
            if count >= per_ip:
                return TooManyConnections(
                    f"Too many connections from your address ({per_ip} "
                    f"at most); close one and try again."
                )
            refusal = self._count_connect(group, per_ip, now)
            if refusal is not None:
                return refusal
        self.total += 1
        self.per_group[group] = count + 1
        return None

    def _count_connect(self, group: str, per_ip: int, now: float) -> ChatError | None:
        burst = max(per_ip, CONNECT_BURST)
        rate = burst / CONNECT_WINDOW
        bucket = self.connects.get(group)
        if bucket is None:
            bucket = TokenBucket(burst, rate, stamp=now)
        else:
            # --max-per-ip may have changed on reload.
            bucket.burst, bucket.rate = burst, rate
        wait = bucket.take(now)
        if wait:
            seconds = math.ceil(wait)
            how_long = "a second" if seconds == 1 else f"{seconds} seconds"
            return TooManyConnections(
                f"Too many new connections from your address ({burst} in "
                f"{CONNECT_WINDOW:g} seconds at most); wait {how_long} "
                f"and try again."
            )
        self.connects.put(group, bucket, now)
        return None

    def release(self, group: str) -> None:
        """A client counted by :meth:`admit` has gone."""
        self.total -= 1
        count = self.per_group.get(group, 0) - 1
        if count > 0:
            self.per_group[group] = count
        else:
            self.per_group.pop(group, None)
