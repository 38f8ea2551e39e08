"""
This daemon as one node of a cluster (``--cluster redis://...``).

What the core tells the cluster (:class:`~twisted_chat.core.cluster_port.ClusterPort`)
goes out through Redis here, and what the other nodes said comes in to
the :class:`~twisted_chat.cluster.mirror.Mirror`:

- ``tc:events``: every node's rooms (one publish per room per reactor
  turn, by the rooms' relays) and its users' arrivals, renames and
  departures, in the order they happened (one connection publishes all).
- ``tc:control``: a node saying hello with its whole state (at start and
  after an outage), a dead node (its lease ran out: ``NodeLease``), a
  shared store changed.
- ``tc:to:<node>``: one node's mail: state answers, private messages,
  a nickname lost to an earlier claim.

A nickname is claimed in Redis (``NickClaims``) after it is taken here;
the claim that loses (a race, or two nodes that ran alone) gives the
user their previous name back, or a guest name, with a notice.  When
Redis cannot be reached the node says so once to its users and keeps
chatting with them; when it is back, it says hello again, claims its
users' nicknames again and reloads what is shared.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import gatherResults
from twisted.logger import Logger

from twisted_chat.cluster import wire
from twisted_chat.cluster.lease import NodeLease
from twisted_chat.cluster.link import RedisLink
from twisted_chat.cluster.mirror import LOST, Mirror
from twisted_chat.cluster.nick_claims import NickClaims
from twisted_chat.cluster.own_nicks import OwnNicks
from twisted_chat.cluster.relay import ClusterFormat, GhostClient, Relay
from twisted_chat.core import lines
from twisted_chat.core.errors import NoSuchNick
from twisted_chat.core.foreign import ForeignMembers
from twisted_chat.core.names import Nick
from twisted_chat.core.room import Participant, Room

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.records import StoredTopic

__all__ = ["CONTROL", "EVENTS", "ClusterNode"]

EVENTS = "tc:events"
CONTROL = "tc:control"
ALONE = (
    "The server is running alone for now: the other nodes cannot be reached; "
    "you can chat with the people on this node, and it will join them again "
    "by itself."
)
TOGETHER = "The server is whole again: the people on the other nodes hear you."

_log = Logger()


def mailbox(node: str) -> str:
    return f"tc:to:{node}"


def channels(node: str) -> list[str]:
    """What a node listens to: everybody's events, the control channel, its mail."""
    return [EVENTS, CONTROL, mailbox(node)]


class LinkCalls:
    """
    The link's callbacks, made before the node: the shared stores need the
    link before the chat server exists, and the node needs the server.
    """

    node: ClusterNode | None = None

    def message(self, channel: str, data: bytes) -> None:
        if self.node is not None:
            self.node._message(channel, data)

    def up(self) -> None:
        if self.node is not None:
            self.node._up()

    def down(self, reason: str) -> None:
        if self.node is not None:
            self.node._down(reason)


class ClusterNode(Service):
    """The cluster side of one daemon: its link, lease, claims and mirror."""

    def __init__(
        self,
        server: ChatServer,
        link: RedisLink,
        calls: LinkCalls,
        reactor: Any,
        node_id: str,
        *,
        remote_lines: Callable[[str, str, float, bytes], None] | None = None,
        remote_topic: Callable[[StoredTopic], None] | None = None,
        on_control: Callable[[dict[str, Any]], None] | None = None,
        on_up: Callable[[], object] | None = None,
    ) -> None:
        self.server = server
        self.node_id = node_id
        self._reactor = reactor
        self._on_control = on_control
        self._on_up_hook = on_up
        self.link = link
        calls.node = self
        #: How this node's own messages start (wire.encode's header).
        self._own = wire.line({"n": node_id})[:-2]
        self.lease = NodeLease(self.link, reactor, node_id, lambda _node: None)
        self.nicks = OwnNicks(server, link, NickClaims(link, node_id), reactor)
        self.mirror = Mirror(server, remote_lines, remote_topic, self.uid_of)
        self.mirror.closing = self._close_remote
        self.format = ClusterFormat(self.uid_of)
        self._alone = False
        self._ever_up = False
        self._leased = False
        #: What must finish before the link closes (the stores' writes).
        self.before_stop: list[Callable[[], Deferred[Any]]] = []
        server.cluster = self
        server.directory.on_rename = self.renamed
        server.directory.claim = self.nicks.claim_first
        # Guest names from a spread of numbers, so nodes seldom race for one.
        server.directory._guest_numbers = itertools.count(random.randrange(1000, 90000))
        for room in server.rooms.values():
            self.room_made(room)

    def uid_of(self, participant: Participant) -> str:
        if participant.remote:
            client: Any = participant.client
            return str(client.uid)
        return f"{self.node_id}/{id(participant):x}"

    # -- the service -----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.link.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        # The lease goes, and what the shared stores still write lands,
        # before the link closes.
        waits = [self.lease.stop(), *(wait() for wait in self.before_stop)]
        d: Deferred[Any] = gatherResults(waits, consumeErrors=True)
        d.addBoth(lambda _: self.link.stop())
        return d

    # -- the ClusterPort: what the core tells us --------------------------------------

    def connected(self, participant: Participant) -> None:
        if self._alone:
            participant.client.send(lines.notice(ALONE))
        self.nicks.since[participant] = self._reactor.seconds()
        self._publish_person("user", participant)
        self.nicks.claim(participant, participant.nick, None)

    def disconnecting(self, participant: Participant, reason: str) -> None:
        # Their last lines first: the quit must not overtake them.
        self.server.outbox.flush_rooms_of(participant)
        self._publish_events({"k": "quit", "u": self.uid_of(participant), "t": reason})

    def disconnected(self, participant: Participant) -> None:
        self.nicks.since.pop(participant, None)
        if self.link.up:
            self.nicks.claims.release(participant.nick.key)

    def renamed(self, participant: Participant, old: Nick, new: Nick) -> None:
        if participant.gone:
            return
        self.server.outbox.flush_rooms_of(participant)
        self.nicks.since[participant] = self._reactor.seconds()
        self._publish_person("user", participant)  # the name, and the account
        if old.key != new.key:
            self.nicks.claim(participant, new, old)
        self.mirror.relist()

    def changed(self, participant: Participant) -> None:
        self._publish_person("user", participant)

    def private(self, sender: Participant, recipient: Participant, text: str) -> None:
        client: Any = recipient.client
        if not self.link.up:
            raise NoSuchNick(
                f"{recipient.nick.display} is on another node, which cannot be "
                f"reached right now; try again soon."
            )
        # What the sender said in rooms before must not come after it.
        self.server.outbox.flush_rooms_of(sender)
        message = {
            "kind": "pm",
            "u": self.uid_of(sender),
            "to": recipient.nick.key,
            "t": text,
        }
        self.link.publish(mailbox(client.node), wire.line(message))

    def _close_remote(self, client: GhostClient, line: bytes) -> None:
        """A /kill or server ban here of another node's user: their node acts."""
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        message = {"kind": "close", "u": client.uid, "line": text}
        self.link.publish(mailbox(client.node), wire.line(message))

    def _closed_here(self, uid: str, text: str) -> None:
        for participant in list(self.server.participants.values()):
            if not participant.remote and self.uid_of(participant) == uid:
                reason = "banned" if text.startswith("! banned") else "killed"
                if text.startswith("* You were killed by "):
                    reason = text.removeprefix("* You were ").rstrip(".")
                participant.client.send(lines.encode(text))
                self.server.disconnect(participant, reason)
                participant.client.close()
                return

    def room_made(self, room: Room) -> None:
        foreign = room.foreign
        if foreign is None:
            foreign = room.foreign = ForeignMembers()
        relay = Participant(
            client=Relay(room, self.format, self._publish_room),
            nick=Nick(display="*cluster", key="*cluster"),
        )
        foreign.add(relay, self.format, len(room.pending))

    # -- out ------------------------------------------------------------------------

    def _publish_room(self, room: Room, body: bytes) -> None:
        header = {
            "n": self.node_id,
            "r": room.name.key,
            "d": room.name.display,
            "at": self._reactor.seconds(),
        }
        self.link.publish(EVENTS, wire.encode(header, body))

    def _publish_events(self, *events: dict[str, Any]) -> None:
        body = b"".join(wire.line(event) for event in events)
        self.link.publish(EVENTS, wire.encode({"n": self.node_id}, body))

    def _publish_person(self, kind: str, participant: Participant) -> None:
        info = wire.person(participant, self.uid_of(participant))
        self._publish_events({"k": kind, **info})

    def state(self) -> dict[str, Any]:
        """Everything another node needs to mirror this one."""
        local = [p for p in self.server.participants.values() if not p.remote]
        users = [wire.person(p, self.uid_of(p)) for p in local if not p.gone]
        rooms = []
        for room in self.server.rooms.values():
            uids = [self.uid_of(p) for p in room.members if not p.remote]
            if uids:
                rules = wire.rules_of(room, self.uid_of)
                topic = [room.topic, room.topic_by, room.topic_at]
                rooms.append([room.name.key, room.name.display, uids, rules, topic])
        return {"users": users, "rooms": rooms}

    # -- in -------------------------------------------------------------------------

    def _message(self, channel: str, data: bytes) -> None:
        try:
            if channel == EVENTS:
                self._events(data)
            else:
                self._mail(json.loads(data))
        except Exception:
            _log.failure(
                "while reading a cluster message on {channel}", channel=channel
            )

    def _events(self, data: bytes) -> None:
        if data.startswith(self._own):
            return  # our own publish, back from Redis: nothing to read
        decoded = wire.decode(data)
        if decoded is None:
            return
        header, events = decoded
        node = header.get("n")
        if not isinstance(node, str) or node == self.node_id:
            return
        if "r" in header:
            self.mirror.apply_batch(node, header, events)
            return
        mirror = self.mirror
        for event in events:
            kind = event.get("k")
            if kind == "user":
                mirror.user(node, event)
            elif kind == "quit":
                mirror.quit(str(event.get("u")), str(event.get("t") or LOST))

    def _mail(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        kind = message.get("kind")
        node = message.get("node")
        if kind == "hello" and isinstance(node, str) and node != self.node_id:
            self.mirror.state_of_node(node, message.get("state") or {})
            answer = {"kind": "state", "node": self.node_id, "state": self.state()}
            self.link.publish(mailbox(node), wire.line(answer))
        elif kind == "state" and isinstance(node, str) and node != self.node_id:
            self.mirror.state_of_node(node, message.get("state") or {})
        elif kind == "node-dead" and isinstance(node, str):
            if node == self.node_id:
                if self.running:  # not our own clean leave, at stop
                    self._rejoin()  # reaped while cut off: we are alive
            else:
                self.mirror.node_gone(node)
        elif kind == "pm":
            self.mirror.private(
                str(message.get("u")), str(message.get("to")), str(message.get("t"))
            )
        elif kind == "close":
            self._closed_here(str(message.get("u")), str(message.get("line")))
        elif kind == "nick-lost":
            holder = self.server.participants.get(str(message.get("key")))
            if holder is not None and not holder.remote:
                self.nicks.lost(holder, None)
        elif self._on_control is not None:
            self._on_control(message)

    # -- up and down ------------------------------------------------------------------

    def _up(self) -> None:
        first = not self._ever_up
        self._ever_up = True
        if self._alone:
            self._alone = False
            self._tell_everybody(TOGETHER)
        self._rejoin(reclaim=not first)
        if self._on_up_hook is not None:
            self._on_up_hook()

    def _rejoin(self, *, reclaim: bool = True) -> None:
        if not self._leased:
            self._leased = True
            self.lease.start()
        self.lease.renew_now()
        hello = {"kind": "hello", "node": self.node_id, "state": self.state()}
        self.link.publish(CONTROL, wire.line(hello))
        if reclaim:
            self.nicks.reclaim_all()
        else:
            for participant in list(self.server.participants.values()):
                if not participant.remote and not participant.gone:
                    self.nicks.claim(participant, participant.nick, None)

    def _down(self, reason: str) -> None:
        _log.warn("cluster: running alone: {reason}", reason=reason)
        if self._ever_up and not self._alone:
            self._alone = True
            self._tell_everybody(ALONE)

    def _tell_everybody(self, text: str) -> None:
        data = lines.notice(text)
        for participant in list(self.server.participants.values()):
            if not participant.remote and not participant.gone:
                try:
                    participant.client.send(data)
                except Exception:
                    _log.failure("while telling {nick}", nick=participant.nick.display)
