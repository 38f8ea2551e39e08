"""Registered rooms in memory, and their rows in the accounts file (issue 14).

`BaseRoomStore` is `twisted_chat.core.room_ports.RoomStore`: every room in
a dict by name key, changed at once, written later.  Writes are folded per
room: a change records the room's newest state in ``_unsent`` and, if none
was waiting, sends one write; the writer takes the state when it gets
there, so changes made meanwhile ride along and the queue never holds
more than one write per room.  ``_saved`` is what the last kept write put
on disk, so that a failed write is undone to it (unless a newer change is
waiting, whose write will settle the row), as accounts are.

`MemoryRoomStore` writes nowhere (tests, no file), on the next reactor
turn.  `SqliteRoomStore` writes through the accounts store's one writer
thread (`twisted_chat.accounts.sqlite.SqliteAccountStore.rooms`): the
rooms live in the accounts file because their founders and operators are
accounts, and because both must survive ``--history-db off``.

Bounds: `MAX_REGISTERED_ROOMS` rooms in all and `MAX_ROOMS_PER_FOUNDER`
per founder account, so one account cannot fill the table.  A row that
cannot be read at start (bad JSON, wrong types) is skipped and logged,
not a refusal to start: it costs one room its registration, not the
server its accounts; registering the name again replaces the row.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import TYPE_CHECKING, Any, Final

import attrs
from twisted.logger import Logger

from twisted_chat.core.room_ports import (
    KEEP,
    Keep,
    Refusal,
    RegisteredRoom,
    RoomTopic,
    encode_rules,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from twisted.internet.interfaces import IReactorTime

__all__ = [
    "MAX_REGISTERED_ROOMS",
    "MAX_ROOMS_PER_FOUNDER",
    "BaseRoomStore",
    "MemoryRoomStore",
    "SqliteRoomStore",
    "load_rooms",
]

#: The most registered rooms; `register` answers FULL past it.
MAX_REGISTERED_ROOMS: Final = 10_000
#: The most rooms one account may found; TOO_MANY_FOUNDED past it.
MAX_ROOMS_PER_FOUNDER: Final = 20

_log = Logger(namespace="twisted_chat.accounts.rooms")

#: What waits for a room's write: its newest state (None: dropped) and dones.
_Unsent = tuple["RegisteredRoom | None", "list[Callable[[bool], None]]"]

#: The columns of ``rooms`` (`twisted_chat.accounts.schema.SCHEMA_V3`), in order.
ROOM_COLUMNS: Final = (
    "key",
    "name",
    "founder",
    "created_at",
    "topic",
    "topic_by",
    "topic_at",
    "rules",
)
ROOMS_SELECT: Final = f"SELECT {', '.join(ROOM_COLUMNS)} FROM rooms"  # noqa: S608
ROOMS_UPSERT: Final = (
    f"INSERT OR REPLACE INTO rooms ({', '.join(ROOM_COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join('?' * len(ROOM_COLUMNS))})"
)
ROOMS_DELETE: Final = "DELETE FROM rooms WHERE key = ?"


class BaseRoomStore:
    """The dict, the bounds, the folding of writes; subclasses `_send`."""

    def __init__(
        self,
        rooms: dict[str, RegisteredRoom],
        *,
        max_rooms: int = MAX_REGISTERED_ROOMS,
        max_per_founder: int = MAX_ROOMS_PER_FOUNDER,
    ) -> None:
        self._rooms = rooms
        self._saved = dict(rooms)
        self._unsent: dict[str, _Unsent] = {}
        #: Guards ``_unsent``, which the writer thread takes from.
        self._lock = threading.Lock()
        self.max_rooms = max_rooms
        self.max_per_founder = max_per_founder
        self._closed = False

    def get(self, key: str) -> RegisteredRoom | None:
        """`RoomStore.get`."""
        return self._rooms.get(key)

    def __len__(self) -> int:
        return len(self._rooms)

    def all(self) -> list[RegisteredRoom]:
        """`RoomStore.all`."""
        return [self._rooms[key] for key in sorted(self._rooms)]

    def founded_by(self, account_key: str) -> list[RegisteredRoom]:
        """`RoomStore.founded_by` (a scan: it runs at a registration or an
        /unregister, not per line)."""
        found = [r for r in self._rooms.values() if r.founder == account_key]
        return sorted(found, key=lambda room: (room.created_at, room.key))

    def register(
        self, room: RegisteredRoom, done: Callable[[bool], None] | None = None
    ) -> RegisteredRoom | Refusal:
        """`RoomStore.register`."""
        if self._closed:
            return Refusal.CLOSED
        if room.key in self._rooms:
            return Refusal.EXISTS
        if len(self._rooms) >= self.max_rooms:
            return Refusal.FULL
        if len(self.founded_by(room.founder)) >= self.max_per_founder:
            return Refusal.TOO_MANY_FOUNDED
        self._change(room.key, room, done)
        return room

    def update(
        self,
        key: str,
        *,
        rules: Mapping[str, Any] | Keep = KEEP,
        topic: RoomTopic | Keep | None = KEEP,
        done: Callable[[bool], None] | None = None,
    ) -> RegisteredRoom | Refusal:
        """`RoomStore.update`."""
        before = self._existing(key)
        if isinstance(before, Refusal):
            return before
        changes: dict[str, Any] = {}
        if rules is not KEEP:
            changes["rules"] = rules
        if topic is not KEEP:
            changes["topic"] = topic
        # One evolve: it checks and copies the rules again (a JSON round trip).
        after = attrs.evolve(before, **changes)
        self._change(key, after, done)
        return after

    def drop(
        self, key: str, done: Callable[[bool], None] | None = None
    ) -> RegisteredRoom | Refusal:
        """`RoomStore.drop`."""
        before = self._existing(key)
        if isinstance(before, Refusal):
            return before
        self._change(key, None, done)
        return before

    def _existing(self, key: str) -> RegisteredRoom | Refusal:
        """The room stored as ``key``, or why a change to it is refused."""
        if self._closed:
            return Refusal.CLOSED
        return self._rooms.get(key) or Refusal.NO_SUCH_ROOM

    def close(self) -> None:
        """`RoomStore.close`: what is already sent is still written."""
        self._closed = True

    def _change(
        self,
        key: str,
        after: RegisteredRoom | None,
        done: Callable[[bool], None] | None,
    ) -> None:
        if after is None:
            del self._rooms[key]
        else:
            self._rooms[key] = after
        with self._lock:
            waiting = self._unsent.get(key)
            dones = [] if waiting is None else waiting[1]
            if done is not None:
                dones.append(done)
            self._unsent[key] = (after, dones)
        if waiting is None:
            self._send(key)

    def _send(self, key: str) -> None:
        """Arrange for `_take` then `_answer` (one call per `_send`)."""
        raise NotImplementedError

    def _take(self, key: str) -> _Unsent:
        """The state to write for ``key`` (any thread); later changes send again."""
        with self._lock:
            return self._unsent.pop(key)

    def _answer(
        self,
        key: str,
        written: RegisteredRoom | None,
        dones: list[Callable[[bool], None]],
        ok: bool,
    ) -> None:
        """On the reactor thread: keep or undo ``written``, then tell ``dones``."""
        if ok:
            if written is None:
                self._saved.pop(key, None)
            else:
                self._saved[key] = written
        else:
            with self._lock:
                newer = key in self._unsent
            if not newer and self._rooms.get(key) is written:
                saved = self._saved.get(key)
                if saved is None:
                    self._rooms.pop(key, None)
                else:
                    self._rooms[key] = saved
        for done in dones:
            try:
                done(ok)
            except Exception:
                _log.failure("in a registered room write callback")


class MemoryRoomStore(BaseRoomStore):
    """`RoomStore` in memory only; ``fail_writes`` makes every write fail."""

    def __init__(
        self,
        reactor: IReactorTime,
        *,
        max_rooms: int = MAX_REGISTERED_ROOMS,
        max_per_founder: int = MAX_ROOMS_PER_FOUNDER,
    ) -> None:
        super().__init__({}, max_rooms=max_rooms, max_per_founder=max_per_founder)
        self._reactor = reactor
        self.fail_writes = False

    def _send(self, key: str) -> None:
        self._reactor.callLater(0, self._write, key)

    def _write(self, key: str) -> None:
        written, dones = self._take(key)
        if self.fail_writes:
            _log.error("registered room write failed for {room}", room=key)
        self._answer(key, written, dones, not self.fail_writes)


class SqliteRoomStore(BaseRoomStore):
    """`RoomStore` whose writes go to the accounts file's writer thread.

    Made by `SqliteAccountStore.open` (as its ``rooms``), which loaded the
    rows; ``submit`` queues a job on that store's writer, in order with
    the account writes.  Its ``close`` is the account store's to call.
    """

    def __init__(
        self,
        rooms: dict[str, RegisteredRoom],
        submit: Callable[[Callable[[sqlite3.Connection], Callable[[], None]]], None],
        path: str,
        *,
        max_rooms: int = MAX_REGISTERED_ROOMS,
        max_per_founder: int = MAX_ROOMS_PER_FOUNDER,
    ) -> None:
        super().__init__(rooms, max_rooms=max_rooms, max_per_founder=max_per_founder)
        self._submit = submit
        self.path = path

    def _send(self, key: str) -> None:
        self._submit(lambda conn: self._run(conn, key))

    def _run(self, conn: sqlite3.Connection, key: str) -> Callable[[], None]:
        """On the writer thread: write the newest state of ``key``."""
        written, dones = self._take(key)
        ok = True
        try:
            with conn:
                if written is None:
                    conn.execute(ROOMS_DELETE, (key,))
                else:
                    conn.execute(ROOMS_UPSERT, room_row(written))
        except Exception as e:
            ok = False
            _log.error(
                "registered room write failed for {room} in {path}: {error}",
                room=key,
                path=self.path,
                error=" ".join(str(e).split()),
            )
        return lambda: self._answer(key, written, dones, ok)


def room_row(room: RegisteredRoom) -> tuple[object, ...]:
    """``room`` as a row of ``rooms``, in `ROOM_COLUMNS`' order."""
    topic = room.topic
    return (
        room.key,
        room.name,
        room.founder,
        room.created_at,
        None if topic is None else topic.text,
        None if topic is None else topic.set_by,
        None if topic is None else topic.set_at,
        encode_rules(room.rules),
    )


def room_from_row(row: Iterable[object], key: Callable[[str], str]) -> RegisteredRoom:
    """The room a row holds.

    :raises ValueError: the row is not one `room_row` makes (or its key
        is not its name's, under ``key``).
    """
    data = dict(zip(ROOM_COLUMNS, row, strict=True))
    text, set_by, set_at = data["topic"], data["topic_by"], data["topic_at"]
    if text is None and set_by is None and set_at is None:
        topic = None
    else:
        topic = RoomTopic(text, set_by, set_at)  # type: ignore[arg-type]
    raw = data["rules"]
    if not isinstance(raw, str):
        raise ValueError("its rules are not JSON text")
    try:
        rules = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"its rules are not JSON ({e})") from None
    if not isinstance(rules, dict):
        raise ValueError("its rules are not a JSON object")
    name = data["name"]
    if not isinstance(name, str) or key(name) != data["key"]:
        raise ValueError("its key is not its name's")
    return RegisteredRoom(
        data["key"],
        name,
        data["founder"],  # type: ignore[arg-type]
        data["created_at"],  # type: ignore[arg-type]
        topic,
        rules,
    )


def load_rooms(
    rows: Iterable[Iterable[object]], key: Callable[[str], str], path: str
) -> dict[str, RegisteredRoom]:
    """The rooms of ``rows`` by key; a row that cannot be read is logged, skipped."""
    rooms: dict[str, RegisteredRoom] = {}
    for row in rows:
        values = tuple(row)
        try:
            room = room_from_row(values, key)
        except (ValueError, TypeError) as e:
            _log.warn(
                "registered room {room!r} in {path} skipped, it cannot be read:"
                " {reason}; /room register it again, or restore a backup",
                room=values[1] if len(values) > 1 else None,
                path=path,
                reason=" ".join(str(e).split()),
            )
            continue
        rooms[room.key] = room
    return rooms
