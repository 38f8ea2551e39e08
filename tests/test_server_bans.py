"""
Server bans (twisted_chat.core.server_bans): /serverban by address, block,
account and nick, with and without a duration; the one ``! banned:`` line
and nothing else; the check at connect and login; the file; the bounds.
"""

from __future__ import annotations

import pytest
from test_operators_core import Rig, make_rig
from twisted.internet.task import Clock
from twisted.logger import LogEvent

from twisted_chat.accounts.store import MemoryAccountStore
from twisted_chat.core.bans import BAN_LIST_SIZE, Ban, parse_pattern
from twisted_chat.core.names import name_key
from twisted_chat.core.server_bans import BANS_SHOWN
from twisted_chat.testing import RecordingClient

FOREVER = "the ban lasts until it is lifted."


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def banned(reason: str = "", how_long: str = FOREVER) -> str:
    why = f" ({reason})" if reason else ""
    return f"! banned: You are banned from this server{why}; {how_long}"


def assert_ejected(client: RecordingClient, line: str) -> None:
    """Exactly one line, in one write, and the connection closed."""
    assert client.sent == [line.encode() + b"\r\n"]
    assert client.closed


def test_ban_an_address(rig: Rig, log_events: list[LogEvent]) -> None:
    client, root = rig.oper()
    victim_client, victim = rig.connect("victim", host="198.51.100.5")
    neighbour_client, _ = rig.connect("neighbour", host="198.51.100.6")
    rig.clear_all()
    rig.say(root, "/serverban 198.51.100.5 go away")
    rig.turn()
    assert_ejected(victim_client, banned("go away"))
    assert victim.gone
    assert neighbour_client.lines() == ["* victim quit (banned)"]
    assert client.lines() == [
        "* victim quit (banned)",
        "* Server ban on 198.51.100.5 added (until lifted); 1 client disconnected.",
    ]
    [event] = [e for e in log_events if e.get("action") == "serverban"]
    assert (event["oper"], event["target"], event["reason"]) == (
        "Root",
        "198.51.100.5",
        "go away",
    )
    # Later connections from it get the line and nothing else.
    again = RecordingClient()
    participant = rig.server.connect(again, "198.51.100.5", host="198.51.100.5")
    assert participant.gone
    assert participant not in rig.server.participants.values()
    assert_ejected(again, banned("go away"))
    rig.server.receive(participant, "hello?")  # the transport's later calls
    rig.server.disconnect(participant, "lost")
    assert again.sent == [banned("go away").encode() + b"\r\n"]
    _, other = rig.connect(host="198.51.100.6")
    assert not other.gone
    assert rig.server.operators.stats.refusals == {"banned": 1}


def test_lift_a_ban(rig: Rig, log_events: list[LogEvent]) -> None:
    client, root = rig.oper()
    rig.say(root, "/serverban 198.51.100.5")
    rig.say(root, "/serverunban 198.51.100.5")
    rig.say(root, "/serverunban 198.51.100.5")
    assert client.lines()[1:] == [
        "* Server ban on 198.51.100.5 lifted.",
        "! usage: No server ban on 198.51.100.5; /serverbans lists them.",
    ]
    _, back = rig.connect(host="198.51.100.5")
    assert not back.gone
    assert [e["target"] for e in log_events if e.get("action") == "serverunban"] == [
        "198.51.100.5"
    ]
    assert rig.store.server_bans() == []


@pytest.mark.parametrize(
    ("pattern", "inside", "outside"),
    [
        ("198.51.100.0/24", ["198.51.100.5", "::ffff:198.51.100.9"], ["198.51.101.1"]),
        ("2001:db8:1::/48", ["2001:db8:1::5", "2001:db8:1:ff::1"], ["2001:db8:2::1"]),
        ("203.0.113.7", ["::ffff:203.0.113.7"], ["203.0.113.8"]),
    ],
)
def test_ban_a_block(
    rig: Rig, pattern: str, inside: list[str], outside: list[str]
) -> None:
    client, root = rig.oper()
    victims = [rig.connect(host=host) for host in inside]
    bystanders = [rig.connect(host=host) for host in outside]
    rig.clear_all()
    rig.say(root, f"/serverban {pattern} 1d")
    rig.turn()
    line = banned(how_long="the ban ends in 1d.")
    for victim_client, _ in victims:
        assert_ejected(victim_client, line)
    for bystander_client, bystander in bystanders:
        assert not bystander_client.closed
        assert not bystander.gone
    clients = "1 client" if len(inside) == 1 else f"{len(inside)} clients"
    assert client.lines()[-1].endswith(f"(1d); {clients} disconnected.")
    for host in inside:
        assert rig.server.operators.refusal(host, None) == line.encode() + b"\r\n"
    for host in outside:
        assert rig.server.operators.refusal(host, None) is None


def test_ban_an_account_and_refuse_its_login(rig: Rig) -> None:
    _client, root = rig.oper()
    bob_client, bob = rig.connect("bob")
    rig.store.create("Bob", "fake$x", 0.0)
    bob.account = name_key("Bob")  # logged in (as H1's /login does)
    guest_client, _ = rig.connect("guest", host=bob.host)  # same address
    rig.clear_all()
    rig.say(root, "/serverban account:BOB spam")
    rig.turn()
    assert_ejected(bob_client, banned("spam"))
    assert not guest_client.closed
    # A login to it, from anywhere, gets the same line.
    line = rig.server.operators.refusal("203.0.113.50", name_key("bob"))
    assert line == banned("spam").encode() + b"\r\n"
    assert rig.server.operators.refusal("203.0.113.50", None) is None


def test_a_nick_bans_the_account_of_a_logged_in_person(rig: Rig) -> None:
    client, root = rig.oper()
    bob_client, bob = rig.connect("bob")
    rig.store.create("Bob", "fake$x", 0.0)
    bob.account = name_key("Bob")
    rig.say(root, "/serverban bob")
    rig.turn()
    assert_ejected(bob_client, banned())
    assert client.lines()[-1].startswith("* Server ban on account:Bob added")
    _, same_address = rig.connect(host=bob.host)
    assert not same_address.gone


def test_a_nick_bans_the_address_of_a_guest(rig: Rig) -> None:
    client, root = rig.oper()
    _, guest = rig.connect("mallory", host="2001:db8::77")
    rig.say(root, "/serverban mallory 30m flooding")
    rig.turn()
    assert guest.gone
    assert client.lines()[-1].startswith("* Server ban on 2001:db8::77 added (30m)")
    again = RecordingClient()
    rig.server.connect(again, "x", host="2001:db8::77")
    assert_ejected(again, banned("flooding", "the ban ends in 30m."))


def test_a_nick_that_is_not_here_or_has_no_address(rig: Rig) -> None:
    client, root = rig.oper()
    local_client = RecordingClient()
    local = rig.server.connect(local_client)  # a UNIX socket: no address
    rig.turn()
    client.clear()
    rig.say(root, "/serverban nobody")
    rig.say(root, f"/serverban {local.nick.display}")
    rig.say(root, "/serverban 0.0.0.0/4")
    first, second, third = client.lines()
    assert first.startswith("! no-such-nick: ")
    assert second.startswith("! usage: ")
    assert "no IP address" in second
    assert third.startswith("! usage: ")
    assert "too wide" in third
    assert not len(rig.server.operators.server_bans)


def test_a_ban_with_a_duration_ends(rig: Rig) -> None:
    _client, root = rig.oper()
    rig.say(root, "/serverban 198.51.100.5 2h spam")
    rig.clock.advance(3600)
    assert rig.server.operators.refusal("198.51.100.5", None) == (
        banned("spam", "the ban ends in 1h.").encode() + b"\r\n"
    )
    rig.clock.advance(3600)
    assert rig.server.operators.refusal("198.51.100.5", None) is None
    _, back = rig.connect(host="198.51.100.5")
    assert not back.gone
    assert rig.store.server_bans() != []  # dropped from the file at the next save
    rig.say(root, "/serverban 192.0.2.200")
    assert [row["pattern"] for row in rig.store.server_bans()] == ["192.0.2.200"]


def test_the_issuer_is_spared(rig: Rig) -> None:
    client, root = rig.oper()
    rig.say(root, f"/serverban {root.host}")
    assert not root.gone
    assert client.lines()[-1].endswith(
        "0 clients disconnected. It matches you too; you stay connected."
    )


def test_a_second_ban_of_a_pattern_replaces_the_first(rig: Rig) -> None:
    client, root = rig.oper()
    rig.say(root, "/serverban 198.51.100.5 1h")
    rig.say(root, "/serverban 198.51.100.5 why not")
    assert client.lines()[-1].startswith(
        "* Server ban on 198.51.100.5 updated (until lifted)"
    )
    assert len(rig.server.operators.server_bans) == 1
    [row] = rig.store.server_bans()
    assert row["expires_at"] is None
    assert row["reason"] == "why not"


def test_bans_survive_a_restart_without_the_expired(rig: Rig) -> None:
    _, root = rig.oper()
    rig.say(root, "/serverban 198.51.100.5 keep")
    rig.say(root, "/serverban 198.51.100.0/24 1h")
    rig.say(root, "/serverban account:Bob 2h")
    rig.clock.advance(0)  # the store's done callbacks
    rig.clock.advance(5400)
    later = make_rig(store=rig.store, clock=rig.clock)
    bans = later.server.operators.server_bans.bans
    assert sorted(ban.pattern.text for ban in bans.bans()) == [
        "198.51.100.5",
        "account:Bob",
    ]
    again = RecordingClient()
    later.server.connect(again, "x", host="198.51.100.5")
    assert_ejected(again, banned("keep"))


def test_a_damaged_stored_ban_is_skipped(log_events: list[LogEvent]) -> None:
    clock = Clock()
    store = MemoryAccountStore(clock)
    good = Ban(parse_pattern("198.51.100.5"), "Root", "", 0.0).to_dict()
    store.save_server_bans([good])
    store._bans = (*store._bans, {**good, "pattern": "not a pattern"})
    rig = make_rig(store=store, clock=clock)
    assert len(rig.server.operators.server_bans) == 1
    assert any("no longer reads" in str(e.get("log_format")) for e in log_events)


def test_serverbans_is_bounded(rig: Rig) -> None:
    client, root = rig.oper()
    bans = rig.server.operators.server_bans.bans
    for n in range(BANS_SHOWN + 12):
        bans.add(Ban(parse_pattern(f"10.1.{n}.1"), "Root", f"r{n}", float(n)), 0.0)
    rig.say(root, "/serverbans")
    lines = client.lines()
    assert lines[0] == f"* {BANS_SHOWN + 12} server bans, the {BANS_SHOWN} newest:"
    assert lines[1] == f"* 10.1.{BANS_SHOWN + 11}.1 by Root, until lifted: r41"
    assert len(lines) == BANS_SHOWN + 2
    assert lines[-1] == "* ... and 12 older bans; /serverunban lifts one."
    # Charged to the reply budget: asked in a loop, it is refused.
    for _ in range(10):
        rig.say(root, "/serverbans")
    assert client.lines()[-1].startswith("! slow-down: ")


def test_serverbans_when_there_are_none(rig: Rig) -> None:
    client, root = rig.oper()
    rig.say(root, "/serverbans")
    assert client.lines() == ["* No server bans."]


def test_the_ban_list_is_bounded(rig: Rig) -> None:
    client, root = rig.oper()
    bans = rig.server.operators.server_bans.bans
    for n in range(BAN_LIST_SIZE):
        bans.add(Ban(parse_pattern(f"10.{n // 256}.{n % 256}.1"), "Root", "", 0.0), 0)
    rig.say(root, "/serverban 192.0.2.250")
    [line] = client.lines()
    assert line.startswith("! usage: The ban list is full")
    assert len(bans) == BAN_LIST_SIZE


def test_refusal_is_free_without_bans() -> None:
    """No ban: the connect path does not even read the clock."""
    rig = make_rig()
    calls = []

    def clock() -> float:
        calls.append(1)
        return 0.0

    rig.server.seconds = clock
    assert rig.server.operators.refusal("198.51.100.5", "bob") is None
    assert calls == []
