"""
The grammar of the room moderation commands (PROTOCOL.md, "Room moderation").

Apart from :mod:`twisted_chat.core.commands` for the reason
:mod:`~twisted_chat.core.account_commands` is: these lines carry something
not to be repeated, a room key, and a usage error must be safe to send back
whatever was typed.  So a usage error quotes the usage, never the words of
the line, and a key is held in a field whose repr hides it.

Only the shape is checked here (a nick is one word, a duration is
``30m``-like, a limit is a number in range); who may do it, whether NICK is
in the room, and what a nick in ``/ban`` stands for (an account or an
address) are the core's to decide, as only the core knows who is connected.

:data:`ENABLED` keeps the commands out of ``parse_line`` and ``/help``
until the core acts on them: before that, every command value the core does
not know falls through to the server operators' dispatch, which would answer
``! not-server-operator``.
"""

from __future__ import annotations

from typing import Literal

from attrs import field, frozen

from .durations import looks_like_duration, parse_duration
from .errors import BadUsage
from .room_help import (
    ALIASES,
    DETAILS,
    DURATION_HELP,
    HELP,
    ROOM_USAGE,
)
from .room_records import FLAGS, KEY_MAX, LIMIT_MAX

__all__ = [
    "ALIASES",
    "DETAILS",
    "ENABLED",
    "FLAGS",
    "HELP",
    "KEY_MAX",
    "LIMIT_MAX",
    "MODERATION_COMMANDS",
    "ROOM_USAGE",
    "ModerationCommand",
    "hide",
    "join_key",
    "parse",
]

#: Whether ``parse_line`` and ``/help`` know these commands (see the docstring).
ENABLED = True

Flag = Literal["moderated", "invite-only", "topic-lock"]


def hide(key: str | None) -> str:
    """The repr of a room key: whether there is one, never what it is."""
    return "None" if key is None else "<hidden>"


# -- who has which rights ------------------------------------------------------


@frozen
class Op:
    """``/op NICK``."""

    nick: str


@frozen
class Deop:
    """``/deop NICK``."""

    nick: str


@frozen
class Voice:
    """``/voice NICK``."""

    nick: str


@frozen
class Devoice:
    """``/devoice NICK``."""

    nick: str


# -- keeping people out ---------------------------------------------------------


@frozen
class Kick:
    """``/kick NICK [reason]``: ``reason`` is "" when none was given."""

    nick: str
    reason: str


@frozen
class Ban:
    """
    ``/ban PATTERN [DURATION] [reason]``.

    ``pattern`` is as typed: a nick, ``account:NAME``, an address or a block
    (:func:`~twisted_chat.core.bans.looks_like_nick` tells the core when to
    resolve it, :func:`~twisted_chat.core.bans.parse_pattern` checks the
    rest); ``duration`` is in seconds, None until lifted.
    """

    pattern: str
    duration: int | None
    reason: str


@frozen
class Unban:
    """``/unban PATTERN``."""

    pattern: str


@frozen
class Bans:
    """``/bans``."""


@frozen
class Mute:
    """``/mute NICK [DURATION]``: ``duration`` in seconds, None until ``/unmute``."""

    nick: str
    duration: int | None


@frozen
class Unmute:
    """``/unmute NICK``."""

    nick: str


@frozen
class Invite:
    """``/invite NICK``."""

    nick: str


# -- /room -----------------------------------------------------------------------


@frozen
class RoomShow:
    """``/room``: the current room's settings, operators and founder."""


@frozen
class RoomFlag:
    """``/room moderated|invite-only|topic-lock on|off``."""

    flag: Flag
    on: bool


@frozen
class RoomLimit:
    """``/room limit N|off``: None is no limit."""

    limit: int | None


@frozen
class RoomKey:
    """``/room key KEY|off``: None is no key; the repr never shows the key."""

    key: str | None = field(repr=hide)


@frozen
class RoomRegister:
    """``/room register``."""


@frozen
class RoomDrop:
    """``/room drop``."""


RightsCommand = Op | Deop | Voice | Devoice
KeepOutCommand = Kick | Ban | Unban | Bans | Mute | Unmute | Invite
RoomCommand = RoomShow | RoomFlag | RoomLimit | RoomKey | RoomRegister | RoomDrop
ModerationCommand = RightsCommand | KeepOutCommand | RoomCommand
#: For ``isinstance`` in the core's dispatch.
MODERATION_COMMANDS = (
    *(Op, Deop, Voice, Devoice),
    *(Kick, Ban, Unban, Bans, Mute, Unmute, Invite),
    *(RoomShow, RoomFlag, RoomLimit, RoomKey, RoomRegister, RoomDrop),
)


def _usage(name: str, why: str = "") -> BadUsage:
    """A usage error that quotes the usage only, never the words typed."""
    usage, what = HELP[name]
    reason = f"{why} " if why else ""
    return BadUsage(f"{reason}{usage} ({what}); /help {name} explains more.")


def _room_usage(setting: str, why: str = "") -> BadUsage:
    reason = f"{why} " if why else ""
    return BadUsage(f"{reason}{ROOM_USAGE[setting]}; /help room explains more.")


def _nick(name: str, rest: str) -> str:
    """The NICK of ``/op NICK`` and the like: one word, not a room."""
    words = rest.split()
    if len(words) != 1:
        raise _usage(name)
    return _target(name, words[0])


def _target(name: str, word: str) -> str:
    if word.startswith("#"):
        raise _usage(name, f"/{name} works in your current room; /join it first.")
    return word


def _duration(name: str, word: str) -> int:
    try:
        return parse_duration(word)
    except BadUsage:
        raise _usage(name, DURATION_HELP + ".") from None


def _on_off(setting: str, words: list[str]) -> bool:
    if len(words) == 1 and words[0].lower() in ("on", "off"):
        return words[0].lower() == "on"
    raise _room_usage(setting)


def _limit(words: list[str]) -> int | None:
    if len(words) == 1:
        word = words[0]
        if word.lower() == "off":
            return None
        digits = word.lstrip("0")
        if word.isascii() and word.isdigit() and 0 < len(digits) <= 5:
            number = int(digits)
            if number <= LIMIT_MAX:
                return number
    raise _room_usage("limit")


def _key(words: list[str]) -> str | None:
    if not words:
        raise _room_usage("key")
    if len(words) > 1:
        raise _room_usage("key", "A key is one word.")
    if words[0].lower() == "off":
        return None
    return _checked_key(words[0], _room_usage("key", "A key does not start with #."))


def _checked_key(key: str, starts_with_hash: BadUsage) -> str:
    if key.startswith("#"):
        raise starts_with_hash
    if len(key) > KEY_MAX:
        raise BadUsage(
            f"A room key is one word of at most {KEY_MAX} characters; "
            "/help room explains more."
        )
    return key


def join_key(words: str) -> str:
    """
    The KEY of ``/join ROOM KEY``, from what follows ROOM.

    A key never starts with ``#`` (``/room key`` refuses one), so
    ``/join #a #b`` is still two rooms, refused as before.

    :raises BadUsage: more than one word, a ``#``, or too long; never
        quoting the key.
    """
    one_room = BadUsage("Join one room at a time: /join ROOM [KEY].")
    split = words.split()
    if len(split) != 1:
        raise one_room
    return _checked_key(split[0], one_room)


def _room(rest: str) -> ModerationCommand:
    words = rest.split()
    if not words:
        return RoomShow()
    setting, values = words[0].lower(), words[1:]
    match setting:
        case "moderated" | "invite-only" | "topic-lock":
            flag: Flag = setting
            return RoomFlag(flag, _on_off(setting, values))
        case "limit":
            return RoomLimit(_limit(values))
        case "key":
            return RoomKey(_key(values))
        case "register" | "drop":
            if values:
                raise _room_usage(setting)
            return RoomRegister() if setting == "register" else RoomDrop()
    raise _usage(
        "room",
        "The settings are moderated, invite-only, topic-lock, limit and key; "
        "/room register keeps the room, /room drop lets it go.",
    )


def parse(name: str, rest: str) -> ModerationCommand | None:
    """
    The command ``/name rest`` means, or None when ``name`` is not one of these
    or the commands are not :data:`ENABLED`.

    :param name: the command word, lowercased, aliases of ``commands`` resolved.
    :raises BadUsage: with the usage, never the arguments.
    """
    if not ENABLED:
        return None
    name = ALIASES.get(name, name)
    match name:
        case "op":
            return Op(_nick(name, rest))
        case "deop":
            return Deop(_nick(name, rest))
        case "voice":
            return Voice(_nick(name, rest))
        case "devoice":
            return Devoice(_nick(name, rest))
        case "unmute":
            return Unmute(_nick(name, rest))
        case "invite":
            return Invite(_nick(name, rest))
        case "kick":
            nick, _, reason = rest.strip().partition(" ")
            if not nick:
                raise _usage(name)
            return Kick(_target(name, nick), reason.strip())
        case "ban":
            pattern, _, more = rest.strip().partition(" ")
            if not pattern:
                raise _usage(name)
            first, _, after = more.strip().partition(" ")
            pattern = _target(name, pattern)
            if first and looks_like_duration(first):
                return Ban(pattern, _duration(name, first), after.strip())
            return Ban(pattern, None, more.strip())
        case "unban":
            return Unban(_nick(name, rest))
        case "bans":
            if rest.strip():
                raise _usage(name, "/bans lists the current room's bans.")
            return Bans()
        case "mute":
            words = rest.split()
            if not 1 <= len(words) <= 2:
                raise _usage(name)
            nick = _target(name, words[0])
            if len(words) == 1:
                return Mute(nick, None)
            if not looks_like_duration(words[1]):
                raise _usage(name, DURATION_HELP + ".")
            return Mute(nick, _duration(name, words[1]))
        case "room":
            return _room(rest)
    return None
