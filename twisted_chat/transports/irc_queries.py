"""
The IRC queries: ``NAMES``, ``LIST``, ``WHO``, ``WHOIS``, ``ISON``,
``USERHOST``, which read the chat's state and change nothing, and what
every IRC command handler shares (the connection, sending, numerics).

Apart from :mod:`twisted_chat.transports.irc_commands` (what changes the
chat) to keep each module about one kind of command; the replies
themselves are :mod:`twisted_chat.transports.irc_replies`'.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from twisted_chat.core.cleaning import clean_text
from twisted_chat.core.errors import ChatError
from twisted_chat.core.names import RoomName, name_key
from twisted_chat.transports.irc_registration import motd_lines
from twisted_chat.transports.irc_replies import WHO_SHOWN, Replies
from twisted_chat.transports.irc_text import strip_formatting
from twisted_chat.transports.irc_wire import format as format_message

if TYPE_CHECKING:
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.room import Participant, Room
    from twisted_chat.transports.irc_format import IrcFormat

__all__ = ["ERRORS", "IrcConnection", "IrcQueries", "clean", "key_of", "nick_key"]

#: Targets one query may name.
MAX_QUERY_TARGETS = 4


class IrcConnection(Protocol):
    """What the commands need of one registered IRC connection."""

    server: ChatServer
    participant: Participant
    replies: Replies
    caps: set[str]
    away: str | None
    wire_format: IrcFormat | None

    def send_wire(self, data: bytes) -> None: ...

    def run(self, line: str) -> list[str]:
        """The core's direct answers to ``line`` (a line-protocol command)."""
        ...

    def quit(self, reason: str) -> None: ...

    def hold_wire(self) -> None: ...

    def answer_later(self, answered: Callable[[list[str]], None]) -> None: ...

    def release_wire(self, first: bytes = b"") -> None: ...


#: A core error code, by the IRC command that met it, as a numeric (the
#: Modern IRC document's names); ``*`` is any command.
ERRORS: Final[dict[tuple[str, str], str]] = {
    ("*", "nick-in-use"): "433",
    ("*", "nick-registered"): "433",
    ("NICK", "invalid-name"): "432",
    ("*", "invalid-name"): "479",
    ("*", "no-such-nick"): "401",
    ("*", "no-such-room"): "403",
    ("*", "not-in-room"): "442",
    ("*", "no-room"): "442",
    ("*", "too-many-rooms"): "405",
    ("*", "not-operator"): "482",
    ("*", "not-server-operator"): "481",
    ("*", "oper-failed"): "464",
    ("*", "banned"): "474",
    ("*", "invite-only"): "473",
    ("*", "bad-key"): "475",
    ("*", "room-full"): "471",
    ("*", "muted"): "404",
    ("*", "moderated"): "404",
    ("*", "usage"): "461",
}


def clean(text: str) -> str:
    """IRC text as the chat takes it: no formatting codes, cleaned."""
    return clean_text(strip_formatting(text))


def key_of(channel: str) -> str:
    """The room key ``channel`` names ("" for no valid room name)."""
    try:
        return RoomName.parse(channel).key
    except ChatError:
        return ""


def nick_key(nick: str) -> str:
    """The key a nickname is looked up by."""
    return name_key(nick)


class IrcQueries:
    """The queries of one registered IRC connection, and the shared helpers."""

    def __init__(self, conn: IrcConnection) -> None:
        self.conn = conn

    @property
    def nick(self) -> str:
        return self.conn.participant.nick.display

    def send(self, *data: bytes) -> None:
        self.conn.send_wire(b"".join(data))

    def numeric(self, code: str, *params: str) -> None:
        self.send(self.conn.replies.numeric(self.nick, code, *params))

    def fail(self, command: str, answers: list[str], target: str) -> bool:
        """Send the numeric for an ``! code:`` answer; whether there was one."""
        for answer in answers:
            if answer.startswith("! "):
                code, _, text = answer[2:].partition(": ")
                numeric = ERRORS.get((command, code)) or ERRORS.get(("*", code))
                if code == "not-in-room" and command in ("MODE", "KICK"):
                    who = text.split(" ", 1)[0]
                    self.numeric("441", who, target, "They aren't on that channel")
                elif code == "usage" and text.endswith(" already."):
                    who = text.split(" ", 1)[0]
                    self.numeric("443", who, target, "is already on channel")
                elif numeric == "461":
                    self.numeric("461", command, text)
                else:
                    self.numeric(numeric or "400", target, text)
                return True
        return False

    def _room_of(self, channel: str) -> Room | None:
        """The room ``channel`` names, if the client is in it."""
        rooms = self.conn.participant.rooms
        for room in rooms.values():  # at most 50; the spelling is usually exact
            if room.name.display == channel:
                return room
        return rooms.get(key_of(channel))

    def _in(self, room: Room, line: str) -> list[str]:
        """Run a command that acts on the current room, in ``room``."""
        participant = self.conn.participant
        current = participant.current
        participant.current = room
        try:
            return self.conn.run(line)
        finally:
            if (
                participant.current is room
                and current is not None
                and (current.name.key in participant.rooms)
            ):
                participant.current = current

    def do_names(self, params: tuple[str, ...]) -> None:
        multi = "multi-prefix" in self.conn.caps
        for channel in (params[0].split(",") if params else [])[:MAX_QUERY_TARGETS]:
            room = self.conn.server.rooms.get(key_of(channel))
            if room is None:
                self.numeric("366", channel, "End of /NAMES list")
            else:
                userhost = "userhost-in-names" in self.conn.caps
                self.send(*self.conn.replies.names(self.nick, room, multi, userhost))
        if not params:
            self.numeric("366", "*", "End of /NAMES list")

    def do_list(self, params: tuple[str, ...]) -> None:  # noqa: ARG002
        self.send(
            *self.conn.replies.room_list(self.nick, self.conn.server.rooms.values())
        )

    def do_who(self, params: tuple[str, ...]) -> None:
        mask = params[0] if params else "*"
        server = self.conn.server
        replies = self.conn.replies
        if mask.startswith("#"):
            room = server.rooms.get(key_of(mask))
            if room is None:
                self.numeric("315", mask, "End of /WHO list")
            else:
                self.send(
                    *replies.who_room(self.nick, room, "multi-prefix" in self.conn.caps)
                )
            return
        if "*" in mask or "?" in mask:  # WHO *, WHO coolni*: by nick, bounded
            pattern = re.compile(fnmatch.translate(mask.casefold()))
            found = [
                person
                for person in server.participants.values()
                if pattern.fullmatch(person.nick.display.casefold())
            ][:WHO_SHOWN]
            out = [
                line
                for person in found
                for line in replies.who_person(self.nick, mask, person)[:-1]
            ]
            out.append(replies.numeric(self.nick, "315", mask, "End of /WHO list"))
            self.send(*out)
            return
        person = server.participants.get(nick_key(mask))
        self.send(*replies.who_person(self.nick, mask, person))

    def do_whois(self, params: tuple[str, ...]) -> None:
        target = params[-1].split(",")[0]
        server = self.conn.server
        person = server.participants.get(nick_key(target))
        if person is None:
            self.numeric("401", target, "No such nick/channel")
            self.numeric("318", target, "End of /WHOIS list")
            return
        account = person.nick.display if person.account == person.nick.key else None
        if person.account is not None and account is None:
            account = person.account
        me = self.conn.participant
        self.send(
            *self.conn.replies.whois(
                self.nick,
                person,
                server.seconds(),
                account_name=account,
                show_address=server.operators.is_operator(me),
            )
        )

    def do_ison(self, params: tuple[str, ...]) -> None:
        names = " ".join(params).split()[:50]
        on = [
            person.nick.display
            for name in names
            if (person := self.conn.server.participants.get(nick_key(name)))
        ]
        self.numeric("303", " ".join(on))

    def do_userhost(self, params: tuple[str, ...]) -> None:
        replies = self.conn.replies
        found = []
        for name in params[:5]:
            person = self.conn.server.participants.get(nick_key(name))
            if person is not None:
                oper = "*" if person.oper is not None else ""
                away = "-" if getattr(person.client, "away", None) else "+"
                host = replies.host_of(person)
                found.append(
                    f"{person.nick.display}{oper}={away}~{person.nick.display}@{host}"
                )
        self.numeric("302", " ".join(found))

    def do_motd(self, params: tuple[str, ...]) -> None:  # noqa: ARG002
        server = self.conn.replies.server
        motd = self.conn.server.settings.motd
        self.send(*(format_message(m) for m in motd_lines(server, self.nick, motd)))

    def do_lusers(self, params: tuple[str, ...]) -> None:  # noqa: ARG002
        chat = self.conn.server
        users = len(chat.participants)
        opers = sum(1 for person in chat.participants.values() if person.oper)
        self.numeric("251", f"There are {users} users and 0 invisible on 1 servers")
        if opers:
            self.numeric("252", str(opers), "operator(s) online")
        self.numeric("254", str(len(chat.rooms)), "channels formed")
        self.numeric("255", f"I have {users} clients and 0 servers")
        self.numeric("265", str(users), str(users), f"Current local users {users}")
        self.numeric("266", str(users), str(users), f"Current global users {users}")
