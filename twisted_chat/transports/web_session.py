"""
One browser in the chat: the WebSocket protocol that is a chat participant.

Twisted's ``WebSocketResource`` (wsproto) does the upgrade; the frames that
come in are read beneath (:mod:`~twisted_chat.transports.web_connection`);
the rest of a connection's life is here, as
:mod:`twisted_chat.transports.stream_client` does it for the stream
front-ends: a server ban refused with one ``error`` frame, the caps
(:mod:`twisted_chat.core.admission`) counted at the upgrade and released
on loss, each text message judged as a line (``--max-line``, the flood
bucket: :func:`twisted_chat.core.intake.judge`), an empty bucket stopping
the socket's reading until it refills (the browser slows itself, nothing
is dropped), and the quit when the connection ends.  What goes out, and
the send queue's limit, is :mod:`~twisted_chat.transports.web_output`'s.

A message bigger than :data:`MAX_FRAME` closes the connection with 1009
(known from its frame header, before its payload is read); a binary one
with 1003, broken framing with 1002, bad UTF-8 with 1007.  A ban closes
with 1008, a cap with 1013 (try again later), ``/quit`` with 1000 and the
server's shutdown with 1001; the browser's own close is answered with its
code.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from twisted.internet import interfaces, tcp
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from twisted_chat.core.admission import Admission, address_group, log_refusal
from twisted_chat.core.bans import address_key
from twisted_chat.core.intake import REFUSE, Wait, judge, line_too_long, reloaded_bucket
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.lines import error as error_line
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.transports.stream_client import describe
from twisted_chat.transports.stream_output import OutputWatch
from twisted_chat.transports.web_format import WebFormat, hello_frame
from twisted_chat.transports.web_lines import frames_for_lines
from twisted_chat.transports.web_output import (
    CLOSE_BINARY,
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_LATER,
    WebOutput,
    close_frame,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime
    from twisted.python.failure import Failure
    from twisted.web.server import Request
    from twisted.web.websocket import WebSocketTransport

    from twisted_chat.core.chat import ChatServer, Participant
    from twisted_chat.core.settings import Settings

__all__ = [
    "CLOSE_BINARY",
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_TOO_BIG",
    "MAX_FRAME",
    "WebSession",
    "WebSessionFactory",
]

_log = RateLimitedLogger()

#: The biggest message a browser may send, in bytes, and about what a
#: connection may make the server hold while one is reassembled.  Far
#: above a line (``--max-line`` is 1 KiB by default; a longer line is
#: refused with ``line-too-long`` and the connection kept); a ``--max-line``
#: above it does not raise it.
MAX_FRAME: Final = 16 * 1024
#: Seconds input is read and discarded after a 1009, for the close to arrive.
LINGER: Final = 2.0
#: Codes a close frame may not carry (RFC 6455, 7.4.1).
_UNSENDABLE: Final = frozenset({1004, 1005, 1006, 1015})


@implementer(IChatClient)
class WebSession(WebOutput):
    """
    One browser's WebSocket, as a chat participant.

    Built by :class:`WebSessionFactory` for each upgrade; Twisted calls
    :meth:`negotiationStarted` (the socket is ours, nothing may be written
    yet), then :meth:`negotiationFinished` once the ``101`` has gone out.
    """

    __slots__ = (
        "_admitted",
        "_connection",
        "_flood_wait",
        "_group",
        "_held",
        "_host",
        "bucket",
    )

    def __init__(self, factory: WebSessionFactory) -> None:
        super().__init__(factory)
        self.bucket: Any = None
        self._connection: Any = None
        self._group = ""
        self._host = ""
        self._admitted = False
        self._flood_wait: IDelayedCall | None = None
        #: Messages read while a flood wait holds (at most one read's worth).
        self._held: deque[bytes] = deque()

    # -- the WebSocket's life ------------------------------------------------------

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        """The upgrade is under way: find the socket beneath the WebSocket."""
        wrapper: Any = getattr(transport, "transport", None)
        self._connection = wrapper
        self._tcp = getattr(wrapper, "transport", wrapper)
        if wrapper is not None and hasattr(wrapper, "upgraded"):
            wrapper.upgraded(self)

    def negotiationFinished(self) -> None:
        """The ``101`` is out: bans, caps, then the chat."""
        try:
            self._start()
        except Exception:
            # Never a traceback into twisted.web: it would answer with a 500
            # on a connection that speaks WebSocket now.
            _log.failure("while starting a web session, peer={peer}", peer=self.peer)
            self.abort()

    def _start(self) -> None:
        factory = self.factory
        now = factory.reactor.seconds()
        peer, host = describe(self._tcp.getPeer())
        self.peer = "web" + peer.removeprefix("tcp").removeprefix("unix")
        self._group = address_group(host)
        self._host = str(address_key(host) or "")
        banned = factory.server.operators.refusal(self._host, None)
        if banned is not None:
            _log.info("refused peer={peer}: server ban", peer=self.peer)
            self._write(frames_for_lines(banned))
            self._close(CLOSE_POLICY)
            return
        refusal = factory.admission.admit(self._group, now)
        if refusal is not None:
            log_refusal(self.peer, refusal)
            self._write(frames_for_lines(error_line(refusal)))
            self._close(CLOSE_TRY_LATER)
            return
        self._admitted = True
        factory.sessions.add(self)
        tcp_transport = self._tcp
        if interfaces.ITCPTransport.providedBy(tcp_transport):
            with contextlib.suppress(OSError):
                tcp_transport.setTcpNoDelay(True)
        # HTTPChannel registered itself to pause reading when output backs
        # up; a chat session wants to hear of it instead (the send queue).
        with contextlib.suppress(Exception):
            tcp_transport.unregisterProducer()
        tcp_transport.registerProducer(OutputWatch(self), True)
        if type(tcp_transport) is tcp.Server:
            self._socket = tcp_transport.getHandle()
        settings = factory.server.settings
        if settings.flood_control:
            self.bucket = factory.admission.credit.bucket(
                self._group, settings.flood_burst, settings.flood_rate, now
            )
        self._pending = []
        participant = factory.server.connect(
            self, self._group, host=self._host, transport="web"
        )
        self.participant = participant
        pending, self._pending = self._pending, None
        if participant.gone or self._closing:
            return
        self._nick = participant.nick.display
        self._write(hello_frame(self._nick, factory.server_name, settings.max_line))
        # What connect said, in its order; the default room's join (and its
        # members) just before the reply that says we joined, as later on.
        stamp = self.wire_format.now()
        for is_frame, data in pending or ():
            if is_frame:
                self.send_wire(data)
            elif data.startswith(b"* You joined "):
                self.send(data)
            else:
                self._write(frames_for_lines(data, stamp))
        self._write(self._own_changes(participant, b""))

    def connectionLost(self, reason: Failure) -> None:
        self._closing = True
        waiting, self._flood_wait = self._flood_wait, None
        if waiting is not None and waiting.active():
            waiting.cancel()
        self._held.clear()
        if not self._admitted:
            return
        self._admitted = False
        factory = self.factory
        reason = factory.quit_reasons.pop(self, "connection lost")
        factory.forget(self)
        factory.admission.release(self._group)
        if self.bucket is not None:
            factory.admission.credit.remember(
                self._group, self.bucket, factory.reactor.seconds()
            )
        if self.participant is not None:
            factory.server.disconnect(self.participant, reason)

    def pongReceived(self, payload: bytes) -> None:  # we read frames ourselves
        pass

    # -- input -----------------------------------------------------------------------

    @property
    def holding(self) -> bool:
        """Whether a flood wait holds input (the wrapper stops feeding wsproto)."""
        return self._flood_wait is not None

    @property
    def closing(self) -> bool:
        """Whether a close frame has gone out (nothing more is read)."""
        return self._closing

    def textMessageReceived(self, message: str) -> None:
        """``WebSocketProtocol`` API: one line of the protocol."""
        self.line_received(message.encode("utf-8", "replace"))

    def line_received(self, data: bytes) -> None:
        """A whole text message (valid UTF-8) as the connection read it."""
        if self._closing:
            return
        if self._flood_wait is not None:
            self._held.append(data)
            return
        self._take(data)

    def refuse_line(self) -> None:
        """A line over ``--max-line``: ``line-too-long``, the connection kept."""
        limit = self.factory.server.settings.max_line
        self._write(frames_for_lines(error_line(line_too_long(limit))))

    def after_command(self, participant: Participant) -> None:
        """Only a command moves us (a login's later change comes with its reply)."""
        if not self._closing:
            self._write(self._own_changes(participant, b""))

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:  # noqa: ARG002
        """The dialect is text; a binary message ends the connection (1003)."""
        _log.info("binary message, closing peer={peer}", peer=self.peer)
        self._close(CLOSE_BINARY)

    def too_big(self) -> None:
        """
        A message passed :data:`MAX_FRAME` (still arriving, or whole): 1009.

        The browser is most likely still sending it, and a socket closed
        with unread input is reset, which can destroy our close frame before
        the browser reads it.  So on plain TCP the close frame goes out with
        a FIN after it, and what still arrives is read and thrown away until
        the browser closes too, for at most :data:`LINGER` seconds.
        """
        if self._closing:
            return
        _log.info("message too big, closing peer={peer}", peer=self.peer)
        connection = self._connection
        if type(self._tcp) is not tcp.Server or not hasattr(connection, "linger"):
            self._close(CLOSE_TOO_BIG)
            return
        self._write(close_frame(CLOSE_TOO_BIG))
        self._closing = True
        waiting, self._flood_wait = self._flood_wait, None
        if waiting is not None and waiting.active():
            waiting.cancel()
        self._held.clear()
        connection.linger(LINGER)

    def fail(self, code: int) -> None:
        """The browser broke the framing (1002) or sent bad UTF-8 (1007)."""
        _log.info("bad frame ({code}), closing peer={peer}", code=code, peer=self.peer)
        self._close(code)

    def peer_closed(self, payload: bytes) -> None:
        """The browser's close frame: answer it with its code, then hang up."""
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
        self._close(code if 1000 <= code < 5000 and code not in _UNSENDABLE else 1000)

    def charge(self) -> None:
        """A control frame's token; with none left, reading stops a while."""
        bucket = self.bucket
        if bucket is not None and self._flood_wait is None and not self._closing:
            delay = bucket.take(self.factory.reactor.seconds())
            if delay:
                self._pause_for_flood(delay)

    def pong(self, payload: bytes) -> None:
        """A ping's answer, through the send queue like everything we write."""
        self._write(bytes((0x8A, len(payload))) + payload)

    def _take(self, data: bytes) -> None:
        """Judge one line as every transport does: too long, flood, or go."""
        participant = self.participant
        if participant is None or self._closing:
            return
        if len(data) > MAX_FRAME:
            self.too_big()
            return
        factory = self.factory
        limit = factory.server.settings.max_line
        now = factory.reactor.seconds()
        verdict = judge(data, self.bucket, now, limit)
        if verdict is None:
            return
        if verdict is REFUSE:
            self.refuse_line()
        elif isinstance(verdict, Wait):
            self._held.appendleft(data)
            self._pause_for_flood(verdict.delay)
        else:
            factory.server.receive(participant, verdict)
            if verdict[0] == "/":
                self.after_command(participant)

    def _pause_for_flood(self, delay: float) -> None:
        """Stop reading the socket until the bucket has a token again."""
        self.factory.server.operators.stats.flood_pauses += 1
        self._tcp.pauseProducing()
        self._flood_wait = self.factory.reactor.callLater(delay, self._flood_over)

    def _flood_over(self) -> None:
        self._flood_wait = None
        held = self._held
        while held and self._flood_wait is None and not self._closing:
            self._take(held.popleft())
        if self._flood_wait is None and not self._closing:
            connection = self._connection
            if connection is not None and hasattr(connection, "resume_feeding"):
                connection.resume_feeding()
        if self._flood_wait is None and not self._closing:
            self._tcp.resumeProducing()

    def apply_settings(self, settings: Settings) -> None:
        """New flood-control settings after a reload, keeping the tokens."""
        self.bucket = reloaded_bucket(self.bucket, settings)


class WebSessionFactory:
    """
    Builds a :class:`WebSession` per upgrade (Twisted's
    ``WebSocketServerFactory``), all sharing a core and one
    :class:`~twisted_chat.transports.web_format.WebFormat`.
    """

    def __init__(
        self,
        server: ChatServer,
        admission: Admission,
        reactor: IReactorTime,
        *,
        server_name: str,
        wire_format: WebFormat | None = None,
    ) -> None:
        self.server = server
        self.admission = admission
        self.reactor = reactor
        self.server_name = server_name
        self.wire_format = wire_format or WebFormat(clock=reactor.seconds)
        self.sessions: set[WebSession] = set()
        #: Why the daemon dropped a session, for the quit notice.
        self.quit_reasons: dict[WebSession, str] = {}
        self._emptied: list[Deferred[None]] = []

    def buildProtocol(self, request: Request) -> WebSession:  # noqa: ARG002
        return WebSession(self)

    def forget(self, session: WebSession) -> None:
        """A session has ended; fire :meth:`wait_until_empty` waiters."""
        self.sessions.discard(session)
        self.quit_reasons.pop(session, None)
        if not self.sessions:
            waiting, self._emptied = self._emptied, []
            for waiter in waiting:
                waiter.callback(None)

    def wait_until_empty(self) -> Deferred[None]:
        """A Deferred that fires once no session is left (at once if none)."""
        if not self.sessions:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._emptied.append(waiter)
        return waiter
