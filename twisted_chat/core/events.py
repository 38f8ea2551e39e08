"""
What a room hears, as values, for the wire formats other than the line
protocol's (issue 15: IRC; later the web's JSON).

The line protocol's bytes are made where an event happens (``lines``) and
stay the fan-out's currency: a room of only line users never builds one of
these.  Only when a room has members of another format
(:class:`~twisted_chat.core.foreign.ForeignMembers`) does the speaker also
hand over the event, and each format renders a turn's events once, for all
of its members (:class:`WireFormat`).  Anything said without an event (a
moderation notice, a server notice) reaches other formats as
:class:`RoomNotice`, the text of its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from attrs import define, frozen

if TYPE_CHECKING:
    from twisted_chat.core.records import StoredMessage
    from twisted_chat.core.room import Participant, Room
    from twisted_chat.core.room_records import Change

__all__ = [
    "Acted",
    "Joined",
    "Kicked",
    "Left",
    "Moderated",
    "Quit",
    "Renamed",
    "RoomEvent",
    "RoomNotice",
    "Said",
    "TopicSet",
    "WireFormat",
]


# Each event names its people as they were called when it happened (a
# turn's events are rendered at its end, perhaps after a rename), and keeps
# the participant for what a format shows beside the nick (IRC's host cloak).


# Said and Acted are made for every message said in a room with members of
# another format: a frozen class's __init__ costs 2.6 times a plain one's
# (1.1 against 0.4 us here), so these two are not frozen; nothing changes
# them after the speaker made them.


@define
class Said:
    """A message to the room by ``who``, then called ``nick``."""

    who: Participant
    nick: str
    text: str
    #: Said as an IRC ``NOTICE`` (formats that have notices show it so).
    notice: bool = False


@define
class Acted:
    """``/me``: an action by ``who``."""

    who: Participant
    nick: str
    text: str


@frozen
class Joined:
    """``who`` joined the room."""

    who: Participant
    nick: str


@frozen
class Left:
    """``who`` left the room (``/part``), with an optional reason."""

    who: Participant
    nick: str
    reason: str = ""


@frozen
class Kicked:
    """``who`` was removed from the room by ``by`` (None: by the server)."""

    who: Participant
    nick: str
    by: Participant | None
    by_nick: str
    reason: str = ""


@frozen
class Quit:
    """``who`` left the server; told once to each neighbour."""

    who: Participant
    nick: str
    reason: str


@frozen
class Renamed:
    """``who``, called ``nick`` until now, is called ``new``."""

    who: Participant
    nick: str
    new: str


@frozen
class TopicSet:
    """``who`` set the room's topic to ``text``."""

    who: Participant
    nick: str
    text: str


@frozen
class Moderated:
    """
    An operator's change (or the clock's), with the notice line users get:
    IRC shows the changes it has modes for as ``MODE`` lines.
    """

    change: Change
    by: Participant | None
    by_nick: str
    text: str


@frozen
class RoomNotice:
    """A notice with no structure of its own: the line protocol's text."""

    text: str


RoomEvent = (
    Said
    | Acted
    | Joined
    | Left
    | Kicked
    | Quit
    | Renamed
    | TopicSet
    | Moderated
    | RoomNotice
)


class WireFormat(Protocol):
    """
    A way of writing room events other than the line protocol's.

    A client of such a format has ``wire_format`` (this) and
    ``send_wire(data)`` (bytes already in its format); ``send`` still takes
    the core's direct replies as lines, for the transport to translate.
    Members whose client has the same ``wire_format`` object share its
    renderings: a transport gives clients with the same capabilities one
    object.
    """

    #: Whether a sender gets their own events back (IRCv3 ``echo-message``).
    echo: bool

    def render(
        self, room: Room, events: Sequence[tuple[RoomEvent, Participant | None]]
    ) -> bytes:
        """``events`` (each with its sender) as this format's bytes, for ``room``."""
        ...

    def render_each(
        self, room: Room, events: Sequence[tuple[RoomEvent, Participant | None]]
    ) -> list[bytes]:
        """:meth:`render` of each event apart (a turn's events, rendered once)."""
        ...

    def render_private(
        self, sender: Participant, recipient: Participant, text: str
    ) -> bytes:
        """A private message from ``sender`` to ``recipient``, in this format."""
        ...

    def render_history(self, room: Room, messages: Sequence[StoredMessage]) -> bytes:
        """A room's replayed history, in this format (with each time)."""
        ...
