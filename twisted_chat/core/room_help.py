"""
What ``/help`` says of the room moderation commands, and the limits it quotes.

Apart from :mod:`twisted_chat.core.room_commands` so that the grammar stays
short enough to read; the usage errors there quote these lines, so the help
and the errors cannot drift apart.  :mod:`twisted_chat.core.help` merges them
while :data:`twisted_chat.core.room_commands.ENABLED` is on.
"""

from __future__ import annotations

from typing import Final

from .durations import MAX_DURATION
from .room_records import KEY_MAX, LIMIT_MAX

_OPS = "(room operators)"

#: ``(usage, one-line explanation)``, in ``/help`` order, as ``commands.HELP``.
#: ``join`` replaces the line commands' entry (its place in the list stays).
HELP: dict[str, tuple[str, str]] = {
    "join": (
        "/join ROOM [KEY]",
        "join a room (created on first join) and make it current; KEY if it has one",
    ),
    "op": ("/op NICK", f"{_OPS} make NICK an operator of the current room"),
    "deop": ("/deop NICK", f"{_OPS} take NICK's operator status away"),
    "voice": ("/voice NICK", f"{_OPS} let NICK speak in a moderated room"),
    "devoice": ("/devoice NICK", f"{_OPS} take NICK's voice away"),
    "kick": ("/kick NICK [reason]", f"{_OPS} remove NICK from the current room"),
    "ban": (
        "/ban PATTERN [DURATION] [reason]",
        f"{_OPS} keep a nick, account:NAME, an address or a block out of the room",
    ),
    "unban": ("/unban PATTERN", f"{_OPS} lift a ban of the current room"),
    "bans": ("/bans", f"{_OPS} list the bans of the current room"),
    "mute": ("/mute NICK [DURATION]", f"{_OPS} NICK stays but may not speak"),
    "unmute": ("/unmute NICK", f"{_OPS} let NICK speak again"),
    "invite": ("/invite NICK", f"{_OPS} let NICK join an invite-only room"),
    "room": (
        "/room [SETTING VALUE]",
        "show the current room's settings; operators change them",
    ),
}

#: The usage of each ``/room`` form, for its usage error and ``/help room``.
ROOM_USAGE: Final = {
    "moderated": "/room moderated on|off",
    "invite-only": "/room invite-only on|off",
    "topic-lock": "/room topic-lock on|off",
    "limit": f"/room limit N|off, where N is 1 to {LIMIT_MAX}",
    "key": f"/room key KEY|off, where KEY is one word of at most {KEY_MAX} characters",
    "register": "/room register",
    "drop": "/room drop",
}

#: What DURATION is, for the help and the usage errors of /ban and /mute.
DURATION_HELP: Final = (
    "DURATION is a number and s, m, h, d or w, or a sum (30m, 12h, 7d, 1h30m), "
    f"at most {MAX_DURATION // 86_400}d"
)

#: The longer ``/help`` of each (see :data:`twisted_chat.core.help.DETAILS`);
#: ``join``'s lines follow the line commands' own.
DETAILS: dict[str, tuple[str, ...]] = {
    "join": (
        (
            "A room with a key (/room key) needs it: /join #room KEY, or "
            "! bad-key. A banned person gets ! banned, an invite-only room "
            "! invite-only without an /invite, a full one ! room-full."
        ),
        "Example with a key: /join #staff blue-door",
    ),
    "op": (
        (
            "Operators (@nick in /who) kick, ban, mute, invite and change the "
            "room's settings. Whoever creates a room is its operator; server "
            "operators are operators in every room."
        ),
        "Example: /op alice",
    ),
    "deop": (
        "NICK stays in the room, without the @ in /who.",
        "Example: /deop alice",
    ),
    "voice": (
        (
            "In a moderated room (/room moderated on) only operators and voiced "
            "members (+nick in /who) speak; the others get ! moderated."
        ),
        "Example: /voice bob",
    ),
    "devoice": (
        "In a moderated room NICK's lines are then refused with ! moderated.",
        "Example: /devoice bob",
    ),
    "kick": (
        (
            "The room sees * NICK was kicked from #room by OP (reason); NICK "
            "may join again (/ban keeps them out)."
        ),
        "Example: /kick bob calm down",
    ),
    "ban": (
        (
            "PATTERN is a nick (their account if they are logged in, else their "
            "address), account:NAME, an address (203.0.113.7) or a block "
            "(203.0.113.0/24, 2001:db8::/48). Matching members are kicked."
        ),
        f"{DURATION_HELP}; without it the ban lasts until /unban.",
        "Example: /ban bob 1d spamming",
    ),
    "unban": (
        "PATTERN as /bans shows it; a nick lifts the ban on their account or address.",
        "Example: /unban account:bob",
    ),
    "bans": (
        "Each ban with who set it, why, and how long it has left.",
        "Example: /bans",
    ),
    "mute": (
        (
            "NICK stays in the room and reads it, but what they say is refused "
            "with ! muted."
        ),
        f"{DURATION_HELP}; without it the mute lasts until /unmute.",
        "Example: /mute bob 10m",
    ),
    "unmute": (
        "Lifts a mute before its DURATION is over, or one without a duration.",
        "Example: /unmute bob",
    ),
    "invite": (
        (
            "NICK is told, and may then join the current room while it is "
            "invite-only (/room invite-only on)."
        ),
        "Example: /invite carol",
    ),
    "room": (
        "/room alone shows the settings, the operators and the founder.",
        (
            "Operators: /room moderated on|off (only operators and voiced "
            "members speak), /room invite-only on|off, /room topic-lock on|off "
            "(only operators set the topic)."
        ),
        (
            f"/room limit N|off (at most N members, 1 to {LIMIT_MAX}), /room key "
            f"KEY|off (joining needs /join #room KEY; one word of at most "
            f"{KEY_MAX} characters, not starting with #)."
        ),
        (
            "/room register (a logged-in operator): the room, its topic, settings, "
            "bans and operators survive an empty room and a restart, and your "
            "account is its founder. /room drop (the founder) undoes it."
        ),
        "Example: /room moderated on",
    ),
}

#: Other names for these commands, as IRC networks spell them.
ALIASES: dict[str, str] = {
    "quiet": "mute",
    "unquiet": "unmute",
    "banlist": "bans",
}
