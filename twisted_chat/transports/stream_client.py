"""
What every stream front-end (the line protocol over TCP and TLS, IRC) does
with its connections, whatever it speaks on them.

A connection's life: a server ban refused with one line before anything
else, then the caps (:mod:`twisted_chat.core.admission`), a TLS client's
handshake deadline, the flood-control bucket whose empty state pauses
reading (the client slows itself), the send queue and its limit (a client
that stops reading is dropped at ``--max-sendq``,
:mod:`twisted_chat.transports.stream_output`), writing straight to the
socket when nothing is queued, and the quit when the connection ends.
Each front-end reads its own input and joins the chat its own way
(:class:`StreamChatProtocol`'s ``dataReceived``, ``_process`` and
``_join``).

Over TLS a connection joins the chat only once its handshake has completed
(Twisted tells an :class:`~twisted.internet.interfaces.IHandshakeListener`),
so nothing is ever queued for a client that never finishes it; one that has
not finished within :data:`HANDSHAKE_TIMEOUT` seconds is cut off.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING

from twisted.internet import interfaces, tcp
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.core import lines
from twisted_chat.core.admission import (
    Admission,
    address_group,
    canonical_ipv4,
    log_refusal,
)
from twisted_chat.core.bans import address_key
from twisted_chat.core.intake import (
    LineIntake,
    reloaded_bucket,
)
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.transports.stream_output import (
    OutputWatch,
    SlowReaderWatch,
    StreamTransport,
)
from twisted_chat.transports.stream_writes import StreamWrites
from twisted_chat.transports.tcp_server import lean_port, plain_tcp

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime

    from twisted_chat.core.chat import ChatServer, Participant
    from twisted_chat.core.flood import TokenBucket
    from twisted_chat.core.settings import Settings

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "StreamChatFactory",
    "StreamChatProtocol",
    "describe",
]

_log = RateLimitedLogger()

#: Seconds a TLS client has to complete its handshake before it is cut off.
#: A real client needs one or two round trips; ten seconds covers a slow
#: mobile link, and bounds what a client that stalls mid-handshake holds
#: (a connection slot and a TLS object, never chat output).
HANDSHAKE_TIMEOUT = 10.0
#: What the early read (:meth:`StreamChatProtocol._read_early`) takes at
#: most: as much as the reactor's reads of the connection do.
READ_SIZE = tcp.Connection.bufferSize


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


@implementer(IChatClient, interfaces.IHandshakeListener)
class StreamChatProtocol(StreamWrites, SlowReaderWatch, LineReceiver):
    """
    One stream connection of a chat front-end, whatever it speaks: bans and
    caps at connect, the TLS handshake deadline, flood-control pauses, the
    send queue and its limit, the quit on loss.  A subclass reads the input
    (:meth:`dataReceived`, :meth:`_process`) and says how the client joins
    the chat (:meth:`_join`).
    """

    delimiter = lines.CRLF
    factory: StreamChatFactory
    transport: StreamTransport  # type: ignore[assignment]
    # Our own state in slots: with 19,000 idle clients every byte of a
    # connection's footprint counts (the base classes keep their __dict__).
    # The peer's label is not kept: :attr:`peer` makes it when a log asks.
    __slots__ = (
        "_admitted",
        "_dropped",
        "_flood_wait",
        "_group",
        "_handshake",
        "_host",
        "_intake",
        "participant",
    )

    def __init__(self) -> None:
        self._group = ""
        self._host = ""
        self._admitted = False
        self.participant: Participant | None = None
        self._intake = LineIntake(None)
        self._flood_wait: IDelayedCall | None = None
        self._handshake: IDelayedCall | None = None
        self._stalled = False
        self._unsent = 0
        self._dropped = False
        self._socket: socket.socket | None = None
        self._held: list[bytes] | None = None

    @property
    def peer(self) -> str:
        """``IChatClient`` API: the remote end for logs (``tcp 192.0.2.7:50312``)."""
        transport = getattr(self, "transport", None)
        if transport is None:
            return "tcp ?"
        return describe(transport.getPeer())[0]

    @property
    def _bucket(self) -> TokenBucket | None:
        """The connection's flood-control bucket (None when it is off)."""
        return self._intake.bucket

    # -- connection life -------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        now = factory.reactor.seconds()
        transport: object = self.transport
        plain = plain_tcp(transport)
        if type(transport) is tcp.Server:
            # The port's next connections keep no labels (tcp_server.py).
            lean_port(transport.server, self)
        # A plain TCP connection's peer is the (host, port) accept() gave:
        # no address object, no label, no parsing when it is the usual
        # dotted quad.  The group and the ban key are then the host itself.
        host = (
            transport.client[0]  # type: ignore[attr-defined]
            if plain
            else describe(self.transport.getPeer())[1]
        )
        if canonical_ipv4(host):
            self._group = self._host = host
        else:
            self._group = address_group(host)
            # For bans and /whois: canonical, IPv4 as IPv4 (not ::ffff:a.b.c.d).
            self._host = str(address_key(host) or "")
        if isinstance(transport, TLSMemoryBIOProtocol):
            # Even a refused client must finish its handshake in time: TLS
            # holds the refusal line, and the connection, until it does.
            self._handshake = factory.reactor.callLater(
                HANDSHAKE_TIMEOUT, self._handshake_expired
            )
        # A ban before the caps: a banned client gets its one line, nothing
        # else, and takes no connection slot or flood credit.
        banned = factory.server.operators.refusal(self._host, None)
        if banned is not None:
            _log.info("refused peer={peer}: server ban", peer=self.peer)
            self.transport.write(self._refused(banned))
            self.transport.loseConnection()
            return
        refusal = factory.admission.admit(self._group, now)
        if refusal is not None:
            log_refusal(self.peer, refusal)
            self.transport.write(self._refused(lines.error(refusal)))
            self.transport.loseConnection()
            return
        self._admitted = True
        factory.protocols.add(self)
        if plain or interfaces.ITCPTransport.providedBy(self.transport):
            # Chat lines are small and interactive: never wait for Nagle.
            with contextlib.suppress(OSError):
                self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(OutputWatch(self), True)
        if plain:
            # Plain TCP only: under TLS the socket carries ciphertext.
            self._socket = transport.getHandle()  # type: ignore[attr-defined]
        settings = factory.server.settings
        if settings.flood_control:
            self._intake.bucket = factory.admission.credit.bucket(
                self._group, settings.flood_burst, settings.flood_rate, now
            )
        if self._handshake is None:
            # The welcome, the default room's lines, and the answers to what
            # the client sent before it was accepted: one write, at the end
            # of the turn.
            self.hold_output()
            try:
                self._join()
                if self._socket is not None and not self.transport.disconnecting:
                    self._read_early(self._socket)
            finally:
                self.release_at_turn_end()

    def _read_early(self, sock: socket.socket) -> None:
        """
        Read what the client sent before it was accepted, now.

        Clients that speak first (IRC clients send ``NICK`` and ``USER``,
        bots their ``/nick``) have usually sent it by the time a busy
        daemon accepts them, and the reactor would hand it over one poll
        later: one more trip through the reactor, and the answers in a
        write of their own.  Nothing there (``EAGAIN``), the end of the
        stream or an error: the reactor sees it at the next poll, as
        always, and handles it there.
        """
        try:
            data = sock.recv(READ_SIZE)
        except OSError:
            return
        if not data:
            return
        try:
            self.dataReceived(data)
        except Exception:
            # What the reactor does with a read that raises: the connection
            # goes, with nothing more written to it (its held welcome
            # dropped); the listening port and the other clients stay.
            _log.failure("while reading from {peer}", peer=self.peer)
            self._abort_unread()

    def _refused(self, line: bytes) -> bytes:
        """The one line a refused connection gets, in the front-end's words."""
        return line

    def _join(self) -> None:
        """The connection is in (and its TLS handshake done): join the chat."""
        raise NotImplementedError

    def _process(self) -> None:
        """Act on the input read so far (again after a flood pause)."""
        raise NotImplementedError

    def handshakeCompleted(self) -> None:
        """``IHandshakeListener`` API: the TLS client is in; it may chat now."""
        waiting, self._handshake = self._handshake, None
        if waiting is None or not waiting.active():
            return
        waiting.cancel()
        if not self.transport.disconnecting:
            self._join()

    def _handshake_expired(self) -> None:
        self._handshake = None
        _log.info(
            "TLS handshake not finished in {timeout:g} s, closing peer={peer}",
            timeout=HANDSHAKE_TIMEOUT,
            peer=self.peer,
        )
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: ARG002
        self._held = None
        for delayed in (self._flood_wait, self._handshake):
            if delayed is not None and delayed.active():
                delayed.cancel()
        self._flood_wait = self._handshake = None
        if not self._admitted:
            return
        self._admitted = False
        factory = self.factory
        factory.forget(self)
        factory.admission.release(self._group)
        bucket = self._intake.bucket
        if bucket is not None:
            factory.admission.credit.remember(
                self._group, bucket, factory.reactor.seconds()
            )
        if self.participant is not None:
            factory.server.disconnect(
                self.participant, factory.quit_reasons.pop(self, "connection lost")
            )

    def apply_settings(self, settings: Settings) -> None:
        """Take new flood-control settings after a reload, keeping the tokens."""
        self._intake.bucket = reloaded_bucket(self._intake.bucket, settings)

    # -- IChatClient -----------------------------------------------------------

    def close(self) -> None:
        """``IChatClient`` API: flush, then hang up."""
        self.release_output()
        self.transport.loseConnection()

    # -- output flow control (SlowReaderWatch) ------------------------------------

    def _abort_unread(self) -> None:
        self._held = None
        self.transport.abortConnection()

    # -- flood control -----------------------------------------------------------

    def _pause_for_flood(self, delay: float) -> None:
        """Stop reading until the bucket has a token: the client slows itself."""
        self.factory.stats.flood_pauses += 1
        self.transport.pauseProducing()
        self._flood_wait = self.factory.reactor.callLater(delay, self._flood_over)

    def _flood_over(self) -> None:
        self._flood_wait = None
        self.hold_output()
        try:
            self._process()
        finally:
            self.release_output()
        if self._flood_wait is None and not self.transport.disconnecting:
            self.transport.resumeProducing()


class StreamChatFactory(Factory):
    """Builds one protocol per connection of a front-end, all sharing a core."""

    noisy = False

    def __init__(
        self, server: ChatServer, admission: Admission, reactor: IReactorTime
    ) -> None:
        self.server = server
        self.admission = admission
        self.reactor = reactor
        #: The counters of /stats and the metrics (one lookup per read/write).
        self.stats = server.operators.stats
        self.protocols: set[StreamChatProtocol] = set()
        #: Why the daemon dropped a connection, for the quit notice.
        self.quit_reasons: dict[StreamChatProtocol, str] = {}
        self._emptied: list[Deferred[None]] = []

    def forget(self, protocol: StreamChatProtocol) -> None:
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
