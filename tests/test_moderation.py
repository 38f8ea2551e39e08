"""
Room moderation wired into the chat (twisted_chat.core.moderation): the
creator is the operator, joins and lines meet the room's rules, the
operators' commands, and bans and mutes that lift themselves on a Clock.
"""

from __future__ import annotations

import attrs
import pytest
from _accounts_rig import AccountsRig
from attrs import define
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent

from twisted_chat.accounts.passwords import FakeHasher
from twisted_chat.accounts.store import MemoryAccountStore
from twisted_chat.core.account_ports import AccountServices
from twisted_chat.core.chat import ChatServer, Participant
from twisted_chat.core.moderation import BANS_SHOWN, OPERATORS_SHOWN
from twisted_chat.core.room_rules import RoomRules
from twisted_chat.core.server_bans import REASON_MAX
from twisted_chat.core.settings import Settings
from twisted_chat.testing import RecordingClient

PASSWORD = "correct-horse-9"  # noqa: S105 - a test password
OPERATORS = (("root", "$argon2id$unused"),)


@define(eq=False)
class Mod(AccountsRig):
    """A chat with accounts and room timers on a Clock; lines go out at once."""

    def registered(self, nick: str) -> tuple[RecordingClient, Participant]:
        client, participant = self.member(nick, room=None)
        self.say(participant, f"/register {PASSWORD}")
        self.run()
        assert participant.account is not None, client.lines()
        self.say(participant, "/join #dev")
        self.clear_all()
        return client, participant


def make_mod(*, timers: bool = True) -> Mod:
    clock = Clock()
    clock.advance(1000)
    store = MemoryAccountStore(clock)
    hasher = FakeHasher()
    server = ChatServer(
        Settings(operators=OPERATORS),
        clock.seconds,
        call_later=clock.callLater if timers else None,
        accounts=AccountServices(store, hasher),
    )
    return Mod(server, clock, hasher, store)


@pytest.fixture
def mod() -> Mod:
    return make_mod()


# -- 1. the creator, the hot path -------------------------------------------------


def test_the_creator_is_the_operator_and_who_shows_badges(mod: Mod) -> None:
    _alice_c, alice = mod.member("Alice")
    bob_c, bob = mod.member("Bob")
    mod.member("Carol")
    room = alice.current
    assert room is not None
    assert room.rules is not None
    assert room.rules.is_operator(alice)
    assert not room.rules.is_operator(bob)
    mod.say(alice, "/voice Carol")
    mod.clear_all()
    mod.say(bob, "/who")
    assert bob_c.lines() == ["* 3 people in #dev:", "* @Alice, Bob, +Carol"]


def test_who_with_badges_keeps_its_bound(mod: Mod) -> None:
    _, alice = mod.member("Alice")
    for n in range(205):
        mod.member(f"u{n:03}")
    client, _ = mod.member("zed")
    mod.say(alice, "/who")
    lines = mod.clients[0].lines()
    assert lines[0] == "* 207 people in #dev:"
    assert lines[1].startswith("* @Alice, u000, u001")
    assert lines[-1] == "* ... and 7 more; /who shows the first 200 by name."
    assert client.lines() == []


def test_a_line_in_an_unrestricted_room_does_not_ask_the_rules(
    mod: Mod, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only ``speech_restricted`` is read: the checks are not called at all."""
    _, alice = mod.member("Alice")
    bob_c, bob = mod.member("Bob")

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("speak_refusal called on the hot path")

    monkeypatch.setattr(RoomRules, "speak_refusal", boom)
    mod.say(alice, "hello")
    mod.say(alice, "/me waves")
    mod.say(alice, "/msg #dev hi")
    assert bob_c.lines() == [
        "[#dev] <Alice> hello",
        "[#dev] * Alice waves",
        "[#dev] <Alice> hi",
    ]
    room = bob.current
    assert room is not None
    room.rules = None  # a room nobody moderates
    mod.say(bob, "still fine")
    assert mod.clients[0].lines()[-1] == "[#dev] <Bob> still fine"


def test_moderated_refuses_all_but_operators_and_voices(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    bob_c, bob = mod.member("Bob")
    mod.say(alice, "/room moderated on")
    assert bob_c.lines() == ["* Alice turned moderated on in #dev"]
    bob_c.clear()
    alice_c.clear()
    for line in ("hi", "/me waves", "/msg #dev hi"):
        mod.say(bob, line)
    assert all(
        line.startswith("! moderated: #dev is moderated") for line in bob_c.lines()
    )
    assert len(bob_c.lines()) == 3
    assert alice_c.lines() == []
    mod.say(alice, "/voice Bob")
    mod.say(bob, "now I may")
    assert alice_c.lines()[-1] == "[#dev] <Bob> now I may"


# -- 2. joins, departures, topics --------------------------------------------------


def test_key_limit_and_invite_only(mod: Mod, log_events: list[LogEvent]) -> None:
    alice_c, alice = mod.member("Alice")
    mod.say(alice, "/room key blue-door")
    assert alice_c.lines() == [
        "* Alice set a key on #dev; joining needs /join #dev KEY"
    ]
    bob_c, bob = mod.member("Bob", room=None)
    mod.say(bob, "/join #dev")
    mod.say(bob, "/join #dev red-door")
    mod.say(bob, "/join #dev blue-door")
    lines = bob_c.lines()
    assert lines[0].startswith("! bad-key: #dev needs a key")
    assert lines[1].startswith("! bad-key: That is not the key of #dev")
    assert lines[2].startswith("* You joined #dev")
    assert "blue-door" not in "\n".join(formatEvent(e) or "" for e in log_events)
    mod.say(alice, "/room key off")
    mod.say(alice, "/room limit 2")
    carol_c, carol = mod.member("Carol", room=None)
    mod.say(carol, "/join #dev")
    assert carol_c.lines()[0].startswith("! room-full: #dev is full (2 members")
    mod.say(alice, "/room limit off")
    mod.say(alice, "/room invite-only on")
    carol_c.clear()
    mod.say(carol, "/join #dev")
    assert carol_c.lines()[0].startswith("! invite-only: #dev is invite-only")
    carol_c.clear()
    mod.say(alice, "/invite Carol")
    assert carol_c.lines() == ["* Alice invites you to #dev; /join #dev to accept."]
    mod.say(carol, "/join #dev")
    assert carol.current is alice.current
    mod.say(carol, "/part")
    carol_c.clear()
    mod.say(carol, "/join #dev")  # the invitation was used up
    assert carol_c.lines()[0].startswith("! invite-only:")


def test_topic_lock(mod: Mod) -> None:
    _, alice = mod.member("Alice")
    bob_c, bob = mod.member("Bob")
    mod.say(alice, "/room topic-lock on")
    bob_c.clear()
    mod.say(bob, "/topic mine")
    assert bob_c.lines() == [
        "! not-operator: The topic of #dev is locked; only its operators set it."
    ]
    mod.say(alice, "/topic ours")
    assert bob_c.lines()[-1] == "* Alice set the topic of #dev to: ours"


def test_a_plain_room_whose_last_operator_leaves_keeps_none(mod: Mod) -> None:
    """As IRC: no line, no heir; anyone may chat in it as before."""
    _, alice = mod.member("Alice")
    _bob_c, bob = mod.member("Bob")
    carol_c, _ = mod.member("Carol")
    mod.say(alice, "/part")
    assert carol_c.lines() == ["* Alice left #dev"]
    room = bob.current
    assert room is not None
    assert room.rules is not None
    assert not room.rules.is_operator(bob)


def test_a_moderated_room_whose_last_operator_leaves_makes_an_heir(
    mod: Mod,
) -> None:
    """Something only an operator can undo is set: the room is not stuck."""
    alice_c, alice = mod.member("Alice")
    _bob_c, bob = mod.member("Bob")
    carol_c, _ = mod.member("Carol")
    mod.say(alice, "/room moderated on")
    carol_c.clear()
    mod.say(alice, "/part")
    assert carol_c.lines() == [
        "* Alice left #dev",
        "* Bob is now an operator of #dev (its last operator left)",
    ]
    room = bob.current
    assert room is not None
    assert room.rules is not None
    assert room.rules.is_operator(bob)
    del alice_c


def test_not_an_operator(mod: Mod) -> None:
    mod.member("Alice")
    bob_c, bob = mod.member("Bob")
    mod.say(bob, "/kick Alice")
    mod.say(bob, "/room moderated on")
    mod.say(bob, "/bans")
    assert bob_c.lines() == [
        (
            "! not-operator: You are not an operator of #dev; only its operators may "
            "use /kick."
        ),
        (
            "! not-operator: You are not an operator of #dev; only its operators may "
            "use /room."
        ),
        (
            "! not-operator: You are not an operator of #dev; only its operators may "
            "use /bans."
        ),
    ]


def test_a_server_operator_is_an_operator_everywhere(mod: Mod) -> None:
    mod.member("Alice")
    bob_c, _bob = mod.member("Bob")
    _root_c, root = mod.member("root")
    root.oper = "root"
    mod.say(root, "/kick Bob spam")
    assert bob_c.lines() == ["* You were kicked from #dev by root (spam)"]
    assert mod.clients[0].lines() == ["* Bob was kicked from #dev by root (spam)"]


# -- 3. the commands ---------------------------------------------------------------


def test_op_deop_voice_devoice_and_unchanged(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    bob_c, _bob = mod.member("Bob")
    for line in ("/op Bob", "/op Bob", "/deop Bob", "/voice Bob", "/devoice Bob"):
        mod.say(alice, line)
    assert alice_c.lines() == [
        "* Alice made Bob an operator of #dev",
        "* Bob is an operator of #dev already.",
        "* Alice took operator status in #dev from Bob",
        "* Alice gave Bob a voice in #dev",
        "* Alice took the voice in #dev from Bob",
    ]
    assert len(bob_c.lines()) == 4
    mod.say(alice, "/op Nobody")
    assert alice_c.lines()[-1].startswith("! no-such-nick:")


def test_kick(mod: Mod, log_events: list[LogEvent]) -> None:
    alice_c, alice = mod.member("Alice")
    bob_c, bob = mod.member("Bob")
    carol_c, _ = mod.member("Carol")
    mod.say(alice, "/kick Bob " + "x" * 300)
    reason = "x" * (REASON_MAX - 1) + "…"
    assert carol_c.lines() == [f"* Bob was kicked from #dev by Alice ({reason})"]
    assert bob_c.lines() == [f"* You were kicked from #dev by Alice ({reason})"]
    assert "#dev" not in bob.rooms
    assert alice.current is not None
    assert bob not in alice.current.members
    [event] = [e for e in log_events if e.get("what") == "kick"]
    assert (event["who"], event["whom"], event["room"]) == ("Alice", "Bob", "#dev")
    assert event["why"] == reason
    mod.say(alice, "/kick Alice")
    assert alice_c.lines()[-1] == "! usage: To leave the room, /part."


def test_ban_a_guest_by_address_kicks_and_keeps_out(mod: Mod) -> None:
    """A nick ban on a guest holds the address but never shows it."""
    alice_c, alice = mod.member("Alice")
    bob_c, bob = mod.member("Bob", host="198.51.100.7")
    bobby_c, bob2 = mod.member("Bobby", host="198.51.100.7")
    mod.say(alice, "/ban Bob 1h flooding")
    assert alice_c.lines() == [
        "* Alice banned Bob (by address) from #dev for 1h (flooding)",
        "* Bob was kicked from #dev by Alice (flooding)",
        "* Bobby was kicked from #dev by Alice (flooding)",
    ]
    assert "#dev" not in bob.rooms
    assert "#dev" not in bob2.rooms
    bob_c.clear()
    mod.say(bob, "/join #dev")
    assert bob_c.lines() == [
        "! banned: You are banned from #dev (flooding); the ban ends in 1h."
    ]
    mod.say(alice, "/bans")
    listing = alice_c.lines()[-2:]
    assert listing[0] == "* 1 ban in #dev:"
    assert listing[1].startswith("* Bob (by address) by Alice, until ")
    everything = [*alice_c.lines(), *bob_c.lines(), *bobby_c.lines()]
    assert not any("198.51.100" in line for line in everything)
    mod.say(alice, "/unban 198.51.100.7")  # the address itself names it too
    assert alice_c.lines()[-1] == "* Alice lifted the ban on Bob (by address) in #dev"
    mod.say(alice, "/unban 198.51.100.7")
    assert alice_c.lines()[-1] == "* There is no ban on 198.51.100.7 in #dev."
    mod.say(bob, "/join #dev")
    assert bob.current is alice.current


def test_a_guest_banned_by_nick_is_unbanned_by_nick_after_leaving(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    _bob_c, bob = mod.member("Bob", host="198.51.100.7")
    mod.say(alice, "/ban bob")
    mod.server.disconnect(bob, "gone")
    alice_c.clear()
    mod.say(alice, "/unban BOB")
    assert alice_c.lines() == ["* Alice lifted the ban on Bob (by address) in #dev"]
    mod.say(alice, "/unban bob")
    assert alice_c.lines()[-1].startswith("! no-such-nick: ")


def test_ban_a_logged_in_nick_bans_the_account(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    _, bob = mod.registered("Bob")
    mod.say(alice, "/ban Bob")
    assert alice_c.lines()[0] == "* Alice banned account:Bob from #dev until lifted"
    mod.say(bob, "/nick Robert")
    mod.clear_all()
    mod.say(bob, "/join #dev")
    assert mod.clients[1].lines()[0].startswith("! banned: You are banned from #dev")


def test_bans_listing_is_bounded(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    for n in range(BANS_SHOWN + 5):
        mod.say(alice, f"/ban 203.0.113.{n}")
    alice_c.clear()
    mod.say(alice, "/bans")
    lines = alice_c.lines()
    assert lines[0] == f"* {BANS_SHOWN + 5} bans in #dev, the {BANS_SHOWN} newest:"
    assert len(lines) == BANS_SHOWN + 2
    assert lines[-1] == "* ... and 5 older bans; /unban lifts one."


def test_mute_refuses_and_a_timed_mute_lifts_itself(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    bob_c, bob = mod.member("Bob")
    mod.say(alice, "/mute Bob 2s")
    assert bob_c.lines() == ["* Alice muted Bob in #dev for 2s"]
    bob_c.clear()
    mod.say(bob, "hello?")
    assert bob_c.lines()[0].startswith("! muted: You are muted in #dev")
    alice_c.clear()
    mod.clock.advance(1.9)
    assert alice_c.lines() == []
    mod.clock.advance(0.1)
    assert alice_c.lines() == ["* Bob is no longer muted in #dev"]
    room = alice.current
    assert room is not None
    assert room.rules is not None
    assert not room.rules.speech_restricted
    mod.say(bob, "free")
    assert alice_c.lines()[-1] == "[#dev] <Bob> free"
    assert len(mod.server.moderation.timers) == 0


def test_unmute_and_an_untimed_mute(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    _bob_c, _bob = mod.member("Bob")
    mod.say(alice, "/mute Bob")
    mod.say(alice, "/unmute Bob")
    mod.say(alice, "/unmute Bob")
    assert alice_c.lines() == [
        "* Alice muted Bob in #dev until unmuted",
        "* Alice unmuted Bob in #dev",
        "* Bob is not muted in #dev.",
    ]
    assert len(mod.server.moderation.timers) == 0


def test_one_timer_per_room_at_the_next_expiry(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    for n in range(5):
        mod.member(f"u{n}")
    for n, duration in enumerate(("1h", "10s", "5m", "30s", "2h")):
        mod.say(alice, f"/mute u{n} {duration}")
    timers = mod.server.moderation.timers
    room = alice.current
    assert room is not None
    assert len(timers) == 1
    assert timers.due(room) == mod.clock.seconds() + 10
    alice_c.clear()
    mod.clock.advance(10)
    assert alice_c.lines() == ["* u1 is no longer muted in #dev"]
    assert timers.due(room) == mod.clock.seconds() + 20


def test_a_timed_ban_lifts_itself(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    mod.say(alice, "/ban 203.0.113.9 1m")
    alice_c.clear()
    mod.clock.advance(60)
    assert alice_c.lines() == ["* The ban on 203.0.113.9 in #dev has ended"]


def test_a_room_that_empties_forgets_its_timer(mod: Mod) -> None:
    _, alice = mod.member("Alice")
    mod.say(alice, "/ban 203.0.113.9 1m")
    timers = mod.server.moderation.timers
    assert len(timers) == 1
    assert len(mod.clock.getDelayedCalls()) == 1
    mod.say(alice, "/part")
    assert len(timers) == 0
    assert mod.clock.getDelayedCalls() == []


def test_without_a_call_later_a_mute_still_ends_on_time() -> None:
    """No timers (no reactor): the check compares with the time, no notice."""
    mod = make_mod(timers=False)
    alice_c, alice = mod.member("Alice")
    _bob_c, bob = mod.member("Bob")
    mod.say(alice, "/mute Bob 2s")
    mod.clock.advance(2)
    alice_c.clear()
    mod.say(bob, "back")
    assert alice_c.lines() == ["[#dev] <Bob> back"]


def test_room_show(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    bob_c, bob = mod.member("Bob")
    mod.say(alice, "/room key blue-door")
    mod.clear_all()
    mod.say(bob, "/room")
    mod.say(alice, "/room")
    assert "blue-door" not in "\n".join(bob_c.lines())
    assert bob_c.lines()[0].startswith("* #dev: ")
    assert "Operators here: @Alice" in "\n".join(bob_c.lines())
    assert "blue-door" in "\n".join(alice_c.lines())


def test_register_without_a_room_store_is_refused(mod: Mod) -> None:
    """(tests/test_registered_rooms.py has the rooms that are kept.)"""
    alice_c, alice = mod.member("Alice")
    mod.say(alice, "/room register")
    assert alice_c.lines() == [
        (
            "! accounts-disabled: Rooms cannot be registered on this server "
            "(it keeps no rooms)."
        )
    ]


def test_every_change_is_logged(mod: Mod, log_events: list[LogEvent]) -> None:
    _, alice = mod.member("Alice")
    mod.member("Bob")
    mod.say(alice, "/mute Bob 5m")
    mod.say(alice, "/room limit 9")
    events = [
        e for e in log_events if e.get("log_namespace") == "twisted_chat.moderation"
    ]
    assert [(e["who"], e["what"], e["whom"]) for e in events] == [
        ("Alice", "mute 5m", "Bob"),
        ("Alice", "set 9", "limit"),
    ]


def test_invite_tells_the_inviter_of_a_ban(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    _bob_c, _bob = mod.member("Bob", host="198.51.100.8", room=None)
    mod.say(alice, "/ban 198.51.100.8")
    mod.say(alice, "/invite Bob")
    assert alice_c.lines()[-1].startswith("* Bob is banned from #dev (198.51.100.8)")
    mod.member("Carol")
    mod.say(alice, "/invite Carol")
    assert alice_c.lines()[-1] == "! usage: Carol is in #dev already."


def test_a_server_operator_a_reload_removed_is_no_operator(mod: Mod) -> None:
    """Server operator rights are read from the live table, as /oper reads them."""
    mod.server.settings = attrs.evolve(mod.server.settings, operators=())
    _, _alice = mod.member("Alice")
    bob_c, bob = mod.member("Bob")
    bob.oper = "root"
    mod.say(bob, "/kick Alice")
    assert bob_c.lines()[0].startswith("! not-operator:")


def test_a_kick_in_a_busy_turn_keeps_the_order() -> None:
    """With lines queued for the end of the turn, the kicked get them first."""
    clock = Clock()
    server = ChatServer(
        Settings(), clock.seconds, defer=lambda f: clock.callLater(0, f)
    )
    alice_c, bob_c = RecordingClient(), RecordingClient()
    alice, bob = server.connect(alice_c), server.connect(bob_c)
    server.receive(alice, "/nick Alice")
    server.receive(bob, "/nick Bob")
    server.receive(alice, "/join #dev")
    server.receive(bob, "/join #dev")
    clock.advance(0)
    alice_c.clear()
    bob_c.clear()
    server.receive(alice, "before")
    server.receive(alice, "/kick Bob bye")
    server.receive(alice, "after")
    clock.advance(0)
    assert bob_c.lines() == [
        "[#dev] <Alice> before",
        "* You were kicked from #dev by Alice (bye)",
    ]
    assert alice_c.lines() == ["* Bob was kicked from #dev by Alice (bye)"]


def test_unmute_by_pattern_when_the_person_is_gone(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    _, bob = mod.member("Bob", host="198.51.100.9")
    mod.say(alice, "/mute Bob")
    mod.server.disconnect(bob, "connection lost")
    mod.say(alice, "/unmute 198.51.100.9")
    mod.say(alice, "/unmute 198.51.100.9")
    assert alice_c.lines()[-2:] == [
        "* Alice unmuted Bob in #dev",
        "* 198.51.100.9 is not muted in #dev.",
    ]


def test_room_show_names_a_bounded_number_of_operators(mod: Mod) -> None:
    alice_c, alice = mod.member("Alice")
    for n in range(OPERATORS_SHOWN + 10):
        mod.member(f"u{n:03}")
        mod.say(alice, f"/op u{n:03}")
    alice_c.clear()
    mod.say(alice, "/room")
    named = [
        name
        for line in alice_c.lines()
        if line.startswith("* Operators here: ")
        for name in line.removeprefix("* Operators here: ").split(", ")
    ]
    assert len(named) == OPERATORS_SHOWN
    assert named[0] == "@Alice"
