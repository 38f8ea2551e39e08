"""The store kept in memory, and what every store shares (issue 6).

`IHistoryStore` is what the daemon runs (`IMessageStore`, which the chat
core calls, plus start, flush, prune and stop). `MemoryStore` fulfils it
with dicts and deques (tests, ``--history-db :memory:``); the SQLite store
(`twisted_chat.history.sqlite`) shares its per-room tails (`Tail`, of
`twisted_chat.history.wire.Turn` records) and its limits.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Final, TypeVar

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from twisted_chat.core import lines
from twisted_chat.core.records import StoredMessage
from twisted_chat.core.store import MAX_RECENT, IMessageStore
from twisted_chat.history.schema import MAX_TOPICS, age_cutoff
from twisted_chat.history.wire import Turn

if TYPE_CHECKING:
    from collections.abc import Iterable

    from twisted_chat.core.records import StoredTopic

__all__ = [
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_MAX_AGE_DAYS",
    "DEFAULT_MAX_PER_ROOM",
    "HistoryStoreError",
    "IHistoryStore",
    "MemoryStore",
    "Tail",
    "check_retention",
    "clamp_limit",
    "keep_newest",
]

_Entry = TypeVar("_Entry")

DEFAULT_MAX_PER_ROOM: Final = 10_000
DEFAULT_MAX_AGE_DAYS: Final = 30
DEFAULT_FLUSH_INTERVAL: Final = 0.1


class HistoryStoreError(Exception):
    """The history database cannot be used; raised at start-up only.

    The message names the path and the reason, so that whoever runs the
    daemon knows which file to fix, move away or restore from a backup.
    """


class IHistoryStore(IMessageStore):
    """A history store as the daemon runs it: started, flushed, pruned, stopped.

    The core only calls `IMessageStore`; the service calls the rest.
    """

    # zope.interface methods are declared without ``self``.
    def start() -> None:
        """Start writing queued changes (starts the writer, if any)."""

    def stop() -> Deferred[None]:
        """Commit everything queued, release the store; fires when done.

        Calling it again returns a Deferred that fires with the first one.
        After `stop`, `append_lines` and `set_topic` are ignored (and logged).
        """

    def flush() -> Deferred[None]:
        """Fire once everything queued before this call is committed."""

    def prune(now: float) -> None:
        """Apply retention: at most ``max_per_room`` messages per room, none
        older than ``max_age_days`` before ``now``.

        Queued like a write and carried out by the writer, never on the
        reactor thread; `recent` reflects it at once.
        """


def check_retention(max_per_room: int, max_age_days: float) -> None:
    """Refuse negative limits (ValueError)."""
    if max_per_room < 0:
        raise ValueError(f"max_per_room must be 0 (no limit) or more: {max_per_room}")
    if max_age_days < 0:
        raise ValueError(f"max_age_days must be 0 (forever) or more: {max_age_days}")


def clamp_limit(limit: int, max_per_room: int) -> int:
    """``recent``'s limit, within `MAX_RECENT` and ``max_per_room``."""
    limit = min(limit, MAX_RECENT)
    if max_per_room > 0:
        limit = min(limit, max_per_room)
    return max(limit, 0)


def keep_newest(
    entries: OrderedDict[str, _Entry], key: str, entry: _Entry, cap: int
) -> None:
    """Store ``entry`` as the newest, and forget the oldest past ``cap``.

    The one bounded cache of this package: topics kept in memory, and the
    SQLite store's cached tails and topics.
    """
    entries[key] = entry
    entries.move_to_end(key)
    if len(entries) > cap:
        entries.popitem(last=False)


class Tail:
    """The newest messages of one room, kept as the turns they were said in.

    Adding a turn costs the same for one message as for a thousand; lines
    are taken apart only when somebody reads them (`newest`). Whole turns
    are kept: at least ``keep`` messages once that many were said, and
    fewer than ``keep`` plus one turn.
    """

    __slots__ = ("count", "keep", "turns")

    def __init__(self, keep: int | None, turns: Iterable[Turn] = ()) -> None:
        self.keep = keep
        self.turns: deque[Turn] = deque()
        self.count = 0
        for turn in turns:
            self.add(turn)

    def add(self, turn: Turn) -> None:
        """Keep ``turn``, forgetting the oldest turns no longer needed."""
        turns = self.turns
        turns.append(turn)
        self.count += turn.line_count
        keep = self.keep
        if keep is not None:
            while self.count - turns[0].line_count >= keep:
                self.count -= turns.popleft().line_count

    def newest(self, limit: int, cutoff: float | None = None) -> list[StoredMessage]:
        """The last ``limit`` messages said at or after ``cutoff``, oldest first."""
        if limit <= 0:
            return []
        found: list[list[StoredMessage]] = []
        total = 0
        for _, room_key, room, at, data, _ in reversed(self.turns):
            if cutoff is not None and at < cutoff:
                continue
            found.append(
                [
                    StoredMessage(room_key, room, nick, text, action, at)
                    for nick, text, action in lines.parse_room_lines(room, data)
                ]
            )
            total += len(found[-1])
            if total >= limit:
                break
        messages = [m for turn in reversed(found) for m in turn]
        return messages[-limit:]

    def drop_before(self, cutoff: float) -> None:
        """Forget the turns said before ``cutoff``."""
        kept = [turn for turn in self.turns if turn.at >= cutoff]
        self.turns = deque(kept)
        self.count = sum(turn.line_count for turn in kept)


@implementer(IHistoryStore)
class MemoryStore:
    """`IMessageStore` in memory: for tests and ``--history-db :memory:``.

    Each room keeps at most ``max_per_room`` messages (plus the rest of
    the oldest turn) at all times, so memory stays bounded between prunes.
    """

    def __init__(
        self,
        *,
        max_per_room: int = DEFAULT_MAX_PER_ROOM,
        max_age_days: float = DEFAULT_MAX_AGE_DAYS,
    ) -> None:
        check_retention(max_per_room, max_age_days)
        self.max_per_room = max_per_room
        self.max_age_days = max_age_days
        self._rooms: dict[str, Tail] = {}
        #: Oldest set first; at most MAX_TOPICS.
        self._topics: OrderedDict[str, StoredTopic] = OrderedDict()

    def start(self) -> None:
        """`IMessageStore` API: nothing to start."""

    def stop(self) -> Deferred[None]:
        """`IMessageStore` API: nothing to commit."""
        return succeed(None)

    def flush(self) -> Deferred[None]:
        """`IMessageStore` API: everything is already "committed"."""
        return succeed(None)

    def append_lines(self, room_key: str, room: str, at: float, data: bytes) -> None:
        """`IMessageStore` API."""
        tail = self._rooms.get(room_key)
        if tail is None:
            tail = self._rooms[room_key] = Tail(self.max_per_room or None)
        tail.add(Turn(0, room_key, room, at, data, data.count(b"\n")))

    def recent(self, room_key: str, limit: int) -> list[StoredMessage]:
        """`IMessageStore` API."""
        tail = self._rooms.get(room_key)
        if tail is None:
            return []
        return tail.newest(clamp_limit(limit, self.max_per_room))

    def set_topic(self, topic: StoredTopic) -> None:
        """`IMessageStore` API."""
        keep_newest(self._topics, topic.room_key, topic, MAX_TOPICS)

    def topic(self, room_key: str) -> StoredTopic | None:
        """`IMessageStore` API."""
        return self._topics.get(room_key)

    def trouble(self) -> str | None:
        """`IMessageStore` API: memory never fails to keep history."""
        return None

    def backlog(self) -> int:
        """`IMessageStore` API: nothing waits to be written."""
        return 0

    def prune(self, now: float) -> None:
        """`IMessageStore` API: applied at once (there is no disk)."""
        cutoff = age_cutoff(now, self.max_age_days)
        if cutoff is None:
            return  # the tails already enforce max_per_room
        for key, tail in list(self._rooms.items()):
            tail.drop_before(cutoff)
            if not tail.count:
                del self._rooms[key]
        for key, topic in list(self._topics.items()):
            if topic.set_at < cutoff and key not in self._rooms:
                del self._topics[key]
