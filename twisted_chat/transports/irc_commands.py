"""
What an IRC client's commands do in the chat, once it is registered.

Every command that changes something goes through the core as the line
protocol's command would (``JOIN #dev key`` is ``/join #dev key``), so that
IRC users meet the very same rules, limits and moderation as everyone
else; the core's direct answers are captured (:meth:`IrcConnection.run`)
and become IRC replies: an ``! code:`` error the numeric mainstream servers
send for it (:data:`ERRORS`), success the echo and numerics IRC clients
expect (``JOIN``, then the topic and ``NAMES``).  Queries (``NAMES``,
``WHO``, ``WHOIS``, ``LIST``, ``MODE #room``) read the chat's state
directly (:mod:`twisted_chat.transports.irc_replies`).  Text from IRC loses
its formatting codes and goes through the core's cleaning, once per
message, before anyone sees it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from twisted_chat.core.cleaning import clean_text
from twisted_chat.core.errors import ChatError
from twisted_chat.transports.irc_message import IrcMessage
from twisted_chat.transports.irc_moderation import IrcModeration
from twisted_chat.transports.irc_queries import (
    clean,
    key_of,
    nick_key,
)
from twisted_chat.transports.irc_text import ctcp_action, is_ctcp
from twisted_chat.transports.irc_wire import MAX_BODY_BYTES

if TYPE_CHECKING:
    from twisted_chat.core.room import Room

__all__ = ["IrcCommands"]

#: Bytes that send a PRIVMSG the general way: NUL, CTCP, formatting codes.
_SPECIAL = re.compile(b"[\x00-\x1f]")
#: Targets one PRIVMSG, JOIN or PART may name (ISUPPORT TARGMAX).
MAX_TARGETS: Final = 4


class IrcCommands(IrcModeration):
    """The registered-state commands of one IRC connection."""

    def handle(self, message: IrcMessage) -> None:
        """Act on one command (already parsed and bounded)."""
        command, params = message.command, message.params
        handler = getattr(self, "do_" + command.lower(), None)
        if handler is None:
            self.numeric("421", command, "Unknown command")
            return
        needed = _NEEDS.get(command, 0)
        if len(params) < needed:
            self.numeric("461", command, "Not enough parameters")
            return
        handler(params)

    # -- connection --------------------------------------------------------------

    def do_ping(self, params: tuple[str, ...]) -> None:
        if not params or not params[0]:
            self.numeric("409", "No origin specified")
            return
        token = params[0]
        server = self.conn.replies.server
        self.send(_line(server, "PONG", server, token))

    def do_pong(self, params: tuple[str, ...]) -> None:
        """Any line is a sign of life; the protocol notes it."""

    def do_quit(self, params: tuple[str, ...]) -> None:
        self.conn.quit(clean(params[0]) if params else "leaving")

    def do_nick(self, params: tuple[str, ...]) -> None:
        new = params[0]
        old = self.conn.replies.mask_of(self.conn.participant)

        def answered(answers: list[str]) -> None:
            if not self.fail("NICK", answers, new) and self.nick != old.split("!")[0]:
                self.send(f":{old} NICK {self.nick}\r\n".encode())

        answers = self.conn.run(f"/nick {new}")
        if answers or self.conn.server.cluster is None:
            answered(answers)
        else:  # --cluster: the other nodes are asked for the nick first
            self.conn.answer_later(answered)

    def do_away(self, params: tuple[str, ...]) -> None:
        text = clean(params[0]) if params and params[0] else ""
        self.conn.away = text[:200] or None
        if text:
            self.numeric("306", "You have been marked as being away")
        else:
            self.numeric("305", "You are no longer marked as being away")

    # -- rooms --------------------------------------------------------------------

    def do_join(self, params: tuple[str, ...]) -> None:
        if params[0] == "0":
            for room in list(self.conn.participant.rooms.values()):
                self.do_part((room.name.display,))
            return
        keys = params[1].split(",") if len(params) > 1 else []
        for index, channel in enumerate(params[0].split(",")[:MAX_TARGETS]):
            key = keys[index] if index < len(keys) else ""
            self._join(channel, key)

    def _join(self, channel: str, key: str) -> None:
        conn = self.conn
        participant = conn.participant
        before = set(participant.rooms)
        conn.hold_wire()  # the history replayed must follow the JOIN
        first = b""
        try:
            answers = conn.run(f"/join {channel} {key}".rstrip())
            if self.fail("JOIN", answers, channel):
                return
            joined = [room for k, room in participant.rooms.items() if k not in before]
            if joined:
                first = self._joined(joined[0])
        finally:
            conn.release_wire(first)

    def _joined(self, room: Room) -> bytes:
        """The JOIN echo, the topic and NAMES (the held history follows)."""
        conn = self.conn
        participant = conn.participant
        replies = conn.replies
        mask = replies.mask_of(participant)
        out = [f":{mask} JOIN {room.name.display}\r\n".encode()]
        if room.topic:
            out.extend(replies.topic(self.nick, room))
        caps = conn.caps
        out.extend(
            replies.names(
                self.nick, room, "multi-prefix" in caps, "userhost-in-names" in caps
            )
        )
        return b"".join(out)

    def do_part(self, params: tuple[str, ...]) -> None:
        reason = clean(params[1]) if len(params) > 1 else ""
        for channel in params[0].split(",")[:MAX_TARGETS]:
            room = self._room_of(channel)
            if room is None:
                self.numeric("442", channel, "You're not on that channel")
                continue
            mask = self.conn.replies.mask_of(self.conn.participant)
            answers = self.conn.run(f"/part {room.name.display} {reason}".rstrip())
            if not self.fail("PART", answers, channel):
                suffix = f" :{reason}" if reason else ""
                self.send(f":{mask} PART {room.name.display}{suffix}\r\n".encode())

    def do_topic(self, params: tuple[str, ...]) -> None:
        channel = params[0]
        room = self._room_of(channel)
        if len(params) == 1:
            found = room or self.conn.server.rooms.get(key_of(channel))
            if found is None:
                self.numeric("403", channel, "No such channel")
            else:
                self.send(*self.conn.replies.topic(self.nick, found))
            return
        if room is None:
            self.numeric("442", channel, "You're not on that channel")
            return
        text = clean(params[1])
        rules = room.rules
        participant = self.conn.participant
        allowed = rules is None or (
            rules.topic_refusal(
                participant, self.conn.server.operators.is_operator(participant)
            )
            is None
        )
        if text == room.topic and allowed:
            return  # nothing changes, nobody is told (as IRC servers do)
        answers = self._in(room, f"/topic {text}" if text else "/topic")
        self.fail("TOPIC", answers, channel)
        # The room's TOPIC line reaches this client with everyone's.

    # -- messages -----------------------------------------------------------------

    def do_privmsg(self, params: tuple[str, ...], *, notice: bool = False) -> None:
        if len(params) < 2 or not params[1]:
            if not notice:
                self.numeric("412", "No text to send")
            return
        text = params[1]
        action = ctcp_action(text)
        if action is None and is_ctcp(text):
            return  # CTCP VERSION, PING...: not relayed, not answered
        body = clean(action if action is not None else text)
        if not body:
            return
        for target in params[0].split(",")[:MAX_TARGETS]:
            self._message(target, body, action is not None, notice)

    def fast_privmsg(self, line: bytes) -> bool:
        """
        ``PRIVMSG #room :plain text`` said at once, the common line of all
        (False: anything else, for the general path): one room, no CTCP,
        no formatting codes, no tags; the same checks as :meth:`do_privmsg`.
        """
        if len(line) > MAX_BODY_BYTES or _SPECIAL.search(line) is not None:
            return False
        target, sep, raw = line[8:].partition(b" :")
        if not sep or b" " in target or b"," in target or not raw:
            return False
        room = self._room_of(target.decode("utf-8", "replace"))
        if room is None:
            return False
        body = clean_text(raw.decode("utf-8", "replace"))
        if not body:
            return True
        participant = self.conn.participant
        try:
            self.conn.server.speech.say(participant, room, body)
        except ChatError as problem:
            self.fail(
                "PRIVMSG", [f"! {problem.code}: {problem.text}"], room.name.display
            )
        return True

    def do_notice(self, params: tuple[str, ...]) -> None:
        self.do_privmsg(params, notice=True)

    def _message(self, target: str, body: str, action: bool, notice: bool) -> None:
        conn = self.conn
        speech = conn.server.speech
        participant = conn.participant
        try:
            if target.startswith("#"):
                room = self._room_of(target)
                if room is None:
                    if not notice:
                        self.numeric("404", target, "Cannot send to channel")
                    return
                if action:
                    speech.act(participant, room, body)
                else:
                    speech.say(participant, room, body, notice=notice)
            else:
                if action:
                    body = f"* {participant.nick.display} {body}"
                speech.message(participant, target, body)
                recipient = conn.server.participants.get(nick_key(target))
                fmt = conn.wire_format
                if fmt is not None and fmt.echo and recipient is not None:
                    if conn.server.outbox.busy:  # its earlier lines first
                        conn.server.outbox.catch_up(participant)
                    self.send(fmt.render_private(participant, recipient, body))
                away = getattr(recipient.client, "away", None) if recipient else None
                if away and not notice:
                    self.numeric("301", target, away)
        except ChatError as problem:
            if not notice:
                self.fail("PRIVMSG", [f"! {problem.code}: {problem.text}"], target)


#: Parameters each command needs at least (461 otherwise).
_NEEDS: Final = {
    "NICK": 1, "JOIN": 1, "PART": 1, "TOPIC": 1, "KICK": 2, "INVITE": 2,
    "MODE": 1, "OPER": 2, "KILL": 1, "PRIVMSG": 1, "WHOIS": 1, "USERHOST": 1,
    "ISON": 1,
}  # fmt: skip


def _line(source: str, verb: str, middle: str, trailing: str) -> bytes:
    return f":{source} {verb} {middle} :{trailing}\r\n".encode()
