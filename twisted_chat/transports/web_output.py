"""
What a browser is sent, and how: the output half of a
:class:`~twisted_chat.transports.web_session.WebSession`.

Every frame is made here and written straight to the socket
(write-through when nothing is queued, as the stream front-ends do), not
through wsproto's ``send``: room events come already framed, once per turn
for every web member (:class:`~twisted_chat.transports.web_format.
WebFormat`), the core's direct replies (lines) become frames here
(:mod:`~twisted_chat.transports.web_lines`), and pongs and close frames are
two or four bytes of header.  The same bytes may go to every member because
the upgrade negotiates no extension (Twisted's ``WebSocketResource``
accepts with none: no permessage-deflate, so a frame carries nothing of the
connection it goes to, and no RSV bit is ever set) and a server's frames
are never masked.  wsproto's own sending is never used after the ``101``
(its only state for what it sends, a fragmented message's opcode, would
stay untouched anyway: we never fragment).  Nothing is written once a
close frame has gone out, or while the transport is closing.

The send queue is the stream front-ends' (``--max-sendq``,
:mod:`~twisted_chat.transports.stream_output`): once the socket holds
64 KiB the browser has not read, what waits is counted at each write, and
past the limit the browser is dropped (``too slow to read, send queue
full``) and its connection aborted, its unread bytes discarded.

What the browser must learn of itself (a room it is now in, with its
members and topic; a room it left; its new nickname) is worked out here by
comparing the participant with what the browser was told
(:meth:`WebOutput._own_changes`), so whichever path the change took
(``/join``, the default room, ``/part``, ``/nick``, a login) it is said
once, in order with the reply that announces it.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Final

from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.transports.stream_output import SlowReaderWatch, unsent_bytes
from twisted_chat.transports.web_format import (
    WebFormat,
    frame,
    members_frame,
    topic_frame,
    you_frame,
)
from twisted_chat.transports.web_lines import frames_for_lines

if TYPE_CHECKING:
    from twisted_chat.core.chat import Participant

__all__ = [
    "CLOSE_BINARY",
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_TOO_BIG",
    "CLOSE_TRY_LATER",
    "WebOutput",
    "close_frame",
]

_log = RateLimitedLogger()

#: RFC 6455 close codes.
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_BINARY: Final = 1003
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_TRY_LATER: Final = 1013


def close_frame(code: int) -> bytes:
    """An unmasked close frame with ``code`` and no reason (RFC 6455, 5.5.1)."""
    return b"\x88\x02" + code.to_bytes(2, "big")


class WebOutput(SlowReaderWatch):
    """The writing half of a web session (its state in slots)."""

    __slots__ = (
        "_closing",
        "_dropped",
        "_nick",
        "_pending",
        "_rooms",
        "_socket",
        "_stalled",
        "_tcp",
        "_unsent",
        "factory",
        "participant",
        "peer",
        "wire_format",
    )

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.wire_format: WebFormat = factory.wire_format
        self.peer = "web ?"
        self.participant: Participant | None = None
        self._tcp: Any = None
        self._socket: socket.socket | None = None
        self._closing = False
        self._dropped = False
        self._stalled = False
        self._unsent = 0
        #: What the core sent while ``connect`` ran: (is a frame, data).
        self._pending: list[tuple[bool, bytes]] | None = None
        #: The rooms the browser was told it is in: key -> display name.
        self._rooms: dict[str, str] = {}
        self._nick = ""

    # -- output: IChatClient and the wire format --------------------------------------

    def send(self, data: bytes) -> None:
        """``IChatClient`` API: the core's lines, as frames of the dialect."""
        if self._pending is not None:
            self._pending.append((False, data))
            return
        frames = frames_for_lines(data, self.wire_format.now())
        participant = self.participant
        if participant is not None:
            frames = self._own_changes(participant, frames)
        self._write(frames)

    def send_wire(self, data: bytes) -> None:
        """Frames already made (history, a private message, a kick of us)."""
        if self._pending is not None:
            self._pending.append((True, data))
            return
        participant = self.participant
        if participant is not None and participant.rooms.keys() != self._rooms.keys():
            # Taken out of a room (kick, ban): its frame says so already.
            rooms = participant.rooms
            self._rooms = {
                key: name for key, name in self._rooms.items() if key in rooms
            }
        self._write(data)

    def send_fanout(self, data: bytes) -> None:
        """The room fan-out's writer: the same frames for every web member."""
        self._write(data)

    def close(self) -> None:
        """``IChatClient`` API: flush, then close (1000): ``/quit``, a kill."""
        pending, self._pending = self._pending, None
        for is_frame, data in pending or ():
            self._write(data if is_frame else frames_for_lines(data))
        self._close(CLOSE_NORMAL)

    def shutdown(self) -> None:
        """The server is going away: close with 1001 after what is queued."""
        self._close(CLOSE_GOING_AWAY)

    def abort(self) -> None:
        """Cut the connection now, dropping what is unread."""
        self._closing = True
        if self._tcp is not None:
            self._tcp.abortConnection()

    def _close(self, code: int) -> None:
        """Our close frame (made here, as every frame we send), then hang up."""
        if self._closing:
            return
        self._write(close_frame(code))
        self._closing = True
        self._tcp.loseConnection()

    def _own_changes(self, participant: Participant, frames: bytes) -> bytes:
        """
        ``frames`` with what the browser must learn of itself around them:
        a room it is now in (``join``, ``members``, ``topic``: before the
        reply that says so), one it left (``part``), and a new nickname of
        its own (``nick`` and ``you``, after).  Checked against what the
        browser was told, so whatever path the change took, it is said once.
        """
        rooms = participant.rooms
        known = self._rooms
        nick = participant.nick.display
        if rooms.keys() == known.keys() and nick == self._nick:
            return frames
        stamp = self.wire_format.now()
        before: list[bytes] = []
        for key, name in list(known.items()):
            if key not in rooms:
                del known[key]
                before.append(
                    frame(
                        {
                            "type": "part",
                            "room": name,
                            "nick": self._nick,
                            "reason": "",
                            "time": stamp,
                        }
                    )
                )
        for key, room in rooms.items():
            if key not in known:
                known[key] = room.name.display
                before.append(
                    frame(
                        {
                            "type": "join",
                            "room": room.name.display,
                            "nick": nick,
                            "time": stamp,
                        }
                    )
                )
                before.append(members_frame(room))
                if room.topic:
                    before.append(topic_frame(room, self.factory.reactor.seconds))
        after: list[bytes] = []
        if nick != self._nick:
            old, self._nick = self._nick, nick
            after.append(
                frame({"type": "nick", "old": old, "new": nick, "time": stamp})
            )
            after.append(you_frame(nick))
        return b"".join([*before, frames, *after])

    def _write(self, data: bytes) -> None:
        """Frames to the socket, with the send queue's limit."""
        tcp_transport = self._tcp
        if not data or self._closing or tcp_transport.disconnecting:
            # Nothing after a close frame, ours or the answer to the peer's.
            return
        self.factory.server.operators.stats.bytes_sent += len(data)
        if self._stalled:
            buffered = unsent_bytes(tcp_transport)
            if buffered is None:
                self._unsent += len(data)
            else:
                self._unsent = buffered + len(data)
            if self._unsent > self.factory.server.settings.max_sendq:
                self._drop_slow_reader()
                return
        elif self._socket is not None and not (
            tcp_transport.dataBuffer or tcp_transport._tempDataLen
        ):
            # Write-through, as StreamChatProtocol._write_through: Twisted's
            # write waits for the next reactor turn even on an idle socket.
            try:
                sent = self._socket.send(data)
            except OSError:
                sent = 0
            if sent < len(data):
                tcp_transport.write(data[sent:])
            return
        tcp_transport.write(data)

    # -- output flow control (SlowReaderWatch) ------------------------------------

    def _abort_unread(self) -> None:
        self.abort()
