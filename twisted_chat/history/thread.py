"""The link to a writer thread: `ThreadLink` (issue 6).

`twisted_chat.history.sqlite.SqliteStore.open` hands the store this link
for ``writer="thread"``, and where the reactor cannot start processes: a
thread of the daemon commits what the store sends it, with the same
`~twisted_chat.history.writer_core.WriterCore` as the writer process, and
the ops and reports of `twisted_chat.history.wire` travel as they are,
through a queue and ``callFromThread``.

Why a dedicated ``threading.Thread`` and not the reactor's threadpool
(``deferToThread``): SQLite wants one writer and the batches must be
committed in the order they were queued, which one thread gives for free;
the reactor's pool has several threads, is shared with name resolution and
other blocking work (a slow commit would delay them and vice versa), and
is stopped early during reactor shutdown, while ``stop`` still has to
commit. The thread owns the write connection; it is a daemon thread, so a
process that exits without stopping the store loses at most the last
flush window, as after a crash, instead of hanging.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING

from twisted_chat.history.watch import CHECK_INTERVAL, FileWatch
from twisted_chat.history.wire import (
    MARKER_OPS,
    NO_ID,
    OP_STOP,
    REPORT_COMMITTED,
    URGENT_OPS,
    Committed,
    Marker,
)
from twisted_chat.history.writer_core import MAX_BATCH, WriterCore

if TYPE_CHECKING:
    import sqlite3

    from twisted.internet.interfaces import IReactorFromThreads

    from twisted_chat.history.side import LinkOwner, WriterSettings
    from twisted_chat.history.wire import Op, Report

__all__ = ["ThreadLink"]


class ThreadLink:
    """A `~twisted_chat.history.side.WriterLink`: a queue to one writer thread.

    :param conn: the checked writer connection; the thread owns it.
    """

    def __init__(
        self,
        owner: LinkOwner,
        reactor: IReactorFromThreads,
        settings: WriterSettings,
        conn: sqlite3.Connection,
    ) -> None:
        self._owner = owner
        self._reactor = reactor
        self._queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        #: Set when a flush or stop marker is queued, to end the writer's
        #: wait for more of the batch.
        self._hurry = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_interval = settings.flush_interval
        self.core = WriterCore(
            conn,
            path=settings.path,
            max_per_room=settings.max_per_room,
            max_age_days=settings.max_age_days,
            send=self._report,
            watch=FileWatch(settings.path, time.monotonic() + CHECK_INTERVAL),
        )

    def start(self) -> None:
        """`WriterLink` API: start the thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"history-writer {self.core.path}", daemon=True
        )
        self._thread.start()

    def send(self, op: Op) -> None:
        """`WriterLink` API: queue a change."""
        self._queue.put(op)

    def send_marker(self, op: Marker) -> None:
        """`WriterLink` API: queue a marker and cut the writer's window short."""
        self._queue.put(op)
        self._hurry.set()

    def stop(self, seq: int) -> None:
        """`WriterLink` API: queue the stop marker; the thread then ends."""
        self.send_marker(Marker(OP_STOP, seq))

    def abandon(self) -> None:
        """`WriterLink` API: stop waiting (a daemon thread dies with us)."""
        self._owner.writer_closed()

    def _report(self, report: Report) -> None:
        """On the writer thread: hand ``report`` to the reactor thread."""
        self._reactor.callFromThread(self._owner.writer_said, report)

    def _closed(self) -> None:
        """On the writer thread: the stop is done (after the last report)."""
        self._reactor.callFromThread(self._owner.writer_closed)

    def _run(self) -> None:
        """The writer loop: gather a batch for flush_interval, commit it.

        It sleeps through the window and then takes everything queued at
        once, instead of waking up for every change: one wake-up per window
        means the writer takes the GIL from the reactor thread a few times
        a second. Markers cut the window short through ``_hurry``. While
        idle it wakes every `CHECK_INTERVAL` to look at its file.
        """
        core = self.core
        while True:
            try:
                batch = [self._queue.get(timeout=CHECK_INTERVAL)]
            except queue.Empty:
                core.check_file(time.monotonic())
                continue
            if batch[0].kind not in URGENT_OPS:
                self._hurry.wait(self._flush_interval)
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
                core.check_file(time.monotonic())
                if core.write_batch(batch):
                    self._closed()
                    return
            except Exception:
                # A bug, not a disk error (the core reports those): log it
                # and answer the markers anyway, or flush() and stop() would
                # never fire.
                self._owner._log.failure(
                    "in the history writer for {path}", path=core.path
                )
                markers = [op for op in batch if isinstance(op, Marker)]
                markers = [op for op in markers if op.kind in MARKER_OPS]
                if markers:
                    seq = max(op.seq for op in markers)
                    self._report(Committed(REPORT_COMMITTED, NO_ID, seq))
                if any(op.kind == OP_STOP for op in markers):
                    core.close()
                    self._closed()
                    return
