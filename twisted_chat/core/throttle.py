"""
Rate-limited reporting of repeated failures.

A failing disk fails every batch and an unreachable UDP peer fails every
datagram: logging each one would bury the log.  Report the first, then at
most one every ``interval`` seconds, saying how many were held back.
No imports beyond the standard library, so the history writer process can
use it too.
"""

from __future__ import annotations


class LogThrottle:
    """Decides whether a repeated failure is reported now, and counts the rest."""

    __slots__ = ("_held", "_last", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: float | None = None
        self._held = 0

    def report(self, now: float) -> int | None:
        """
        One failure happened at ``now``.

        :return: None to stay quiet (the failure is counted); otherwise the
            number of failures held back since the last report, not counting
            this one, which the caller now reports.
        """
        if self._last is not None and now - self._last < self.interval:
            self._held += 1
            return None
        held, self._held, self._last = self._held, 0, now
        return held
