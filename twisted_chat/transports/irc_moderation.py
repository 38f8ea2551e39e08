"""
IRC's moderation commands: ``KICK``, ``INVITE``, ``MODE`` (channel modes as
the room moderation commands they stand for, ban masks as ``/ban`` takes
them), and the server operators' ``OPER`` and ``KILL``.

Apart from :mod:`twisted_chat.transports.irc_commands` (membership and
messages) to keep each module about one kind of command.  Everything goes
through the core's own commands, so an IRC operator meets the same rules as
a line user's ``/kick`` or ``/ban``.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Final

from twisted_chat.transports.irc_modes import mode_lines
from twisted_chat.transports.irc_queries import IrcQueries, clean, key_of, nick_key

__all__ = ["MASK_MATCHES_MAX", "IrcModeration"]

#: People one wildcard ban mask may name (more is refused, 696).
MASK_MATCHES_MAX: Final = 5


class IrcModeration(IrcQueries):
    """KICK, INVITE, MODE, OPER, KILL for one registered IRC connection."""

    def do_kick(self, params: tuple[str, ...]) -> None:
        channel, who = params[0], params[1].split(",")[0]
        room = self._room_of(channel)
        if room is None:
            if self.conn.server.rooms.get(key_of(channel)) is None:
                self.numeric("403", channel, "No such channel")
            else:
                self.numeric("442", channel, "You're not on that channel")
            return
        reason = clean(params[2]) if len(params) > 2 else ""
        answers = self._in(room, f"/kick {who} {reason}".rstrip())
        self.fail("KICK", answers, channel)

    def do_invite(self, params: tuple[str, ...]) -> None:
        who, channel = params[0], params[1]
        room = self._room_of(channel)
        if room is None:
            self.numeric("442", channel, "You're not on that channel")
            return
        # As the mainstream servers check: someone already here is 443
        # before anything is asked of the inviter (Modern IRC, "INVITE").
        target = self.conn.server.participants.get(nick_key(who))
        if target is not None and target in room.members:
            self.numeric(
                "443", target.nick.display, room.name.display, "is already on channel"
            )
            return
        answers = self._in(room, f"/invite {who}")
        if not self.fail("INVITE", answers, channel):
            self.numeric("341", who, room.name.display)

    def do_mode(self, params: tuple[str, ...]) -> None:
        target = params[0]
        if not target.startswith("#"):
            if nick_key(target) != self.conn.participant.nick.key:
                self.numeric("502", "Can't change mode for other users")
            else:
                self.numeric("221", "+")
            return
        room = self.conn.server.rooms.get(key_of(target))
        if room is None:
            self.numeric("403", target, "No such channel")
            return
        replies = self.conn.replies
        if len(params) == 1:
            member = self.conn.participant in room.members
            self.send(*replies.channel_modes(self.nick, room, member))
            return
        if params[1] in ("b", "+b") and len(params) == 2:
            self.send(*replies.ban_list(self.nick, room))
            return
        if self.conn.participant not in room.members:
            self.numeric("442", target, "You're not on that channel")
            return
        for line in mode_lines(params[1], params[2:]):
            if line is None:
                self.numeric("472", params[1], "is an unknown mode char to me")
                continue
            verb, _, mask = line.partition(" ")
            commands = [line]
            if verb in ("/ban", "/unban"):
                patterns = self._ban_patterns(mask)
                if patterns is None:
                    why = f"matches nobody here, or more than {MASK_MATCHES_MAX}"
                    self.numeric("696", target, "b", mask, why)
                    continue
                commands = [f"{verb} {pattern}" for pattern in patterns]
            for command in commands:
                answers = self._in(room, command)
                if self._bad_mode_value(command, answers, target):
                    continue
                if self.fail("MODE", answers, target):
                    return

    def _bad_mode_value(self, command: str, answers: list[str], channel: str) -> bool:
        """696 ERR_INVALIDMODEPARAM for a refused ``+l`` or ``+k`` value."""
        words = command.split(" ")
        refused = [a for a in answers if a.startswith("! usage: ")]
        if not refused or words[:2] not in (["/room", "limit"], ["/room", "key"]):
            return False
        letter = "l" if words[1] == "limit" else "k"
        value = words[2] if len(words) > 2 and letter == "l" else "*"
        self.numeric("696", channel, letter, value, refused[0][len("! usage: ") :])
        return True

    def _ban_patterns(self, mask: str) -> list[str] | None:
        """
        An IRC ban mask as ``/ban`` takes it: ``$a:NAME`` an account,
        ``NICK!*@*`` the person (their account, else their address),
        ``*!*@ADDRESS`` or a block as is; a mask with wildcards (irssi's
        ``*!*lina@*.x.tc``) names whoever here it matches, by nick, so the
        room's notice shows no address.  None: it matches nobody here, or
        more than :data:`MASK_MATCHES_MAX`.
        """
        if mask.startswith("$a:"):
            return ["account:" + mask[3:]]
        if "!" not in mask and "@" not in mask:
            return [mask]  # a nick, an address, a block, account:NAME
        nick, _, rest = mask.partition("!")
        host = rest.partition("@")[2] if "@" in rest else ""
        wild = set("*?")
        if nick and not wild & set(nick) and host in ("", "*"):
            return [nick]
        if host and not wild & set(host) and not host.endswith(".tc"):
            return [host]  # an address or a block, as typed
        pattern = re.compile(fnmatch.translate(mask.casefold()))
        replies = self.conn.replies
        found = [
            person.nick.display
            for person in self.conn.server.participants.values()
            if pattern.fullmatch(replies.mask_of(person).casefold())
        ]
        if not found or len(found) > MASK_MATCHES_MAX:
            return None
        return found

    def do_oper(self, params: tuple[str, ...]) -> None:
        """``/oper``, whose answer comes once the password is checked."""

        def answered(answers: list[str]) -> None:
            for answer in answers:
                if answer.startswith("* You are now a server operator"):
                    self.numeric("381", "You are now an IRC operator")
                    return
                if answer.startswith("! "):
                    self.numeric(
                        "464", answer.partition(": ")[2] or "Password incorrect"
                    )
                    return

        answers = self.conn.run(f"/oper {params[0]} {params[1]}")
        if answers:
            answered(answers)
        else:  # the password is being checked
            self.conn.answer_later(answered)

    def do_kill(self, params: tuple[str, ...]) -> None:
        reason = clean(params[1]) if len(params) > 1 else ""
        self.fail(
            "KILL", self.conn.run(f"/kill {params[0]} {reason}".rstrip()), params[0]
        )
