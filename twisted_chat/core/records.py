"""
What room history is made of: plain values and their replay shape.

Kept apart from :mod:`twisted_chat.history` (the stores, which need
Twisted's Deferreds and processes) so that the sans-IO chat core can use
them without importing anything of ``twisted.internet``.
"""

from __future__ import annotations

import datetime as dt

from attrs import frozen

__all__ = ["StoredMessage", "StoredTopic", "format_history_line"]


@frozen
class StoredMessage:
    """One room message or action (``/me``), as kept in the history.

    :param room_key: the normalised room key (NFKC + casefold), computed by
        the caller; rooms are kept apart by it.
    :param room: the room's display spelling, e.g. ``#Lobby``.
    :param sender: the sender's nickname as displayed.
    :param text: the message text, already cleaned by the core.
    :param action: true for ``/me`` actions.
    :param at: when it was said, in Unix seconds.
    """

    room_key: str
    room: str
    sender: str
    text: str
    action: bool
    at: float


@frozen
class StoredTopic:
    """A room's topic, kept so that topics survive a restart.

    :param room_key: the normalised room key, as for `StoredMessage`.
    :param room: the room's display spelling.
    :param text: the topic text.
    :param set_by: the nickname that set it.
    :param set_at: when it was set, in Unix seconds.
    """

    room_key: str
    room: str
    text: str
    set_by: str
    set_at: float


def format_history_line(
    message: StoredMessage, now: float, tz: dt.tzinfo | None = None
) -> str:
    """Format a replayed message in PROTOCOL.md's shapes, with its time.

    ``[#room HH:MM] <nick> text``, or ``[#room HH:MM] * nick text`` for an
    action; a message from another day than ``now`` (in ``tz``, by default
    the local time zone) gets the date too: ``[#room 2026-11-27 14:03] ...``.
    A room spelled without its ``#`` gets one.

    :param now: the current Unix time; decides what "today" is.
    """
    when = dt.datetime.fromtimestamp(message.at, tz)
    today = dt.datetime.fromtimestamp(now, tz).date()
    stamp = when.strftime("%H:%M" if when.date() == today else "%Y-%m-%d %H:%M")
    room = message.room if message.room.startswith("#") else "#" + message.room
    if message.action:
        return f"[{room} {stamp}] * {message.sender} {message.text}"
    return f"[{room} {stamp}] <{message.sender}> {message.text}"
