"""Room history written by a child process: `ProcessSqliteStore` (issue 6).

The daemon's choice: `SqliteStore`'s reactor side, with the writer moved to
``python -m twisted_chat.history.writer`` so that it never takes the GIL
from the reactor.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, cast

from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IPushProducer, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from zope.interface import implementer

from twisted_chat.history.side import _Op
from twisted_chat.history.sqlite import SqliteStore
from twisted_chat.history.writer import FrameDecoder, encode_frame
from twisted_chat.history.writer_core import OP_LINES, OP_STOP, REPORT_COMMITTED

if TYPE_CHECKING:
    import sqlite3

    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import (
        IConsumer,
        IDelayedCall,
        IProcessTransport,
    )
    from twisted.python.failure import Failure

__all__ = ["ProcessSqliteStore"]

#: How long `ProcessSqliteStore` gathers changes before it writes them to
#: the writer's pipe, in seconds: after ``kill -9`` of the daemon, at most
#: this much (plus the current turn) is lost, not a whole flush window.
_PIPE_DELAY: Final = 0.01

#: About how many bytes of lines one frame to the writer holds at most.
_FRAME_BYTES: Final = 256 << 10

#: The longest wait before a dead writer is started again, in seconds.
MAX_BACKOFF: Final = 60.0

#: Environment variables for the daemon alone (systemd's socket activation
#: and readiness protocol); the writer must not act on them.
_DAEMON_ONLY_ENV: Final = (
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
)


class _WriterProtocol(ProcessProtocol):
    """The daemon's end of the pipes to the writer process.

    Decodes the writer's reports (stdout) and log lines (stderr) and hands
    them to the store; see `twisted_chat.history.writer` for the frames.
    """

    def __init__(self, store: ProcessSqliteStore) -> None:
        self._store = store
        self._decoder = FrameDecoder()
        self._stderr = b""

    def childDataReceived(self, child_fd: int, data: bytes) -> None:
        """`IProcessProtocol` API: a report (fd 1) or a log line (fd 2)."""
        if child_fd == 1:
            try:
                values = self._decoder.feed(data)
            except Exception:
                self._store._log.failure(
                    "garbled report from the history writer of {path}",
                    path=self._store.path,
                )
                return
            for value in values:
                self._store._writer_said(value)
            return
        lines = (self._stderr + data).split(b"\n")
        self._stderr = lines.pop()
        for line in lines:
            self._store._writer_stderr(line)

    def processEnded(self, reason: Failure) -> None:
        """`IProcessProtocol` API: the writer has exited."""
        if self._stderr:
            self._store._writer_stderr(self._stderr)
            self._stderr = b""
        self._store._writer_ended(reason)


class ProcessSqliteStore(SqliteStore):
    """`SqliteStore` whose writes are committed by a child process.

    Build it with ``SqliteStore.open(path, reactor=..., writer="process")``.
    Everything on the reactor thread is as in `SqliteStore` (the checks at
    open, the reader connection, the tail caches); only the writer moves
    to ``python -m twisted_chat.history.writer``, started by `start` with
    ``reactor.spawnProcess``. The changes of up to ``_PIPE_DELAY`` (10 ms)
    become one `marshal` frame on the child's stdin; `flush` and `stop`
    send numbered markers at once, which the child acknowledges on stdout
    after committing what came before them, and each acknowledgement
    also says up to which message id the child is done, which is what lets
    the reactor side forget queued copies. The writer thread of
    `SqliteStore` took the GIL from the reactor for every statement; a
    process never does.

    Crash bound: after ``kill -9`` of the daemon the child reads to the end
    of the pipe and commits it, so only changes the daemon had not yet
    written to the pipe are lost (the daemon gathers them for at most
    ``_PIPE_DELAY``, 10 ms, plus the current reactor turn); a power cut
    loses at most the last flush window, as with the thread.

    If the writer process cannot start or dies on its own (killed by the
    OOM killer, a bug), it is logged as an error, `trouble` says so (and
    so ``STATUS=``), the log repeats it once a minute, and the writer is
    started again after a back-off (1 s, doubling up to `MAX_BACKOFF`;
    back to 1 s once a writer ran for `MAX_BACKOFF`). Meanwhile history
    rows are dropped (counted), and `flush` and `stop` fire at once.
    """

    def _init_writer(self, conn: sqlite3.Connection) -> None:
        """Set up the pipe's state; the checked writer connection is closed."""
        # The child opens its own; this one only proved the file usable.
        conn.close()
        self._started = False
        self._process: IProcessTransport | None = None
        #: Ops gathered for the next frame (see `_send`).
        self._outbox: list[_Op] = []
        self._drain_call: IDelayedCall | None = None
        self._stop_marker: Deferred[None] | None = None
        #: The pipe's transport holds more than it wants (`pauseProducing`):
        #: ops wait in the outbox, as references to the queued turns'
        #: bytes, instead of as encoded copies in the transport's buffer.
        self._paused = False
        #: Close the child's stdin once the outbox is written (`stop`).
        self._close_when_drained = False
        #: Writers that ended in a row, for the back-off; when to restart.
        self._failures = 0
        self._restart_call: IDelayedCall | None = None
        self._spawned_at = 0.0

    def _start_writer(self) -> None:
        """Spawn the writer process (once; again only after it died)."""
        if self._started:
            return
        self._started = True
        self._spawn()

    def _spawn(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = {k: v for k, v in os.environ.items() if k not in _DAEMON_ONLY_ENV}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        args = [
            sys.executable,
            "-m",
            "twisted_chat.history.writer",
            str(Path(self.path).absolute()),
            *("--flush-interval", repr(self.flush_interval)),
            *("--max-per-room", str(self.max_per_room)),
            *("--max-age-days", repr(self.max_age_days)),
        ]
        self._spawned_at = time.monotonic()
        try:
            # In the package's own directory: ``-m`` looks in the working
            # directory first, and a twisted_chat there (a checkout, the
            # state directory) must not be the one that runs.
            self._process = IReactorProcess(self._reactor).spawnProcess(
                _WriterProtocol(self), sys.executable, args, env=env, path=package_root
            )
        except Exception:
            self._log.failure(
                "cannot start the history writer for {path}; history is not saved",
                path=self.path,
            )
            self._writer_ended(None)
            return
        self._writer_down = None
        self._paused = False
        # Process implements IConsumer for the child's stdin; the
        # interface does not say so.
        cast("IConsumer", self._process).registerProducer(_PipeProducer(self), True)
        self._drain()

    # -- the pipe to the writer -------------------------------------------------

    def _send(self, op: _Op) -> None:
        """Add ``op`` to the next frame; it leaves within `_PIPE_DELAY`.

        Gathering ops for a few milliseconds costs the reactor one list
        append per turn instead of a `marshal` call, a pipe write and two
        poller updates (start and stop writing) per turn.
        """
        if self._writer_down:
            return  # the writer is gone; rows are not queued meanwhile
        self._outbox.append(op)
        if self._drain_call is None and self._process is not None:
            self._drain_call = IReactorTime(self._reactor).callLater(
                _PIPE_DELAY, self._drain
            )

    def _send_marker(self, op: _Op) -> None:
        """Send a numbered marker now; its acknowledgement fires the waiter."""
        if self._writer_down:
            self._writer_said((REPORT_COMMITTED, -1, op[1]))
            return
        self._outbox.append(op)
        self._drain()

    def _send_stop(self, seq: int, done: Deferred[None]) -> None:
        """Send the stop marker and end of file; ``done`` fires at the exit."""
        if self._writer_down:
            done.callback(None)
            return
        # Fired when the child has exited, i.e. the file is closed.
        self._stop_marker = done
        self._close_when_drained = True
        self._send_marker((OP_STOP, seq))

    def _drain(self) -> None:
        """Write the gathered ops to the child, while its pipe takes them.

        Frames of at most `_FRAME_BYTES` each: the transport pauses us
        (`_PipeProducer`) once it holds more than its buffer size, and the
        rest of the outbox waits uncopied.
        """
        call, self._drain_call = self._drain_call, None
        if call is not None and call.active():
            call.cancel()
        process = self._process
        if process is None:
            return
        outbox = self._outbox
        while outbox and not self._paused:
            size = 0
            end = 0
            for op in outbox:
                end += 1
                if op[0] == OP_LINES:
                    size += len(op[5])
                    if size >= _FRAME_BYTES:
                        break
            ops = outbox[:end]
            del outbox[:end]
            process.write(encode_frame(ops))
            if self._process is None:
                return  # the write found the child gone
        if not outbox and self._close_when_drained:
            self._close_when_drained = False
            process.closeStdin()

    def _abandon_writer(self) -> None:
        """`stop` is overdue: kill the writer; its exit fires the stop."""
        process = self._process
        if process is None:
            super()._abandon_writer()
            return
        try:
            process.signalProcess("KILL")
        except Exception:  # already gone, or cannot be signalled
            self._writer_ended(None)

    def _restart(self) -> None:
        """The back-off is over: start the writer again."""
        self._restart_call = None
        if self._stopping or self._process is not None:
            return
        self._log.info("starting the history writer for {path} again", path=self.path)
        self._spawn()

    # -- reports from the writer ------------------------------------------------

    def _writer_stderr(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            self._log.warn(
                "history writer for {path}: {line}", path=self.path, line=text
            )

    def _writer_ended(self, reason: Failure | None) -> None:
        """The child exited: expected after `stop`; else loud, and restarted."""
        self._process = None
        self._outbox.clear()
        call, self._drain_call = self._drain_call, None
        if call is not None and call.active():
            call.cancel()
        clean = reason is not None and reason.check(ProcessDone) is not None
        lost = self._forget_queue()
        if not (self._stopping and clean):
            why = _exit_reason(reason)
            if time.monotonic() - self._spawned_at >= MAX_BACKOFF:
                self._failures = 0
            delay = min(MAX_BACKOFF, 2.0**self._failures)
            self._failures += 1
            if self._stopping:
                self._writer_down = f"history writer {why}"
            else:
                self._restart_call = IReactorTime(self._reactor).callLater(
                    delay, self._restart
                )
                self._writer_down = (
                    f"history writer {why}; history is not saved;"
                    f" restarting it in {delay:.0f} s"
                )
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
        marker, self._stop_marker = self._stop_marker, None
        if marker is not None:
            marker.callback(None)


@implementer(IPushProducer)
class _PipeProducer:
    """Told by the pipe's transport when to stop and go on writing."""

    def __init__(self, store: ProcessSqliteStore) -> None:
        self._store = store

    def pauseProducing(self) -> None:
        """`IPushProducer` API: the transport's buffer is full."""
        self._store._paused = True

    def resumeProducing(self) -> None:
        """`IPushProducer` API: the transport wrote its buffer out."""
        self._store._paused = False
        self._store._drain()

    def stopProducing(self) -> None:
        """`IPushProducer` API: the pipe is gone (the exit is handled)."""
        self._store._paused = True


def _exit_reason(reason: Failure | None) -> str:
    """How the writer ended, in a few words: "ended (exit code 1)"."""
    if reason is None:
        return "could not be started"
    value = reason.value
    code = getattr(value, "exitCode", None)
    sig = getattr(value, "signal", None)
    if sig is not None:
        return f"was killed (signal {sig})"
    if code is not None:
        return f"ended (exit code {code})"
    return f"ended ({reason.getErrorMessage()})"
