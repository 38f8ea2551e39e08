"""
One connection of the web front-end, beneath HTTP and the WebSocket:
:class:`WebConnection`, the wrapper :class:`~twisted_chat.transports.web.
WebFactory` puts around each of the Site's connections.

Twisted's WebSocket support has no bound on a message's size: it
reassembles a message's frames in a buffer that grows for as long as the
peer sends (``_WebSocketWireProtocol._textBuffer``), so one browser could
make the server hold gigabytes.  Once the connection has upgraded, this
wrapper counts the bytes read since the last complete message, feeds them
to wsproto in slices of :data:`FEED_SLICE`, and past
:data:`~twisted_chat.transports.web_session.MAX_FRAME` plus
:data:`FRAME_SLACK` (frame headers, a ping) has the session close with
1009 before anything more is fed: what a connection makes Twisted hold is
bounded by about 21 KiB, whatever it sends.  The count errs low, never
high (a message that ends inside a slice resets it with up to a slice of
the next one already fed), so no message within the limit is refused; the
session checks each complete message's size exactly.

It also holds what was read while a flood wait holds the session (its
socket is paused, so at most the rest of one read), and counts the
connections still plain HTTP (page loads, or idle keep-alives) against the
caps: at most ``--max-per-ip`` per address group and ``--max-clients`` in
all.  A connection past them is answered 503 and closed.  Once upgraded a
connection leaves that count: the session counts in the chat's caps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper

from twisted_chat.core.admission import address_group
from twisted_chat.transports.stream_client import describe
from twisted_chat.transports.web_session import MAX_FRAME

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress
    from twisted.python.failure import Failure

    from twisted_chat.transports.web import WebFactory
    from twisted_chat.transports.web_session import WebSession

__all__ = ["FEED_SLICE", "FRAME_SLACK", "WebConnection"]

#: wsproto is fed at most this much at a time, so a message that completes
#: inside a slice hides at most this many bytes of the next from the count.
FEED_SLICE: Final = 4096
#: Bytes of frame headers (and interleaved pings) allowed above MAX_FRAME.
FRAME_SLACK: Final = 1024

_REFUSAL_TEXT: Final = b"Too many connections from your address; try again later.\n"
_REFUSED: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_REFUSAL_TEXT), _REFUSAL_TEXT)
)


class WebConnection(ProtocolWrapper):
    """
    One TCP (or TLS) connection of the web front-end: an HTTP connection
    counted against the caps until it upgrades; then the bound on how much
    of a message it may make Twisted buffer, and the flood hold.
    """

    factory: WebFactory

    def __init__(self, factory: WebFactory, wrapped: Any) -> None:
        super().__init__(factory, wrapped)  # type: ignore[arg-type]
        self.group = ""
        self.counted = False
        self.refused = False
        self.session: WebSession | None = None
        #: Bytes read since the last complete message (once upgraded).
        self.since_message = 0
        #: Read while the session holds for flood control, not yet fed.
        self.unfed = b""
        #: After a 1009: input is thrown away until the peer closes.
        self.discarding = False
        self._linger: Any = None

    def makeConnection(self, transport: Any) -> None:
        peer: IAddress = transport.getPeer()
        self.group = address_group(describe(peer)[1])
        if not self.factory.count_http(self.group):
            self.refused = True
            self.transport = transport
            self.connected = 1
            transport.write(_REFUSED)
            transport.loseConnection()
            return
        self.counted = True
        super().makeConnection(transport)

    def upgraded(self, session: WebSession) -> None:
        """The connection is a WebSocket now: the session counts in the caps."""
        self.session = session
        self._uncount()

    def _uncount(self) -> None:
        if self.counted:
            self.counted = False
            self.factory.uncount_http(self.group)

    def linger(self, seconds: float) -> None:
        """
        Half-close after the close frame just written, and read (and drop)
        whatever arrives until the peer closes, or ``seconds`` have passed.
        """
        self.discarding = True
        self.unfed = b""
        transport: Any = self.transport
        transport.resumeProducing()  # a flood pause would stop us hearing EOF
        transport.loseWriteConnection()
        reactor = self.factory.sessions.reactor
        self._linger = reactor.callLater(seconds, transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        if self.discarding:
            return
        session = self.session
        if session is None:
            if not self.refused:
                self.wrappedProtocol.dataReceived(data)
            return
        if self.unfed or session.holding:
            self.unfed += data
            return
        self._feed(data)

    def resume_feeding(self) -> None:
        """The flood wait is over: feed what was read meanwhile."""
        data, self.unfed = self.unfed, b""
        if data:
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        session = self.session
        if session is None:
            return
        deliver = self.wrappedProtocol.dataReceived
        transport: Any = self.transport
        limit = MAX_FRAME + FRAME_SLACK
        offset = 0
        while offset < len(data):
            if self.discarding or self.disconnecting or transport.disconnecting:
                return
            if session.holding:
                self.unfed = data[offset:]
                return
            room = limit - self.since_message
            if room <= 0:
                session.too_big()
                return
            piece = data[offset : offset + min(room, FEED_SLICE)]
            offset += len(piece)
            self.since_message += len(piece)
            deliver(piece)
        if self.since_message >= limit and not self.discarding:
            session.too_big()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._uncount()
        if self.refused:
            return
        super().connectionLost(reason)
