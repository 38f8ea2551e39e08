"""
Several daemons as one chat server (issue 19), end to end, judged from
PROTOCOL.md ("Several daemons as one server") and the issue alone.

Each test starts a real ``redis-server`` on a free loopback port (persistence
off) and real ``twistd -n chat --cluster redis://127.0.0.1:PORT/0`` nodes
(``tests/_cluster_nodes.py``), and talks to them over real TCP and UDP
sockets from their own loopback addresses, like the accounts and operator
end-to-end tests whose clients it reuses.  A node is stopped with ``kill -9``
and Redis with SIGKILL, as a crash would; the fixture kills what is left.

What a single node promises must hold across nodes: users on different
nodes chat, act, send private messages, see each other in ``/who`` and
``/rooms``, change nicks (unique cluster-wide, so two nodes racing for one
nick give exactly one winner), see topics, get history replayed on join
from a node that never saw it, and share accounts and server bans.  A dead
node's users quit (``connection lost``) on the others within 15 s and their
nicks are free again; with Redis gone each node keeps chatting with its own
users, says so once, and joins up again when Redis is back, without a
restart, renaming the later claimant of a nick taken twice meanwhile.

Nothing sleeps for luck; the only timed wait is the outage test's 10 s of
Redis being down, which is what that test is about.
"""

from __future__ import annotations

import functools
import re
import signal
import time
from pathlib import Path
from typing import Protocol

import pytest
from _cluster_nodes import (
    ALONE,
    DEAD_NODE_SECONDS,
    Cluster,
    Node,
    eventually,
    said,
    who,
)
from _cluster_nodes import cluster as cluster  # noqa: PLC0414 - the fixture
from _redis import redis_server
from conftest import TIMEOUT, free_port
from test_accounts_e2e import Client, whois
from test_irc_e2e import Irc
from test_operators_e2e import (
    assert_banned_on_connect,
    assert_one_banned_line,
    assert_udp_banned_on_hello,
)
from test_web_e2e import Ws

pytestmark = pytest.mark.slow

#: How long nodes may take to find each other again after Redis is back
#: (their back-off reaches 8 s, and a reconnect re-announces everybody).
REJOIN_SECONDS = 30.0
NICK_ANSWER = r"^(\* You are now known as |! )"
ROOM_LINE = re.compile(r"^\[#dev [^\]]+\] ")


class User(Protocol):
    """A TCP or UDP test client: both say lines and wait for one."""

    def say(self, text: str) -> None: ...

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> str: ...


def meet(room: str, **users: User) -> None:
    """
    The users (by nick, in order) join ``room``, and each one already in it
    sees every later one join: the nodes have told each other.
    """
    present: list[User] = []
    for nick, user in users.items():
        user.say(f"/join {room}")
        user.expect(rf"^\* You joined {re.escape(room)}")
        for earlier in present:
            earlier.expect(rf"^\* {re.escape(nick)} joined {re.escape(room)}$")
        present.append(user)


def oper(node: Node, nick: str, name: str, secret: str) -> Client:
    """A client ``nick`` on ``node`` that is server operator ``name``."""
    client = node.connect(nick)
    line = client.reply(f"/oper {name} {secret}")
    assert line.startswith("* "), line
    return client


def heard(sender: Client, nick: str, receiver: User, timeout: float) -> None:
    """
    ``sender`` (called ``nick``) says numbered lines in #dev until ``receiver``
    hears one: for when the nodes are finding each other again.
    """
    deadline = time.monotonic() + timeout
    for attempt in range(1000):
        sender.say(f"are you there {attempt}")
        try:
            receiver.expect(rf"^\[#dev\] <{nick}> are you there \d+$", timeout=1.0)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        else:
            return


def settled_reply(client: Client, command: str, pending: str) -> str:
    """
    The reply to ``command``, asked again while it starts with ``pending``:
    news from another node (a nick given up) may be a moment behind.
    """
    deadline = time.monotonic() + TIMEOUT
    while True:
        line = client.reply(command)
        if not line.startswith(pending) or time.monotonic() > deadline:
            return line
        time.sleep(0.1)  # polling a condition, bounded by the deadline


def never_alone(*clients: Client) -> None:
    """Nobody was told the server runs alone, nor saw an internal error."""
    for client in clients:
        assert not said(client, rf"^{re.escape(ALONE)}|internal-error|Traceback")


# -- the harness itself -----------------------------------------------------------


@pytest.mark.parametrize("clustered", [False, True], ids=["alone", "clustered"])
def test_harness_runs_redis_and_three_nodes(tmp_path: Path, clustered: bool) -> None:
    """
    Redis answers, three nodes start on their own ports and serve their users,
    and everything is gone afterwards; without ``--cluster`` (the harness
    alone) and with it (the nodes also find each other).
    """
    with redis_server() as server:
        assert server.cli("PING") == "PONG"
        world = Cluster(tmp_path, server, clustered=clustered)
        try:
            nodes = world.start("a", "b", "c")
            assert len({node.port for node in nodes}) == 3
            for node in nodes:
                one = node.connect(f"one{node.name}")
                two = node.connect(f"two{node.name}")
                one.say(f"local chat on {node.name}")
                assert two.expect(r"^\[#lobby\]") == (
                    f"[#lobby] <one{node.name}> local chat on {node.name}"
                )
            if world.clustered:
                assert server.cli("DBSIZE") != "0"  # the nodes wrote something
        finally:
            world.close()
        assert not world.live
        procs = [node.proc for node in world.nodes.values()]
        assert procs == [None, None, None]
    assert server.proc is None


# -- one server, three daemons ------------------------------------------------------


def test_users_on_different_nodes_chat(cluster: Cluster) -> None:
    """Room messages, actions, PMs, /who, /rooms, nick changes, parts and quits."""
    a, b, c = cluster.start("a", "b", "c")
    alice = a.connect("alice")
    bob = b.connect("bob")
    carol = c.connect("carol")
    dave = b.udp("dave")  # UDP users are in the same rooms
    meet("#dev", alice=alice, bob=bob, carol=carol, dave=dave)

    alice.say("hello from a")
    for user in (bob, carol, dave):
        assert user.expect(r"^\[#dev\]") == "[#dev] <alice> hello from a"
    carol.say("/me waves from c")
    for user in (alice, bob, dave):
        assert user.expect(r"^\[#dev\]") == "[#dev] * carol waves from c"
    alice.settle()
    assert not said(alice, r"hello from a")  # no echo, from any node

    bob.say("/msg carol psst, from b")
    assert carol.expect(r"^\[PM\]") == "[PM] <bob> psst, from b"
    carol.say("/msg alice and from c")
    assert alice.expect(r"^\[PM\]") == "[PM] <carol> and from c"
    alice.say("/msg dave to udp on b")
    assert dave.expect(r"^\[PM\]") == "[PM] <alice> to udp on b"
    line = bob.reply("/msg nobody hello?")
    assert line.startswith("! no-such-nick: "), line
    assert not said(bob, r"^\[PM\]")  # a PM reaches its one addressee

    everyone = {"alice", "bob", "carol", "dave"}
    for user in (alice, bob, carol):
        assert who(user, "#dev") == everyone
    for user in (alice, carol):
        assert "* #dev (4 people)" in user.replies("/rooms")

    bob.nick("robert")
    for user in (alice, carol, dave):
        assert user.expect(r"^\* bob is now") == "* bob is now known as robert"
    assert who(carol, "#dev") == {"alice", "robert", "carol", "dave"}
    alice.say("/msg robert still you?")
    assert bob.expect(r"^\[PM\]") == "[PM] <alice> still you?"
    # The old nick is free again, on every node.
    answer = settled_reply(carol, "/nick bob", "! nick-in-use: ")
    assert answer == "* You are now known as bob.", answer
    assert alice.expect(r"^\* carol is now") == "* carol is now known as bob"

    bob.say("/part #dev off to lunch")
    for user in (alice, carol, dave):
        assert user.expect(r"^\* robert left") == "* robert left #dev (off to lunch)"
    assert who(alice, "#dev") == {"alice", "bob", "dave"}
    bob.say("/quit bye all")
    bob.read_until_closed()
    for user in (alice, carol, dave):
        assert user.expect(r"^\* robert quit") == "* robert quit (bye all)"
    assert who(carol, "#lobby") == {"alice", "bob", "dave"}
    never_alone(alice, carol)


def race(x: Client, y: Client, first: str, second: str) -> tuple[str, str]:
    """``x`` asks for ``first`` and ``y`` for ``second`` at once: their answers."""
    x.say(f"/nick {first}")
    y.say(f"/nick {second}")
    return x.expect(NICK_ANSWER), y.expect(NICK_ANSWER)


#: One name for a single node: case, width, look-alikes (a Cyrillic А, О).
RACES = [(f"race{n}", f"RACE{n}") for n in range(12)] + [
    ("Alice", "ＡＬＩＣＥ"),
    ("Anna", "Аnna"),
    ("Oleg", "Оleg"),
]


def agreed(clients: tuple[Client, ...], names: tuple[str, str]) -> bool:
    """Every client's ``/who #lobby`` lists the same one of ``names``."""
    seen = {frozenset(who(client, "#lobby") & set(names)) for client in clients}
    return len(seen) == 1 and len(next(iter(seen))) == 1


def test_irc_and_web_users_on_other_nodes(cluster: Cluster) -> None:
    """A line user on a, an IRC user on b, a browser on c: one room, PMs."""
    irc_port, web_port = free_port(), free_port()
    a = cluster.add("a")
    cluster.add("b", "--irc", f"tcp:{irc_port}:interface=127.0.0.1")
    cluster.add("c", "--web", f"tcp:{web_port}:interface=127.0.0.1")
    cluster.wait_formed()
    lina = a.connect("lina")
    lina.say("/join #dev")
    lina.expect(r"^\* You joined #dev")
    bob = Irc(irc_port)
    bob.register("bob")
    bob.send("JOIN #dev")  # at once, as IRC clients do after the MOTD
    join = bob.expect(r" JOIN #dev$")
    assert join.startswith(":bob!~bob@"), bob.lines  # the nick of its 001
    names = bob.expect(r" 353 bob = #dev :")
    assert set(names.split(":")[-1].split()) == {"@lina", "bob"}, names
    lina.expect(r"^\* bob joined #dev$")
    web = Ws(web_port)
    web.wait(lambda: web.accepted)
    web.expect("hello")
    web.say("/nick webby")
    web.expect("you", nick="webby")
    web.say("/join #dev")
    web.expect("join", room="#dev", nick="webby")
    members = web.expect("members", room="#dev")["members"]
    assert {member["nick"] for member in members} == {"lina", "bob", "webby"}
    lina.expect(r"^\* webby joined #dev$")
    bob.expect(r"^:webby!\S+ JOIN #dev$")

    lina.say("hello irc and web")
    line = bob.expect(r"PRIVMSG #dev :hello irc and web$")
    assert line.startswith(":lina!~lina@"), line
    assert "127.0.0" not in line  # a cloak, never the address
    assert web.expect("message", nick="lina")["text"] == "hello irc and web"
    bob.send("PRIVMSG #dev :from \x02irc\x02")
    assert lina.expect(r"^\[#dev\] <bob>") == "[#dev] <bob> from irc"
    assert web.expect("message", nick="bob")["text"] == "from irc"
    web.say("/me from the web")
    assert lina.expect(r"^\[#dev\] \* webby") == "[#dev] * webby from the web"
    bob.expect(r"PRIVMSG #dev :\x01ACTION from the web\x01$")
    bob.send("PRIVMSG webby :pm from irc")
    assert web.expect("private", nick="bob")["text"] == "pm from irc"
    web.say("/msg bob pm from the web")
    bob.expect(r"PRIVMSG bob :pm from the web$")
    lina.say("/msg bob and from a")
    bob.expect(r"^:lina!\S+ PRIVMSG bob :and from a$")
    bob.send("NICK robert")  # renames are claimed in Redis, and IRC still sees NICK
    bob.expect(r"^:bob!\S+ NICK :?robert$")
    assert lina.expect(r"^\* bob is now") == "* bob is now known as robert"
    assert web.expect("nick", old="bob")["new"] == "robert"
    bob.send("QUIT :off")
    assert lina.expect(r"^\* robert quit") == "* robert quit (Quit: off)"
    web.expect("quit", nick="robert")
    web.close()
    bob.close()


def test_nick_race_leaves_one_holder(cluster: Cluster) -> None:
    """Two nodes asked for one nick at the same moment: one user holds it, on all."""
    a, b, c = cluster.start("a", "b", "c")
    x = a.connect()
    y = b.connect()
    z = c.connect()
    for names in RACES:
        answers = race(x, y, *names)
        eventually(
            functools.partial(agreed, (x, y, z), names),
            f"one of {names} in #lobby, the same on every node, after {answers}",
        )
        line = z.reply(f"/nick {names[0]}")  # and the third node may not take it
        assert line.startswith("! nick-in-use: "), (answers, line)


def test_nick_race_loser_is_refused(cluster: Cluster) -> None:
    """
    PROTOCOL.md: a taken nick is refused with ``!``, the nick unchanged: of two
    nodes racing, one user gets ``* You are now known as``, the other
    ``! nick-in-use:``, and the room never sees the loser take the name.
    """
    a, b = cluster.start("a", "b")
    x = a.connect()
    y = b.connect()
    for first, second in RACES:
        answers = race(x, y, first, second)
        winners = [line for line in answers if line.startswith("* ")]
        assert len(winners) == 1, (first, second, answers)
        (refusal,) = set(answers) - set(winners)
        assert refusal.startswith("! nick-in-use: "), answers
    for client in (x, y):
        client.settle()
        assert not said(client, r"is taken on another node"), client.lines


def test_killed_node_users_quit_elsewhere(cluster: Cluster) -> None:
    """``kill -9`` of a node: its users quit on the others within 15 s, nicks free."""
    a, b, c = cluster.start("a", "b", "c")
    alice = a.connect("alice")
    bob = b.connect("bob")
    dave = c.connect("dave")
    erin = c.connect("erin")
    meet("#dev", alice=alice, bob=bob, dave=dave, erin=erin)
    dave.settle()
    erin.settle()

    killed = time.monotonic()
    c.kill()
    for watcher in (alice, bob):
        quits = set()
        for _ in range(2):
            left = killed + DEAD_NODE_SECONDS - time.monotonic()
            quits.add(watcher.expect(r"^\* (dave|erin) quit", timeout=max(0.0, left)))
        assert quits == {
            "* dave quit (connection lost)",
            "* erin quit (connection lost)",
        }
    alice.settle()
    assert len(said(alice, r"^\* dave quit")) == 1  # once, not once per room
    assert who(alice, "#dev") == {"alice", "bob"}
    assert who(bob, "#lobby") == {"alice", "bob"}
    line = alice.reply("/msg dave are you there?")
    assert line.startswith("! no-such-nick: "), line

    # Their nicknames are free again, on either surviving node.
    dave_again = b.connect("dave")
    a.connect("erin")
    alice.say("/msg dave you again?")
    assert dave_again.expect(r"^\[PM\]") == "[PM] <alice> you again?"
    bob.say("still two of us")
    assert alice.expect(r"^\[#dev\]") == "[#dev] <bob> still two of us"
    never_alone(alice, bob)


def test_redis_outage(cluster: Cluster) -> None:
    """
    Redis down for 10 s: every user told once, local chat goes on; Redis back:
    the same processes chat across nodes again, nicks are unique again (the
    later of two claimants made meanwhile becomes a guest).
    """
    a, b = cluster.start("a", "b")
    assert a.proc is not None
    assert b.proc is not None
    pids = (a.proc.pid, b.proc.pid)
    alice = a.connect("alice")
    carol = a.connect("carol")
    bob = b.connect("bob")
    dave = b.connect("dave")
    users = {"alice": alice, "carol": carol, "bob": bob, "dave": dave}
    meet("#dev", **users)
    # Two who will both take the nick zed meanwhile: later on b, who connected
    # first, takes it after first on a: the later claim is later's.
    later = b.connect()
    first = a.connect()

    cluster.redis.stop()
    down = time.monotonic()
    for user in users.values():
        line = user.expect(rf"^{re.escape(ALONE)}")
        assert len(line) > len(ALONE), line  # it says why, or what to expect
    during = b.connect()  # someone new meanwhile is told as well
    alice.say("only on a")
    assert carol.expect(r"^\[#dev\]") == "[#dev] <alice> only on a"
    bob.say("only on b")
    assert dave.expect(r"^\[#dev\]") == "[#dev] <bob> only on b"
    # The same nick taken on both nodes while they cannot tell: zed on a first.
    first.nick("zed")
    later.nick("zed")
    assert time.monotonic() - down < 10.0, "the outage checks took too long"
    time.sleep(max(0.0, 10.0 - (time.monotonic() - down)))  # the outage itself
    cluster.redis.start()

    heard(alice, "alice", bob, REJOIN_SECONDS)
    bob.say("and back to a")
    for user in (alice, carol):
        assert user.expect(r"^\[#dev\] <bob>") == "[#dev] <bob> and back to a"
    dave.say("/msg carol across again")
    assert carol.expect(r"^\[PM\]") == "[PM] <dave> across again"
    everyone = set(users)
    eventually(
        lambda: who(alice, "#dev") == everyone and who(bob, "#dev") == everyone,
        "both nodes list everyone in #dev again",
        REJOIN_SECONDS,
    )
    # The collision: the later claimant is renamed to a guest, the earlier keeps it.
    renamed = later.expect(r"(?i)^\* .*\byour?\b.*\bguest\d+", timeout=REJOIN_SECONDS)
    guest = re.findall(r"\bguest\d+", renamed)[-1]
    assert said(first, r"^\* You are now known as ") == ["* You are now known as zed."]
    # Redis came back empty (no persistence): the nodes claimed their nicks again.
    newcomer = b.connect()
    for nick in ("alice", "bob", "zed"):
        line = newcomer.reply(f"/nick {nick}")
        assert line.startswith("! nick-in-use: "), (nick, line)
    lobby = who(newcomer, "#lobby")
    assert {"zed", guest} <= lobby, lobby

    also = {"first": first, "later": later, "during": during}
    for name, user in {**users, **also}.items():
        user.settle()
        assert len(said(user, rf"^{re.escape(ALONE)}")) == 1, (name, user.lines)
        assert not said(user, r"internal-error|Traceback"), user.lines
    assert (a.proc.pid, b.proc.pid) == pids
    assert a.running
    assert b.running
    assert "Unhandled Error" not in a.log + b.log


def test_redis_frozen_then_resumed_with_its_data(cluster: Cluster) -> None:
    """
    Redis frozen (SIGSTOP) for 10 s and resumed with everything it held: the
    nodes run alone meanwhile, then join up with nobody taken for dead, the
    accounts made before are still there, and one made meanwhile is either
    refused or kept, never lost after being promised.
    """
    a, b = cluster.start("a", "b")
    redis = cluster.redis.proc
    assert redis is not None
    alice, secret = a.register("alice")
    bob = b.connect("bob")
    carol = a.connect("carol")
    users = {"alice": alice, "bob": bob, "carol": carol}
    meet("#dev", **users)

    redis.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        for user in users.values():
            user.expect(rf"^{re.escape(ALONE)}")
        dana = b.connect("dana")
        dana_secret = cluster.secret()
        made = dana.reply(f"/register {dana_secret}")
        dana.say("/quit")
        dana.read_until_closed()
        time.sleep(max(0.0, 10.0 - (time.monotonic() - frozen)))  # the outage
    finally:
        redis.send_signal(signal.SIGCONT)

    heard(alice, "alice", bob, REJOIN_SECONDS)
    eventually(
        lambda: who(bob, "#dev") == set(users),
        "b lists everyone in #dev again",
        REJOIN_SECONDS,
    )
    for name, user in users.items():
        user.settle()
        dead = said(user, r" quit \(connection lost\)")
        assert not dead, (name, user.lines)  # nobody was taken for dead
        assert len(said(user, rf"^{re.escape(ALONE)}")) == 1, (name, user.lines)
    alice.say("/quit")
    alice.read_until_closed()
    bob.expect(r"^\* alice quit")
    other = b.connect()
    line = other.reply(f"/login alice {secret}")
    assert line.startswith("* "), line
    if made.startswith("* "):  # promised while alone: it must hold everywhere
        for node in (a, b):
            line = node.connect().reply(f"/login dana {dana_secret}")
            assert line.startswith("* "), (made, node, line)
    else:
        assert made.startswith("! "), made
    cluster.check_secrets()


def test_history_from_a_node_that_did_not_see_it(cluster: Cluster) -> None:
    """A node started after the messages replays them on join (to --history-max)."""
    cluster.extra = ("--history-max", "3")
    (a,) = cluster.start("a")
    alice = a.connect("alice")
    alice.say("/join #dev")
    alice.expect(r"^\* You joined #dev")
    for n in range(1, 6):
        alice.say(f"line {n}")
    alice.say("/me waves")
    alice.settle()
    expected = ["<alice> line 4", "<alice> line 5", "* alice waves"]

    b, c = cluster.start("b", "c")  # neither saw a word of it
    for node, nick in ((b, "frank"), (c, "grace")):
        user = node.connect(nick)
        user.say("/join #dev")
        got = user.settle()
        replayed = [ROOM_LINE.sub("", line) for line in got if ROOM_LINE.match(line)]
        assert replayed == expected, got
        user.say("/part")
        user.settle()

    # And what is said on a later node is history everywhere.
    heidi = c.connect("heidi")
    meet("#dev", heidi=heidi)
    heidi.say("said on c")
    alice.expect(r"^\[#dev\] <heidi> said on c$")
    late = b.connect("ivan")
    late.say("/join #dev")
    got = [ROOM_LINE.sub("", line) for line in late.settle() if ROOM_LINE.match(line)]
    assert got == ["<alice> line 5", "* alice waves", "<heidi> said on c"], got


def test_server_ban_holds_on_every_node(cluster: Cluster) -> None:
    """A /serverban on a drops matching users on b and c and refuses them anywhere."""
    secrets = cluster.operators("root", "admin")
    a, b, c = cluster.start("a", "b", "c")
    root = oper(a, "root", "root", secrets["root"])
    neighbour = b.connect("neighbour", source="127.0.32.1")
    victims = [
        b.connect("victimb", source="127.0.31.5"),
        c.connect("victimc", source="127.0.31.6"),
    ]
    victims[0].expect(r"^\* \S+ is now known as victimc$")  # news from c is in
    for victim in victims:
        victim.settle()  # it has read everything before the ban
    line = root.reply("/serverban 127.0.31.0/24 spam from afar")
    assert line.startswith("* "), line
    for victim in victims:
        assert_one_banned_line(victim.read_until_closed())
    quits = {neighbour.expect(r"^\* victim[bc] quit") for _ in victims}
    assert {q.split()[1] for q in quits} == {"victimb", "victimc"}
    for node, source in ((a, "127.0.31.7"), (b, "127.0.31.8"), (c, "127.0.31.9")):
        assert_banned_on_connect(node, source)
    assert_udp_banned_on_hello(c, "127.0.31.10")
    (d,) = cluster.start("d")  # a node started after the ban has it too
    assert_banned_on_connect(d, "127.0.31.11")

    admin = oper(c, "admin", "admin", secrets["admin"])
    assert "127.0.31.0/24" in "\n".join(admin.replies("/serverbans"))
    line = admin.reply("/serverunban 127.0.31.0/24")
    assert line.startswith("* "), line
    eventually(
        lambda: "127.0.31.0/24" not in "\n".join(root.replies("/serverbans")),
        "the unban on c reaches a",
    )
    back = a.connect("back", source="127.0.31.5")
    back.say("hi again")
    assert neighbour.expect(r"^\[#lobby\] <back>") == "[#lobby] <back> hi again"
    cluster.check_secrets()


def test_account_registered_on_one_node_used_on_another(cluster: Cluster) -> None:
    """/register on a; the nick is protected on b, /login works there, and back."""
    a, b = cluster.start("a", "b")
    bystander = a.connect("bystander")
    alice, secret = a.register("alice")
    alice.say("/quit")
    alice.read_until_closed()
    bystander.expect(r"^\* alice quit")

    other = b.connect()
    answer = settled_reply(other, "/nick alice", "! nick-in-use: ")
    assert answer.startswith("! nick-registered: "), answer
    line = other.reply(f"/login alice {cluster.secret()}")
    assert line.startswith("! login-failed: "), line
    line = other.reply(f"/login alice {secret}")
    assert line.startswith("* "), line
    other.say("said on b as alice")
    assert bystander.expect(r"^\[#lobby\]") == "[#lobby] <alice> said on b as alice"
    about = whois(bystander, "alice")
    assert "alice" in about
    assert "tcp" in about.lower()
    assert "#lobby" in about

    newer = cluster.secret()
    line = other.reply(f"/password {secret} {newer}")
    assert line.startswith("* "), line
    other.say("/quit")
    other.read_until_closed()
    bystander.expect(r"^\* alice quit")
    (c,) = cluster.start("c")  # a node that was not there for any of it
    for node in (a, c):
        again = node.connect()
        line = again.reply(f"/login alice {newer}")
        assert line.startswith("* "), (node, line)
        again.say("/logout")
        again.settle()
        line = again.reply(f"/login alice {secret}")
        assert line.startswith("! login-failed: "), (node, line)
    cluster.check_secrets()


def test_topic_set_on_one_node_seen_on_another(cluster: Cluster) -> None:
    """
    The room sees the new topic on every node; a joiner on a node started
    after it was set is shown it.
    """
    a, b = cluster.start("a", "b")
    alice = a.connect("alice")
    bob = b.connect("bob")
    meet("#dev", alice=alice, bob=bob)
    alice.say("/topic Release on Friday")
    assert bob.expect(r"^\* alice set the topic") == (
        "* alice set the topic of #dev to: Release on Friday"
    )

    (c,) = cluster.start("c")
    carol = c.connect("carol")
    carol.say("/join #dev")
    assert carol.expect(r"^\* You joined #dev") == (
        "* You joined #dev; 2 other people here (/who lists them)."
    )
    assert carol.expect(r"^\* Topic of #dev") == "* Topic of #dev: Release on Friday"
    line = carol.reply("/topic")
    assert line == "* Topic of #dev: Release on Friday (set by alice)", line
    assert "* #dev (3 people): Release on Friday" in carol.replies("/rooms")

    carol.say("/topic Moved to Monday")
    for user in (alice, bob):
        assert user.expect(r"^\* carol set the topic") == (
            "* carol set the topic of #dev to: Moved to Monday"
        )
    line = bob.reply("/topic")
    assert line == "* Topic of #dev: Moved to Monday (set by carol)", line
    never_alone(alice, bob, carol)
