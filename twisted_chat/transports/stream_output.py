"""
Send-queue accounting for stream connections: how much output waits.

A client that stops reading must be dropped at ``--max-sendq`` however its
bytes are held: in the socket transport's buffer (plain TCP, UNIX), or in
the TLS layer above it, which keeps cleartext it cannot encrypt yet
(``_appSendBuffer``: before the handshake, during a renegotiation), small
writes it aggregates until the end of the reactor turn, and ciphertext in
its memory BIO.  :func:`unsent_bytes` adds them all up.  The attributes it
reads are Twisted's and pyOpenSSL's private ones, so every read is guarded:
when one is missing (another reactor, a test fake, a new Twisted) it counts
what it can, and returns None when it finds no socket buffer at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import interfaces
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from twisted_chat.core.logs import RateLimitedLogger

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress

_log = RateLimitedLogger()

#: Twisted's transports call ``pauseProducing`` once this much output is
#: buffered (``FileDescriptor.bufferSize``); the send queue count starts there.
TRANSPORT_BUFFER = 2**16

try:
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib

    _mem_data: Any = _lib.BIO_get_mem_data
except (ImportError, AttributeError):  # pragma: no cover - no pyOpenSSL
    _mem_data = None


def _bio_pending(connection: object) -> int:
    """Ciphertext an ``OpenSSL.SSL.Connection`` holds in its outgoing memory BIO."""
    bio = getattr(connection, "_from_ssl", None)
    if bio is None or _mem_data is None:
        return 0
    try:
        return max(0, int(_mem_data(bio, _ffi.NULL)))
    except Exception:  # a private API: count nothing rather than fail
        return 0


def tls_held(transport: object) -> int:
    """
    Bytes a ``TLSMemoryBIOProtocol`` holds above its socket transport.

    0 for anything else.  Cleartext waiting for the handshake or a
    renegotiation, cleartext aggregated for the end of the turn, and the
    ciphertext not yet handed to the socket transport.
    """
    pending = getattr(transport, "_appSendBuffer", None)
    if pending is None:
        return 0
    held = sum(map(len, pending))
    aggregated = getattr(getattr(transport, "_aggregator", None), "_buffer", None)
    if aggregated:
        held += sum(map(len, aggregated))
    return held + _bio_pending(getattr(transport, "_tlsConnection", None))


def unsent_bytes(transport: object) -> int | None:
    """
    How much output a transport holds that the peer has not taken yet.

    Twisted's socket transports (``FileDescriptor``) keep it in
    ``dataBuffer`` and ``_tempDataBuffer``; TLS keeps some itself
    (:func:`tls_held`) and writes the rest to the socket transport beneath
    it.  When no socket buffer is found this returns None and the caller
    counts what it wrote since the transport paused it instead.
    """
    held = 0
    for _ in range(3):
        if isinstance(transport, TLSMemoryBIOProtocol):
            # Checked first: a protocol wrapper forwards unknown attributes
            # to its transport, so it seems to have a dataBuffer of its own.
            held += tls_held(transport)
            transport = transport.transport
            continue
        try:
            return held + int(
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
    """What the TCP adapter uses of a stream transport (TCP, TLS and UNIX have it)."""

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


class FlowListener(Protocol):
    """Who :class:`OutputWatch` tells when output stalls and drains."""

    def output_stalled(self) -> None: ...
    def output_drained(self) -> None: ...


@implementer(interfaces.IPushProducer)
class OutputWatch:
    """
    Registered on each transport so the daemon learns when a client stops
    reading: Twisted pauses a streaming producer once the transport's buffer
    passes 64 KiB (or TLS has to buffer cleartext) and resumes it when the
    buffer drains.
    """

    __slots__ = ("_listener",)

    def __init__(self, listener: FlowListener) -> None:
        self._listener = listener

    def pauseProducing(self) -> None:
        self._listener.output_stalled()

    def resumeProducing(self) -> None:
        self._listener.output_drained()

    def stopProducing(self) -> None:
        """Nothing to stop: the connection is going away."""


class _Watched(Protocol):
    """What :class:`SlowReaderWatch` needs of the class it is mixed into."""

    _stalled: bool
    _unsent: int
    _dropped: bool
    factory: Any

    @property
    def peer(self) -> str: ...

    def _abort_unread(self) -> None: ...


class SlowReaderWatch:
    """
    What a connection does with :class:`OutputWatch`'s news, and the drop
    at ``--max-sendq``: the same for every front-end that writes to a
    stream (line protocol, IRC, the web's sessions).  The class keeps
    ``_stalled``, ``_unsent``, ``_dropped``, ``peer`` and ``factory``
    (with its ``quit_reasons``), and says how to cut the connection.
    """

    __slots__ = ()

    def output_stalled(self: _Watched) -> None:
        """The transport holds 64 KiB the client has not read yet."""
        if not self._stalled:
            self._stalled = True
            self._unsent = TRANSPORT_BUFFER

    def output_drained(self: _Watched) -> None:
        """The client caught up."""
        if not self._dropped:
            self._stalled = False
            self._unsent = 0

    def _drop_slow_reader(self: _Watched) -> None:
        if self._dropped:
            return
        self._dropped = True
        self.factory.server.operators.stats.sendq_drops += 1
        _log.warn(
            "dropping slow reader peer={peer} unsent={unsent}",
            peer=self.peer,
            unsent=self._unsent,
        )
        self.factory.quit_reasons[self] = "too slow to read, send queue full"
        # Whatever is buffered will never be read: discard it rather than
        # holding a megabyte for a client that does not read.
        self._abort_unread()

    def _abort_unread(self) -> None:
        """Cut the connection now, dropping what it has not read."""
        raise NotImplementedError
