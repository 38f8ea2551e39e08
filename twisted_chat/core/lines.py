"""
The shapes of server lines (PROTOCOL.md, "What the server sends").

Every function returns the finished wire bytes, CRLF included, so that a
room message is formatted and encoded exactly once and the same ``bytes``
object is handed to every member.
"""

from __future__ import annotations

from typing import NamedTuple

from twisted_chat.core.errors import ChatError

CRLF = b"\r\n"


class SaidLine(NamedTuple):
    """One room line taken apart again (:func:`parse_room_lines`).

    A ``NamedTuple`` so that the history stores read it by name while
    ``nick, text, action = line`` keeps working.
    """

    nick: str
    text: str
    #: True for an action (``/me``): ``[#room] * nick text``.
    action: bool


def encode(text: str) -> bytes:
    """One server line as it goes on the wire."""
    return text.encode("utf-8", "replace") + CRLF


#: What a user is told when handling their line hit a bug (it is logged).
INTERNAL_ERROR = encode(
    "! internal-error: Something went wrong on the server; it has been logged."
)


def room_message(room: str, nick: str, text: str) -> bytes:
    """``[#room] <nick> text``."""
    return encode(f"[{room}] <{nick}> {text}")


def room_action(room: str, nick: str, text: str) -> bytes:
    """``[#room] * nick text`` (``/me``)."""
    return encode(f"[{room}] * {nick} {text}")


def private_message(nick: str, text: str) -> bytes:
    """``[PM] <nick> text``."""
    return encode(f"[PM] <{nick}> {text}")


def notice(text: str) -> bytes:
    """``* text``: anything the server says that is not an error."""
    return encode(f"* {text}")


def error(problem: ChatError) -> bytes:
    """``! code: text``: what went wrong and what to do instead."""
    return encode(f"! {problem.code}: {problem.text}")


def parse_room_lines(room: str, data: bytes) -> list[SaidLine]:
    """Undo `room_message` and `room_action`: a :class:`SaidLine` each.

    ``data`` is one or more lines of ``room``, each ending in CRLF, exactly
    as the room's members were sent them. Room history keeps these bytes
    rather than a second record of every message, so that remembering a
    message costs the fan-out nothing; the history writer takes them apart
    here. That is unambiguous because a nickname holds no space and no
    ``>``, and the cleaned text no CR or LF.
    """
    skip = len(room) + 3  # "[" room "] "
    said: list[SaidLine] = []
    for line in data.decode("utf-8", "replace").split("\r\n")[:-1]:
        if line.startswith("* ", skip):
            nick, _, text = line[skip + 2 :].partition(" ")
            said.append(SaidLine(nick, text, True))
        else:
            nick, _, text = line[skip + 1 :].partition("> ")
            said.append(SaidLine(nick, text, False))
    return said


def counted(count: int, one: str, many: str) -> str:
    """``1 room``, ``2 rooms``: ``count`` and the word that goes with it."""
    return f"{count} {one if count == 1 else many}"
