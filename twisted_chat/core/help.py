"""
What ``/help`` says: the one-line list, and each command's longer help.

``/help`` alone is one line per command (``commands.HELP``, also what usage
errors quote); ``/help COMMAND`` repeats that line, then says what the
arguments are, what the limits are and gives an example.  An alias
(``/leave``, ``/list``, ...) is explained as the command it stands for, and
says so.  The limits are quoted from :mod:`twisted_chat.core.bounds` and
:mod:`twisted_chat.core.names`, so the help cannot drift from the rules.
"""

from __future__ import annotations

from twisted_chat.core import account_commands, lines, room_commands
from twisted_chat.core.bounds import (
    HISTORY_LIMIT,
    MAX_ROOMS_PER_GROUP,
    MAX_ROOMS_PER_USER,
    ROOMS_SHOWN,
    WHO_NAMES_PER_LINE,
    WHO_NAMES_SHOWN,
)
from twisted_chat.core.commands import ALIASES as LINE_ALIASES
from twisted_chat.core.commands import HELP as LINE_HELP
from twisted_chat.core.errors import UnknownCommand
from twisted_chat.core.names import NICK_MAX, ROOM_MAX

#: Every command's summary, in ``/help`` order, and every alias.
HELP = {
    **LINE_HELP,
    **account_commands.ACCOUNT_HELP,
    **account_commands.OPERATOR_HELP,
}
ALIASES = {**LINE_ALIASES, **account_commands.ALIASES}


def _tables() -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """HELP and ALIASES, with the moderation commands while they are switched on."""
    if not room_commands.ENABLED:
        return HELP, ALIASES
    every = {
        **LINE_HELP,
        **account_commands.ACCOUNT_HELP,
        **room_commands.HELP,
        **account_commands.OPERATOR_HELP,
    }
    return every, {**ALIASES, **room_commands.ALIASES}


_BUDGET = (
    "Long replies count against a budget per address: ask for too many "
    "too fast and you get ! slow-down; wait a second and ask again."
)

#: The longer help of each command: arguments, limits, an example.
DETAILS: dict[str, tuple[str, ...]] = {
    "nick": (
        (
            f"NAME is 1 to {NICK_MAX} letters (any script), digits, _ or -, "
            "starting with a letter."
        ),
        (
            "Names that differ only in case, width or look-alike letters are one "
            "name (Alice, ALICE and a Cyrillic Аlice), so a taken name is taken "
            "in every spelling; you get ! nick-in-use and keep your name."
        ),
        "Example: /nick alice",
    ),
    "join": (
        (
            f"ROOM is # and 1 to {ROOM_MAX} letters, digits, _, - or . "
            "(the # is optional); a room that does not exist is created, and it "
            "goes away when its last member leaves."
        ),
        (
            "You see how many are there, the topic and the room's last messages; "
            "the room becomes your current room (where plain lines go)."
        ),
        (
            f"You may be in {MAX_ROOMS_PER_USER} rooms at once, and the people of "
            f"one address may have created {MAX_ROOMS_PER_GROUP} rooms that still "
            "exist (! too-many-rooms past either)."
        ),
        "/join a room you are in makes it current again.",
        "Example: /join #dev",
    ),
    "part": (
        (
            "Without ROOM you leave your current room; the first word is taken as "
            "the room when it starts with # or names a room you are in, the rest "
            "is your reason."
        ),
        (
            "The others see * NICK left #room (reason). Your current room becomes "
            "the one you joined last of those you are still in."
        ),
        "Example: /part #dev off to lunch",
    ),
    "rooms": (
        (
            f"Without PATTERN: at most the {ROOMS_SHOWN} busiest rooms, then how "
            "many more there are."
        ),
        (
            "With PATTERN: the rooms whose name contains it, compared as names are "
            "(case and look-alike letters do not matter); a leading # matches the "
            f"start of the name. At most {ROOMS_SHOWN} again."
        ),
        _BUDGET,
        (
            "Example: /rooms dev lists #dev, #devops and #webdev; /rooms #dev only "
            "#dev and #devops."
        ),
    ),
    "who": (
        (
            f"Names are in alphabetical order, {WHO_NAMES_PER_LINE} a line; a room "
            f"of more than {WHO_NAMES_SHOWN} shows the first {WHO_NAMES_SHOWN} and "
            "how many more there are."
        ),
        _BUDGET,
        "Example: /who #dev",
    ),
    "msg": (
        (
            "NICK sees [PM] <you> text; nobody else does. NICK is compared as "
            "names are (case does not matter)."
        ),
        (
            "/msg #room text speaks in a room you are in without making it your "
            "current room."
        ),
        "Example: /msg bob see you at three",
    ),
    "me": (
        "The others in your current room see [#room] * you text.",
        "Example: /me waves",
    ),
    "topic": (
        (
            "Without text: shows the topic and who set it. With text: everybody "
            "in the room sees the new topic, and so does whoever joins later."
        ),
        "Example: /topic release on friday",
    ),
    "history": (
        (
            f"N is 1 to {HISTORY_LIMIT}; without N you get as many as a /join "
            "shows. Each line carries its time: [#room 14:03] <nick> text."
        ),
        "It needs the server to keep history (it says so if it does not).",
        _BUDGET,
        "Example: /history 50",
    ),
    "ping": (
        (
            "The server answers * pong, or * pong TOKEN for /ping TOKEN, so a "
            "script can match the answer to its question."
        ),
        (
            "Over UDP a session ends after some minutes of silence; /ping now and "
            "then keeps it alive while you only listen."
        ),
        "Example: /ping 42",
    ),
    "help": (
        "/help COMMAND explains one command or alias; the / is optional.",
        "Example: /help join",
    ),
    "quit": (
        (
            "The others in your rooms see * NICK quit (reason), then the server "
            "says * Bye! and closes the connection."
        ),
        "Example: /quit see you tomorrow",
    ),
}


def aliases_of(name: str) -> list[str]:
    """The other names of command ``name``, in the order they are listed."""
    return [alias for alias, command in _tables()[1].items() if command == name]


def overview() -> list[bytes]:
    """``/help``: one line per command (aliases in brackets), then the rest."""
    reply = [lines.notice("Commands (type /help COMMAND for more):")]
    for name, (usage, what) in _tables()[0].items():
        others = aliases_of(name)
        names = ", ".join("/" + alias for alias in others)
        also = (
            f" ({'alias' if len(others) == 1 else 'aliases'} {names})" if others else ""
        )
        reply.append(lines.notice(f"{usage}: {what}{also}"))
    reply.append(
        lines.notice(
            "Any other line is a message to your current room; //text sends /text."
        )
    )
    return reply


def explain(topic: str) -> list[bytes]:
    """
    ``/help TOPIC``: the summary line, the longer help, the aliases.

    :raises UnknownCommand: when ``topic`` names no command and no alias.
    """
    every, aliases = _tables()
    name = aliases.get(topic, topic)
    entry = every.get(name)
    if entry is None:
        raise UnknownCommand(f"There is no command /{topic[:32]}; /help lists them.")
    usage, what = entry
    reply = []
    if name != topic:
        reply.append(lines.notice(f"/{topic} is an alias of /{name}."))
    reply.append(lines.notice(f"{usage}: {what}"))
    details = DETAILS.get(name) or account_commands.DETAILS.get(name, ())
    if room_commands.ENABLED:
        details = (*details, *room_commands.DETAILS.get(name, ()))
    reply.extend(lines.notice(f"  {text}") for text in details)
    others = aliases_of(name)
    if others:
        names = ", ".join("/" + alias for alias in others)
        reply.append(lines.notice(f"  Also works as {names}."))
    return reply
