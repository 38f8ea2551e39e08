"""
The line grammar: which text is a message and which is a command.

``parse_line`` turns one cleaned line into a command value; it checks only
the shape of the line (the command exists, the arguments are there).  Whether
the command is allowed (the nick is free, the room exists) is the business of
:mod:`twisted_chat.core.chat`.
"""

from __future__ import annotations

from attrs import field, frozen

from twisted_chat.core import account_commands, room_commands
from twisted_chat.core.bounds import HISTORY_LIMIT, ROOMS_PATTERN_MAX
from twisted_chat.core.errors import BadUsage, UnknownCommand


@frozen
class Say:
    """Plain text to the current room."""

    text: str


@frozen
class SetNick:
    """``/nick NAME``."""

    name: str


@frozen
class Join:
    """``/join ROOM [KEY]``: the repr never shows the key."""

    room: str
    key: str | None = field(default=None, repr=room_commands.hide)


@frozen
class Part:
    """``/part [ROOM] [reason]``: the core splits ``args``, as it knows the rooms."""

    args: str


@frozen
class ListRooms:
    """``/rooms [PATTERN]`` or ``/list [PATTERN]``: None lists the busiest."""

    pattern: str | None = None


@frozen
class Who:
    """``/who [ROOM]``."""

    room: str | None


@frozen
class Msg:
    """``/msg NICK text`` or ``/msg #room text``."""

    target: str
    text: str


@frozen
class Me:
    """``/me text``."""

    text: str


@frozen
class Topic:
    """``/topic [text]``: show the topic when ``text`` is None."""

    text: str | None


@frozen
class Ping:
    """``/ping [token]``: answered with ``* pong [token]``."""

    token: str


@frozen
class Help:
    """``/help [command]``."""

    topic: str | None


@frozen
class Quit:
    """``/quit [reason]``."""

    reason: str | None


@frozen
class History:
    """``/history [N]``: replay the current room's last N messages."""

    count: int | None


@frozen
class Hello:
    """``/hello TOKEN``: the UDP proof-of-address reply."""

    token: str


Command = (
    Say
    | SetNick
    | Join
    | Part
    | ListRooms
    | Who
    | Msg
    | Me
    | Topic
    | Ping
    | Help
    | Quit
    | History
    | Hello
)

#: ``(usage, one-line explanation)`` for each command, in ``/help`` order
#: (:mod:`twisted_chat.core.help` has the longer explanations).
HELP: dict[str, tuple[str, str]] = {
    "nick": ("/nick NAME", "change your nickname"),
    "join": ("/join ROOM", "join a room (created on first join) and make it current"),
    "part": (
        "/part [ROOM] [reason]",
        "leave a room, the current one by default",
    ),
    "rooms": (
        "/rooms [PATTERN]",
        "list the busiest rooms with member counts and topics, or search them",
    ),
    "who": ("/who [ROOM]", "list the people in a room, the current one by default"),
    "msg": (
        "/msg NICK text",
        "send a private message; /msg #room text speaks in a room you are in",
    ),
    "me": ("/me text", "an action in the current room: [#room] * you text"),
    "topic": ("/topic [text]", "show or set the current room's topic"),
    "history": (
        "/history [N]",
        f"replay the last N messages of the current room (1 to {HISTORY_LIMIT})",
    ),
    "ping": ("/ping", "the server answers * pong (keeps a UDP session alive)"),
    "help": ("/help [command]", "list commands, or explain one"),
    "quit": ("/quit [reason]", "leave; others in your rooms see the reason"),
}

#: Other names that work for a command, and the command they stand for.
ALIASES: dict[str, str] = {
    "leave": "part",
    "list": "rooms",
    "names": "who",
    "query": "msg",
    "tell": "msg",
    "exit": "quit",
    "bye": "quit",
}

#: What ``/history N`` takes, for its usage error.
HISTORY_USAGE = (
    f"/history [N], where N is a number from 1 to {HISTORY_LIMIT}; "
    f"without N it replays as many as a /join does."
)


def _split(rest: str) -> tuple[str, str]:
    head, _, tail = rest.partition(" ")
    return head, tail.strip()


def _require(value: str, name: str) -> str:
    if not value:
        usage, what = HELP[name]
        # The error code already says "usage": the text starts with the
        # usage itself ("! usage: /msg NICK text (...)").
        raise BadUsage(f"{usage} ({what}); /help {name} explains more.")
    return value


#: Whatever a line can mean: this module's commands and the other grammars'.
AnyCommand = (
    Command
    | account_commands.AccountCommand
    | account_commands.OperatorCommand
    | room_commands.ModerationCommand
)


def parse_line(text: str) -> AnyCommand:
    """
    Map one cleaned, non-blank line to a command.

    :raises UnknownCommand: for ``/word`` that names no command.
    :raises BadUsage: for a command without its required arguments.
    """
    if not text.startswith("/"):
        return Say(text)
    if text.startswith("//"):
        return Say(text[1:])
    word, rest = _split(text[1:])
    name = word.lower()
    name = ALIASES.get(name, name)
    match name:
        case "nick":
            nick, extra = _split(_require(rest, "nick"))
            if extra:
                raise BadUsage("A nickname cannot contain spaces.")
            return SetNick(nick)
        case "join":
            room, extra = _split(_require(rest, "join"))
            return Join(room, room_commands.join_key(extra)) if extra else Join(room)
        case "part":
            return Part(rest)
        case "rooms":
            return ListRooms(rest.split(" ", 1)[0][:ROOMS_PATTERN_MAX] or None)
        case "who":
            return Who(rest.split(" ", 1)[0] or None)
        case "msg":
            target, body = _split(_require(rest, "msg"))
            return Msg(target, _require(body, "msg"))
        case "me":
            return Me(_require(rest, "me"))
        case "topic":
            return Topic(rest or None)
        case "ping":
            return Ping(rest)
        case "help":
            return Help(rest.lstrip("/").split(" ", 1)[0].lower() or None)
        case "quit":
            return Quit(rest or None)
        case "history":
            if not rest:
                return History(None)
            if not rest.isdigit() or not rest.isascii() or not rest.strip("0"):
                raise BadUsage(HISTORY_USAGE)
            return History(int(rest.lstrip("0")[:6]))
        case "hello":
            return Hello(rest)
        case _:
            other = account_commands.parse(name, rest)
            if other is not None:
                return other
            moderation = room_commands.parse(name, rest)
            if moderation is not None:
                return moderation
            shown = word if len(word) <= 32 else word[:32] + "…"
            raise UnknownCommand(
                f"There is no command /{shown}; type /help for the list, "
                f"or start the line with // to send it as text."
            )
