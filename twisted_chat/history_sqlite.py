"""Room history in an SQLite file: the reactor side, and the writer thread.

See `twisted_chat.history` for the whole design; `SqliteStore` checks the
file at start-up, answers reads from per-room tail caches and hands every
change to one writer: a thread of the daemon here, a child process in
`twisted_chat.history_process`.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.history_schema import SCHEMA_VERSION, age_cutoff, prepare
from twisted_chat.history_store import (
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_AGE_DAYS,
    DEFAULT_MAX_PER_ROOM,
    MAX_RECENT,
    HistoryStoreError,
    IMessageStore,
    _check_retention,
    _clamp_limit,
    _message_lines,
    _Said,
    _said,
    _Tail,
)
from twisted_chat.history_writer import ERROR_LOG_INTERVAL, MAX_BATCH, WriterCore
from twisted_chat.records import StoredMessage, StoredTopic
from twisted_chat.throttle import LogThrottle

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads

__all__ = ["SqliteStore", "WriterKind"]

#: How many rooms' tails `SqliteStore` keeps in memory (least recently read
#: rooms are dropped first and reloaded from disk when read again).
_MAX_CACHED_ROOMS: Final = 512


# -- SQLite ----------------------------------------------------------------

#: A room's newest turns, newest first; MAX_RECENT of them always hold at
#: least MAX_RECENT messages.
_SELECT_TAIL: Final = (
    "SELECT first_id, room_key, room, at, lines, count FROM turns"
    " WHERE room_key = ? ORDER BY first_id DESC LIMIT ?"
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
