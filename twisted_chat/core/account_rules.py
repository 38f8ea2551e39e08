"""
The account rules that need no hasher: names, passwords, ``/whois``.

Apart from :mod:`twisted_chat.core.accounts` (which owns the commands'
flow: the hasher's callbacks, the throttle, renames) so that each stays
under 400 lines, and because these are pure functions of their arguments,
tested on plain values.

- A guest name cannot become an account.  "Guest name" is decided on the
  name's key, so ``GUEST1``, ``guestl`` (an ``l`` for the ``1``) and
  ``guestO`` are guest names too: otherwise an account could look like the
  ``guestN`` a newcomer is given.
- Password lengths: at least :data:`MIN_PASSWORD_LENGTH` (the same as
  :data:`twisted_chat.accounts.passwords.MIN_PASSWORD_LENGTH`, copied
  because the core imports no other layer; a test checks they agree), at
  most :data:`MAX_PASSWORD_LENGTH`, so a hash job's input is bounded.
  Texts here never quote a password, not even its length.
- ``/whois`` is bounded: :data:`WHOIS_ROOMS_SHOWN` rooms, then "and N
  more"; a person's address is shown only to server operators.  An account
  nobody is using is shown with how long ago it was last logged in to.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Final

from twisted_chat.core import lines
from twisted_chat.core.errors import BadUsage, NoSuchNick, WeakPassword
from twisted_chat.core.names import name_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted_chat.core.account_ports import Account, AccountStore
    from twisted_chat.core.names import Nick
    from twisted_chat.core.people import Directory
    from twisted_chat.core.room import Participant
    from twisted_chat.core.secret_prompt import Secret

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "WHOIS_ROOMS_SHOWN",
    "check_new_password",
    "duration",
    "is_guest_name",
    "offline_whois",
    "online_whois",
    "whois_reply",
]

#: The shortest password accepted (``! weak-password``).
MIN_PASSWORD_LENGTH: Final = 8
#: The longest password accepted (``! usage``): argon2 hashes anything, but
#: a job's input should be bounded like everything else a client sends.
MAX_PASSWORD_LENGTH: Final = 128
#: Rooms ``/whois`` names before "and N more".
WHOIS_ROOMS_SHOWN: Final = 20

# "guest" then digits, as keys: a digit's key may be a letter ("1" -> "l").
_DIGIT_KEYS: Final = sorted({name_key("a" + digit)[1:] for digit in "0123456789"})
_GUEST_KEY: Final = re.compile(
    re.escape(name_key("guest")) + "(?:" + "|".join(map(re.escape, _DIGIT_KEYS)) + ")+"
)


def is_guest_name(nick: Nick) -> bool:
    """Whether ``nick`` is (or looks like) a ``guestN`` nickname."""
    return _GUEST_KEY.fullmatch(nick.key) is not None


def check_new_password(secret: Secret) -> None:
    """
    Refuse a new password that is too short or too long.

    :raises WeakPassword: fewer than :data:`MIN_PASSWORD_LENGTH` characters.
    :raises BadUsage: more than :data:`MAX_PASSWORD_LENGTH`.
    """
    length = len(secret.value)
    if length < MIN_PASSWORD_LENGTH:
        raise WeakPassword(
            f"A password needs at least {MIN_PASSWORD_LENGTH} characters; "
            f"choose a longer one (one word, no spaces)."
        )
    if length > MAX_PASSWORD_LENGTH:
        raise BadUsage(
            f"A password is at most {MAX_PASSWORD_LENGTH} characters; "
            f"choose a shorter one."
        )


def duration(seconds: float) -> str:
    """``42s``, ``5m 3s``, ``2h 5m``, ``3d 4h``: two units at most."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def online_whois(
    subject: Participant,
    account_name: str | None,
    now: float,
    *,
    show_host: bool,
    operator: bool,
) -> list[bytes]:
    """
    ``/whois`` of somebody connected, a line each: account, transport,
    rooms, idle time, server operator.

    :param account_name: the name of the account they are logged in to.
    :param show_host: whether the asker may see their address.
    """
    nick = subject.nick.display
    reply = [
        lines.notice(
            f"{nick} is logged in as {account_name}"
            if account_name is not None
            else f"{nick} is not logged in"
        )
    ]
    where = f" from {subject.host}" if show_host and subject.host else ""
    reply.append(lines.notice(f"{nick} is connected over {subject.transport}{where}"))
    count = len(subject.rooms)
    if count:
        shown = [
            room.name.display
            for room in itertools.islice(subject.rooms.values(), WHOIS_ROOMS_SHOWN)
        ]
        more = f" and {count - len(shown)} more" if count > len(shown) else ""
        reply.append(lines.notice(f"{nick} is in {', '.join(shown)}{more}"))
    else:
        reply.append(lines.notice(f"{nick} is in no rooms"))
    if subject.last_active:
        idle = duration(now - subject.last_active)
        reply.append(lines.notice(f"{nick} has been idle for {idle}"))
    else:
        reply.append(lines.notice(f"{nick} has said nothing yet"))
    if operator:
        reply.append(lines.notice(f"{nick} is a server operator"))
    return reply


def offline_whois(account: Account, now: float) -> list[bytes]:
    """``/whois`` of an account nobody is using: when it was last logged in to."""
    last = account.last_login
    when = (
        f"last logged in {duration(now - last)} ago"
        if last is not None
        else "never logged in"
    )
    return [
        lines.notice(f"{account.name} is a registered account, not online ({when})")
    ]


def whois_reply(
    directory: Directory,
    store: AccountStore,
    asker: Participant,
    text: str,
    now: float,
    *,
    is_operator: Callable[[Participant], bool],
) -> list[bytes]:
    """
    ``/whois NICK``: who is connected as NICK, or which account it is.

    ``is_operator`` asks the live operator table (an operator removed by
    SIGHUP is one no longer), for the asker (who alone may see addresses)
    and the subject.

    :raises NoSuchNick: when NICK is neither.
    """
    try:
        subject = directory.find(text)
    except NoSuchNick:
        account = store.get(text)
        if account is None:
            shown = text if len(text) <= 32 else text[:32] + "…"
            raise NoSuchNick(
                f"Nobody called {shown} is here, and there is no such account."
            ) from None
        return offline_whois(account, now)
    account_name = subject.account
    if account_name is not None:
        account = store.get(account_name)
        account_name = account.name if account is not None else account_name
    return online_whois(
        subject,
        account_name,
        now,
        show_host=is_operator(asker),
        operator=is_operator(subject),
    )
