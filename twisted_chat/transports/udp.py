# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""
The chat over UDP (``nc -u``): datagrams in, datagrams out, and the handshake.

Wire protocol (the whole contract is PROTOCOL.md, section "UDP")::

    $ nc -u localhost 9001
    hi
    * Reply /hello qkxv3mc7ttbq4d2a to chat over UDP.
    /hello qkxv3mc7ttbq4d2a
    * Welcome to twisted-chat, guest3! Pick a name with /nick NAME; ...
    * You joined #lobby; 1 other person here (/who lists them).
    /nick carol
    * You are now known as carol.
    [#lobby] <alice> hi carol

An address is *unproven* until it sends ``/hello TOKEN`` with the token it
was challenged with (:mod:`twisted_chat.transports.udp_handshake`).
Unproven addresses get at most one short challenge line and nothing else,
and hold no state but an entry in a bounded table, so the server cannot be
used to reflect or amplify traffic at a forged source; a server-banned
address's ``/hello`` gets one ``! banned:`` line (one per 10 s at most).
A proven address has a session: an :class:`IChatClient` to the core,
counted by :class:`Admission` like a TCP connection, and ended by
``/quit`` or by ``--udp-idle`` seconds without a datagram.  Its datagrams
go through the intake every transport shares (:mod:`twisted_chat.core.intake`);
a wait verdict drops the rest of the datagram with one ``! slow-down``
notice a second at most.

A session's address can be forged too, so one datagram never draws more
than :data:`~twisted_chat.transports.udp_session.MAX_REPLY_DATAGRAMS` datagrams back,
whatever it asks for: what the core sends the session while it handles that
datagram is its reply, and past the cap the reply is cut with a line that
says so.  Room traffic from others is not a reply and is never cut.

Every decision about chat is the core's (:mod:`twisted_chat.core.chat`); this
module owns the datagrams: :class:`ChatDatagramProtocol`, the handshake, the
idle sweep and the sends.  The session and the wire format are in
:mod:`twisted_chat.transports.udp_session`; the services that bind or adopt a
socket for it, one per ``--udp``, in :mod:`twisted_chat.transports.udp_listeners`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall

from twisted_chat.core import lines
from twisted_chat.core.admission import Admission, address_group, log_refusal
from twisted_chat.core.bans import address_key
from twisted_chat.core.intake import (
    REFUSE,
    datagram_verdicts,
    frame_datagram,
    line_too_long,
    reloaded_bucket,
)
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.throttle import LogThrottle
from twisted_chat.transports.udp_handshake import Address, ChallengeLimiter, TokenMint
from twisted_chat.transports.udp_session import (
    MAX_DATAGRAM,
    TRANSIENT_SEND_ERRORS,
    UdpSession,
    UdpStats,
    datagrams,
    describe,
    hello_token,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.settings import Settings

__all__ = ["IDLE_REASON", "ChatDatagramProtocol"]

_log = RateLimitedLogger()

#: Seconds between two sweeps for idle sessions (fewer if ``--udp-idle`` is
#: shorter): one timer for all sessions, not one per session.
SWEEP_INTERVAL = 5.0
#: Failed sends are logged at most once in this many seconds, with a count:
#: a flood of ICMP errors must not become a flood of log lines.
SEND_FAILURE_LOG_INTERVAL = 10.0
#: The reason others see when a session goes quiet for ``--udp-idle``.
IDLE_REASON = "timed out"


class ChatDatagramProtocol(DatagramProtocol):
    """
    Speaks the chat over one UDP socket; several sockets may share a core.

    :param server: the chat core shared with every other transport.
    :param admission: the client caps shared with every other transport.
    :param clock: for idle expiry, flood control and token windows.
    :param mint: token maker; share one between listeners so a token works
        whichever of them the client reaches.
    :param limiter: challenge limits; share one between listeners so the
        global challenge rate is global.
    :param banned: the same limits for the ``! banned:`` line a banned
        address's ``/hello`` gets (its token may be sent again and again).
    """

    noisy = False

    def __init__(
        self,
        server: ChatServer,
        admission: Admission,
        clock: IReactorTime,
        mint: TokenMint | None = None,
        limiter: ChallengeLimiter | None = None,
        *,
        banned: ChallengeLimiter | None = None,
    ) -> None:
        self.server = server
        self.admission = admission
        self.clock = clock
        self.mint = mint if mint is not None else TokenMint()
        self.limiter = limiter if limiter is not None else ChallengeLimiter()
        self.banned = banned if banned is not None else ChallengeLimiter()
        #: Proven addresses, least recently heard from first: a datagram
        #: moves its session to the end, so the idle sweep stops at the
        #: first session that is still fresh.
        self.sessions: dict[Address, UdpSession] = {}
        self.stats = UdpStats()
        self._sweeper: LoopingCall | None = None
        self._send_failures = LogThrottle(SEND_FAILURE_LOG_INTERVAL)
        self._sendto: Callable[[bytes, Address], object] | None = None

    # -- port life ---------------------------------------------------------------

    def startProtocol(self) -> None:
        """Start the idle sweep when the first socket is attached."""
        # Twisted's UDP ``write`` parses the address string of every
        # datagram to check it is an IP address; ours come from recvfrom and
        # are, so fan-out calls the socket's sendto directly.
        handle = getattr(self.transport, "getHandle", None)
        self._sendto = handle().sendto if handle is not None else None
        sweeper = LoopingCall(self.sweep)
        sweeper.clock = self.clock
        interval = min(SWEEP_INTERVAL, self.server.settings.udp_idle)
        sweeper.start(interval, now=False).addErrback(
            lambda failure: _log.failure("UDP idle sweep stopped", failure)
        )
        self._sweeper = sweeper

    def stopProtocol(self) -> None:
        """Stop the sweep; sessions end with the daemon (``ChatService``)."""
        self._sendto = None
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None

    # -- input -------------------------------------------------------------------

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        """
        One datagram from ``addr``: a session's lines, or a handshake step.

        Never raises: whatever goes wrong is logged, and the next datagram is
        handled as if nothing happened.
        """
        try:
            self.stats.datagrams += 1
            self.stats.bytes_received += len(datagram)
            if len(datagram) > MAX_DATAGRAM:
                self.stats.oversized += 1
                return
            address: Address = (addr[0], addr[1])
            session = self.sessions.get(address)
            if session is None:
                self._unproven(datagram, address)
            else:
                self._from_session(session, datagram)
        except Exception:
            _log.failure("while handling a datagram from {peer}", peer=addr)

    def _from_session(self, session: UdpSession, datagram: bytes) -> None:
        now = self.clock.seconds()
        session.last_seen = now
        sessions = self.sessions
        del sessions[session.address]
        sessions[session.address] = session
        session.open_reply()
        try:
            self._lines(session, frame_datagram(datagram), now)
        finally:
            session.close_reply()

    def _lines(self, session: UdpSession, framed: list[bytes], now: float) -> None:
        """Act on the intake's verdicts on one datagram, inside its reply window."""
        participant = session.participant
        if participant is None or not session.in_chat():
            return
        limit = self.server.settings.max_line
        for verdict in datagram_verdicts(framed, session.bucket, now, limit):
            if isinstance(verdict, str):
                if verdict[0] == "/":
                    self._flush_others(session)
                self.server.receive(participant, verdict)
                if not session.in_chat():
                    return
            elif verdict is REFUSE:
                session.send(lines.error(line_too_long(limit)))
            else:
                # Over the rate: this line and the rest of the datagram go.
                self.stats.dropped_lines += 1
                session.slow_down(self.server.settings, now)
                return

    def _flush_others(self, session: UdpSession) -> None:
        """
        Hand out the room lines queued this turn before a command runs.

        The core does that itself before most commands, which would put
        other people's room lines inside this session's reply window; done
        here, outside it, they are never counted or cut.
        """
        budget, session.budget = session.budget, -1
        try:
            self.server.flush()
        finally:
            session.budget = budget

    def apply_settings(self, settings: Settings) -> None:
        """Retune every session's flood bucket after a reload, as over TCP."""
        for session in self.sessions.values():
            session.bucket = reloaded_bucket(session.bucket, settings)

    # -- the handshake -----------------------------------------------------------

    def _unproven(self, datagram: bytes, address: Address) -> None:
        """
        An address with no session: start one on a good ``/hello``, else
        challenge it (rate-limited), and never send it anything else.
        """
        now = self.clock.seconds()
        raw_lines = frame_datagram(datagram)
        for index, raw in enumerate(raw_lines):
            if not raw or raw.isspace():
                continue
            token = hello_token(raw)
            if token is not None:
                if self.mint.check(token, address, now):
                    self._start_session(address, raw_lines[index + 1 :], now)
                    return
                self.stats.bad_tokens += 1
            break
        self._challenge(address, now)

    def _challenge(self, address: Address, now: float) -> None:
        if not self.limiter.allow(address, now):
            self.stats.silenced += 1
            return
        self.stats.challenges += 1
        token = self.mint.token(address, now)
        self.send_payload(
            lines.notice(f"Reply /hello {token} to chat over UDP."), address
        )

    def _start_session(self, address: Address, rest: list[bytes], now: float) -> None:
        # Canonical, and IPv4 as IPv4 (not ::ffff:a.b.c.d), as over TCP.
        host = str(address_key(address[0]) or address[0])
        banned = self.server.operators.refusal(host, None)
        if banned is not None:
            # No session: one line, at most one per address every 10 s.
            self.stats.banned += 1
            if self.banned.allow(address, now):
                self.write_lines(banned, address)
            return
        group = address_group(address[0])
        refusal = self.admission.admit(group, now)
        if refusal is not None:
            # The address is proven, so one line of explanation is safe.
            self.stats.refused += 1
            log_refusal(describe(address), refusal)
            self.write_lines(lines.error(refusal), address)
            return
        settings = self.server.settings
        bucket = (
            self.admission.credit.bucket(
                group, settings.flood_burst, settings.flood_rate, now
            )
            if settings.flood_control
            else None
        )
        session = UdpSession(self, address, group, bucket, now)
        self.sessions[address] = session
        self.stats.sessions += 1
        session.open_reply()
        try:
            try:
                session.participant = self.server.connect(
                    session, group, host=host, transport="udp"
                )
            except BaseException:
                self._forget(session)
                raise
            self._lines(session, rest, now)
        finally:
            session.close_reply()

    # -- ending sessions ---------------------------------------------------------

    def end_session(self, session: UdpSession, reason: str) -> None:
        """
        Forget ``session``, release its admission, and tell the core.

        Idempotent; after it, the session sends nothing more.  ``/quit`` has
        already told the core, so the core ignores the second word.
        """
        if not self._forget(session):
            return
        participant = session.participant
        if participant is not None and not participant.gone:
            self.server.disconnect(participant, reason)

    def _forget(self, session: UdpSession) -> bool:
        if not session.open:
            return False
        session.open = False
        if self.sessions.get(session.address) is session:
            del self.sessions[session.address]
        self.admission.release(session.group)
        if session.bucket is not None:
            self.admission.credit.remember(
                session.group, session.bucket, self.clock.seconds()
            )
        return True

    def sweep(self) -> None:
        """End every session that has been silent for ``--udp-idle`` seconds."""
        try:
            now = self.clock.seconds()
            idle = self.server.settings.udp_idle
            while self.sessions:
                session = next(iter(self.sessions.values()))
                if now - session.last_seen < idle:
                    break
                self.stats.expired += 1
                session.send(
                    lines.notice(
                        f"Your UDP session ended after {idle:g} seconds without "
                        f"a datagram; send anything to start again."
                    )
                )
                self.end_session(session, IDLE_REASON)
        except Exception:
            _log.failure("while expiring idle UDP sessions")

    # -- output ------------------------------------------------------------------

    def write_lines(self, data: bytes, address: Address) -> None:
        """Send finished server lines to ``address``, one datagram per line."""
        for payload in datagrams(data):
            self.send_payload(payload, address)

    def send_payload(self, payload: bytes, address: Address) -> None:
        """
        One ``sendto``.  A failure concerns this address only: it is counted,
        logged now and then, and the caller's fan-out goes on.
        """
        try:
            if self._sendto is not None:
                self._sendto(payload, address)
            elif self.transport is not None:
                self.transport.write(payload, address)
            self.stats.bytes_sent += len(payload)
        except Exception as problem:
            self._send_failed(problem, address)

    def _send_failed(self, problem: Exception, address: Address) -> None:
        self.stats.send_failures += 1
        held = self._send_failures.report(self.clock.seconds())
        if held is None:
            return
        code = getattr(problem, "errno", None)
        if isinstance(problem, OSError) and code not in TRANSIENT_SEND_ERRORS:
            _log.failure(
                "unexpected error sending to {peer}",
                peer=describe(address),
            )
        else:
            _log.warn(
                "could not send {count} UDP datagrams; last to {peer}: {problem}",
                count=held + 1,
                peer=describe(address),
                problem=problem,
            )
