"""
The seam between the core and a cluster of daemons (issue 19, ``--cluster``).

The core stays sans-IO and knows nothing of Redis: it tells this port the
few things other nodes must learn at once (someone connected, was renamed,
is going; a room was made; a private message is for a user of another
node), and the cluster layer (:mod:`twisted_chat.cluster`) does the rest.
Users of other nodes appear here as participants with ``remote`` set
(their rooms list them, ``/who`` shows them, nicknames stay unique), and
what their rooms hear arrives through ``Room.hear_elsewhere``.  Without
``--cluster`` the server's ``cluster`` is None and each hook costs one
``is None`` test, never per message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from twisted_chat.core.names import Nick
    from twisted_chat.core.room import Participant, Room


class ClusterPort(Protocol):
    """What the core tells the cluster, from the reactor thread."""

    def connected(self, participant: Participant) -> None:
        """A user of this node is in the table under their guest name."""

    def disconnecting(self, participant: Participant, reason: str) -> None:
        """A user of this node is going; their rooms have not been told yet."""

    def disconnected(self, participant: Participant) -> None:
        """A user of this node is out of every room and table."""

    def renamed(self, participant: Participant, old: Nick, new: Nick) -> None:
        """A user of this node is called ``new`` now (``/nick``, a login)."""

    def changed(self, participant: Participant) -> None:
        """A user of this node logged in or out, or became a server operator."""

    def private(self, sender: Participant, recipient: Participant, text: str) -> None:
        """``/msg`` from ``sender`` (here) to ``recipient``, a remote user."""

    def room_made(self, room: Room) -> None:
        """``room`` is new here: what it hears must reach the other nodes."""
