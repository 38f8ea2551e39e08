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
the disk to be written: `IMessageStore.append_lines` and
`IMessageStore.set_topic` hand the change to ONE writer, which commits in
batches, at least every ``flush_interval`` seconds (0.1 by default). The
writer is either a thread of the daemon (`SqliteStore`,
``writer="thread"``) or a child process (`ProcessSqliteStore`,
``writer="process"``, see `twisted_chat.history_writer`); the process
keeps the writer's work off the reactor's GIL. Reads
(`IMessageStore.recent`) are answered from a small per-room tail cache
that is filled from SQLite on first use and then kept up to date by
``append_lines``, so a read never waits for a write either.

What the core hands over per reactor turn and room is the bytes its
members were sent, not a record per message: the fan-out made them
already, so history adds no work per message on the reactor thread. The
writer stores them as they are, a row per turn, and a read takes apart
the few turns it shows (`twisted_chat.lines.parse_room_lines`).

Crash bound: the writer commits what was queued at most ``flush_interval``
seconds (plus the time a commit takes) after it was queued. After ``kill
-9`` or a power cut, at most the messages of the last flush window are
missing; ``synchronous=NORMAL`` in WAL mode never corrupts the database, it
can only lose the last commits. With the writer process, ``kill -9`` of
the daemon alone loses even less: the child commits everything the daemon
had already written to its pipe (all but the current reactor turn). The
writer process runs at a lower CPU priority, so while every core is busy
it can fall behind (by about half a second after a flat-out burst on two
cores, ``bench/history_fanout.py``); what it has not read by then is lost
with the daemon too, and past `SqliteStore.backlog_warning` messages the
lag is logged. A clean shutdown (`IMessageStore.stop`) loses nothing.

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

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from twisted_chat import lines
from twisted_chat.history_writer import (
    ERROR_LOG_INTERVAL,
    MAX_BATCH,
    SCHEMA_VERSION,
    FrameDecoder,
    WriterCore,
    age_cutoff,
    encode_frame,
    prepare,
)
from twisted_chat.records import StoredMessage, StoredTopic, format_history_line
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
    a disk write, and `append`/`append_lines`/`set_topic` never raise.
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
        """Queue one message; never blocks, never raises.

        The sender must be a valid nickname and the text a cleaned line, as
        the chat core makes them (see `append_lines`).
        """

    def append_lines(room_key: str, room: str, at: float, data: bytes) -> None:
        """
        Queue what was said in a room in one reactor turn; never raises.

        ``data`` is the room's lines exactly as its members were sent them
        (`twisted_chat.lines.room_message` and ``room_action``, one after
        the other), all said at ``at``. The chat core already made these
        bytes for the fan-out, so history costs it one call per room and
        turn and nothing per message; the lines are taken apart into
        sender and text only where they are read back.
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


def _message_lines(message: StoredMessage) -> bytes:
    """``message`` as the line its room's members were sent."""
    shape = lines.room_action if message.action else lines.room_message
    return shape(message.room, message.sender, message.text)


# What a room said in one reactor turn: (first_id, room_key, room, at, data,
# count), with ``data`` as `IMessageStore.append_lines` takes it and its
# ``count`` lines numbered first_id, first_id + 1, ... A plain tuple, as
# thousands of them can be alive at a time (queued, in the tails): the
# garbage collector stops tracking a tuple of strings and numbers at its
# first pass, so they do not make the reactor's collections longer.
_Said = tuple[int, str, str, float, bytes, int]


def _said(first_id: int, room_key: str, room: str, at: float, data: bytes) -> _Said:
    return (first_id, room_key, room, at, data, data.count(b"\n"))


class _Tail:
    """The newest messages of one room, kept as the turns they were said in.

    Adding a turn costs the same for one message as for a thousand; lines
    are taken apart only when somebody reads them (`newest`). Whole turns
    are kept: at least ``keep`` messages once that many were said, and
    fewer than ``keep`` plus one turn.
    """

    __slots__ = ("count", "keep", "turns")

    def __init__(self, keep: int | None, turns: Iterable[_Said] = ()) -> None:
        self.keep = keep
        self.turns: deque[_Said] = deque()
        self.count = 0
        for said in turns:
            self.add(said)

    def add(self, said: _Said) -> None:
        """Keep ``said``, forgetting the oldest turns no longer needed."""
        turns = self.turns
        turns.append(said)
        self.count += said[5]
        keep = self.keep
        if keep is not None:
            while self.count - turns[0][5] >= keep:
                self.count -= turns.popleft()[5]

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
        kept = [said for said in self.turns if said[3] >= cutoff]
        self.turns = deque(kept)
        self.count = sum(said[5] for said in kept)


@implementer(IMessageStore)
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
        _check_retention(max_per_room, max_age_days)
        self.max_per_room = max_per_room
        self.max_age_days = max_age_days
        self._rooms: dict[str, _Tail] = {}
        self._topics: dict[str, StoredTopic] = {}

    def start(self) -> None:
        """`IMessageStore` API: nothing to start."""

    def stop(self) -> Deferred[None]:
        """`IMessageStore` API: nothing to commit."""
        return succeed(None)

    def flush(self) -> Deferred[None]:
        """`IMessageStore` API: everything is already "committed"."""
        return succeed(None)

    def append(self, message: StoredMessage) -> None:
        """`IMessageStore` API."""
        self.append_lines(
            message.room_key, message.room, message.at, _message_lines(message)
        )

    def append_lines(self, room_key: str, room: str, at: float, data: bytes) -> None:
        """`IMessageStore` API."""
        tail = self._rooms.get(room_key)
        if tail is None:
            tail = self._rooms[room_key] = _Tail(self.max_per_room or None)
        tail.add(_said(0, room_key, room, at, data))

    def recent(self, room_key: str, limit: int) -> list[StoredMessage]:
        """`IMessageStore` API."""
        tail = self._rooms.get(room_key)
        if tail is None:
            return []
        return tail.newest(_clamp_limit(limit, self.max_per_room))

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
            return  # the tails already enforce max_per_room
        for key, tail in list(self._rooms.items()):
            tail.drop_before(cutoff)
            if not tail.count:
                del self._rooms[key]


# -- SQLite ----------------------------------------------------------------

#: A room's newest turns, newest first; MAX_RECENT of them always hold at
#: least MAX_RECENT messages.
_SELECT_TAIL: Final = (
    "SELECT first_id, room_key, room, at, lines, count FROM turns"
    " WHERE room_key = ? ORDER BY first_id DESC LIMIT ?"
)

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

#: A change for the writer: an op of `twisted_chat.history_writer`.
_Op = tuple[Any, ...]


class _WriterFailed(Exception):
    """A commit failed in the writer; the text is the writer's traceback."""


@implementer(IMessageStore)
class SqliteStore:
    """`IMessageStore` in an SQLite file, written by one writer thread.

    Build it with `SqliteStore.open`, which checks the file at start-up.

    The reactor side (this class) and the writer speak the ops and reports
    of `twisted_chat.history_writer`, and the writer is the same
    `~twisted_chat.history_writer.WriterCore` whether it runs on a thread
    (here) or in a child process (`ProcessSqliteStore`, the daemon's
    choice); only how the ops travel differs.

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
    tail cache, which `append_lines` then keeps current. That connection
    belongs to the thread that called `open`, so call `open` on the
    reactor thread (``makeService`` runs there).
    """

    _log = Logger()

    #: Messages the writer may be behind before it is logged (at most once
    #: a minute): they wait in memory, and a crash would lose them.
    backlog_warning = 100_000

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
        #: Everything up to this message id is committed (or failed).
        self._committed_id = next_id - 1
        #: Turns handed to the writer and not yet reported committed.
        self._pending: deque[_Said] = deque()
        self._tails: OrderedDict[str, _Tail] = OrderedDict()
        self._age_cutoff: float | None = None
        self._seq = 0
        self._flush_waiters: dict[int, Deferred[None]] = {}
        self._stopping = False
        self._stopped: Deferred[None] | None = None
        self._stop_waiters: list[Deferred[None]] = []
        self._dropped_after_stop = 0
        self._backlog_log = LogThrottle(ERROR_LOG_INTERVAL)
        self._init_writer()

    def _init_writer(self) -> None:
        """Set up the way to the writer: here, the writer thread's queue."""
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        #: Set when a flush or stop marker is queued, to end the writer's
        #: wait for more of the batch.
        self._hurry = threading.Event()
        self._thread: threading.Thread | None = None

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
            (next_id,) = write_conn.execute(
                "SELECT coalesce(max(first_id + count), 1) FROM turns"
            ).fetchone()
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
            next_id=next_id,
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
            self._seq += 1
            self._send_stop(self._seq, self._stopped)
        return d

    def flush(self) -> Deferred[None]:
        """`IMessageStore` API; fires only once the store is started."""
        if self._stopped is not None:
            return self.stop()
        d: Deferred[None] = Deferred()
        self._seq += 1
        self._flush_waiters[self._seq] = d
        self._send_marker(("f", self._seq))
        return d

    def append(self, message: StoredMessage) -> None:
        """`IMessageStore` API: see `append_lines`."""
        self.append_lines(
            message.room_key, message.room, message.at, _message_lines(message)
        )

    def append_lines(self, room_key: str, room: str, at: float, data: bytes) -> None:
        """`IMessageStore` API: numbers the turn, queues it, updates the tail."""
        if self._stopping:
            self._dropped_after_stop += 1
            if self._dropped_after_stop == 1:
                self._log.warn(
                    "history store {path} is stopped; messages are not kept",
                    path=self.path,
                )
            return
        try:
            said = _said(self._next_id, room_key, room, at, data)
            self._next_id += said[5]
            self._trim_pending()
            self._pending.append(said)
            tail = self._tails.get(room_key)
            if tail is not None:
                tail.add(said)
            self._send(("l", *said[:5]))
            if self._next_id - 1 - self._committed_id > self.backlog_warning:
                self._warn_backlog()
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
                queued = (said for said in self._pending if said[1] == room_key)
                tail = _Tail(MAX_RECENT, queued)
        else:
            self._tails.move_to_end(room_key)
        return tail.newest(limit, self._age_cutoff)

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
        self._send(
            ("t", (topic.room_key, topic.room, topic.text, topic.set_by, topic.set_at))
        )

    def topics(self) -> dict[str, StoredTopic]:
        """`IMessageStore` API: read at `open`, kept current by `set_topic`."""
        return dict(self._topics)

    def prune(self, now: float) -> None:
        """`IMessageStore` API: the deletes are the writer's.

        The tail caches are pruned at once by age (`recent` clamps to
        ``max_per_room``), so `recent` agrees with what the file will hold.
        """
        if self._stopping:
            return
        cutoff = age_cutoff(now, self.max_age_days)
        if cutoff is not None and (
            self._age_cutoff is None or cutoff > self._age_cutoff
        ):
            self._age_cutoff = cutoff
        if self._age_cutoff is not None:
            for key, tail in list(self._tails.items()):
                tail.drop_before(self._age_cutoff)
                if not tail.count:
                    del self._tails[key]
        self._send(("p", now))

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
        """Forget queued turns the writer has finished with."""
        committed = self._committed_id
        pending = self._pending
        while pending and pending[0][0] + pending[0][5] - 1 <= committed:
            pending.popleft()

    def _warn_backlog(self) -> None:
        held = self._backlog_log.report(time.monotonic())
        if held is not None:
            self._log.warn(
                "the history writer for {path} is {backlog} messages behind;"
                " they wait in memory until it catches up",
                path=self.path,
                backlog=self._next_id - 1 - self._committed_id,
            )

    def _load_tail(self, room_key: str) -> _Tail | None:
        """Fill a room's tail cache from disk plus the queue; None on error."""
        if self._reader is None:
            return None
        try:
            rows = self._reader.execute(_SELECT_TAIL, (room_key, MAX_RECENT)).fetchall()
        except sqlite3.Error:
            self._log.failure(
                "while reading history of {room_key} from {path}",
                room_key=room_key,
                path=self.path,
            )
            return None
        # A queued turn may have been committed since the writer last
        # reported: it is on disk and in the queue, so take the disk's
        # turns only up to the first queued one.
        queued = [said for said in self._pending if said[1] == room_key]
        first_queued = queued[0][0] if queued else self._next_id
        committed = [
            (first_id, key, room, at, text.encode(), count)
            for first_id, key, room, at, text, count in reversed(rows)
            if first_id < first_queued
        ]
        tail = _Tail(MAX_RECENT, [*committed, *queued])
        if self._age_cutoff is not None:
            tail.drop_before(self._age_cutoff)
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

    def _writer_said(self, report: tuple[Any, ...]) -> None:
        """Act on a report of the writer (see `twisted_chat.history_writer`)."""
        if report[0] == "c":
            _, last_id, seq = report
            self._committed_id = max(self._committed_id, last_id)
            self._trim_pending()
            for s in [s for s in self._flush_waiters if s <= seq]:
                self._flush_waiters.pop(s).callback(None)
        elif report[0] == "e":
            _, problem, details = report
            self._log.failure(
                "{problem}",
                failure=Failure(_WriterFailed(details)),
                problem=problem,
                path=self.path,
            )

    # -- how ops reach the writer: a queue to the writer thread ----------------

    def _send(self, op: _Op) -> None:
        """Hand a change to the writer."""
        self._queue.put(op)

    def _send_marker(self, op: _Op) -> None:
        """Queue a flush marker and cut the writer's window short."""
        self._queue.put(op)
        self._hurry.set()

    def _send_stop(self, seq: int, done: Deferred[None]) -> None:
        """Queue the stop marker; ``done`` fires once the file is closed."""
        self._flush_waiters[seq] = done
        self._send_marker(("s", seq))

    # -- the writer thread --------------------------------------------------------

    def _run(self) -> None:
        """The writer loop: gather a batch for flush_interval, commit it.

        It sleeps through the window and then takes everything queued at
        once, instead of waking up for every change: one wake-up per window
        means the writer takes the GIL from the reactor thread a few times
        a second. `flush` and `stop` cut the window short through
        ``_hurry``.
        """
        conn, self._writer_conn = self._writer_conn, None
        if conn is None:
            return

        def report(value: tuple[Any, ...]) -> None:
            self._reactor.callFromThread(self._writer_said, value)

        core = WriterCore(
            conn,
            path=self.path,
            max_per_room=self.max_per_room,
            max_age_days=self.max_age_days,
            send=report,
        )
        while True:
            batch = [self._queue.get()]
            if batch[0][0] not in ("f", "s"):
                self._hurry.wait(self.flush_interval)
            self._hurry.clear()
            # Cleared before draining: a marker queued before a later
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
                if core.write_batch(batch):
                    return
            except Exception:
                # A bug, not a disk error (the core reports those): log it
                # and answer the markers anyway, or flush() and stop() would
                # never fire.
                self._log.failure("in the history writer for {path}", path=self.path)
                markers = [op for op in batch if op[0] in ("f", "s")]
                if markers:
                    report(("c", -1, max(op[1] for op in markers)))
                if any(op[0] == "s" for op in markers):
                    core.close()
                    return


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

    def _init_writer(self) -> None:
        """Set up the pipe's state; the checked writer connection is closed."""
        # The child opens its own; this one only proved the file usable.
        writer, self._writer_conn = self._writer_conn, None
        if writer is not None:
            writer.close()
        self._started = False
        self._process: IProcessTransport | None = None
        #: Ops gathered for the next frame (see `_send`).
        self._outbox: list[_Op] = []
        self._drain_call: IDelayedCall | None = None
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

    def _send(self, op: _Op) -> None:
        """Add ``op`` to the next frame; it leaves within `_PIPE_DELAY`.

        Gathering ops for a few milliseconds costs the reactor one list
        append per turn instead of a `marshal` call, a pipe write and two
        poller updates (start and stop writing) per turn.
        """
        if self._writer_gone:
            if op[0] == "l":  # nobody will commit it: do not keep it queued
                self._committed_id = self._next_id - 1
                self._trim_pending()
            return
        self._outbox.append(op)
        if self._drain_call is None and self._process is not None:
            self._drain_call = IReactorTime(self._reactor).callLater(
                _PIPE_DELAY, self._drain
            )

    def _send_marker(self, op: _Op) -> None:
        """Send a numbered marker now; its acknowledgement fires the waiter."""
        if self._writer_gone:
            self._writer_said(("c", -1, op[1]))
            return
        self._outbox.append(op)
        self._drain()

    def _send_stop(self, seq: int, done: Deferred[None]) -> None:
        """Send the stop marker and end of file; ``done`` fires at the exit."""
        if self._writer_gone:
            done.callback(None)
            return
        # Fired when the child has exited, i.e. the file is closed.
        self._stop_marker = done
        self._send_marker(("s", seq))
        if self._process is not None:
            self._process.closeStdin()

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
