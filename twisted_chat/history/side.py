"""What the reactor side keeps for the writer, and the link it talks over.

`twisted_chat.history.sqlite.SqliteStore` hands every change to one writer
over a `WriterLink`: a thread (`twisted_chat.history.thread.ThreadLink`) or
a child process (`twisted_chat.history.process.ProcessLink`). The store is
the link's `LinkOwner`: the link calls it back with the writer's reports
and with what became of the writer. The store is the same whichever link
it was handed; only how the ops travel differs.

`Backlog` is the store's account of what waits for the writer: the turns
and topics handed over and not yet acknowledged, and their size in bytes,
which is bounded (`MAX_WAITING_BYTES`). It is also a bound on what the
pipe's transport and the process link's outbox hold, since they only hold
those. The cost on the reactor is an add and a compare per turn.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, Protocol

from twisted_chat.core.throttle import LogThrottle
from twisted_chat.history.writer_core import ERROR_LOG_INTERVAL

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

    from twisted.internet.interfaces import IReactorFromThreads
    from twisted.logger import Logger

    from twisted_chat.history.wire import Marker, Op, Report, Turn

__all__ = [
    "MAX_WAITING_BYTES",
    "STOP_TIMEOUT",
    "Backlog",
    "LinkOwner",
    "WriterKind",
    "WriterLink",
    "WriterSettings",
    "link_to",
]

#: Who commits: a thread of the daemon, or a child process.
WriterKind = Literal["thread", "process"]

#: The most bytes that may wait for the writer. What waits is held about
#: twice (the queued turns and their frame in the pipe's buffer), so this
#: is the daemon's growth in the worst case, and the slow-reader tests
#: (issue 11) allow 24 MiB of growth in all.  On 2 cores that the load
#: generator and the daemon keep busy, the writer at niceness 10 now falls
#: ~15 MB a second behind a flat-out fan-out (280,000 messages a second
#: into one room, flood control off), so part of such a burst is dropped,
#: counted and logged; 32 MiB kept those bursts whole but let the daemon
#: grow by 33 MiB in the web slow-reader test (BENCHMARKS.md, issue 18).
MAX_WAITING_BYTES: Final = 4 << 20

#: What a queued turn or topic costs beyond its text: the tuple, the bytes
#: object, the deque slot and its part of a frame.
ITEM_COST: Final = 200

#: How long `stop` waits for the writer to commit and close, in seconds;
#: then it gives up (the process writer is killed) and logs what was lost,
#: so SIGTERM still ends the daemon within its 5 s (after up to 3 s of
#: letting clients go, ``service.SHUTDOWN_GRACE``).
STOP_TIMEOUT: Final = 1.5


class WriterSettings(NamedTuple):
    """What every writer is told: its file and how it commits and prunes."""

    path: str
    flush_interval: float
    max_per_room: int
    max_age_days: float


class LinkOwner(Protocol):
    """What a `WriterLink` calls back, always on the reactor thread."""

    path: str
    #: The store's logger, which its link logs to as well (tests replace it).
    _log: Logger

    def writer_said(self, report: Report) -> None:
        """Act on a report of the writer."""

    def writer_started(self) -> None:
        """A writer runs (again): changes are kept from now on."""

    def writer_ended(self, why: str | None, restart_in: float | None) -> None:
        """The writer is gone: nothing queued will be committed.

        :param why: how it ended, or None for the clean exit after `stop`.
        :param restart_in: seconds until the link starts another, or None.
        """

    def writer_closed(self) -> None:
        """The stop asked for is complete (or abandoned): the file is closed."""


class WriterLink(Protocol):
    """The way from the store to its writer."""

    def start(self) -> None:
        """Start the writer (once; the link restarts a process that dies)."""

    def send(self, op: Op) -> None:
        """Hand over a change; it may wait a moment to travel with others."""

    def send_marker(self, op: Marker) -> None:
        """Hand over a marker now; `Committed` acknowledges its ``seq``."""

    def stop(self, seq: int) -> None:
        """Send the stop marker ``seq``; `LinkOwner.writer_closed` follows."""

    def abandon(self) -> None:
        """The stop is overdue: give up on the writer (kill it if it can)."""


class _QueuedTopic(NamedTuple):
    """A topic handed to the writer: its id among the messages', its cost."""

    id: int
    cost: int


class Backlog:
    """The turns and topics handed to the writer and not yet done with.

    Message ids are handed out from ``next_id``: the writer acknowledges
    "everything up to id N" (`acknowledge`), which counts turns and topics
    off what waits.

    :param next_id: the first free message id of the file.
    """

    def __init__(self, next_id: int) -> None:
        self.next_id = next_id
        #: Everything up to this id is committed (or failed).
        self.committed_id = next_id - 1
        self.turns: deque[Turn] = deque()
        self.topics: deque[_QueuedTopic] = deque()
        #: Bytes of what waits for the writer (see `MAX_WAITING_BYTES`).
        self.waiting = 0
        #: See `MAX_WAITING_BYTES`; an attribute so tests can lower it.
        self.max_bytes = MAX_WAITING_BYTES
        #: Rows are being dropped; how many messages so far.
        self.dropping = False
        self.dropped = 0
        self._drop_log = LogThrottle(ERROR_LOG_INTERVAL)

    def fits(self, cost: int) -> bool:
        """Whether ``cost`` more bytes may wait (after forgetting what is done)."""
        self.trim()
        return self.waiting + cost <= self.max_bytes

    def admit(self, turn: Turn) -> bool:
        """Let ``turn`` wait for the writer, if it `fits`; False if not."""
        cost = len(turn.data) + ITEM_COST
        if not self.fits(cost):
            return False
        self.waiting += cost
        self.turns.append(turn)
        return True

    def add_topic(self, topic_id: int, cost: int) -> None:
        """A topic of ``cost`` bytes waits for the writer (see `fits`)."""
        self.waiting += cost
        self.topics.append(_QueuedTopic(topic_id, cost))

    def acknowledge(self, last_id: int) -> bool:
        """The writer is done up to ``last_id``; True if it just caught up."""
        self.committed_id = max(self.committed_id, last_id)
        self.trim()
        topics = self.topics
        while topics and topics[0].id <= self.committed_id:
            self.waiting -= topics.popleft().cost
        if self.dropping and self.waiting <= self.max_bytes // 2:
            self.dropping = False
            return True
        return False

    def trim(self) -> None:
        """Forget queued turns the writer has finished with."""
        committed = self.committed_id
        turns = self.turns
        while turns and turns[0].first_id + turns[0].line_count - 1 <= committed:
            self.waiting -= len(turns.popleft().data) + ITEM_COST

    def drop(self, count: int, *, writer_down: bool) -> bool:
        """Count a turn (``count`` messages) or topic (0) not kept; log now?

        While the writer is gone, its own trouble says why (False).
        """
        self.dropped += count
        if writer_down:
            return False
        self.dropping = True
        return self._drop_log.report(time.monotonic()) is not None

    def unsaved(self) -> int:
        """Messages queued and not yet acknowledged."""
        return sum(turn.line_count for turn in self.turns)

    def forget(self) -> int:
        """Nobody will commit what is queued: forget it; the messages lost."""
        lost = self.unsaved()
        self.turns.clear()
        self.topics.clear()
        self.waiting = 0
        self.committed_id = self.next_id - 1
        return lost

    def queued(self, room_key: str) -> list[Turn]:
        """The queued turns of one room, oldest first."""
        return [turn for turn in self.turns if turn.room_key == room_key]

    def behind(self) -> str | None:
        """Why rows are dropped, for `trouble`, or None."""
        if not self.dropping:
            return None
        return (
            f"the writer is {self.waiting / (1 << 20):.1f} MiB behind;"
            f" {self.dropped} messages dropped"
        )


def link_to(
    writer: WriterKind,
    reactor: IReactorFromThreads,
    settings: WriterSettings,
    conn: sqlite3.Connection,
) -> Callable[[LinkOwner], WriterLink]:
    """How a store reaches its writer: a thread, or a child process.

    :param conn: the checked writer connection: the thread's from now on,
        or closed (the child opens its own; this one only proved the file
        usable).
    :return: makes the link for its owner, the store.
    """
    if writer == "process":
        from twisted_chat.history.process import ProcessLink

        conn.close()
        return lambda owner: ProcessLink(owner, reactor, settings)
    from twisted_chat.history.thread import ThreadLink

    return lambda owner: ThreadLink(owner, reactor, settings, conn)
