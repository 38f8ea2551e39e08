"""
How a stream connection's output reaches its socket: straight through when
nothing is queued, Twisted's buffer otherwise, the send queue counted while
the client does not read, and output held for one write while a connection
is set up or a read of its input is acted on, until the end of the reactor
turn when the core has one (:meth:`StreamWrites.release_at_turn_end`).

Kept apart from :mod:`twisted_chat.transports.stream_client` (the
connection's life) because this is the hot path of every delivery: one
``send`` per member per room flush, and the replies a client's lines draw.
A new client's welcome, its default room's lines and the answers to its
first lines (``/join``, ``/part``, ``/ping``) are half a dozen chunks; sent
one by one that is half a dozen ``send`` calls, each a trip through the
kernel to the client, the largest part of what a connection costs the
daemon during a connect storm.  Held to the end of the turn, with the
``/ping``'s pong and the room lines the turn owes the client, they are one
(with a client that speaks first, whose lines the early read takes in the
turn it is accepted, the whole setup is one write: 1.5 ``send`` calls a
client in ``bench/connect_rate.py`` where there were 3.8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted_chat.transports.stream_output import unsent_bytes

if TYPE_CHECKING:
    import socket

__all__ = ["HOLD_MAX", "StreamWrites"]

#: Chunks of output held (:meth:`StreamWrites.hold_output`) before they go
#: out anyway: what a hold keeps is bounded however much one read asks for.
HOLD_MAX = 32


class StreamWrites:
    """
    The writing half of a stream connection, mixed into
    :class:`~twisted_chat.transports.stream_client.StreamChatProtocol`,
    which keeps the state (in its slots) and drops a slow reader.
    """

    # Set by the protocol's __init__: (None, None, False, 0).
    __slots__ = ("_held", "_socket", "_stalled", "_unsent")

    factory: Any
    transport: Any
    #: Output held until the end of a setup or a read (None: not holding).
    _held: list[bytes] | None
    #: The socket of a plain TCP connection (None: TLS, UNIX), written to
    #: directly when nothing is queued.
    _socket: socket.socket | None
    #: The transport holds 64 KiB the client has not read (SlowReaderWatch).
    _stalled: bool
    #: What waits unread while stalled, for ``--max-sendq``.
    _unsent: int

    if TYPE_CHECKING:
        # SlowReaderWatch's, after this class in the protocol's bases.
        def _drop_slow_reader(self) -> None: ...

    def send(self, data: bytes) -> None:
        """``IChatClient`` API: queue lines, and count them while stalled."""
        self.factory.stats.bytes_sent += len(data)
        held = self._held
        if held is not None:
            held.append(data)
            if len(held) >= HOLD_MAX:
                self._held = None
                self._send(b"".join(held))
                self._held = []
            return
        self._send(data)

    def _write_in_order(self, data: bytes) -> None:
        """Write what the traffic counters leave out (a refusal of a line), in
        order with held output."""
        held = self._held
        if held is not None:
            held.append(data)
        else:
            self._send(data)

    def _send(self, data: bytes) -> None:
        """Write now: straight to the socket, or queued (and counted while
        stalled, up to ``--max-sendq``)."""
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
        turn, which costs a poll and two ``epoll_ctl`` calls per write, and
        the fan-out path writes once per member for every line said.
        Whatever the socket does not take, and any error, goes the normal
        way through ``transport.write``, which keeps order and reports
        errors as Twisted always does.
        """
        transport = self.transport
        if transport.dataBuffer or transport._tempDataLen or transport.disconnecting:
            transport.write(data)
            return
        try:
            sent = self._socket.send(data)  # type: ignore[union-attr]
        except OSError:
            sent = 0
        if sent < len(data):
            transport.write(data[sent:])

    def hold_output(self) -> None:
        """
        Hold what is sent until :meth:`release_output`: while a connection is
        set up, or one read of its input is acted on, its replies go out in
        one write (a new client's welcome, room lines and answers are half a
        dozen lines: half a dozen ``send`` calls, each a trip through the
        kernel to the client).  Order is kept; at most :data:`HOLD_MAX`
        chunks are held before they go out anyway.
        """
        if self._held is None:
            self._held = []

    def release_at_turn_end(self) -> None:
        """
        Stop holding at the end of this reactor turn, after the core hands
        out the turn's room lines and waiting replies, if anything is held:
        a new client's welcome, the answers to its ``/join`` and the
        ``/ping`` that waits for the turn's end then go out in one write,
        not two or three.  Nothing held (a read of plain messages): at once,
        so the fan-out path gains nothing to do.
        """
        if self._held and self.factory.server.outbox.after_turn(self.release_output):
            return
        self.release_output()

    def release_output(self) -> None:
        """Write what :meth:`hold_output` held, as one chunk, and stop holding."""
        held = self._held
        if held is None:
            return
        self._held = None
        if len(held) == 1:
            self._send(held[0])
        elif held:
            self._send(b"".join(held))
