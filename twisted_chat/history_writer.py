"""The SQLite side of room history, and the writer child process (issue 6).

`twisted_chat.history.SqliteStore` keeps the reactor thread off the disk: the
changes it queues are committed by a writer. This module holds what every
writer shares (the schema, the start-up checks, the batched INSERT, the
retention DELETEs) and the writer that runs as a CHILD PROCESS::

    python -m twisted_chat.history_writer PATH --flush-interval 0.1 \\
        --max-per-room 10000 --max-age-days 30

Why a process and not a thread: a writer thread in the daemon needs the
GIL for every statement it binds and every row it converts, and each time
it takes the GIL the reactor thread waits (``bench/history_fanout.py``
measured fan-out about 22 % slower with a writer thread). A child process
has its own interpreter, so the reactor only pays for serialising what it
hands over (one `marshal` blob every few milliseconds) and one pipe write.
The writer also runs at a lower priority (`NICENESS`): on a machine whose
cores are all busy, the kernel gives them to the reactor (and its
clients) first, and the writer catches up after the burst. Meanwhile what
it has not read waits in a pipe enlarged to 1 MiB (`grow_pipe`), which
survives the daemon's death, and then in the daemon's memory.

The protocol is private to this package and both ends ship together.
Every frame, in both directions, is a 4-byte big-endian length followed by
a `marshal` blob. From the daemon, a frame is a list of ops (the daemon
gathers a few milliseconds of changes into one frame, so that the reactor
pays one pipe write for many turns); from the writer, a frame is one
report. Ops and reports are tuples whose first item says what they are.

Daemon to writer (the child's stdin), the ops:

- ``("l", first_id, room_key, room, at, data)``: what was said in a room
  in one reactor turn: ``data`` holds the lines exactly as the room's
  members were sent them (``[#room] <nick> text`` CRLF, see
  `twisted_chat.lines`), numbered from ``first_id`` on, all said at
  ``at``. The writer stores them as they are, one row a turn (see
  `SCHEMA_V2`), so neither the daemon's reactor nor the writer does
  work per message;
- ``("t", (room_key, room, text, set_by, set_at))``: a topic;
- ``("p", now)``: apply retention as of ``now``;
- ``("f", seq)``: a flush marker: commit everything before it now, then
  acknowledge ``seq``;
- ``("s", seq)``: like ``f``, and then close the database and exit.

Writer to daemon (the child's stdout), the reports:

- ``("c", last_id, seq)``: everything up to message ``last_id`` (or -1 if no
  message was in the batch) is finished with, and so is every marker up to
  ``seq`` (-1 if none); a failed batch is finished with too, as with the
  thread writer;
- ``("e", problem, details)``: a commit failed; ``problem`` is the sentence
  to log, ``details`` the writer's traceback (at most one a minute, with a
  count of the suppressed ones).

End of file on stdin means the same as ``s``: the writer commits what it
has received and exits. So after ``kill -9`` of the daemon the writer still
commits every change the daemon had written to the pipe; only what the
daemon had not yet handed to the kernel (at most the current reactor turn)
and what the writer had not read yet when it was killed too is lost.

The writer ignores SIGINT and SIGTERM: a Ctrl-C in a terminal or systemd's
SIGTERM to the whole control group would otherwise end it before the
daemon's clean shutdown has sent it the last messages. It exits when the
daemon closes the pipe, which happens on every kind of daemon exit.

This module imports neither Twisted nor `twisted_chat.history`, so that the
child starts quickly and the daemon can import it without a cycle.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import marshal
import os
import select
import signal
import sqlite3
import struct
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any, Final

from twisted_chat.throttle import LogThrottle

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "SCHEMA_VERSION",
    "FrameDecoder",
    "WriterCore",
    "encode_frame",
    "grow_pipe",
    "main",
    "turn_row",
]

#: Stored in ``PRAGMA user_version``; bump it and add a migration step in
#: `migrate` when the schema changes.
SCHEMA_VERSION: Final = 2

_SECONDS_PER_DAY: Final = 86_400

#: A failing disk fails every batch; log the first failure and then at most
#: one summary every this many seconds, so the log stays readable.
ERROR_LOG_INTERVAL: Final = 60.0

#: The most queued changes the writer commits in one transaction.
MAX_BATCH: Final = 50_000

_LENGTH: Final = struct.Struct(">I")

#: How much nicer than the daemon the writer process runs. History must
#: never slow the fan-out (issue 6): when both run flat out on a small
#: machine, the kernel gives the reactor the CPU first and the writer
#: catches up as soon as the burst is over. At chat rates below the
#: machine's limit it changes nothing. ``bench/history_fanout.py``
#: measured fan-out 17.5 % slower with history at niceness 0 and 2.9 % at
#: 10 (medians of 5 runs each), although the writer spends only ~0.5 us of
#: CPU per message; most likely because at niceness 0 the kernel lets the
#: writer, woken by each pipe write, preempt the reactor or its clients.
NICENESS: Final = 10

#: The bytes the daemon's pipe to the writer may hold (see `grow_pipe`):
#: Linux's default limit for an unprivileged process, 1 MiB.
PIPE_SIZE: Final = 1 << 20

#: What a room said in one reactor turn, as its row on disk: (first_id,
#: room_key, room, at, count, lines).
Turn = tuple[int, str, str, float, int, str]
#: One topic as its row on disk: (room_key, room, text, set_by, set_at).
TopicRow = tuple[str, str, str, str, float]

#: Why a row per turn and not per message: SQLite costs about a
#: microsecond per row inserted (binding, the table and its index), which
#: on a busy two-core machine came straight off the fan-out; a turn of a
#: busy room holds tens of messages for the price of one row. The lines
#: are kept as sent, ``[#room] <nick> text`` CRLF, so the file reads like
#: the chat (``SELECT datetime(at, 'unixepoch'), lines FROM turns``); the
#: daemon takes them apart when it replays them
#: (`twisted_chat.lines.parse_room_lines`). Message ids run on across
#: turns: a turn's messages are ``first_id`` .. ``first_id + count - 1``.
SCHEMA_V2: Final = (
    """
    CREATE TABLE turns (
        first_id INTEGER PRIMARY KEY,
        room_key TEXT NOT NULL,
        room TEXT NOT NULL,
        at REAL NOT NULL,
        count INTEGER NOT NULL,
        lines TEXT NOT NULL
    )
    """,
    "CREATE INDEX turns_room ON turns (room_key, first_id)",
    """
    CREATE TABLE IF NOT EXISTS topics (
        room_key TEXT PRIMARY KEY,
        room TEXT NOT NULL,
        text TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_at REAL NOT NULL
    )
    """,
)

#: Version 1 kept a row per message; each becomes a turn of one line.
MIGRATE_V1: Final = (
    *SCHEMA_V2,
    """
    INSERT INTO turns (first_id, room_key, room, at, count, lines)
    SELECT id, room_key, room, at, 1,
        '[' || room || '] '
        || CASE WHEN action THEN '* ' || sender || ' ' ELSE '<' || sender || '> ' END
        || text || char(13, 10)
    FROM messages ORDER BY id
    """,
    "DROP TABLE messages",
)

INSERT_TURN: Final = (
    "INSERT INTO turns (first_id, room_key, room, at, count, lines)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)

UPSERT_TOPIC: Final = (
    "INSERT OR REPLACE INTO topics (room_key, room, text, set_by, set_at)"
    " VALUES (?, ?, ?, ?, ?)"
)

#: The oldest turn of a room that retention keeps whole or in part: the
#: newest turn at which the room's newest ``?2`` messages are reached.
_BOUNDARY_TURN: Final = """
    SELECT first_id, count, newer FROM (
        SELECT first_id, count,
            sum(count) OVER (ORDER BY first_id DESC ROWS UNBOUNDED PRECEDING)
                AS newer
        FROM turns WHERE room_key = ?1
    ) WHERE newer >= ?2 ORDER BY first_id DESC LIMIT 1
"""


def turn_row(first_id: int, room_key: str, room: str, at: float, data: bytes) -> Turn:
    """The row of an ``"l"`` op.

    The core's lines are always valid UTF-8; "replace" makes sure a bug
    there costs a few characters, not the writer.
    """
    lines = data.decode("utf-8", "replace")
    return (first_id, room_key, room, at, data.count(b"\n"), lines)


def age_cutoff(now: float, max_age_days: float) -> float | None:
    """The oldest ``at`` that retention keeps, or None to keep every age."""
    if max_age_days <= 0:
        return None
    return now - max_age_days * _SECONDS_PER_DAY


def set_pragmas(conn: sqlite3.Connection) -> None:
    """WAL mode and ``synchronous=NORMAL``; ValueError if WAL is refused."""
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        raise ValueError(f"cannot switch it to WAL mode (got {mode!r})")
    conn.execute("PRAGMA synchronous = NORMAL")
    # The newest pages of the table and its index are written again and
    # again; a larger WAL (checkpointed every 4,096 pages, ~16 MiB, not
    # 1,000) and page cache let them reach the main file far less often.
    conn.execute("PRAGMA wal_autocheckpoint = 4096")
    conn.execute("PRAGMA cache_size = -16384")


def prepare(conn: sqlite3.Connection) -> None:
    """Set the file up for the writer; raise ValueError if it is unusable."""
    set_pragmas(conn)
    # Reads every page once: a damaged file is refused at start-up rather
    # than failing commits in the middle of a chat.
    (check,) = conn.execute("PRAGMA quick_check(1)").fetchone()
    if check != "ok":
        # quick_check reports on several lines; twistd shows one line.
        found = " ".join(str(check).split())
        raise ValueError(
            f"it is damaged ({found}); move it away or restore it from a backup"
        )
    migrate(conn)


def migrate(conn: sqlite3.Connection) -> None:
    """Create or upgrade the schema; raise ValueError for files not ours."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"it has schema version {version}, newer than this program's"
            f" ({SCHEMA_VERSION}); upgrade twisted-chat or restore a backup"
        )
    if version == SCHEMA_VERSION:
        return
    if version == 0:
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        ).fetchone()[0]
        if tables:
            raise ValueError(
                "it is an SQLite database of another program (it has tables"
                " but no twisted-chat schema version)"
            )
    steps = SCHEMA_V2 if version == 0 else MIGRATE_V1
    # An explicit transaction: the sqlite3 module runs DDL in autocommit,
    # and a half-made schema would read as "another program's" next time.
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in steps:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def commit(
    conn: sqlite3.Connection, turns: Sequence[Turn], topics: Sequence[TopicRow]
) -> None:
    """Insert turns and upsert topics in one transaction (sqlite3.Error)."""
    if not turns and not topics:
        return
    with conn:
        if turns:
            conn.executemany(INSERT_TURN, turns)
        if topics:
            conn.executemany(UPSERT_TOPIC, topics)


def prune(
    conn: sqlite3.Connection, now: float, max_per_room: int, max_age_days: float
) -> None:
    """Delete what retention removes, in one transaction (sqlite3.Error).

    A room keeps exactly its newest ``max_per_room`` messages: the oldest
    turn kept loses the lines before them.
    """
    cutoff = age_cutoff(now, max_age_days)
    with conn:
        if cutoff is not None:
            conn.execute("DELETE FROM turns WHERE at < ?", (cutoff,))
        if max_per_room <= 0:
            return
        rooms = conn.execute("SELECT DISTINCT room_key FROM turns").fetchall()
        for (key,) in rooms:
            found = conn.execute(_BOUNDARY_TURN, (key, max_per_room)).fetchone()
            if found is None:
                continue  # fewer messages than the limit
            first_id, count, newer = found
            conn.execute(
                "DELETE FROM turns WHERE room_key = ? AND first_id < ?",
                (key, first_id),
            )
            extra = newer - max_per_room
            if extra:
                (lines,) = conn.execute(
                    "SELECT lines FROM turns WHERE first_id = ?", (first_id,)
                ).fetchone()
                kept = "\r\n".join(lines.split("\r\n")[extra:])
                conn.execute(
                    "UPDATE turns SET first_id = ?, count = ?, lines = ?"
                    " WHERE first_id = ?",
                    (first_id + extra, count - extra, kept, first_id),
                )


def checkpoint_and_close(conn: sqlite3.Connection) -> None:
    """Fold the WAL into the main file, then close (sqlite3.Error).

    After this the file is complete on its own, e.g. for copying.
    """
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


# -- framing -------------------------------------------------------------------


def encode_frame(value: Any) -> bytes:
    """One frame: the length, then the `marshal` blob of ``value``."""
    blob = marshal.dumps(value)
    return _LENGTH.pack(len(blob)) + blob


class FrameDecoder:
    """Split a byte stream into the values of its frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return the values of the frames it completed."""
        buffer = self._buffer
        buffer += data
        values: list[Any] = []
        start = 0
        size = _LENGTH.size
        while len(buffer) - start >= size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            end = start + size + length
            if end > len(buffer):
                break
            # Only our own end of the pipe writes these frames.
            values.append(marshal.loads(buffer[start + size : end]))  # noqa: S302
            start = end
        if start:
            del buffer[:start]
        return values


# -- the writer ----------------------------------------------------------------


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
    ) -> None:
        self.conn: sqlite3.Connection | None = conn
        self.path = path
        self.max_per_room = max_per_room
        self.max_age_days = max_age_days
        self._send = send
        self._errors = LogThrottle(ERROR_LOG_INTERVAL)

    def write_batch(self, batch: Sequence[tuple[Any, ...]]) -> bool:
        """Commit ``batch`` in order, report it; True if it asked to stop."""
        turns: list[Turn] = []
        topics: list[TopicRow] = []
        last_id = -1
        seq = -1
        stop = False
        for op in batch:
            kind = op[0]
            if kind == "l":
                turns.append(turn_row(*op[1:]))
            elif kind == "t":
                topics.append(op[1])
            elif kind == "p":
                # Retention applies to what was queued before it: commit
                # that first, then prune in a transaction of its own.
                last_id = self._commit(turns, topics, last_id)
                turns, topics = [], []
                self._prune(op[1])
            else:  # "f" or "s"
                seq = max(seq, op[1])
                stop = stop or kind == "s"
        last_id = self._commit(turns, topics, last_id)
        if stop:
            self.close()
        if last_id >= 0 or seq >= 0:
            self._send(("c", last_id, seq))
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

    def _commit(self, turns: list[Turn], topics: list[TopicRow], last_id: int) -> int:
        if not turns and not topics:
            return last_id
        try:
            if self.conn is None:
                raise sqlite3.ProgrammingError("the writer connection is closed")
            commit(self.conn, turns, topics)
        except sqlite3.Error:
            count = sum(turn[4] for turn in turns)
            self._report(
                f"{count} messages and {len(topics)} topics could not"
                " be saved to {path}"
            )
        if not turns:
            return last_id
        first_id, *_, count, _ = turns[-1]
        return first_id + count - 1

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
        self._send(("e", text, traceback.format_exc()))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def run(
    path: str,
    *,
    flush_interval: float,
    max_per_room: int,
    max_age_days: float,
    stdin: int = 0,
    stdout: int = 1,
) -> int:
    """The child's loop: gather ops for ``flush_interval``, commit, repeat.

    A batch is committed ``flush_interval`` seconds after its first op
    arrived, at once when a flush or stop marker arrives, or when it holds
    `MAX_BATCH` ops. Returns the exit status.
    """
    daemon_gone = False

    def send(value: tuple[Any, ...]) -> None:
        nonlocal daemon_gone
        if daemon_gone:
            return
        try:
            _write_all(stdout, encode_frame(value))
        except OSError:
            daemon_gone = True  # keep committing what was received

    try:
        conn = sqlite3.connect(path)
        set_pragmas(conn)
    except (sqlite3.Error, ValueError) as e:
        sys.stderr.write(f"cannot open {path}: {e}\n")
        return 1
    core = WriterCore(
        conn,
        path=path,
        max_per_room=max_per_room,
        max_age_days=max_age_days,
        send=send,
    )
    decoder = FrameDecoder()
    batch: list[tuple[Any, ...]] = []
    deadline: float | None = None
    eof = False
    while True:
        urgent = False
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        readable, _, _ = select.select([stdin], [], [], timeout)
        if readable:
            data = os.read(stdin, 1 << 20)
            if data:
                for ops in decoder.feed(data):
                    batch.extend(ops)
                    urgent = urgent or any(op[0] in ("f", "s") for op in ops)
                if batch and deadline is None:
                    deadline = time.monotonic() + flush_interval
            else:
                eof = True
        due = deadline is not None and time.monotonic() >= deadline
        if batch and (eof or urgent or due or len(batch) >= MAX_BATCH):
            if core.write_batch(batch):
                return 0
            batch = []
            deadline = None
        if eof:
            core.close()
            return 0


def grow_pipe(fd: int) -> None:
    """Let the pipe ``fd`` hold `PIPE_SIZE` bytes, where Linux allows it.

    At `NICENESS` the writer can fall behind while the machine is busy;
    what waits in the kernel's pipe still reaches the file if the daemon
    is killed, while what waits in the daemon's own buffer is lost.
    """
    # Not Linux, or above /proc/sys/fs/pipe-max-size: keep the default.
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m twisted_chat.history_writer``."""
    parser = argparse.ArgumentParser(
        description="The history writer of twisted-chat (started by the daemon)."
    )
    parser.add_argument("path")
    parser.add_argument("--flush-interval", type=float, default=0.1)
    parser.add_argument("--max-per-room", type=int, default=0)
    parser.add_argument("--max-age-days", type=float, default=0.0)
    parser.add_argument("--niceness", type=int, default=NICENESS)
    args = parser.parse_args(argv)
    # Reports go to the pipe that was our stdout; anything else printed
    # (a warning, a stray print) goes to stderr, which the daemon logs,
    # instead of garbling the reports.
    reports = os.dup(1)
    os.dup2(2, 1)
    # The daemon ends us by closing the pipe, after its last messages.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.nice(args.niceness)
    grow_pipe(0)
    return run(
        args.path,
        flush_interval=args.flush_interval,
        max_per_room=args.max_per_room,
        max_age_days=args.max_age_days,
        stdout=reports,
    )


if __name__ == "__main__":
    sys.exit(main())
