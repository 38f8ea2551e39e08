"""Room history: a message store behind `IMessageStore` (issue 6).

The chat core keeps the last messages of every room and each room's topic
here, so that a person who joins a room sees what was said before and so
that topics survive a restart. Two stores fulfil the same contract (one
test suite, ``tests/test_history_store.py``, runs against both):

- `MemoryStore`: dicts and deques; for unit tests and ``--history-db
  :memory:``. Nothing survives a restart.
- `SqliteStore`: the default; one SQLite file in the state directory, in WAL
  mode.

Every call is made from the reactor thread and none of them waits for the
disk to be written: `IMessageStore.append` and `IMessageStore.set_topic` put
the change on a queue, and ONE writer thread commits the queue in batches,
at least every ``flush_interval`` seconds (0.1 by default). Reads
(`IMessageStore.recent`) are answered from a small per-room tail cache
that is filled from SQLite on first use and then kept up to date by
``append``, so a read never waits for a write either.

Crash bound: the writer commits what was queued at most ``flush_interval``
seconds (plus the time a commit takes) after it was queued. After ``kill
-9`` or a power cut, at most the messages of the last flush window are
missing; ``synchronous=NORMAL`` in WAL mode never corrupts the database, it
can only lose the last commits. A clean shutdown (`IMessageStore.stop`)
loses nothing.

Start-up checks: `SqliteStore.open` creates the directory if it is missing
and fails with `HistoryStoreError` when the path cannot be written, the
file is not an SQLite database, is damaged, belongs to another program or
was written by a newer version. That error is meant to stop ``twistd`` at
start-up with a sentence a person can act on, instead of failing again and
again in the middle of a chat. An error while the daemon runs (disk full,
I/O error) is logged with `twisted.logger` and the chat goes on; the
messages of the failed batch are then missing from the file but not from
the in-memory tails.

Backups: `SqliteStore.backup` copies the live database with SQLite's online
backup API, safe while the daemon writes to it.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import queue
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Final

from attrs import field, frozen
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import Interface, implementer

if TYPE_CHECKING:
    from collections.abc import Iterable

    from twisted.internet.interfaces import IReactorFromThreads

__all__ = [
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_MAX_AGE_DAYS",
    "DEFAULT_MAX_PER_ROOM",
    "MAX_RECENT",
    "SCHEMA_VERSION",
    "HistoryStoreError",
    "IMessageStore",
    "MemoryStore",
    "SqliteStore",
    "StoredMessage",
    "StoredTopic",
    "format_history_line",
]

DEFAULT_MAX_PER_ROOM: Final = 10_000
DEFAULT_MAX_AGE_DAYS: Final = 30
DEFAULT_FLUSH_INTERVAL: Final = 0.1

#: The largest ``limit`` `IMessageStore.recent` honours; larger ones are
#: clamped. It is also the size of `SqliteStore`'s per-room tail cache.
MAX_RECENT: Final = 200

#: Stored in ``PRAGMA user_version``; bump it and add a migration step in
#: `_migrate` when the schema changes.
SCHEMA_VERSION: Final = 1

_SECONDS_PER_DAY: Final = 86_400

#: How many rooms' tails `SqliteStore` keeps in memory (least recently read
#: rooms are dropped first and reloaded from disk when read again).
_MAX_CACHED_ROOMS: Final = 512

#: The most queued changes the writer commits in one transaction.
_MAX_BATCH: Final = 50_000

#: A failing disk fails every batch; log the first failure and then at most
#: one summary every this many seconds, so the log stays readable.
_ERROR_LOG_INTERVAL: Final = 60.0


class HistoryStoreError(Exception):
    """The history database cannot be used; raised at start-up only.

    The message names the path and the reason, so that whoever runs the
    daemon knows which file to fix, move away or restore from a backup.
    """


@frozen
class StoredMessage:
    """One room message or action (``/me``), as kept in the history.

    :param room_key: the normalised room key (NFKC + casefold), computed by
        the caller; rooms are kept apart by it.
    :param room: the room's display spelling, e.g. ``#Lobby``.
    :param sender: the sender's nickname as displayed.
    :param text: the message text, already cleaned by the core.
    :param action: true for ``/me`` actions.
    :param at: when it was said, in Unix seconds.
    """

    room_key: str
    room: str
    sender: str
    text: str
    action: bool
    at: float


#: One message as the core hands it over on the hot path: the fields of
#: `StoredMessage`, in its order, as a plain tuple (building a tuple costs
#: a twentieth of building the attrs value).
MessageRow = tuple[str, str, str, str, bool, float]


@frozen
class StoredTopic:
    """A room's topic, kept so that topics survive a restart.

    :param room_key: the normalised room key, as for `StoredMessage`.
    :param room: the room's display spelling.
    :param text: the topic text.
    :param set_by: the nickname that set it.
    :param set_at: when it was set, in Unix seconds.
    """

    room_key: str
    room: str
    text: str
    set_by: str
    set_at: float


class IMessageStore(Interface):
    """Where room history and topics are kept.

    Every method is called from the reactor thread. None of them waits for
    a disk write, and `append`/`set_topic` never raise.
    """

    # zope.interface methods are declared without ``self``.
    def start() -> None:
        """Start writing queued changes (starts the writer thread, if any)."""

    def stop() -> Deferred[None]:
        """Commit everything queued, release the store; fires when done.

        Calling it again returns a Deferred that fires with the first one.
        After `stop`, `append` and `set_topic` are ignored (and logged).
        """

    def flush() -> Deferred[None]:
        """Fire once everything queued before this call is committed."""

    def append(message: StoredMessage) -> None:
        """Queue a message; never blocks, never raises."""

    def append_rows(rows: list[MessageRow]) -> None:
        """
        Queue many messages, in order; never blocks, never raises.

        The chat core calls this once per reactor turn with what was said
        in it, so the cost of history is paid per turn, not per message.
        """

    def recent(room_key: str, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages of a room, oldest first.

        Messages still queued are included. ``limit`` is clamped to
        `MAX_RECENT`, and to ``max_per_room`` when that is set.
        """

    def set_topic(topic: StoredTopic) -> None:
        """Queue a room's topic, replacing the stored one; never raises."""

    def topics() -> dict[str, StoredTopic]:
        """All stored topics by room key (read at start-up)."""

    def prune(now: float) -> None:
        """Apply retention: at most ``max_per_room`` messages per room, none
        older than ``max_age_days`` before ``now``.

        Queued like a write and carried out by the writer, never on the
        reactor thread; `recent` reflects it at once.
        """


def _check_retention(max_per_room: int, max_age_days: float) -> None:
    if max_per_room < 0:
        raise ValueError(f"max_per_room must be 0 (no limit) or more: {max_per_room}")
    if max_age_days < 0:
        raise ValueError(f"max_age_days must be 0 (forever) or more: {max_age_days}")


def _age_cutoff(now: float, max_age_days: float) -> float | None:
    """The oldest ``at`` that retention keeps, or None to keep every age."""
    if max_age_days <= 0:
        return None
    return now - max_age_days * _SECONDS_PER_DAY


def _clamp_limit(limit: int, max_per_room: int) -> int:
    limit = min(limit, MAX_RECENT)
    if max_per_room > 0:
        limit = min(limit, max_per_room)
    return max(limit, 0)


@implementer(IMessageStore)
class MemoryStore:
    """`IMessageStore` in memory: for tests and ``--history-db :memory:``.

    Each room keeps at most ``max_per_room`` messages at all times (a
    bounded deque), so memory stays bounded between prunes too.
    """

    def __init__(
        self,
        *,
        max_per_room: int = DEFAULT_MAX_PER_ROOM,
        max_age_days: float = DEFAULT_MAX_AGE_DAYS,
    ) -> None:
        _check_retention(max_per_room, max_age_days)
        self.max_per_room = max_per_room
        self.max_age_days = max_age_days
        self._rooms: dict[str, deque[StoredMessage]] = {}
        self._topics: dict[str, StoredTopic] = {}

    def start(self) -> None:
        """`IMessageStore` API: nothing to start."""

    def stop(self) -> Deferred[None]:
        """`IMessageStore` API: nothing to commit."""
        return succeed(None)

    def flush(self) -> Deferred[None]:
        """`IMessageStore` API: everything is already "committed"."""
        return succeed(None)

    def append_rows(self, rows: list[MessageRow]) -> None:
        """`IMessageStore` API."""
        for row in rows:
            self.append(StoredMessage(*row))

    def append(self, message: StoredMessage) -> None:
        """`IMessageStore` API."""
        room = self._rooms.get(message.room_key)
        if room is None:
            room = self._rooms[message.room_key] = deque(
                maxlen=self.max_per_room or None
            )
        room.append(message)

    def recent(self, room_key: str, limit: int) -> list[StoredMessage]:
        """`IMessageStore` API."""
        limit = _clamp_limit(limit, self.max_per_room)
        room = self._rooms.get(room_key)
        if not room or limit == 0:
            return []
        return list(room)[-limit:]

    def set_topic(self, topic: StoredTopic) -> None:
        """`IMessageStore` API."""
        self._topics[topic.room_key] = topic

    def topics(self) -> dict[str, StoredTopic]:
        """`IMessageStore` API."""
        return dict(self._topics)

    def prune(self, now: float) -> None:
        """`IMessageStore` API: applied at once (there is no disk)."""
        cutoff = _age_cutoff(now, self.max_age_days)
        if cutoff is None:
            return  # the deques already enforce max_per_room
        for key in list(self._rooms):
            kept = [m for m in self._rooms[key] if m.at >= cutoff]
            if kept:
                self._rooms[key] = deque(kept, maxlen=self.max_per_room or None)
            else:
                del self._rooms[key]


# -- SQLite ----------------------------------------------------------------

_SCHEMA_V1: Final = (
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        room_key TEXT NOT NULL,
        room TEXT NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        action INTEGER NOT NULL,
        at REAL NOT NULL
    )
    """,
    "CREATE INDEX messages_room_id ON messages (room_key, id)",
    """
    CREATE TABLE topics (
        room_key TEXT PRIMARY KEY,
        room TEXT NOT NULL,
        text TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_at REAL NOT NULL
    )
    """,
)

_INSERT_MESSAGE: Final = (
    "INSERT INTO messages (id, room_key, room, sender, text, action, at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
#: Rows per multi-row INSERT: the writer binds a whole statement at once and
#: lets SQLite run it with the GIL released, instead of taking the GIL back
#: after every row (``executemany``), which made the reactor thread wait
#: for the GIL and switch threads far more often. 128 rows x 7 columns stays
#: under 999, the bound-parameter limit of SQLite before 3.32.
#: Rows per INSERT statement. Each statement is one sqlite3_step, and the
#: sqlite3 module hands the GIL back and forth around every step: with the
#: reactor busy in the other thread, each handoff stalls it, so fewer,
#: bigger statements keep history from slowing the fan-out. 1024 rows are
#: 7168 parameters, within SQLite's limit of 32766 since 3.32 (999 before).
_ROWS_PER_INSERT: Final = 1024 if sqlite3.sqlite_version_info >= (3, 32, 0) else 128


@functools.cache
def _insert_statement(rows: int) -> str:
    """``INSERT … VALUES`` for ``rows`` messages (cached by size)."""
    return (
        "INSERT INTO messages (id, room_key, room, sender, text, action, at) "
        "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)
    )


_UPSERT_TOPIC: Final = (
    "INSERT OR REPLACE INTO topics (room_key, room, text, set_by, set_at)"
    " VALUES (?, ?, ?, ?, ?)"
)
_SELECT_TAIL: Final = (
    "SELECT id, room_key, room, sender, text, action, at FROM messages"
    " WHERE room_key = ? ORDER BY id DESC LIMIT ?"
)

# An entry is a message as its row on disk: (id, room_key, room, sender,
# text, action, at). Ids are handed out on the reactor thread in append
# order, so the writer commits them in increasing order and a read can tell
# queued copies from committed ones. A plain tuple of strings and numbers,
# not a StoredMessage, because thousands of them are alive at a time (the
# queue, the tails): the garbage collector stops tracking such tuples at
# its first pass, while every StoredMessage kept would make each collection
# longer, on the reactor thread; and the writer inserts the tuple as it is.
_Entry = tuple[int, str, str, str, str, int, float]


@frozen
class _Prune:
    now: float


@frozen
class _Waiter:
    """Fire ``deferred`` (on the reactor thread) once the batch is done."""

    deferred: Deferred[None] = field(eq=False)
    stop: bool


_Op = list[_Entry] | StoredTopic | _Prune | _Waiter


def _entry_message(entry: _Entry) -> StoredMessage:
    _, room_key, room, sender, text, action, at = entry
    return StoredMessage(room_key, room, sender, text, bool(action), at)


def _insert_messages(conn: sqlite3.Connection, messages: list[_Entry]) -> None:
    """Insert ``messages`` in order, `_ROWS_PER_INSERT` to a statement."""
    flat = itertools.chain.from_iterable
    for start in range(0, len(messages), _ROWS_PER_INSERT):
        chunk = messages[start : start + _ROWS_PER_INSERT]
        conn.execute(_insert_statement(len(chunk)), tuple(flat(chunk)))


def _prepare(conn: sqlite3.Connection) -> None:
    """Set the file up for the writer; raise ValueError if it is unusable."""
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        raise ValueError(f"cannot switch it to WAL mode (got {mode!r})")
    conn.execute("PRAGMA synchronous = NORMAL")
    # Reads every page once: a damaged file is refused at start-up rather
    # than failing commits in the middle of a chat.
    (check,) = conn.execute("PRAGMA quick_check(1)").fetchone()
    if check != "ok":
        # quick_check reports on several lines; twistd shows one line.
        found = " ".join(str(check).split())
        raise ValueError(
            f"it is damaged ({found}); move it away or restore it from a backup"
        )
    _migrate(conn)


def _migrate(conn: sqlite3.Connection) -> None:
    """Create or upgrade the schema; raise ValueError for files not ours."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"it has schema version {version}, newer than this program's"
            f" ({SCHEMA_VERSION}); upgrade twisted-chat or restore a backup"
        )
    if version == 0:
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        ).fetchone()[0]
        if tables:
            raise ValueError(
                "it is an SQLite database of another program (it has tables"
                " but no twisted-chat schema version)"
            )
        # An explicit transaction: the sqlite3 module runs DDL in autocommit,
        # and a half-made schema would read as "another program's" next time.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA_V1:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


@implementer(IMessageStore)
class SqliteStore:
    """`IMessageStore` in an SQLite file, written by one writer thread.

    Build it with `SqliteStore.open`, which checks the file at start-up.

    Why a dedicated ``threading.Thread`` and not the reactor's threadpool
    (``deferToThread``): SQLite wants one writer and the batches must be
    committed in the order they were queued, which one thread gives for
    free; the reactor's pool has several threads, is shared with name
    resolution and other blocking work (a slow commit would delay them and
    vice versa), and is stopped early during reactor shutdown, while
    `stop` still has to commit. The thread owns the write connection; it
    is a daemon thread, so a process that exits without calling `stop`
    loses at most the last flush window, as after a crash, instead of
    hanging.

    Reads run on the reactor thread on a second connection (WAL lets it
    read while the writer commits): once per room, to fill that room's
    tail cache, which `append` then keeps current. That connection belongs
    to the thread that called `open`, so call `open` on the reactor thread
    (``makeService`` runs there).
    """

    _log = Logger()

    def __init__(
        self,
        path: str,
        *,
        reactor: IReactorFromThreads,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        topics: dict[str, StoredTopic],
        next_id: int,
        max_per_room: int,
        max_age_days: float,
        flush_interval: float,
    ) -> None:
        """Use `SqliteStore.open`; this only assembles checked parts."""
        self.path = path
        self.max_per_room = max_per_room
        self.max_age_days = max_age_days
        self.flush_interval = flush_interval
        self._reactor = reactor
        self._writer_conn: sqlite3.Connection | None = writer
        self._reader: sqlite3.Connection | None = reader
        self._topics = topics
        self._next_id = next_id
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        #: Set by `flush` and `stop` to end the writer's wait for a batch.
        self._hurry = threading.Event()
        self._thread: threading.Thread | None = None
        # Reactor-thread state (only the writer writes _committed_id; an
        # int assignment is atomic, and readers only compare with it).
        self._committed_id = next_id - 1
        self._pending: deque[_Entry] = deque()
        self._tails: OrderedDict[str, deque[_Entry]] = OrderedDict()
        self._age_cutoff: float | None = None
        self._stopping = False
        self._stopped: Deferred[None] | None = None
        self._stop_waiters: list[Deferred[None]] = []
        self._dropped_after_stop = 0
        # Writer-thread state.
        self._last_error_logged: float | None = None
        self._suppressed_errors = 0

    @classmethod
    def open(
        cls,
        path: str,
        *,
        reactor: IReactorFromThreads,
        max_per_room: int = DEFAULT_MAX_PER_ROOM,
        max_age_days: float = DEFAULT_MAX_AGE_DAYS,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    ) -> SqliteStore:
        """Open (or create) the history database at ``path`` and check it.

        Creates the parent directory if it is missing, sets WAL mode and
        ``synchronous=NORMAL``, creates or checks the schema (``PRAGMA
        user_version``) and runs ``PRAGMA quick_check``, so a damaged file
        is found now and not in the middle of a chat. Reads the topics.
        Call `start` before the reactor runs, or soon after.

        :param reactor: used to fire `stop`'s and `flush`'s Deferreds on the
            reactor thread (``callFromThread``).
        :param max_per_room: messages kept per room by `prune`; 0 = no limit.
        :param max_age_days: age limit applied by `prune`; 0 = forever.
        :param flush_interval: longest time, in seconds, a queued change
            waits before the writer commits it (the crash bound).
        :raises HistoryStoreError: the path cannot be used; the message
            says why.
        :raises ValueError: a negative limit or a non-positive interval.
        """
        _check_retention(max_per_room, max_age_days)
        if flush_interval <= 0:
            raise ValueError(f"flush_interval must be positive: {flush_interval}")
        prefix = f"{path} is not a valid history database"
        directory = Path(path).absolute().parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HistoryStoreError(
                f"{prefix}: cannot create directory {directory}: {e}"
            ) from e
        writer: sqlite3.Connection | None = None
        reader: sqlite3.Connection | None = None
        try:
            # The writer connection is built here so that every problem shows
            # now, then handed to the writer thread, the only one that uses
            # it afterwards (hence check_same_thread=False).
            writer = sqlite3.connect(path, check_same_thread=False)
            _prepare(writer)
            # Prove the file is writable now, not at the first message.
            writer.execute("BEGIN IMMEDIATE")
            writer.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            writer.commit()
            (max_id,) = writer.execute("SELECT max(id) FROM messages").fetchone()
            topics = {
                row[0]: StoredTopic(*row)
                for row in writer.execute(
                    "SELECT room_key, room, text, set_by, set_at FROM topics"
                )
            }
            # Autocommit reads: each SELECT sees the latest commit. A short
            # timeout, because this connection is used on the reactor thread.
            reader = sqlite3.connect(path, timeout=1.0, isolation_level=None)
            reader.execute("PRAGMA query_only = ON")
        except (sqlite3.Error, ValueError, OSError) as e:
            for conn in (reader, writer):
                if conn is not None:
                    conn.close()
            raise HistoryStoreError(f"{prefix}: {e}") from e
        return cls(
            path,
            reactor=reactor,
            writer=writer,
            reader=reader,
            topics=topics,
            next_id=(max_id or 0) + 1,
            max_per_room=max_per_room,
            max_age_days=max_age_days,
            flush_interval=flush_interval,
        )

    # -- IMessageStore, reactor thread --------------------------------------

    def start(self) -> None:
        """`IMessageStore` API: start the writer thread (once)."""
        if self._thread is not None or self._stopping:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"history-writer {self.path}", daemon=True
        )
        self._thread.start()

    def stop(self) -> Deferred[None]:
        """`IMessageStore` API: commit the queue, close the database.

        If the store was never started, the writer is started just to
        commit what was queued.
        """
        d: Deferred[None] = Deferred()
        if self._stopped is not None and self._stopped.called:
            d.callback(None)
            return d
        self._stop_waiters.append(d)
        if not self._stopping:
            self.start()
            self._stopping = True
            self._stopped = Deferred()
            self._stopped.addCallback(self._close_reader)
            self._queue.put(_Waiter(self._stopped, stop=True))
            self._hurry.set()
        return d

    def flush(self) -> Deferred[None]:
        """`IMessageStore` API; fires only once the store is started."""
        if self._stopped is not None:
            return self.stop()
        d: Deferred[None] = Deferred()
        self._queue.put(_Waiter(d, stop=False))
        self._hurry.set()
        return d

    def append(self, message: StoredMessage) -> None:
        """`IMessageStore` API: see `append_rows`."""
        self.append_rows(
            [
                (
                    message.room_key,
                    message.room,
                    message.sender,
                    message.text,
                    message.action,
                    message.at,
                )
            ]
        )

    def append_rows(self, rows: list[MessageRow]) -> None:
        """`IMessageStore` API: one queue put, plus the tail cache updates."""
        if self._stopping:
            self._dropped_after_stop += len(rows)
            if self._dropped_after_stop == len(rows):
                self._log.warn(
                    "history store {path} is stopped; messages are not kept",
                    path=self.path,
                )
            return
        try:
            first = self._next_id
            entries: list[_Entry] = [
                (first + offset, key, room, sender, text, int(action), at)
                for offset, (key, room, sender, text, action, at) in enumerate(rows)
            ]
            self._next_id = first + len(entries)
            self._trim_pending()
            self._pending.extend(entries)
            tails = self._tails
            if tails:
                for entry in entries:
                    tail = tails.get(entry[1])
                    if tail is not None:
                        tail.append(entry)
            self._queue.put(entries)
        except Exception:
            self._log.failure("while queueing messages for {path}", path=self.path)

    def recent(self, room_key: str, limit: int) -> list[StoredMessage]:
        """`IMessageStore` API.

        Reads SQLite (one indexed query) only the first time a room is
        read, or after it dropped out of the tail cache.
        """
        limit = _clamp_limit(limit, self.max_per_room)
        if limit == 0:
            return []
        tail = self._tails.get(room_key)
        if tail is None:
            tail = self._load_tail(room_key)
            if tail is None:  # the read failed; show what is queued
                tail = deque(e for e in self._pending if e[1] == room_key)
        else:
            self._tails.move_to_end(room_key)
        return [_entry_message(e) for e in list(tail)[-limit:]]

    def set_topic(self, topic: StoredTopic) -> None:
        """`IMessageStore` API."""
        if self._stopping:
            self._log.warn(
                "history store {path} is stopped; topic of {room} not kept",
                path=self.path,
                room=topic.room,
            )
            return
        self._topics[topic.room_key] = topic
        self._queue.put(topic)

    def topics(self) -> dict[str, StoredTopic]:
        """`IMessageStore` API: read at `open`, kept current by `set_topic`."""
        return dict(self._topics)

    def prune(self, now: float) -> None:
        """`IMessageStore` API: the deletes run on the writer thread.

        The tail caches are pruned at once with the same rules, so `recent`
        agrees with what the file will hold.
        """
        if self._stopping:
            return
        cutoff = _age_cutoff(now, self.max_age_days)
        if cutoff is not None and (
            self._age_cutoff is None or cutoff > self._age_cutoff
        ):
            self._age_cutoff = cutoff
        for key, tail in list(self._tails.items()):
            kept = self._retained(tail)
            if kept:
                self._tails[key] = deque(kept, maxlen=MAX_RECENT)
            else:
                del self._tails[key]
        self._queue.put(_Prune(now))

    # -- backups --------------------------------------------------------------

    def backup(self, dest_path: str) -> None:
        """Copy the committed history to ``dest_path`` (SQLite online backup).

        Safe while the daemon writes: SQLite copies a consistent snapshot.
        Changes still queued (at most one flush window) are not in the copy;
        wait for `flush` first to include them. This blocks the calling
        thread for the copy, so call it with ``deferToThread`` or from an
        admin tool, not on the reactor thread with a large history. It uses
        its own connections and may run in any thread. An existing file at
        ``dest_path`` is overwritten.

        :raises HistoryStoreError: the copy could not be made.
        """
        try:
            Path(dest_path).absolute().parent.mkdir(parents=True, exist_ok=True)
            source = sqlite3.connect(self.path)
            try:
                dest = sqlite3.connect(dest_path)
                try:
                    # Copy in steps so the writer is not locked out meanwhile.
                    source.backup(dest, pages=256)
                finally:
                    dest.close()
            finally:
                source.close()
        except (sqlite3.Error, OSError) as e:
            raise HistoryStoreError(
                f"cannot back up {self.path} to {dest_path}: {e}"
            ) from e

    # -- reactor-thread helpers -----------------------------------------------

    def _trim_pending(self) -> None:
        """Forget queued entries the writer has finished with."""
        committed = self._committed_id
        pending = self._pending
        while pending and pending[0][0] <= committed:
            pending.popleft()

    def _retained(self, entries: Iterable[_Entry]) -> list[_Entry]:
        """``entries`` (in id order) without what retention removes."""
        cutoff = self._age_cutoff
        kept = [e for e in entries if cutoff is None or e[6] >= cutoff]
        if self.max_per_room > 0:
            kept = kept[-self.max_per_room :]
        return kept

    def _load_tail(self, room_key: str) -> deque[_Entry] | None:
        """Fill a room's tail cache from disk plus the queue; None on error."""
        if self._reader is None:
            return None
        # Trim BEFORE reading: an entry dropped from _pending is committed,
        # so the SELECT below sees it. Entries committed between the SELECT
        # and the merge stay in _pending, and the merge removes duplicates.
        self._trim_pending()
        try:
            rows = self._reader.execute(_SELECT_TAIL, (room_key, MAX_RECENT)).fetchall()
        except sqlite3.Error:
            self._log.failure(
                "while reading history of {room_key} from {path}",
                room_key=room_key,
                path=self.path,
            )
            return None
        merged: dict[int, _Entry] = {row[0]: row for row in rows}
        merged.update((e[0], e) for e in self._pending if e[1] == room_key)
        ordered = [merged[mid] for mid in sorted(merged)]
        tail = deque(self._retained(ordered), maxlen=MAX_RECENT)
        self._tails[room_key] = tail
        if len(self._tails) > _MAX_CACHED_ROOMS:
            self._tails.popitem(last=False)
        return tail

    def _close_reader(self, result: None) -> None:
        """Last step of `stop`, on the reactor thread: release, then fire."""
        reader, self._reader = self._reader, None
        self._tails.clear()
        self._pending.clear()
        try:
            if reader is not None:
                reader.close()
        except sqlite3.Error:
            self._log.failure("while closing {path}", path=self.path)
        finally:
            waiters, self._stop_waiters = self._stop_waiters, []
            for d in waiters:
                d.callback(None)
        return result

    # -- writer thread --------------------------------------------------------

    def _run(self) -> None:
        """The writer loop: gather a batch for flush_interval, commit it.

        It sleeps through the window and then takes everything queued at
        once, instead of waking up for every message: one wake-up per
        window means the writer takes the GIL from the reactor thread a few
        times a second, not once per message, which kept fan-out measurably
        slower with history on (``bench/history_fanout.py``). `flush` and
        `stop` cut the window short through ``_hurry``.
        """
        while True:
            batch = [self._queue.get()]
            if not isinstance(batch[0], _Waiter):
                self._hurry.wait(self.flush_interval)
            self._hurry.clear()
            # Cleared before draining: a waiter queued before a later
            # _hurry.set() is either drained now or wakes the next window.
            get = self._queue.get_nowait
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(get())
                except queue.Empty:
                    break
            else:
                self._hurry.set()  # more is waiting: do not sleep next time
            try:
                stop = self._write_batch(batch)
            except Exception:
                # A bug, not a disk error: keep the thread alive, or stop()
                # would never fire.
                self._log.failure("in the history writer for {path}", path=self.path)
                stop = any(isinstance(op, _Waiter) and op.stop for op in batch)
                if stop:
                    self._close_writer()
            for op in batch:
                if isinstance(op, _Waiter):
                    self._reactor.callFromThread(op.deferred.callback, None)
            if stop:
                return

    def _write_batch(self, batch: list[_Op]) -> bool:
        """Commit one batch in order; True when it asked the writer to stop."""
        messages: list[_Entry] = []
        topics: list[StoredTopic] = []
        stop = False
        for op in batch:
            if isinstance(op, list):
                messages.extend(op)
            elif isinstance(op, StoredTopic):
                topics.append(op)
            elif isinstance(op, _Prune):
                # Retention applies to what was queued before it: commit that
                # first, then prune in a transaction of its own.
                self._commit(messages, topics)
                messages, topics = [], []
                self._prune_now(op.now)
            else:
                stop = stop or op.stop
        self._commit(messages, topics)
        if stop:
            self._close_writer()
        return stop

    def _commit(self, messages: list[_Entry], topics: list[StoredTopic]) -> None:
        conn = self._writer_conn
        if not messages and not topics:
            return
        try:
            if conn is None:
                raise sqlite3.ProgrammingError("the writer connection is closed")
            with conn:
                if messages:
                    _insert_messages(conn, messages)
                if topics:
                    conn.executemany(
                        _UPSERT_TOPIC,
                        [
                            (t.room_key, t.room, t.text, t.set_by, t.set_at)
                            for t in topics
                        ],
                    )
        except sqlite3.Error:
            self._log_write_error(
                "{count} messages and {topics} topics could not be saved to {path}",
                count=len(messages),
                topics=len(topics),
            )
        finally:
            if messages:
                self._committed_id = messages[-1][0]

    def _prune_now(self, now: float) -> None:
        conn = self._writer_conn
        if conn is None:
            return
        cutoff = _age_cutoff(now, self.max_age_days)
        try:
            with conn:
                if cutoff is not None:
                    conn.execute("DELETE FROM messages WHERE at < ?", (cutoff,))
                if self.max_per_room > 0:
                    rows = conn.execute("SELECT DISTINCT room_key FROM messages")
                    keys = [key for (key,) in rows.fetchall()]
                    for key in keys:
                        # The index on (room_key, id) finds the oldest id to
                        # keep without scanning the room.
                        conn.execute(
                            "DELETE FROM messages WHERE room_key = ?1 AND id < ("
                            " SELECT id FROM messages WHERE room_key = ?1"
                            " ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                            (key, self.max_per_room - 1),
                        )
        except sqlite3.Error:
            self._log_write_error("pruning {path} failed", count=0, topics=0)

    def _close_writer(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is None:
            return
        try:
            # Fold the WAL back into the main file here, on this thread, so
            # the file is complete on its own (e.g. for copying) after stop.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            self._log_write_error("closing {path} failed", count=0, topics=0)
        finally:
            conn.close()

    def _log_write_error(self, fmt: str, *, count: int, topics: int) -> None:
        """Log a failed write (with its traceback), at most once a minute."""
        now = time.monotonic()
        last = self._last_error_logged
        if last is not None and now - last < _ERROR_LOG_INTERVAL:
            self._suppressed_errors += 1
            return
        self._last_error_logged = now
        if self._suppressed_errors:
            fmt += " ({suppressed} similar errors since the last report)"
        self._log.failure(
            fmt,
            path=self.path,
            count=count,
            topics=topics,
            suppressed=self._suppressed_errors,
        )
        self._suppressed_errors = 0


def format_history_line(
    message: StoredMessage, now: float, tz: dt.tzinfo | None = None
) -> str:
    """Format a replayed message in PROTOCOL.md's shapes, with its time.

    ``[#room HH:MM] <nick> text``, or ``[#room HH:MM] * nick text`` for an
    action; a message from another day than ``now`` (in ``tz``, by default
    the local time zone) gets the date too: ``[#room 2026-11-27 14:03] ...``.
    A room spelled without its ``#`` gets one.

    :param now: the current Unix time; decides what "today" is.
    """
    when = dt.datetime.fromtimestamp(message.at, tz)
    today = dt.datetime.fromtimestamp(now, tz).date()
    stamp = when.strftime("%H:%M" if when.date() == today else "%Y-%m-%d %H:%M")
    room = message.room if message.room.startswith("#") else "#" + message.room
    if message.action:
        return f"[{room} {stamp}] * {message.sender} {message.text}"
    return f"[{room} {stamp}] <{message.sender}> {message.text}"
