"""Room history: a message store behind `IMessageStore` (issue 6).

The chat core keeps the last messages of every room and each room's topic
here, so that a person who joins a room sees what was said before and so
that topics survive a restart. Two stores fulfil the same contract (one
test suite, ``tests/test_history_store.py``, runs against both):

- `MemoryStore`: dicts and deques; for unit tests and ``--history-db
  :memory:``. Nothing survives a restart.
- `SqliteStore`: the default; one SQLite file in the state directory, in WAL
  mode.

Every call is made from the reactor thread and none of them waits for
the disk to be written: `IMessageStore.append` and `IMessageStore.set_topic`
hand the change to ONE writer, which commits in batches, at least every
``flush_interval`` seconds (0.1 by default). The writer is either a thread
of the daemon (`SqliteStore`, ``writer="thread"``) or a child process
(`ProcessSqliteStore`, ``writer="process"``, see
`twisted_chat.history_writer`); the process keeps the writer's work off
the reactor's GIL. Reads (`IMessageStore.recent`) are answered from a small
per-room tail cache that is filled from SQLite on first use and then kept
up to date by ``append``, so a read never waits for a write either.

Crash bound: the writer commits what was queued at most ``flush_interval``
seconds (plus the time a commit takes) after it was queued. After ``kill
-9`` or a power cut, at most the messages of the last flush window are
missing; ``synchronous=NORMAL`` in WAL mode never corrupts the database, it
can only lose the last commits. With the writer process, ``kill -9`` of
the daemon alone loses even less: the child commits everything the daemon
had already written to its pipe (all but the current reactor turn). A
clean shutdown (`IMessageStore.stop`) loses nothing.

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

import os
import queue
import sqlite3
import sys
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from attrs import field, frozen
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from twisted_chat.history_writer import (
    ERROR_LOG_INTERVAL,
    MAX_BATCH,
    SCHEMA_VERSION,
    FrameDecoder,
    age_cutoff,
    checkpoint_and_close,
    commit,
    encode_frame,
    prepare,
    prune,
)
from twisted_chat.records import (
    MessageRow,
    StoredMessage,
    StoredTopic,
    format_history_line,
)
from twisted_chat.throttle import LogThrottle

if TYPE_CHECKING:
    from collections.abc import Iterable

    from twisted.internet.interfaces import (
        IDelayedCall,
        IProcessTransport,
        IReactorFromThreads,
    )

__all__ = [
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_MAX_AGE_DAYS",
    "DEFAULT_MAX_PER_ROOM",
    "MAX_RECENT",
    "SCHEMA_VERSION",
    "HistoryStoreError",
    "IMessageStore",
    "MemoryStore",
    "MessageRow",
    "ProcessSqliteStore",
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

#: How many rooms' tails `SqliteStore` keeps in memory (least recently read
#: rooms are dropped first and reloaded from disk when read again).
_MAX_CACHED_ROOMS: Final = 512


class HistoryStoreError(Exception):
    """The history database cannot be used; raised at start-up only.

    The message names the path and the reason, so that whoever runs the
    daemon knows which file to fix, move away or restore from a backup.
    """


class IMessageStore(Interface):
    """Where room history and topics are kept.

    Every method is called from the reactor thread. None of them waits for
    a disk write, and `append`/`set_topic` never raise.
    """

    # zope.interface methods are declared without ``self``.
    def start() -> None:
        """Start writing queued changes (starts the writer, if any)."""

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
        cutoff = age_cutoff(now, self.max_age_days)
        if cutoff is None:
            return  # the deques already enforce max_per_room
        for key in list(self._rooms):
            kept = [m for m in self._rooms[key] if m.at >= cutoff]
            if kept:
                self._rooms[key] = deque(kept, maxlen=self.max_per_room or None)
            else:
                del self._rooms[key]


# -- SQLite ----------------------------------------------------------------

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

#: How long `ProcessSqliteStore` gathers changes before it writes them to
#: the writer's pipe, in seconds: after ``kill -9`` of the daemon, at most
#: this much (plus the current turn) is lost, not a whole flush window.
_PIPE_DELAY: Final = 0.01

#: Environment variables for the daemon alone (systemd's socket activation
#: and readiness protocol); the writer must not act on them.
_DAEMON_ONLY_ENV: Final = (
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
)

#: Who commits: a thread of the daemon, or a child process.
WriterKind = Literal["thread", "process"]


def _entry_message(entry: _Entry) -> StoredMessage:
    _, room_key, room, sender, text, action, at = entry
    return StoredMessage(room_key, room, sender, text, bool(action), at)


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
        self._errors = LogThrottle(ERROR_LOG_INTERVAL)

    @classmethod
    def open(
        cls,
        path: str,
        *,
        reactor: IReactorFromThreads,
        max_per_room: int = DEFAULT_MAX_PER_ROOM,
        max_age_days: float = DEFAULT_MAX_AGE_DAYS,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        writer: WriterKind = "thread",
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
        :param writer: ``"thread"`` commits on a thread of this process
            (`SqliteStore`); ``"process"`` in a child process
            (`ProcessSqliteStore`), or on a thread if ``reactor`` cannot
            start processes.
        :raises HistoryStoreError: the path cannot be used; the message
            says why.
        :raises ValueError: a negative limit or a non-positive interval.
        """
        _check_retention(max_per_room, max_age_days)
        if writer not in ("thread", "process"):
            raise ValueError(f"writer must be 'thread' or 'process': {writer!r}")
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
        write_conn: sqlite3.Connection | None = None
        reader: sqlite3.Connection | None = None
        try:
            # The writer connection is built here so that every problem shows
            # now, then handed to the writer thread, the only one that uses
            # it afterwards (hence check_same_thread=False).
            write_conn = sqlite3.connect(path, check_same_thread=False)
            prepare(write_conn)
            # Prove the file is writable now, not at the first message.
            write_conn.execute("BEGIN IMMEDIATE")
            write_conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            write_conn.commit()
            (max_id,) = write_conn.execute("SELECT max(id) FROM messages").fetchone()
            topics = {
                row[0]: StoredTopic(*row)
                for row in write_conn.execute(
                    "SELECT room_key, room, text, set_by, set_at FROM topics"
                )
            }
            # Autocommit reads: each SELECT sees the latest commit. A short
            # timeout, because this connection is used on the reactor thread.
            reader = sqlite3.connect(path, timeout=1.0, isolation_level=None)
            reader.execute("PRAGMA query_only = ON")
        except (sqlite3.Error, ValueError, OSError) as e:
            for conn in (reader, write_conn):
                if conn is not None:
                    conn.close()
            raise HistoryStoreError(f"{prefix}: {e}") from e
        store_class: type[SqliteStore] = SqliteStore
        if writer == "process":
            if IReactorProcess.providedBy(reactor):
                store_class = ProcessSqliteStore
            else:
                cls._log.info(
                    "the reactor cannot start processes; history of {path} is"
                    " written by a thread",
                    path=path,
                )
        return store_class(
            path,
            reactor=reactor,
            writer=write_conn,
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
            self._put_waiter(_Waiter(self._stopped, stop=True))
        return d

    def flush(self) -> Deferred[None]:
        """`IMessageStore` API; fires only once the store is started."""
        if self._stopped is not None:
            return self.stop()
        d: Deferred[None] = Deferred()
        self._put_waiter(_Waiter(d, stop=False))
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
            self._put(entries)
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
        self._put(topic)

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
        cutoff = age_cutoff(now, self.max_age_days)
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
        self._put(_Prune(now))

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

    def _put(self, op: list[_Entry] | StoredTopic | _Prune) -> None:
        """Hand a change to the writer (here: the writer thread's queue)."""
        self._queue.put(op)

    def _put_waiter(self, waiter: _Waiter) -> None:
        """Queue a flush or stop marker and cut the writer's window short."""
        self._queue.put(waiter)
        self._hurry.set()

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
            while len(batch) < MAX_BATCH:
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
            commit(
                conn,
                messages,
                [(t.room_key, t.room, t.text, t.set_by, t.set_at) for t in topics],
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
        try:
            prune(conn, now, self.max_per_room, self.max_age_days)
        except sqlite3.Error:
            self._log_write_error("pruning {path} failed", count=0, topics=0)

    def _close_writer(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is None:
            return
        try:
            # Fold the WAL back into the main file here, on this thread, so
            # the file is complete on its own (e.g. for copying) after stop.
            checkpoint_and_close(conn)
        except sqlite3.Error:
            self._log_write_error("closing {path} failed", count=0, topics=0)

    def _log_write_error(self, fmt: str, *, count: int, topics: int) -> None:
        """Log a failed write (with its traceback), at most once a minute."""
        held = self._errors.report(time.monotonic())
        if held is None:
            return
        if held:
            fmt += " ({suppressed} similar errors since the last report)"
        self._log.failure(
            fmt, path=self.path, count=count, topics=topics, suppressed=held
        )


class _WriterFailed(Exception):
    """A commit failed in the writer process; the text is its traceback."""


class _WriterProtocol(ProcessProtocol):
    """The daemon's end of the pipes to the writer process.

    Decodes the writer's reports (stdout) and log lines (stderr) and hands
    them to the store; see `twisted_chat.history_writer` for the frames.
    """

    def __init__(self, store: ProcessSqliteStore) -> None:
        self._store = store
        self._decoder = FrameDecoder()
        self._stderr = b""

    def childDataReceived(self, child_fd: int, data: bytes) -> None:
        """`IProcessProtocol` API: a report (fd 1) or a log line (fd 2)."""
        if child_fd == 1:
            try:
                values = self._decoder.feed(data)
            except Exception:
                self._store._log.failure(
                    "garbled report from the history writer of {path}",
                    path=self._store.path,
                )
                return
            for value in values:
                self._store._writer_said(value)
            return
        lines = (self._stderr + data).split(b"\n")
        self._stderr = lines.pop()
        for line in lines:
            self._store._writer_stderr(line)

    def processEnded(self, reason: Failure) -> None:
        """`IProcessProtocol` API: the writer has exited."""
        if self._stderr:
            self._store._writer_stderr(self._stderr)
            self._stderr = b""
        self._store._writer_ended(reason)


class ProcessSqliteStore(SqliteStore):
    """`SqliteStore` whose writes are committed by a child process.

    Build it with ``SqliteStore.open(path, reactor=..., writer="process")``.
    Everything on the reactor thread is as in `SqliteStore` (the checks at
    open, the reader connection, the tail caches); only the writer moves
    to ``python -m twisted_chat.history_writer``, started by `start` with
    ``reactor.spawnProcess``. The changes of up to ``_PIPE_DELAY`` (10 ms)
    become one `marshal` frame on the child's stdin; `flush` and `stop`
    send numbered markers at once, which the child acknowledges on stdout
    after committing what came before them, and each acknowledgement
    also says up to which message id the child is done, which is what lets
    the reactor side forget queued copies. The writer thread of
    `SqliteStore` took the GIL from the reactor for every statement; a
    process never does.

    Crash bound: after ``kill -9`` of the daemon the child reads to the end
    of the pipe and commits it, so only changes the daemon had not yet
    written to the pipe are lost (the daemon gathers them for at most
    ``_PIPE_DELAY``, 10 ms, plus the current reactor turn); a power cut
    loses at most the last flush window, as with the thread.

    If the writer process dies on its own (killed, or the file vanished),
    it is logged once and the chat goes on without saving history: later
    changes are kept only in the tails of rooms already read (as the
    messages of a failed commit are), and `flush` and `stop` fire at once.
    It is not restarted: a writer that dies will most likely die again,
    and the next daemon start checks the file and says why.
    """

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
        """Use `SqliteStore.open`; the checked writer connection is closed."""
        super().__init__(
            path,
            reactor=reactor,
            writer=writer,
            reader=reader,
            topics=topics,
            next_id=next_id,
            max_per_room=max_per_room,
            max_age_days=max_age_days,
            flush_interval=flush_interval,
        )
        # The child opens its own; this one only proved the file usable.
        self._writer_conn = None
        writer.close()
        self._started = False
        self._process: IProcessTransport | None = None
        #: Ops gathered for the next frame (see `_send`).
        self._outbox: list[tuple[Any, ...]] = []
        self._drain_call: IDelayedCall | None = None
        self._seq = 0
        self._flush_waiters: dict[int, Deferred[None]] = {}
        self._stop_marker: Deferred[None] | None = None
        #: The child has exited (or could not be started): nothing is saved.
        self._writer_gone = False

    def start(self) -> None:
        """`IMessageStore` API: spawn the writer process (once)."""
        if self._started or self._stopping:
            return
        self._started = True
        package_root = str(Path(__file__).resolve().parent.parent)
        env = {k: v for k, v in os.environ.items() if k not in _DAEMON_ONLY_ENV}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        args = [
            sys.executable,
            "-m",
            "twisted_chat.history_writer",
            self.path,
            *("--flush-interval", repr(self.flush_interval)),
            *("--max-per-room", str(self.max_per_room)),
            *("--max-age-days", repr(self.max_age_days)),
        ]
        try:
            self._process = IReactorProcess(self._reactor).spawnProcess(
                _WriterProtocol(self), sys.executable, args, env=env
            )
        except Exception:
            self._log.failure(
                "cannot start the history writer for {path}; history is not saved",
                path=self.path,
            )
            self._writer_ended(None)
            return
        self._drain()

    # -- the pipe to the writer -------------------------------------------------

    def _put(self, op: list[_Entry] | StoredTopic | _Prune) -> None:
        """Send a change to the writer process (or hold it until `start`)."""
        if isinstance(op, list):
            if not op:
                return
            if self._writer_gone:
                self._committed_id = op[-1][0]
                self._trim_pending()
                return
            self._send(("m", op))
        elif isinstance(op, StoredTopic):
            self._send(("t", (op.room_key, op.room, op.text, op.set_by, op.set_at)))
        else:
            self._send(("p", op.now))

    def _put_waiter(self, waiter: _Waiter) -> None:
        """Send a numbered marker; its acknowledgement fires the Deferred."""
        if self._writer_gone:
            waiter.deferred.callback(None)
            return
        self._seq += 1
        if waiter.stop:
            # Fired when the child has exited, i.e. the file is closed.
            self._stop_marker = waiter.deferred
            self._send(("s", self._seq))
            self._drain()
            if self._process is not None:
                self._process.closeStdin()
        else:
            self._flush_waiters[self._seq] = waiter.deferred
            self._send(("f", self._seq))
            self._drain()

    def _send(self, op: tuple[Any, ...]) -> None:
        """Add ``op`` to the next frame; it leaves within `_PIPE_DELAY`.

        Gathering ops for a few milliseconds costs the reactor one list
        extend per turn instead of a `marshal` call, a pipe write and two
        poller updates (start and stop writing) per turn.
        """
        if self._writer_gone:
            return
        outbox = self._outbox
        if op[0] == "m":
            if outbox and outbox[-1][0] == "m":
                outbox[-1][1].extend(op[1])
                return
            op = ("m", list(op[1]))  # extended later: not the caller's list
        outbox.append(op)
        if self._drain_call is None and self._process is not None:
            self._drain_call = IReactorTime(self._reactor).callLater(
                _PIPE_DELAY, self._drain
            )

    def _drain(self) -> None:
        """Write the gathered ops to the child as one frame."""
        call, self._drain_call = self._drain_call, None
        if call is not None and call.active():
            call.cancel()
        if self._process is None or not self._outbox:
            return
        ops, self._outbox = self._outbox, []
        self._process.write(encode_frame(ops))

    # -- reports from the writer ------------------------------------------------

    def _writer_said(self, value: tuple[Any, ...]) -> None:
        """Act on one frame from the writer (see `twisted_chat.history_writer`)."""
        if value[0] == "c":
            _, last_id, seq = value
            self._committed_id = max(self._committed_id, last_id)
            done = [s for s in self._flush_waiters if s <= seq]
            for s in done:
                self._flush_waiters.pop(s).callback(None)
        elif value[0] == "e":
            _, problem, details = value
            self._log.failure(
                "{problem}",
                failure=Failure(_WriterFailed(details)),
                problem=problem,
                path=self.path,
            )

    def _writer_stderr(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            self._log.warn(
                "history writer for {path}: {line}", path=self.path, line=text
            )

    def _writer_ended(self, reason: Failure | None) -> None:
        """The child exited: expected after `stop`, logged otherwise."""
        self._writer_gone = True
        self._process = None
        self._outbox.clear()
        call, self._drain_call = self._drain_call, None
        if call is not None and call.active():
            call.cancel()
        clean = reason is not None and reason.check(ProcessDone) is not None
        if not (self._stopping and clean):
            self._log.error(
                "the history writer for {path} ended ({why}); history is no"
                " longer saved",
                path=self.path,
                why=reason.getErrorMessage() if reason is not None else "not started",
            )
        # Nothing queued will be committed now: stop waiting for it.
        self._committed_id = self._next_id - 1
        waiters = list(self._flush_waiters.values())
        self._flush_waiters.clear()
        for d in waiters:
            d.callback(None)
        marker, self._stop_marker = self._stop_marker, None
        if marker is not None:
            marker.callback(None)
