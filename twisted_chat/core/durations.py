"""
Durations as operators type them (``30m``, ``1h30m``) and as notices show
them (``3d 4h``), for bans and mutes of rooms and of the server alike: one
grammar, so ``/ban``, ``/mute`` and ``/serverban`` agree on what ``7d``
means and on the longest a ban may last.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import BadUsage

__all__ = [
    "MAX_DURATION",
    "format_left",
    "looks_like_duration",
    "parse_duration",
]

#: The longest ban with a duration; longer ones are bans until lifted.
MAX_DURATION: Final = 365 * 86_400
_UNITS: Final = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_DURATION: Final = re.compile(r"(?:[0-9]{1,6}[smhdw])+")
_DURATION_PART: Final = re.compile(r"([0-9]{1,6})([smhdw])")


def looks_like_duration(text: str) -> bool:
    """Whether ``text`` is meant as a duration (``30m``, ``1h30m``)."""
    return _DURATION.fullmatch(text.lower()) is not None


def parse_duration(text: str) -> int:
    """
    ``90s``, ``30m``, ``12h``, ``7d``, ``2w`` or a sum like ``1h30m``, in seconds.

    :raises BadUsage: another shape, zero, or more than :data:`MAX_DURATION`.
    """
    lowered = text.lower()
    if _DURATION.fullmatch(lowered) is None:
        raise BadUsage(f"{text[:40]!r} is not a duration; say 90s, 30m, 12h or 7d.")
    seconds = sum(
        int(number) * _UNITS[unit] for number, unit in _DURATION_PART.findall(lowered)
    )
    if not 0 < seconds <= MAX_DURATION:
        raise BadUsage(
            f"A duration is 1s to {MAX_DURATION // 86_400}d; leave it out for "
            "a ban until lifted."
        )
    return seconds


def format_left(seconds: float) -> str:
    """``3d 4h``, ``12m``, ``40s``: the two largest units of what is left."""
    left = max(0, int(seconds + 0.999))
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
        if len(parts) == 2:
            break
    return " ".join(parts)
