"""
Rate-limited logging for the events a client can cause.

Every connect, quit and refusal is worth a log line, until someone connects
in a loop and the log grows as fast as the loop turns (BENCHMARKS.md, "Log
flood", has what half a minute of it used to write).  A
:class:`RateLimitedLogger` is a :class:`twisted.logger.Logger` that lets
:data:`LIMIT` events of one kind through per :data:`WINDOW` seconds and holds
the rest back, counted; when the window is over, one summary event says how
many were held back, with the last one in full::

    refused connection peer=tcp 192.0.2.7:50312 reason=too-many-connections
    ... (19 more)
    suppressed 9980 similar events in 10 s: refused connection peer={peer}
    reason={reason}; the last: refused connection peer=tcp 192.0.2.7:61004
    reason=too-many-connections

A *kind* is the logger's namespace (its module or class) and the event's
format string, not its source: a per-connection source would give every new
connection a fresh allowance.  Rare events never reach the limit, so an
operator's one-off lines go through untouched.  Modules whose events only the
operator causes (start-up, reload, shutdown) keep a plain ``Logger``.

The summary is written lazily, by the next event of the same kind once the
window is over; :meth:`LogLimiter.flush` writes the others (the daemon calls
it every :data:`WINDOW` seconds and at shutdown), so no count is lost.

Sans-IO: the clock is injected and nothing here imports ``twisted.internet``,
so the chat core can use it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from attrs import define
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from twisted.python.failure import Failure

__all__ = ["LIMIT", "LIMITER", "WINDOW", "LogLimiter", "RateLimitedLogger"]

#: Events of one kind written per window before the rest are held back.
LIMIT = 20
#: Seconds per window.
WINDOW = 10.0
#: Kinds tracked at once.  Formats are constants in the code, so this is
#: never reached unless a caller builds formats from client data; then the
#: oldest windows are summed up early rather than growing without bound.
MAX_KINDS = 1024

#: The summary event's format; the held-back format is a value, not part of
#: this format, so its braces are not interpreted twice.
SUMMARY = "suppressed {suppressed} similar events in {seconds:g} s: {similar}{last}"


@define
class _Window:
    """One kind of event in its current window."""

    start: float
    namespace: str
    observer: ILogObserver
    format: str | None
    level: LogLevel = LogLevel.debug
    passed: int = 0
    held: int = 0
    #: The last held-back event's fields, for the summary (no failure: a
    #: traceback holds frames alive).
    last: dict[str, object] | None = None


class LogLimiter:
    """
    Decides which events pass, per kind, and writes the summaries.

    Thread-safe: a store's writer thread may log while the reactor does.

    :param limit: events of one kind let through per window.
    :param window: seconds per window.
    :param clock: the current time in seconds; any monotonic clock.
    :param max_kinds: kinds tracked at once.
    """

    def __init__(
        self,
        limit: int = LIMIT,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = MAX_KINDS,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_kinds = max_kinds
        self._windows: dict[tuple[str, str | None], _Window] = {}
        self._lock = threading.Lock()
        #: Events held back since this limiter was made, for tests and stats.
        self.suppressed = 0

    def admit(
        self,
        namespace: str,
        observer: ILogObserver,
        level: LogLevel,
        log_format: str | None,
        fields: Mapping[str, object],
    ) -> bool:
        """
        Count one event; return whether it is written now.

        A summary of the kind's previous window goes out first when that
        window is over.
        """
        now = self.clock()
        key = (namespace, log_format)
        ended: list[_Window] = []
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.start >= self.window:
                ended.append(self._windows.pop(key))
                window = None
            if window is None:
                if len(self._windows) >= self.max_kinds:
                    ended.extend(self._take(now, everything=True))
                window = _Window(now, namespace, observer, log_format)
                self._windows[key] = window
            if window.passed < self.limit:
                window.passed += 1
                admitted = True
            else:
                window.held += 1
                self.suppressed += 1
                window.level = max(window.level, level)  # constants are ordered
                window.last = {k: v for k, v in fields.items() if k != "log_failure"}
                admitted = False
        self._summarize(ended, now)
        return admitted

    def flush(self, *, everything: bool = False) -> None:
        """
        Write the summaries of the windows that are over (of all of them
        with ``everything``, as at shutdown) and forget those windows.
        """
        now = self.clock()
        with self._lock:
            ended = self._take(now, everything=everything)
        self._summarize(ended, now)

    def reset(self) -> None:
        """Forget every window without a summary (tests start afresh)."""
        with self._lock:
            self._windows.clear()

    def _take(self, now: float, *, everything: bool) -> list[_Window]:
        ended = [
            key
            for key, window in self._windows.items()
            if everything or now - window.start >= self.window
        ]
        return [self._windows.pop(key) for key in ended]

    def _summarize(self, ended: list[_Window], now: float) -> None:
        for window in ended:
            if not window.held:
                continue
            last = ""
            if window.last is not None:
                shown = formatEvent({**window.last, "log_format": window.format})
                last = f"; the last: {shown}"
            seconds = round(min(self.window, max(0.0, now - window.start)), 1)
            Logger(window.namespace, observer=window.observer).emit(
                window.level,
                SUMMARY,
                suppressed=window.held,
                seconds=seconds,
                similar=window.format,
                last=last,
            )


#: The daemon's limiter, shared by every :class:`RateLimitedLogger` not given
#: another; ``service.py`` flushes it.
LIMITER = LogLimiter()


class RateLimitedLogger(Logger):
    """
    A ``Logger`` whose events pass through a :class:`LogLimiter`.

    A drop-in for ``Logger()``, as a module or a class attribute.

    :param limiter: :data:`LIMITER` unless given (tests give their own, with
        a fake clock).
    """

    def __init__(
        self,
        namespace: str | None = None,
        source: object | None = None,
        observer: ILogObserver | None = None,
        *,
        limiter: LogLimiter | None = None,
    ) -> None:
        if namespace is None:
            # Logger's own guess would name this module, one frame too deep.
            namespace = self._namespaceFromCallingContext()
        super().__init__(namespace, source, observer)
        self.limiter = LIMITER if limiter is None else limiter

    def __get__(self, instance: object, owner: type | None = None) -> RateLimitedLogger:
        """As ``Logger.__get__``, keeping this logger's limiter."""
        if owner is None:  # pragma: no cover - Python always passes it
            raise TypeError("Logger.__get__ needs the owner class")
        return type(self)(
            f"{owner.__module__}.{owner.__name__}",
            owner if instance is None else instance,
            self.observer,
            limiter=self.limiter,
        )

    def emit(
        self,
        level: LogLevel,
        format: str | None = None,  # noqa: A002 - Logger.emit's name
        **kwargs: Any,
    ) -> None:
        if self.limiter.admit(self.namespace, self.observer, level, format, kwargs):
            super().emit(level, format, **kwargs)

    def failure(
        self,
        format: str,  # noqa: A002 - Logger.failure's name
        failure: Failure | None = None,
        level: LogLevel = LogLevel.critical,
        **kwargs: Any,
    ) -> None:
        """As ``Logger.failure``; a failure held back is not even captured."""
        if not self.limiter.admit(self.namespace, self.observer, level, format, kwargs):
            return
        if failure is None:
            failure = Failure()
        # Admitted already: past this class's emit, straight to Logger's.
        Logger.emit(self, level, format, log_failure=failure, **kwargs)
