"""
Room moderation in the chat: who may join and speak, and the operators'
commands (PROTOCOL.md, "Room moderation").

The decisions are :class:`~twisted_chat.core.room_rules.RoomRules`'; this
module owns acting on them: finding the people a command names, kicking,
announcing each change to the room as a ``*`` notice naming who made it,
logging it (who, what, whom, why) on the ``twisted_chat.moderation``
namespace, and the expiry timers (:mod:`~twisted_chat.core.room_timers`).
Apart from :mod:`~twisted_chat.core.chat` (dispatch) and
:mod:`~twisted_chat.core.membership`, which calls it back
(:class:`~twisted_chat.core.membership.RoomHooks`) only around joins and
departures.

Server operators are operators of every room.  A command acts on the
current room, as ``/topic`` does.  A nick named in ``/ban`` stands for the
person's account if they are logged in, else their address (as
``/serverban`` resolves one), so that a new nickname does not shake it off.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_chat.core import lines
from twisted_chat.core import room_commands as rc
from twisted_chat.core.bans import (
    BanPattern,
    hidden_address,
    looks_like_nick,
    parse_pattern,
)
from twisted_chat.core.bounds import LOOKED_AT_PER_LINE
from twisted_chat.core.errors import BadUsage, NotInRoom, UnknownCommand
from twisted_chat.core.events import Moderated
from twisted_chat.core.membership import current_room
from twisted_chat.core.names import name_key
from twisted_chat.core.registered_rooms import RegisteredRooms
from twisted_chat.core.room_records import (
    Change,
    invitation,
    notice_for,
    room_ban_listing,
    unchanged,
)
from twisted_chat.core.room_rules import RoomRules
from twisted_chat.core.room_tables import pattern_for
from twisted_chat.core.room_timers import RoomTimers
from twisted_chat.core.server_bans import clip

if TYPE_CHECKING:
    from twisted_chat.core.account_ports import AccountServices
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.room import Participant, Room

__all__ = ["BANS_SHOWN", "OPERATORS_SHOWN", "ModerationCommands"]

_audit = Logger(namespace="twisted_chat.moderation")

#: Bans one ``/bans`` shows (a room holds up to ROOM_BAN_LIST_SIZE).
BANS_SHOWN = 30

#: Operators ``/room`` names at most.
OPERATORS_SHOWN = 100


class ModerationCommands:
    """
    The room moderation commands, and the checks joins and messages meet.

    :param server: the chat (rooms, people, queue, clock, server operators).
    :param services: the accounts, for the names of accounts banned by nick.
    """

    def __init__(self, server: ChatServer, services: AccountServices | None) -> None:
        self._server = server
        self._services = services
        self.timers = RoomTimers(server.call_later, server.seconds, self._expired)
        server.membership.hooks = self
        self.registry = RegisteredRooms(server, services)  # kept after each change
        self.registry.load()

    # -- what joins, departures and messages meet ---------------------------------

    def check_speech(self, participant: Participant, rules: RoomRules) -> None:
        """Raise the refusal of a line to a room whose speech is restricted."""
        server = self._server
        refusal = rules.speak_refusal(
            participant,
            server.seconds(),
            server_operator=server.operators.is_operator(participant),
        )
        if refusal is not None:
            raise refusal

    def admit(self, participant: Participant, room: Room, key: str | None) -> None:
        """Raise why ``participant`` may not join ``room`` (banned, key, ...)."""
        rules = room.rules
        if rules is None:
            return
        server = self._server
        refusal = rules.join_refusal(
            participant,
            key,
            server.seconds(),
            server.operators.is_operator(participant),
            members=len(room.members),
        )
        if refusal is not None:
            raise refusal

    def joined(self, participant: Participant, room: Room) -> None:
        if room.rules is not None:
            room.rules.member_joined(participant)
            if len(room.members) == 1:  # a registered room woke up
                self.timers.schedule(room)

    def keeps(self, room: Room) -> bool:
        return self.registry.keeps(room)

    def left(self, participant: Participant, room: Room) -> None:
        """After ``participant`` left: the last operator's heir, or the timer."""
        rules = room.rules
        if rules is None:
            return
        if not room.members:
            self.timers.forget(room)
            self.registry.save(room)
            return
        server = self._server
        change = rules.member_left(participant, room.members, server.seconds())
        if change is not None and not server.shutting_down:
            self._announce(room, change, "")
            self._log(room, change, "the room", "its last operator left")

    def topic_check(self, participant: Participant, room: Room) -> None:
        """Raise ``not-operator`` for a locked topic."""
        rules = room.rules
        if rules is not None:
            refusal = rules.topic_refusal(
                participant, self._server.operators.is_operator(participant)
            )
            if refusal is not None:
                raise refusal
            self.registry.topic_changing(room)

    # -- the commands -----------------------------------------------------------

    def dispatch(self, participant: Participant, command: rc.ModerationCommand) -> None:
        """Act on one room moderation command, for the current room."""
        room = current_room(participant)
        rules = room.rules
        if rules is None:
            rules = room.rules = RoomRules(room.name.display)
        server_operator = self._server.operators.is_operator(participant)
        if isinstance(command, rc.RoomShow):
            self._show(participant, room, rules, server_operator)
            return
        by = participant.nick.display
        if isinstance(command, rc.RoomDrop):
            self._done(room, self.registry.drop(participant, room, rules), by)
            return
        refusal = rules.require_operator(participant, server_operator, _name(command))
        if refusal is not None:
            raise refusal
        if isinstance(command, rc.RoomRegister):
            name = self._account_name(participant)
            self._done(room, self.registry.register(participant, room, rules, name), by)
            return
        match command:
            case rc.Kick(nick, reason):
                target = self._member(room, nick)
                if target is participant:
                    raise BadUsage("To leave the room, /part.")
                self._server.membership.kick(room, target, participant, clip(reason))
                self._log_action(room, by, "kick", target.nick.display, clip(reason))
                return
            case rc.Bans():
                self._bans(participant, room, rules)
                return
            case rc.Invite(nick):
                self._invite(participant, room, rules, nick)
                return
        change = self._change(participant, room, rules, command)
        if change is None:
            self._unchanged(participant, room, command)
            return
        self._announce(room, change, by)
        self._log(room, change, by, change.reason)
        for member in change.kicked:
            self._server.membership.kick(room, member, participant, change.reason)
        self.timers.schedule(room)
        self.registry.save(room)

    def _done(self, room: Room, change: Change, by: str) -> None:
        self._announce(room, change, by)
        self._log(room, change, by, "")

    def _change(
        self,
        participant: Participant,
        room: Room,
        rules: RoomRules,
        command: rc.ModerationCommand,
    ) -> Change | None:
        """Make the change ``command`` asks for (None: nothing to announce)."""
        by = participant.nick.display
        now = self._server.seconds()
        match command:
            case rc.Op(nick):
                target = self._member(room, nick)
                return rules.op(target, self._account_name(target))
            case rc.Deop(nick):
                return rules.deop(self._member(room, nick))
            case rc.Voice(nick):
                return rules.voice(self._member(room, nick))
            case rc.Devoice(nick):
                return rules.devoice(self._member(room, nick))
            case rc.Ban(text, duration, reason):
                return rules.ban(
                    self._pattern(text),
                    duration,
                    reason,
                    by,
                    now,
                    members=list(room.members),
                )
            case rc.Unban(text):
                return rules.unban(self._banned_pattern(rules, text), now)
            case rc.Mute(nick, duration):
                target = self._member(room, nick)
                return rules.mute(target, duration, by, now, self._account_name(target))
            case rc.Unmute(nick) if not looks_like_nick(nick):
                # The account or address of somebody who is not here.
                return rules.unmute_pattern(parse_pattern(nick), now)
            case rc.Unmute(nick):
                return rules.unmute(self._server.directory.find(nick), now)
            case rc.RoomFlag(flag, on):
                return rules.apply_setting(flag, on)
            case rc.RoomLimit(limit):
                return rules.apply_setting("limit", limit)
            case rc.RoomKey(key):
                return rules.apply_setting("key", key)
            case _:
                raise UnknownCommand("That room command is not available yet.")

    # -- helpers ---------------------------------------------------------------

    def _member(self, room: Room, nick: str) -> Participant:
        target = self._server.directory.find(nick)
        if target not in room.members:
            raise NotInRoom(f"{target.nick.display} is not in {room.name.display}.")
        return target

    def _account_name(self, participant: Participant) -> str:
        services, account = self._services, participant.account
        if services is None or account is None:
            return ""
        found = services.store.get(account)
        return found.name if found is not None else ""

    def _pattern(self, text: str) -> BanPattern:
        """A pattern as typed, or what a connected nick stands for."""
        if not looks_like_nick(text):
            return parse_pattern(text)
        person = self._server.directory.find(text)
        pattern = pattern_for(person, self._account_name(person))
        if pattern is None:
            raise BadUsage(
                f"{person.nick.display} has no IP address to ban (a local "
                "connection); ban account:NAME or an address instead."
            )
        return pattern

    def _banned_pattern(self, rules: RoomRules, text: str) -> BanPattern:
        """What ``/unban`` names: a pattern, or a nick banned by address."""
        if not looks_like_nick(text):
            return parse_pattern(text)
        label = hidden_address("", text).text
        for ban in rules.bans.bans():  # at most ROOM_BAN_LIST_SIZE, rarely
            if ban.pattern.text.casefold() == label.casefold():
                return ban.pattern
        return self._pattern(text)

    def _invite(
        self, participant: Participant, room: Room, rules: RoomRules, nick: str
    ) -> None:
        target = self._server.directory.find(nick)
        shown = room.name.display
        if target in room.members:
            raise BadUsage(f"{target.nick.display} is in {shown} already.")
        by = participant.nick.display
        change = rules.invite(target, self._server.seconds())
        self._announce(room, change, by)
        self._log(room, change, by, "")
        outbox = self._server.outbox
        if outbox.busy:
            outbox.catch_up(target)
        target.client.send(lines.notice(invitation(by, shown)))
        if change.banned is not None:
            self._tell(
                participant,
                f"{target.nick.display} is banned from {shown} "
                f"({change.banned.pattern.text}); the invitation does not lift it.",
            )

    def _show(
        self,
        participant: Participant,
        room: Room,
        rules: RoomRules,
        server_operator: bool,
    ) -> None:
        server = self._server
        server.budgets.refuse_if_over(participant)
        show_key = server_operator or rules.is_operator(participant)
        # A room may make every member an operator: name the first ones only.
        shown = list(islice(filter(rules.is_operator, room.members), OPERATORS_SHOWN))
        reply = [lines.notice(text) for text in rules.describe(shown, show_key)]
        self._reply(participant, reply, len(room.members))

    def _bans(self, participant: Participant, room: Room, rules: RoomRules) -> None:
        """``/bans``: the newest :data:`BANS_SHOWN`, and how many more."""
        server = self._server
        server.budgets.refuse_if_over(participant)
        now = server.seconds()
        rules.bans.expire(now)
        bans = rules.bans.bans()
        texts = room_ban_listing(bans, room.name.display, now, BANS_SHOWN)
        self._reply(participant, [lines.notice(text) for text in texts], len(bans))

    def _reply(self, participant: Participant, reply: list[bytes], looked: int) -> None:
        participant.client.send(b"".join(reply))
        self._server.budgets.charge(
            participant, len(reply), looked // LOOKED_AT_PER_LINE
        )

    def _unchanged(
        self, participant: Participant, room: Room, command: rc.ModerationCommand
    ) -> None:
        kind = type(command).__name__.lower()
        nick = getattr(command, "nick", "") or getattr(command, "pattern", "")
        if kind != "unban" and looks_like_nick(nick):
            nick = self._server.directory.find(nick).nick.display
        self._tell(participant, unchanged(kind, nick, room.name.display))

    def _tell(self, participant: Participant, text: str) -> None:
        participant.client.send(lines.notice(text))

    def _announce(self, room: Room, change: Change, by: str) -> None:
        text = notice_for(change, by, room.name.display)
        event = None
        if room.foreign is not None:  # members of other formats (IRC's MODE)
            who = self._server.participants.get(name_key(by)) if by else None
            event = Moderated(change, who, by, text)
        outbox = self._server.outbox
        outbox.say_in(room, lines.notice(text), None, notice=True, event=event)

    def _log(self, room: Room, change: Change, by: str, why: str) -> None:
        what = change.kind if not change.value else f"{change.kind} {change.value}"
        self._log_action(room, by, what, change.target, why)

    def _log_action(self, room: Room, by: str, what: str, whom: str, why: str) -> None:
        _audit.info(
            "{who} {what} {whom} in {room}: {why}",
            who=by,
            what=what,
            whom=whom,
            why=why,
            room=room.name.display,
        )

    def _expired(self, room: Room) -> None:
        """A room's timer fired: announce what ended, and set the next."""
        server = self._server
        rules = room.rules
        if rules is None or server.rooms.get(room.name.key) is not room:
            return
        for change in rules.expire(server.seconds()):
            self._announce(room, change, "")
            self._log(room, change, "the clock", "")
        self.timers.schedule(room)


def _name(command: rc.ModerationCommand) -> str:
    """``/kick`` for a Kick, for ``not-operator``'s text."""
    if isinstance(command, rc.RoomFlag | rc.RoomLimit | rc.RoomKey):
        return "/room"
    if isinstance(command, rc.RoomRegister):
        return "/room register"
    return "/" + type(command).__name__.lower()
