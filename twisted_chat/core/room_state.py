"""
The state of one room's moderation: operators, voices, settings, bans,
mutes and invitations, and what follows from the state alone: who is an
operator, members coming and going, the clock, the stored form.  The
decisions (may they join, speak, set the topic) and the operators' changes
are :class:`~twisted_chat.core.room_rules.RoomRules`, which is this state.

The hot path.  A room with nothing set holds no rules (``room.rules`` is
None), and a room whose creator is its operator holds a small one; either
way a message costs one attribute read, :attr:`RoomState.speech_restricted`
(moderated, or any mute), kept true by every change; only then does the
caller ask ``speak_refusal``.  Joins, topics and commands are rare and may
look things up.

Operators.  The participants in :attr:`RoomState.operators` (the creator,
and whom operators ``/op``), which survives nick changes and ends when they
leave; in a registered room also accounts (the founder, and the accounts
of those opped while logged in), which survive leaving and restarts.
Server operators are operators of every room; the caller says who is one.

The last operator.  When the last operator of an unregistered room leaves,
the room is left without one, as IRC leaves it, unless something is set
that only an operator can undo (a setting, a ban, a mute): then its
longest-present member who is not muted becomes operator
(:meth:`RoomState.member_left`).  A plain room is as usable without an
operator as with one, and its members see no extra line; a moderated,
invite-only, keyed, limited or muted room without one would be stuck
until everybody left, which is why IRC networks grew services.  The
longest present is the member the room has known longest, a rule anyone
can predict from ``/who``'s order; a muted member is passed over so a
mute cannot be lifted by the person under it.  A server operator present
counts as an operator.  A registered room promotes no one: its operators
are accounts and come back.

Persistence (:meth:`RoomState.to_dict`): founder and operator accounts by
name (keys are derived again on loading, as ban patterns are), settings,
bans and mutes with their expiry; never live participants, voices or
invitations.  Unknown keys and records that no longer parse are skipped,
so one bad row does not lose a room.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from attrs import define, field

from .bans import BanList
from .room_records import Change, RoomSettings
from .room_tables import InviteList, Mute, MuteList

if TYPE_CHECKING:
    from .room import Participant

__all__ = [
    "OPERATOR_ACCOUNTS_MAX",
    "ROOM_BAN_LIST_SIZE",
    "RULES_VERSION",
    "RoomState",
]

#: Bans one room holds at most.
ROOM_BAN_LIST_SIZE: Final = 200
#: Operator accounts one registered room holds at most (the founder aside).
OPERATOR_ACCOUNTS_MAX: Final = 100
#: The shape of :meth:`RoomState.to_dict`; a reader ignores what it does not know.
RULES_VERSION: Final = 1


@define(slots=True, eq=False)
class RoomState:
    """
    What one room's moderation holds, and what follows from it alone (the
    decisions are :class:`~twisted_chat.core.room_rules.RoomRules`').

    Change it through its methods only, so :attr:`speech_restricted` stays
    true to it.  ``room`` is the room's display name, for the texts.
    """

    room: str
    founder: str | None = None
    founder_name: str = ""
    operators: set[Participant] = field(factory=set)
    #: Operator accounts of a registered room, key -> name (founder aside).
    operator_accounts: dict[str, str] = field(factory=dict)
    voiced: set[Participant] = field(factory=set)
    settings: RoomSettings = field(factory=RoomSettings)
    bans: BanList = field(factory=lambda: BanList(ROOM_BAN_LIST_SIZE))
    #: Moderated, or any mute: the one thing a message reads.
    speech_restricted: bool = field(default=False, init=False)
    mutes: MuteList = field(factory=MuteList)
    invites: InviteList = field(factory=InviteList)

    def __attrs_post_init__(self) -> None:
        self._refresh()

    @property
    def registered(self) -> bool:
        return self.founder is not None

    @property
    def idle(self) -> bool:
        """Whether the rules hold nothing, so the room may drop them."""
        return not (
            self.founder is not None
            or self.operators
            or self.voiced
            or len(self.mutes)
            or len(self.invites)
            or len(self.bans)
            or not self.settings.default
        )

    # -- who is who -------------------------------------------------------------

    def is_operator(self, participant: Participant) -> bool:
        """An operator of this room (server operators aside: the caller knows)."""
        return participant in self.operators or self._account_operator(participant)

    def _account_operator(self, participant: Participant) -> bool:
        account = participant.account
        return account is not None and (
            account == self.founder or account in self.operator_accounts
        )

    def badge(self, participant: Participant) -> str:
        """``@`` for an operator, ``+`` for a voice, "" otherwise (for ``/who``)."""
        if self.is_operator(participant):
            return "@"
        return "+" if participant in self.voiced else ""

    def mute_of(self, participant: Participant, now: float) -> Mute | None:
        """The unexpired mute that holds ``participant``, if any."""
        return self.mutes.of(participant, now)

    def invited(self, participant: Participant) -> bool:
        """Whether an unused invitation lets ``participant`` in."""
        return participant in self.invites

    # -- members coming and going, the clock -------------------------------------

    def member_joined(self, participant: Participant) -> None:
        """``participant`` joined (``join_refusal`` let them): an invitation is used."""
        self.invites.use(participant)

    def member_left(
        self, participant: Participant, remaining: Iterable[Participant], now: float
    ) -> Change | None:
        """
        ``participant`` left (part, kick, quit: ``gone`` set first, as
        ``ChatServer.disconnect`` does); ``remaining`` are the members after,
        in the order they joined.  An ``auto-op`` change names whom
        the room made operator, if it lost its last while something is set
        (see the module docstring).
        """
        was_operator = participant in self.operators
        self.operators.discard(participant)
        self.voiced.discard(participant)
        self.invites.use(participant)
        # A mute outlives a part (part, /logout, join again must not lift
        # it) but not the connection: a gone participant is nobody's to mute.
        if participant.gone and self.mutes.left(participant):
            self._refresh()
        if not was_operator or self.registered or not self._needs_operator():
            return None
        others = [m for m in remaining if m is not participant and not m.gone]
        if any(m.oper is not None or self.is_operator(m) for m in others):
            return None
        for member in others:
            if self.mutes.of(member, now) is None:
                self.operators.add(member)
                return Change("auto-op", member.nick.display)
        return None

    def _needs_operator(self) -> bool:
        """Whether something is set that only an operator can undo."""
        return bool(len(self.bans) or len(self.mutes) or not self.settings.default)

    def expire(self, now: float) -> list[Change]:
        """Lift the bans and mutes ended by ``now``: ``ban-ended``, ``mute-ended``."""
        changes = [
            Change("ban-ended", ban.pattern.text) for ban in self.bans.expire(now)
        ]
        if len(self.mutes):
            changes.extend(
                Change("mute-ended", nick) for _, nick in self.mutes.expire(now)
            )
            self._refresh()
        return changes

    def next_expiry(self) -> float | None:
        """When the next ban or mute ends (None: none has a duration)."""
        ends = [self.bans.next_expiry(), self.mutes.next_expiry()]
        return min([end for end in ends if end is not None], default=None)

    def describe(
        self, members: Iterable[Participant], show_key: bool, per_line: int = 20
    ) -> list[str]:
        """
        The lines of ``/room`` (no ``* ``): settings, the operators among
        ``members``, founder and operator accounts, how many bans and mutes.
        ``show_key`` for an operator asking; ``per_line`` names at most per line.
        """
        lines = [f"{self.room}: {self.settings.describe(show_key)}"]
        here = [f"@{m.nick.display}" for m in members if self.is_operator(m)]
        lines.extend(_named("Operators here", here, per_line) or ["No operator here."])
        if self.registered:
            lines.append(f"Registered; founder: account {self.founder_name}.")
            lines.extend(
                _named(
                    "Operator accounts",
                    sorted(self.operator_accounts.values()),
                    per_line,
                )
            )
        else:
            lines.append("Not registered (/room register keeps it).")
        lines.append(f"Bans: {len(self.bans)} (/bans); mutes: {len(self.mutes)}.")
        return lines

    # -- the stored form ------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        """The persistent part as JSON-ready values (see the module docstring)."""
        return {
            "version": RULES_VERSION,
            "founder": self.founder_name or None,
            "operators": list(self.operator_accounts.values()),
            "settings": self.settings.to_dict(),
            "bans": [ban.to_dict() for ban in self.bans.bans()],
            "mutes": [m.to_dict() for m in self.mutes.mutes() if m.pattern is not None],
        }

    def _refresh(self) -> None:
        self.speech_restricted = self.settings.moderated or bool(len(self.mutes))


def _named(label: str, names: list[str], per_line: int) -> list[str]:
    """``Label: a, b, c`` lines of at most ``per_line`` names (none: no line)."""
    return [
        f"{label}: {', '.join(names[start : start + per_line])}"
        for start in range(0, len(names), per_line)
    ]
