"""Room history written by a child process: `ProcessSqliteStore` (issue 6).

The daemon's choice: `SqliteStore`'s reactor side, with the writer moved to
``python -m twisted_chat.history_writer`` so that it never takes the GIL
from the reactor.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol

from twisted_chat.history_sqlite import SqliteStore, _Op
from twisted_chat.history_writer import FrameDecoder, encode_frame

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IDelayedCall, IProcessTransport
    from twisted.python.failure import Failure

__all__ = ["ProcessSqliteStore"]

#: How long `ProcessSqliteStore` gathers changes before it writes them to
#: the writer's pipe, in seconds: after ``kill -9`` of the daemon, at most
#: this much (plus the current turn) is lost, not a whole flush window.
_PIPE_DELAY: Final = 0.01

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
    them to the store; see `twisted_chat.history_writer` for the frames.
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
    to ``python -m twisted_chat.history_writer``, started by `start` with
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

    If the writer process dies on its own (killed, or the file vanished),
    it is logged once and the chat goes on without saving history: later
    changes are kept only in the tails of rooms already read (as the
    messages of a failed commit are), and `flush` and `stop` fire at once.
    It is not restarted: a writer that dies will most likely die again,
    and the next daemon start checks the file and says why.
    """

    def _init_writer(self) -> None:
        """Set up the pipe's state; the checked writer connection is closed."""
        # The child opens its own; this one only proved the file usable.
        writer, self._writer_conn = self._writer_conn, None
        if writer is not None:
            writer.close()
        self._started = False
        self._process: IProcessTransport | None = None
        #: Ops gathered for the next frame (see `_send`).
        self._outbox: list[_Op] = []
        self._drain_call: IDelayedCall | None = None
        self._stop_marker: Deferred[None] | None = None
        #: The child has exited (or could not be started): nothing is saved.
        self._writer_gone = False

    def start(self) -> None:
        """`IMessageStore` API: spawn the writer process (once)."""
        if self._started or self._stopping:
            return
        self._started = True
        package_root = str(Path(__file__).resolve().parent.parent)
        env = {k: v for k, v in os.environ.items() if k not in _DAEMON_ONLY_ENV}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        args = [
            sys.executable,
            "-m",
            "twisted_chat.history_writer",
            self.path,
            *("--flush-interval", repr(self.flush_interval)),
            *("--max-per-room", str(self.max_per_room)),
            *("--max-age-days", repr(self.max_age_days)),
        ]
        try:
            self._process = IReactorProcess(self._reactor).spawnProcess(
                _WriterProtocol(self), sys.executable, args, env=env
            )
        except Exception:
            self._log.failure(
                "cannot start the history writer for {path}; history is not saved",
                path=self.path,
            )
            self._writer_ended(None)
            return
        self._drain()

    # -- the pipe to the writer -------------------------------------------------

    def _send(self, op: _Op) -> None:
        """Add ``op`` to the next frame; it leaves within `_PIPE_DELAY`.

        Gathering ops for a few milliseconds costs the reactor one list
        append per turn instead of a `marshal` call, a pipe write and two
        poller updates (start and stop writing) per turn.
        """
        if self._writer_gone:
            if op[0] == "l":  # nobody will commit it: do not keep it queued
                self._committed_id = self._next_id - 1
                self._trim_pending()
            return
        self._outbox.append(op)
        if self._drain_call is None and self._process is not None:
            self._drain_call = IReactorTime(self._reactor).callLater(
                _PIPE_DELAY, self._drain
            )

    def _send_marker(self, op: _Op) -> None:
        """Send a numbered marker now; its acknowledgement fires the waiter."""
        if self._writer_gone:
            self._writer_said(("c", -1, op[1]))
            return
        self._outbox.append(op)
        self._drain()

    def _send_stop(self, seq: int, done: Deferred[None]) -> None:
        """Send the stop marker and end of file; ``done`` fires at the exit."""
        if self._writer_gone:
            done.callback(None)
            return
        # Fired when the child has exited, i.e. the file is closed.
        self._stop_marker = done
        self._send_marker(("s", seq))
        if self._process is not None:
            self._process.closeStdin()

    def _drain(self) -> None:
        """Write the gathered ops to the child as one frame."""
        call, self._drain_call = self._drain_call, None
        if call is not None and call.active():
            call.cancel()
        if self._process is None or not self._outbox:
            return
        ops, self._outbox = self._outbox, []
        self._process.write(encode_frame(ops))

    # -- reports from the writer ------------------------------------------------

    def _writer_stderr(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            self._log.warn(
                "history writer for {path}: {line}", path=self.path, line=text
            )

    def _writer_ended(self, reason: Failure | None) -> None:
        """The child exited: expected after `stop`, logged otherwise."""
        self._writer_gone = True
        self._process = None
        self._outbox.clear()
        call, self._drain_call = self._drain_call, None
        if call is not None and call.active():
            call.cancel()
        clean = reason is not None and reason.check(ProcessDone) is not None
        if not (self._stopping and clean):
            self._log.error(
                "the history writer for {path} ended ({why}); history is no"
                " longer saved",
                path=self.path,
                why=reason.getErrorMessage() if reason is not None else "not started",
            )
        # Nothing queued will be committed now: stop waiting for it.
        self._committed_id = self._next_id - 1
        waiters = list(self._flush_waiters.values())
        self._flush_waiters.clear()
        for d in waiters:
            d.callback(None)
        marker, self._stop_marker = self._stop_marker, None
        if marker is not None:
            marker.callback(None)
