"""
The decisions about one room: may this person join, speak, set the topic,
use an operator's command; and the changes operators make.  Sans-IO: time
comes in as ``now``; a check returns the error to send (or None) and a
change returns a :class:`~twisted_chat.core.room_records.Change` for the
caller to announce (:func:`~twisted_chat.core.room_records.notice_for`)
and log.  The state they work on, and why it is kept as it is, is
:mod:`twisted_chat.core.room_state`.

Joining.  Server operators, the founder and operator accounts pass every
check, bans included: their rights were given on purpose, and a ban on a
shared address must not lock a keeper out (``/deop`` the account first).
For everyone else a ban refuses first, then an invitation lets one in past
invite-only, the key and the limit (not past a ban: a ban is the stronger,
deliberate word, and the inviter is told, ``Change.banned``); then
invite-only, the key, the limit, in that order.  As on IRC servers an
invitation is used up by the join it allows (``member_joined``); unused
ones are kept, the newest hundred, by the participant and by their account.

Speaking.  Operators always may; then a mute refuses (a voice does not lift
a mute: a mute is aimed at one person, a voice is the general leave a
moderated room gives); then a moderated room refuses all but the voiced.
A mute matches, as a ban would, the account of a member logged in and the
address of a guest (a guest with neither, on a UNIX socket, is muted by
connection), and also the very participant it was set on, so neither
logging out nor leaving and coming back shakes it off; only disconnecting
ends a mute by connection.  Nobody mutes an operator (``/deop`` first).

Bans kick the members they match, but operators and server operators: an
operator banning an address they share must not kick themselves.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from attrs import define

from .bans import Ban, BanList, BanPattern
from .durations import format_left
from .errors import (
    BadKey,
    BadUsage,
    Banned,
    ChatError,
    InviteOnly,
    Moderated,
    Muted,
    NotLoggedIn,
    NotOperator,
    NotRegisteredRoom,
    RoomFull,
)
from .room_records import Change, SettingValue, parse_setting
from .room_state import OPERATOR_ACCOUNTS_MAX, ROOM_BAN_LIST_SIZE, RoomState
from .room_stored import StoredRules
from .room_tables import Mute, account_name, matches, pattern_for
from .server_bans import clip

if TYPE_CHECKING:
    from .room import Participant

# The names the core needs, from one place.
__all__ = [
    "OPERATOR_ACCOUNTS_MAX",
    "ROOM_BAN_LIST_SIZE",
    "RoomRules",
    "account_name",
]


def _same(key: str, given: str | None) -> bool:
    """Compare a room key in constant time (it is a shared password, of sorts)."""
    return given is not None and hmac.compare_digest(key.encode(), given.encode())


@define(slots=True, eq=False)
class RoomRules(RoomState):
    """
    One room's moderation: its state (:class:`RoomState`), the checks and
    the operators' changes.  Create one with :meth:`for_creator` or
    :meth:`from_dict`.
    """

    @classmethod
    def for_creator(cls, room: str, creator: Participant) -> RoomRules:
        """The rules of a new room: its creator is its operator."""
        return cls(room, operators={creator})

    @classmethod
    def from_dict(cls, data: Mapping[str, object], room: str, now: float) -> RoomRules:
        """Read ``to_dict``'s values back, without what ended by ``now``."""
        stored = StoredRules.parse(data, room, now, OPERATOR_ACCOUNTS_MAX)
        rules = cls(
            room,
            founder=stored.founder,
            founder_name=stored.founder_name,
            operator_accounts=stored.operator_accounts,
            settings=stored.settings,
            bans=BanList.load(stored.bans, now, ROOM_BAN_LIST_SIZE),
        )
        for mute in stored.mutes[: rules.mutes.capacity]:
            if mute.pattern is not None and rules.mutes.get(mute.pattern) is None:
                rules.mutes.restore(mute)
        rules._refresh()
        return rules

    # -- checks: the error to send, or None ---------------------------------------

    def join_refusal(
        self,
        participant: Participant,
        key_given: str | None,
        now: float,
        server_operator: bool,
        *,
        members: int,
    ) -> ChatError | None:
        """Why ``participant`` may not join (``members`` are in it now), or None."""
        if server_operator or self._account_operator(participant):
            return None
        ban = self.bans.matching(participant.host, participant.account, now)
        if ban is not None:
            return self._banned(ban, now)
        if self.invited(participant):
            return None
        room, settings = self.room, self.settings
        if settings.invite_only:
            return InviteOnly(
                f"{room} is invite-only; ask one of its operators to /invite you."
            )
        key = settings.key
        if key is not None and not _same(key, key_given):
            if not key_given:
                return BadKey(
                    f"{room} needs a key: /join {room} KEY (its operators know it)."
                )
            return BadKey(f"That is not the key of {room}; its operators know it.")
        if settings.limit is not None and members >= settings.limit:
            return RoomFull(
                f"{room} is full ({settings.limit} members at most); try again later."
            )
        return None

    def _banned(self, ban: Ban, now: float) -> Banned:
        why = f" ({ban.reason})" if ban.reason else ""
        if ban.expires_at is None:
            how_long = "the ban lasts until it is lifted"
        else:
            how_long = f"the ban ends in {format_left(ban.expires_at - now)}"
        return Banned(f"You are banned from {self.room}{why}; {how_long}.")

    def speak_refusal(
        self, participant: Participant, now: float, server_operator: bool = False
    ) -> ChatError | None:
        """Why what ``participant`` says may not go to the room, or None."""
        if server_operator or self.is_operator(participant):
            return None
        mute = self.mute_of(participant, now)
        if mute is not None:
            return Muted(
                f"You are muted in {self.room} {mute.how_long(now)}; nobody saw that."
            )
        if self.settings.moderated and participant not in self.voiced:
            return Moderated(
                f"{self.room} is moderated: only its operators and voiced members "
                "speak; ask an operator for a voice."
            )
        return None

    def topic_refusal(
        self, participant: Participant, server_operator: bool = False
    ) -> ChatError | None:
        """Why ``participant`` may not set the topic, or None."""
        if not self.settings.topic_lock or server_operator:
            return None
        if self.is_operator(participant):
            return None
        return NotOperator(
            f"The topic of {self.room} is locked; only its operators set it."
        )

    def require_operator(
        self, participant: Participant, server_operator: bool, command: str = ""
    ) -> ChatError | None:
        """``not-operator`` unless ``participant`` is one (``command``: ``/kick``)."""
        if server_operator or self.is_operator(participant):
            return None
        what = f"use {command}" if command else "do that"
        return NotOperator(
            f"You are not an operator of {self.room}; only its operators may {what}."
        )

    # -- changes: what changed, or None for nothing ----------------------------------

    def op(self, target: Participant, name: str = "") -> Change | None:
        """``/op``; in a registered room also ``target``'s account, if logged in."""
        account = target.account if self.registered else None
        if self.is_operator(target) and (
            account is None or self._account_operator(target)
        ):
            return None
        if account is not None and not self._account_operator(target):
            if len(self.operator_accounts) >= OPERATOR_ACCOUNTS_MAX:
                raise BadUsage(
                    f"{self.room} has {OPERATOR_ACCOUNTS_MAX} operator accounts "
                    "already; /deop one first."
                )
            self.operator_accounts[account] = account_name(target, name)
        self.operators.add(target)
        return Change("op", target.nick.display)

    def deop(self, target: Participant) -> Change | None:
        """``/deop``: the participant and their operator account."""
        if target.account is not None and target.account == self.founder:
            raise BadUsage(
                f"{target.nick.display} is the founder of {self.room} and stays "
                "its operator (/room drop ends that)."
            )
        if not self.is_operator(target):
            return None
        self.operators.discard(target)
        if target.account is not None:
            self.operator_accounts.pop(target.account, None)
        return Change("deop", target.nick.display)

    def voice(self, target: Participant) -> Change | None:
        """``/voice`` a member (voices end when they leave)."""
        if target in self.voiced:
            return None
        self.voiced.add(target)
        return Change("voice", target.nick.display)

    def devoice(self, target: Participant) -> Change | None:
        if target not in self.voiced:
            return None
        self.voiced.discard(target)
        return Change("devoice", target.nick.display)

    def ban(
        self,
        pattern: BanPattern,
        duration: float | None,
        reason: str,
        by: str,
        now: float,
        *,
        members: Iterable[Participant],
    ) -> Change:
        """
        ``/ban``: hold it (a ban of the same pattern is replaced); ``kicked``
        are the ``members`` it matches but operators and server operators.

        :raises TooManyBans: the room has :data:`ROOM_BAN_LIST_SIZE` bans.
        """
        ends = None if duration is None else now + duration
        ban = Ban(pattern, by, clip(reason), now, ends)
        earlier = self.bans.add(ban, now)
        kicked = tuple(
            member
            for member in members
            if member.oper is None
            and not self.is_operator(member)
            and matches(pattern, member)
        )
        shown = "" if duration is None else format_left(duration)
        return Change(
            "ban", pattern.text, shown, ban.reason, earlier is not None, kicked
        )

    def unban(self, pattern: BanPattern, now: float) -> Change | None:
        ban = self.bans.remove(pattern)
        if ban is None or ban.expired(now):
            return None
        return Change("unban", ban.pattern.text)

    def mute(
        self,
        target: Participant,
        duration: float | None,
        by: str,
        now: float,
        name: str = "",
    ) -> Change:
        """
        ``/mute`` a member (replacing a mute of the same pattern).

        :raises BadUsage: ``target`` is an operator (they would be heard anyway).
        :raises TooManyMutes: the room holds :data:`MUTE_LIST_SIZE` mutes.
        """
        nick = target.nick.display
        if self.is_operator(target):
            raise BadUsage(f"{nick} is an operator of {self.room}; /deop them first.")
        ends = None if duration is None else now + duration
        mute = Mute(pattern_for(target, name), nick, by, now, ends)
        earlier = self.mutes.add(target, mute, now)
        self._refresh()
        shown = "" if duration is None else format_left(duration)
        return Change("mute", nick, shown, replaced=earlier is not None)

    def unmute(self, target: Participant, now: float) -> Change | None:
        """``/unmute`` a member: every mute that holds them goes."""
        lifted = False
        while (mute := self.mutes.of(target, float("-inf"))) is not None:
            lifted = lifted or not mute.expired(now)
            self.mutes.remove(mute)
        self._refresh()
        return Change("unmute", target.nick.display) if lifted else None

    def unmute_pattern(self, pattern: BanPattern, now: float) -> Change | None:
        """Lift the mute of an account or address whose person is not here."""
        mute = self.mutes.get(pattern)
        if mute is None:
            return None
        self.mutes.remove(mute)
        self._refresh()
        return None if mute.expired(now) else Change("unmute", mute.shown)

    def invite(self, target: Participant, now: float) -> Change:
        """``/invite``: ``target`` may join once, past invite-only, key and limit."""
        self.invites.add(target)
        banned = self.bans.matching(target.host, target.account, now)
        return Change("invite", target.nick.display, banned=banned)

    def configure(self, setting: str, value: str) -> Change | None:
        """
        ``/room SETTING VALUE`` as typed: ``on|off``, ``N|off``, ``KEY|off``.

        :raises BadUsage: an unknown setting or a value it does not take.
        """
        return self.apply_setting(*parse_setting(setting, value))

    def apply_setting(self, setting: str, value: SettingValue) -> Change | None:
        """
        One setting, already parsed (``room_commands``' ``RoomFlag``,
        ``RoomLimit``, ``RoomKey``): a canonical name of
        :data:`~twisted_chat.core.room_records.SETTING_NAMES`, a bool for a
        flag, an int or None for ``limit``, a str or None for ``key``.
        """
        if not self.settings.apply(setting, value):
            return None
        self._refresh()
        if value is None or value is False:
            shown = "off"
        elif value is True:
            shown = "on"
        else:
            shown = "set" if setting == "key" else str(value)
        return Change("set", setting, shown)

    def register(self, participant: Participant, name: str = "") -> Change:
        """
        ``/room register`` (the caller has checked that ``participant`` is an
        operator): their account is the founder, operators logged in become
        operator accounts.
        """
        if participant.account is None:
            raise NotLoggedIn(
                f"Log in first (/login NAME): the founder of {self.room} is an account."
            )
        if self.registered:
            raise BadUsage(
                f"{self.room} is registered already; its founder is account "
                f"{self.founder_name}."
            )
        self.founder = participant.account
        self.founder_name = account_name(participant, name)
        for operator in self.operators:
            account = operator.account
            if (
                account is not None
                and account != self.founder
                and len(self.operator_accounts) < OPERATOR_ACCOUNTS_MAX
            ):
                self.operator_accounts.setdefault(account, account_name(operator, ""))
        return Change("register", participant.nick.display, self.founder_name)

    def drop(
        self,
        participant: Participant,
        members: Iterable[Participant],
        server_operator: bool = False,
    ) -> Change:
        """``/room drop`` (the founder): operator accounts here stay operators."""
        if not self.registered:
            raise NotRegisteredRoom(
                f"{self.room} is not registered; /room register makes it permanent."
            )
        if participant.account != self.founder and not server_operator:
            raise NotOperator(
                f"Only the founder of {self.room} (account {self.founder_name}) "
                "may drop its registration."
            )
        self.operators.update(m for m in members if self._account_operator(m))
        self.founder, self.founder_name = None, ""
        self.operator_accounts.clear()
        return Change("drop", self.room)
