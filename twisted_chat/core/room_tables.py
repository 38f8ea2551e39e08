"""
The tables a room's rules hold beside its ban list: mutes and invitations,
each bounded.

Apart from :mod:`twisted_chat.core.room_rules` as
:class:`~twisted_chat.core.bans.BanList` is: how a table matches, bounds
and expires its entries is its own concern, and the rules module is about
who may do what.  Whom a nick ban or mute holds is decided once, here
(:func:`pattern_for`): the account of a member logged in, else the address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, TypeGuard

from attrs import define, field, frozen

from .bans import (
    BanPattern,
    address_key,
    hidden_address,
    read_pattern,
    stored_pattern,
)
from .durations import format_left
from .errors import BadUsage

if TYPE_CHECKING:
    from .room import Participant

__all__ = [
    "INVITE_LIST_SIZE",
    "MUTE_LIST_SIZE",
    "InviteList",
    "Mute",
    "MuteList",
    "TooManyMutes",
    "account_name",
    "matches",
    "pattern_for",
]

#: Mutes one room holds at most.
MUTE_LIST_SIZE: Final = 100
#: Unused invitations one room keeps (the oldest go first).
INVITE_LIST_SIZE: Final = 100


class TooManyMutes(BadUsage):
    """A mute past :data:`MUTE_LIST_SIZE`; the code stays ``usage``."""


def pattern_for(participant: Participant, name: str = "") -> BanPattern | None:
    """
    What a nick ban or mute of ``participant`` holds: their account if logged
    in, else their address; None for a guest with no address (a UNIX socket).

    :param name: the account's name as registered, if the caller knows it
        (see :func:`account_name`).
    """
    account = participant.account
    if account is not None:
        return BanPattern(
            "account", account, "account:" + account_name(participant, name)
        )
    address = address_key(participant.host)
    if address is None:
        return None
    return hidden_address(str(address), participant.nick.display)


def account_name(participant: Participant, given: str = "") -> str:
    """
    The name of ``participant``'s account: ``given``, else their nickname if
    it is the account's, else the key (a key is its own key, as
    :func:`~twisted_chat.core.names.name_key` is idempotent, so it is stored
    and read back as the same account; it only looks worse).
    """
    if given:
        return given
    if participant.nick.key == participant.account:
        return participant.nick.display
    return participant.account or ""


def matches(pattern: BanPattern, participant: Participant) -> bool:
    """Whether a ban or mute of ``pattern`` holds ``participant``."""
    if pattern.kind == "account":
        return participant.account == pattern.key
    address = address_key(participant.host)
    if address is None:
        return False
    if pattern.kind == "address":
        return str(address) == pattern.key
    return address in ipaddress.ip_network(pattern.key)


@frozen
class Mute:
    """
    One mute: whom it matches, who set it, and when it ends (None: when lifted).

    :ivar pattern: the account or address it matches, or None for a
        connection with neither, held by the participant and never stored.
    :ivar shown: the nickname muted, for notices.
    """

    pattern: BanPattern | None
    shown: str
    set_by: str
    set_at: float
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        """Whether the mute has ended at ``now``."""
        return self.expires_at is not None and self.expires_at <= now

    def how_long(self, now: float) -> str:
        """``for 1m 30s more``, or ``until an operator unmutes you``."""
        if self.expires_at is None:
            return "until an operator unmutes you"
        return f"for {format_left(self.expires_at - now)} more"

    def describe(self, now: float) -> str:
        """One line of a mute listing."""
        what = f" ({self.pattern.text})" if self.pattern is not None else ""
        if self.expires_at is None:
            until = "until unmuted"
        else:
            until = f"{format_left(self.expires_at - now)} left"
        return f"{self.shown}{what} by {self.set_by}, {until}"

    def to_dict(self) -> dict[str, str | float | None]:
        """As plain values (only mutes with a pattern are stored)."""
        row: dict[str, str | float | None] = {"pattern": None}
        if self.pattern is not None:
            row.update(stored_pattern(self.pattern))
        row.update(
            shown=self.shown,
            set_by=self.set_by,
            set_at=self.set_at,
            expires_at=self.expires_at,
        )
        return row

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Mute:
        """
        Read back :meth:`to_dict`; the pattern is parsed again.

        :raises ChatError: a pattern that no longer parses.
        :raises ValueError: a field missing or of the wrong type.
        """
        pattern, shown = data.get("pattern"), data.get("shown")
        set_by, set_at, ends = (
            data.get("set_by"),
            data.get("set_at"),
            data.get("expires_at"),
        )
        if not (isinstance(pattern, str) and isinstance(shown, str)):
            raise ValueError(f"not a mute record: {dict(data)!r}")
        if not isinstance(set_by, str) or not _number(set_at):
            raise ValueError(f"not a mute record: {dict(data)!r}")
        if ends is not None and not _number(ends):
            raise ValueError(f"not a mute record: {dict(data)!r}")
        return cls(
            read_pattern(pattern, data.get("label")),
            shown,
            set_by,
            float(set_at),
            None if ends is None else float(ends),
        )


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


@define(slots=True)
class MuteList:
    """
    A room's mutes, by pattern (or by participant for one with none), and
    the members each was set on, so that it outlives their logout.
    """

    capacity: int = MUTE_LIST_SIZE
    _mutes: dict[BanPattern | Participant, Mute] = field(factory=dict, init=False)
    _holders: dict[Participant, list[Mute]] = field(factory=dict, init=False)

    def __len__(self) -> int:
        return len(self._mutes)

    def mutes(self) -> list[Mute]:
        """Every mute, oldest first."""
        return list(self._mutes.values())

    def of(self, participant: Participant, now: float) -> Mute | None:
        """The unexpired mute that holds ``participant``, if any."""
        mutes = self._mutes
        if not mutes:
            return None
        found: list[Mute | None] = [*self._holders.get(participant, [])]
        found.append(mutes.get(participant))
        if participant.account is not None:
            found.append(mutes.get(BanPattern("account", participant.account, "")))
        address = address_key(participant.host)
        if address is not None:
            found.append(mutes.get(BanPattern("address", str(address), "")))
        for mute in found:
            if mute is not None and not mute.expired(now):
                return mute
        return None

    def add(self, target: Participant, mute: Mute, now: float) -> Mute | None:
        """
        Hold ``mute``, set on ``target``; the mute it replaced, if any.

        :raises TooManyMutes: the list is full of unexpired mutes (expired
            ones are dropped to make room).
        """
        key: BanPattern | Participant = target if mute.pattern is None else mute.pattern
        earlier = self._mutes.get(key)
        if earlier is None and len(self._mutes) >= self.capacity:
            for old in [m for m in self._mutes.values() if m.expired(now)]:
                self.remove(old)
            if len(self._mutes) >= self.capacity:
                raise TooManyMutes(
                    f"The mute list is full ({self.capacity} mutes); /unmute one first."
                )
        if earlier is not None:
            self.remove(earlier)
        self._mutes[key] = mute
        if mute.pattern is not None:
            self._holders.setdefault(target, []).append(mute)
        return earlier

    def get(self, pattern: BanPattern) -> Mute | None:
        return self._mutes.get(pattern)

    def restore(self, mute: Mute) -> None:
        """Hold a stored mute (with a pattern), its members not known yet."""
        if mute.pattern is not None:
            self._mutes[mute.pattern] = mute

    def remove(self, mute: Mute) -> list[Participant]:
        """Lift ``mute``; the participants it was set on who are still here."""
        held = [p for p, ms in self._holders.items() if mute in ms]
        for participant in held:
            rest = [m for m in self._holders[participant] if m is not mute]
            if rest:
                self._holders[participant] = rest
            else:
                del self._holders[participant]
        keys = [key for key, m in self._mutes.items() if m is mute]
        for key in keys:
            del self._mutes[key]
            if not isinstance(key, BanPattern):
                held.append(key)
        return held

    def left(self, participant: Participant) -> bool:
        """
        ``participant`` is gone: forget them; whether a mute went with them.
        (A part keeps them: the entries are bounded by the mutes anyway, one
        per ``add``, and go with their mute.)
        """
        self._holders.pop(participant, None)
        return self._mutes.pop(participant, None) is not None

    def expire(self, now: float) -> list[tuple[Mute, str]]:
        """Drop the mutes ended by ``now``; each with the nick to announce."""
        ended = []
        for mute in [m for m in self._mutes.values() if m.expired(now)]:
            held = self.remove(mute)
            ended.append((mute, held[0].nick.display if held else mute.shown))
        return ended

    def next_expiry(self) -> float | None:
        ends = [m.expires_at for m in self._mutes.values() if m.expires_at is not None]
        return min(ends, default=None)


@define(slots=True)
class InviteList:
    """
    Unused invitations, each held by the participant and by their account
    (``account:KEY``) if logged in, so either finds it and a join by either
    uses it up; the oldest dropped past ``capacity`` entries.
    """

    capacity: int = INVITE_LIST_SIZE
    # Each key -> every key of its invitation.
    _invites: dict[Participant | str, tuple[Participant | str, ...]] = field(
        factory=dict, init=False
    )

    def __len__(self) -> int:
        return len(self._invites)

    def add(self, target: Participant) -> None:
        keys = _keys(target)
        self.use(target)
        invites = self._invites
        for key in keys:
            invites[key] = keys
        while len(invites) > self.capacity:
            self._drop(next(iter(invites)))

    def __contains__(self, participant: Participant) -> bool:
        invites = self._invites
        if not invites:
            return False
        return any(key in invites for key in _keys(participant))

    def use(self, participant: Participant) -> None:
        """The join an invitation allowed happened: it is used up."""
        if self._invites:
            for key in _keys(participant):
                self._drop(key)

    def _drop(self, key: Participant | str) -> None:
        for other in self._invites.pop(key, ()):
            self._invites.pop(other, None)


def _keys(participant: Participant) -> tuple[Participant | str, ...]:
    if participant.account is None:
        return (participant,)
    return (participant, "account:" + participant.account)
