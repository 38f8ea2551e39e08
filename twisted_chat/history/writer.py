"""The history writer as a child process of the daemon (issue 6).

The daemon's store (`twisted_chat.history.sqlite.SqliteStore`, over the
link of `twisted_chat.history.process`) starts it as::

    python -m twisted_chat.history.writer PATH --flush-interval 0.1 \\
        --max-per-room 10000 --max-age-days 30

and speaks the frames of `twisted_chat.history.wire` with it: ops on its
stdin, reports on its stdout; stderr lines are logged by the daemon. What
it does with the ops is `twisted_chat.history.writer_core.WriterCore`'s;
this module is the loop around it and the process's own set-up.

Why a process and not a thread: a writer thread needs the GIL for every
statement it binds and every row it converts, and each time it takes the
GIL the reactor thread waits. A child process has its own interpreter, so
the reactor only pays for serialising what it hands over (one `marshal`
blob every few milliseconds) and one pipe write. The writer also runs at a
lower priority (`NICENESS`, where a sandbox lets it: `lower_priority`): on
a machine whose cores are all busy, the kernel gives them to the reactor
(and its clients) first, and the writer catches up after the burst.
Meanwhile what it has not read waits in a pipe enlarged to `PIPE_SIZE`
(`grow_pipe`), which survives the daemon's death, and then in the daemon's
memory. BENCHMARKS.md has the measurements behind both choices.

End of file on stdin means the same as `OP_STOP`: the writer commits what
it has received and exits. So after ``kill -9`` of the daemon the writer
still commits every change the daemon had written to the pipe; only what
the daemon had not yet handed to the kernel (at most the current reactor
turn) and what the writer had not read yet when it was killed too is lost.

The writer ignores SIGINT and SIGTERM: a Ctrl-C in a terminal or systemd's
SIGTERM to the whole control group would otherwise end it before the
daemon's clean shutdown has sent it the last messages. It exits when the
daemon closes the pipe, which happens on every kind of daemon exit.

This module imports neither Twisted nor anything of the daemon's side (the
standard library, the package's schema and the wire format only), so that
the child starts quickly.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import signal
import sqlite3
import sys
import time
from typing import TYPE_CHECKING, Final

from twisted_chat.history.schema import set_pragmas
from twisted_chat.history.watch import CHECK_INTERVAL, FileWatch
from twisted_chat.history.wire import (
    URGENT_OPS,
    FrameDecoder,
    decode_ops,
    encode_report,
)
from twisted_chat.history.writer_core import MAX_BATCH, WriterCore

if TYPE_CHECKING:
    from twisted_chat.history.wire import Op, Report

__all__ = ["NICENESS", "PIPE_SIZE", "grow_pipe", "lower_priority", "main", "run"]

#: How much nicer than the daemon the writer process runs. History must
#: never slow the fan-out (issue 6): when both run flat out on a small
#: machine, the kernel gives the reactor the CPU first and the writer
#: catches up as soon as the burst is over. At chat rates below the
#: machine's limit it changes nothing. At niceness 0 the kernel lets the
#: writer, woken by each pipe write, preempt the reactor or its clients
#: (BENCHMARKS.md, "History").
NICENESS: Final = 10

#: The bytes the daemon's pipe to the writer may hold (see `grow_pipe`):
#: Linux's default limit for an unprivileged process, 1 MiB.
PIPE_SIZE: Final = 1 << 20


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

    def send(value: Report) -> None:
        nonlocal daemon_gone
        if daemon_gone:
            return
        try:
            _write_all(stdout, encode_report(value))
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
    batch: list[Op] = []
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
                for frame in decoder.feed(data):
                    ops = decode_ops(frame)
                    batch.extend(ops)
                    urgent = urgent or any(op.kind in URGENT_OPS for op in ops)
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
