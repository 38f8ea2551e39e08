"""What every history writer does with the ops it is handed (issue 6).

`WriterCore` commits batches of the ops of `twisted_chat.history.wire` to
one connection and reports back; the writer process
(`twisted_chat.history.writer`) and the writer thread
(`twisted_chat.history.thread`) both drive one. Kept apart from their
loops so that it can be tested without a process or a thread.
Standard library only: it runs in the writer child.
"""

from __future__ import annotations

import sqlite3
import time
import traceback
from typing import TYPE_CHECKING, Final

from twisted_chat.core.throttle import LogThrottle
from twisted_chat.history.schema import (
    TopicRow,
    TurnRow,
    checkpoint_and_close,
    commit,
    prune,
    turn_row,
)
from twisted_chat.history.wire import (
    FILE_FAILED,
    FILE_LOST,
    FILE_READY,
    NO_ID,
    NO_SEQ,
    OP_REOPEN,
    OP_STOP,
    REPORT_COMMITTED,
    REPORT_ERROR,
    REPORT_FILE,
    Committed,
    Failed,
    FileChanged,
    Prune,
    Topic,
    Turn,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from twisted_chat.history.watch import FileWatch
    from twisted_chat.history.wire import Op, Report

__all__ = ["ERROR_LOG_INTERVAL", "MAX_BATCH", "WriterCore"]

#: A failing disk fails every batch; log the first failure and then at most
#: one summary every this many seconds, so the log stays readable.
ERROR_LOG_INTERVAL: Final = 60.0

#: The most queued changes the writer commits in one transaction.
MAX_BATCH: Final = 50_000


class WriterCore:
    """Commits batches of ops to one connection, and reports on them.

    :param send: called with each report for the daemon.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: str,
        max_per_room: int,
        max_age_days: float,
        send: Callable[[Report], None],
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
        #: file is made once the daemon has closed its reader (`OP_REOPEN`).
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
        or replaced, it closes the old connection and reports `FILE_LOST`:
        the daemon closes its reader of the old file (SQLite removes a WAL
        file by name when its last connection closes, so the old reader
        must be gone before a new WAL exists) and answers with
        `OP_REOPEN`, upon which the new file is made (`_recreate`).
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
        self._send(FileChanged(REPORT_FILE, text, FILE_LOST))

    def _recreate(self) -> None:
        """Make the new file at the path; report `FILE_READY` when done."""
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
                self._send(FileChanged(REPORT_FILE, text, FILE_FAILED))
            return
        self._retry = False
        self._topics = []
        gap, self._gap = self._gap, 0
        lost = f"; {gap} messages said meanwhile are not saved" if gap else ""
        text = f"started a new history file at {self.path}{lost}"
        self._send(FileChanged(REPORT_FILE, text, FILE_READY))

    def write_batch(self, batch: Sequence[Op]) -> bool:
        """Commit ``batch`` in order, report it; True if it asked to stop."""
        turns: list[TurnRow] = []
        topics: list[TopicRow] = []
        done_id = NO_ID
        seq = NO_SEQ
        stop = False
        for op in batch:
            if isinstance(op, Turn):
                turns.append(turn_row(op))
            elif isinstance(op, Topic):
                topics.append(op.row)
                # The id the daemon gave it, to count it off its backlog.
                done_id = max(done_id, op.id)
            elif isinstance(op, Prune):
                # Retention applies to what was queued before it: commit
                # that first, then prune in a transaction of its own.
                done_id = max(done_id, self._commit(turns, topics))
                turns, topics = [], []
                self._prune(op.now)
            elif op.kind == OP_REOPEN:  # the daemon closed its reader of the lost file
                done_id = max(done_id, self._commit(turns, topics))
                turns, topics = [], []
                if self._awaiting_reader:
                    self._recreate()
            else:  # OP_FLUSH or OP_STOP
                seq = max(seq, op.seq)
                stop = stop or op.kind == OP_STOP
        done_id = max(done_id, self._commit(turns, topics))
        if stop:
            self.close()
        if done_id != NO_ID or seq != NO_SEQ:
            self._send(Committed(REPORT_COMMITTED, done_id, seq))
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

    def _commit(self, turns: list[TurnRow], topics: list[TopicRow]) -> int:
        """Commit; return the last message id of ``turns`` (`NO_ID` if none)."""
        if not turns and not topics:
            return NO_ID
        try:
            if self.conn is None:
                if self._awaiting_reader or self._retry:
                    self._gap += sum(turn.line_count for turn in turns)
                    return self._last_id(turns)
                raise sqlite3.ProgrammingError("the writer connection is closed")
            commit(self.conn, turns, topics)
        except sqlite3.Error:
            count = sum(turn.line_count for turn in turns)
            self._report(
                f"{count} messages and {len(topics)} topics could not"
                " be saved to {path}"
            )
        return self._last_id(turns)

    @staticmethod
    def _last_id(turns: list[TurnRow]) -> int:
        if not turns:
            return NO_ID
        last = turns[-1]
        return last.first_id + last.line_count - 1

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
        self._send(Failed(REPORT_ERROR, text, traceback.format_exc()))
