"""
IRCv3 capability negotiation for one IRC connection: ``CAP LS``, ``LIST``,
``REQ``, ``END`` and the server's ``NEW``/``DEL`` (issue 15).

It is apart from :mod:`twisted_chat.transports.irc_registration` because
``CAP`` outlives registration: a client may ``CAP REQ`` or ``CAP LS`` at any
time, and the lead routes those here after ``001`` too.  Sans-IO: messages
in, messages out.

What is followed, and where:

- IRCv3 "Capability Negotiation" (ircv3.net/specs/extensions/
  capability-negotiation, which folds in 3.1 and 3.2): ``CAP LS 302`` shows
  values (``sasl=PLAIN``) and may take several lines, each but the last with
  a ``*`` before the list, each under the 510-byte limit ("Multiline replies
  to CAP LS and CAP LIST"); ``CAP REQ`` is all or nothing ("the server MUST
  NOT make any change to any capabilities if it replies with a NAK");
  requesting what is already on, or switching off what is off, succeeds.
- "cap-notify" (ircv3.net/specs/extensions/cap-notify): implied by
  ``CAP LS 302`` and then impossible to switch off, so ``CAP REQ
  -cap-notify`` from such a client is refused with ``NAK``.
- An unknown subcommand gets ``410 ERR_INVALIDCAPCMD`` and a bare ``CAP``
  ``461`` (the Modern IRC client protocol document, "CAP message").

:class:`Login` is the ``sasl`` capability's exchange, here beside the
negotiation that enables it (and ``PASS``, its fallback for clients without
SASL), so that registration keeps only the order of things:

- IRCv3 SASL 3.1 and 3.2 (ircv3.net/specs/extensions/sasl-3.1, -3.2):
  ``AUTHENTICATE PLAIN``, the server's ``AUTHENTICATE +``, base64 in chunks
  of 400 bytes (one of exactly 400 means more follows; ``+`` is an empty
  chunk), ``AUTHENTICATE *`` aborts (``906``), ``900``/``903`` on success,
  ``904`` on failure, ``905`` for a chunk over 400 bytes (and, here, a
  payload over :data:`MAX_SASL_BASE64`), ``907`` once logged in, ``908``
  with ``904`` for another mechanism; ``904`` without the ``sasl``
  capability.  The PLAIN response is RFC 4616's ``authzid NUL authcid NUL
  password``.
- ``PASS``: there is no server password; like Ergo, ``PASS account:password``
  (or ``PASS password``, for the account of the nick) logs in when SASL did
  not, asked once registration is otherwise complete.  A wrong one gets
  ``464`` and registration goes on as a guest.
- Password checks are slow (argon2 on a thread): an answer may come after
  an abort, a second attempt, or the client's ``QUIT``; each check carries
  its number and only the latest one's answer counts.  At most
  :data:`MAX_LOGIN_ATTEMPTS` checks a connection.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from twisted_chat.transports.irc_message import IrcMessage

__all__ = [
    "CAP_LINE_BYTES",
    "MAX_LOGIN_ATTEMPTS",
    "MAX_REQ_TOKENS",
    "MAX_SASL_BASE64",
    "CapNegotiation",
    "Login",
    "Verify",
]

#: The most bytes of one server line without tags and CRLF (RFC 1459 2.3).
CAP_LINE_BYTES: Final = 510
#: The most capabilities one ``CAP REQ`` may name: more is refused whole.
#: Twice what we will ever offer, so no honest request reaches it.
MAX_REQ_TOKENS: Final = 32
#: The longest capability token (name and value) we agree to offer.
_MAX_TOKEN_BYTES: Final = 300
_CAP_NOTIFY: Final = "cap-notify"
#: Password checks (SASL or PASS) one connection may start.
MAX_LOGIN_ATTEMPTS: Final = 3
#: The most base64 one SASL exchange may send: 1,024 bytes decoded, room for
#: the longest PLAIN (two 24-character names, a 128-character password).
MAX_SASL_BASE64: Final = 1368
_SASL_CHUNK: Final = 400
_FAILED: Final = "SASL authentication failed"


class CapNegotiation:
    """
    One connection's capabilities: what it was offered, what it enabled,
    and which version of ``CAP LS`` it spoke.

    :ivar version: 301 until the client says ``CAP LS 302`` (or more);
        once raised it stays raised, as cap-notify requires.
    :ivar negotiating: True from a ``CAP LS`` or ``CAP REQ`` until
        ``CAP END``: registration waits for it.
    """

    def __init__(self, server_name: str, offered: Mapping[str, str | None]) -> None:
        for name, value in offered.items():
            token = name if value is None else f"{name}={value}"
            if not name or " " in token or len(token.encode()) > _MAX_TOKEN_BYTES:
                msg = f"capability {token!r} cannot be offered"
                raise ValueError(msg)
        self._server = server_name
        self._offered: dict[str, str | None] = dict(offered)
        self._enabled: set[str] = set()
        self.version = 301
        self.negotiating = False

    @property
    def enabled(self) -> frozenset[str]:
        """The capabilities on for this connection (cap-notify when implied)."""
        if self.cap_notify and _CAP_NOTIFY in self._offered:
            return frozenset(self._enabled | {_CAP_NOTIFY})
        return frozenset(self._enabled)

    @property
    def cap_notify(self) -> bool:
        """Whether ``CAP NEW``/``DEL`` reach this client."""
        return self.version >= 302 or _CAP_NOTIFY in self._enabled

    def handle(
        self, message: IrcMessage, target: str, *, registered: bool
    ) -> list[IrcMessage]:
        """
        The replies to one ``CAP`` message from the client.

        :param target: the client's nick, or ``*`` before it has one.
        :param registered: after ``001`` nothing here holds registration.
        """
        if not message.params:
            return [self._numeric("461", target, "CAP", "Not enough parameters")]
        sub = message.params[0].upper()
        rest = message.params[1:]
        if sub == "LS":
            self._start(registered=registered)
            self._raise_version(rest[0] if rest else "")
            return self._listing(target, "LS", self._ls_tokens())
        if sub == "LIST":
            return self._listing(target, "LIST", sorted(self.enabled))
        if sub == "REQ":
            self._start(registered=registered)
            return [self._request(target, rest[0] if rest else "")]
        if sub == "END":
            self.negotiating = False
            return []
        return [self._numeric("410", target, sub[:32], "Invalid CAP command")]

    def offer(self, name: str, value: str | None, target: str) -> list[IrcMessage]:
        """Offer ``name`` from now on (a reload, say): ``CAP NEW`` if notified."""
        self._offered[name] = value
        if not self.cap_notify:
            return []
        token = name if value is None or self.version < 302 else f"{name}={value}"
        return [self._cap(target, "NEW", token)]

    def withdraw(self, name: str, target: str) -> list[IrcMessage]:
        """Stop offering ``name`` and switch it off: ``CAP DEL`` when notified."""
        if self._offered.pop(name, False) is False:
            return []
        self._enabled.discard(name)
        return [self._cap(target, "DEL", name)] if self.cap_notify else []

    def _start(self, *, registered: bool) -> None:
        if not registered:
            self.negotiating = True

    def _raise_version(self, word: str) -> None:
        if word.isdigit() and len(word) <= 6:
            self.version = max(self.version, int(word))

    def _ls_tokens(self) -> list[str]:
        if self.version < 302:
            return sorted(self._offered)
        return [
            name if value is None else f"{name}={value}"
            for name, value in sorted(self._offered.items())
        ]

    def _request(self, target: str, text: str) -> IrcMessage:
        words = text.split()
        changes: list[tuple[str, bool]] = []
        for word in words:
            off = word.startswith("-")
            name = word[1:] if off else word
            if name not in self._offered or (
                off and name == _CAP_NOTIFY and self.version >= 302
            ):
                break
            changes.append((name, not off))
        if not words or len(words) > MAX_REQ_TOKENS or len(changes) < len(words):
            return self._cap(target, "NAK", self._fit(target, "NAK", words))
        for name, on in changes:
            if on:
                self._enabled.add(name)
            else:
                self._enabled.discard(name)
        return self._cap(target, "ACK", " ".join(words))

    def _fit(self, target: str, sub: str, words: list[str]) -> str:
        """As much of ``words`` as one reply line holds, cut between words."""
        room = CAP_LINE_BYTES - len(self._head(target, sub, more=False))
        kept: list[str] = []
        used = 0
        for word in words:
            size = len(word.encode()) + (1 if kept else 0)
            if used + size > room:
                break
            kept.append(word)
            used += size
        return " ".join(kept)

    def _head(self, target: str, sub: str, *, more: bool) -> bytes:
        star = " *" if more else ""
        return f":{self._server} CAP {target} {sub}{star} :".encode()

    def _listing(self, target: str, sub: str, tokens: list[str]) -> list[IrcMessage]:
        """``tokens`` over as many lines as needed, ``*`` on all but the last."""
        room = CAP_LINE_BYTES - len(self._head(target, sub, more=True))
        lines: list[list[str]] = [[]]
        used = 0
        for token in tokens:
            size = len(token.encode()) + (1 if lines[-1] else 0)
            if lines[-1] and used + size > room:
                lines.append([])
                size = len(token.encode())
                used = 0
            lines[-1].append(token)
            used += size
        replies = [
            IrcMessage("CAP", (target, sub, "*", " ".join(line)), self._server)
            for line in lines[:-1]
        ]
        replies.append(self._cap(target, sub, " ".join(lines[-1])))
        return replies

    def _cap(self, target: str, sub: str, text: str) -> IrcMessage:
        return IrcMessage("CAP", (target, sub, text), self._server)

    def _numeric(self, code: str, target: str, *params: str) -> IrcMessage:
        return IrcMessage(code, (target, *params), self._server)


class Verify(Protocol):
    """``RegistrationChecks.verify_plain``: the account's name, or None, to ``done``."""

    def __call__(
        self,
        authzid: str,
        authcid: str,
        password: str,
        done: Callable[[str | None], None],
    ) -> None: ...


class Login:
    """
    One connection's way to an account before ``001``: SASL PLAIN, or PASS.

    :ivar phase: None; ``data`` (gathering SASL chunks); ``verify`` (a
        SASL payload is being checked); ``pass`` (a PASS is being checked).
        Registration waits while it is not None.
    """

    def __init__(
        self,
        verify: Verify,
        reply: Callable[..., None],
        emit: Callable[[IrcMessage], None],
        answered: Callable[[Callable[[], None]], None],
        mask: Callable[[], str],
    ) -> None:
        self._verify = verify
        self._reply = reply  # (code, *params): a numeric to the client
        self._emit = emit
        self._answered = answered  # runs an answer's effects, now or later
        self._mask = mask
        self.account: str | None = None
        self.phase: str | None = None
        self.password: str | None = None
        self._chunks: list[str] = []
        self._size = 0
        self._current = 0  # the number of the check whose answer counts
        self._started = 0

    def authenticate(self, word: str, *, sasl_on: bool) -> None:
        """One ``AUTHENTICATE`` before registration."""
        if not word:
            self._reply("461", "AUTHENTICATE", "Not enough parameters")
        elif word == "*":
            self.abort()
        elif self.account is not None:
            self._reply("907", "You have already authenticated using SASL")
        elif not sasl_on:
            self._reply("904", _FAILED)
        elif self.phase is None:
            self._begin(word)
        elif self.phase == "data":
            self._data(word)
        else:  # a second exchange while one is being checked: end both
            self.drop()
            self._reply("904", _FAILED)

    def abort(self) -> None:
        """``906``: any exchange ends, and a late answer is dropped."""
        self.drop()
        self._reply("906", "SASL authentication aborted")

    def drop(self) -> None:
        """Forget the exchange under way without a word (QUIT, close)."""
        self._current += 1
        self.phase = None
        self._chunks, self._size = [], 0

    def try_pass(self, nick: str) -> bool:
        """
        Check a ``PASS`` not yet used, when nothing else holds registration.

        :return: True when a check was started (registration must wait).
        """
        password, self.password = self.password, None
        if password is None or self.account is not None:
            return False
        if self._started >= MAX_LOGIN_ATTEMPTS:
            self._reply("464", "Password incorrect")
            return False
        name, colon, secret = password.partition(":")
        authcid, secret = (name, secret) if colon and name else (nick, password)
        self.phase = "pass"
        self._check("", authcid, secret)
        return True

    def _begin(self, mechanism: str) -> None:
        if mechanism.upper() != "PLAIN":
            self._reply("908", "PLAIN", "are available SASL mechanisms")
            self._reply("904", _FAILED)
        elif self._started >= MAX_LOGIN_ATTEMPTS:
            self._reply("904", f"{_FAILED}: too many attempts")
        else:
            self.phase = "data"
            self._emit(IrcMessage("AUTHENTICATE", ("+",)))

    def _data(self, chunk: str) -> None:
        if len(chunk) > _SASL_CHUNK or self._size + len(chunk) > MAX_SASL_BASE64:
            self.drop()
            self._reply("905", "SASL message too long")
            return
        if chunk != "+":
            self._chunks.append(chunk)
            self._size += len(chunk)
        if len(chunk) == _SASL_CHUNK:
            return
        parts = _plain("".join(self._chunks))
        self._chunks, self._size = [], 0
        if parts is None:
            self.phase = None
            self._reply("904", _FAILED)
            return
        self.phase = "verify"
        self._check(*parts)

    def _check(self, authzid: str, authcid: str, password: str) -> None:
        self._current += 1
        self._started += 1
        number = self._current

        def done(account: str | None) -> None:
            if number == self._current:
                self._answered(lambda: self._answer(account))

        self._verify(authzid, authcid, password, done)

    def _answer(self, account: str | None) -> None:
        sasl = self.phase == "verify"
        self._current += 1  # one answer per check
        self.phase = None
        if account is None:
            self._reply(*(("904", _FAILED) if sasl else ("464", "Password incorrect")))
            return
        self.account = account
        self._reply("900", self._mask(), account, f"You are now logged in as {account}")
        if sasl:
            self._reply("903", "SASL authentication successful")


def _plain(data: str) -> tuple[str, str, str] | None:
    """authzid, authcid, password of a PLAIN response (RFC 4616), or None."""
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    parts = text.split("\0")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return None
    return parts[0], parts[1], parts[2]
