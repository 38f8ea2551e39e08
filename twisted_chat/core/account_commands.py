"""
The grammar of the account and server-operator commands.

Apart from :mod:`twisted_chat.core.commands` because these lines carry
passwords, and a password must never reach a log line, a notice or a
traceback, even when the command is mistyped.  So:

- a password is one word (no spaces), held in a
  :class:`~twisted_chat.core.secret_prompt.Secret`, whose repr hides it;
- a usage error quotes the usage, never what was typed
  (``/login a b c`` is told ``/login NAME [PASSWORD]``, not ``a b c``);
- the command values below are what :mod:`twisted_chat.core.accounts` and
  :mod:`twisted_chat.core.operators` act on.
"""

from __future__ import annotations

from attrs import frozen

from twisted_chat.core.errors import BadUsage
from twisted_chat.core.secret_prompt import Secret

__all__ = [
    "ACCOUNT_COMMANDS",
    "ACCOUNT_HELP",
    "OPERATOR_COMMANDS",
    "OPERATOR_HELP",
    "parse",
]


# -- accounts -------------------------------------------------------------------


@frozen
class Register:
    """``/register PASSWORD``, or ``/register NAME PASSWORD`` (server operators)."""

    name: str | None
    password: Secret


@frozen
class Login:
    """``/login NAME [PASSWORD]`` (alias ``/identify``); None: prompt for it."""

    name: str
    password: Secret | None


@frozen
class Logout:
    """``/logout``."""


@frozen
class ChangePassword:
    """``/password OLD NEW``."""

    old: Secret
    new: Secret


@frozen
class Unregister:
    """``/unregister PASSWORD``."""

    password: Secret


@frozen
class Whois:
    """``/whois NICK``."""

    nick: str


# -- server operators -------------------------------------------------------------


@frozen
class Oper:
    """``/oper NAME [PASSWORD]``; None: prompt for it."""

    name: str
    password: Secret | None


@frozen
class Kill:
    """``/kill NICK [reason]``."""

    nick: str
    reason: str


@frozen
class ServerBan:
    """``/serverban PATTERN [DURATION] [reason]``: what follows PATTERN in ``rest``."""

    pattern: str
    rest: str


@frozen
class ServerUnban:
    """``/serverunban PATTERN``."""

    pattern: str


@frozen
class ServerBans:
    """``/serverbans``."""


@frozen
class Wall:
    """``/wall text``."""

    text: str


@frozen
class Stats:
    """``/stats``."""


AccountCommand = Register | Login | Logout | ChangePassword | Unregister | Whois
OperatorCommand = Oper | Kill | ServerBan | ServerUnban | ServerBans | Wall | Stats
#: For ``isinstance`` in the core's dispatch.
ACCOUNT_COMMANDS = (Register, Login, Logout, ChangePassword, Unregister, Whois)
OPERATOR_COMMANDS = (Oper, Kill, ServerBan, ServerUnban, ServerBans, Wall, Stats)

#: ``(usage, one-line explanation)``, in ``/help`` order, as ``commands.HELP``.
ACCOUNT_HELP: dict[str, tuple[str, str]] = {
    "register": (
        "/register PASSWORD",
        "make your nickname an account (a password: 8 characters or more, one word)",
    ),
    "login": (
        "/login NAME [PASSWORD]",
        "log in to an account; without PASSWORD the next line is taken, unseen",
    ),
    "logout": ("/logout", "log out; you go on as a guest"),
    "password": ("/password OLD NEW", "change your account's password"),
    "unregister": ("/unregister PASSWORD", "delete your account"),
    "whois": ("/whois NICK", "who NICK is: account, transport, rooms, idle time"),
}
OPERATOR_HELP: dict[str, tuple[str, str]] = {
    "oper": ("/oper NAME [PASSWORD]", "become a server operator"),
    "kill": ("/kill NICK [reason]", "(server operators) disconnect NICK"),
    "serverban": (
        "/serverban PATTERN [DURATION] [reason]",
        "(server operators) ban an address, a CIDR block, account:NAME or a nick",
    ),
    "serverunban": ("/serverunban PATTERN", "(server operators) lift a server ban"),
    "serverbans": ("/serverbans", "(server operators) list the server bans"),
    "wall": ("/wall text", "(server operators) tell every connected client"),
    "stats": ("/stats", "(server operators) clients, rooms, traffic, refusals"),
}
#: The longer ``/help`` of each (see :data:`twisted_chat.core.help.DETAILS`).
DETAILS: dict[str, tuple[str, ...]] = {
    "register": (
        (
            "Your current nickname becomes an account: nobody else can take it "
            "while you are away (! nick-registered), and you are logged in."
        ),
        (
            "A password is one word of 8 characters or more; guest nicknames "
            "cannot be registered, so pick one with /nick first."
        ),
        (
            "Server operators: /register NAME PASSWORD makes an account for "
            "somebody else (the only way when registration is closed)."
        ),
        "Example: /register correct-horse-battery",
    ),
    "login": (
        (
            "Your nickname becomes NAME. Without PASSWORD the server answers "
            "* Password: and takes your next line, unseen (telnet stops echoing "
            "it) and shown to nobody."
        ),
        (
            "A wrong name or password both get ! login-failed; after 5 failures "
            "in a minute for one account or from one address, ! login-throttled "
            "for a minute."
        ),
        "Example: /login alice",
    ),
    "logout": ("You go on chatting under a new guest nickname.",),
    "password": ("Example: /password old-secret new-secret",),
    "unregister": ("Deletes the account; your nickname is no longer protected.",),
    "whois": (
        (
            "Shows the account NICK is logged in to (if any), whether they came "
            "over tcp or udp, their rooms and how long they have been idle."
        ),
    ),
    "oper": (
        (
            "NAME and its password are in the server's configuration file; "
            "without PASSWORD the next line is taken, unseen, as with /login."
        ),
    ),
    "serverban": (
        (
            "PATTERN is an address (203.0.113.7), a CIDR block (203.0.113.0/24, "
            "2001:db8::/48), account:NAME, or a nick (their account if they are "
            "logged in, else their address)."
        ),
        (
            "DURATION is like 30m, 12h or 7d; without it the ban lasts until "
            "/serverunban. Matching clients are disconnected."
        ),
        "Example: /serverban 203.0.113.0/24 1d spam",
    ),
}

#: Other names for these commands.
ALIASES: dict[str, str] = {"identify": "login"}

_HELP = {**ACCOUNT_HELP, **OPERATOR_HELP}


def _usage(name: str, why: str = "") -> BadUsage:
    """A usage error that quotes the usage only, never the words typed."""
    usage, what = _HELP[name]
    reason = f"{why} " if why else ""
    return BadUsage(f"{reason}{usage} ({what}); /help {name} explains more.")


def _words(rest: str) -> list[str]:
    return rest.split()


def _secret_words(name: str, rest: str, least: int, most: int) -> list[str]:
    """The words of a line that carries a password: between least and most."""
    words = rest.split()
    if len(words) > most:
        raise _usage(name, "Too many words: a password is one word, without spaces.")
    if len(words) < least:
        raise _usage(name)
    return words


def parse(name: str, rest: str) -> AccountCommand | OperatorCommand | None:
    """
    The command ``/name rest`` means, or None when ``name`` is not one of these.

    :param name: the command word, lowercased, aliases not yet resolved.
    :raises BadUsage: with the usage, never the arguments.
    """
    name = ALIASES.get(name, name)
    match name:
        case "register":
            words = _secret_words(name, rest, 1, 2)
            if len(words) == 2:
                return Register(words[0], Secret(words[1]))
            return Register(None, Secret(words[0]))
        case "login" | "oper":
            words = _secret_words(name, rest, 1, 2)
            password = Secret(words[1]) if len(words) == 2 else None
            if name == "login":
                return Login(words[0], password)
            return Oper(words[0], password)
        case "logout":
            return Logout()
        case "password":
            old, new = _secret_words(name, rest, 2, 2)
            return ChangePassword(Secret(old), Secret(new))
        case "unregister":
            (word,) = _secret_words(name, rest, 1, 1)
            return Unregister(Secret(word))
        case "whois":
            words = _words(rest)
            if len(words) != 1:
                raise _usage(name)
            return Whois(words[0])
        case "kill":
            nick, _, reason = rest.strip().partition(" ")
            if not nick:
                raise _usage(name)
            return Kill(nick, reason.strip())
        case "serverban":
            pattern, _, more = rest.strip().partition(" ")
            if not pattern:
                raise _usage(name)
            return ServerBan(pattern, more.strip())
        case "serverunban":
            words = _words(rest)
            if len(words) != 1:
                raise _usage(name)
            return ServerUnban(words[0])
        case "serverbans":
            return ServerBans()
        case "wall":
            if not rest.strip():
                raise _usage(name)
            return Wall(rest.strip())
        case "stats":
            return Stats()
    return None
