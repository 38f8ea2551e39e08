"""Room history in an SQLite file: the reactor side of the writer.

See `twisted_chat.history` for the whole design. `SqliteStore` checks the
file at start-up (`twisted_chat.history_files`), answers reads from
per-room tail caches and hands every change to one writer: a thread of the
daemon here (`twisted_chat.history_thread`), a child process in
`twisted_chat.history_process` (the daemon's choice).

What waits for the writer is bounded in bytes (`MAX_WAITING_BYTES`): the
turns and topics handed over and not yet acknowledged, which is also a
bound on what the pipe's transport and the outbox hold, since they only
hold those. Past it, history rows are dropped, counted and logged at most
once a minute, and the chat goes on; `trouble` says so while it lasts.
The cost on the reactor is an add and a compare per turn.
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Final, Literal

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.history_core import ERROR_LOG_INTERVAL
from twisted_chat.history_files import (
    backup_database,
    connect_reader,
    open_database,
)
from twisted_chat.history_health import NAG_INTERVAL, TROUBLE_HOLD, Troubles
from twisted_chat.history_schema import age_cutoff
from twisted_chat.history_store import (
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_AGE_DAYS,
    DEFAULT_MAX_PER_ROOM,
    MAX_RECENT,
    IMessageStore,
    _check_retention,
    _clamp_limit,
    _message_lines,
    _Said,
    _Tail,
)
from twisted_chat.history_thread import ThreadLink
from twisted_chat.records import StoredMessage, StoredTopic
from twisted_chat.throttle import LogThrottle

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads

__all__ = ["MAX_WAITING_BYTES", "STOP_TIMEOUT", "SqliteStore", "WriterKind"]

#: How many rooms' tails `SqliteStore` keeps in memory (least recently read
#: rooms are dropped first and reloaded from disk when read again).
_MAX_CACHED_ROOMS: Final = 512

#: How many topics set by this process are kept in memory for `topic`
#: (the rest are read from the file when a room is made).
_MAX_CACHED_TOPICS: Final = 1024

#: The most bytes that may wait for the writer (see the module docstring).
#: A flat-out burst on two cores leaves the writer about half a second
#: behind, a few MiB; the slow-reader test of issue 11 allows 12 MiB of
#: daemon growth in all, and what waits is held about twice (the queued
#: turns and their frame in the pipe's buffer).
MAX_WAITING_BYTES: Final = 4 << 20

#: What a queued turn or topic costs beyond its text: the tuple, the bytes
#: object, the deque slot and its part of a frame.
_ITEM_COST: Final = 200

#: How long `stop` waits for the writer to commit and close, in seconds;
#: then it gives up (the process writer is killed) and logs what was lost,
#: so SIGTERM still ends the daemon within its 5 s (after up to 3 s of
#: letting clients go, ``service.SHUTDOWN_GRACE``).
STOP_TIMEOUT: Final = 1.5

#: How often the store looks at its health (logs lasting trouble again,
#: restarts a dead writer when due), in seconds.
HEALTH_INTERVAL: Final = 5.0

#: A room's newest turns, newest first; MAX_RECENT of them always hold at
#: least MAX_RECENT messages.
_SELECT_TAIL: Final = (
    "SELECT first_id, room_key, room, at, lines, count FROM turns"
    " WHERE room_key = ? ORDER BY first_id DESC LIMIT ?"
)

_SELECT_TOPIC: Final = (
    "SELECT room_key, room, text, set_by, set_at FROM topics WHERE room_key = ?"
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
    `~twisted_chat.history_core.WriterCore` whether it runs on a thread
    (here) or in a child process (`ProcessSqliteStore`); only how the ops
    travel differs.

    Reads run on the reactor thread on a second connection (WAL lets it
    read while the writer commits): once per room, to fill that room's
    tail cache, which `append_lines` then keeps current, and once per room
    made, for its topic. That connection belongs to the thread that called
    `open`, so call `open` on the reactor thread (``makeService`` runs
    there).
    """

    _log = Logger()

    def __init__(
        self,
        path: str,
        *,
        reactor: IReactorFromThreads,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
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
        #: See `MAX_WAITING_BYTES`; an attribute so tests can lower it.
        self.max_waiting_bytes = MAX_WAITING_BYTES
        self._reactor = reactor
        self._reader: sqlite3.Connection | None = reader
        self._next_id = next_id
        #: Everything up to this id is committed (or failed).
        self._committed_id = next_id - 1
        #: Turns handed to the writer and not yet reported committed.
        self._pending: deque[_Said] = deque()
        #: Topics handed to the writer: (id, cost), not yet reported.
        self._pending_topics: deque[tuple[int, int]] = deque()
        #: Bytes of what waits for the writer (see `MAX_WAITING_BYTES`).
        self._waiting = 0
        #: Rows are being dropped; how many messages so far.
        self._dropping = False
        self._dropped = 0
        self._drop_log = LogThrottle(ERROR_LOG_INTERVAL)
        #: Set while the writer is known to be gone: rows are dropped.
        self._writer_down: str | None = None
        self._troubles = Troubles()
        self._health_call: IDelayedCall | None = None
        self._tails: OrderedDict[str, _Tail] = OrderedDict()
        self._topics: OrderedDict[str, StoredTopic] = OrderedDict()
        self._age_cutoff: float | None = None
        self._seq = 0
        self._flush_waiters: dict[int, Deferred[None]] = {}
        self._stopping = False
        self._stopped: Deferred[None] | None = None
        self._stop_waiters: list[Deferred[None]] = []
        self._stop_timer: IDelayedCall | None = None
        self._dropped_after_stop = 0
        self._init_writer(writer)

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

        See `twisted_chat.history_files.open_database` for the checks.
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
                from twisted_chat.history_process import ProcessSqliteStore

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
        self._send_marker(("f", self._seq))
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
            self._send(("l", *said[:5]))
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
        self._send(("t", row, topic_id))

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
        self._send(("p", now))

    def trouble(self) -> str | None:
        """`IMessageStore` API: why history is not (all) being saved now."""
        behind = None
        if self._dropping:
            behind = (
                f"the writer is {self._waiting / (1 << 20):.1f} MiB behind;"
                f" {self._dropped} messages dropped"
            )
        return self._troubles.text(time.monotonic(), self._writer_down, behind)

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

    # -- reactor-thread helpers -----------------------------------------------

    def _trim_pending(self) -> None:
        """Forget queued turns the writer has finished with."""
        committed = self._committed_id
        pending = self._pending
        while pending and pending[0][0] + pending[0][5] - 1 <= committed:
            self._waiting -= len(pending.popleft()[4]) + _ITEM_COST

    def _trim_topics(self) -> None:
        committed = self._committed_id
        topics = self._pending_topics
        while topics and topics[0][0] <= committed:
            self._waiting -= topics.popleft()[1]

    def _drop(self, count: int) -> None:
        """Do not keep a turn (``count`` messages) or a topic (0): too much waits."""
        self._dropped += count
        if self._writer_down:
            return  # said by the writer's own trouble
        self._dropping = True
        if self._drop_log.report(time.monotonic()) is not None:
            self._log.error(
                "the history writer for {path} is {waiting} bytes behind (at most"
                " {limit} may wait); {dropped} messages were not saved so far;"
                " the chat goes on",
                path=self.path,
                waiting=self._waiting,
                limit=self.max_waiting_bytes,
                dropped=self._dropped,
            )

    def _forget_queue(self) -> int:
        """Nobody will commit what is queued: forget it; the messages lost."""
        lost = sum(said[5] for said in self._pending)
        self._pending.clear()
        self._pending_topics.clear()
        self._waiting = 0
        self._committed_id = self._next_id - 1
        return lost

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
        self._pending_topics.clear()
        self._waiting = 0
        timer, self._stop_timer = self._stop_timer, None
        if timer is not None and timer.active():
            timer.cancel()
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

    def _stop_overdue(self) -> None:
        """`stop` waited `STOP_TIMEOUT`: give up on the writer, say what is lost."""
        self._stop_timer = None
        if self._stopped is None or self._stopped.called:
            return
        self._log.error(
            "the history writer for {path} did not finish within {timeout} s;"
            " up to {lost} messages are not saved",
            path=self.path,
            timeout=STOP_TIMEOUT,
            lost=sum(said[5] for said in self._pending),
        )
        self._abandon_writer()

    def _abandon_writer(self) -> None:
        """Stop waiting for the writer thread (a daemon thread: it dies with us)."""
        if self._stopped is not None and not self._stopped.called:
            self._stopped.callback(None)

    def _health(self) -> None:
        """Every `HEALTH_INTERVAL`: repeat lasting trouble in the log."""
        self._health_call = None
        if self._stopping:
            return
        try:
            self._check_health()
        except Exception:
            self._log.failure("while checking the history of {path}", path=self.path)
        self._health_call = IReactorTime(self._reactor).callLater(
            HEALTH_INTERVAL, self._health
        )

    def _check_health(self) -> None:
        trouble = self.trouble()
        if self._troubles.nag(time.monotonic(), trouble):
            self._log.error(
                "history of {path} is not being saved: {trouble} (said again"
                " every {interval:.0f} s while it lasts)",
                path=self.path,
                trouble=trouble,
                interval=NAG_INTERVAL,
            )

    def _cancel_health(self) -> None:
        call, self._health_call = self._health_call, None
        if call is not None and call.active():
            call.cancel()

    def _writer_said(self, report: tuple[Any, ...]) -> None:
        """Act on a report of the writer (see `twisted_chat.history_writer`)."""
        if report[0] == "c":
            _, last_id, seq = report
            self._committed_id = max(self._committed_id, last_id)
            self._trim_pending()
            self._trim_topics()
            if self._dropping and self._waiting <= self.max_waiting_bytes // 2:
                self._dropping = False
                self._log.warn(
                    "the history writer for {path} caught up; {dropped} messages"
                    " were not saved while it was behind",
                    path=self.path,
                    dropped=self._dropped,
                )
            for s in [s for s in self._flush_waiters if s <= seq]:
                self._flush_waiters.pop(s).callback(None)
        elif report[0] == "e":
            _, problem, details = report
            self._troubles.set("commit", problem, time.monotonic() + TROUBLE_HOLD)
            self._log.failure(
                "{problem}",
                failure=Failure(_WriterFailed(details)),
                problem=problem,
                path=self.path,
            )
        elif report[0] == "w":
            self._file_changed(report[1], report[2])

    def _file_changed(self, text: str, step: int) -> None:
        """The writer's file went away (1), or a new one is ready (2)."""
        self._troubles.set("file", text, time.monotonic() + TROUBLE_HOLD)
        if step == 2:
            self._log.warn("{text}", text=text)
        else:
            self._log.error("{text}", text=text)
        if step in {1, 2}:
            # Closed before the writer makes the new file (see WriterCore).
            reader, self._reader = self._reader, None
            if reader is not None:
                try:
                    reader.close()
                except sqlite3.Error:
                    self._log.failure("while closing {path}", path=self.path)
        if step == 1:
            self._send_marker(("r", -1))
        elif step == 2:
            try:
                self._reader = connect_reader(self.path)
            except sqlite3.Error:
                self._log.failure("while opening {path} again", path=self.path)

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
        self._send_marker(("s", seq))
