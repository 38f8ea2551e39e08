"""
Room events as IRC lines: the IRC front-end's
:class:`~twisted_chat.core.events.WireFormat` (issue 15).

One object per kind of IRC client (with or without ``server-time`` tags,
with or without ``echo-message``), shared by all such clients, so that a
room's turn is rendered once per kind and the same bytes go to each
(:class:`~twisted_chat.core.foreign.ForeignMembers`).  People appear as
``nick!~user@CLOAK``: the user name an IRC client gave at registration, or
``~nick`` for line and UDP users, and a cloak of their address made with
the server's secret, never the address itself.  A line longer than IRC's
512 bytes is split into several messages on character boundaries, so a
long line from a TCP user reaches IRC whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from twisted_chat.core.events import (
    Acted,
    Joined,
    Kicked,
    Left,
    Moderated,
    Quit,
    Renamed,
    RoomEvent,
    RoomNotice,
    Said,
    TopicSet,
)
from twisted_chat.transports.irc_text import cloak

if TYPE_CHECKING:
    from twisted_chat.core.records import StoredMessage
    from twisted_chat.core.room import Participant, Room
    from twisted_chat.core.room_records import Change

__all__ = ["MAX_LINE", "IrcFormat", "split_text"]

#: An IRC line without tags, CRLF included (Modern IRC, "Message format").
MAX_LINE = 512
#: Cloaks remembered (each is an HMAC); bounded by the clients in practice.
CLOAKS_CACHED = 20_000


@lru_cache(maxsize=CLOAKS_CACHED)
def _cloak(secret: bytes, host: str) -> str:
    return cloak(secret, host)


#: The changes IRC has a mode for: kind -> (sign and letter, argument?).
_MODES: Final = {
    "op": "+o",
    "deop": "-o",
    "auto-op": "+o",
    "voice": "+v",
    "devoice": "-v",
    "ban": "+b",
    "unban": "-b",
    "ban-ended": "-b",
}
_FLAG_MODES: Final = {"moderated": "m", "invite-only": "i", "topic-lock": "t"}


def ban_mask(text: str) -> str:
    """
    A room ban as IRC shows it: ``NICK!*@*`` for a guest banned by nick (the
    address is not shown), ``$a:NAME`` for an account, ``*!*@BLOCK`` else.
    """
    if text.endswith(" (by address)"):
        return text.removesuffix(" (by address)") + "!*@*"
    if text.startswith("account:"):
        return "$a:" + text.removeprefix("account:")
    return "*!*@" + text


def mode_of(change: Change) -> str | None:
    """``+o alice``, ``+l 20``, ``-k *``...: the MODE of ``change``, if any."""
    kind, target, value = change.kind, change.target, change.value
    if kind in _MODES:
        argument = ban_mask(target) if "b" in _MODES[kind] else target
        return f"{_MODES[kind]} {argument}"
    if kind != "set":
        return None
    if target in _FLAG_MODES:
        return ("+" if value == "on" else "-") + _FLAG_MODES[target]
    if target == "limit":
        return "-l" if value == "off" else f"+l {value}"
    if target == "key":
        return "-k *" if value == "off" else "+k *"
    return None


def split_text(text: str, room_left: int) -> list[bytes]:
    """
    ``text`` in pieces of at most ``room_left`` bytes (at least 4), cut
    between characters (at a space when one is near the end).
    """
    room_left = max(4, room_left)
    data = text.encode("utf-8")
    if len(data) <= room_left:
        return [data]
    pieces = []
    while len(data) > room_left:
        cut = room_left
        while cut > 0 and (data[cut] & 0xC0) == 0x80:  # inside a character
            cut -= 1
        space = data.rfind(b" ", max(0, cut - 40), cut)
        if space > 0:
            cut = space + 1
        pieces.append(data[:cut])
        data = data[cut:]
    if data:
        pieces.append(data)
    return pieces


class IrcFormat:
    """
    How one kind of IRC client is sent a room's events.

    :param server: the server's name, the source of its own messages.
    :param secret: the cloak secret.
    :param tags: whether the client asked for ``server-time``.
    :param echo: whether it asked for ``echo-message``.
    :param clock: the wall clock, for ``server-time`` (``time.time``).
    """

    def __init__(
        self,
        server: str,
        secret: bytes,
        *,
        tags: bool = False,
        echo: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server = server
        self._secret = secret
        self.tags = tags
        self.echo = echo
        self._clock = clock

    def cloak_of(self, host: str) -> str:
        """The cloak of an address (or of a transport, for a local client)."""
        return _cloak(self._secret, host)

    def mask(self, participant: Participant, nick: str) -> str:
        """``nick!~user@cloak`` for ``participant``, as IRC users see them."""
        user = getattr(participant.client, "irc_user", None) or nick
        host = participant.host or participant.transport
        return f"{nick}!~{user}@{_cloak(self._secret, host)}"

    def render(
        self, room: Room, events: Sequence[tuple[RoomEvent, Participant | None]]
    ) -> bytes:
        """The turn's events in ``room`` as IRC lines (one rendering for all)."""
        return b"".join(self.render_each(room, events))

    def render_each(
        self, room: Room, events: Sequence[tuple[RoomEvent, Participant | None]]
    ) -> list[bytes]:
        """Each event's lines, apart (the fan-out joins a sender's share)."""
        channel = room.name.display
        prefix = self._tag_prefix()
        out: list[bytes] = []
        # A plain message is most of a turn: its head made once per speaker
        # and turn, the text joined to it (what _lines does, minus the rest).
        heads: dict[tuple[Participant, str], bytes] = {}
        for event, _ in events:
            if type(event) is Said and not event.notice:
                key = (event.who, event.nick)
                head = heads.get(key)
                if head is None:
                    source = self.mask(event.who, event.nick)
                    head = heads[key] = f":{source} PRIVMSG {channel} :".encode()
                data = event.text.encode()
                if len(head) + len(data) <= MAX_LINE - 2:
                    out.append(prefix + head + data + b"\r\n")
                    continue
            lines = self._lines(channel, event)
            if prefix:
                lines = [prefix + line for line in lines]
            out.append(b"".join(lines))
        return out

    def render_private(
        self, sender: Participant, recipient: Participant, text: str
    ) -> bytes:
        """A private message as ``PRIVMSG recipient :text``."""
        source = self.mask(sender, sender.nick.display)
        lines = self._privmsg(source, recipient.nick.display, text)
        prefix = self._tag_prefix()
        return b"".join(prefix + line for line in lines)

    def render_history(self, room: Room, messages: Sequence[StoredMessage]) -> bytes:
        """
        Replayed messages as ``PRIVMSG`` lines from ``nick!~nick@history``, with
        ``server-time`` tags of when they were said, or the time in the text.
        """
        channel = room.name.display
        out: list[bytes] = []
        for message in messages:
            source = f"{message.sender}!~{message.sender}@history"
            text = message.text
            if not self.tags:
                text = time.strftime("[%H:%M] ", time.gmtime(message.at)) + text
            lines = (
                self._action(source, channel, text)
                if message.action
                else self._privmsg(source, channel, text)
            )
            if self.tags:
                prefix = self._tag_prefix(message.at)
                lines = [prefix + line for line in lines]
            out.extend(lines)
        return b"".join(out)

    def _tag_prefix(self, at: float | None = None) -> bytes:
        if not self.tags:
            return b""
        now = self._clock() if at is None else at
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        return f"@time={stamp}.{int(now * 1000) % 1000:03d}Z ".encode()

    def _privmsg(
        self, source: str, target: str, text: str, verb: str = "PRIVMSG"
    ) -> list[bytes]:
        head = f":{source} {verb} {target} :".encode()
        left = MAX_LINE - len(head) - 2
        return [head + piece + b"\r\n" for piece in split_text(text, left)]

    def _action(self, source: str, target: str, text: str) -> list[bytes]:
        head = f":{source} PRIVMSG {target} :\x01ACTION ".encode()
        left = MAX_LINE - len(head) - 3
        return [head + piece + b"\x01\r\n" for piece in split_text(text, left)]

    def _lines(self, channel: str, event: RoomEvent) -> list[bytes]:
        match event:
            case Said(who, nick, text, notice):
                verb = "NOTICE" if notice else "PRIVMSG"
                return self._privmsg(self.mask(who, nick), channel, text, verb)
            case Acted(who, nick, text):
                return self._action(self.mask(who, nick), channel, text)
            case Joined(who, nick):
                return [f":{self.mask(who, nick)} JOIN {channel}\r\n".encode()]
            case Left(who, nick, reason):
                return [_line(self.mask(who, nick), "PART", channel, reason)]
            case Kicked(who, nick, by, by_nick, reason):
                source = self.server if by is None else self.mask(by, by_nick)
                return [_line(source, "KICK", f"{channel} {nick}", reason or by_nick)]
            case Quit(who, nick, reason):
                return [_line(self.mask(who, nick), "QUIT", "", reason)]
            case Renamed(who, nick, new):
                return [f":{self.mask(who, nick)} NICK {new}\r\n".encode()]
            case TopicSet(who, nick, text):
                return [_line(self.mask(who, nick), "TOPIC", channel, text)]
            case Moderated(change, by, by_nick, text):
                if change.kind == "invite":
                    return []  # IRC tells the invited only (no invite-notify)
                mode = mode_of(change)
                if mode is None:
                    return self._privmsg(self.server, channel, text, "NOTICE")
                source = self.server if by is None else self.mask(by, by_nick)
                return [f":{source} MODE {channel} {mode}\r\n".encode()]
            case RoomNotice(text):
                return self._privmsg(self.server, channel, text, "NOTICE")


def _line(source: str, verb: str, middle: str, trailing: str) -> bytes:
    """``:source VERB middle :trailing``, cut to :data:`MAX_LINE` bytes."""
    head = f":{source} {verb} {middle} :".replace("  ", " ").encode()
    left = MAX_LINE - len(head) - 2
    return head + split_text(trailing, left)[0] + b"\r\n"
