"""
IRC clients in the chat (``--irc``): one connection's protocol (issue 15).

A stream front-end like the line protocol (:mod:`twisted_chat.transports.
stream_client`: bans, caps, TLS deadline, flood pauses, send queue), that
reads IRC (:mod:`~twisted_chat.transports.irc_wire`), registers
(:mod:`~twisted_chat.transports.irc_registration`), then acts
(:mod:`~twisted_chat.transports.irc_commands`).

The client is a chat participant from its first line, under a guest nick
and in no room, so that SASL logs in through the core's own ``/login``
(its throttle, its argon2 on the worker threads) before ``001``; at
registration it takes its nick.  IRC clients are not put in the default
room: they choose their channels.  The core's direct answers (line
protocol text) are captured while a command runs and become numerics;
outside a command they arrive as ``NOTICE``\\s from the server.  Room
lines come already rendered for IRC (``send_wire``), once per kind of
client (:class:`~twisted_chat.transports.irc_format.IrcFormat`).

Idle clients are pinged after :data:`PING_AFTER` seconds of silence and
dropped when they stay silent :data:`PING_TIMEOUT` more; an unregistered
one is dropped at the registration deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.task import LoopingCall

from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.transports import irc_wire
from twisted_chat.transports.irc_format import IrcFormat
from twisted_chat.transports.irc_replies import Replies
from twisted_chat.transports.irc_session import (
    PING_AFTER,
    PING_TIMEOUT,
    IrcSessionMixin,
    IrcSettings,
)
from twisted_chat.transports.irc_text import cloak
from twisted_chat.transports.stream_client import (
    StreamChatFactory,
    StreamChatProtocol,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from twisted_chat.core.admission import Admission
    from twisted_chat.core.chat import ChatServer

__all__ = ["PING_AFTER", "PING_TIMEOUT", "IrcFactory", "IrcProtocol"]

_log = RateLimitedLogger()

#: Replies a client may have waiting behind a hold (a JOIN's history, an
#: ``OPER`` being checked) before it counts as a reader that does not keep up.
MAX_HELD = 1024


class IrcProtocol(IrcSessionMixin, StreamChatProtocol):
    """Speaks IRC over one stream connection."""

    factory: IrcFactory

    def __init__(self) -> None:
        super().__init__()
        self.setup_session()

    #: The room fan-out's writer: the stream's, with no hold to check.
    send_fanout = StreamChatProtocol.send

    def send_wire(self, data: bytes) -> None:
        """Bytes in IRC: the stream's writer (send queue, write-through)."""
        held = self.wire_held
        if held is not None:
            held.append(data)
            if len(held) > MAX_HELD:  # replies piling up behind an answer
                self._drop_slow_reader()
            return
        StreamChatProtocol.send(self, data)

    def hold_wire(self) -> None:
        """Hold IRC output until :meth:`release_wire`: a JOIN's history, or
        whatever follows a command whose answer comes later."""
        if self.wire_held is None:
            self.wire_held = []
        self._hold_marks.append(len(self.wire_held))

    def release_wire(self, first: bytes = b"") -> None:
        """End the latest hold: ``first``, then what it held, go out (or, in
        an outer hold, take their place in it)."""
        data = first + self._end_hold()
        if data:
            self.send_wire(data)

    def _end_hold(self) -> bytes:
        """End the latest hold and return what it held, unsent."""
        held = self.wire_held
        if held is None or not self._hold_marks:
            return b""
        mark = self._hold_marks.pop()
        data = b"".join(held[mark:])
        del held[mark:]
        if not self._hold_marks:
            self.wire_held = None
        return data

    # -- joining the chat ----------------------------------------------------------

    def _refused(self, line: bytes) -> bytes:
        """``! banned: ...`` as IRC's ``ERROR :Closing Link: HOST (...)``."""
        text = line.decode("utf-8", "replace").strip().removeprefix("! ")
        host = cloak(self.factory.irc.secret, self._host or "local")
        return f"ERROR :Closing Link: {host} ({text})\r\n".encode()

    def _join(self) -> None:
        """The connection is in: a hidden participant, then registration."""
        factory = self.factory
        self.participant = factory.server.connect(
            self, self._group, host=self._host, transport="irc", join_default=False
        )
        if self.participant.gone:  # server-banned during a TLS handshake
            return
        self.start_registration(factory.reactor.seconds())

    # -- input -----------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.factory.stats.bytes_received += len(data)
        self.lines_in.feed(data)
        self._process()

    def _process(self) -> None:
        if self._flood_wait is not None:
            return
        transport = self.transport
        # One reading of the clock for the lines of one read: they came together.
        now = self.factory.reactor.seconds()
        next_line = self.lines_in.next_line
        commands = self.commands
        bucket = self._intake.bucket
        while not transport.disconnecting:
            line = self.held if self.held is not None else next_line()
            self.held = None
            if line is None:
                return
            self.last_heard = now
            self.pinged = False  # any line is a sign of life
            if line is irc_wire.TOO_LONG:
                self.reply_numeric("417", "Input line was too long")
                continue
            if bucket is not None:
                delay = bucket.take(now)
                if delay:
                    self.held = line
                    self._pause_for_flood(delay)
                    return
            if (
                commands is not None
                and line[:9] == b"PRIVMSG #"
                and commands.fast_privmsg(line)
            ):
                continue
            self.take_line(line)


class IrcFactory(StreamChatFactory):
    """Builds one :class:`IrcProtocol` per connection, all sharing a core."""

    protocol = IrcProtocol  # type: ignore[assignment]

    def __init__(
        self,
        server: ChatServer,
        admission: Admission,
        reactor: IReactorTime,
        irc: IrcSettings,
    ) -> None:
        super().__init__(server, admission, reactor)
        self.irc = irc
        #: One format per kind of client (server-time tags, echo-message).
        self.formats = {
            (tags, echo): IrcFormat(irc.server_name, irc.secret, tags=tags, echo=echo)
            for tags in (False, True)
            for echo in (False, True)
        }
        self.replies = Replies(irc.server_name, self.formats[False, False])
        self._pinger: Any = None

    def start_pinging(self) -> None:
        """Ping idle clients and drop silent ones, every 15 s (one timer)."""
        if self._pinger is None:
            self._pinger = LoopingCall(self._ping_idle)
            self._pinger.clock = self.reactor
            self._pinger.start(15.0, now=False)

    def stop_pinging(self) -> None:
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        self._pinger = None

    def _ping_idle(self) -> None:
        now = self.reactor.seconds()
        for protocol in list(self.protocols):
            if isinstance(protocol, IrcProtocol):
                protocol.check_alive(now)
