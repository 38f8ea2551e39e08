"""
Other nodes' users and rooms, mirrored into this node's core.

Each remote user is a participant with ``remote`` set and a
:class:`~twisted_chat.cluster.relay.GhostClient`: in the directory (so a
nickname stays unique and ``/msg`` finds them), in rooms (so ``/who``,
``/rooms``, IRC's NAMES and the web's member list count them), never in
a fan-out.  What their rooms heard is replayed into the local rooms with
``Room.hear_elsewhere``, so this node's members get it in their own
format in the same end-of-turn flush as what they say here, and the
history cache learns it without storing it twice.

Every step here is idempotent: a join of someone already in the room, a
quit of someone unknown, a message from someone not (yet) seen are
ignored, because state answers (:meth:`Mirror.apply_state`) and live
events may cross.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted_chat.cluster import wire
from twisted_chat.cluster.relay import GhostClient
from twisted_chat.core import lines
from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import (
    Acted,
    Joined,
    Kicked,
    Left,
    Moderated,
    RoomEvent,
    RoomNotice,
    Said,
    TopicSet,
)
from twisted_chat.core.foreign import tell
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.names import Nick, RoomName, name_key
from twisted_chat.core.records import StoredTopic
from twisted_chat.core.room import Participant, Room
from twisted_chat.core.room_records import kick_notices
from twisted_chat.core.room_rules import RoomRules

if TYPE_CHECKING:
    from twisted_chat.core.chat import ChatServer

__all__ = ["Mirror"]

_log = RateLimitedLogger()

#: What a remote user's departure is called when their node is gone.
LOST = "connection lost"


class Mirror:
    """
    The remote users of every other node, as participants of this core.

    :param remote_lines: gives the history cache a room's messages said on
        another node (``room key, room, at, lines``), once per batch.
    """

    def __init__(
        self,
        server: ChatServer,
        remote_lines: Callable[[str, str, float, bytes], None] | None = None,
        remote_topic: Callable[[StoredTopic], None] | None = None,
        uid_of: Callable[[Participant], str] = lambda _: "",
    ) -> None:
        self._uid_of = uid_of
        #: Asks a ghost's node to close them (set by the node).
        self.closing: Callable[[GhostClient, bytes], None] | None = None
        self.server = server
        self._remote_lines = remote_lines
        self._remote_topic = remote_topic
        #: Remote users by uid.
        self.ghosts: dict[str, Participant] = {}
        #: The uids of each node's users.
        self.by_node: dict[str, set[str]] = {}
        #: Ghosts whose nickname a user here holds until a claim settles it.
        self.unlisted: set[str] = set()

    # -- people -------------------------------------------------------------------

    def user(self, node: str, info: dict[str, Any]) -> Participant | None:
        """The ghost ``info`` describes (made, or its nick brought up to date)."""
        uid = info.get("u")
        nick_text = info.get("n")
        if not isinstance(uid, str) or not isinstance(nick_text, str):
            return None
        account = info.get("a") if isinstance(info.get("a"), str) else None
        oper = info.get("op") if isinstance(info.get("op"), str) else None
        ghost = self.ghosts.get(uid)
        if ghost is not None:
            ghost.account, ghost.oper = account, oper  # a login, a logout, /oper
            if ghost.nick.display != nick_text:
                self.rename(uid, nick_text)
            return ghost
        try:
            nick = Nick.parse(nick_text)
        except ChatError:
            return None
        host = _text(info.get("h"))
        ghost = Participant(
            client=GhostClient(node, uid, host, self.closing),
            nick=nick,
            host=host,
            transport=_text(info.get("tr")) or "tcp",
            account=account,
            oper=oper,
            remote=True,
        )
        self.ghosts[uid] = ghost
        self.by_node.setdefault(node, set()).add(uid)
        self._list(uid, ghost)
        return ghost

    def _list(self, uid: str, ghost: Participant) -> None:
        participants = self.server.participants
        holder = participants.get(ghost.nick.key)
        if holder is None or holder is ghost:
            participants[ghost.nick.key] = ghost
            self.unlisted.discard(uid)
        else:
            self.unlisted.add(uid)

    def relist(self) -> None:
        """After a local user gave up a nickname: list the ghosts that wait for it."""
        for uid in list(self.unlisted):
            ghost = self.ghosts.get(uid)
            if ghost is None:
                self.unlisted.discard(uid)
            else:
                self._list(uid, ghost)

    def rename(self, uid: str, new_text: str) -> None:
        ghost = self.ghosts.get(uid)
        if ghost is None:
            return
        try:
            new = Nick.parse(new_text)
        except ChatError:
            return
        participants = self.server.participants
        if uid in self.unlisted:
            ghost.nick = new
            self._list(uid, ghost)
            return
        holder = participants.get(new.key)
        if holder is not None and holder is not ghost:
            # A user here holds it until the claims settle who keeps it.
            if participants.get(ghost.nick.key) is ghost:
                del participants[ghost.nick.key]
            ghost.nick = new
            self.unlisted.add(uid)
            return
        self.server.directory.force_rename(ghost, new)
        self.relist()

    def quit(self, uid: str, reason: str) -> None:
        ghost = self.ghosts.pop(uid, None)
        if ghost is None:
            return
        client: Any = ghost.client
        self.by_node.get(client.node, set()).discard(uid)
        self.unlisted.discard(uid)
        self.server.disconnect(ghost, reason or LOST)
        self.relist()

    def node_gone(self, node: str, reason: str = LOST) -> None:
        """Every user of ``node`` quits (its lease ran out, or it said nothing)."""
        for uid in list(self.by_node.pop(node, ())):
            self.quit(uid, reason)

    # -- rooms --------------------------------------------------------------------

    def room(self, key: str, display: str, *, create: bool) -> Room | None:
        server = self.server
        room = server.rooms.get(key)
        if room is None and create:
            try:
                name = RoomName.parse(display)
            except ChatError:
                return None
            if name.key != key:
                return None
            room = server._create_room(name)
        return room

    def apply_batch(
        self, node: str, header: dict[str, Any], events: list[dict[str, Any]]
    ) -> None:
        """What one room of ``node`` heard in one turn."""
        key, display = header.get("r"), header.get("d")
        if not isinstance(key, str) or not isinstance(display, str):
            return
        said: list[bytes] = []
        joins = any(event.get("k") == "join" for event in events)
        room = self.room(key, display, create=joins)
        if room is None:
            return
        for event in events:
            try:
                room = self._apply(node, room, event, said) or room
            except Exception:
                _log.failure("while applying a cluster event in {room}", room=display)
        if said and self._remote_lines is not None:
            at = header.get("at")
            when = at if isinstance(at, float) else self.server.seconds()
            self._remote_lines(key, room.name.display, when, b"".join(said))
        if room.pending:
            self.server.outbox.heard_elsewhere(room)

    def _apply(
        self, node: str, room: Room, event: dict[str, Any], said: list[bytes]
    ) -> Room | None:
        kind = event.get("k")
        if kind == "join":
            ghost = self.user(node, event)
            if ghost is not None and ghost not in room.members:
                self.join(room, ghost, quietly=False)
            return None
        ghost = self.ghosts.get(_text(event.get("u")))
        name = room.name.display
        nick = _text(event.get("n"))
        text = _text(event.get("t"))
        if ghost is not None and kind in ("say", "act"):
            ghost.last_active = self.server.seconds()  # /whois idle time
        if kind == "say" and ghost is not None:
            data = lines.room_message(name, nick, text)
            said.append(data)
            room.hear_elsewhere(data, Said(ghost, nick, text, bool(event.get("o"))))
        elif kind == "act" and ghost is not None:
            data = lines.room_action(name, nick, text)
            said.append(data)
            room.hear_elsewhere(data, Acted(ghost, nick, text))
        elif kind == "part" and ghost is not None and ghost in room.members:
            suffix = f" ({text})" if text else ""
            room.hear_elsewhere(
                lines.notice(f"{nick} left {name}{suffix}"), Left(ghost, nick, text)
            )
            self.leave(room, ghost)
        elif kind == "topic" and ghost is not None:
            now = self.server.seconds()
            room.topic, room.topic_by, room.topic_at = text, nick, now
            if self._remote_topic is not None:
                self._remote_topic(StoredTopic(room.name.key, name, text, nick, now))
            room.hear_elsewhere(
                lines.notice(f"{nick} set the topic of {name} to: {text}"),
                TopicSet(ghost, nick, text),
            )
        elif kind == "kick":
            self._kicked(room, _text(event.get("u")), nick, _text(event.get("b")), text)
        elif kind == "note" and text:
            room.hear_elsewhere(lines.notice(text), RoomNotice(text))
        elif kind == "mod" and text:
            by = _text(event.get("b"))
            change = wire.change_of(event)
            who = self.server.participants.get(name_key(by)) if by else None
            notice: RoomEvent = (
                RoomNotice(text) if change is None else Moderated(change, who, by, text)
            )
            room.hear_elsewhere(lines.notice(text), notice)
        elif kind == "rules":
            self.rules(room, event)
        return None

    def _kicked(self, room: Room, uid: str, nick: str, by: str, reason: str) -> None:
        """Someone was kicked on another node: a ghost here, or a user of ours."""
        server = self.server
        target = self._member(room, uid)
        if target is None:
            return
        seen, told = kick_notices(nick, by, room.name.display, reason)
        if not target.remote:
            room.catch_up(target)  # what the room heard before the kick
        kicked = Kicked(target, nick, None, by, reason)
        room.hear_elsewhere(lines.notice(seen), kicked)
        server.membership.leave(target, room)
        if not target.remote:
            tell(target, room, lines.notice(told), kicked)

    def rules(self, room: Room, event: dict[str, Any]) -> None:
        """Another node's room rules after a change: the rules here too."""
        stored, ops, voiced = event.get("d"), event.get("ops"), event.get("v")
        if not isinstance(stored, dict):
            return
        try:
            rules = RoomRules.from_dict(
                stored, room.name.display, self.server.seconds()
            )
        except (ChatError, ValueError, TypeError):
            return
        by_uid = self._members_by_uid(room)
        rules.operators = {by_uid[u] for u in wire.texts(ops) if u in by_uid}
        rules.voiced = {by_uid[u] for u in wire.texts(voiced) if u in by_uid}
        old = room.rules
        if old is not None:  # what the stored form leaves out stays
            rules.invites = old.invites
        rules._refresh()
        room.rules = rules

    def _members_by_uid(self, room: Room) -> dict[str, Participant]:
        """The room's members (of every node) by the uid events name them by."""
        return {self._uid_of(p): p for p in room.members}

    def _member(self, room: Room, uid: str) -> Participant | None:
        ghost = self.ghosts.get(uid)
        if ghost is not None:
            return ghost if ghost in room.members else None
        return self._members_by_uid(room).get(uid)  # one of ours (rare: a kick)

    def join(self, room: Room, ghost: Participant, *, quietly: bool) -> None:
        if not quietly:
            room.hear_elsewhere(
                lines.notice(f"{ghost.nick.display} joined {room.name.display}"),
                Joined(ghost, ghost.nick.display),
            )
        if room.rules is None and not room.members:
            room.rules = RoomRules.for_creator(room.name.display, ghost)
        room.add(ghost)
        ghost.rooms[room.name.key] = room
        ghost.current = room

    def leave(self, room: Room, ghost: Participant) -> None:
        self.server.membership.leave(ghost, room)

    # -- whole states -------------------------------------------------------------

    def state_of_node(self, node: str, state: dict[str, Any]) -> None:
        """
        Bring ``node``'s users and memberships here up to what it says it has
        (a node (re)joining, or answering one): who is missing quits, who is
        new comes in quietly (their joins were announced long ago).
        """
        users = state.get("users")
        rooms = state.get("rooms")
        if not isinstance(users, list) or not isinstance(rooms, list):
            return
        seen: set[str] = set()
        for info in users:
            if isinstance(info, dict):
                ghost = self.user(node, info)
                if ghost is not None:
                    seen.add(_text(info.get("u")))
        for uid in self.by_node.get(node, set()) - seen:
            self.quit(uid, LOST)
        members: dict[str, set[str]] = {}
        for entry in rooms:
            if not (isinstance(entry, list) and len(entry) == 5):
                continue
            key, display, uids, rules, topic = entry
            if not isinstance(key, str) or not isinstance(display, str):
                continue
            if not isinstance(uids, list):
                continue
            room = self.room(key, display, create=bool(uids))
            if room is None:
                continue
            members[key] = {uid for uid in uids if isinstance(uid, str)}
            for uid in uids:
                ghost = self.ghosts.get(uid) if isinstance(uid, str) else None
                if ghost is not None and ghost not in room.members:
                    self.join(room, ghost, quietly=True)
            if isinstance(rules, dict) and rules:
                self.rules(room, rules)
            if isinstance(topic, list) and len(topic) == 3 and topic[0]:
                text, by, at = topic
                room.topic, room.topic_by = _text(text), _text(by)
                room.topic_at = at if isinstance(at, float | int) else 0.0
        for uid in seen:
            ghost = self.ghosts.get(uid)
            if ghost is None:
                continue
            for key, room in list(ghost.rooms.items()):
                if uid not in members.get(key, ()):
                    self.leave(room, ghost)

    def private(self, sender_uid: str, recipient_key: str, text: str) -> bool:
        """A private message from a ghost to a user here; False: no such user."""
        sender = self.ghosts.get(sender_uid)
        recipient = self.server.participants.get(recipient_key)
        if sender is None or recipient is None or recipient.remote or recipient.gone:
            return False
        self.server.speech.deliver(sender, recipient, text)
        return True


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
