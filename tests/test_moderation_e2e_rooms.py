"""
Room moderation end to end (issue 14), part two: settings, voice, notices,
registered rooms across a restart, and who keeps a room whose last operator
leaves.  Same rig and rules as ``test_moderation_e2e.py``.
"""

from __future__ import annotations

import pytest
from test_accounts_e2e import Chat
from test_accounts_e2e import chat as chat  # noqa: PLC0414 - the fixture
from test_moderation_e2e import join, notice, quiet, refused, room_of, who

pytestmark = pytest.mark.slow


def test_moderated_room_and_voice(chat: Chat) -> None:
    """Only operators and voiced members speak; ``+nick`` and ``@nick`` in /who."""
    chat.start()
    alice, bob, carol = room_of(chat, "#r", "alice", "bob", "carol")
    notice(alice, "/room moderated on", "alice", "moderated")
    refused(bob, "quiet please", "moderated")
    assert not any("quiet please" in line for line in carol.settle())
    alice.say("operators speak")
    assert carol.expect(r"^\[#r\]") == "[#r] <alice> operators speak"
    notice(alice, "/voice bob", "alice", "bob")
    bob.say("voiced now")
    assert carol.expect(r"^\[#r\]") == "[#r] <bob> voiced now"
    assert sorted(who(carol, "#r")) == ["+bob", "@alice", "carol"]
    notice(alice, "/devoice bob", "alice", "bob")
    refused(bob, "silenced again", "moderated")
    assert sorted(who(carol, "#r")) == ["@alice", "bob", "carol"]
    notice(alice, "/room moderated off", "alice", "moderated")
    bob.say("free for all")
    assert carol.expect(r"^\[#r\]") == "[#r] <bob> free for all"


def test_invite_only(chat: Chat) -> None:
    """An outsider gets ``! invite-only:``; after ``/invite`` (told) it works."""
    chat.start()
    alice, carol = room_of(chat, "#r", "alice", "carol")
    outsider = chat.connect("dave", "127.0.6.1")
    notice(alice, "/room invite-only on", "alice", "invite-only")
    refused(outsider, "/join #r", "invite-only")
    alice.settle()
    alice.say("/invite dave")
    told = outsider.expect(r"^\* .*#r")
    assert "alice" in told, told
    assert "invite" in told, told
    join(outsider, "#r")
    assert "dave" in who(carol, "#r")
    refused(chat.connect("eve", "127.0.6.2"), "/join #r", "invite-only")


def test_key_and_limit(chat: Chat) -> None:
    """``! bad-key:`` without the key or a wrong one; the N+1th ``! room-full:``."""
    chat.start()
    alice, bob = room_of(chat, "#r", "alice", "bob")
    notice(alice, "/room key s3same", "alice")
    dave = chat.connect("dave", "127.0.6.1")
    refused(dave, "/join #r", "bad-key")
    refused(dave, "/join #r wrong", "bad-key")
    join(dave, "#r", "s3same")
    notice(alice, "/room key off", "alice")
    notice(alice, "/room limit 4", "alice", "4")
    join(chat.connect("eve", "127.0.6.2"), "#r")  # the 4th
    refused(chat.connect("fred", "127.0.6.3"), "/join #r", "room-full")
    bob.say("/part #r")
    bob.expect(r"^\* You left #r")
    join(chat.connect("gina", "127.0.6.4"), "#r")  # room again
    notice(alice, "/room limit off", "alice")
    join(bob, "#r")


def test_topic_lock(chat: Chat) -> None:
    """Locked: a member's /topic gets ``! not-operator:``; an operator's works."""
    chat.start()
    alice, bob = room_of(chat, "#r", "alice", "bob")
    notice(bob, "/topic anyone may", "bob", "anyone may")
    notice(alice, "/room topic-lock on", "alice", "topic-lock")
    refused(bob, "/topic mine now", "not-operator")
    notice(alice, "/topic operators only", "alice", "operators only")
    assert bob.expect(r"operators only").startswith("* alice")
    assert "operators only" in bob.replies("/topic")[-1]


def test_every_change_is_announced_naming_its_maker(chat: Chat) -> None:
    """Each change reaches every member as a ``*`` notice that names the operator."""
    chat.start()
    alice, bob, carol = room_of(chat, "#r", "alice", "bob", "carol")
    commands = [
        "/op bob",
        "/deop bob",
        "/voice bob",
        "/devoice bob",
        "/mute bob 1h",
        "/unmute bob",
        "/ban 127.0.99.1 1d why",
        "/unban 127.0.99.1",
        "/room moderated on",
        "/room invite-only on",
        "/room topic-lock on",
        "/room limit 10",
        "/room key sekrit",
        "/room moderated off",
        "/topic new topic",
    ]
    for command in commands:
        mine = notice(alice, command, "alice")
        for member in (bob, carol):
            assert member.expect(r"^\* alice ") == mine, (command, member.lines)
    # A second operator's changes name that operator.
    notice(alice, "/op carol", "alice", "carol")
    bob.expect(r"^\* alice ")
    mine = notice(carol, "/voice bob", "carol", "bob")
    assert bob.expect(r"^\* carol ") == mine


def test_registered_room_survives_a_restart(chat: Chat) -> None:
    """Bans, operators by account, settings and topic; listed while empty; dropped."""
    chat.start()
    alice, alice_secret = chat.register("alice", "127.0.5.1")
    carol, carol_secret = chat.register("carol", "127.0.5.3")
    join(alice, "#club")
    join(carol, "#club")
    troll = chat.connect("troll", "127.0.13.7")
    join(troll, "#club")
    notice(alice, "/op carol", "alice")
    notice(alice, "/ban troll", "alice", "banned")
    notice(alice, "/topic the club topic", "alice")
    notice(alice, "/room moderated on", "alice")
    notice(alice, "/room register", "alice", "#club")
    refused(troll, "/join #club", "banned")
    for member in (alice, carol):
        member.say("/part #club")
        member.expect(r"^\* You left #club")
    listed = troll.replies("/rooms")
    assert any(line.startswith("* #club (0 ") for line in listed), listed

    chat.stop()
    chat.start()
    guest = chat.connect("visitor", "127.0.5.9")
    listed = guest.replies("/rooms")
    assert any(
        line.startswith("* #club (0 ") and "the club topic" in line for line in listed
    ), listed
    refused(chat.connect("troll", "127.0.13.7"), "/join #club", "banned")
    founder = chat.connect(None, "127.0.5.1")
    assert founder.reply(f"/login alice {alice_secret}").startswith("* ")
    join(founder, "#club")
    join(guest, "#club")
    other = chat.connect(None, "127.0.5.3")
    assert other.reply(f"/login carol {carol_secret}").startswith("* ")
    join(other, "#club")
    assert sorted(who(guest, "#club")) == ["@alice", "@carol", "visitor"]
    settings = "\n".join(founder.replies("/room"))
    assert "moderated on" in settings, settings
    assert "founder" in settings, settings
    assert "the club topic" in guest.replies("/topic")[-1]
    refused(guest, "still moderated", "moderated")
    bans = founder.replies("/bans")
    assert any("troll" in line or "127.0.13.7" in line for line in bans), bans
    assert (
        founder.reply("/kick visitor out")
        == "* visitor was kicked from #club by alice (out)"
    )

    refused(other, "/room drop", "not-operator")  # an operator, not the founder
    notice(founder, "/room drop", "alice", "#club")
    for member in (founder, other):
        member.say("/part #club")
        member.expect(r"^\* You left #club")
    listed = guest.replies("/rooms")
    assert not any(line.startswith("* #club") for line in listed), listed
    chat.check_secrets()


def test_plain_room_keeps_no_operator_when_the_last_one_leaves(chat: Chat) -> None:
    """As IRC: nobody is promoted, no extra line, and the room still works."""
    chat.start()
    alice, bob, carol = room_of(chat, "#r", "alice", "bob", "carol")
    alice.say("/part #r")
    assert bob.expect(r"alice") == "* alice left #r"
    assert quiet(bob) == []
    assert quiet(carol) == ["* alice left #r"]
    assert sorted(who(bob, "#r")) == ["bob", "carol"]
    bob.say("still works")
    assert carol.expect(r"^\[#r\]") == "[#r] <bob> still works"
    refused(bob, "/op carol", "not-operator")


def test_set_room_gets_an_heir_when_the_last_operator_leaves(chat: Chat) -> None:
    """Moderated: the longest-present unmuted member becomes operator, announced."""
    chat.start()
    alice, bob, carol, dave = room_of(chat, "#r", "alice", "bob", "carol", "dave")
    notice(alice, "/room moderated on", "alice")
    notice(alice, "/mute bob", "alice", "bob")
    for member in (bob, carol, dave):
        member.settle()
    alice.say("/quit bye")
    heir = "* carol is now an operator of #r (its last operator left)"
    for member in (bob, carol, dave):
        member.expect(r"^\* alice quit")
        assert member.expect(r"operator") == heir
    assert sorted(who(dave, "#r")) == ["@carol", "bob", "dave"]
    notice(carol, "/room moderated off", "carol")
