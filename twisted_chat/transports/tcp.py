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
end in CRLF.  Every decision is the core's (:mod:`twisted_chat.core.chat`); this
module owns reading the byte stream.  Framing, the line-length limit, flood
control, decoding and cleaning are the intake's (:mod:`twisted_chat.core.intake`,
the same for every transport); this module acts on its verdicts: a line goes
to the core, a refused one gets ``! line-too-long``, and a wait stops reading
until the client's token bucket has refilled.  The connection's life (bans,
caps, the TLS handshake deadline, the send queue) is every stream
front-end's (:mod:`twisted_chat.transports.stream_client`).  A plain
connection that says nothing has no deadline: it is a chat participant from
its first byte, lurking is normal in a talker, and what it can cost is
bounded by ``--max-sendq``, ``--max-per-ip`` and ``--max-clients``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted_chat.core import lines
from twisted_chat.core.intake import REFUSE, line_too_long
from twisted_chat.transports.stream_client import (
    HANDSHAKE_TIMEOUT,
    StreamChatFactory,
    StreamChatProtocol,
    describe,
)

if TYPE_CHECKING:
    from twisted_chat.core.room import Participant

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "ChatLineProtocol",
    "ChatServerFactory",
    "describe",
]


class ChatLineProtocol(StreamChatProtocol):
    """Speaks the chat line protocol over one stream connection."""

    __slots__ = ()

    def _join(self) -> None:
        # A ban set during a TLS handshake: the core sends the one line and
        # closes; its participant is born gone, so nothing more goes out.
        self.participant = self.factory.server.connect(
            self, self._group, host=self._host, transport="tcp"
        )

    # -- input -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Frame lines ourselves (:class:`LineIntake`): ``LineReceiver`` knows
        one delimiter only, and on an overlong line it throws away the good
        lines that follow it.  What the read's lines draw goes out in one
        write (:meth:`hold_output`).
        """
        self.factory.stats.bytes_received += len(data)
        wait = self._intake.feed(data, self.factory.reactor.seconds())
        if wait is not None and self._flood_wait is None:
            self._pause_for_flood(wait.delay)
        self.hold_output()
        try:
            self._process()
        finally:
            if self._held:
                self.release_at_turn_end()
            else:  # a read of plain messages draws no answer: nothing to hold
                self._held = None

    def _process(self) -> None:
        """Act on the intake's verdicts: go to the core, refuse, or pause."""
        if self._flood_wait is not None:
            return
        transport = self.transport
        factory = self.factory
        limit = factory.server.settings.max_line
        participant = self.participant
        receive = factory.server.receive
        # Plain lines in a row go to the core together (receive_run): the
        # fan-out then costs once per read, not once per line.
        run: list[str] = []
        for verdict in self._intake.verdicts(factory.reactor.seconds(), limit):
            if participant is not None:
                if isinstance(verdict, str) and not verdict.startswith("/"):
                    run.append(verdict)
                    continue
                if run:
                    if not self._receive_run(participant, run):
                        return
                    run = []
            if transport.disconnecting:
                return
            if isinstance(verdict, str):
                if participant is not None:
                    receive(participant, verdict)
            elif verdict is REFUSE:
                self._write_in_order(lines.error(line_too_long(limit)))
            else:
                self._pause_for_flood(verdict.delay)
        if run and participant is not None:
            self._receive_run(participant, run)

    def _receive_run(self, participant: Participant, run: list[str]) -> bool:
        """Hand plain lines in a row to the core; False once hanging up."""
        transport = self.transport
        server = self.factory.server
        if len(run) > 1 and participant.prompt is None:
            if transport.disconnecting:
                return False
            server.receive_run(participant, run)
            return True
        for text in run:
            if transport.disconnecting:
                return False
            server.receive(participant, text)
        return True

    def lineReceived(self, line: bytes) -> None:
        """Never called: lines reach the core as the intake's verdicts."""

    def lineLengthExceeded(self, line: bytes) -> None:
        """Never called: the intake enforces ``--max-line`` itself."""


class ChatServerFactory(StreamChatFactory):
    """Builds one :class:`ChatLineProtocol` per connection, all sharing a core."""

    protocol = ChatLineProtocol  # type: ignore[assignment]
