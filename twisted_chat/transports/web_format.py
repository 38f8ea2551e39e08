"""
Room events as WebSocket frames of JSON: the web front-end's
:class:`~twisted_chat.core.events.WireFormat` (issue 16).

A browser is sent one text frame per event, each holding one JSON object
with a ``type`` (the dialect, ``docs/web.md``).  The frames are made here,
whole (header and payload), so that a room's turn is rendered once for all
of its web members (:class:`~twisted_chat.core.foreign.ForeignMembers`) and
the same bytes are written to each connection: a frame from server to
client is never masked, and without permessage-deflate it carries nothing
of the connection it goes to.

The frame header is built here (RFC 6455, section 5.2) rather than by
wsproto's ``FrameProtocol.send_data``: that works (its only state is a
fragmented message's opcode, reset by ``fin``), but it takes text as ``str``
and returns a ``bytearray`` to copy: about 4 us a frame, as much as json
takes for the object, against 0.5 us for the header made here and joined
to the payload (``tests/test_web_format.py`` checks both make the same
bytes).  For the same reason messages, actions and member lists are
written from templates, not by json: the tests hold them to json's bytes.

Text is the core's, already cleaned (no control characters); JSON escapes
what JSON needs (quotes, backslashes) and a browser's ``JSON.parse`` and
``textContent`` keep the rest literal, so markup typed by anyone stays text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from twisted_chat.core.events import (
    Acted,
    Joined,
    Kicked,
    Left,
    Moderated,
    Quit,
    Renamed,
    RoomEvent,
    RoomNotice,
    Said,
    TopicSet,
)

if TYPE_CHECKING:
    from twisted_chat.core.records import StoredMessage
    from twisted_chat.core.room import Participant, Room

__all__ = [
    "MEMBER_CHANGES",
    "WebFormat",
    "frame",
    "frame_header",
    "hello_frame",
    "iso_time",
    "members_frame",
    "topic_frame",
    "you_frame",
]

#: The changes after which a room's web members get its ``members`` again:
#: those that make or unmake operators and voices.
MEMBER_CHANGES: Final = frozenset(
    {"op", "deop", "voice", "devoice", "auto-op", "register", "drop"}
)

_FIN_TEXT: Final = 0x81  # FIN, no RSV bits, opcode 1 (text)
_dumps: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: A JSON string, as ``_dumps`` writes one (the C encoder when there is one).
_string: Final[Callable[[str], str]] = json.encoder.encode_basestring
#: A member's marks, by (operator, voice), closing their object.
_FLAGS: Final = {
    (op, voice): f',"op":{json.dumps(op)},"voice":{json.dumps(voice)}}}'
    for op in (False, True)
    for voice in (False, True)
}
_PLAIN: Final = _FLAGS[False, False]
#: Said and Acted, most of a turn: their objects written from a template.
_SPEECH: Final = {Said: '{"type":"message"', Acted: '{"type":"action"'}


def frame_header(length: int) -> bytes:
    """The header of an unmasked, final text frame of ``length`` bytes."""
    if length < 126:
        return bytes((_FIN_TEXT, length))
    if length < 0x10000:
        return bytes((_FIN_TEXT, 126)) + length.to_bytes(2, "big")
    return bytes((_FIN_TEXT, 127)) + length.to_bytes(8, "big")


#: The headers of frames shorter than this, made once (a message is most
#: often 126 to 300 bytes: a 4-byte header, made at each call otherwise).
_TABLED: Final = 1024
_HEADERS: Final = tuple(frame_header(length) for length in range(_TABLED))


def frame(obj: Mapping[str, object]) -> bytes:
    """
    ``obj`` as one text frame of compact JSON.

    A string the core let through with a lone surrogate (none should) is
    sent with ``?`` for it: a text frame must be valid UTF-8, or the
    browser fails the connection.
    """
    payload = _dumps(obj).encode("utf-8", "replace")
    return frame_header(len(payload)) + payload


def iso_time(seconds: float) -> str:
    """``2026-12-01T10:00:00Z``: UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def hello_frame(nick: str, server: str, max_line: int) -> bytes:
    """The first frame after the upgrade."""
    return frame(
        {"type": "hello", "nick": nick, "server": server, "max_line": max_line}
    )


def you_frame(nick: str) -> bytes:
    """The client's own nickname, now."""
    return frame({"type": "you", "nick": nick})


def members_frame(room: Room) -> bytes:
    """
    Who is in ``room``, in the order they joined, operators and voices
    marked (room operators; server operators are not marked, as in IRC's
    ``NAMES``).

    Sent to each joiner, so written from templates as messages are (what
    ``frame`` makes of the list, byte for byte): 10,000 members, 460 KB, in
    7-10 ms against json's 21.
    """
    rules = room.rules
    if rules is None:
        items = [
            '{"nick":' + _string(member.nick.display) + _PLAIN
            for member in room.members
        ]
    else:
        is_operator, voiced = rules.is_operator, rules.voiced
        items = [
            '{"nick":'
            + _string(member.nick.display)
            + _FLAGS[is_operator(member), member in voiced]
            for member in room.members
        ]
    payload = (
        '{"type":"members","room":'
        + _string(room.name.display)
        + ',"members":['
        + ",".join(items)
        + "]}"
    ).encode("utf-8", "replace")
    return frame_header(len(payload)) + payload


def topic_frame(room: Room, clock: Callable[[], float] = time.time) -> bytes:
    """
    The room's topic as shown on joining: no ``nick``; the time it was set
    (or now, if the room does not know).
    """
    at = room.topic_at or clock()
    return frame(
        {
            "type": "topic",
            "room": room.name.display,
            "nick": None,
            "text": room.topic,
            "time": iso_time(at),
        }
    )


class WebFormat:
    """
    How web clients are sent a room's events: one object for all of them
    (a browser asks for nothing that would change the bytes).

    :param clock: the wall clock, for each event's ``time`` (``time.time``).
    """

    #: A browser shows what its user sent itself; the server does not echo.
    echo = False

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._stamp = ""

    def now(self) -> str:
        """The current time as the dialect writes it (remade once a second)."""
        seconds = int(self._clock())
        if seconds != self._second:
            self._stamp = iso_time(seconds)
            self._second = seconds
        return self._stamp

    def render(
        self, room: Room, events: Sequence[tuple[RoomEvent, Participant | None]]
    ) -> bytes:
        """The turn's events in ``room`` as frames (one rendering for all)."""
        return b"".join(self.render_each(room, events))

    def render_each(
        self, room: Room, events: Sequence[tuple[RoomEvent, Participant | None]]
    ) -> list[bytes]:
        """Each event's frames, apart (the fan-out joins a sender's share)."""
        name = room.name.display
        stamp = self.now()
        # A message's object written from a template: what ``frame`` would
        # make of its dict, byte for byte (the tests hold it to that), at
        # 1.0 us an event in a turn of ten against json's 7.9 (json builds
        # an encoder per call); its head (type, room, nick) made once per
        # speaker and turn, and its frame header looked up.
        room_part = ',"room":' + _string(name) + ',"nick":'
        tail = ',"time":"' + stamp + '"}'
        heads: dict[tuple[type, str], str] = {}
        out = []
        last = None
        for event, _ in events:
            kind = type(event)
            if kind is Said or kind is Acted:
                key = (kind, event.nick)  # type: ignore[union-attr]
                head = heads.get(key)
                if head is None:
                    head = heads[key] = (
                        _SPEECH[kind]
                        + room_part
                        + _string(event.nick)  # type: ignore[union-attr]
                        + ',"text":'
                    )
                payload = (
                    head + _string(event.text) + tail  # type: ignore[union-attr]
                ).encode("utf-8", "replace")
                length = len(payload)
                out.append(
                    (_HEADERS[length] if length < _TABLED else frame_header(length))
                    + payload
                )
            else:
                if kind is Moderated and event.change.kind in MEMBER_CHANGES:  # type: ignore[union-attr]
                    last = len(out)
                out.append(frame(_object(name, stamp, event)))
        if last is not None:
            # Rendered at the turn's end: the room as it is now, what the
            # clients should end up showing; so once, after the last change
            # (``/op a b c d`` is one list, not four, to every web member).
            # Everyone gets that piece (moderation has no sender), and a
            # member who joined after it got the list on joining.
            out[last] += members_frame(room)
        return out

    def render_private(
        self,
        sender: Participant,
        recipient: Participant,  # noqa: ARG002 (the protocol's; it is the reader)
        text: str,
    ) -> bytes:
        """A private message from ``sender``."""
        return frame(
            {
                "type": "private",
                "nick": sender.nick.display,
                "text": text,
                "time": self.now(),
            }
        )

    def render_history(self, room: Room, messages: Sequence[StoredMessage]) -> bytes:
        """A room's replayed messages as one ``history`` frame, with their times."""
        return frame(
            {
                "type": "history",
                "room": room.name.display,
                "messages": [
                    {
                        "type": "action" if message.action else "message",
                        "nick": message.sender,
                        "text": message.text,
                        "time": iso_time(message.at),
                    }
                    for message in messages
                ],
            }
        )


def _object(name: str, stamp: str, event: RoomEvent) -> dict[str, object]:
    """The dialect's object for ``event`` in the room called ``name``."""
    match event:
        case Said(_, nick, text):
            # An IRC NOTICE is a message here: a browser has no use for
            # the difference (no auto-replies to suppress).
            obj: dict[str, object] = {
                "type": "message",
                "room": name,
                "nick": nick,
                "text": text,
                "time": stamp,
            }
        case Acted(_, nick, text):
            obj = {
                "type": "action",
                "room": name,
                "nick": nick,
                "text": text,
                "time": stamp,
            }
        case Joined(_, nick):
            obj = {"type": "join", "room": name, "nick": nick, "time": stamp}
        case Left(_, nick, reason):
            obj = {
                "type": "part",
                "room": name,
                "nick": nick,
                "reason": reason,
                "time": stamp,
            }
        case Kicked(_, nick, _, by_nick, reason):
            obj = {
                "type": "kick",
                "room": name,
                "nick": nick,
                "by": by_nick,
                "reason": reason,
                "time": stamp,
            }
        case Quit(_, nick, reason):
            obj = {"type": "quit", "nick": nick, "reason": reason, "time": stamp}
        case Renamed(_, nick, new):
            obj = {"type": "nick", "old": nick, "new": new, "time": stamp}
        case TopicSet(_, nick, text):
            obj = {
                "type": "topic",
                "room": name,
                "nick": nick,
                "text": text,
                "time": stamp,
            }
        case Moderated(_, _, _, text):
            obj = {"type": "notice", "room": name, "text": text}
        case RoomNotice(text):
            obj = {"type": "notice", "room": name, "text": text}
    return obj
