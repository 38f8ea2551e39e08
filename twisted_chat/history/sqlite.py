"""Room history in an SQLite file: the reactor side of the writer.

See `twisted_chat.history` for the whole design. `SqliteStore` checks the
file at start-up (`twisted_chat.history.files`), answers reads from
per-room tail caches and hands every change to one writer: a thread of the
daemon here (`twisted_chat.history.thread`), a child process in
`twisted_chat.history.process` (the daemon's choice).

What waits for the writer is bounded in bytes (`MAX_WAITING_BYTES`): the
turns and topics handed over and not yet acknowledged, which is also a
bound on what the pipe's transport and the outbox hold, since they only
hold those. Past it, history rows are dropped, counted and logged at most
once a minute, and the chat goes on; `trouble` says so while it lasts.
The cost on the reactor is an add and a compare per turn.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Final, Literal

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.records import StoredMessage, StoredTopic
from twisted_chat.history.files import (
    backup_database,
    open_database,
)
from twisted_chat.history.memory import (
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_AGE_DAYS,
    DEFAULT_MAX_PER_ROOM,
    MAX_RECENT,
    IHistoryStore,
    _check_retention,
    _clamp_limit,
    _message_lines,
    _Tail,
)
from twisted_chat.history.schema import age_cutoff
from twisted_chat.history.side import (
    _ITEM_COST,
    HEALTH_INTERVAL,
    MAX_WAITING_BYTES,
    STOP_TIMEOUT,
    WriterSide,
    _Op,
)
from twisted_chat.history.thread import ThreadLink
from twisted_chat.history.writer_core import (
    OP_FLUSH,
    OP_LINES,
    OP_PRUNE,
    OP_STOP,
    OP_TOPIC,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads

__all__ = ["MAX_WAITING_BYTES", "STOP_TIMEOUT", "SqliteStore", "WriterKind"]

#: How many topics set by this process are kept in memory for `topic`
#: (the rest are read from the file when a room is made).
_MAX_CACHED_TOPICS: Final = 1024

_SELECT_TOPIC: Final = (
    "SELECT room_key, room, text, set_by, set_at FROM topics WHERE room_key = ?"
)

#: Who commits: a thread of the daemon, or a child process.
WriterKind = Literal["thread", "process"]


@implementer(IHistoryStore)
class SqliteStore(WriterSide):
    """`IMessageStore` in an SQLite file, written by one writer thread.

    Build it with `SqliteStore.open`, which checks the file at start-up.

    The reactor side (this class) and the writer speak the ops and reports
    of `twisted_chat.history.writer`, and the writer is the same
    `~twisted_chat.history.writer_core.WriterCore` whether it runs on a thread
    (here) or in a child process (`ProcessSqliteStore`); only how the ops
    travel differs.

    Reads run on the reactor thread on a second connection (WAL lets it
    read while the writer commits): once per room, to fill that room's
    tail cache, which `append_lines` then keeps current, and once per room
    made, for its topic. That connection belongs to the thread that called
    `open`, so call `open` on the reactor thread (``makeService`` runs
    there).
    """

    _log: Logger = RateLimitedLogger()

    # __init__ (the state): `WriterSide`.

    def _init_writer(self, conn: sqlite3.Connection) -> None:
        """Set up the way to the writer: here, a writer thread."""
        self._link = ThreadLink(
            conn,
            path=self.path,
            flush_interval=self.flush_interval,
            max_per_room=self.max_per_room,
            max_age_days=self.max_age_days,
            report=lambda value: self._reactor.callFromThread(self._writer_said, value),
            bug=lambda: self._log.failure(
                "in the history writer for {path}", path=self.path
            ),
        )

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

        See `twisted_chat.history.files.open_database` for the checks.
        Call `start` before the reactor runs, or soon after.

        :param reactor: used to fire `stop`'s and `flush`'s Deferreds on the
            reactor thread (``callFromThread``), and for timers.
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
        write_conn, reader, next_id = open_database(path)
        store_class: type[SqliteStore] = SqliteStore
        if writer == "process":
            if IReactorProcess.providedBy(reactor):
                # Imported here: that module builds on this one.
                from twisted_chat.history.process import ProcessSqliteStore

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
            next_id=next_id,
            max_per_room=max_per_room,
            max_age_days=max_age_days,
            flush_interval=flush_interval,
        )

    # -- IMessageStore, reactor thread --------------------------------------

    def start(self) -> None:
        """`IMessageStore` API: start the writer (once), and the health timer."""
        if self._stopping:
            return
        self._start_writer()
        if self._health_call is None and IReactorTime.providedBy(self._reactor):
            self._health_call = IReactorTime(self._reactor).callLater(
                HEALTH_INTERVAL, self._health
            )

    def _start_writer(self) -> None:
        self._link.start()

    def stop(self) -> Deferred[None]:
        """`IMessageStore` API: commit the queue, close the database.

        If the store was never started, the writer is started just to
        commit what was queued. After `STOP_TIMEOUT` seconds it stops
        waiting for the writer and logs what may be lost.
        """
        d: Deferred[None] = Deferred()
        if self._stopped is not None and self._stopped.called:
            d.callback(None)
            return d
        self._stop_waiters.append(d)
        if not self._stopping:
            self.start()
            self._stopping = True
            self._cancel_health()
            self._stopped = Deferred()
            self._stopped.addCallback(self._close_reader)
            self._seq += 1
            if IReactorTime.providedBy(self._reactor):
                self._stop_timer = IReactorTime(self._reactor).callLater(
                    STOP_TIMEOUT, self._stop_overdue
                )
            self._send_stop(self._seq, self._stopped)
        return d

    def flush(self) -> Deferred[None]:
        """`IMessageStore` API; fires only once the store is started."""
        if self._stopped is not None:
            return self.stop()
        d: Deferred[None] = Deferred()
        self._seq += 1
        self._flush_waiters[self._seq] = d
        self._send_marker((OP_FLUSH, self._seq))
        return d

    def append(self, message: StoredMessage) -> None:
        """`IMessageStore` API: see `append_lines`."""
        self.append_lines(
            message.room_key, message.room, message.at, _message_lines(message)
        )

    def append_lines(self, room_key: str, room: str, at: float, data: bytes) -> None:
        """`IMessageStore` API: numbers the turn, queues it, updates the tail.

        The bound on what waits for the writer costs an add and a compare.
        """
        if self._stopping:
            self._dropped_after_stop += 1
            if self._dropped_after_stop == 1:
                self._log.warn(
                    "history store {path} is stopped; messages are not kept",
                    path=self.path,
                )
            return
        try:
            count = data.count(b"\n")
            if not count:
                return  # no line: nothing to keep, and no id to give
            said = (self._next_id, room_key, room, at, data, count)
            self._next_id += count
            tail = self._tails.get(room_key)
            if tail is not None:
                tail.add(said)
            self._trim_pending()
            cost = len(data) + _ITEM_COST
            if self._waiting + cost > self.max_waiting_bytes or self._writer_down:
                self._drop(count)
                return
            self._waiting += cost
            self._pending.append(said)
            self._send((OP_LINES, *said[:5]))
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
        """`IMessageStore` API: kept in a bounded cache, and queued."""
        if self._stopping:
            self._log.warn(
                "history store {path} is stopped; topic of {room} not kept",
                path=self.path,
                room=topic.room,
            )
            return
        topics = self._topics
        topics[topic.room_key] = topic
        topics.move_to_end(topic.room_key)
        if len(topics) > _MAX_CACHED_TOPICS:
            topics.popitem(last=False)
        self._trim_pending()
        cost = len(topic.text) + len(topic.room) + _ITEM_COST
        if self._waiting + cost > self.max_waiting_bytes or self._writer_down:
            self._drop(0)
            return
        topic_id = self._next_id
        self._next_id += 1
        self._waiting += cost
        self._pending_topics.append((topic_id, cost))
        row = (topic.room_key, topic.room, topic.text, topic.set_by, topic.set_at)
        self._send((OP_TOPIC, row, topic_id))

    def topic(self, room_key: str) -> StoredTopic | None:
        """`IMessageStore` API: one indexed read, unless set here lately."""
        found = self._topics.get(room_key)
        if found is not None or self._reader is None:
            return found
        try:
            row = self._reader.execute(_SELECT_TOPIC, (room_key,)).fetchone()
        except sqlite3.Error:
            self._log.failure(
                "while reading the topic of {room_key} from {path}",
                room_key=room_key,
                path=self.path,
            )
            return None
        return None if row is None else StoredTopic(*row)

    def prune(self, now: float) -> None:
        """`IMessageStore` API: the deletes are the writer's.

        The tail caches are pruned at once by age (`recent` clamps to
        ``max_per_room``), so `recent` agrees with what the file will hold;
        cached topics older than the cutoff are forgotten (the file decides
        about them).
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
            for key, topic in list(self._topics.items()):
                if topic.set_at < self._age_cutoff:
                    del self._topics[key]
        self._send((OP_PRUNE, now))

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
        backup_database(self.path, dest_path)

    # -- how ops reach the writer: a queue to the writer thread ----------------

    def _send(self, op: _Op) -> None:
        """Hand a change to the writer."""
        self._link.send(op)

    def _send_marker(self, op: _Op) -> None:
        """Queue a marker and cut the writer's window short."""
        self._link.send_marker(op)

    def _send_stop(self, seq: int, done: Deferred[None]) -> None:
        """Queue the stop marker; ``done`` fires once the file is closed."""
        self._flush_waiters[seq] = done
        self._send_marker((OP_STOP, seq))
