"""
Registered rooms in the chat: ``/room register``, ``/room drop``, keeping a
registered room's rules and topic in the
:class:`~twisted_chat.core.room_ports.RoomStore`, and loading them at start
(PROTOCOL.md, "Room moderation").

A registered room stays in the chat's table of rooms while it is empty, as
a :class:`~twisted_chat.core.room.Room` with no members: so a join meets its
bans, key and limit through the same path as a live room's
(:meth:`~twisted_chat.core.moderation.ModerationCommands.admit`), and
``/rooms`` and ``/who`` list it (0 people) within their bounds, with no
second table to keep in step.  The cost is bounded by the store's own bound
(`twisted_chat.accounts.rooms.MAX_REGISTERED_ROOMS`), and the store holds
every room in memory anyway.

The store is written after each change to a registered room (an operator's
command, the topic, the room emptying); it folds the writes of one room, so
a burst of ``/ban`` costs a few writes.  A registered room does not count
against its creator's address group: it is no longer theirs to hold.

Apart from :mod:`~twisted_chat.core.moderation` because that module is
about acting on one command in a live room, this one about the rooms that
outlive their members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_chat.core import lines
from twisted_chat.core.account_ports import Refusal
from twisted_chat.core.errors import (
    AccountsDisabled,
    BadUsage,
    ChatError,
    InvalidName,
    TooManyRooms,
)
from twisted_chat.core.names import RoomName
from twisted_chat.core.room import Room
from twisted_chat.core.room_ports import (
    MAX_TOPIC_CHARS,
    RegisteredRoom,
    RoomStore,
    RoomTopic,
)
from twisted_chat.core.room_records import Change
from twisted_chat.core.room_rules import RoomRules

if TYPE_CHECKING:
    from twisted_chat.core.account_ports import AccountServices
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.room import Participant

__all__ = ["RegisteredRooms", "topic_of"]

_log = Logger(namespace="twisted_chat.moderation")


def topic_of(room: Room) -> RoomTopic | None:
    """``room``'s topic as the store keeps it (None: no topic)."""
    if not room.topic:
        return None
    return RoomTopic(room.topic[:MAX_TOPIC_CHARS], room.topic_by, room.topic_at)


class RegisteredRooms:
    """
    The chat's registered rooms, over a :class:`RoomStore`.

    :param server: the chat (its rooms table, clock, membership).
    :param services: the accounts; ``services.rooms`` is the store (None:
        registering is refused, nothing is kept).
    """

    def __init__(self, server: ChatServer, services: AccountServices | None) -> None:
        self._server = server
        self._services = services
        self.store: RoomStore | None = services.rooms if services is not None else None

    # -- start-up ------------------------------------------------------------------

    def load(self) -> int:
        """Put every registered room in the chat's table, empty; how many."""
        store = self.store
        if store is None:
            return 0
        loaded = 0
        for stored in store.all():
            if self._founder_gone(stored):
                # An account deleted (and maybe made again by someone else)
                # must not leave, or hand over, a founder's rights.
                store.drop(stored.key)
                _log.warn(
                    "dropped the registration of {room}: its founder's account is gone",
                    room=stored.name,
                )
                continue
            try:
                self._revive(stored)
            except (InvalidName, ValueError) as problem:
                _log.warn(
                    "registered room {room} not loaded: {problem}",
                    room=stored.name,
                    problem=str(problem),
                )
                continue
            loaded += 1
        return loaded

    def _founder_gone(self, stored: RegisteredRoom) -> bool:
        services = self._services
        if services is None:
            return False
        founder = stored.rules.get("founder")
        if not isinstance(founder, str):
            return True
        account = services.store.get(founder)
        return (
            account is None
            or account.key != stored.founder
            or account.created_at > stored.created_at
        )

    def _revive(self, stored: RegisteredRoom) -> Room:
        """The empty live room of ``stored``, in the chat's table."""
        server = self._server
        name = RoomName.parse(stored.name)
        room = Room(name=name)
        room.rules = RoomRules.from_dict(stored.rules, name.display, server.seconds())
        if stored.topic is not None:
            room.topic = stored.topic.text
            room.topic_by = stored.topic.set_by
            room.topic_at = stored.topic.set_at
        server.rooms[name.key] = room
        if server.cluster is not None:
            server.cluster.room_made(room)
        return room

    def refresh(self, key: str) -> None:
        """
        Another node changed registered room ``key`` (``--cluster``): the
        stored rules are the truth, live or not; a room not live yet is
        revived, empty, as at start.
        """
        store = self.store
        stored = store.get(key) if store is not None else None
        if stored is None:
            return
        server = self._server
        room = server.rooms.get(key)
        try:
            if room is None:
                self._revive(stored)
                return
            rules = RoomRules.from_dict(
                stored.rules, room.name.display, server.seconds()
            )
            old = room.rules
            if old is not None:  # who is operator or voiced now stays so
                rules.operators |= old.operators
                rules.voiced |= old.voiced
                rules.invites = old.invites
            room.rules = rules
        except (InvalidName, ValueError) as problem:
            _log.warn(
                "registered room {room} not refreshed: {problem}",
                room=stored.name,
                problem=str(problem),
            )

    # -- what happens to a registered room -----------------------------------------

    def save(self, room: Room) -> None:
        """Keep ``room``'s rules and topic, if it is registered."""
        store, rules = self.store, room.rules
        if store is None or rules is None or not rules.registered:
            return
        key = room.name.key
        if store.get(key) is None:
            return
        store.update(key, rules=rules.to_dict(), topic=topic_of(room), done=_written)

    def topic_changing(self, room: Room) -> None:
        """The topic of ``room`` is set right after this: keep it once it is."""
        call_later = self._server.call_later
        if self.keeps(room) and call_later is not None:
            call_later(0, lambda: self.save(room))

    def keeps(self, room: Room) -> bool:
        """Whether ``room`` stays in the table when it is empty."""
        rules = room.rules
        return rules is not None and rules.registered and self.store is not None

    def register(
        self, participant: Participant, room: Room, rules: RoomRules, name: str
    ) -> Change:
        """
        ``/room register`` (the caller checked that ``participant`` is an
        operator): the rules name the founder, the store keeps the room.

        :raises ChatError: not logged in, registered already, or the store's
            refusal (its bounds), with the rules as they were.
        """
        store = self.store
        if store is None:
            raise AccountsDisabled(
                "Rooms cannot be registered on this server (it keeps no rooms)."
            )
        before = (rules.founder, rules.founder_name, dict(rules.operator_accounts))
        change = rules.register(participant, name)
        stored = RegisteredRoom(
            key=room.name.key,
            name=room.name.display,
            founder=rules.founder or "",
            created_at=self._server.seconds(),
            topic=topic_of(room),
            rules=rules.to_dict(),
        )
        answer = store.register(stored, _written)
        if isinstance(answer, Refusal):
            rules.founder, rules.founder_name = before[0], before[1]
            rules.operator_accounts.clear()
            rules.operator_accounts.update(before[2])
            raise _refused(answer, room)
        self._release_group(room)
        return change

    def drop(self, participant: Participant, room: Room, rules: RoomRules) -> Change:
        """``/room drop``: the founder or a server operator; the store forgets it."""
        server = self._server
        change = rules.drop(
            participant, list(room.members), server.operators.is_operator(participant)
        )
        if self.store is not None:
            self.store.drop(room.name.key, _written)
        return change

    def account_deleted(self, account_key: str) -> list[Room]:
        """
        The account ``account_key`` is gone (``/unregister``): drop the rooms
        it founded, so that nobody who makes an account of the same name
        later is their founder.  Their members are told with a ``*`` notice;
        an empty one goes.

        :return: the rooms dropped that still have members.
        """
        store = self.store
        if store is None:
            return []
        told = []
        rooms = self._server.rooms
        for stored in store.founded_by(account_key):
            store.drop(stored.key, _written)
            room = rooms.get(stored.key)
            if room is None or room.rules is None:
                continue
            rules = room.rules
            rules.founder, rules.founder_name = None, ""
            rules.operator_accounts.clear()
            if room.members:
                told.append(room)
                text = (
                    f"{room.name.display} is no longer registered: its "
                    "founder's account was deleted"
                )
                self._server.outbox.say_in(room, lines.notice(text), None, notice=True)
                _log.info("{room}: {text}", room=room.name.display, text=text)
            else:
                del rooms[stored.key]
                self._server.moderation.timers.forget(room)
        return told

    # -- helpers ------------------------------------------------------------------

    def _release_group(self, room: Room) -> None:
        """A registered room no longer counts against its creator's addresses."""
        group = room.group
        if not group:
            return
        room.group = ""
        counts = self._server.membership.rooms_by_group
        made = counts.pop(group, 1) - 1
        if made > 0:
            counts[group] = made


def _refused(refusal: Refusal, room: Room) -> ChatError:
    shown = room.name.display
    if refusal is Refusal.EXISTS:
        return BadUsage(f"{shown} is registered already.")
    if refusal is Refusal.FULL:
        return TooManyRooms(
            "This server holds as many registered rooms as it may; "
            f"{shown} stays unregistered."
        )
    if refusal is Refusal.TOO_MANY_FOUNDED:
        return TooManyRooms(
            "Your account founded as many rooms as one account may; "
            "/room drop one of them first."
        )
    return BadUsage(f"{shown} cannot be registered right now; try again later.")


def _written(ok: bool) -> None:
    if not ok:
        _log.error("REGISTERED ROOM NOT SAVED: the accounts file refused a write")
