"""
The two kinds of stand-in a clustered node puts in its core.

A :class:`Relay` is a member of every room's other-format members
(``room.foreign``) but of no room: at each room's flush the core renders
the turn's events once in :class:`ClusterFormat` for it, exactly as it
renders them once for all IRC or web members, and the relay publishes
them: one publish per room per reactor turn, whatever the room's size.

A :class:`GhostClient` is the client of a user of another node: such a
participant (``remote`` set) is in rooms and in the directory so that
``/who``, ``/rooms``, nicknames and ``/msg`` see them, but never in a
fan-out; what is sent to it directly (a reply meant for its own node)
is dropped, since its node answers its user itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from attrs import define
from zope.interface import implementer

from twisted_chat.cluster import wire
from twisted_chat.core.events import Kicked, Moderated
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.room import ELSEWHERE

if TYPE_CHECKING:
    from twisted_chat.core.events import RoomEvent
    from twisted_chat.core.records import StoredMessage
    from twisted_chat.core.room import Participant, Room

__all__ = ["ClusterFormat", "GhostClient", "Relay"]

#: The events after which other nodes get the room's rules again.
_CHANGES = (Moderated, Kicked)


class ClusterFormat:
    """Room events as :mod:`wire` lines; the relays' ``WireFormat``."""

    #: A relay never speaks, so nothing of its own is left out or echoed.
    echo = False

    def __init__(self, uid_of: Callable[[Participant], str]) -> None:
        self._uid_of = uid_of

    def render(
        self, room: Room, events: Sequence[tuple[RoomEvent, Participant | None]]
    ) -> bytes:
        return b"".join(self.render_each(room, events))

    def render_each(
        self,
        room: Room,
        events: Sequence[tuple[RoomEvent, Participant | None]],
    ) -> list[bytes]:
        uid_of = self._uid_of
        pieces = [wire.encode_event(event, sender, uid_of) for event, sender in events]
        # After the turn's last change of the rules, the rules as they stand.
        for index in range(len(events) - 1, -1, -1):
            event, sender = events[index]
            if sender is not ELSEWHERE and type(event) in _CHANGES:
                pieces[index] += wire.rules_line(room, uid_of)
                break
        return pieces

    def render_private(
        self, sender: Participant, recipient: Participant, text: str
    ) -> bytes:
        del sender, recipient, text
        return b""  # private messages go to one node (ClusterNode.private)

    def render_history(self, room: Room, messages: Sequence[StoredMessage]) -> bytes:
        del room, messages
        return b""  # a relay joins nothing, so nothing is replayed to it


@implementer(IChatClient)
@define(eq=False)
class Relay:
    """The client of one room's relay: its turn's events, published."""

    room: Room
    wire_format: ClusterFormat
    publish: Callable[[Room, bytes], None]
    peer: str = "cluster"

    def send(self, data: bytes) -> None:
        """Direct replies: a relay asks nothing, so there are none."""

    def send_wire(self, data: bytes) -> None:
        if data:
            self.publish(self.room, data)

    def close(self) -> None:
        """A relay goes with its room."""


@implementer(IChatClient)
@define(eq=False)
class GhostClient:
    """The client of a user of node ``node``, known here by ``uid``."""

    node: str
    uid: str
    peer: str = ""
    #: Asks their node to close them (a /kill, a server ban made here),
    #: with the last line they were sent (its reason).
    closing: Callable[[GhostClient, bytes], None] | None = None
    _last: bytes = b""

    def send(self, data: bytes) -> None:
        """Their own node answers them; only the last line is kept, for close."""
        self._last = data

    def close(self) -> None:
        """Their own node holds the connection: it is asked to close it."""
        if self.closing is not None:
            self.closing(self, self._last)
