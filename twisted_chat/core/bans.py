"""
Ban patterns and ban lists, shared by server bans and room bans.

A pattern is ``account:NAME`` (compared by :func:`~twisted_chat.core.names.name_key`),
one IPv4 or IPv6 address, or a CIDR block; IPv4-mapped IPv6 addresses and
blocks are kept in their IPv4 form, so ``::ffff:203.0.113.7`` and
``203.0.113.7`` are one address.  A nick pattern is the caller's to resolve
(to the person's account, or their address) because only the caller knows
who is connected: :func:`looks_like_nick` tells it when to.

A :class:`BanList` is checked once per connection, hello, login or join,
never per message, and each check is a few dict look-ups: accounts and
exact addresses in dicts, blocks in one dict per prefix length (so the cost
is the number of distinct prefix lengths in use, not the number of bans).
Time comes in as an argument (``now``, from the reactor's ``seconds()``):
expired bans vanish when a look-up meets them and through :meth:`BanList.expire`,
and :meth:`BanList.next_expiry` lets the caller keep one timer per list.
Records are frozen and turn into plain dicts for a storage layer.
"""

from __future__ import annotations

import heapq
import ipaddress
import time
from collections.abc import Iterable, Mapping
from typing import Final, Literal

from attrs import define, field, frozen

from .durations import format_left
from .errors import BadUsage, ChatError
from .names import Nick

#: Bans one list holds at most (a room's, or the server's).
BAN_LIST_SIZE: Final = 1_000
#: The widest blocks a ban may cover: /8 of IPv4, /16 of IPv6.
MIN_PREFIX: Final = {4: 8, 6: 16}

_ACCOUNT: Final = "account:"

Kind = Literal["account", "address", "network"]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TooManyBans(BadUsage):
    """A ban past :data:`BAN_LIST_SIZE`; the code stays ``usage``."""


@frozen
class BanPattern:
    """
    What a ban matches, compared by ``kind`` and ``key`` only.

    :ivar kind: ``account``, ``address`` or ``network``.
    :ivar key: the account's name key, the canonical address, or the
        canonical block (``203.0.113.0/24``).
    :ivar text: how it is shown and stored (``account:Alice``); parsing it
        again gives this pattern.
    """

    kind: Kind
    key: str
    text: str = field(eq=False)


#: A label a stored ban or mute may carry, at most (a nickname and a suffix).
LABEL_MAX: Final = 64


def hidden_address(key: str, nick: str) -> BanPattern:
    """
    The address pattern of a nick ban on a guest, shown as ``NICK (by
    address)``: a room operator bans the person without learning their
    address (only server operators see addresses).
    """
    return BanPattern("address", key, f"{nick} (by address)")


def pattern_source(pattern: BanPattern) -> str:
    """The text that parses back to ``pattern`` (its ``text`` may be a label)."""
    return pattern.text if pattern.kind == "account" else pattern.key


def stored_pattern(pattern: BanPattern) -> dict[str, str]:
    """A pattern as a storage layer keeps it: the source, and a label if any."""
    source = pattern_source(pattern)
    if pattern.text == source:
        return {"pattern": source}
    return {"pattern": source, "label": pattern.text}


def read_pattern(source: str, label: object) -> BanPattern:
    """:func:`stored_pattern` read back: parsed again, its label kept if sane."""
    pattern = parse_pattern(source)
    if isinstance(label, str) and 0 < len(label) <= LABEL_MAX:
        return BanPattern(pattern.kind, pattern.key, label)
    return pattern


def address_key(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a ban compares ``host`` by (None: no IP, a UNIX socket)."""
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def looks_like_nick(text: str) -> bool:
    """Whether ``text`` is a nickname (for the caller to resolve), not a pattern."""
    try:
        Nick.parse(text)
    except ChatError:
        return False
    return True


def parse_pattern(text: str) -> BanPattern:
    """
    ``account:NAME``, an address, or a CIDR block, validated once.

    :raises BadUsage: a malformed address or block, a block with host bits
        set, or one wider than :data:`MIN_PREFIX`.
    :raises InvalidName: an account name that breaks the nickname rules.
    """
    if text[: len(_ACCOUNT)].lower() == _ACCOUNT:
        nick = Nick.parse(text[len(_ACCOUNT) :])
        return BanPattern("account", nick.key, _ACCOUNT + nick.display)
    if "%" in text:
        raise BadUsage(f"{text[:60]!r}: a ban names an address without a %zone.")
    if "/" not in text:
        address = address_key(text)
        if address is None:
            raise BadUsage(
                f"{text[:60]!r} is not a nick, account:NAME, an address "
                "or a block like 203.0.113.0/24."
            )
        return BanPattern("address", str(address), str(address))
    try:
        network: _Network = ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        if "host bits set" in str(error):
            wide = ipaddress.ip_network(text, strict=False)
            raise BadUsage(
                f"{text[:60]} has host bits set; did you mean {wide}?"
            ) from None
        raise BadUsage(f"{text[:60]!r} is not a block like 203.0.113.0/24.") from None
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            network = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    if network.prefixlen == network.max_prefixlen:
        address_text = str(network.network_address)
        return BanPattern("address", address_text, address_text)
    widest = MIN_PREFIX[network.version]
    if network.prefixlen < widest:
        raise BadUsage(
            f"{network} is too wide a block; IPv{network.version} bans "
            f"are /{widest} or narrower."
        )
    return BanPattern("network", str(network), str(network))


@frozen
class Ban:
    """One ban: what it matches, who set it and why, and when it ends (None: never)."""

    pattern: BanPattern
    set_by: str
    reason: str
    set_at: float
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        """Whether the ban has ended at ``now``."""
        return self.expires_at is not None and self.expires_at <= now

    def to_dict(self) -> dict[str, str | float | None]:
        """The ban as plain values, for a storage layer."""
        return {
            **stored_pattern(self.pattern),
            "set_by": self.set_by,
            "reason": self.reason,
            "set_at": self.set_at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Ban:
        """
        A ban read back from :meth:`to_dict`'s values; the pattern is parsed
        again, so its key follows today's name rules.

        :raises ChatError: a pattern that no longer parses.
        :raises ValueError: a field of the wrong type.
        """
        pattern, set_by, reason = data["pattern"], data["set_by"], data["reason"]
        set_at, ends = data["set_at"], data.get("expires_at")
        if not (isinstance(pattern, str) and isinstance(set_by, str)) or not isinstance(
            reason, str
        ):
            raise ValueError(f"not a ban record: {dict(data)!r}")
        if not isinstance(set_at, int | float) or not isinstance(
            ends, int | float | None
        ):
            raise ValueError(f"not a ban record: {dict(data)!r}")
        ends = None if ends is None else float(ends)
        parsed = read_pattern(pattern, data.get("label"))
        return cls(parsed, set_by, reason, float(set_at), ends)

    def describe(self, now: float) -> str:
        """One line of /bans: pattern, who, until when, why."""
        if self.expires_at is None:
            until = "until lifted"
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.expires_at))
            until = f"until {stamp} ({format_left(self.expires_at - now)} left)"
        line = f"{self.pattern.text} by {self.set_by}, {until}"
        return f"{line}: {self.reason}" if self.reason else line


@define
class BanList:
    """
    The bans of one room or of the server, bounded, matched by a few look-ups.

    :param capacity: bans held at most; :meth:`add` past it raises
        :class:`TooManyBans`.
    """

    capacity: int = BAN_LIST_SIZE
    _bans: dict[BanPattern, Ban] = field(factory=dict, init=False)
    _accounts: dict[str, Ban] = field(factory=dict, init=False)
    _addresses: dict[str, Ban] = field(factory=dict, init=False)
    # (version, prefix length) -> network address >> host bits -> ban.
    _blocks: dict[tuple[int, int], dict[int, Ban]] = field(factory=dict, init=False)
    # (expires_at, sequence, ban), stale entries skipped and rebuilt away.
    _ends: list[tuple[float, int, Ban]] = field(factory=list, init=False)
    _sequence: int = field(default=0, init=False)

    def __len__(self) -> int:
        return len(self._bans)

    def __contains__(self, pattern: object) -> bool:
        return pattern in self._bans

    def bans(self) -> list[Ban]:
        """Every ban, oldest first (for a storage layer, or a listing)."""
        return list(self._bans.values())

    def add(self, ban: Ban, now: float) -> Ban | None:
        """
        Hold ``ban``; a ban of the same pattern is replaced (new duration and
        reason), and returned.

        :raises TooManyBans: the list is full of unexpired bans.
        """
        earlier = self._bans.get(ban.pattern)
        if earlier is None and len(self._bans) >= self.capacity:
            self.expire(now)
            if len(self._bans) >= self.capacity:
                raise TooManyBans(
                    f"The ban list is full ({self.capacity:,} bans); lift one first."
                )
        if earlier is not None:
            self._unindex(earlier)
        self._bans[ban.pattern] = ban
        self._index(ban)
        return earlier

    def remove(self, pattern: BanPattern) -> Ban | None:
        """Lift the ban of ``pattern``; the ban lifted, or None."""
        ban = self._bans.pop(pattern, None)
        if ban is not None:
            self._unindex(ban)
        return ban

    def matching(self, host: str, account_key: str | None, now: float) -> Ban | None:
        """
        The unexpired ban that matches a client, or None (expired ones met
        on the way are dropped).

        :param host: the client's address as the transport gives it (mapped
            and zoned forms welcome; "" for a UNIX socket).
        :param account_key: the name key of the account the client is logged
            in as, or None for a guest.
        """
        if not self._bans:
            return None
        while True:
            ban = self._find(host, account_key)
            if ban is None or not ban.expired(now):
                return ban
            self.remove(ban.pattern)

    def expire(self, now: float) -> list[Ban]:
        """Drop the bans that have ended by ``now``; the ones dropped."""
        ended = []
        ends = self._ends
        while ends and ends[0][0] <= now:
            _, _, ban = heapq.heappop(ends)
            if self._bans.get(ban.pattern) is ban:
                self.remove(ban.pattern)
                ended.append(ban)
        return ended

    def next_expiry(self) -> float | None:
        """When the next ban ends (None: no ban has a duration)."""
        ends = self._ends
        while ends and self._bans.get(ends[0][2].pattern) is not ends[0][2]:
            heapq.heappop(ends)
        return ends[0][0] if ends else None

    def listing(self, now: float) -> list[str]:
        """The lines of /bans or /serverbans (no header), oldest ban first."""
        self.expire(now)
        return [ban.describe(now) for ban in self._bans.values()]

    @classmethod
    def load(
        cls, bans: Iterable[Ban], now: float, capacity: int = BAN_LIST_SIZE
    ) -> BanList:
        """A list of stored bans, without those that ended while stored."""
        made = cls(capacity)
        for ban in bans:
            if not ban.expired(now) and (ban.pattern in made or len(made) < capacity):
                made.add(ban, now)
        return made

    def _find(self, host: str, account_key: str | None) -> Ban | None:
        if account_key is not None:
            ban = self._accounts.get(account_key)
            if ban is not None:
                return ban
        address = address_key(host)
        if address is None:
            return None
        ban = self._addresses.get(str(address)) if self._addresses else None
        if ban is not None or not self._blocks:
            return ban
        number, version, bits = int(address), address.version, address.max_prefixlen
        for (block_version, prefix), table in self._blocks.items():
            if block_version == version:
                ban = table.get(number >> (bits - prefix))
                if ban is not None:
                    return ban
        return None

    def _block_slot(self, pattern: BanPattern) -> tuple[tuple[int, int], int]:
        network = ipaddress.ip_network(pattern.key)
        shift = network.max_prefixlen - network.prefixlen
        slot = int(network.network_address) >> shift
        return (network.version, network.prefixlen), slot

    def _index(self, ban: Ban) -> None:
        pattern = ban.pattern
        if pattern.kind == "account":
            self._accounts[pattern.key] = ban
        elif pattern.kind == "address":
            self._addresses[pattern.key] = ban
        else:
            table, slot = self._block_slot(pattern)
            self._blocks.setdefault(table, {})[slot] = ban
        if ban.expires_at is not None:
            self._sequence += 1
            heapq.heappush(self._ends, (ban.expires_at, self._sequence, ban))

    def _unindex(self, ban: Ban) -> None:
        pattern = ban.pattern
        if pattern.kind == "account":
            del self._accounts[pattern.key]
        elif pattern.kind == "address":
            del self._addresses[pattern.key]
        else:
            table, slot = self._block_slot(pattern)
            blocks = self._blocks[table]
            del blocks[slot]
            if not blocks:
                del self._blocks[table]
        # Lifted bans leave stale heap entries; rebuild before they outnumber.
        if len(self._ends) > 2 * len(self._bans) + 16:
            self._ends = [
                end for end in self._ends if self._bans.get(end[2].pattern) is end[2]
            ]
            heapq.heapify(self._ends)
