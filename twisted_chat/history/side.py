"""The reactor side of the writer: its state, its reports, its health.

`WriterSide` is the part of `twisted_chat.history.sqlite.SqliteStore` that
does not depend on how ops travel (thread or process): what waits for the
writer and its byte bound, acknowledgements, the tails' refill from disk,
the writer's reports (a failed commit, a lost file), the health timer that
repeats lasting trouble in the log, and `stop`'s deadline.
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.throttle import LogThrottle
from twisted_chat.history.files import connect_reader
from twisted_chat.history.health import NAG_INTERVAL, TROUBLE_HOLD, Troubles
from twisted_chat.history.memory import MAX_RECENT, _Said, _Tail
from twisted_chat.history.writer_core import (
    ERROR_LOG_INTERVAL,
    FILE_LOST,
    FILE_READY,
    OP_REOPEN,
    REPORT_COMMITTED,
    REPORT_ERROR,
    REPORT_FILE,
)

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads

    from twisted_chat.core.records import StoredTopic

__all__ = ["HEALTH_INTERVAL", "MAX_WAITING_BYTES", "STOP_TIMEOUT", "WriterSide"]

#: How many rooms' tails `SqliteStore` keeps in memory (least recently read
#: rooms are dropped first and reloaded from disk when read again).
_MAX_CACHED_ROOMS: Final = 512

#: The most bytes that may wait for the writer (see `twisted_chat.history.sqlite`).
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

#: How often the store looks at its health (logs lasting trouble again),
#: in seconds.
HEALTH_INTERVAL: Final = 5.0

#: A room's newest turns, newest first; MAX_RECENT of them always hold at
#: least MAX_RECENT messages.
_SELECT_TAIL: Final = (
    "SELECT first_id, room_key, room, at, lines, count FROM turns"
    " WHERE room_key = ? ORDER BY first_id DESC LIMIT ?"
)

#: A change for the writer: an op of `twisted_chat.history.writer`.
_Op = tuple[Any, ...]


class _WriterFailed(Exception):
    """A commit failed in the writer; the text is the writer's traceback."""


class WriterSide:
    """The state and the report handling every SQLite store shares."""

    _log: Logger = RateLimitedLogger()

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
        """Set up the way to the writer (the writer's own kind does)."""
        raise NotImplementedError

    def _send_marker(self, op: _Op) -> None:
        """Send a marker op to the writer now."""
        raise NotImplementedError

    def trouble(self) -> str | None:
        """`IMessageStore` API: why history is not (all) being saved now."""
        behind = None
        if self._dropping:
            behind = (
                f"the writer is {self._waiting / (1 << 20):.1f} MiB behind;"
                f" {self._dropped} messages dropped"
            )
        return self._troubles.text(time.monotonic(), self._writer_down, behind)

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
        self._forget_queue()
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
        """Act on a report of the writer (see `twisted_chat.history.writer`)."""
        if report[0] == REPORT_COMMITTED:
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
        elif report[0] == REPORT_ERROR:
            _, problem, details = report
            self._troubles.set("commit", problem, time.monotonic() + TROUBLE_HOLD)
            self._log.failure(
                "{problem}",
                failure=Failure(_WriterFailed(details)),
                problem=problem,
                path=self.path,
            )
        elif report[0] == REPORT_FILE:
            self._file_changed(report[1], report[2])

    def _file_changed(self, text: str, step: int) -> None:
        """The writer's file went away, a new one is ready, or cannot be made."""
        self._troubles.set("file", text, time.monotonic() + TROUBLE_HOLD)
        if step == FILE_READY:
            self._log.warn("{text}", text=text)
        else:
            self._log.error("{text}", text=text)
        if step in {FILE_LOST, FILE_READY}:
            # Closed before the writer makes the new file (see WriterCore).
            reader, self._reader = self._reader, None
            if reader is not None:
                try:
                    reader.close()
                except sqlite3.Error:
                    self._log.failure("while closing {path}", path=self.path)
        if step == FILE_LOST:
            self._send_marker((OP_REOPEN, -1))
        elif step == FILE_READY:
            try:
                self._reader = connect_reader(self.path)
            except sqlite3.Error:
                self._log.failure("while opening {path} again", path=self.path)
