"""What is wrong with saving history right now (issue 11, finding 1).

A history writer that cannot start, dies, falls behind or loses its file
must not be one quiet log line: `WriterHealth` keeps the current reasons
for `IMessageStore.trouble` (which ``STATUS=`` shows), says each when it
happens, and repeats them in the log, at most once a `NAG_INTERVAL`, for
as long as they last (it looks every `HEALTH_INTERVAL`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from twisted_chat.core.throttle import LogThrottle

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from twisted_chat.history.side import Backlog, LinkOwner

__all__ = [
    "HEALTH_INTERVAL",
    "NAG_INTERVAL",
    "TROUBLE_HOLD",
    "HistoryCounters",
    "Troubles",
    "WriterHealth",
]

#: How often a store looks at its health, in seconds.
HEALTH_INTERVAL: Final = 5.0

#: How often a lasting problem is logged again, in seconds.
NAG_INTERVAL: Final = 60.0

#: How long a problem that is over (a failed commit, a lost file) is still
#: shown, in seconds: long enough for somebody to see it in ``STATUS=``.
TROUBLE_HOLD: Final = 600.0


class _WriterFailed(Exception):
    """A commit failed in the writer; the text is the writer's traceback."""


class Troubles:
    """Reasons, by kind, each until a given time."""

    def __init__(self) -> None:
        self._reasons: dict[str, tuple[str, float]] = {}
        self._nag = LogThrottle(NAG_INTERVAL)

    def set(self, kind: str, text: str, until: float) -> None:
        """Say ``text`` for ``kind`` until time ``until``."""
        self._reasons[kind] = (text, until)

    def text(self, now: float, *extra: str | None) -> str | None:
        """The current reasons (and ``extra`` ones), or None when all is well."""
        for kind, (_, until) in list(self._reasons.items()):
            if until <= now:
                del self._reasons[kind]
        found = [text for text, _ in self._reasons.values()]
        found.extend(text for text in extra if text)
        return "; ".join(found) or None

    def nag(self, now: float, trouble: str | None) -> bool:
        """Whether to log ``trouble`` now (at most once a `NAG_INTERVAL`)."""
        if trouble is None:
            return False
        return self._nag.report(now) is not None


@frozen
class HistoryCounters:
    """The writer's progress as plain numbers, for ``--metrics``.

    :param next_id: the id the next message gets.
    :param committed_id: the last id the writer confirmed (or gave up).
    :param dropped: messages not saved (writer down or too far behind).
    :param writer_up: a writer runs now.
    :param commit_failures: commits the writer reported failed.
    :param restarts: times the writer was started again after the first.
    """

    next_id: int
    committed_id: int
    dropped: int
    writer_up: bool
    commit_failures: int
    restarts: int


class WriterHealth:
    """A store's troubles with its writer, said in its log and ``trouble``.

    :param owner: the store: its path and its logger.
    :param reactor: for the timer; one without ``IReactorTime`` (a test's
        stand-in) gets none.
    :param backlog: the store's queue: why rows are being dropped, and the
        counts :meth:`counters` gives the metrics (issue 17).
    """

    def __init__(self, owner: LinkOwner, reactor: object, backlog: Backlog) -> None:
        self._owner = owner
        self._reactor = reactor
        self._backlog = backlog
        self._behind = backlog.behind
        self._troubles = Troubles()
        #: Set while the writer is known to be gone: rows are dropped.
        self.down: str | None = None
        #: Commits the writer reported failed (issue 17's metrics read it).
        self.commit_failures = 0
        #: Times a writer started: the first, then each restart.
        self.starts = 0
        self._call: IDelayedCall | None = None
        self._stopped = False

    def trouble(self) -> str | None:
        """Why history is not (all) being saved now, or None."""
        return self._troubles.text(time.monotonic(), self.down, self._behind())

    def started(self) -> None:
        """A writer runs (again): rows are kept."""
        self.down = None
        self.starts += 1

    def counters(self) -> HistoryCounters:
        """What the metrics export of the writer's progress, read now."""
        backlog = self._backlog
        return HistoryCounters(
            next_id=backlog.next_id,
            committed_id=backlog.committed_id,
            dropped=backlog.dropped,
            writer_up=self.down is None,
            commit_failures=self.commit_failures,
            restarts=max(self.starts - 1, 0),
        )

    def commit_failed(self, problem: str, details: str) -> None:
        """The writer could not commit: ``problem`` to say, its traceback."""
        self.commit_failures += 1
        self._troubles.set("commit", problem, time.monotonic() + TROUBLE_HOLD)
        self._owner._log.failure(
            "{problem}",
            failure=Failure(_WriterFailed(details)),
            problem=problem,
            path=self._owner.path,
        )

    def file_changed(self, text: str, *, ready: bool) -> None:
        """The file went away or cannot be made again (error), or is ``ready``."""
        self._troubles.set("file", text, time.monotonic() + TROUBLE_HOLD)
        if ready:
            self._owner._log.warn("{text}", text=text)
        else:
            self._owner._log.error("{text}", text=text)

    def start(self) -> None:
        """Start looking every `HEALTH_INTERVAL` (once)."""
        if self._call is None and not self._stopped:
            self._schedule()

    def stop(self) -> None:
        """Stop looking, for good."""
        self._stopped = True
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _schedule(self) -> None:
        if IReactorTime.providedBy(self._reactor):
            self._call = IReactorTime(self._reactor).callLater(
                HEALTH_INTERVAL, self._look
            )

    def _look(self) -> None:
        """Repeat lasting trouble in the log."""
        self._call = None
        if self._stopped:
            return
        owner = self._owner
        try:
            trouble = self.trouble()
            if self._troubles.nag(time.monotonic(), trouble):
                owner._log.error(
                    "history of {path} is not being saved: {trouble} (said again"
                    " every {interval:.0f} s while it lasts)",
                    path=owner.path,
                    trouble=trouble,
                    interval=NAG_INTERVAL,
                )
        except Exception:
            owner._log.failure("while checking the history of {path}", path=owner.path)
        self._schedule()
