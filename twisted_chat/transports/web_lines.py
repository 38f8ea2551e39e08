"""
The core's direct replies, line-protocol lines, as the web dialect's events.

The core answers a client (``IChatClient.send``) in lines whatever its
format (``* text``, ``! code: text``, ``[PM] <nick> text``; PROTOCOL.md,
"What the server sends"): only room events and private messages and
history come through the :class:`~twisted_chat.transports.web_format.WebFormat`.
A web session turns each such line into an event by its shape here, so a
browser gets JSON only and nothing the core says is lost: a line of no
known shape is a ``notice`` of its text.  Replies are rare next to the
fan-out, so this parses rather than asking the core for structure.

Nothing here raises, whatever the bytes: invalid UTF-8 becomes U+FFFD.
"""

from __future__ import annotations

import re
import time
from typing import Final

from twisted_chat.transports.web_format import frame, iso_time

__all__ = ["event_for_line", "events_for_lines", "frames_for_lines"]

# A nickname holds no space and no ``>``; a room name no space and no ``]``
# (``core.names``), so these shapes are unambiguous.  A replayed line's
# ``[#room HH:MM]`` (a space inside the brackets) is none of them.
_PRIVATE: Final = re.compile(r"\[PM\] <([^ >]+)> (.*)", re.DOTALL)
_MESSAGE: Final = re.compile(r"\[(#[^\] ]+)\] <([^ >]+)> (.*)", re.DOTALL)
_ACTION: Final = re.compile(r"\[(#[^\] ]+)\] \* ([^ ]+)(?: (.*))?", re.DOTALL)
_ERROR: Final = re.compile(r"! ([a-z0-9][a-z0-9-]*): (.*)", re.DOTALL)


def event_for_line(line: bytes, stamp: str | None = None) -> dict[str, object]:
    """
    One line (its CRLF optional) as the dialect's object.

    :param stamp: the ``time`` of a message (``WebFormat.now()``); the
        wall clock when not given.
    """
    text = line.decode("utf-8", "replace")
    text = text.removesuffix("\n")
    text = text.removesuffix("\r")
    return _event(text, stamp)


def events_for_lines(data: bytes, stamp: str | None = None) -> list[dict[str, object]]:
    """Each line of ``data`` (lines ending in CRLF) as an object; empty lines none."""
    text = data.decode("utf-8", "replace")
    out = []
    for piece in text.split("\n"):
        line = piece.removesuffix("\r")
        if line:
            out.append(_event(line, stamp))
    return out


def frames_for_lines(data: bytes, stamp: str | None = None) -> bytes:
    """:func:`events_for_lines`, each as its frame: what a session writes."""
    return b"".join(frame(event) for event in events_for_lines(data, stamp))


def _event(line: str, stamp: str | None) -> dict[str, object]:
    first = line[:1]
    if first == "*" and line.startswith("* "):
        return {"type": "notice", "text": line[2:]}
    if first == "!":
        error = _ERROR.fullmatch(line)
        if error is not None:
            return {"type": "error", "code": error[1], "text": error[2]}
    elif first == "[":
        private = _PRIVATE.fullmatch(line)
        if private is not None:
            return {
                "type": "private",
                "nick": private[1],
                "text": private[2],
                "time": stamp or _now(),
            }
        message = _MESSAGE.fullmatch(line)
        if message is not None:
            return {
                "type": "message",
                "room": message[1],
                "nick": message[2],
                "text": message[3],
                "time": stamp or _now(),
            }
        action = _ACTION.fullmatch(line)
        if action is not None:
            return {
                "type": "action",
                "room": action[1],
                "nick": action[2],
                "text": action[3] or "",
                "time": stamp or _now(),
            }
    return {"type": "notice", "text": line}


def _now() -> str:
    return iso_time(time.time())
