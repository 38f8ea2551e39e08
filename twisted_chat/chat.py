"""
The chat rules: nicknames, rooms, who hears what.

Nothing here knows about sockets or the reactor.  Time comes from an injected
``seconds`` callable (``reactor.seconds`` in the daemon, ``Clock.seconds`` in
tests), participants are reached only through
:class:`~twisted_chat.interfaces.IChatClient`, and history through an optional
:class:`~twisted_chat.history.IMessageStore`.

Fan-out is the hot path: a room keeps a ready-made tuple of its members'
``send`` methods, and a message is formatted and encoded once, then the same
``bytes`` go to every member.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from attrs import define, field
from twisted.logger import Logger

from twisted_chat import commands, lines
from twisted_chat.errors import (
    BadUsage,
    ChatError,
    InvalidName,
    NickInUse,
    NoCurrentRoom,
    NoSuchNick,
    NoSuchRoom,
    NotInRoom,
    TooManyRooms,
    UnknownCommand,
)
from twisted_chat.names import Nick, RoomName, name_key
from twisted_chat.records import StoredTopic, format_history_line
from twisted_chat.settings import Settings

if TYPE_CHECKING:
    from twisted_chat.history import IMessageStore
    from twisted_chat.interfaces import IChatClient

_log = Logger()

#: How many rooms one person may be in at once, so that nobody can make the
#: server hold an unbounded number of rooms.
MAX_ROOMS_PER_USER = 50
#: How many messages ``/history`` replays at most.
HISTORY_LIMIT = 200
#: Names per line in ``/who`` replies, so a big room does not make one
#: enormous line (a UDP datagram is cut at 1200 bytes).
WHO_NAMES_PER_LINE = 20

_INTERNAL_ERROR = lines.encode(
    "! internal-error: Something went wrong on the server; it has been logged."
)
_PONG = lines.notice("pong")
#: Commands whose room lines may wait for the end of the reactor turn.
_QUEUED = (commands.Say, commands.Me)

Send = Callable[[bytes], None]


@define(eq=False, slots=True)
class Participant:
    """One person: their nickname, their rooms and how to reach them."""

    client: IChatClient
    nick: Nick
    #: Rooms by key, in the order they were joined (the last is the newest).
    rooms: dict[str, Room] = field(factory=dict)
    current: Room | None = None
    gone: bool = False
    #: The client's address group (:func:`twisted_chat.limits.address_group`),
    #: what per-address caps count by; "" (UNIX sockets, tests) is uncapped.
    group: str = ""


@define(eq=False, slots=True)
class Room:
    """A room exists while somebody is in it (its topic may be stored)."""

    name: RoomName
    topic: str = ""
    topic_by: str = ""
    topic_at: float = 0.0
    members: dict[Participant, None] = field(factory=dict)
    #: ``(participant, send)`` pairs, rebuilt when membership changes so the
    #: fan-out loop iterates a ready tuple and does no lookups.
    fanout: tuple[tuple[Participant, Send], ...] = ()
    #: Lines said this reactor turn and not yet handed out, with their sender.
    pending: list[tuple[bytes, Participant | None]] = field(factory=list)

    def add(self, participant: Participant) -> None:
        """Make ``participant`` a member."""
        self.members[participant] = None
        self._rebuild()

    def remove(self, participant: Participant) -> None:
        """Drop ``participant``; nothing happens if they were not here."""
        if participant in self.members:
            del self.members[participant]
            self._rebuild()

    def _rebuild(self) -> None:
        self.fanout = tuple((member, member.client.send) for member in self.members)

    def broadcast(self, data: bytes, exclude: Participant | None = None) -> None:
        """
        Hand the same bytes to every member but ``exclude``, now.

        One member's failure is logged and does not stop the others, as in
        ``twisted.words``' ``Group.receive``.
        """
        for member, send in self.fanout:
            if member is not exclude:
                try:
                    send(data)
                except Exception:
                    self._delivery_failed(member)

    def flush(self) -> bytes:
        """
        Hand out what was said this turn: one write per member for all of it.

        A member who said some of it gets the rest, without their own lines.
        Returns all of it, for the history.
        """
        pending, self.pending = self.pending, []
        if len(pending) == 1:
            self.broadcast(*pending[0])
            return pending[0][0]
        batch = b"".join([data for data, _ in pending])
        senders = {sender for _, sender in pending}
        for member, send in self.fanout:
            data = batch
            if member in senders:
                data = b"".join(
                    [line for line, sender in pending if sender is not member]
                )
                if not data:
                    continue
            try:
                send(data)
            except Exception:
                self._delivery_failed(member)
        return batch

    def _delivery_failed(self, member: Participant) -> None:
        """Log the failure being handled; the others still get their lines."""
        _log.failure(
            "while delivering to {nick} in {room}",
            nick=member.nick.display,
            room=self.name.display,
        )


class ChatServer:
    """
    Every rule of the chat: one instance is shared by all transports.

    :param settings: the live settings; replace the attribute to reload.
    :param seconds: the current time, for topics and history.
    :param store: where room messages and topics are kept, if anywhere.
    :param defer: runs a callable once the current reactor turn is done
        (``lambda f: reactor.callLater(0, f)``).  With it, what a room hears
        in one turn goes out as one write per member instead of one per line
        per member; without it, every line goes out at once.
    """

    def __init__(
        self,
        settings: Settings,
        seconds: Callable[[], float],
        store: IMessageStore | None = None,
        defer: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self.settings = settings
        self._seconds = seconds
        self._store = store
        self._defer = defer
        self._dirty: dict[Room, None] = {}
        self.participants: dict[str, Participant] = {}
        self.rooms: dict[str, Room] = {}
        self._guest_numbers = itertools.count(1)
        self._shutting_down = False
        self._saved_topics = store.topics() if store is not None else {}

    # -- the transports' API -------------------------------------------------

    def connect(self, client: IChatClient, group: str = "") -> Participant:
        """
        Welcome a new participant: guest nickname, MOTD, default room.

        :param group: the client's address group
            (:func:`twisted_chat.limits.address_group`), "" for none.
        """
        self.flush()
        participant = Participant(client=client, nick=self._guest_nick(), group=group)
        self.participants[participant.nick.key] = participant
        nick = participant.nick.display
        client.send(
            lines.notice(
                f"Welcome to twisted-chat, {nick}! Pick a name with /nick NAME; "
                f"/help lists the commands."
            )
        )
        for text in self.settings.motd:
            client.send(lines.notice(text))
        _log.info("{nick} connected from {peer}", nick=nick, peer=client.peer)
        if self.settings.default_room:
            try:
                self._join(participant, self.settings.default_room)
            except ChatError as problem:
                client.send(lines.error(problem))
        return participant

    def receive(self, participant: Participant, text: str) -> None:
        """
        Act on one cleaned line from ``participant``.

        A rule broken gets an ``!`` line; a bug is logged with its traceback
        and the user gets a short apology, never the traceback.
        """
        if participant.gone:
            return
        try:
            if not text.startswith("/"):
                # Plain text is most of the traffic: skip the command grammar.
                self._say(participant, self._current(participant), text)
                return
            command = commands.parse_line(text)
            if self._dirty and not isinstance(command, _QUEUED):
                # Membership changes and direct replies must not overtake
                # room lines queued earlier in this turn.
                self.flush()
            self._dispatch(participant, command)
        except ChatError as problem:
            participant.client.send(lines.error(problem))
        except Exception:
            _log.failure(
                "while handling a line from {nick}", nick=participant.nick.display
            )
            participant.client.send(_INTERNAL_ERROR)

    def disconnect(self, participant: Participant, reason: str) -> None:
        """The participant is gone (quit, lost, expired); tell their rooms."""
        if participant.gone:
            return
        self.flush()
        participant.gone = True
        nick = participant.nick.display
        if not self._shutting_down:
            self._tell_neighbours(participant, lines.notice(f"{nick} quit ({reason})"))
        for room in list(participant.rooms.values()):
            self._leave(participant, room)
        del self.participants[participant.nick.key]
        _log.info("{nick} quit: {reason}", nick=nick, reason=reason)

    def broadcast_notice(self, text: str) -> None:
        """Tell everybody something, such as that the server is shutting down."""
        self.flush()
        data = lines.notice(text)
        for participant in list(self.participants.values()):
            try:
                participant.client.send(data)
            except Exception:
                _log.failure("while telling {nick}", nick=participant.nick.display)

    def shut_down(self, text: str) -> None:
        """
        Tell everybody ``text`` and stop telling anyone about departures.

        The transports close every client after this; without it each one
        would hear a ``quit (connection lost)`` line for every other user
        before its own connection closes.
        """
        self.broadcast_notice(text)
        self._shutting_down = True

    def flush(self) -> None:
        """Hand out every room's queued lines now, and give them to the store."""
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            for room in dirty:
                if room.pending:
                    self._remember(room, room.flush())

    def _say_in(self, room: Room, data: bytes, sender: Participant | None) -> None:
        """Queue a room line for the end of this turn, or send it now."""
        if self._defer is None:
            room.broadcast(data, sender)
            self._remember(room, data)
            return
        room.pending.append((data, sender))
        if not self._dirty:
            self._defer(self.flush)
        self._dirty[room] = None

    def status(self) -> str:
        """A one-line summary for ``STATUS=`` and logs."""
        return f"{len(self.participants)} clients in {len(self.rooms)} rooms"

    # -- commands --------------------------------------------------------------

    def _dispatch(self, participant: Participant, command: commands.Command) -> None:
        match command:
            case commands.Say(text):
                self._say(participant, self._current(participant), text)
            case commands.SetNick(name):
                self._set_nick(participant, name)
            case commands.Join(room):
                self._join(participant, room)
            case commands.Part(args):
                self._part(participant, args)
            case commands.ListRooms():
                self._list_rooms(participant)
            case commands.Who(room):
                self._who(participant, room)
            case commands.Msg(target, text):
                self._msg(participant, target, text)
            case commands.Me(text):
                self._me(participant, text)
            case commands.Topic(text):
                self._topic(participant, text)
            case commands.Ping(token):
                participant.client.send(
                    lines.notice(f"pong {token}") if token else _PONG
                )
            case commands.Help(topic):
                self._help(participant, topic)
            case commands.Quit(reason):
                participant.client.send(lines.notice("Bye!"))
                self.disconnect(participant, reason or "leaving")
                participant.client.close()
            case commands.History(count):
                self._history(participant, count)
            case commands.Hello():
                raise BadUsage("/hello is the UDP handshake; you are already in.")

    def _current(self, participant: Participant) -> Room:
        room = participant.current
        if room is None:
            raise NoCurrentRoom(
                "You are not in a room; /join ROOM first (for example /join #lobby)."
            )
        return room

    def _say(self, participant: Participant, room: Room, text: str) -> None:
        nick = participant.nick.display
        self._say_in(
            room, lines.room_message(room.name.display, nick, text), participant
        )

    def _me(self, participant: Participant, text: str) -> None:
        room = self._current(participant)
        nick = participant.nick.display
        self._say_in(
            room, lines.room_action(room.name.display, nick, text), participant
        )

    def _remember(self, room: Room, said: bytes) -> None:
        """Hand what ``room`` heard this turn to the store, as it was sent.

        The store keeps the wire lines as they are and takes them apart
        only when they are read back, so history costs the fan-out one
        call per room and turn, not a record per message.
        """
        if self._store is not None:
            name = room.name
            self._store.append_lines(name.key, name.display, self._seconds(), said)

    def _set_nick(self, participant: Participant, name: str) -> None:
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

    def _join(self, participant: Participant, text: str) -> None:
        name = RoomName.parse(text)
        room = participant.rooms.get(name.key)
        if room is not None:
            participant.current = room
            participant.client.send(
                lines.notice(f"{room.name.display} is now your current room.")
            )
            return
        if len(participant.rooms) >= MAX_ROOMS_PER_USER:
            raise TooManyRooms(
                f"You are in {MAX_ROOMS_PER_USER} rooms already; /part one first."
            )
        room = self.rooms.get(name.key)
        if room is None:
            room = self._create_room(name)
        nick = participant.nick.display
        room.broadcast(lines.notice(f"{nick} joined {room.name.display}"))
        room.add(participant)
        participant.rooms[name.key] = room
        participant.current = room
        others = len(room.members) - 1
        client = participant.client
        company = (
            f"{_people(others, 'other person', 'other people')} here (/who lists them)"
            if others
            else "nobody else is here yet"
        )
        client.send(lines.notice(f"You joined {room.name.display}; {company}."))
        if room.topic:
            client.send(lines.notice(f"Topic of {room.name.display}: {room.topic}"))
        self._replay(participant, room, self.settings.history_on_join)

    def _create_room(self, name: RoomName) -> Room:
        room = Room(name=name)
        saved = self._saved_topics.get(name.key)
        if saved is not None:
            room.topic, room.topic_by, room.topic_at = (
                saved.text,
                saved.set_by,
                saved.set_at,
            )
        self.rooms[name.key] = room
        return room

    def _part(self, participant: Participant, args: str) -> None:
        room, reason = self._part_target(participant, args)
        nick = participant.nick.display
        suffix = f" ({reason})" if reason else ""
        self._leave(participant, room)
        room.broadcast(lines.notice(f"{nick} left {room.name.display}{suffix}"))
        current = participant.current
        where = (
            f"your current room is now {current.name.display}."
            if current is not None
            else "you are in no room now; /join one to chat."
        )
        participant.client.send(lines.notice(f"You left {room.name.display}; {where}"))

    def _part_target(self, participant: Participant, args: str) -> tuple[Room, str]:
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
                    return room, rest.strip()
                if first.startswith("#"):
                    raise NotInRoom(f"You are not in {name.display}.")
        return self._current(participant), args.strip()

    def _leave(self, participant: Participant, room: Room) -> None:
        room.remove(participant)
        participant.rooms.pop(room.name.key, None)
        if participant.current is room:
            participant.current = (
                next(reversed(participant.rooms.values()))
                if participant.rooms
                else None
            )
        if not room.members:
            del self.rooms[room.name.key]

    def _list_rooms(self, participant: Participant) -> None:
        send = participant.client.send
        rooms = sorted(self.rooms.values(), key=lambda room: room.name.key)
        send(lines.notice(f"{_people(len(rooms), 'room', 'rooms')}:"))
        for room in rooms:
            topic = f": {room.topic}" if room.topic else ""
            count = _people(len(room.members), "person", "people")
            send(lines.notice(f"{room.name.display} ({count}){topic}"))

    def _who(self, participant: Participant, text: str | None) -> None:
        if text is None:
            room = self._current(participant)
        else:
            name = RoomName.parse(text)
            found = self.rooms.get(name.key)
            if found is None:
                raise NoSuchRoom(f"There is no room {name.display}; /rooms lists them.")
            room = found
        nicks = sorted(member.nick.display for member in room.members)
        send = participant.client.send
        send(
            lines.notice(
                f"{_people(len(nicks), 'person', 'people')} in {room.name.display}:"
            )
        )
        for start in range(0, len(nicks), WHO_NAMES_PER_LINE):
            send(lines.notice(", ".join(nicks[start : start + WHO_NAMES_PER_LINE])))

    def _msg(self, participant: Participant, target: str, text: str) -> None:
        if target.startswith("#"):
            name = RoomName.parse(target)
            room = participant.rooms.get(name.key)
            if room is None:
                raise NotInRoom(
                    f"You are not in {name.display}; /join {name.display} first."
                )
            self._say(participant, room, text)
            return
        try:
            key = Nick.parse(target).key
        except InvalidName:
            key = name_key(target)
        recipient = self.participants.get(key)
        if recipient is None:
            raise NoSuchNick(f"Nobody called {target} is here; /who lists people.")
        recipient.client.send(lines.private_message(participant.nick.display, text))

    def _topic(self, participant: Participant, text: str | None) -> None:
        room = self._current(participant)
        send = participant.client.send
        if text is None:
            if room.topic:
                send(
                    lines.notice(
                        f"Topic of {room.name.display}: {room.topic} "
                        f"(set by {room.topic_by})"
                    )
                )
            else:
                send(
                    lines.notice(
                        f"{room.name.display} has no topic; set one with /topic TEXT."
                    )
                )
            return
        room.topic = text
        room.topic_by = participant.nick.display
        room.topic_at = self._seconds()
        room.broadcast(
            lines.notice(
                f"{room.topic_by} set the topic of {room.name.display} to: {text}"
            )
        )
        if self._store is not None:
            topic = StoredTopic(
                room_key=room.name.key,
                room=room.name.display,
                text=text,
                set_by=room.topic_by,
                set_at=room.topic_at,
            )
            self._saved_topics[room.name.key] = topic
            self._store.set_topic(topic)

    def _history(self, participant: Participant, count: int | None) -> None:
        room = self._current(participant)
        if self._store is None:
            participant.client.send(lines.notice("History is turned off here."))
            return
        wanted = min(HISTORY_LIMIT, count or self.settings.history_on_join or 20)
        if not self._replay(participant, room, wanted):
            participant.client.send(
                lines.notice(f"No history yet in {room.name.display}.")
            )

    def _replay(self, participant: Participant, room: Room, count: int) -> int:
        if self._store is None or count <= 0:
            return 0
        from attrs import evolve

        messages = self._store.recent(room.name.key, min(count, HISTORY_LIMIT))
        now = self._seconds()
        send = participant.client.send
        # Show the room as it is spelled now (a room re-created after it
        # emptied, or after a restart, may be spelled #Dev instead of #dev),
        # so replayed and live lines name it alike.
        display = room.name.display
        for message in messages:
            if message.room != display:
                message = evolve(message, room=display)  # noqa: PLW2901
            send(lines.encode(format_history_line(message, now)))
        return len(messages)

    def _help(self, participant: Participant, topic: str | None) -> None:
        send = participant.client.send
        if topic is None:
            send(lines.notice("Commands (type /help COMMAND for more):"))
            for name, (usage, what) in commands.HELP.items():
                if name != "list":
                    send(lines.notice(f"{usage}: {what}"))
            send(
                lines.notice(
                    "Any other line is a message to your current room; "
                    "//text sends /text."
                )
            )
            return
        entry = commands.HELP.get(topic)
        if entry is None:
            raise UnknownCommand(
                f"There is no command /{topic[:32]}; /help lists them."
            )
        send(lines.notice(f"{entry[0]}: {entry[1]}"))

    # -- helpers ---------------------------------------------------------------

    def _guest_nick(self) -> Nick:
        while True:
            nick = Nick.parse(f"guest{next(self._guest_numbers)}")
            if nick.key not in self.participants:
                return nick

    def _tell_neighbours(self, participant: Participant, data: bytes) -> None:
        """Send ``data`` once to everybody who shares a room with ``participant``."""
        told: set[Participant] = {participant}
        for room in participant.rooms.values():
            for member, send in room.fanout:
                if member not in told:
                    told.add(member)
                    try:
                        send(data)
                    except Exception:
                        _log.failure("while telling {nick}", nick=member.nick.display)


def _people(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"
