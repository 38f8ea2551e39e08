"""Room history in an SQLite file: the store on the reactor's side.

See `twisted_chat.history` for the whole design. `SqliteStore` checks the
file at start-up (`twisted_chat.history.files`), answers reads from
per-room tail caches and a reader connection, and hands every change to
one writer over the `~twisted_chat.history.side.WriterLink` it is given:
a thread (`twisted_chat.history.thread`) or a child process
(`twisted_chat.history.process`, the daemon's choice). What waits for the
writer is bounded in bytes (`twisted_chat.history.side.Backlog`); past
the bound, history rows are dropped, counted and logged at most once a
minute, and the chat goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.records import StoredMessage, StoredTopic
from twisted_chat.history import wire
from twisted_chat.history.files import open_database
from twisted_chat.history.health import WriterHealth
from twisted_chat.history.memory import (
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_AGE_DAYS,
    DEFAULT_MAX_PER_ROOM,
    IHistoryStore,
    check_retention,
    clamp_limit,
)
from twisted_chat.history.reader import Reads
from twisted_chat.history.schema import TopicRow, age_cutoff
from twisted_chat.history.side import (
    ITEM_COST,
    STOP_TIMEOUT,
    Backlog,
    WriterKind,
    WriterSettings,
    link_to,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

    from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads

    from twisted_chat.history.side import LinkOwner, WriterLink
    from twisted_chat.history.wire import Report

__all__ = ["STOP_TIMEOUT", "SqliteStore"]


@implementer(IHistoryStore)
class SqliteStore:
    """`IMessageStore` in an SQLite file, written by one writer.

    Build it with `SqliteStore.open`, which checks the file and picks the
    link to the writer. Reads run on the reactor thread on a connection
    of their own (WAL lets it read while the writer commits): once per
    room, to fill that room's tail cache, which `append_lines` then keeps
    current, and once per room made, for its topic. That connection
    belongs to the thread that called `open`, so call `open` on the
    reactor thread (``makeService`` runs there).

    :param link: makes the link to the writer, given this store as its
        `~twisted_chat.history.side.LinkOwner`.
    """

    #: Where the store and its link log; tests replace it.
    _log: Logger = RateLimitedLogger()

    def __init__(
        self,
        path: str,
        *,
        reactor: IReactorFromThreads,
        reader: sqlite3.Connection,
        next_id: int,
        link: Callable[[LinkOwner], WriterLink],
        max_per_room: int,
        max_age_days: float,
    ) -> None:
        """Use `SqliteStore.open`; this only assembles checked parts."""
        self.path = path
        self.max_per_room = max_per_room
        self.max_age_days = max_age_days
        self._reactor = reactor
        self._reads = Reads(path, reader, self._read_failed)
        self._backlog = Backlog(next_id)
        self.health = WriterHealth(self, reactor, self._backlog)
        self._seq = 0
        self._flush_waiters: dict[int, Deferred[None]] = {}
        self._stopping = False
        self._stopped: Deferred[None] | None = None
        self._stop_waiters: list[Deferred[None]] = []
        self._stop_timer: IDelayedCall | None = None
        self._dropped_after_stop = 0
        self._link = link(self)

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
        :param writer: ``"thread"`` commits on a thread of this process;
            ``"process"`` in a child process, or on a thread if
            ``reactor`` cannot start processes.
        :raises HistoryStoreError: the path cannot be used; the message
            says why.
        :raises ValueError: a negative limit or a non-positive interval.
        """
        check_retention(max_per_room, max_age_days)
        if writer not in ("thread", "process"):
            raise ValueError(f"writer must be 'thread' or 'process': {writer!r}")
        if flush_interval <= 0:
            raise ValueError(f"flush_interval must be positive: {flush_interval}")
        opened = open_database(path)
        settings = WriterSettings(path, flush_interval, max_per_room, max_age_days)
        if writer == "process" and not IReactorProcess.providedBy(reactor):
            writer = "thread"
            cls._log.info(
                "the reactor cannot start processes; history of {path} is"
                " written by a thread",
                path=path,
            )
        return cls(
            path,
            reactor=reactor,
            reader=opened.reader,
            next_id=opened.next_id,
            link=link_to(writer, reactor, settings, opened.writer),
            max_per_room=max_per_room,
            max_age_days=max_age_days,
        )

    # -- IHistoryStore, reactor thread -----------------------------------------

    def start(self) -> None:
        """`IMessageStore` API: start the writer (once), and the health timer."""
        if self._stopping:
            return
        self._link.start()
        self.health.start()

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
            self.health.stop()
            self._stopped = Deferred()
            self._stopped.addCallback(self._close_reader)
            self._seq += 1
            if IReactorTime.providedBy(self._reactor):
                self._stop_timer = IReactorTime(self._reactor).callLater(
                    STOP_TIMEOUT, self._stop_overdue
                )
            self._link.stop(self._seq)
        return d

    def flush(self) -> Deferred[None]:
        """`IMessageStore` API; fires only once the store is started."""
        if self._stopped is not None:
            return self.stop()
        d: Deferred[None] = Deferred()
        self._seq += 1
        self._flush_waiters[self._seq] = d
        self._link.send_marker(wire.Marker(wire.OP_FLUSH, self._seq))
        return d

    def append_lines(self, room_key: str, room: str, at: float, data: bytes) -> None:
        """`IMessageStore` API: numbers the turn, queues it, updates the tail.

        Called once per room and reactor turn: kept to a handful of steps.
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
            backlog = self._backlog
            first_id = backlog.next_id
            backlog.next_id = first_id + count
            turn = wire.Turn(first_id, room_key, room, at, data, count)
            tail = self._reads.tails.get(room_key)
            if tail is not None:
                tail.add(turn)
            if self.health.down or not backlog.admit(turn):
                self._drop(count)
                return
            self._link.send(turn)
        except Exception:
            self._log.failure("while queueing messages for {path}", path=self.path)

    def recent(self, room_key: str, limit: int) -> list[StoredMessage]:
        """`IMessageStore` API.

        Reads SQLite (one indexed query) only the first time a room is
        read, or after it dropped out of the tail cache.
        """
        limit = clamp_limit(limit, self.max_per_room)
        if limit == 0:
            return []
        reads = self._reads
        tail = reads.cached(room_key)
        if tail is None:
            tail = reads.load(room_key, self._backlog.queued(room_key))
        return tail.newest(limit, reads.age_cutoff)

    def set_topic(self, topic: StoredTopic) -> None:
        """`IMessageStore` API: kept in a bounded cache, and queued."""
        if self._stopping:
            self._log.warn(
                "history store {path} is stopped; topic of {room} not kept",
                path=self.path,
                room=topic.room,
            )
            return
        self._reads.set_topic(topic)
        backlog = self._backlog
        cost = len(topic.text) + len(topic.room) + ITEM_COST
        if not backlog.fits(cost) or self.health.down:
            self._drop(0)
            return
        topic_id = backlog.next_id
        backlog.next_id += 1
        backlog.add_topic(topic_id, cost)
        row = TopicRow(
            topic.room_key, topic.room, topic.text, topic.set_by, topic.set_at
        )
        self._link.send(wire.Topic(wire.OP_TOPIC, row, topic_id))

    def topic(self, room_key: str) -> StoredTopic | None:
        """`IMessageStore` API: one indexed read, unless set here lately."""
        return self._reads.topic(room_key)

    def prune(self, now: float) -> None:
        """`IMessageStore` API: the deletes are the writer's; reads agree at once."""
        if self._stopping:
            return
        self._reads.prune(age_cutoff(now, self.max_age_days))
        self._link.send(wire.Prune(wire.OP_PRUNE, now))

    def trouble(self) -> str | None:
        """`IMessageStore` API: why history is not (all) being saved now."""
        return self.health.trouble()

    def backlog(self) -> int:
        """`IMessageStore` API: messages queued that the writer has not committed."""
        return self._backlog.unsaved()

    # -- LinkOwner: what the link tells, on the reactor thread -----------------

    def writer_said(self, report: Report) -> None:
        """`LinkOwner` API: act on a report of the writer."""
        if isinstance(report, wire.Committed):
            if self._backlog.acknowledge(report.last_id):
                self._log.warn(
                    "the history writer for {path} caught up; {dropped} messages"
                    " were not saved while it was behind",
                    path=self.path,
                    dropped=self._backlog.dropped,
                )
            for s in [s for s in self._flush_waiters if s <= report.seq]:
                self._flush_waiters.pop(s).callback(None)
        elif isinstance(report, wire.Failed):
            self.health.commit_failed(report.problem, report.details)
        else:
            self._file_changed(report.text, report.step)

    def writer_started(self) -> None:
        """`LinkOwner` API: rows are kept again."""
        self.health.started()

    def writer_ended(self, why: str | None, restart_in: float | None) -> None:
        """`LinkOwner` API: forget the queue; loud unless it was the stop."""
        lost = self._backlog.forget()
        if why is not None:
            down = f"history writer {why}"
            if restart_in is not None:
                down += f"; history is not saved; restarting it in {restart_in:.0f} s"
            self.health.down = down
            self._log.error(
                "the history writer for {path} {why}; up to {lost} messages it had"
                " not yet confirmed are lost, and history is not saved until it"
                " runs again",
                path=self.path,
                why=why,
                lost=lost,
            )
        waiters = list(self._flush_waiters.values())
        self._flush_waiters.clear()
        for d in waiters:
            d.callback(None)

    def writer_closed(self) -> None:
        """`LinkOwner` API: the stop is complete; release and fire."""
        if self._stopped is not None and not self._stopped.called:
            self._stopped.callback(None)

    # -- the reactor side's own work ---------------------------------------------

    def _drop(self, count: int) -> None:
        """Do not keep a turn (``count`` messages) or a topic (0): too much waits."""
        backlog = self._backlog
        if backlog.drop(count, writer_down=bool(self.health.down)):
            self._log.error(
                "the history writer for {path} is {waiting} bytes behind (at most"
                " {limit} may wait); {dropped} messages were not saved so far;"
                " the chat goes on",
                path=self.path,
                waiting=backlog.waiting,
                limit=backlog.max_bytes,
                dropped=backlog.dropped,
            )

    def _close_reader(self, result: None) -> None:
        """Last step of `stop`, on the reactor thread: release, then fire."""
        self._reads.tails.clear()
        self._backlog.forget()
        timer, self._stop_timer = self._stop_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        try:
            self._reads.close()
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
            lost=self._backlog.unsaved(),
        )
        self._link.abandon()

    def _file_changed(self, text: str, step: int) -> None:
        """The writer's file went away, a new one is ready, or cannot be made."""
        self.health.file_changed(text, ready=step == wire.FILE_READY)
        if step in {wire.FILE_LOST, wire.FILE_READY}:
            # Closed before the writer makes the new file (see WriterCore).
            self._reads.close()
        if step == wire.FILE_LOST:
            self._link.send_marker(wire.Marker(wire.OP_REOPEN))
        elif step == wire.FILE_READY:
            self._reads.reopen()

    def _read_failed(self, text: str, **fields: Any) -> None:
        """Log a failed read (called inside ``except``)."""
        self._log.failure(text, **fields)
