"""
Who is connected, by nickname: guest names, renames, finding somebody.

Nicknames are unique by their key (:func:`~twisted_chat.core.names.name_key`:
case, width and look-alike letters do not count), so ``/nick`` and ``/msg``
look people up here by key, never by the spelling typed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted_chat.core import lines
from twisted_chat.core.errors import InvalidName, NickInUse, NoSuchNick
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.names import Nick, name_key

if TYPE_CHECKING:
    from twisted_chat.core.room import Participant

_log = RateLimitedLogger()


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
        tell_neighbours: Callable[[Participant, bytes], None],
    ) -> None:
        self.participants = participants
        self._tell_neighbours = tell_neighbours
        self._guest_numbers = itertools.count(1)

    def guest_nick(self) -> Nick:
        """A free ``guestN`` nickname."""
        while True:
            nick = Nick.parse(f"guest{next(self._guest_numbers)}")
            if nick.key not in self.participants:
                return nick

    def rename(self, participant: Participant, name: str) -> None:
        """
        ``/nick NAME``: take ``name`` if nobody holds it in any spelling.

        :raises NickInUse: when somebody else does.
        """
        new = Nick.parse(name)
        old = participant.nick
        if new == old:
            participant.client.send(lines.notice(f"You are already {new.display}."))
            return
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
        del self.participants[old.key]
        participant.nick = new
        self.participants[new.key] = participant
        participant.client.send(lines.notice(f"You are now known as {new.display}."))
        self._tell_neighbours(
            participant, lines.notice(f"{old.display} is now known as {new.display}")
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
