"""
Who is connected, by nickname: guest names, renames, finding somebody.

Nicknames are unique by their key (:func:`~twisted_chat.core.names.name_key`:
case, width and look-alike letters do not count), so ``/nick`` and ``/msg``
look people up here by key, never by the spelling typed.

Accounts protect nicknames, but this module knows nothing of accounts: it
asks a :class:`NickGuard` (set by :class:`~twisted_chat.core.accounts.AccountCommands`
on :attr:`Directory.guard`) whether a ``/nick`` may go ahead and whether a
guest name is an account's.  A forced rename (a login taking its nickname
from whoever holds it, a logout) goes through :meth:`Directory.force_rename`,
which skips every check and tells the rooms as ``/nick`` does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from twisted_chat.core import lines
from twisted_chat.core.errors import InvalidName, NickInUse, NoSuchNick
from twisted_chat.core.events import Renamed
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.names import Nick, name_key

if TYPE_CHECKING:
    from twisted_chat.core.events import RoomEvent
    from twisted_chat.core.room import Participant

_log = RateLimitedLogger()


class NickGuard(Protocol):
    """What the directory asks of accounts before a nickname changes hands."""

    def refuse_nick(self, participant: Participant, nick: Nick) -> None:
        """
        Raise if ``participant`` may not take ``nick``.

        :raises twisted_chat.core.errors.NickRegistered: when ``nick`` is an
            account they are not logged in to.
        """

    def reserved(self, nick: Nick) -> bool:
        """Whether ``nick`` is an account's (so no guest is given it)."""


class Directory:
    """
    The participants by nickname key.

    :param participants: the table, shared with the chat server.
    :param tell_neighbours: tells everybody who shares a room with a
        participant a notice (once each).
    """

    def __init__(
        self,
        participants: dict[str, Participant],
        tell_neighbours: Callable[[Participant, bytes, RoomEvent], None],
    ) -> None:
        self.participants = participants
        self._tell_neighbours = tell_neighbours
        self._guest_numbers = itertools.count(1)
        #: Asked before a ``/nick`` and a guest name (None: no accounts).
        self.guard: NickGuard | None = None
        #: Told of every rename of a user (``--cluster``: the claims).
        self.on_rename: Callable[[Participant, Nick, Nick], None] | None = None
        #: ``--cluster``: asks the other nodes for a nickname before
        #: ``/nick`` takes it; True when the answer will come (to the
        #: callable given), False to go ahead now (running alone).
        self.claim: (
            Callable[[Participant, Nick, Callable[[bool], None]], bool] | None
        ) = None

    def guest_nick(self) -> Nick:
        """A free ``guestN`` nickname, nobody's account."""
        guard = self.guard
        while True:
            nick = Nick.parse(f"guest{next(self._guest_numbers)}")
            if nick.key in self.participants:
                continue
            if guard is None or not guard.reserved(nick):
                return nick

    def rename(self, participant: Participant, name: str) -> None:
        """
        ``/nick NAME``: take ``name`` if nobody holds it in any spelling
        and it is not an account the participant is not logged in to.

        :raises NickInUse: when somebody else does.
        :raises twisted_chat.core.errors.NickRegistered: from the guard.
        """
        new = Nick.parse(name)
        old = participant.nick
        if new == old:
            participant.client.send(lines.notice(f"You are already {new.display}."))
            return
        if self.guard is not None:
            self.guard.refuse_nick(participant, new)
        holder = self.participants.get(new.key)
        if holder is not None and holder is not participant:
            held_as = (
                f" (by {holder.nick.display})"
                if holder.nick.display != new.display
                else ""
            )
            raise NickInUse(
                f"{new.display} is taken{held_as}; choose another with /nick NAME."
            )
        claim = self.claim
        if claim is not None and claim(
            participant, new, lambda won: self._claimed(participant, new, won=won)
        ):
            return
        participant.client.send(lines.notice(f"You are now known as {new.display}."))
        self.force_rename(participant, new)

    def _claimed(self, participant: Participant, new: Nick, *, won: bool) -> None:
        """The cluster's answer to a ``/nick``: take the name, or say who has it."""
        if participant.gone or participant.nick == new:
            return
        holder = self.participants.get(new.key)
        try:
            if not won or (holder is not None and holder is not participant):
                problem = NickInUse(
                    f"{new.display} is taken; choose another with /nick NAME."
                )
                participant.client.send(lines.error(problem))
                return
            # Renamed first: a transport reading the answer (IRC's NICK)
            # sees the new name.
            self.force_rename(participant, new)
            participant.client.send(
                lines.notice(f"You are now known as {new.display}.")
            )
        except Exception:
            _log.failure("while renaming {nick}", nick=participant.nick.display)

    def force_rename(self, participant: Participant, new: Nick) -> None:
        """
        Give ``participant`` the nickname ``new``, no questions asked; their
        rooms see ``* OLD is now known as NEW``.  They are not told: the
        caller says why.

        The caller makes sure nobody else holds ``new``.  A participant who
        is gone, or not in the table, only gets the new name.
        """
        old = participant.nick
        participants = self.participants
        listed = participants.get(old.key) is participant
        if listed:
            del participants[old.key]
        participant.nick = new
        if not listed or participant.gone:
            return
        participants[new.key] = participant
        if self.on_rename is not None and not participant.remote:
            self.on_rename(participant, old, new)
        if old.display != new.display:
            self._tell_neighbours(
                participant,
                lines.notice(f"{old.display} is now known as {new.display}"),
                Renamed(participant, old.display, new.display),
            )
            _log.info("{old} is now {new}", old=old.display, new=new.display)

    def find(self, target: str) -> Participant:
        """
        The participant ``target`` names, compared by key.

        :raises NoSuchNick: when nobody is called that.
        """
        try:
            key = Nick.parse(target).key
        except InvalidName:
            key = name_key(target)
        recipient = self.participants.get(key)
        if recipient is None:
            raise NoSuchNick(f"Nobody called {target} is here; /who lists people.")
        return recipient
