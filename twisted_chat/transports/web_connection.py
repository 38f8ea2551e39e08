"""
One connection of the web front-end, beneath HTTP and the WebSocket:
:class:`WebConnection`, the wrapper :class:`~twisted_chat.transports.web.
WebFactory` puts around each of the Site's connections.

Until it upgrades, a connection is plain HTTP, for twisted.web, and counts
against the caps of such connections (page loads, idle keep-alives): at
most ``--max-per-ip`` per address group and ``--max-clients`` in all; one
past them is answered 503 and closed.  Once upgraded it leaves that count
(the session counts in the chat's caps) and its input is read here, not by
Twisted's WebSocket: :meth:`WebConnection.read_frames`, RFC 6455's framing
for a server (masked client frames, fragmented messages, ping, pong,
close, UTF-8 checked), each complete text message handed to the session.

Why not Twisted's reading (``_WebSocketWireProtocol`` over wsproto), which
does the upgrade here: it has no bound on a message's size (it
reassembles a message's frames in a buffer that grows for as long as the
peer sends), and it costs about 33 us a message (wsproto's generator-based
frame parser, then ``singledispatch``), several times what the line
protocol spends on a whole message said, for one of a hundred deliveries.
Here a message is refused from its frame header as soon as its length
passes :data:`~twisted_chat.transports.web_session.MAX_FRAME` (1009, before
its payload is read, so nothing of it is held), and a frame costs a few
slices and one big-integer XOR to unmask.  While a flood wait holds the
session, what was read stays here unparsed (the socket is paused, so at
most one read and a frame).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper

from twisted_chat.core.admission import address_group
from twisted_chat.transports.stream_client import describe
from twisted_chat.transports.web_intake import take_read
from twisted_chat.transports.web_session import MAX_FRAME

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress
    from twisted.python.failure import Failure

    from twisted_chat.transports.web import WebFactory
    from twisted_chat.transports.web_session import WebSession

__all__ = ["CLOSE_PROTOCOL", "CLOSE_UTF8", "MAX_FRAGMENTS", "WebConnection", "unmask"]

#: RFC 6455 close codes for a peer that breaks the framing or the UTF-8.
CLOSE_PROTOCOL: Final = 1002
CLOSE_UTF8: Final = 1007
#: Frames a message may come in (a browser sends one; 16 KiB in 1-byte
#: frames would cost 16,384 turns of the loop for one line).
MAX_FRAGMENTS: Final = 64
_TEXT: Final = 1
_BINARY: Final = 2
_CLOSE: Final = 8
_PING: Final = 9

_REFUSAL_TEXT: Final = b"Too many connections from your address; try again later.\n"
_REFUSED: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_REFUSAL_TEXT), _REFUSAL_TEXT)
)


def unmask(payload: bytes, mask: bytes) -> bytes:
    """A client frame's payload, unmasked (RFC 6455, 5.3): one integer XOR."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )


class WebConnection(ProtocolWrapper):
    """
    One TCP (or TLS) connection of the web front-end: an HTTP connection
    counted against the caps until it upgrades; then the WebSocket's frames
    read, bounded, and held during a flood wait.
    """

    factory: WebFactory

    def __init__(self, factory: WebFactory, wrapped: Any) -> None:
        super().__init__(factory, wrapped)  # type: ignore[arg-type]
        self.group = ""
        self.counted = False
        self.refused = False
        self.session: WebSession | None = None
        #: Read and not parsed yet: a frame's start, or a flood wait's input.
        self.unfed = b""
        #: The fragments of a message still arriving, its opcode and size.
        self._parts: list[bytes] | None = None
        self._opcode = 0
        self._size = 0
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
        # Once the upgrade's call has returned, HTTP is done with for good:
        # forget its channel, request and wsproto connection (about 5 KiB a
        # connection), since we read the frames and tell the session of the
        # loss ourselves.
        self.factory.sessions.reactor.callLater(0, self._forget_http)

    def _forget_http(self) -> None:
        self.wrappedProtocol = None  # type: ignore[assignment]

    def logPrefix(self) -> str:
        return "WebSession" if self.session is not None else "WebConnection"

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
        if session.closing:
            self.unfed = b""  # nothing more is read after a close frame
            return
        session.factory.server.operators.stats.bytes_received += len(data)
        self.unfed = self.unfed + data if self.unfed else data
        if not session.holding:
            self.read_frames()

    def resume_feeding(self) -> None:
        """The flood wait is over: read what arrived meanwhile."""
        if self.unfed and not self.discarding:
            self.read_frames()

    def read_frames(self) -> None:
        """Hand the session every complete frame in :attr:`unfed`."""
        session = self.session
        if session is None:
            return
        data = self.unfed
        end = len(data)
        offset = 0
        # The usual frames (a whole masked text message each) of a run go to
        # the session together, in order, as LineIntake hands a read's lines
        # over: one call and one flood check for all of them.  It holds or
        # drops what follows one that makes it wait or close.
        batch: list[bytes] = []
        while end - offset >= 2:
            first, second = data[offset], data[offset + 1]
            size = second & 0x7F
            head = offset + 2
            if size == 126:
                if end - head < 2:
                    break
                size = int.from_bytes(data[head : head + 2], "big")
                head += 2
            elif size == 127:
                if end - head < 8:
                    break
                size = int.from_bytes(data[head : head + 8], "big")
                head += 8
            if first == 0x81 and second & 0x80 and self._parts is None:
                start = head + 4
                stop = start + size
                if size <= MAX_FRAME and stop <= end:
                    # unmask(), inline: the mask repeated over the payload.
                    key = (data[head:start] * (size // 4 + 1))[:size]
                    payload = (
                        int.from_bytes(data[start:stop], "little")
                        ^ int.from_bytes(key, "little")
                    ).to_bytes(size, "little")
                    try:
                        payload.decode("utf-8")
                    except UnicodeDecodeError:
                        pass  # failed below, after what came before it
                    else:
                        batch.append(payload)
                        offset = stop
                        continue
                elif size <= MAX_FRAME:
                    break  # the rest of it is still to come
            if batch:
                take_read(session, batch)
                batch = []
            if session.holding or session.closing or self.discarding:
                break
            stop = self._frame(data, first, second, size, head)
            if stop < 0:
                break
            offset = stop
        if batch:
            take_read(session, batch)
        self.unfed = data[offset:] if offset < end and not session.closing else b""

    def _frame(self, data: bytes, first: int, second: int, size: int, head: int) -> int:
        """
        Any other frame, at ``head`` (its mask): where the next one starts,
        or -1 to stop (incomplete, or the connection is being closed).
        """
        session = self.session
        if session is None:
            return -1
        if first == 0x81 and second & 0x80 and self._parts is None:
            # The usual frame that read_frames could not take: too big, or
            # not UTF-8.
            if size > MAX_FRAME:
                session.too_big()
            else:
                session.fail(CLOSE_UTF8)
            return -1
        opcode = first & 0x0F
        if (first & 0x70) or not second & 0x80 or not self._fits(opcode, first):
            # RSV bits with no extension, an unmasked client frame, a
            # reserved opcode, a fragmented control frame, a continuation
            # of nothing, a new message inside one.
            session.fail(CLOSE_PROTOCOL)
            return -1
        if opcode < _CLOSE and self._size + size > MAX_FRAME:
            session.too_big()
            return -1
        if opcode >= _CLOSE and size > 125:
            session.fail(CLOSE_PROTOCOL)
            return -1
        start = head + 4
        stop = start + size
        if stop > len(data):
            return -1
        payload = unmask(data[start:stop], data[head:start])
        if opcode == _CLOSE:
            session.peer_closed(payload)
            return stop
        if opcode >= _CLOSE:
            # A ping or a pong costs a line's token, as telnet negotiation
            # does over TCP: a stream of them says nothing and must still
            # be slowed down.
            session.charge()
            if opcode == _PING:
                session.pong(payload)
            return stop
        if self._parts is not None and len(self._parts) >= MAX_FRAGMENTS:
            session.too_big()  # in pieces too small to be worth reading
            return -1
        self._message(first & 0x80, opcode, payload)
        return stop

    def _fits(self, opcode: int, first: int) -> bool:
        """Whether a frame of ``opcode`` may come now (before its length is checked)."""
        if opcode >= _CLOSE:
            return opcode <= 10 and bool(first & 0x80)
        if opcode == 0:
            return self._parts is not None
        return opcode in (_TEXT, _BINARY) and self._parts is None

    def _message(self, fin: int, opcode: int, payload: bytes) -> None:
        """A data frame: the message, once its last frame is in."""
        parts = self._parts
        if not fin:
            if parts is None:
                self._parts, self._opcode, self._size = [payload], opcode, len(payload)
            else:
                parts.append(payload)
                self._size += len(payload)
            return
        if parts is not None:
            opcode = self._opcode
            parts.append(payload)
            payload = b"".join(parts)
            self._parts, self._size = None, 0
        session = self.session
        if session is None:
            return
        if opcode == _BINARY:
            session.bytesMessageReceived(payload)
            return
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            session.fail(CLOSE_UTF8)
            return
        session.line_received(payload)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._uncount()
        if self.refused:
            return
        self.factory.unregisterProtocol(self)
        session = self.session
        if session is not None:
            session.connectionLost(reason)  # HTTP's channel would only pass it on
        elif self.wrappedProtocol is not None:
            self.wrappedProtocol.connectionLost(reason)
        self.wrappedProtocol = None  # type: ignore[assignment]
