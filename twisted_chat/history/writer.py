"""The SQLite side of room history, and the writer child process (issue 6).

`twisted_chat.history.SqliteStore` keeps the reactor thread off the disk: the
changes it queues are committed by a writer. This module holds the frames
both ends speak and the writer that runs as a CHILD PROCESS (what every
writer shares is in `twisted_chat.history.writer_core` and
`twisted_chat.history.schema`)::

    python -m twisted_chat.history.writer PATH --flush-interval 0.1 \\
        --max-per-room 10000 --max-age-days 30

Why a process and not a thread: a writer thread in the daemon needs the
GIL for every statement it binds and every row it converts, and each time
it takes the GIL the reactor thread waits (``bench/history_fanout.py``
measured fan-out about 22 % slower with a writer thread). A child process
has its own interpreter, so the reactor only pays for serialising what it
hands over (one `marshal` blob every few milliseconds) and one pipe write.
The writer also runs at a lower priority (`NICENESS`, where a sandbox lets
it: `lower_priority`): on a machine whose
cores are all busy, the kernel gives them to the reactor (and its
clients) first, and the writer catches up after the burst. Meanwhile what
it has not read waits in a pipe enlarged to 1 MiB (`grow_pipe`), which
survives the daemon's death, and then in the daemon's memory.

The protocol is private to this package and both ends ship together.
Every frame, in both directions, is a 4-byte big-endian length followed by
a `marshal` blob. From the daemon, a frame is a list of ops (the daemon
gathers a few milliseconds of changes into one frame, so that the reactor
pays one pipe write for many turns); from the writer, a frame is one
report. Ops and reports are tuples whose first item says what they are
(named in `twisted_chat.history.writer_core`: ``OP_*`` and ``REPORT_*``).

Daemon to writer (the child's stdin), the ops:

- ``("l", first_id, room_key, room, at, data)``: what was said in a room
  in one reactor turn: ``data`` holds the lines exactly as the room's
  members were sent them (``[#room] <nick> text`` CRLF, see
  `twisted_chat.core.lines`), numbered from ``first_id`` on, all said at
  ``at``. The writer stores them as they are, one row a turn (see
  `SCHEMA_V2`), so neither the daemon's reactor nor the writer does
  work per message;
- ``("t", (room_key, room, text, set_by, set_at), id)``: a topic; ``id``
  is taken from the message ids, so that its acknowledgement (below) lets
  the daemon count it off what waits for the writer;
- ``("p", now)``: apply retention as of ``now``;
- ``("f", seq)``: a flush marker: commit everything before it now, then
  acknowledge ``seq``;
- ``("s", seq)``: like ``f``, and then close the database and exit;
- ``("r", -1)``: the daemon has closed its reader of a lost file (see
  ``"w"``): make the new one now.

Writer to daemon (the child's stdout), the reports:

- ``("c", last_id, seq)``: everything up to message ``last_id`` (or -1 if no
  message was in the batch) is finished with, and so is every marker up to
  ``seq`` (-1 if none); a failed batch is finished with too, as with the
  thread writer;
- ``("e", problem, details)``: a commit failed; ``problem`` is the sentence
  to log, ``details`` the writer's traceback (at most one a minute, with a
  count of the suppressed ones);
- ``("w", text, step)``: the history file was removed or replaced (step 1:
  the writer closed it; the daemon closes its reader and answers ``"r"``),
  a new one is ready (step 2: the daemon opens its reader again), or it
  cannot be made (step 0); see `twisted_chat.history.watch`.

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
import fcntl
import marshal
import os
import select
import signal
import sqlite3
import struct
import sys
import time
from typing import Any, Final

from twisted_chat.history.schema import (
    SCHEMA_VERSION,
    age_cutoff,
    prepare,
    set_pragmas,
    turn_row,
)
from twisted_chat.history.watch import CHECK_INTERVAL, FileWatch
from twisted_chat.history.writer_core import (
    ERROR_LOG_INTERVAL,
    MAX_BATCH,
    URGENT_OPS,
    WriterCore,
)

__all__ = [
    "ERROR_LOG_INTERVAL",
    "MAX_BATCH",
    "SCHEMA_VERSION",
    "FrameDecoder",
    "WriterCore",
    "age_cutoff",
    "encode_frame",
    "grow_pipe",
    "lower_priority",
    "main",
    "prepare",
    "turn_row",
]

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


# -- the writer process ---------------------------------------------------------


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
        watch=FileWatch(path, time.monotonic() + CHECK_INTERVAL),
    )
    decoder = FrameDecoder()
    batch: list[tuple[Any, ...]] = []
    deadline: float | None = None
    eof = False
    while True:
        urgent = False
        now = time.monotonic()
        wake = core.watch.next_check if core.watch is not None else now + 60
        if deadline is not None:
            wake = min(wake, deadline)
        readable, _, _ = select.select([stdin], [], [], max(0.0, wake - now))
        if readable:
            data = os.read(stdin, 1 << 20)
            if data:
                for ops in decoder.feed(data):
                    batch.extend(ops)
                    urgent = urgent or any(op[0] in URGENT_OPS for op in ops)
                if batch and deadline is None:
                    deadline = time.monotonic() + flush_interval
            else:
                eof = True
        now = time.monotonic()
        core.check_file(now)
        due = deadline is not None and now >= deadline
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
    Refused (above ``/proc/sys/fs/pipe-max-size``, or by a sandbox): said
    once on stderr, which the daemon logs, and the default size is kept.
    """
    if not hasattr(fcntl, "F_SETPIPE_SZ"):
        return  # not Linux
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError as e:
        sys.stderr.write(
            f"cannot enlarge its pipe to {PIPE_SIZE} bytes ({e}); keeping the"
            " default size\n"
        )


def lower_priority(niceness: int) -> None:
    """Run at `NICENESS`, or say once why not and go on at the daemon's.

    A sandbox may refuse it: systemd's ``SystemCallFilter=~@resources``
    makes ``setpriority`` fail with EPERM. The writer then competes with
    the reactor for the CPU, which costs fan-out speed, not history.
    """
    try:
        os.nice(niceness)
    except OSError as e:
        sys.stderr.write(
            f"cannot lower its priority to niceness {niceness} ({e}); writing"
            " at the daemon's priority\n"
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m twisted_chat.history.writer``."""
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
    lower_priority(args.niceness)
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
