"""
The seam between the chat core and the transports.

The core reaches a participant only through :class:`IChatClient`; the TCP
adapter implements it for a connection and the UDP adapter for a proven
address.  Tests implement it with :class:`twisted_chat.testing.RecordingClient`.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IChatClient(Interface):
    """What the core may do to one connected participant."""

    peer: str = Attribute(
        "A short description of the remote end for logs, such as "
        "'tcp 127.0.0.1:50312'. Also the key the per-address caps use."
    )

    def send(data: bytes) -> None:
        """
        Queue finished server lines (UTF-8, each ending in CRLF).

        The same ``bytes`` object is handed to every member of a room, so an
        implementation must not modify it. It must never call back into the
        chat server synchronously: a client that has to go (a slow reader
        past its send queue) is dropped on a later reactor turn.
        """

    def close() -> None:
        """Flush what is queued, then end the connection or session."""
