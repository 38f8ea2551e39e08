"""What is wrong with saving history right now (issue 11, finding 1).

A history writer that cannot start, dies, falls behind or loses its file
must not be one quiet log line: `Troubles` keeps the current reasons for
`IMessageStore.trouble` (which ``STATUS=`` shows) and repeats them in the
log, at most once a `NAG_INTERVAL`, for as long as they last.
"""

from __future__ import annotations

from typing import Final

from twisted_chat.core.throttle import LogThrottle

__all__ = ["NAG_INTERVAL", "TROUBLE_HOLD", "Troubles"]

#: How often a lasting problem is logged again, in seconds.
NAG_INTERVAL: Final = 60.0

#: How long a problem that is over (a failed commit, a lost file) is still
#: shown, in seconds: long enough for somebody to see it in ``STATUS=``.
TROUBLE_HOLD: Final = 600.0


class Troubles:
    """Reasons, by kind, each until it is cleared or until a given time."""

    def __init__(self) -> None:
        self._reasons: dict[str, tuple[str, float | None]] = {}
        self._nag = LogThrottle(NAG_INTERVAL)

    def set(self, kind: str, text: str, until: float | None = None) -> None:
        """Say ``text`` for ``kind`` until `clear` (or until time ``until``)."""
        self._reasons[kind] = (text, until)

    def clear(self, kind: str) -> None:
        self._reasons.pop(kind, None)

    def text(self, now: float, *extra: str | None) -> str | None:
        """The current reasons (and ``extra`` ones), or None when all is well."""
        for kind, (_, until) in list(self._reasons.items()):
            if until is not None and until <= now:
                del self._reasons[kind]
        found = [text for text, _ in self._reasons.values()]
        found.extend(text for text in extra if text)
        return "; ".join(found) or None

    def nag(self, now: float, trouble: str | None) -> bool:
        """Whether to log ``trouble`` now (at most once a `NAG_INTERVAL`)."""
        if trouble is None:
            return False
        return self._nag.report(now) is not None
