"""What every history writer does with the ops it is handed (issue 6).

`WriterCore` commits batches of the ops of `twisted_chat.history.writer`
to one connection and reports back; the writer process and the writer
thread of `twisted_chat.history.sqlite.SqliteStore` both drive one. Kept
apart from the loops so that it can be tested without a process.
Standard library only: it runs in the writer child.
"""

from __future__ import annotations

import sqlite3
import time
import traceback
from typing import TYPE_CHECKING, Any, Final

from twisted_chat.core.throttle import LogThrottle
from twisted_chat.history.schema import (
    TopicRow,
    Turn,
    checkpoint_and_close,
    commit,
    prune,
    turn_row,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from twisted_chat.history.watch import FileWatch

__all__ = [
    "ERROR_LOG_INTERVAL",
    "FILE_FAILED",
    "FILE_LOST",
    "FILE_READY",
    "MARKER_OPS",
    "MAX_BATCH",
    "OP_FLUSH",
    "OP_LINES",
    "OP_PRUNE",
    "OP_REOPEN",
    "OP_STOP",
    "OP_TOPIC",
    "REPORT_COMMITTED",
    "REPORT_ERROR",
    "REPORT_FILE",
    "URGENT_OPS",
    "WriterCore",
]

#: A failing disk fails every batch; log the first failure and then at most
#: one summary every this many seconds, so the log stays readable.
ERROR_LOG_INTERVAL: Final = 60.0

#: The most queued changes the writer commits in one transaction.
MAX_BATCH: Final = 50_000

# The first item of the ops and reports of `twisted_chat.history.writer`
# (its docstring says what each carries).
OP_LINES: Final = "l"
OP_TOPIC: Final = "t"
OP_PRUNE: Final = "p"
OP_FLUSH: Final = "f"
OP_STOP: Final = "s"
OP_REOPEN: Final = "r"
REPORT_COMMITTED: Final = "c"
REPORT_ERROR: Final = "e"
REPORT_FILE: Final = "w"
#: The step a `REPORT_FILE` says: the new file cannot be made, the writer
#: closed the lost one (the daemon answers `OP_REOPEN`), the new one is ready.
FILE_FAILED: Final = 0
FILE_LOST: Final = 1
FILE_READY: Final = 2

#: Ops that carry a ``seq`` to acknowledge.
MARKER_OPS: Final = (OP_FLUSH, OP_STOP)
#: Ops the writer acts on at once, without waiting for the rest of a batch.
URGENT_OPS: Final = (OP_FLUSH, OP_STOP, OP_REOPEN)


class WriterCore:
    """Commits batches of ops (the frames above) to one connection.

    Shared by nothing else: the child's loop feeds it ops and sends what it
    returns. Kept apart from the loop so that it can be tested without a
    process.

    :param send: called with each frame's value to report to the daemon.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: str,
        max_per_room: int,
        max_age_days: float,
        send: Callable[[tuple[Any, ...]], None],
        watch: FileWatch | None = None,
    ) -> None:
        self.conn: sqlite3.Connection | None = conn
        self.path = path
        self.max_per_room = max_per_room
        self.max_age_days = max_age_days
        self._send = send
        self._errors = LogThrottle(ERROR_LOG_INTERVAL)
        self.watch = watch
        #: The file went away: the old connection is closed, and the new
        #: file is made once the daemon has closed its reader (op ``"r"``).
        self._awaiting_reader = False
        #: Making the new file failed; try again at the next check.
        self._retry = False
        #: Topics read from the lost file, for the new one.
        self._topics: list[TopicRow] = []
        #: Messages that came while there was no file to write them to.
        self._gap = 0
        self._file_errors = LogThrottle(ERROR_LOG_INTERVAL)

    def check_file(self, now: float) -> None:
        """Make sure commits still reach a file at the path (see `FileWatch`).

        Cheap when nothing is due: one compare. When the file was removed
        or replaced, it closes the old connection and reports ``("w", text,
        1)``: the daemon closes its reader of the old file (SQLite removes
        a WAL file by name when its last connection closes, so the old
        reader must be gone before a new WAL exists) and answers with the
        op ``("r", -1)``, upon which the new file is made (`_recreate`).
        """
        watch = self.watch
        if watch is None or not watch.due(now):
            return
        problem = watch.problem(now)
        if self._awaiting_reader:
            return
        if self._retry:
            self._recreate()
            return
        if problem is None:
            return
        old, self.conn = self.conn, None
        self._topics = watch.release(old)
        self._awaiting_reader = True
        text = (
            f"the history file {self.path} {problem} while the daemon ran;"
            " the history it held is lost; starting a new file"
        )
        self._send((REPORT_FILE, text, FILE_LOST))

    def _recreate(self) -> None:
        """Make the new file at the path; report ``("w", text, 2)`` when done."""
        self._awaiting_reader = False
        if self.watch is None:
            return
        try:
            self.conn = self.watch.reopen(self._topics)
        except (sqlite3.Error, ValueError, OSError) as e:
            self._retry = True
            if self._file_errors.report(time.monotonic()) is not None:
                text = (
                    f"cannot make a new history file at {self.path}: {e};"
                    " history is not saved"
                )
                self._send((REPORT_FILE, text, FILE_FAILED))
            return
        self._retry = False
        self._topics = []
        gap, self._gap = self._gap, 0
        lost = f"; {gap} messages said meanwhile are not saved" if gap else ""
        text = f"started a new history file at {self.path}{lost}"
        self._send((REPORT_FILE, text, FILE_READY))

    def write_batch(self, batch: Sequence[tuple[Any, ...]]) -> bool:
        """Commit ``batch`` in order, report it; True if it asked to stop."""
        turns: list[Turn] = []
        topics: list[TopicRow] = []
        done_id = -1
        seq = -1
        stop = False
        for op in batch:
            kind = op[0]
            if kind == OP_LINES:
                turns.append(turn_row(*op[1:]))
            elif kind == OP_TOPIC:
                topics.append(op[1])
                if len(op) > 2:  # the id the daemon gave it, to bound its queue
                    done_id = max(done_id, op[2])
            elif kind == OP_REOPEN:  # the daemon closed its reader of the lost file
                done_id = max(done_id, self._commit(turns, topics))
                turns, topics = [], []
                if self._awaiting_reader:
                    self._recreate()
            elif kind == OP_PRUNE:
                # Retention applies to what was queued before it: commit
                # that first, then prune in a transaction of its own.
                done_id = max(done_id, self._commit(turns, topics))
                turns, topics = [], []
                self._prune(op[1])
            else:  # "f" or "s"
                seq = max(seq, op[1])
                stop = stop or kind == OP_STOP
        done_id = max(done_id, self._commit(turns, topics))
        if stop:
            self.close()
        if done_id >= 0 or seq >= 0:
            self._send((REPORT_COMMITTED, done_id, seq))
        return stop

    def close(self) -> None:
        """Checkpoint and close the database (once)."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            checkpoint_and_close(conn)
        except sqlite3.Error:
            self._report("closing {path} failed")

    def _commit(self, turns: list[Turn], topics: list[TopicRow]) -> int:
        """Commit; return the last message id of ``turns`` (-1 if none)."""
        if not turns and not topics:
            return -1
        try:
            if self.conn is None:
                if self._awaiting_reader or self._retry:
                    self._gap += sum(turn[4] for turn in turns)
                    return self._last_id(turns)
                raise sqlite3.ProgrammingError("the writer connection is closed")
            commit(self.conn, turns, topics)
        except sqlite3.Error:
            count = sum(turn[4] for turn in turns)
            self._report(
                f"{count} messages and {len(topics)} topics could not"
                " be saved to {path}"
            )
        return self._last_id(turns)

    @staticmethod
    def _last_id(turns: list[Turn]) -> int:
        if not turns:
            return -1
        first_id, *_, count, _ = turns[-1]
        return int(first_id + count - 1)

    def _prune(self, now: float) -> None:
        if self.conn is None:
            return
        try:
            prune(self.conn, now, self.max_per_room, self.max_age_days)
        except sqlite3.Error:
            self._report("pruning {path} failed")

    def _report(self, text: str) -> None:
        """Report the current exception, at most once a minute."""
        held = self._errors.report(time.monotonic())
        if held is None:
            return
        text = text.replace("{path}", self.path)
        if held:
            text += f" ({held} similar errors since the last report)"
        self._send((REPORT_ERROR, text, traceback.format_exc()))
