"""The writer thread of `twisted_chat.history.sqlite.SqliteStore`.

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
from typing import TYPE_CHECKING, Any

from twisted_chat.history.watch import CHECK_INTERVAL, FileWatch
from twisted_chat.history.writer_core import (
    MARKER_OPS,
    MAX_BATCH,
    OP_STOP,
    REPORT_COMMITTED,
    URGENT_OPS,
    WriterCore,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

__all__ = ["ThreadLink"]

_Op = tuple[Any, ...]


class ThreadLink:
    """A queue to one writer thread that commits what it is handed.

    :param report: called on the writer thread with each report; it must
        hand it to the reactor thread (``callFromThread``).
    :param bug: called on the writer thread inside ``except`` for a bug.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: str,
        flush_interval: float,
        max_per_room: int,
        max_age_days: float,
        report: Callable[[tuple[Any, ...]], None],
        bug: Callable[[], None],
    ) -> None:
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        #: Set when a flush or stop marker is queued, to end the writer's
        #: wait for more of the batch.
        self._hurry = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_interval = flush_interval
        self._report = report
        self._bug = bug
        self.core = WriterCore(
            conn,
            path=path,
            max_per_room=max_per_room,
            max_age_days=max_age_days,
            send=report,
            watch=FileWatch(path, time.monotonic() + CHECK_INTERVAL),
        )

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"history-writer {self.core.path}", daemon=True
        )
        self._thread.start()

    def send(self, op: _Op) -> None:
        """Queue a change."""
        self._queue.put(op)

    def send_marker(self, op: _Op) -> None:
        """Queue a marker and cut the writer's window short."""
        self._queue.put(op)
        self._hurry.set()

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
            if batch[0][0] not in URGENT_OPS:
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
                    return
            except Exception:
                # A bug, not a disk error (the core reports those): log it
                # and answer the markers anyway, or flush() and stop() would
                # never fire.
                self._bug()
                markers = [op for op in batch if op[0] in MARKER_OPS]
                if markers:
                    self._report((REPORT_COMMITTED, -1, max(op[1] for op in markers)))
                if any(op[0] == OP_STOP for op in markers):
                    core.close()
                    return
