"""
The reply that lists bans, for a room's ``/bans`` and the server's
``/serverbans``: one shape (a count, the newest first up to a bound, how
many older ones are left out and how to lift one), so the two lists read
alike and are bounded alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted_chat.core.bans import Ban
from twisted_chat.core.lines import counted

__all__ = ["ban_listing"]


def ban_listing(
    bans: Sequence[Ban],
    now: float,
    shown_max: int,
    *,
    kind: tuple[str, str],
    where: str,
    empty: str,
    unban: str,
) -> list[str]:
    """
    The lines of the listing of ``bans`` (oldest first, as a ``BanList``
    holds them): the newest ``shown_max`` first, then how many more.

    :param kind: the noun, one and many (``("ban", "bans")``).
    :param where: what follows the count (`` in #dev``, or "").
    :param empty: the one line when there is no ban.
    :param unban: the command that lifts one (``/unban``).
    """
    if not bans:
        return [empty]
    shown = list(bans[-shown_max:])[::-1]
    header = counted(len(bans), *kind) + where
    if len(shown) < len(bans):
        header += f", the {len(shown)} newest"
    listing = [header + ":", *(ban.describe(now) for ban in shown)]
    rest = len(bans) - len(shown)
    if rest:
        more = counted(rest, "older ban", "older bans")
        listing.append(f"... and {more}; {unban} lifts one.")
    return listing
