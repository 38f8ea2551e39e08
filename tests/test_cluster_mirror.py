"""
Nodes of a cluster against each other through an in-memory bus (issue 19).

The real Redis link, lease and claims are tested on a real redis-server
(``test_cluster_link``, ``test_cluster_lease``, ``test_cluster_nicks``) and
whole daemons in ``test_cluster_e2e``; here each node is a ``ChatServer``
on a shared ``Clock`` with its :class:`ClusterNode`, and the bus delivers
what one publishes to the others' channels at the next ``settle``, so the
mirror's rules (who hears what, once, in order; nick races; a dead node;
running alone; a node that comes late) are checked fast and exactly.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from twisted_chat.cluster import wire
from twisted_chat.cluster.node import (
    ALONE,
    CONTROL,
    EVENTS,
    TOGETHER,
    ClusterNode,
    LinkCalls,
    channels,
)
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.names import Nick
from twisted_chat.core.room import Participant
from twisted_chat.core.settings import Settings
from twisted_chat.history.memory import MemoryStore
from twisted_chat.testing import RecordingClient


class Bus:
    """Redis's pub/sub and nick claims, in memory, delivered on ``run``."""

    def __init__(self) -> None:
        self.links: list[FakeLink] = []
        self.queue: list[tuple[str, bytes]] = []
        self.published: list[tuple[str, bytes]] = []
        #: nick key -> node holding it
        self.owners: dict[str, str] = {}

    def run(self) -> bool:
        moved = bool(self.queue)
        while self.queue:
            channel, data = self.queue.pop(0)
            for link in self.links:
                if link.up and channel in link.channels:
                    link.calls.message(channel, data)
        return moved


class FakeLink:
    def __init__(self, bus: Bus, node: str, calls: LinkCalls) -> None:
        self.bus = bus
        self.channels = channels(node)
        self.calls = calls
        self.up = True
        bus.links.append(self)

    def publish(self, channel: str, data: bytes) -> None:
        if self.up:
            self.bus.queue.append((channel, data))
            self.bus.published.append((channel, data))

    def stop(self) -> Deferred[None]:
        return succeed(None)


class FakeClaims:
    def __init__(self, bus: Bus, node: str) -> None:
        self.bus = bus
        self.node = node

    def claim(self, key: str, display: str, at: float) -> Deferred[bool]:
        del display, at
        owner = self.bus.owners.setdefault(key, self.node)
        return succeed(owner == self.node)

    def release(self, key: str) -> None:
        if self.bus.owners.get(key) == self.node:
            del self.bus.owners[key]

    def prune(self, keep: list[str]) -> Deferred[int]:
        mine = [
            k for k, n in self.bus.owners.items() if n == self.node and k not in keep
        ]
        for key in mine:
            del self.bus.owners[key]
        return succeed(len(mine))

    def reclaim(self, key: str, display: str, at: float) -> Deferred[str | None]:
        del display, at
        owner = self.bus.owners.setdefault(key, self.node)
        return succeed(None if owner == self.node else owner)


class FakeLease:
    def start(self) -> Deferred[None]:
        return succeed(None)

    def renew_now(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)


class Cluster:
    def __init__(self) -> None:
        self.clock = Clock()
        self.bus = Bus()
        self.nodes: dict[str, ClusterNode] = {}
        self.remote: dict[str, list[tuple[str, bytes]]] = {}

    def node(self, name: str, store: MemoryStore | None = None) -> ChatServer:
        clock = self.clock
        server = ChatServer(
            Settings(), clock.seconds, store, defer=lambda f: clock.callLater(0, f)
        )
        calls = LinkCalls()
        link = FakeLink(self.bus, name, calls)
        said = self.remote.setdefault(name, [])
        node = ClusterNode(
            server,
            link,  # type: ignore[arg-type]
            calls,
            clock,
            name,
            remote_lines=lambda key, _room, _at, data: said.append((key, data)),
        )
        node.nicks.claims = FakeClaims(self.bus, name)  # type: ignore[assignment]
        node.lease = FakeLease()  # type: ignore[assignment]
        self.nodes[name] = node
        calls.up()
        self.settle()
        return server

    def settle(self) -> None:
        for _ in range(50):
            self.clock.advance(0)
            if not self.bus.run() and not self.clock.getDelayedCalls():
                return
        raise AssertionError("the bus never settled")

    def in_room(
        self, server: ChatServer, nick: str, room: str = "#ops"
    ) -> tuple[RecordingClient, Participant]:
        """A user who then joins ``room`` (its operator, if they make it)."""
        client, participant = self.user(server, nick)
        server.receive(participant, f"/join {room}")
        self.settle()
        client.clear()
        return client, participant

    def user(
        self, server: ChatServer, nick: str
    ) -> tuple[RecordingClient, Participant]:
        client = RecordingClient()
        participant = server.connect(client)
        self.settle()
        server.receive(participant, f"/nick {nick}")
        self.settle()
        assert participant.nick.display == nick, client.lines()
        client.clear()
        return client, participant


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


def test_users_on_two_nodes_chat_and_see_each_other(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    alice_client, alice = cluster.user(a, "alice")
    bob_client, bob = cluster.user(b, "bob")
    assert alice_client.lines()[-1].endswith(" is now known as bob")
    a.receive(alice, "hello from a")
    cluster.settle()
    assert bob_client.lines() == ["[#lobby] <alice> hello from a"]
    assert "[#lobby] <alice> hello from a" not in alice_client.lines()
    b.receive(bob, "/who")
    assert bob_client.lines()[-2] == "* 2 people in #lobby:"
    assert bob_client.lines()[-1] == "* @alice, bob"
    b.receive(bob, "/rooms")
    assert bob_client.lines()[-1] == "* #lobby (2 people)"


def test_a_room_is_published_once_per_turn_whatever_was_said(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    _, alice = cluster.user(a, "alice")
    bob_client, _ = cluster.user(b, "bob")
    cluster.bus.published.clear()
    for n in range(5):
        a.receive(alice, f"line {n}")
    cluster.settle()
    rooms = [data for channel, data in cluster.bus.published if channel == EVENTS]
    assert len(rooms) == 1
    assert bob_client.lines() == [f"[#lobby] <alice> line {n}" for n in range(5)]


def test_private_messages_reach_the_other_node(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    alice_client, _alice = cluster.user(a, "alice")
    bob_client, bob = cluster.user(b, "bob")
    b.receive(bob, "/msg alice psst")
    cluster.settle()
    assert alice_client.lines()[-1] == "[PM] <bob> psst"
    assert "[PM]" not in " ".join(bob_client.lines())


def test_two_nodes_racing_for_a_nick_have_one_winner(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    x_client, x = cluster.user(a, "ex")
    y_client, y = cluster.user(b, "why")
    a.receive(x, "/nick zed")
    b.receive(y, "/nick ZED")
    cluster.settle()
    answers = [x_client.lines(), y_client.lines()]
    won = [lines for lines in answers if "* You are now known as zed." in lines]
    won += [lines for lines in answers if "* You are now known as ZED." in lines]
    lost = [
        lines
        for lines in answers
        if any(line.startswith("! nick-in-use") for line in lines)
    ]
    assert len(won) == 1, answers
    assert len(lost) == 1, answers
    assert {x.nick.key, y.nick.key} == {
        "zed",
        y.nick.key if x.nick.key == "zed" else "zed",
    }


def test_a_dead_node_s_users_quit_and_free_their_nicks(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    cluster.user(a, "alice")
    bob_client, bob = cluster.user(b, "bob")
    dead = {"kind": "node-dead", "node": "a"}
    link: Any = cluster.nodes["a"].link
    link.up = False
    cluster.bus.owners = {k: n for k, n in cluster.bus.owners.items() if n != "a"}
    cluster.bus.queue.append((CONTROL, wire.line(dead)))
    cluster.settle()
    assert "* alice quit (connection lost)" in bob_client.lines()
    b.receive(bob, "/nick alice")
    cluster.settle()
    assert bob.nick.display == "alice"


def test_running_alone_is_said_once_and_the_way_back(cluster: Cluster) -> None:
    a = cluster.node("a")
    alice_client, _ = cluster.user(a, "alice")
    calls: Any = cluster.nodes["a"].link.calls  # type: ignore[attr-defined]
    calls.down("refused")
    calls.down("refused again")
    assert alice_client.lines() == [f"* {ALONE}"]
    calls.up()
    cluster.settle()
    assert alice_client.lines()[-1] == f"* {TOGETHER}"


def test_a_late_node_mirrors_everybody_quietly(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    cluster.user(a, "alice")
    cluster.user(b, "bob")
    c = cluster.node("c")
    carol_client, carol = cluster.user(c, "carol")
    c.receive(carol, "/who")
    listing = carol_client.lines()[-1]
    assert all(name in listing for name in ("alice", "bob", "carol")), listing
    assert not [line for line in carol_client.lines() if "joined" in line]


def test_what_other_nodes_said_is_not_stored_twice(cluster: Cluster) -> None:
    store_a, store_b = MemoryStore(), MemoryStore()
    a, b = cluster.node("a", store_a), cluster.node("b", store_b)
    _, alice = cluster.user(a, "alice")
    cluster.user(b, "bob")
    a.receive(alice, "kept once")
    cluster.settle()
    assert [m.text for m in store_a.recent("#lobby", 10)] == ["kept once"]
    assert store_b.recent("#lobby", 10) == []
    assert cluster.remote["b"] == [("#lobby", b"[#lobby] <alice> kept once\r\n")]


def test_a_kick_on_one_node_removes_the_user_on_theirs(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    _, op = cluster.in_room(a, "op")
    bob_client, bob = cluster.in_room(b, "bob")
    a.receive(op, "/kick bob spam")
    cluster.settle()
    assert "#ops" not in bob.rooms
    assert any("kicked" in line or "removed" in line for line in bob_client.lines())
    room = a.rooms["#ops"]
    assert [p.nick.display for p in room.members] == ["op"]


def test_a_quit_comes_after_the_last_words(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    _, alice = cluster.user(a, "alice")
    bob_client, _ = cluster.user(b, "bob")
    a.receive(alice, "bye all")
    a.disconnect(alice, "leaving")
    cluster.settle()
    assert bob_client.lines() == ["[#lobby] <alice> bye all", "* alice quit (leaving)"]
    assert "alice" not in b.participants


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b'{"n": "x"}\nnot json', b"[1, 2]", b'{"n": "z", "r": 5}\n{}'],
)
def test_garbage_on_the_channels_is_ignored(cluster: Cluster, data: bytes) -> None:
    b = cluster.node("b")
    _bob_client, bob = cluster.user(b, "bob")
    for channel in (EVENTS, CONTROL, "tc:to:b"):
        cluster.bus.queue.append((channel, data))
    cluster.settle()
    b.receive(bob, "still here")
    assert bob.gone is False


def test_a_room_ban_on_one_node_refuses_on_another(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    _, op = cluster.in_room(a, "op")
    carol_client, carol = cluster.user(b, "carol")
    carol.host = "10.0.0.9"
    a.receive(op, "/ban 10.0.0.9 spam")
    cluster.settle()
    b.receive(carol, "/join #ops")
    cluster.settle()
    assert carol_client.lines()[-1].startswith("! banned:"), carol_client.lines()
    assert "#ops" not in carol.rooms


def test_an_operator_made_on_one_node_acts_on_another(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    _, op = cluster.in_room(a, "op")
    bob_client, bob = cluster.in_room(b, "bob")
    a.receive(op, "/op bob")
    cluster.settle()
    b.receive(bob, "/topic set by bob")
    b.receive(bob, "/kick op bye")
    cluster.settle()
    assert not [line for line in bob_client.lines() if line.startswith("! ")]
    assert "#ops" not in op.rooms


def test_a_late_node_learns_the_rooms_operators_and_bans(cluster: Cluster) -> None:
    a = cluster.node("a")
    _, op = cluster.user(a, "op")
    a.receive(op, "/join #ops")
    a.receive(op, "/ban 10.0.0.9")
    cluster.settle()
    c = cluster.node("c")
    carol_client, carol = cluster.user(c, "carol")
    carol.host = "10.0.0.9"
    c.receive(carol, "/join #ops")
    assert carol_client.lines()[-1].startswith("! banned:")
    rules = c.rooms["#ops"].rules
    assert rules is not None
    assert [p.nick.display for p in rules.operators] == ["op"]


def test_a_kill_on_one_node_disconnects_the_user_on_theirs(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    a.settings = attrs.evolve(a.settings, operators=(("root", "$argon2id$x"),))
    oper_client, oper = cluster.user(a, "oper")
    oper.oper = "root"
    watcher_client, _ = cluster.user(a, "watcher")
    bob_client, bob = cluster.user(b, "bob")
    a.receive(oper, "/kill bob enough")
    cluster.settle()
    assert oper_client.lines()[-1].startswith("* "), oper_client.lines()
    assert bob.gone
    assert bob_client.closed
    assert "* You were killed by oper (enough)" in bob_client.lines()
    assert "bob" not in a.participants
    assert "bob" not in b.participants
    quits = [line for line in watcher_client.lines() if "bob quit" in line]
    assert quits == ["* bob quit (killed by oper: enough)"]


def test_a_login_elsewhere_is_seen_here(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    _, alice = cluster.user(a, "alice")
    cluster.user(b, "bob")
    alice.account = "alice"
    node = cluster.nodes["a"]
    node.changed(alice)
    cluster.settle()
    ghost = b.participants["alice"]
    assert ghost.remote
    assert ghost.account == "alice"
    alice.account = None
    a.directory.force_rename(alice, a.directory.guest_nick())  # a logout
    cluster.settle()
    after = b.participants[alice.nick.key]
    assert after is ghost
    assert after.account is None


def test_names_given_up_while_alone_are_free_after(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    _, alice = cluster.user(a, "alice")
    _, carol = cluster.user(a, "carol")
    _, bob = cluster.user(b, "bob")
    link: Any = cluster.nodes["a"].link
    link.up = False
    link.calls.down("refused")
    a.disconnect(alice, "leaving")  # her release cannot be sent
    a.receive(carol, "/nick caroline")  # nor carol's
    link.up = True
    link.calls.up()
    cluster.settle()
    b.receive(bob, "/nick alice")
    cluster.settle()
    assert bob.nick.display == "alice"
    b.receive(bob, "/nick carol")
    cluster.settle()
    assert bob.nick.display == "carol"


def test_a_private_message_while_redis_is_away_says_so(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    cluster.user(a, "alice")
    bob_client, bob = cluster.user(b, "bob")
    link: Any = cluster.nodes["b"].link
    link.up = False
    b.receive(bob, "/msg alice are you there")
    assert bob_client.lines()[-1].startswith("! no-such-nick: alice is on another node")
    assert not cluster.bus.queue


def test_a_remote_rename_onto_a_name_held_here_waits_for_it(cluster: Cluster) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    zed_client, zed = cluster.user(a, "zed")
    _, bob = cluster.user(b, "bob")
    ghost = b.participants["zed"]
    # Taken on both nodes without asking (a login's or IRC registration's
    # rename): b claimed first, so a's zed gets the name back.
    b.directory.force_rename(bob, Nick.parse("zoe"))
    a.directory.force_rename(zed, Nick.parse("zoe"))
    cluster.settle()
    assert zed.nick.display == "zed"
    taken = [line for line in zed_client.lines() if "taken on another node" in line]
    assert taken == [
        (
            "* zoe is taken on another node of this server; you are zed now "
            "(/nick NAME to choose another)."
        )
    ]
    assert b.participants["zoe"] is bob
    assert b.participants["zed"] is ghost
    assert ghost.nick.display == "zed"
