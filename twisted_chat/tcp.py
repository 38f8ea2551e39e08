"""
The chat over TCP (telnet, nc, TLS): framing and translation only.

Wire protocol (the whole contract is ``PROTOCOL.md``)::

    $ nc localhost 9000
    * Welcome to twisted-chat, guest1! Pick a name with /nick NAME; ...
    * You joined #lobby; 1 other person here (/who lists them).
    /nick alice
    * You are now known as alice.
    hello
    [#lobby] <bob> hi alice

Client lines are UTF-8 ending in LF, CRLF or a bare CR; telnet negotiation
and terminal escapes are stripped before the core sees the text.  Server lines
end in CRLF.  Every decision is the core's (:mod:`twisted_chat.chat`); this
module owns the byte stream: framing, the line-length limit, flood control
(reading pauses while the client's token bucket is empty) and the send queue
limit (a client that stops reading is dropped at ``--max-sendq``).  Output
goes straight to the socket when nothing is queued for it, and through
Twisted's buffered ``write`` otherwise.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import interfaces, tcp
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat import lines
from twisted_chat.cleaning import TelnetFilter, clean_text
from twisted_chat.errors import LineTooLong
from twisted_chat.flood import TokenBucket
from twisted_chat.interfaces import IChatClient
from twisted_chat.limits import Admission, address_group, log_refusal

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime

    from twisted_chat.chat import ChatServer, Participant
    from twisted_chat.settings import Settings

_log = Logger()

#: Flood control charges this many bytes of telnet negotiation as one line.
TELNET_BYTES_PER_LINE = 64

#: Twisted's transports call ``pauseProducing`` once this much output is
#: buffered (``FileDescriptor.bufferSize``); the send queue count starts there.
_TRANSPORT_BUFFER = 2**16


def describe(address: IAddress) -> tuple[str, str]:
    """``(peer, host)`` for a transport address: a log label and the cap key."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        # UNIX sockets have no host: local clients (or a proxy in front of
        # us) are capped only by --max-clients.
        return f"unix {getattr(address, 'name', '') or 'socket'}", ""
    if ":" in host:
        return f"tcp [{host}]:{port}", host
    return f"tcp {host}:{port}", host


def unsent_bytes(transport: object) -> int | None:
    """
    How much output a transport holds that the peer has not taken yet.

    Twisted's socket transports (``FileDescriptor``) keep it in
    ``dataBuffer`` and ``_tempDataBuffer``; TLS writes through to the socket
    transport beneath it.  These are private attributes, so when they are
    not there (another reactor, a test fake) this returns None and the
    caller counts what it wrote since the transport paused it instead.
    """
    for _ in range(3):
        try:
            return int(
                len(transport.dataBuffer)  # type: ignore[attr-defined]
                - transport.offset  # type: ignore[attr-defined]
                + transport._tempDataLen  # type: ignore[attr-defined]
            )
        except AttributeError:
            transport = getattr(transport, "transport", None)
            if transport is None:
                return None
    return None


class StreamTransport(Protocol):
    """What this adapter uses of a stream transport (TCP, TLS and UNIX have it)."""

    disconnecting: bool

    def write(self, data: bytes) -> None: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def registerProducer(self, producer: object, streaming: bool) -> None: ...
    def getPeer(self) -> IAddress: ...
    def setTcpNoDelay(self, enabled: bool) -> None: ...
    def getHandle(self) -> Any: ...


@implementer(interfaces.IPushProducer)
class _OutputWatch:
    """
    Registered on each transport so the daemon learns when a client stops
    reading: Twisted pauses a streaming producer once the transport's buffer
    passes 64 KiB and resumes it when the buffer drains.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: ChatLineProtocol) -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol.output_stalled()

    def resumeProducing(self) -> None:
        self._protocol.output_drained()

    def stopProducing(self) -> None:
        """Nothing to stop: the connection is going away."""


@implementer(IChatClient)
class ChatLineProtocol(LineReceiver):
    """Speaks the chat line protocol over one stream connection."""

    delimiter = lines.CRLF
    factory: ChatServerFactory
    transport: StreamTransport  # type: ignore[assignment]
    # Our own state in slots: with 10,000 idle clients every byte of a
    # connection's footprint counts (the base classes keep their __dict__).
    __slots__ = (
        "_admitted",
        "_bucket",
        "_discarding",
        "_dropped",
        "_flood_wait",
        "_group",
        "_pending",
        "_socket",
        "_stalled",
        "_telnet",
        "_unsent",
        "participant",
        "peer",
    )

    def __init__(self) -> None:
        self.peer = "tcp ?"
        self._group = ""
        self._admitted = False
        self.participant: Participant | None = None
        self._telnet = TelnetFilter()
        self._pending = b""
        self._discarding = False
        self._bucket: TokenBucket | None = None
        self._flood_wait: IDelayedCall | None = None
        self._stalled = False
        self._unsent = 0
        self._dropped = False
        self._socket: socket.socket | None = None

    # -- connection life -------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.peer, host = describe(self.transport.getPeer())
        self._group = address_group(host)
        refusal = factory.admission.admit(self._group)
        if refusal is not None:
            log_refusal(self.peer, refusal)
            self.transport.write(lines.error(refusal))
            self.transport.loseConnection()
            return
        self._admitted = True
        factory.protocols.add(self)
        if interfaces.ITCPTransport.providedBy(self.transport):
            # Chat lines are small and interactive: never wait for Nagle.
            with contextlib.suppress(OSError):
                self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(_OutputWatch(self), True)
        transport: object = self.transport
        if type(transport) is tcp.Server:
            # Plain TCP only: under TLS the socket carries ciphertext.
            self._socket = transport.getHandle()
        settings = factory.server.settings
        if settings.flood_control:
            self._bucket = TokenBucket(settings.flood_burst, settings.flood_rate)
        self.participant = factory.server.connect(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: ARG002
        if self._flood_wait is not None and self._flood_wait.active():
            self._flood_wait.cancel()
        if not self._admitted:
            return
        self._admitted = False
        self.factory.forget(self)
        self.factory.admission.release(self._group)
        if self.participant is not None:
            self.factory.server.disconnect(
                self.participant, self.factory.quit_reasons.pop(self, "connection lost")
            )

    def apply_settings(self, settings: Settings) -> None:
        """Take new flood-control settings after a reload, keeping the tokens."""
        if not settings.flood_control:
            self._bucket = None
        elif self._bucket is None:
            self._bucket = TokenBucket(settings.flood_burst, settings.flood_rate)
        else:
            self._bucket.burst = settings.flood_burst
            self._bucket.rate = settings.flood_rate

    # -- IChatClient -----------------------------------------------------------

    def send(self, data: bytes) -> None:
        """``IChatClient`` API: queue lines, and count them while stalled."""
        if self._stalled:
            buffered = unsent_bytes(self.transport)
            if buffered is None:
                self._unsent += len(data)
            else:
                self._unsent = buffered + len(data)
            if self._unsent > self.factory.server.settings.max_sendq:
                self._drop_slow_reader()
                return
        elif self._socket is not None:
            self._write_through(data)
            return
        self.transport.write(data)

    def _write_through(self, data: bytes) -> None:
        """
        Send at once when nothing is queued, as asyncio's transports do.

        Twisted's ``write`` always buffers and waits for the next reactor
        turn, which costs a poll and two ``epoll_ctl`` calls per write: on
        the fan-out path that is most of the cost and most of the latency.
        Whatever the socket does not take, and any error, goes the normal
        way through ``transport.write``, which keeps order and reports
        errors as Twisted always does.
        """
        transport: Any = self.transport
        if transport.dataBuffer or transport._tempDataLen or transport.disconnecting:
            transport.write(data)
            return
        try:
            sent = self._socket.send(data)  # type: ignore[union-attr]
        except OSError:
            sent = 0
        if sent < len(data):
            transport.write(data[sent:])

    def close(self) -> None:
        """``IChatClient`` API: flush, then hang up."""
        self.transport.loseConnection()

    # -- output flow control ---------------------------------------------------

    def output_stalled(self) -> None:
        """The transport holds 64 KiB the client has not read yet."""
        if not self._stalled:
            self._stalled = True
            self._unsent = _TRANSPORT_BUFFER

    def output_drained(self) -> None:
        """The client caught up."""
        if not self._dropped:
            self._stalled = False
            self._unsent = 0

    def _drop_slow_reader(self) -> None:
        if self._dropped:
            return
        self._dropped = True
        _log.warn(
            "dropping slow reader peer={peer} unsent={unsent}",
            peer=self.peer,
            unsent=self._unsent,
        )
        self.factory.quit_reasons[self] = "too slow to read, send queue full"
        # Whatever is buffered will never be read: discard it rather than
        # holding a megabyte for a client that does not read.
        self.transport.abortConnection()

    # -- input -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Frame lines ourselves: ``LineReceiver`` knows one delimiter only, and
        on an overlong line it throws away the good lines that follow it.
        """
        received = len(data)
        data = self._telnet.feed(data)
        if len(data) < received:
            self._charge_telnet(received - len(data))
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1 :]
        self._pending += data
        self._process()

    def _charge_telnet(self, stripped: int) -> None:
        """
        Make telnet negotiation count against flood control.

        A real client negotiates a few dozen bytes at connect; a stream of
        telnet commands makes no lines, so the line bucket alone would let
        it burn the server's CPU for ever.
        """
        bucket = self._bucket
        if bucket is None:
            return
        delay = bucket.spend(
            self.factory.reactor.seconds(), stripped / TELNET_BYTES_PER_LINE
        )
        if delay and self._flood_wait is None:
            self._pause_for_flood(delay, self._pending)

    def _process(self) -> None:
        if self._flood_wait is not None or not self._pending:
            return
        limit = self.factory.server.settings.max_line
        *complete, rest = self._pending.split(b"\n")
        self._pending = b""
        for index, line in enumerate(complete):
            if self.transport.disconnecting:
                return
            if len(line) > limit:
                self._refuse_long_line(limit)
                continue
            if not line:
                continue
            if self._bucket is not None:
                delay = self._bucket.take(self.factory.reactor.seconds())
                if delay:
                    self._pause_for_flood(delay, b"\n".join([*complete[index:], rest]))
                    return
            self.lineReceived(line)
        if len(rest) > limit:
            self._refuse_long_line(limit)
            self._discarding = True
            rest = b""
        self._pending = rest

    def lineReceived(self, line: bytes) -> None:
        """One complete line: decode, clean, hand to the core."""
        text = clean_text(line.decode("utf-8", "replace"))
        if text and not text.isspace() and self.participant is not None:
            self.factory.server.receive(self.participant, text)

    def lineLengthExceeded(self, line: bytes) -> None:
        """Never called: :meth:`dataReceived` enforces ``--max-line`` itself."""

    def _refuse_long_line(self, limit: int) -> None:
        self.transport.write(
            lines.error(
                LineTooLong(f"Lines are at most {limit} bytes; that one was not sent.")
            )
        )

    def _pause_for_flood(self, delay: float, unprocessed: bytes) -> None:
        """Stop reading until the bucket has a token: the client slows itself."""
        self._pending = unprocessed
        self.transport.pauseProducing()
        self._flood_wait = self.factory.reactor.callLater(delay, self._flood_over)

    def _flood_over(self) -> None:
        self._flood_wait = None
        self._process()
        if self._flood_wait is None and not self.transport.disconnecting:
            self.transport.resumeProducing()


class ChatServerFactory(Factory):
    """Builds one :class:`ChatLineProtocol` per connection, all sharing a core."""

    protocol = ChatLineProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(
        self, server: ChatServer, admission: Admission, reactor: IReactorTime
    ) -> None:
        self.server = server
        self.admission = admission
        self.reactor = reactor
        self.protocols: set[ChatLineProtocol] = set()
        #: Why the daemon dropped a connection, for the quit notice.
        self.quit_reasons: dict[ChatLineProtocol, str] = {}
        self._emptied: list[Deferred[None]] = []

    def forget(self, protocol: ChatLineProtocol) -> None:
        """A connection has ended; fire :meth:`wait_until_empty` waiters."""
        self.protocols.discard(protocol)
        if not self.protocols:
            waiting, self._emptied = self._emptied, []
            for waiter in waiting:
                waiter.callback(None)

    def wait_until_empty(self) -> Deferred[None]:
        """A Deferred that fires once no connection is left (at once if none)."""
        if not self.protocols:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._emptied.append(waiter)
        return waiter
