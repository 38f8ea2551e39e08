"""
Who is in which room: joining, leaving, and what the others hear of it.

The join, part, quit and nick-change notices go through the rooms' queue
(:class:`~twisted_chat.core.outbox.Outbox`) like room lines, so that in a busy
room they go out in batches, and so that each member sees them in order
with what was said: a joiner gets nothing said before they joined, and
someone who left nothing said after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from twisted_chat.core import lines
from twisted_chat.core.bounds import MAX_ROOMS_PER_USER
from twisted_chat.core.errors import (
    InvalidName,
    NoCurrentRoom,
    NoSuchRoom,
    NotInRoom,
    TooManyRooms,
)
from twisted_chat.core.events import Joined, Kicked, Left
from twisted_chat.core.foreign import notice_event, tell
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.names import RoomName
from twisted_chat.core.room_records import kick_notices
from twisted_chat.core.room_rules import RoomRules

if TYPE_CHECKING:
    from twisted_chat.core.events import RoomEvent
    from twisted_chat.core.outbox import Outbox
    from twisted_chat.core.room import Participant, Room

_log = RateLimitedLogger()


class RoomHooks(Protocol):
    """
    What room moderation (:mod:`~twisted_chat.core.moderation`) is asked
    around joins and departures (never per message).
    """

    def admit(self, participant: Participant, room: Room, key: str | None) -> None:
        """Raise why ``participant`` may not join ``room``, an existing room."""

    def joined(self, participant: Participant, room: Room) -> None:
        """``participant`` is in ``room`` now."""

    def left(self, participant: Participant, room: Room) -> None:
        """``participant`` is out of ``room`` (which may be empty and gone)."""

    def keeps(self, room: Room) -> bool:
        """Whether ``room``, empty now, stays (a registered room)."""


class PartTarget(NamedTuple):
    """What ``/part [ROOM] [reason]`` asks for."""

    room: Room
    #: Said to the room after ``left``; "" for none.
    reason: str


def current_room(participant: Participant) -> Room:
    """
    The room plain lines go to.

    :raises NoCurrentRoom: when ``participant`` is in none.
    """
    room = participant.current
    if room is None:
        raise NoCurrentRoom(
            "You are not in a room; /join ROOM first (for example /join #lobby)."
        )
    return room


class Membership:
    """
    Joins and departures, over the chat's table of rooms.

    :param rooms: the rooms by key, shared with the chat server.
    :param create_room: makes a room (with its saved topic) and adds it to
        ``rooms``.
    :param outbox: where notices to a room wait to go out.
    :param room_cap: how many existing rooms one address group may have
        created (0: no cap); asked each time, so a reload applies.
    """

    def __init__(
        self,
        rooms: dict[str, Room],
        create_room: Callable[[RoomName], Room],
        outbox: Outbox,
        room_cap: Callable[[], int],
    ) -> None:
        self.rooms = rooms
        self._create_room = create_room
        self._outbox = outbox
        self._room_cap = room_cap
        #: Rooms that exist, by the address group that created them.
        self.rooms_by_group: dict[str, int] = {}
        #: Room moderation's checks, set by the chat server.
        self.hooks: RoomHooks | None = None
        #: Members taken out of a room so far (issue 17's metrics read it).
        self.kicks = 0

    def join(
        self, participant: Participant, text: str, key: str | None = None
    ) -> Room | None:
        """
        ``/join ROOM [KEY]``: join (creating the room if need be) and make it
        current; an existing room's rules may refuse (banned, key, ...).

        :return: the room joined, or None if ``participant`` was in it
            already (it is only made current).
        :raises TooManyRooms: past the per-person or the per-address cap.
        """
        name = RoomName.parse(text)
        room = participant.rooms.get(name.key)
        client = participant.client
        if room is not None:
            participant.current = room
            client.send(lines.notice(f"{room.name.display} is now your current room."))
            return None
        if len(participant.rooms) >= MAX_ROOMS_PER_USER:
            raise TooManyRooms(
                f"You are in {MAX_ROOMS_PER_USER} rooms already; /part one first."
            )
        room = self.rooms.get(name.key)
        hooks = self.hooks
        if room is None:
            room = self._create(participant, name)
        elif hooks is not None:
            hooks.admit(participant, room, key)
        self._outbox.say_in(
            room,
            lines.notice(f"{participant.nick.display} joined {room.name.display}"),
            None,
            notice=True,
            event=None
            if room.foreign is None
            else Joined(participant, participant.nick.display),
        )
        room.add(participant)
        participant.rooms[name.key] = room
        participant.current = room
        if hooks is not None:
            hooks.joined(participant, room)
        others = len(room.members) - 1
        company = (
            f"{lines.counted(others, 'other person', 'other people')} here "
            f"(/who lists them)"
            if others
            else "nobody else is here yet"
        )
        client.send(lines.notice(f"You joined {room.name.display}; {company}."))
        if room.topic:
            client.send(lines.notice(f"Topic of {room.name.display}: {room.topic}"))
        return room

    def _create(self, participant: Participant, name: RoomName) -> Room:
        """A new room, counted against its creator's address group."""
        group = participant.group
        made = self.rooms_by_group.get(group, 0)
        cap = self._room_cap() if group else 0
        if cap and made >= cap:
            raise TooManyRooms(
                f"People from your address have made {cap} rooms "
                f"that still exist; join one of those (/rooms lists rooms) or try "
                f"again once one has emptied."
            )
        room = self._create_room(name)
        # Whoever creates a room is its operator (PROTOCOL.md).
        room.rules = RoomRules.for_creator(room.name.display, participant)
        if group:
            room.group = group
            self.rooms_by_group[group] = made + 1
        return room

    def part(self, participant: Participant, args: str) -> None:
        """``/part [ROOM] [reason]``."""
        target = self._part_target(participant, args)
        room = target.room
        suffix = f" ({target.reason})" if target.reason else ""
        # Said first (not to the leaver), so that a notice the departure
        # causes (a new operator) comes after it.
        self._outbox.say_in(
            room,
            lines.notice(
                f"{participant.nick.display} left {room.name.display}{suffix}"
            ),
            participant,
            notice=True,
            event=None
            if room.foreign is None
            else Left(participant, participant.nick.display, target.reason),
        )
        self.leave(participant, room)
        current = participant.current
        where = (
            f"your current room is now {current.name.display}."
            if current is not None
            else "you are in no room now; /join one to chat."
        )
        participant.client.send(lines.notice(f"You left {room.name.display}; {where}"))

    def _part_target(self, participant: Participant, args: str) -> PartTarget:
        """
        Split ``/part`` arguments into a room and a reason.

        The first word is the room when it starts with ``#`` or names a room
        the user is in; otherwise everything is the reason for leaving the
        current room (``/part bye all``).
        """
        first, _, rest = args.partition(" ")
        if first:
            try:
                name = RoomName.parse(first)
            except InvalidName:
                if first.startswith("#"):
                    raise
            else:
                room = participant.rooms.get(name.key)
                if room is not None:
                    return PartTarget(room, rest.strip())
                if first.startswith("#"):
                    raise NotInRoom(f"You are not in {name.display}.")
        return PartTarget(current_room(participant), args.strip())

    def leave(self, participant: Participant, room: Room) -> None:
        """Take ``participant`` out of ``room``; an empty room goes."""
        room.remove(participant)
        participant.rooms.pop(room.name.key, None)
        if participant.current is room:
            participant.current = (
                next(reversed(participant.rooms.values()))
                if participant.rooms
                else None
            )
        hooks = self.hooks
        if hooks is not None and not participant.remote:
            # A remote user's node moderates their departures.
            hooks.left(participant, room)
        if not room.members and (hooks is None or not hooks.keeps(room)):
            del self.rooms[room.name.key]
            group = room.group
            if group:
                made = self.rooms_by_group.pop(group, 1) - 1
                if made > 0:
                    self.rooms_by_group[group] = made

    def find(self, participant: Participant, text: str | None) -> Room:
        """
        The room ``/who ROOM`` asks about: the current one for None.

        :raises NoSuchRoom: when there is no such room.
        """
        if text is None:
            return current_room(participant)
        name = RoomName.parse(text)
        found = self.rooms.get(name.key)
        if found is None:
            raise NoSuchRoom(f"There is no room {name.display}; /rooms lists them.")
        return found

    def kick(
        self, room: Room, target: Participant, kicker: Participant, reason: str
    ) -> None:
        """
        Take ``target`` out of ``room`` (``/kick``, a ban): the room is told,
        and they are, in their own format (an IRC client gets its ``KICK``).
        """
        self.kicks += 1
        by = kicker.nick.display
        seen, told = kick_notices(target.nick.display, by, room.name.display, reason)
        outbox = self._outbox
        if outbox.busy:
            outbox.catch_up(target)
        kicked = Kicked(target, target.nick.display, kicker, by, reason)
        outbox.say_in(room, lines.notice(seen), target, notice=True, event=kicked)
        self.leave(target, room)
        tell(target, room, lines.notice(told), kicked)

    def tell_neighbours(
        self, participant: Participant, data: bytes, event: RoomEvent | None = None
    ) -> None:
        """
        Send notice ``data`` once to everybody who shares a room with
        ``participant`` (``event``, or its text, to members of other formats).

        In one room (the usual case) it is queued like a room line, so a
        busy room's churn goes out in batches.  Across rooms, a neighbour
        in two of them must hear it once: the rooms' pending lines go out
        first, then the notice to each neighbour now.
        """
        rooms = participant.rooms
        if len(rooms) == 1:
            for room in rooms.values():
                self._outbox.say_in(room, data, participant, notice=True, event=event)
            return
        self._outbox.flush_rooms_of(participant)
        told: set[Participant] = {participant}
        for room in rooms.values():
            if room.foreign is not None:
                room.foreign.tell(room, event or notice_event(data), told)
            for member, send in room.fanout:
                if member not in told:
                    told.add(member)
                    try:
                        send(data)
                    except Exception:
                        _log.failure("while telling {nick}", nick=member.nick.display)
