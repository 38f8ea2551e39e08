"""The reactor's reads of the history file: tail caches and topics.

`twisted_chat.history.sqlite.SqliteStore` answers `recent` and `topic`
from memory where it can and from the file where it must, on the reactor
thread, without waiting for the writer: `Reads` keeps the newest turns of
the rooms read lately (`~twisted_chat.history.memory.Tail`, kept current
by every turn the store queues) and the topics set lately, and reads the
file through its own connection (WAL lets it read while the writer
commits) once per room, to fill a tail, and once per room made, for its
topic (a room found to have none is remembered as such, `_MAX_NO_TOPIC`).
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

from twisted_chat.core.records import StoredTopic
from twisted_chat.core.store import MAX_RECENT
from twisted_chat.history.files import connect_reader
from twisted_chat.history.memory import Tail, keep_newest
from twisted_chat.history.wire import Turn

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Reads"]

#: How many rooms' tails are kept in memory (least recently read rooms are
#: dropped first and reloaded from disk when read again).
_MAX_CACHED_ROOMS: Final = 512

#: How many topics set by this process are kept in memory for `topic`
#: (the rest are read from the file when a room is made).
_MAX_CACHED_TOPICS: Final = 1024

#: How many rooms found to have no topic are remembered as such.  A room
#: made again and again (a default room that empties between clients, in a
#: connect storm) otherwise reads the file each time; only this process
#: sets topics in its file, so a room without one has none until
#: `Reads.set_topic` (or another file, `Reads.reopen`).
_MAX_NO_TOPIC: Final = 4096

_SELECT_TOPIC: Final = (
    "SELECT room_key, room, text, set_by, set_at FROM topics WHERE room_key = ?"
)

#: A room's newest turns, newest first; MAX_RECENT of them always hold at
#: least MAX_RECENT messages.
_SELECT_TAIL: Final = (
    "SELECT first_id, room_key, room, at, lines, count FROM turns"
    " WHERE room_key = ? ORDER BY first_id DESC LIMIT ?"
)


class Reads:
    """The tails and topics served from memory, and the reader behind them.

    :param reader: the reader connection; it belongs to the thread that
        made it, the reactor's.
    :param failed: called inside ``except`` for a failed read, with a
        format and its fields, to log it (the read gives nothing, and the
        chat goes on).
    """

    def __init__(
        self,
        path: str,
        reader: sqlite3.Connection | None,
        failed: Callable[..., None],
    ) -> None:
        self.path = path
        self.reader = reader
        self._failed = failed
        #: The store adds each turn said to its room's tail, if cached here.
        self.tails: OrderedDict[str, Tail] = OrderedDict()
        self.topics: OrderedDict[str, StoredTopic] = OrderedDict()
        #: Rooms the file was read for and had no topic (`_MAX_NO_TOPIC`).
        self.no_topic: OrderedDict[str, bool] = OrderedDict()
        #: Nothing said before it is shown (the newest prune's cutoff).
        self.age_cutoff: float | None = None

    def cached(self, room_key: str) -> Tail | None:
        """A room's tail if it is cached (it becomes the newest read)."""
        tail = self.tails.get(room_key)
        if tail is not None:
            self.tails.move_to_end(room_key)
        return tail

    def load(self, room_key: str, queued: list[Turn]) -> Tail:
        """Read a room's tail from disk, add ``queued`` and cache it.

        ``queued`` is the room's turns not yet acknowledged by the writer;
        if the read fails, the tail holds them alone (and is not cached).
        """
        rows = self._read_tail(room_key)
        if rows is None:
            return Tail(MAX_RECENT, queued)
        # A queued turn may have been committed since the writer last
        # reported: it is on disk and in the queue, so take the disk's
        # turns only up to the first queued one.
        first_queued = queued[0].first_id if queued else None
        committed = [
            Turn(first_id, key, room, at, text.encode(), count)
            for first_id, key, room, at, text, count in reversed(rows)
            if first_queued is None or first_id < first_queued
        ]
        tail = Tail(MAX_RECENT, [*committed, *queued])
        if self.age_cutoff is not None:
            tail.drop_before(self.age_cutoff)
        keep_newest(self.tails, room_key, tail, _MAX_CACHED_ROOMS)
        return tail

    def _read_tail(self, room_key: str) -> list[tuple[Any, ...]] | None:
        if self.reader is None:
            return None
        try:
            rows = self.reader.execute(_SELECT_TAIL, (room_key, MAX_RECENT)).fetchall()
        except sqlite3.Error:
            self._failed(
                "while reading history of {room_key} from {path}",
                room_key=room_key,
                path=self.path,
            )
            return None
        return list(rows)

    def set_topic(self, topic: StoredTopic) -> None:
        """Keep ``topic`` among the topics set lately."""
        keep_newest(self.topics, topic.room_key, topic, _MAX_CACHED_TOPICS)
        self.no_topic.pop(topic.room_key, None)

    def topic(self, room_key: str) -> StoredTopic | None:
        """A room's topic: one indexed read, unless set here lately."""
        found = self.topics.get(room_key)
        if found is not None or self.reader is None:
            return found
        if room_key in self.no_topic:
            self.no_topic.move_to_end(room_key)
            return None
        try:
            row = self.reader.execute(_SELECT_TOPIC, (room_key,)).fetchone()
        except sqlite3.Error:
            self._failed(
                "while reading the topic of {room_key} from {path}",
                room_key=room_key,
                path=self.path,
            )
            return None
        if row is None:
            keep_newest(self.no_topic, room_key, True, _MAX_NO_TOPIC)
            return None
        return StoredTopic(*row)

    def prune(self, cutoff: float | None) -> None:
        """Forget what is older than ``cutoff`` (a later cutoff only).

        The tails are pruned at once by age (``recent`` clamps to
        ``max_per_room``), so that reads agree with what the file will hold;
        cached topics older than the cutoff are forgotten (the file decides
        about them).
        """
        if cutoff is not None and (self.age_cutoff is None or cutoff > self.age_cutoff):
            self.age_cutoff = cutoff
        if self.age_cutoff is None:
            return
        for key, tail in list(self.tails.items()):
            tail.drop_before(self.age_cutoff)
            if not tail.count:
                del self.tails[key]
        for key, topic in list(self.topics.items()):
            if topic.set_at < self.age_cutoff:
                del self.topics[key]

    def close(self) -> None:
        """Close the reader (until `reopen`); sqlite3.Error is logged."""
        self.no_topic.clear()  # the next file is read afresh
        reader, self.reader = self.reader, None
        if reader is not None:
            try:
                reader.close()
            except sqlite3.Error:
                self._failed("while closing {path}", path=self.path)

    def reopen(self) -> None:
        """Read the (new) file at the path from now on."""
        self.no_topic.clear()
        try:
            self.reader = connect_reader(self.path)
        except sqlite3.Error:
            self._failed("while opening {path} again", path=self.path)
