"""
Registration of one IRC connection as a sans-IO state machine: ``CAP``,
``PASS``, ``NICK``, ``USER``, ``AUTHENTICATE`` (SASL PLAIN) and ``QUIT``
until ``001``, then the welcome burst (issue 15).

It owns the order of registration and nothing of the chat: whether a nick
may be used and whether a password is right are the lead's answers, asked
through :class:`RegistrationChecks`; time is the caller's (``expired``).
Messages in, messages out; an answer that arrives later (a password hash
is slow) goes out through ``send_later``.

Followed, and where:

- Modern IRC client protocol document, "Connection Registration": ``CAP LS
  302``, ``PASS``, ``NICK``, ``USER``, then ``CAP END``; registration is
  complete on ``NICK`` and ``USER`` once any negotiation has ended; then
  ``001``-``005``, and the MOTD (``375``/``372``/``376``) or ``422``.  Its
  "USER message": four parameters, the realname last, ``461`` when fewer,
  ``462`` for a second one.  ``451`` for any other command before ``001``.
- IRCv3 "Capability Negotiation": registration waits for ``CAP END`` after a
  ``CAP LS`` or ``CAP REQ`` (:mod:`twisted_chat.transports.irc_caps`).
- SASL PLAIN and PASS: :class:`twisted_chat.transports.irc_caps.Login`.
- Nicks are asked about (``nick_refusal``) when registration would
  complete, not at ``NICK``: only then is the account known, and a
  registered nick must stay free for its owner (PROTOCOL.md, "Accounts").
- ``CAP END`` while SASL is under way: the spec says abort (``906``) and
  register without an account.  We abort only an exchange still waiting for
  the client's data; once the payload is whole, ``CAP END`` waits for the
  verdict, because clients (gamja, goguma) send ``AUTHENTICATE``, the
  payload and ``CAP END`` in one burst (ircv3-specifications issue 536).
- ``PING`` before registration gets its ``PONG``, as Ergo does (its
  command table marks PING ``usablePreReg``; ngircd answers ``451``): a
  client timing its link should not look like an error.
- Closing lines as charybdis/solanum write them (``ERROR :Closing Link: HOST
  (REASON)``), with InspIRCd's reason ``Registration timeout`` (ngircd
  closes without a word).
- ``004``'s modes: ``o`` for users (a server operator); for rooms the
  lead's moderation, ``biklmotv``, and ``n``, always on (only members may
  speak in a room).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

from attrs import frozen

from twisted_chat.transports.irc_caps import MAX_LOGIN_ATTEMPTS, CapNegotiation, Login
from twisted_chat.transports.irc_message import IrcMessage

__all__ = [
    "CHANNEL_MODES",
    "CHANNEL_PARAM_MODES",
    "MAX_LOGIN_ATTEMPTS",
    "MAX_PREREG_ERRORS",
    "REALNAME_LENGTH",
    "REGISTRATION_COMMANDS",
    "REGISTRATION_DEADLINE",
    "USERLEN",
    "USER_MODES",
    "Refusal",
    "Registered",
    "Registration",
    "RegistrationChecks",
    "motd_lines",
]

#: Seconds a connection has to register (PROTOCOL.md, "IRC clients").
REGISTRATION_DEADLINE: Final = 60.0
#: Error replies before registration after which the connection is closed.
MAX_PREREG_ERRORS: Final = 20
#: The username kept of ``USER`` (``USERLEN`` in ISUPPORT), after the ``~``.
USERLEN: Final = 16
#: The realname kept of ``USER``.
REALNAME_LENGTH: Final = 100
#: Longer than any nick the lead allows: refused at once, never stored.
_MAX_NICK_INPUT: Final = 64
#: 004's sets (see above); the last, the room modes that take a parameter.
USER_MODES: Final = "o"
CHANNEL_MODES: Final = "biklmnotv"
CHANNEL_PARAM_MODES: Final = "bklov"
#: What ``feed`` handles after registration; the rest is the lead's.
REGISTRATION_COMMANDS: Final = frozenset({"CAP", "USER", "PASS", "AUTHENTICATE"})
_PREREG: Final = frozenset({"CAP", "NICK", "USER", "PASS", "AUTHENTICATE"})
_USER_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
)

Refusal = tuple[str, str]


class RegistrationChecks(Protocol):
    """The lead's answers, from the core's nick and account rules."""

    def nick_refusal(self, nick: str, account: str | None) -> Refusal | None:
        """
        Why ``nick`` may not be used by this client, as (numeric, text):
        ``("432", "Erroneous nickname")``, ``("433", "Nickname is already
        in use")``, or a registered nick not of ``account``; None: allowed.
        Asked when registration would complete, so ``account`` is final.
        """

    def verify_plain(
        self,
        authzid: str,
        authcid: str,
        password: str,
        done: Callable[[str | None], None],
    ) -> None:
        """
        Check a password; call ``done`` with the account's name or None,
        now or later.  ``authzid`` is "" or what the client asked to act as
        (refuse one that is not ``authcid``).
        """


@frozen
class Registered:
    """What the lead reads once ``001`` has been sent."""

    nick: str
    user: str
    realname: str
    account: str | None
    caps: frozenset[str]
    cap_version: int


def motd_lines(server: str, nick: str, motd: Sequence[str] | None) -> list[IrcMessage]:
    """``375``, a ``372`` per line, ``376``; ``422`` without one (also for MOTD)."""
    if not motd:
        return [IrcMessage("422", (nick, "MOTD File is missing"), server)]
    head = IrcMessage("375", (nick, f"- {server} Message of the day - "), server)
    body = [IrcMessage("372", (nick, f"- {line}"), server) for line in motd]
    tail = IrcMessage("376", (nick, "End of /MOTD command."), server)
    return [head, *body, tail]


class Registration:
    """
    One connection from its first line to ``001``.

    :ivar result: None until registered, then the :class:`Registered`.
    """

    def __init__(
        self,
        server_name: str,
        caps_offered: Mapping[str, str | None],
        isupport_lines: Callable[[str], list[IrcMessage]],
        motd: Sequence[str] | None,
        checks: RegistrationChecks,
        *,
        network: str,
        version: str,
        created: str,
        host: str,
        started_at: float,
        send_later: Callable[[list[IrcMessage]], None],
    ) -> None:
        self._server = server_name
        self._capn = CapNegotiation(server_name, caps_offered)
        self._isupport = isupport_lines
        self._motd = motd
        self._checks = checks
        self._network, self._version, self._created = network, version, created
        self._host = host
        self.started_at = started_at
        self._send_later = send_later
        self.nick: str | None = None
        self.user: str | None = None
        self.realname: str | None = None
        self.result: Registered | None = None
        self._closed = False
        self._login = Login(
            checks.verify_plain, self._numeric, self._emit, self._answered, self._mask
        )
        self._errors = 0
        self._out: list[IrcMessage] | None = None

    # -- what the lead reads -------------------------------------------------

    @property
    def account(self) -> str | None:
        """The account logged in by SASL or PASS."""
        return self._login.account

    @property
    def wants_close(self) -> bool:
        """The lead should send what it has and close (QUIT, errors, timeout)."""
        return self._closed

    @property
    def registered(self) -> bool:
        return self.result is not None

    @property
    def caps(self) -> frozenset[str]:
        """The enabled capabilities."""
        return self._capn.enabled

    @property
    def capabilities(self) -> CapNegotiation:
        """For ``CAP NEW``/``DEL`` (``offer``, ``withdraw``) after registration."""
        return self._capn

    def expired(self, now: float, deadline: float = REGISTRATION_DEADLINE) -> bool:
        """Whether the deadline has passed with no ``001``."""
        return self.result is None and now - self.started_at >= deadline

    def timeout_error(self) -> IrcMessage:
        """The line to send before closing an expired connection."""
        self._close()
        return self._error("Registration timeout")

    # -- messages in ---------------------------------------------------------

    def feed(self, message: IrcMessage) -> list[IrcMessage]:
        """The replies to one message from the client."""
        if self._closed:
            return []
        return self._collect(lambda: self._dispatch(message))

    def cap(self, message: IrcMessage) -> list[IrcMessage]:
        """A ``CAP`` message, before or after registration."""
        return self.feed(message)

    def _dispatch(self, message: IrcMessage) -> None:
        command = message.command
        if self.result is not None:
            self._after(message)
        elif command == "QUIT":
            reason = message.params[0] if message.params else ""
            self._emit(self._error(f"Quit: {reason}" if reason else "Client Quit"))
            self._close()
        elif command == "PING":
            self._ping(message)
        elif command == "PONG":
            pass
        elif command not in _PREREG:
            self._fail("451", "You have not registered")
        else:
            getattr(self, f"_on_{command.lower()}")(message)
            self._try_complete()

    def _after(self, message: IrcMessage) -> None:
        if message.command == "CAP":
            self._on_cap(message)
        elif message.command == "AUTHENTICATE" and self.account is not None:
            self._numeric("907", "You have already authenticated using SASL")
        elif message.command in REGISTRATION_COMMANDS:
            self._numeric("462", "You may not reregister")

    def _ping(self, message: IrcMessage) -> None:
        if not message.params:
            self._fail("461", "PING", "Not enough parameters")
        else:
            token = message.params[0]
            self._emit(IrcMessage("PONG", (self._server, token), self._server))

    def _on_cap(self, message: IrcMessage) -> None:
        target = self.nick or "*"
        replies = self._capn.handle(message, target, registered=self.registered)
        for reply in replies:
            self._emit(reply)
        if (
            message.params
            and message.params[0].upper() == "END"
            and self._login.phase == "data"
        ):
            self._login.abort()

    def _on_nick(self, message: IrcMessage) -> None:
        nick = message.params[0] if message.params else ""
        if not nick:
            self._fail("431", "No nickname given")
        elif len(nick) > _MAX_NICK_INPUT:
            self._numeric("432", nick[:_MAX_NICK_INPUT], "Erroneous nickname")
        else:
            self.nick = nick

    def _on_user(self, message: IrcMessage) -> None:
        params = message.params
        if len(params) < 4 or not params[0] or not params[3]:
            self._fail("461", "USER", "Not enough parameters")
        elif self.user is not None:
            self._fail("462", "You may not reregister")
        else:
            kept = "".join(c for c in params[0] if c in _USER_CHARS)[:USERLEN]
            self.user = kept or "user"
            self.realname = params[3][:REALNAME_LENGTH]

    def _on_pass(self, message: IrcMessage) -> None:
        if not message.params or not message.params[0]:
            self._fail("461", "PASS", "Not enough parameters")
        else:
            self._login.password = message.params[0]

    def _on_authenticate(self, message: IrcMessage) -> None:
        word = message.params[0] if message.params else ""
        self._login.authenticate(word, sasl_on="sasl" in self._capn.enabled)

    def _answered(self, then: Callable[[], None]) -> None:
        """A password check's answer: its replies now, or through ``send_later``."""
        if self._closed or self.result is not None:
            return

        def run() -> None:
            then()
            self._try_complete()

        if self._out is not None:
            run()
        elif out := self._collect(run):
            self._send_later(out)

    def _collect(self, run: Callable[[], None]) -> list[IrcMessage]:
        out: list[IrcMessage] = []
        self._out = out
        try:
            run()
        finally:
            self._out = None
        return out

    # -- completion ----------------------------------------------------------

    def _try_complete(self) -> None:
        if (
            self.result is not None
            or self._closed
            or self.nick is None
            or self.user is None
            or self._capn.negotiating
            or self._login.phase is not None
            or self._login.try_pass(self.nick)
        ):
            return
        refusal = self._checks.nick_refusal(self.nick, self.account)
        if refusal is not None:  # to "*": the refused nick is not the client's
            nick, self.nick = self.nick, None
            self._numeric(refusal[0], nick, refusal[1])
            return
        self.result = Registered(
            self.nick,
            self.user,
            self.realname or "",
            self.account,
            self._capn.enabled,
            self._capn.version,
        )
        self._welcome(self.nick)

    def _welcome(self, nick: str) -> None:
        server = self._server
        welcome = f"Welcome to the {self._network} Internet Relay Chat Network {nick}"
        modes = (USER_MODES, CHANNEL_MODES, CHANNEL_PARAM_MODES)
        for code, *params in (
            ("001", welcome),
            ("002", f"Your host is {server}, running version {self._version}"),
            ("003", f"This server was created {self._created}"),
            ("004", server, self._version, *modes),
        ):
            self._emit(IrcMessage(code, (nick, *params), server))
        for line in (*self._isupport(nick), *motd_lines(server, nick, self._motd)):
            self._emit(line)

    # -- replies -------------------------------------------------------------

    def _emit(self, message: IrcMessage) -> None:
        if self._out is not None:
            self._out.append(message)

    def _mask(self) -> str:
        return f"{self.nick or '*'}!~{self.user or '*'}@{self._host}"

    def _numeric(self, code: str, *params: str) -> None:
        self._emit(IrcMessage(code, (self.nick or "*", *params), self._server))

    def _fail(self, code: str, *params: str) -> None:
        """An error reply that counts toward :data:`MAX_PREREG_ERRORS`."""
        self._numeric(code, *params)
        self._errors += 1
        if self.result is None and self._errors >= MAX_PREREG_ERRORS:
            self._emit(self._error("Too many errors before registration"))
            self._close()

    def _error(self, reason: str) -> IrcMessage:
        return IrcMessage("ERROR", (f"Closing Link: {self._host} ({reason})",))

    def _close(self) -> None:
        self._closed = True
        self._login.drop()  # a late answer is dropped
