"""The link to a writer process: `ProcessLink` (issue 6).

The daemon's choice (`twisted_chat.history.sqlite.SqliteStore.open` with
``writer="process"``): the writer runs as ``python -m
twisted_chat.history.writer``, so that it never takes the GIL from the
reactor. The link gathers the store's ops for a few milliseconds into one
frame of `twisted_chat.history.wire` on the child's stdin, reads the
reports from its stdout and logs its stderr, and starts it again after a
back-off when it dies.
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

from twisted_chat.history.wire import (
    NO_ID,
    OP_STOP,
    REPORT_COMMITTED,
    Committed,
    FrameDecoder,
    Marker,
    Turn,
    decode_report,
    encode_ops,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import (
        IConsumer,
        IDelayedCall,
        IProcessTransport,
        IReactorFromThreads,
    )
    from twisted.python.failure import Failure

    from twisted_chat.history.side import LinkOwner, WriterSettings
    from twisted_chat.history.wire import Op, Report

__all__ = ["MAX_BACKOFF", "ProcessLink"]

#: How long the link gathers changes before it writes them to the writer's
#: pipe, in seconds: after ``kill -9`` of the daemon, at most this much
#: (plus the current turn) is lost, half the writer's own flush window.
#: Each frame wakes the writer, which then competes with the reactor and
#: the clients for the CPU: at 10 ms (100 wake-ups a second) the p99 at
#: 2,000 msg/s was 1.02-1.33 times history off's in three sets on 2 cores,
#: at 50 ms 1.01 and 1.15 (``bench/history_ab.py --workloads latency``).
_PIPE_DELAY: Final = 0.05

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
    them to the link; see `twisted_chat.history.wire` for the frames.
    """

    def __init__(self, link: ProcessLink) -> None:
        self._link = link
        self._decoder = FrameDecoder()
        self._stderr = b""

    def childDataReceived(self, child_fd: int, data: bytes) -> None:
        """`IProcessProtocol` API: a report (fd 1) or a log line (fd 2)."""
        if child_fd == 1:
            try:
                reports = [decode_report(v) for v in self._decoder.feed(data)]
            except Exception:
                self._link._garbled()
                return
            for report in reports:
                self._link._said(report)
            return
        lines = (self._stderr + data).split(b"\n")
        self._stderr = lines.pop()
        for line in lines:
            self._link._stderr(line)

    def processEnded(self, reason: Failure) -> None:
        """`IProcessProtocol` API: the writer has exited."""
        if self._stderr:
            self._link._stderr(self._stderr)
            self._stderr = b""
        self._link._ended(reason)


@implementer(IPushProducer)
class ProcessLink:
    """A `~twisted_chat.history.side.WriterLink` to a writer process.

    `start` spawns the child with ``reactor.spawnProcess``. The changes of
    up to `_PIPE_DELAY` become one frame on its stdin; markers are written
    at once, and the child acknowledges them on stdout after committing
    what came before them, each acknowledgement also saying up to which
    message id it is done, which is what lets the store forget its queued
    copies. The transport of the child's stdin pauses the link (it is its
    `IPushProducer`) while it holds more than it wants; the gathered ops
    then wait in the outbox, as references to the store's queued turns,
    not as encoded copies in the transport's buffer.

    Crash bound: after ``kill -9`` of the daemon the child reads to the end
    of the pipe and commits it, so only changes not yet written to the pipe
    are lost (at most `_PIPE_DELAY` plus the current reactor turn); a power
    cut loses at most the last flush window, as with the thread.

    If the writer process cannot start or dies on its own (killed by the
    OOM killer, a bug), the owner hears of it (`LinkOwner.writer_ended`:
    logged as an error, shown by ``trouble``), and the writer is started
    again after a back-off (1 s, doubling up to `MAX_BACKOFF`; back to 1 s
    once a writer ran for `MAX_BACKOFF`). Meanwhile changes are not sent,
    and markers are acknowledged at once.
    """

    def __init__(
        self, owner: LinkOwner, reactor: IReactorFromThreads, settings: WriterSettings
    ) -> None:
        self._owner = owner
        self._reactor = reactor
        self._settings = settings
        self._started = False
        #: The writer is known to be gone (it could not start, or died).
        self._down = False
        #: The stop was sent (or asked for while no writer ran).
        self._stopping = False
        #: The running child's transport; None while there is none.
        self.process: IProcessTransport | None = None
        #: Ops gathered for the next frame (see `send`).
        self._outbox: list[Op] = []
        self._drain_call: IDelayedCall | None = None
        #: The transport holds more than it wants (`pauseProducing`).
        self._paused = False
        #: Close the child's stdin once the outbox is written (`stop`).
        self._close_when_drained = False
        #: Writers that ended in a row, for the back-off; when to restart.
        self._failures = 0
        self._restart_call: IDelayedCall | None = None
        self._spawned_at = 0.0

    # -- WriterLink ---------------------------------------------------------------

    def start(self) -> None:
        """`WriterLink` API: spawn the writer (once; again only after it died)."""
        if self._started:
            return
        self._started = True
        self._spawn()

    def send(self, op: Op) -> None:
        """`WriterLink` API: add ``op`` to the next frame, which leaves soon.

        Gathering ops for a few milliseconds costs the reactor one list
        append per turn instead of a `marshal` call, a pipe write and two
        poller updates (start and stop writing) per turn.
        """
        if self._down:
            return  # the writer is gone; rows are not queued meanwhile
        self._outbox.append(op)
        if self._drain_call is None and self.process is not None:
            self._drain_call = IReactorTime(self._reactor).callLater(
                _PIPE_DELAY, self._drain
            )

    def send_marker(self, op: Marker) -> None:
        """`WriterLink` API: send a marker now; with no writer, acknowledge it."""
        if self._down:
            self._owner.writer_said(Committed(REPORT_COMMITTED, NO_ID, op.seq))
            return
        self._outbox.append(op)
        self._drain()

    def stop(self, seq: int) -> None:
        """`WriterLink` API: the stop marker, then end of file; the exit closes."""
        self._stopping = True
        self._cancel_restart()
        if self._down:
            self._owner.writer_closed()
            return
        self._close_when_drained = True
        self.send_marker(Marker(OP_STOP, seq))

    def abandon(self) -> None:
        """`WriterLink` API: kill the writer; its exit completes the stop."""
        process = self.process
        if process is None:
            self._owner.writer_closed()
            return
        try:
            process.signalProcess("KILL")
        except Exception:  # already gone, or cannot be signalled
            self._ended(None)

    # -- IPushProducer, for the transport of the child's stdin ---------------------

    def pauseProducing(self) -> None:
        """`IPushProducer` API: the transport's buffer is full."""
        self._paused = True

    def resumeProducing(self) -> None:
        """`IPushProducer` API: the transport wrote its buffer out."""
        self._paused = False
        self._drain()

    def stopProducing(self) -> None:
        """`IPushProducer` API: the pipe is gone (the exit is handled)."""
        self._paused = True

    # -- the child ------------------------------------------------------------------

    def _spawn(self) -> None:
        settings = self._settings
        package_root = str(Path(__file__).resolve().parents[2])
        env = {k: v for k, v in os.environ.items() if k not in _DAEMON_ONLY_ENV}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        args = [
            sys.executable,
            "-m",
            "twisted_chat.history.writer",
            str(Path(settings.path).absolute()),
            *("--flush-interval", repr(settings.flush_interval)),
            *("--max-per-room", str(settings.max_per_room)),
            *("--max-age-days", repr(settings.max_age_days)),
        ]
        self._spawned_at = time.monotonic()
        try:
            # In the package's own directory: ``-m`` looks in the working
            # directory first, and a twisted_chat there (a checkout, the
            # state directory) must not be the one that runs.
            self.process = IReactorProcess(self._reactor).spawnProcess(
                _WriterProtocol(self), sys.executable, args, env=env, path=package_root
            )
        except Exception:
            self._owner._log.failure(
                "cannot start the history writer for {path}; history is not saved",
                path=settings.path,
            )
            self._ended(None)
            return
        self._down = False
        self._owner.writer_started()
        self._paused = False
        # Process implements IConsumer for the child's stdin; the
        # interface does not say so.
        cast("IConsumer", self.process).registerProducer(self, True)
        self._drain()

    def _drain(self) -> None:
        """Write the gathered ops to the child, while its pipe takes them.

        Frames of at most `_FRAME_BYTES` of lines each: the transport
        pauses us once it holds more than its buffer size, and the rest of
        the outbox waits uncopied.
        """
        call, self._drain_call = self._drain_call, None
        if call is not None and call.active():
            call.cancel()
        process = self.process
        if process is None:
            return
        outbox = self._outbox
        while outbox and not self._paused:
            size = 0
            end = 0
            for op in outbox:
                end += 1
                if isinstance(op, Turn):
                    size += len(op.data)
                    if size >= _FRAME_BYTES:
                        break
            ops = outbox[:end]
            del outbox[:end]
            process.write(encode_ops(ops))
            if self.process is None:
                return  # the write found the child gone
        if not outbox and self._close_when_drained:
            self._close_when_drained = False
            process.closeStdin()

    def _restart(self) -> None:
        """The back-off is over: start the writer again."""
        self._restart_call = None
        if self._stopping or self.process is not None:
            return
        self._owner._log.info(
            "starting the history writer for {path} again", path=self._settings.path
        )
        self._spawn()

    def _cancel_restart(self) -> None:
        call, self._restart_call = self._restart_call, None
        if call is not None and call.active():
            call.cancel()

    def _said(self, report: Report) -> None:
        self._owner.writer_said(report)

    def _garbled(self) -> None:
        self._owner._log.failure(
            "garbled report from the history writer of {path}",
            path=self._settings.path,
        )

    def _stderr(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            self._owner._log.warn(
                "history writer for {path}: {line}", path=self._settings.path, line=text
            )

    def _ended(self, reason: Failure | None) -> None:
        """The child exited: expected after `stop`; else loud, and restarted."""
        self.process = None
        self._down = True
        self._outbox.clear()
        call, self._drain_call = self._drain_call, None
        if call is not None and call.active():
            call.cancel()
        clean = reason is not None and reason.check(ProcessDone) is not None
        if self._stopping and clean:
            self._owner.writer_ended(None, None)
        else:
            if time.monotonic() - self._spawned_at >= MAX_BACKOFF:
                self._failures = 0
            delay = min(MAX_BACKOFF, 2.0**self._failures)
            self._failures += 1
            restart_in: float | None = None
            if not self._stopping:
                restart_in = delay
                self._restart_call = IReactorTime(self._reactor).callLater(
                    delay, self._restart
                )
            self._owner.writer_ended(_exit_reason(reason), restart_in)
        if self._stopping:
            self._owner.writer_closed()


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
