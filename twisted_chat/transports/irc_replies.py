"""
The IRC numerics that describe the chat: names, topics, who, whois, the
channel list, channel modes and ban lists (Modern IRC client protocol,
"Numerics"), built from the core's rooms and people.

Apart from the command handling (:mod:`twisted_chat.transports.irc_commands`)
because these are pure functions of the chat's state, each reply bounded
as the line protocol's are: at most :data:`LIST_SHOWN` rooms in a list,
:data:`NAMES_SHOWN` names, :data:`WHO_SHOWN` people, the core's limits on
bans.  Server operators see addresses in ``WHOIS``; nobody else does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from twisted_chat.transports.irc_format import IrcFormat, ban_mask
from twisted_chat.transports.irc_message import IrcMessage
from twisted_chat.transports.irc_wire import format as format_message

if TYPE_CHECKING:
    from twisted_chat.core.room import Participant, Room

__all__ = ["LIST_SHOWN", "NAMES_SHOWN", "WHO_SHOWN", "Replies", "user_of"]

#: Rooms one ``LIST`` shows (the busiest first), as ``/rooms`` bounds.
LIST_SHOWN: Final = 100
#: Names one ``NAMES`` shows; ``/who`` shows 200.
NAMES_SHOWN: Final = 1000
#: People one ``WHO`` shows.
WHO_SHOWN: Final = 200
#: Bytes of names in one 353 line, leaving room for its head.
_NAMES_BYTES: Final = 400


def user_of(participant: Participant) -> str:
    """The user name IRC shows: the IRC client's, or the nick of others."""
    user: str = getattr(participant.client, "irc_user", "") or participant.nick.display
    return user


def realname_of(participant: Participant) -> str:
    realname: str = getattr(participant.client, "irc_realname", "") or (
        f"{participant.nick.display} ({participant.transport})"
    )
    return realname


def prefix_of(room: Room, member: Participant, multi: bool) -> str:
    """``@``, ``+``, both with ``multi-prefix``, or ""."""
    rules = room.rules
    if rules is None:
        return ""
    op = rules.is_operator(member)
    voiced = member in rules.voiced
    if multi:
        return ("@" if op else "") + ("+" if voiced else "")
    return "@" if op else "+" if voiced else ""


class Replies:
    """
    Numerics from this server to one client called ``nick``.

    :param server: the server's name, every numeric's source.
    :param fmt: how people are shown (the cloaks).
    """

    def __init__(self, server: str, fmt: IrcFormat) -> None:
        self.server = server
        self.fmt = fmt

    def numeric(self, nick: str, code: str, *params: str) -> bytes:
        return format_message(IrcMessage(code, (nick, *params), self.server))

    def host_of(self, participant: Participant) -> str:
        return self.fmt.mask(participant, participant.nick.display).rsplit("@", 1)[1]

    def mask_of(self, participant: Participant) -> str:
        return self.fmt.mask(participant, participant.nick.display)

    def names(
        self, nick: str, room: Room, multi: bool, userhost: bool = False
    ) -> list[bytes]:
        """353 lines of at most 400 bytes of names (masks with
        ``userhost-in-names``), then 366."""
        channel = room.name.display
        out: list[bytes] = []
        batch: list[str] = []
        size = 0
        for shown, member in enumerate(room.members):
            if shown >= NAMES_SHOWN:
                break
            shown_as = self.mask_of(member) if userhost else member.nick.display
            name = prefix_of(room, member, multi) + shown_as
            if batch and size + len(name.encode()) + 1 > _NAMES_BYTES:
                out.append(self.numeric(nick, "353", "=", channel, " ".join(batch)))
                batch, size = [], 0
            batch.append(name)
            size += len(name.encode()) + 1
        if batch:
            out.append(self.numeric(nick, "353", "=", channel, " ".join(batch)))
        out.append(self.numeric(nick, "366", channel, "End of /NAMES list"))
        return out

    def topic(self, nick: str, room: Room) -> list[bytes]:
        """332 and 333, or 331 for no topic."""
        channel = room.name.display
        if not room.topic:
            return [self.numeric(nick, "331", channel, "No topic is set")]
        return [
            self.numeric(nick, "332", channel, room.topic),
            self.numeric(
                nick,
                "333",
                channel,
                room.topic_by or self.server,
                str(int(room.topic_at)),
            ),
        ]

    def who_line(
        self, nick: str, channel: str, person: Participant, flag: str
    ) -> bytes:
        away = "G" if getattr(person.client, "away", None) else "H"
        oper = "*" if person.oper is not None else ""
        return self.numeric(
            nick,
            "352",
            channel,
            "~" + user_of(person),
            self.host_of(person),
            self.server,
            person.nick.display,
            away + oper + flag,
            f"0 {realname_of(person)}",
        )

    def who_room(self, nick: str, room: Room, multi: bool) -> list[bytes]:
        channel = room.name.display
        out = [
            self.who_line(nick, channel, member, prefix_of(room, member, multi))
            for shown, member in enumerate(room.members)
            if shown < WHO_SHOWN
        ]
        out.append(self.numeric(nick, "315", channel, "End of /WHO list"))
        return out

    def who_person(
        self, nick: str, mask: str, person: Participant | None
    ) -> list[bytes]:
        out = []
        if person is not None:
            room = person.current
            channel = room.name.display if room is not None else "*"
            flag = prefix_of(room, person, False) if room is not None else ""
            out.append(self.who_line(nick, channel, person, flag))
        out.append(self.numeric(nick, "315", mask, "End of /WHO list"))
        return out

    def whois(
        self,
        nick: str,
        person: Participant,
        now: float,
        *,
        account_name: str | None,
        show_address: bool,
    ) -> list[bytes]:
        """311, 319, 312, 313, 330, 338, 301, 317, 318."""
        target = person.nick.display
        out = [
            self.numeric(
                nick,
                "311",
                target,
                "~" + user_of(person),
                self.host_of(person),
                "*",
                realname_of(person),
            )
        ]
        rooms = [
            prefix_of(room, person, False) + room.name.display
            for room in list(person.rooms.values())[:20]
        ]
        if rooms:
            out.append(self.numeric(nick, "319", target, " ".join(rooms)))
        out.append(self.numeric(nick, "312", target, self.server, "twisted-chat"))
        if person.oper is not None:
            out.append(self.numeric(nick, "313", target, "is a server operator"))
        if account_name is not None:
            out.append(
                self.numeric(nick, "330", target, account_name, "is logged in as")
            )
        if show_address and person.host:
            out.append(
                self.numeric(nick, "338", target, person.host, "actually using host")
            )
        away = getattr(person.client, "away", None)
        if away:
            out.append(self.numeric(nick, "301", target, away))
        idle = max(0, int(now - (person.last_active or now)))
        signon = str(int(getattr(person.client, "signon", 0) or now))
        out.append(
            self.numeric(
                nick, "317", target, str(idle), signon, "seconds idle, signon time"
            )
        )
        out.append(self.numeric(nick, "318", target, "End of /WHOIS list"))
        return out

    def room_list(self, nick: str, rooms: Iterable[Room]) -> list[bytes]:
        """321, 322 for the busiest rooms (at most LIST_SHOWN), 323."""
        busiest = sorted(rooms, key=lambda room: -len(room.members))[:LIST_SHOWN]
        out = [self.numeric(nick, "321", "Channel", "Users  Name")]
        out.extend(
            self.numeric(
                nick, "322", room.name.display, str(len(room.members)), room.topic
            )
            for room in busiest
        )
        out.append(self.numeric(nick, "323", "End of /LIST"))
        return out

    def channel_modes(self, nick: str, room: Room, show_key: bool) -> list[bytes]:
        """324: ``+imtlk`` as the room's settings have it."""
        settings = room.rules.settings if room.rules is not None else None
        modes, args = "+n", []  # n: only members speak, always
        if settings is not None:
            modes += "i" if settings.invite_only else ""
            modes += "m" if settings.moderated else ""
            modes += "t" if settings.topic_lock else ""
            if settings.limit is not None:
                modes += "l"
                args.append(str(settings.limit))
            if settings.key is not None:
                modes += "k"
                args.append(settings.key if show_key else "*")
        if not room.created_at:
            room.created_at = time.time()
        created = str(int(room.created_at))
        return [
            self.numeric(nick, "324", room.name.display, modes, *args),
            self.numeric(nick, "329", room.name.display, created),
        ]

    def ban_list(self, nick: str, room: Room) -> list[bytes]:
        """367 per ban (as the room shows them), 368."""
        channel = room.name.display
        bans = room.rules.bans.bans()[-100:] if room.rules is not None else []
        out = [
            self.numeric(
                nick,
                "367",
                channel,
                ban_mask(ban.pattern.text),
                ban.set_by,
                str(int(ban.set_at)),
            )
            for ban in bans
        ]
        out.append(self.numeric(nick, "368", channel, "End of channel ban list"))
        return out
