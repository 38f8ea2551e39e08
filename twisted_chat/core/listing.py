"""
The replies that list things (``/rooms``, ``/who``), each bounded.

An unbounded ``/rooms`` grows with the room table, in bytes and in CPU
(BENCHMARKS.md, "Bounded listings", has what it cost at ten thousand
rooms), and a few clients that asked for it without reading could stall
everybody.  So a listing shows at most a fixed number of
entries, says how many it left out and how to find them, and is built in
O(n) (``heapq``), never by sorting everything.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import TYPE_CHECKING

from attrs import evolve

from twisted_chat.core import lines
from twisted_chat.core.bounds import ROOMS_SHOWN, WHO_NAMES_PER_LINE, WHO_NAMES_SHOWN
from twisted_chat.core.lines import counted
from twisted_chat.core.names import name_key
from twisted_chat.core.records import format_history_line

if TYPE_CHECKING:
    from twisted_chat.core.records import StoredMessage
    from twisted_chat.core.room import Participant, Room


def _display(member: Participant) -> str:
    return member.nick.display


def _size(room: Room) -> int:
    return len(room.members)


def rooms_reply(rooms: Iterable[Room], total: int, pattern: str | None) -> list[bytes]:
    """
    ``/rooms [PATTERN]``: the busiest rooms first, at most ``ROOMS_SHOWN``.

    PATTERN is a substring of the room's name, compared by
    :func:`~twisted_chat.core.names.name_key` (so case and look-alikes do not
    matter); room keys start with ``#``, so ``#dev`` matches names that
    start with ``dev``.

    :param total: how many rooms ``rooms`` holds (it may be a dict view).
    """
    if pattern is not None:
        key = name_key(pattern)
        matching = [room for room in rooms if key in room.name.key]
        rooms, total = matching, len(matching)
        if not total:
            return [
                lines.notice(f'No room matches "{pattern}"; /rooms lists the busiest.')
            ]
        header = f'{counted(total, "room matches", "rooms match")} "{pattern}"'
    else:
        header = counted(total, "room", "rooms")
    shown = heapq.nlargest(ROOMS_SHOWN, rooms, key=_size)
    shown.sort(key=lambda room: (-len(room.members), room.name.key))
    if total > len(shown):
        header += f"; the {len(shown)} busiest"
    reply = [lines.notice(header + ":")]
    for room in shown:
        topic = f": {room.topic}" if room.topic else ""
        count = counted(len(room.members), "person", "people")
        reply.append(lines.notice(f"{room.name.display} ({count}){topic}"))
    rest = total - len(shown)
    if rest:
        more = (
            "/rooms PATTERN searches them"
            if pattern is None
            else "a longer pattern narrows the search"
        )
        reply.append(
            lines.notice(f"... and {counted(rest, 'more room', 'more rooms')}; {more}.")
        )
    return reply


def who_reply(room: Room) -> list[bytes]:
    """
    ``/who``: the members' names in order, at most ``WHO_NAMES_SHOWN``.

    The first names by code point, as ``sorted`` would give them, found in
    O(n) for a big room.
    """
    total = len(room.members)
    if not total:  # a registered room, kept while empty
        return [lines.notice(f"Nobody is in {room.name.display} right now.")]
    rules = room.rules
    if rules is None:
        names = (member.nick.display for member in room.members)
        nicks = (
            heapq.nsmallest(WHO_NAMES_SHOWN, names)
            if total > WHO_NAMES_SHOWN
            else sorted(names)
        )
    else:
        # Ordered by name, badge aside: ``@nick`` operators, ``+nick`` voices.
        first = heapq.nsmallest(WHO_NAMES_SHOWN, room.members, key=_display)
        nicks = [rules.badge(member) + member.nick.display for member in first]
    reply = [
        lines.notice(f"{counted(total, 'person', 'people')} in {room.name.display}:")
    ]
    reply.extend(
        lines.notice(", ".join(nicks[start : start + WHO_NAMES_PER_LINE]))
        for start in range(0, len(nicks), WHO_NAMES_PER_LINE)
    )
    if total > len(nicks):
        reply.append(
            lines.notice(
                f"... and {total - len(nicks)} more; /who shows the first "
                f"{WHO_NAMES_SHOWN} by name."
            )
        )
    return reply


def history_reply(
    messages: Iterable[StoredMessage], room: Room, now: float
) -> list[bytes]:
    """
    Replayed history, each line with its time (``[#room 14:03] <nick> text``).

    The room is shown as it is spelled now (a room re-created after it
    emptied, or after a restart, may be spelled ``#Dev`` instead of
    ``#dev``), so replayed and live lines name it alike.
    """
    display = room.name.display
    reply = []
    for message in messages:
        shown = message if message.room == display else evolve(message, room=display)
        reply.append(lines.encode(format_history_line(shown, now)))
    return reply
