"""
One IRC connection's session with the chat: registration against the
core's rules, the commands after it, and the translation of the core's
answers (line protocol text) into IRC.

A mixin of :class:`~twisted_chat.transports.irc.IrcProtocol`, apart from
the byte handling there: this is where IRC meets the core.  Registration's
questions are answered by the core's own rules: a nick is checked as
``/nick`` would check it (name rules, in use, a registered account; under
``--cluster`` claimed after, not waited for), and SASL PLAIN is the core's
``/login``, whose answer comes back later, as a line."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from attrs import frozen

from twisted_chat.core.errors import ChatError
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.names import Nick, name_key
from twisted_chat.transports import irc_wire
from twisted_chat.transports.irc_commands import IrcCommands
from twisted_chat.transports.irc_message import IrcMessage
from twisted_chat.transports.irc_registration import (
    REGISTRATION_COMMANDS,
    Refusal,
    Registered,
    Registration,
)
from twisted_chat.transports.irc_text import cloak, isupport_tokens, rpl_isupport_lines

if TYPE_CHECKING:
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.room import Participant
    from twisted_chat.transports.irc_format import IrcFormat
    from twisted_chat.transports.irc_replies import Replies

__all__ = ["CAPS", "PING_AFTER", "PING_TIMEOUT", "IrcSessionMixin", "IrcSettings"]

#: The IRCv3 capabilities offered (PROTOCOL.md, "IRC clients").
CAPS: Final[dict[str, str | None]] = {
    "cap-notify": None,
    "echo-message": None,
    "message-tags": None,
    "multi-prefix": None,
    "sasl": "PLAIN",
    "server-time": None,
    "userhost-in-names": None,
}

#: Seconds of silence before a registered client is pinged.
PING_AFTER: Final = 120.0
#: Seconds a pinged client has to say anything before it is dropped.
PING_TIMEOUT: Final = 60.0

_log = RateLimitedLogger()
_SAID_LATER: Final = frozenset({"PRIVMSG", "NOTICE"})  # said at the turn's end
_HISTORY = re.compile(r"\[(#\S+) ([0-9: -]+)\] (?:<(\S+)> (.*)|\* (\S+) (.*))")
_LOGGED_IN = "* You are logged in as "
_INVITED = re.compile(r"\* (\S+) invites you to (#\S+); /join \S+ to accept\.")


@frozen
class IrcSettings:
    """What every IRC connection of a daemon shares."""

    server_name: str
    network: str
    secret: bytes
    created: str
    version: str = "twisted-chat-1"
    motd: tuple[str, ...] = ()


def _plain_privmsg(line: bytes) -> IrcMessage | None:
    """``PRIVMSG TARGET :text`` with no tags, no source and nothing odd, read
    without the general parser: most of what IRC clients send, so the
    common line costs a split (anything else goes to :func:`irc_wire.parse`)."""
    if len(line) > irc_wire.MAX_BODY_BYTES or b"\0" in line:
        return None
    target, sep, text = line[8:].partition(b" :")
    if not sep or not target or b" " in target:
        return None
    return IrcMessage(
        "PRIVMSG",
        (target.decode("utf-8", "replace"), text.decode("utf-8", "replace")),
    )


class IrcSessionMixin:
    """The chat side of an IRC connection (see the module docstring)."""

    factory: Any
    participant: Participant | None
    transport: Any
    _host: str

    def setup_session(self) -> None:
        self.lines_in = irc_wire.IrcLineBuffer()
        self.held: bytes | irc_wire.TooLong | None = None
        self.last_heard = 0.0
        self.pinged = False
        self.registration: Registration | None = None
        self.commands: IrcCommands | None = None
        self.capture: list[bytes] | None = None
        #: IRC bytes held back while a JOIN runs, so its echo comes first.
        self.wire_held: list[bytes] | None = None
        # Where each hold began in wire_held (holds nest: a JOIN during an OPER).
        self._hold_marks: list[int] = []
        self.caps: set[str] = set()
        self.away: str | None = None
        self.irc_user = ""
        self.irc_realname = ""
        self.wire_format: IrcFormat | None = None
        self._login_done: Callable[[str | None], None] | None = None
        #: Who takes the core's next uncaptured answer (an /oper's verdict).
        self._answered: Callable[[list[str]], None] | None = None

    @property
    def replies(self) -> Replies:
        """The numerics, shown with this client's kind of cloaked masks."""
        replies: Replies = self.factory.replies
        return replies

    @property
    def server(self) -> ChatServer:
        server: ChatServer = self.factory.server
        return server

    # -- registration ---------------------------------------------------------------

    def start_registration(self, now: float) -> None:
        irc = self.factory.irc
        self.last_heard = now
        self.registration = Registration(
            irc.server_name,
            CAPS,
            self._isupport,
            irc.motd,
            self,
            network=irc.network,
            version=irc.version,
            created=irc.created,
            host=cloak(irc.secret, self._host or "local"),
            started_at=now,
            send_later=self._send_messages,
        )
        self.factory.start_pinging()

    def _isupport(self, nick: str) -> list[IrcMessage]:
        settings = self.server.settings
        tokens = isupport_tokens(
            network=self.factory.irc.network,
            nicklen=24,
            channellen=33,
            topiclen=max(64, settings.max_line - 64),
            kicklen=200,
            awaylen=200,
            modes=4,
            maxtargets=4,
            chanlimit=50,
        )
        return rpl_isupport_lines(self.factory.irc.server_name, nick, tokens)

    def nick_refusal(self, nick: str, account: str | None) -> Refusal | None:
        """RegistrationChecks: ``/nick``'s rules."""
        try:
            wanted = Nick.parse(nick)
        except ChatError as problem:
            return ("432", problem.text)
        server = self.server
        holder = server.participants.get(wanted.key)
        if (
            holder is not None
            and holder is not self.participant
            and (account is None or holder.account != account)
        ):
            return ("433", "Nickname is already in use")
        if server.accounts.reserved(wanted) and (
            self.participant is None or self.participant.account != wanted.key
        ):
            return ("433", f"{nick} is a registered account; log in with SASL")
        return None

    def verify_plain(
        self,
        authzid: str,
        authcid: str,
        password: str,
        done: Callable[[str | None], None],
    ) -> None:
        """RegistrationChecks: the core's ``/login``, answered later."""
        if (authzid and authzid != authcid) or " " in password or not password:
            done(None)
            return
        self._login_done = done
        answers = self.run(f"/login {authcid} {password}")
        self._login_answer(answers)

    def _login_answer(self, answers: list[str]) -> None:
        done = self._login_done
        if done is None:
            return
        for answer in answers:
            if answer.startswith(_LOGGED_IN):
                self._login_done = None
                done(answer[len(_LOGGED_IN) :].rstrip("."))
                return
            if answer.startswith("! "):
                self._login_done = None
                done(None)
                return

    def _send_messages(self, messages: list[IrcMessage]) -> None:
        self.send_wire(b"".join(irc_wire.format(message) for message in messages))
        self._after_registration_step()

    def _after_registration_step(self) -> None:
        registration = self.registration
        if registration is None:
            return
        if registration.wants_close:
            self.transport.loseConnection()
        elif registration.result is not None and self.commands is None:
            self._registered(registration.result)

    def _registered(self, result: Registered) -> None:
        self.caps = set(result.caps)
        formats = self.factory.formats
        fmt = formats["server-time" in self.caps, "echo-message" in self.caps]
        self.wire_format = fmt
        self.irc_user = result.user
        self.irc_realname = result.realname
        self.commands = IrcCommands(self)  # type: ignore[arg-type]
        participant = self.participant
        if participant is not None and participant.nick.display != result.nick:
            wanted = Nick.parse(result.nick)
            if self.server.cluster is None or wanted.key in self.server.participants:
                self.run(f"/nick {result.nick}")
            else:  # checked at NICK; 001 has named it: no wait for the claim
                self.server.directory.force_rename(participant, wanted)

    # -- lines in -------------------------------------------------------------------

    def take_line(self, line: bytes) -> None:
        if self.commands is not None and line[:8] == b"PRIVMSG ":
            message = _plain_privmsg(line)
            if message is not None:
                self._handle(message)
                return
        try:
            message = irc_wire.parse(line)
        except irc_wire.IrcParseError as problem:
            if problem.reason in (irc_wire.INPUT_TOO_LONG, irc_wire.TAGS_TOO_LONG):
                self.reply_numeric("417", "Input line was too long")
            elif problem.reason == irc_wire.BAD_COMMAND:
                self.reply_numeric("421", problem.detail[:32], "Unknown command")
            elif problem.reason == irc_wire.BAD_CHARACTER:
                self.reply_numeric("417", "Input line contained a NUL; not sent")
            return
        self._handle(message)

    def _handle(self, message: IrcMessage) -> None:
        registration = self.registration
        if registration is None:
            return
        try:
            if self.commands is None or message.command in REGISTRATION_COMMANDS:
                self._send_messages(registration.feed(message))
                return
            outbox = self.server.outbox
            if outbox.busy and message.command not in _SAID_LATER:
                # As for line users: no reply overtakes this turn's room lines.
                outbox.catch_up(self.participant)  # type: ignore[arg-type]
            self.commands.handle(message)
        except Exception:
            # A bug: logged, the client told, the connection kept (as the
            # line protocol's internal-error).
            _log.failure("while handling an IRC {command}", command=message.command)
            self.reply_numeric("400", message.command, "Internal server error")

    def reply_numeric(self, code: str, *params: str) -> None:
        nick = "*"
        if self.commands is not None and self.participant is not None:
            nick = self.participant.nick.display
        self.send_wire(self.factory.replies.numeric(nick, code, *params))

    # -- the core's answers --------------------------------------------------------

    def hold_wire(self) -> None:
        """Hold IRC output until the hold ends (the protocol's writer)."""
        raise NotImplementedError

    def _end_hold(self) -> bytes:
        raise NotImplementedError

    def answer_later(self, answered: Callable[[list[str]], None]) -> None:
        """Hand the core's answer to ``answered`` when it comes; until then
        the replies to later commands wait (a ``PING`` a client sends to
        know its ``OPER`` was answered must not overtake the answer)."""
        self._answered = answered
        self.hold_wire()

    def run(self, line: str) -> list[str]:
        """The core's direct answers to a line-protocol command, captured."""
        participant = self.participant
        if participant is None or participant.gone:
            return []
        outer, self.capture = self.capture, []
        try:
            self.server.receive(participant, line)
            captured = self.capture
        finally:
            self.capture = outer
        return b"".join(captured).decode("utf-8", "replace").splitlines()

    def send(self, data: bytes) -> None:
        """IChatClient: the core's line text, captured or made IRC."""
        if self.capture is not None:
            self.capture.append(data)
            return
        answers = data.decode("utf-8", "replace").splitlines()
        banned = [answer for answer in answers if answer.startswith("! banned: ")]
        if banned:  # the core closes the connection next
            if self._login_done is not None:
                self._login_answer(answers)
            self.send_wire(self._refused(banned[0].encode()))  # type: ignore[attr-defined]
            return
        if self._login_done is not None:
            self._login_answer(answers)
            return
        if self._answered is not None:
            answered, self._answered = self._answered, None
            waiting = self._end_hold()
            answered(answers)  # its numerics first, then what waited
            if waiting:
                self.send_wire(waiting)
            return
        if self.commands is None:
            return  # before 001: the core's welcome is not IRC's
        self.send_wire(b"".join(self._as_irc(answer) for answer in answers))

    def _as_irc(self, answer: str) -> bytes:
        server = self.factory.irc.server_name
        nick = self.participant.nick.display if self.participant else "*"
        history = _HISTORY.fullmatch(answer)
        if history is not None:
            room, when, who, text, actor, action = history.groups()
            if actor is not None:
                who, text = actor, f"\x01ACTION [{when}] {action}\x01"
            else:
                text = f"[{when}] {text}"
            return f":{who}!~{who}@history PRIVMSG {room} :{text}\r\n".encode()
        invited = _INVITED.fullmatch(answer)
        if invited is not None:
            inviter = self.server.participants.get(name_key(invited.group(1)))
            source = self.replies.mask_of(inviter) if inviter else invited.group(1)
            return f":{source} INVITE {nick} {invited.group(2)}\r\n".encode()
        text = answer[2:] if answer[:2] in ("* ", "! ") else answer
        return irc_wire.format(IrcMessage("NOTICE", (nick, text or " "), server))

    def send_wire(self, data: bytes) -> None:
        """Bytes already in IRC: to the socket, with the send-queue limit."""
        raise NotImplementedError

    def closing_host(self) -> str:
        """The client's cloak, as every closing line names it."""
        return cloak(self.factory.irc.secret, self._host or "local")

    def quit(self, reason: str) -> None:
        """``QUIT``: the rooms are told, the client gets its ``ERROR``."""
        host = self.closing_host()
        self.send_wire(f"ERROR :Closing Link: {host} (Quit: {reason})\r\n".encode())
        participant = self.participant
        if participant is not None:
            self.server.disconnect(participant, f"Quit: {reason}")
        self.transport.loseConnection()

    def check_alive(self, now: float) -> None:
        """The pinger's question: registration deadline, idle ping, timeout."""
        registration = self.registration
        if registration is None or self.transport.disconnecting:
            return
        if self.commands is None:
            if registration.expired(now):
                self._send_messages([registration.timeout_error()])
                self.transport.loseConnection()
            return
        silent = now - self.last_heard
        if self.pinged and silent >= PING_AFTER + PING_TIMEOUT:
            self.factory.quit_reasons[self] = "Ping timeout"
            host = self.closing_host()
            self.send_wire(f"ERROR :Closing Link: {host} (Ping timeout)\r\n".encode())
            self.transport.loseConnection()
        elif not self.pinged and silent >= PING_AFTER:
            self.pinged = True
            self.send_wire(f"PING :{self.factory.irc.server_name}\r\n".encode())
