"""Registered rooms shared by every node through Redis (issue 19).

A room registered on one node keeps its founder, topic and rules on all
of them.  The store is `twisted_chat.accounts.rooms.BaseRoomStore` (every
room in a dict, a change seen at once, the writes of one room folded into
one per turn), writing each room's newest state to a field of the HASH
``tc:rooms`` (room key -> JSON) with the accounts' Lua script
(`twisted_chat.cluster.shared_accounts.WRITE_ENTRY`): the change, the
store's version (``tc:rooms:v``) and the announcement on ``tc:control``
(``{"v": N, "kind": "rooms", "name": key, "value": {...} | null}``) in
one atomic step.  A registration is an HSETNX, so two nodes registering
one name give one founder; the other's ``done`` gets False and the
winner's room replaces its own.

`RedisRoomStore.apply` takes the announcements (the mirror routes kind
``rooms`` here), `RedisRoomStore.load` the whole table at start and after
each reconnect, as for the accounts (`Replica` orders them).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from twisted_chat.accounts.rooms import (
    MAX_REGISTERED_ROOMS,
    MAX_ROOMS_PER_FOUNDER,
    BaseRoomStore,
)
from twisted_chat.cluster.replica import (
    CONTROL,
    WRITE_ENTRY,
    RedisCommands,
    Replica,
    Replicated,
    reason_of,
    text_of,
)
from twisted_chat.core.account_ports import Refusal
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.room_ports import RegisteredRoom, RoomTopic, encode_rules

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTime
    from twisted.python.failure import Failure

__all__ = ["ROOMS_KEY", "RedisRoomStore", "room_from", "room_value"]

ROOMS_KEY: Final = "tc:rooms"
ROOMS_VERSION: Final = "tc:rooms:v"

#: Rate-limited: while Redis is down, every write fails and says so.
_log = RateLimitedLogger(namespace="twisted_chat.cluster.stores")


def room_value(room: RegisteredRoom) -> str:
    """``room`` as the JSON text kept in ``tc:rooms``."""
    topic = room.topic
    return (
        "{"
        + json.dumps(
            {
                "key": room.key,
                "name": room.name,
                "founder": room.founder,
                "created_at": room.created_at,
                "topic": None
                if topic is None
                else {
                    "text": topic.text,
                    "set_by": topic.set_by,
                    "set_at": topic.set_at,
                },
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )[1:-1]
        + ',"rules":'
        + encode_rules(room.rules)  # checked and encoded once, as the file does
        + "}"
    )


def room_from(data: object) -> RegisteredRoom:
    """The room a decoded JSON value holds.

    :raises ValueError: it is not one `room_value` makes.
    """
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    topic = data.get("topic")
    if topic is not None:
        if not isinstance(topic, dict):
            raise ValueError("its topic is not a JSON object")
        topic = RoomTopic(topic.get("text"), topic.get("set_by"), topic.get("set_at"))  # type: ignore[arg-type]
    try:
        return RegisteredRoom(
            data.get("key"),  # type: ignore[arg-type]
            data.get("name"),  # type: ignore[arg-type]
            data.get("founder"),  # type: ignore[arg-type]
            data.get("created_at"),  # type: ignore[arg-type]
            topic,
            data.get("rules", {}),
        )
    except TypeError as e:
        raise ValueError(str(e)) from None


class RedisRoomStore(Replicated, BaseRoomStore):
    """`RoomStore` of a clustered node: memory, written to Redis.

    :param on_change: told ``("rooms", key)`` after an announcement or a
        load changed a room (the mirror refreshes a live room's rules and
        topic).
    """

    def __init__(
        self,
        link: RedisCommands,
        reactor: IReactorTime,
        *,
        max_rooms: int = MAX_REGISTERED_ROOMS,
        max_per_founder: int = MAX_ROOMS_PER_FOUNDER,
        on_change: Callable[[str, str | None], None] | None = None,
    ) -> None:
        super().__init__({}, max_rooms=max_rooms, max_per_founder=max_per_founder)
        self._replica = Replica(link, reactor, "registered rooms", self._apply_one)
        self.on_change = on_change

    def register(
        self, room: RegisteredRoom, done: Callable[[bool], None] | None = None
    ) -> RegisteredRoom | Refusal:
        """``RoomStore.register``, refused while Redis is away (see accounts)."""
        if not self._replica.link.up:
            return Refusal.CLOSED
        return super().register(room, done)

    def load(self) -> Deferred[bool]:
        """Replace the rooms with Redis's; True when loaded, False (logged)
        when Redis is down. At start and after each reconnect."""
        return self._replica.load([ROOMS_VERSION, ROOMS_KEY], self._install)

    def apply(self, message: dict[str, Any]) -> None:
        """A ``tc:control`` message of kind ``rooms``."""
        self._replica.receive(message, self.load)

    def _install(self, reply: list[Any]) -> int:
        version, fields = reply[0], reply[1]
        rooms: dict[str, RegisteredRoom] = {}
        for raw in list(fields or [])[1::2]:
            try:
                room = room_from(json.loads(text_of(raw)))
            except ValueError as e:
                _log.warn(
                    "a registered room in {key} skipped: {reason}",
                    key=ROOMS_KEY,
                    reason=" ".join(str(e).split()),
                )
                continue
            rooms[room.key] = room
        before = dict(self._rooms)
        self._rooms.clear()
        self._rooms.update(rooms)
        self._saved = dict(rooms)
        for key in sorted(before.keys() | rooms.keys()):
            if before.get(key) != rooms.get(key):
                self._changed(key)  # changed while this node did not listen
        return int(text_of(version) or 0)

    def _apply_one(self, message: dict[str, Any]) -> None:
        name, value = message.get("name"), message.get("value")
        if message.get("kind") != "rooms" or not isinstance(name, str):
            _log.warn(
                "rooms: an announcement of kind {kind!r} ignored",
                kind=message.get("kind"),
            )
            return
        if value is None:
            self._rooms.pop(name, None)
            self._saved.pop(name, None)
        else:
            room = room_from(value)
            self._rooms[room.key] = self._saved[room.key] = room
        self._changed(name)

    def _changed(self, key: str) -> None:
        if self.on_change is not None:
            try:
                self.on_change("rooms", key)
            except Exception:
                _log.failure("in a registered rooms change callback")

    def _send(self, key: str) -> None:
        self._replica.later(lambda: self._write(key))

    def _write(self, key: str) -> Deferred[Any]:
        """On a later turn: write the newest state of ``key``."""
        written, dones = self._take(key)
        if written is None:
            mode, value = "delete", "null"
        else:
            mode = "update" if key in self._saved else "create"
            value = room_value(written)
        head = f'"kind":"rooms","name":{json.dumps(key, ensure_ascii=False)}'
        d = self._replica.script(
            WRITE_ENTRY, [ROOMS_KEY, ROOMS_VERSION], [mode, key, value, head, CONTROL]
        )

        def answered(result: object) -> None:
            ok = text_of(result) == "1"
            if not ok:
                _log.error(
                    "registered room write failed for {room}:"
                    " it was changed on another node",
                    room=key,
                )
            self._answer(key, written, dones, ok)

        def refused(failure: Failure) -> None:
            _log.error(
                "registered room write failed for {room}: {reason}",
                room=key,
                reason=reason_of(failure),
            )
            self._answer(key, written, dones, False)

        return d.addCallbacks(answered, refused)
