"""
Room moderation's state and checks (twisted_chat.core.room_rules and the
room_state, room_tables and room_records modules it is built of): every
rule and error code, the bounds, expiry on plain float times, the
``speech_restricted`` flag, and the stored form.
"""

from __future__ import annotations

import collections.abc
import json

import pytest
from twisted.logger import LogEvent, formatEvent

from twisted_chat.core import errors
from twisted_chat.core.bans import TooManyBans, parse_pattern
from twisted_chat.core.errors import BadUsage, ChatError
from twisted_chat.core.names import Nick, name_key
from twisted_chat.core.room import Participant
from twisted_chat.core.room_records import (
    KEY_MAX,
    LIMIT_MAX,
    Change,
    RoomSettings,
    invitation,
    kick_notices,
    notice_for,
    parse_setting,
)
from twisted_chat.core.room_rules import RoomRules
from twisted_chat.core.room_state import (
    OPERATOR_ACCOUNTS_MAX,
    ROOM_BAN_LIST_SIZE,
    RULES_VERSION,
)
from twisted_chat.core.room_tables import (
    INVITE_LIST_SIZE,
    MUTE_LIST_SIZE,
    TooManyMutes,
    account_name,
    pattern_for,
)
from twisted_chat.testing import RecordingClient

ROOM = "#Den"


def person(
    nick: str,
    host: str = "203.0.113.7",
    account: str | None = None,
    oper: str | None = None,
) -> Participant:
    """A participant; ``account`` is an account name (stored as its key)."""
    return Participant(
        RecordingClient(),
        Nick.parse(nick),
        host=host,
        account=None if account is None else name_key(account),
        oper=oper,
    )


def restricted(rules: RoomRules) -> bool:
    """The flag, read through a call (mypy would narrow the attribute)."""
    return rules.speech_restricted


def code(problem: ChatError | None) -> str | None:
    return None if problem is None else problem.code


@pytest.fixture
def alice() -> Participant:
    return person("alice", "198.51.100.1", account="alice")


@pytest.fixture
def rules(alice: Participant) -> RoomRules:
    return RoomRules.for_creator(ROOM, alice)


def join(
    rules: RoomRules,
    who: Participant,
    *,
    key: str | None = None,
    now: float = 0.0,
    oper: bool = False,
    members: int = 1,
) -> ChatError | None:
    return rules.join_refusal(who, key, now, oper, members=members)


# -- error codes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (errors.NotOperator, "not-operator"),
        (errors.Muted, "muted"),
        (errors.Moderated, "moderated"),
        (errors.InviteOnly, "invite-only"),
        (errors.RoomFull, "room-full"),
        (errors.BadKey, "bad-key"),
        (errors.NotRegisteredRoom, "not-registered-room"),
        (errors.Banned, "banned"),
    ],
)
def test_the_room_codes_are_protocol_md_s(cls: type[ChatError], expected: str) -> None:
    assert cls.code == expected
    assert str(cls("text")) == f"{expected}: text"


# -- who is who --------------------------------------------------------------


def test_the_creator_is_the_operator_and_a_plain_room_costs_nothing(
    rules: RoomRules, alice: Participant
) -> None:
    bob = person("bob")
    assert rules.is_operator(alice)
    assert not rules.is_operator(bob)
    assert (rules.badge(alice), rules.badge(bob)) == ("@", "")
    assert rules.speech_restricted is False
    assert not rules.idle
    assert RoomRules(ROOM).idle


def test_a_voice_is_a_plus_and_an_operator_who_is_voiced_stays_an_at(
    rules: RoomRules, alice: Participant
) -> None:
    bob = person("bob")
    assert rules.voice(bob) == Change("voice", "bob")
    assert rules.voice(bob) is None
    assert rules.badge(bob) == "+"
    rules.voice(alice)
    assert rules.badge(alice) == "@"
    assert rules.devoice(bob) == Change("devoice", "bob")
    assert rules.devoice(bob) is None
    assert rules.badge(bob) == ""


def test_op_and_deop(rules: RoomRules) -> None:
    bob = person("bob")
    assert rules.op(bob) == Change("op", "bob")
    assert rules.op(bob) is None
    assert rules.is_operator(bob)
    assert not rules.operator_accounts  # not registered: live only
    assert rules.deop(bob) == Change("deop", "bob")
    assert rules.deop(bob) is None
    assert not rules.is_operator(bob)


def test_require_operator(rules: RoomRules, alice: Participant) -> None:
    bob = person("bob")
    assert rules.require_operator(alice, server_operator=False) is None
    assert rules.require_operator(bob, server_operator=True) is None
    refusal = rules.require_operator(bob, False, "/kick")
    assert isinstance(refusal, errors.NotOperator)
    assert refusal.text == (
        "You are not an operator of #Den; only its operators may use /kick."
    )
    plain = rules.require_operator(bob, False)
    assert plain is not None
    assert plain.text.endswith("may do that.")


def test_pattern_for_a_member() -> None:
    assert pattern_for(person("bob", account="bob")) == parse_pattern("account:bob")
    assert pattern_for(person("bob", "::ffff:203.0.113.9")) == parse_pattern(
        "203.0.113.9"
    )
    assert pattern_for(person("bob", "")) is None
    renamed = person("carol", account="bob")
    assert account_name(renamed) == name_key("bob")
    assert account_name(renamed, "Bob") == "Bob"
    assert pattern_for(renamed, "Bob") == parse_pattern("account:Bob")
    # The key fallback parses back to the same account.
    fallback = pattern_for(renamed)
    assert fallback is not None
    assert parse_pattern(fallback.text) == fallback


# -- joining -----------------------------------------------------------------


def test_a_banned_person_gets_banned_with_the_reason_and_time_left(
    rules: RoomRules,
) -> None:
    troll = person("troll", "203.0.113.66")
    rules.ban(parse_pattern("203.0.113.0/24"), 1800, "spam", "alice", 100.0, members=())
    refusal = join(rules, troll, now=100.0)
    assert isinstance(refusal, errors.Banned)
    assert refusal.text == "You are banned from #Den (spam); the ban ends in 30m."
    assert join(rules, troll, now=1900.0) is None  # ended
    rules.ban(parse_pattern("account:troll"), None, "", "alice", 0.0, members=())
    logged_in = person("other", "192.0.2.1", account="troll")
    refusal = join(rules, logged_in)
    assert refusal is not None
    assert refusal.text == (
        "You are banned from #Den; the ban lasts until it is lifted."
    )


def test_invite_only_and_an_invitation_used_up_by_the_join(rules: RoomRules) -> None:
    rules.configure("invite-only", "on")
    bob = person("bob")
    refusal = join(rules, bob)
    assert code(refusal) == "invite-only"
    assert refusal is not None
    assert "/invite" in refusal.text
    change = rules.invite(bob, 0.0)
    assert change == Change("invite", "bob")
    assert join(rules, bob) is None
    assert join(rules, bob) is None  # a check, not the join: still invited
    rules.member_joined(bob)
    assert code(join(rules, bob)) == "invite-only"


def test_an_invitation_follows_the_account(rules: RoomRules) -> None:
    rules.configure("invite-only", "on")
    bob = person("bob", account="bob")
    rules.invite(bob, 0.0)
    again = person("bob", "192.0.2.8", account="bob")  # a new connection
    assert join(rules, again) is None
    rules.member_joined(again)
    assert code(join(rules, bob)) == "invite-only"


def test_an_invitation_passes_key_and_limit_but_not_a_ban(rules: RoomRules) -> None:
    rules.configure("key", "sesame")
    rules.configure("limit", "2")
    bob = person("bob")
    rules.invite(bob, 0.0)
    assert join(rules, bob, members=2) is None
    rules.ban(parse_pattern(bob.host), None, "", "alice", 0.0, members=())
    change = rules.invite(bob, 0.0)
    assert change.banned is not None
    assert change.banned.pattern == parse_pattern(bob.host)
    assert code(join(rules, bob)) == "banned"


def test_the_key(rules: RoomRules) -> None:
    rules.configure("key", "sesame")
    bob = person("bob")
    none = join(rules, bob)
    assert code(none) == "bad-key"
    assert none is not None
    assert none.text == "#Den needs a key: /join #Den KEY (its operators know it)."
    wrong = join(rules, bob, key="open-sesame")
    assert code(wrong) == "bad-key"
    assert wrong is not None
    assert "open-sesame" not in wrong.text
    assert join(rules, bob, key="Sesame") is not None  # keys are exact
    assert join(rules, bob, key="sesame") is None
    rules.configure("key", "off")
    assert join(rules, bob) is None


def test_the_limit(rules: RoomRules) -> None:
    rules.configure("limit", "3")
    bob = person("bob")
    assert join(rules, bob, members=2) is None
    full = join(rules, bob, members=3)
    assert code(full) == "room-full"
    assert full is not None
    assert full.text == "#Den is full (3 members at most); try again later."


def test_the_order_is_ban_invite_only_key_limit(rules: RoomRules) -> None:
    bob = person("bob")
    rules.configure("limit", "1")
    assert code(join(rules, bob, members=1)) == "room-full"
    rules.configure("key", "k")
    assert code(join(rules, bob, members=1)) == "bad-key"
    rules.configure("invite-only", "on")
    assert code(join(rules, bob, members=1)) == "invite-only"
    rules.ban(parse_pattern(bob.host), None, "", "alice", 0.0, members=())
    assert code(join(rules, bob, members=1)) == "banned"


def test_server_operators_and_operator_accounts_pass_everything(
    rules: RoomRules, alice: Participant
) -> None:
    rules.register(alice)
    carol = person("carol", "192.0.2.3", account="carol")
    rules.op(carol)
    for setting, value in [("invite-only", "on"), ("key", "k"), ("limit", "1")]:
        rules.configure(setting, value)
    for pattern in ("198.51.100.0/24", "192.0.2.3", "account:carol", "account:alice"):
        rules.ban(parse_pattern(pattern), None, "", "x", 0.0, members=())
    root = person("root", "198.51.100.200")
    assert code(join(rules, root, members=5)) == "banned"
    assert join(rules, root, members=5, oper=True) is None
    founder_again = person("alice", "198.51.100.1", account="alice")
    assert join(rules, founder_again, members=5) is None
    assert join(rules, person("carol", "192.0.2.3", account="carol"), members=5) is None


# -- speaking ----------------------------------------------------------------


def test_moderated(rules: RoomRules, alice: Participant) -> None:
    bob, carol = person("bob"), person("carol")
    assert rules.configure("moderated", "on") == Change("set", "moderated", "on")
    assert rules.speech_restricted
    refusal = rules.speak_refusal(bob, 0.0)
    assert code(refusal) == "moderated"
    assert refusal is not None
    assert refusal.text == (
        "#Den is moderated: only its operators and voiced members speak; "
        "ask an operator for a voice."
    )
    rules.voice(carol)
    assert rules.speak_refusal(carol, 0.0) is None
    assert rules.speak_refusal(alice, 0.0) is None
    assert rules.speak_refusal(bob, 0.0, server_operator=True) is None
    rules.configure("moderated", "off")
    assert not restricted(rules)
    assert rules.speak_refusal(bob, 0.0) is None


def test_a_mute_with_time_left_and_a_voice_does_not_lift_it(
    rules: RoomRules,
) -> None:
    bob = person("bob")
    change = rules.mute(bob, 90, "alice", 10.0)
    assert change == Change("mute", "bob", "1m 30s")
    assert rules.speech_restricted
    refusal = rules.speak_refusal(bob, 10.0)
    assert isinstance(refusal, errors.Muted)
    assert refusal.text == "You are muted in #Den for 1m 30s more; nobody saw that."
    forever = person("dave", "192.0.2.4")
    rules.mute(forever, None, "alice", 10.0)
    muted = rules.speak_refusal(forever, 10.0)
    assert muted is not None
    assert "until an operator unmutes you" in muted.text
    rules.voice(bob)
    assert code(rules.speak_refusal(bob, 10.0)) == "muted"
    assert rules.speak_refusal(bob, 100.0) is None  # ended, not yet expired


def test_a_mute_holds_the_account_and_survives_a_logout(rules: RoomRules) -> None:
    bob = person("bob", account="bob")
    rules.mute(bob, None, "alice", 0.0)
    elsewhere = person("bob", "192.0.2.99", account="bob")
    assert code(rules.speak_refusal(elsewhere, 0.0)) == "muted"
    bob.account = None  # /logout
    assert code(rules.speak_refusal(bob, 0.0)) == "muted"
    neighbour = person("eve", bob.host)  # same address, not muted: by account
    assert rules.speak_refusal(neighbour, 0.0) is None


def test_leaving_logging_out_and_coming_back_keeps_the_mute(
    rules: RoomRules,
) -> None:
    bob = person("bob", account="bob")
    rules.mute(bob, None, "alice", 0.0)
    rules.member_left(bob, [], 0.0)
    bob.account = None
    assert code(rules.speak_refusal(bob, 0.0)) == "muted"
    bob.gone = True
    rules.member_left(bob, [], 0.0)
    assert rules.speech_restricted  # the account is still muted
    assert rules.mutes._holders == {}


def test_a_guest_is_muted_by_address(rules: RoomRules) -> None:
    guest = person("guest1", "2001:db8::5")
    rules.mute(guest, None, "alice", 0.0)
    assert code(rules.speak_refusal(person("guest2", "2001:db8::5"), 0.0)) == "muted"
    assert rules.speak_refusal(person("guest3", "2001:db8::6"), 0.0) is None


def test_a_guest_with_no_address_is_muted_by_connection(rules: RoomRules) -> None:
    local = person("local", "")
    rules.mute(local, None, "alice", 0.0)
    assert code(rules.speak_refusal(local, 0.0)) == "muted"
    assert rules.speak_refusal(person("other", ""), 0.0) is None
    assert rules.to_dict()["mutes"] == []  # never stored
    rules.member_left(local, [], 0.0)  # /part
    assert code(rules.speak_refusal(local, 0.0)) == "muted"
    local.gone = True
    rules.member_left(local, [], 0.0)  # quit
    assert not rules.speech_restricted


def test_nobody_mutes_an_operator(rules: RoomRules, alice: Participant) -> None:
    with pytest.raises(BadUsage, match="alice is an operator of #Den; /deop"):
        rules.mute(alice, None, "bob", 0.0)


def test_unmute(rules: RoomRules) -> None:
    bob = person("bob", account="bob")
    assert rules.unmute(bob, 0.0) is None
    rules.mute(bob, None, "alice", 0.0)
    bob.account = None
    rules.mute(bob, 60, "alice", 0.0)  # now by address too
    assert rules.unmute(bob, 0.0) == Change("unmute", "bob")
    assert rules.speak_refusal(bob, 0.0) is None
    assert not rules.speech_restricted
    rules.mute(person("carol", account="carol"), None, "alice", 0.0)
    change = rules.unmute_pattern(parse_pattern("account:carol"), 0.0)
    assert change == Change("unmute", "carol")
    assert rules.unmute_pattern(parse_pattern("account:carol"), 0.0) is None
    assert not rules.speech_restricted


def test_topic_lock(rules: RoomRules, alice: Participant) -> None:
    bob = person("bob")
    assert rules.topic_refusal(bob) is None
    assert rules.configure("topic-lock", "on") == Change("set", "topic-lock", "on")
    assert not rules.speech_restricted
    refusal = rules.topic_refusal(bob)
    assert isinstance(refusal, errors.NotOperator)
    assert refusal.text == "The topic of #Den is locked; only its operators set it."
    assert rules.topic_refusal(alice) is None
    assert rules.topic_refusal(bob, server_operator=True) is None


# -- bans --------------------------------------------------------------------


def test_a_ban_names_the_members_to_kick_but_operators(
    rules: RoomRules, alice: Participant
) -> None:
    guest = person("guest1", "198.51.100.9")
    logged = person("bob", "192.0.2.1", account="bob")
    root = person("root", "198.51.100.10", oper="root")
    away = person("carol", "203.0.113.1")
    members = [alice, guest, logged, root, away]
    change = rules.ban(
        parse_pattern("198.51.100.0/24"), 3600, " flood ", "alice", 0.0, members=members
    )
    assert change.kicked == (guest,)  # alice is an operator, root a server one
    assert (change.kind, change.target, change.value, change.reason) == (
        "ban",
        "198.51.100.0/24",
        "1h",
        "flood",
    )
    assert not change.replaced
    by_account = rules.ban(
        parse_pattern("account:bob"), None, "", "alice", 0.0, members=members
    )
    assert by_account.kicked == (logged,)
    again = rules.ban(parse_pattern("account:bob"), 60, "", "alice", 0.0, members=())
    assert again.replaced
    assert rules.unban(parse_pattern("account:bob"), 0.0) == Change(
        "unban", "account:bob"
    )
    assert rules.unban(parse_pattern("account:bob"), 0.0) is None


def test_a_room_holds_at_most_its_ban_list_size(rules: RoomRules) -> None:
    for number in range(ROOM_BAN_LIST_SIZE):
        rules.ban(
            parse_pattern(f"10.0.{number // 256}.{number % 256}"),
            None,
            "",
            "alice",
            0.0,
            members=(),
        )
    with pytest.raises(TooManyBans):
        rules.ban(parse_pattern("192.0.2.1"), None, "", "alice", 0.0, members=())
    assert len(rules.bans) == ROOM_BAN_LIST_SIZE


# -- bounds ------------------------------------------------------------------


def test_a_room_holds_at_most_its_mute_list_size(rules: RoomRules) -> None:
    for number in range(MUTE_LIST_SIZE - 1):
        rules.mute(person(f"g{number}", f"10.1.0.{number}"), None, "alice", 0.0)
    short = person("short", "10.2.0.1")
    rules.mute(short, 5, "alice", 0.0)
    with pytest.raises(TooManyMutes, match="100 mutes"):
        rules.mute(person("late", "10.3.0.1"), None, "alice", 0.0)
    assert len(rules.mutes) == MUTE_LIST_SIZE
    # An ended mute makes room.
    rules.mute(person("later", "10.3.0.1"), None, "alice", 5.0)
    assert len(rules.mutes) == MUTE_LIST_SIZE
    assert rules.speak_refusal(short, 5.0) is None


def test_a_room_keeps_the_newest_invitations(rules: RoomRules) -> None:
    first = person("first")
    rules.invite(first, 0.0)
    guests = [person(f"g{number}") for number in range(INVITE_LIST_SIZE)]
    for guest in guests:
        rules.invite(guest, 1.0)
    assert len(rules.invites) == INVITE_LIST_SIZE
    assert not rules.invited(first)
    assert rules.invited(guests[0])
    assert rules.invited(guests[-1])


def test_operator_accounts_are_bounded(rules: RoomRules, alice: Participant) -> None:
    rules.register(alice)
    for number in range(OPERATOR_ACCOUNTS_MAX):
        rules.op(person(f"op{number}", account=f"op{number}"))
    with pytest.raises(BadUsage, match="100 operator accounts"):
        rules.op(person("onemore", account="onemore"))
    assert len(rules.operator_accounts) == OPERATOR_ACCOUNTS_MAX
    rules.op(person("guest5"))  # live operators are bounded by the members


# -- settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("moderated", "ON", ("moderated", True)),
        ("Invite-Only", "off", ("invite-only", False)),
        ("topic-lock", "on", ("topic-lock", True)),
        ("limit", "25", ("limit", 25)),
        ("limit", str(LIMIT_MAX), ("limit", LIMIT_MAX)),
        ("limit", "OFF", ("limit", None)),
        ("key", "s3cr.t", ("key", "s3cr.t")),
        ("key", "k" * KEY_MAX, ("key", "k" * KEY_MAX)),
        ("key", "a,b#", ("key", "a,b#")),
        ("key", "off", ("key", None)),
    ],
)
def test_settings_parse(name: str, value: str, expected: tuple[str, object]) -> None:
    assert parse_setting(name, value) == expected


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("moderated", "yes", "Say /room moderated on, or /room moderated off."),
        ("moderated", "", "Say /room moderated on"),
        ("limit", "0", "1 to 10,000"),
        ("limit", str(LIMIT_MAX + 1), "1 to 10,000"),
        ("limit", "-3", "1 to 10,000"),
        ("limit", "٣", "1 to 10,000"),
        ("limit", "9" * 40, "1 to 10,000"),
        ("key", "two words", f"one word of at most {KEY_MAX}"),
        ("key", "#lobby", "not starting with #"),
        ("key", "k" * (KEY_MAX + 1), "one word"),
        ("key", "", "one word"),
        ("colour", "red", "'colour' is not a room setting; the settings are"),
    ],
)
def test_bad_settings_say_how(name: str, value: str, says: str) -> None:
    with pytest.raises(BadUsage) as raised:
        parse_setting(name, value)
    assert says in raised.value.text
    if name == "key" and value:
        assert value not in raised.value.text


def test_configure_reports_what_changed(rules: RoomRules) -> None:
    assert rules.configure("limit", "10") == Change("set", "limit", "10")
    assert rules.configure("limit", "10") is None
    assert rules.configure("limit", "off") == Change("set", "limit", "off")
    assert rules.configure("key", "hidden") == Change("set", "key", "set")
    assert rules.configure("moderated", "off") is None
    with pytest.raises(BadUsage):
        rules.configure("moderated", "maybe")
    assert rules.settings == RoomSettings(key="hidden")


def test_apply_setting_takes_the_grammar_s_values(rules: RoomRules) -> None:
    assert rules.apply_setting("moderated", True) == Change("set", "moderated", "on")
    assert restricted(rules)
    assert rules.apply_setting("moderated", True) is None
    assert rules.apply_setting("limit", 5) == Change("set", "limit", "5")
    assert rules.apply_setting("key", None) is None
    assert rules.apply_setting("key", "k") == Change("set", "key", "set")
    with pytest.raises(ValueError, match="no room setting"):
        rules.apply_setting("colour", "red")


def test_describe(rules: RoomRules, alice: Participant) -> None:
    bob = person("bob")
    rules.configure("key", "hidden")
    rules.configure("limit", "20")
    assert rules.describe([alice, bob], show_key=False) == [
        "#Den: moderated off, invite-only off, topic-lock off, limit 20, key set",
        "Operators here: @alice",
        "Not registered (/room register keeps it).",
        "Bans: 0 (/bans); mutes: 0.",
    ]
    assert "key hidden" in rules.describe([alice], show_key=True)[0]
    rules.register(alice, "Alice")
    ops = [person(f"op{n}", account=f"op{n}") for n in range(3)]
    for op in ops:
        rules.op(op)
    lines = rules.describe([alice, *ops], show_key=False, per_line=2)
    assert lines[1:3] == ["Operators here: @alice, @op0", "Operators here: @op1, @op2"]
    assert lines[3] == "Registered; founder: account Alice."
    assert lines[4:6] == ["Operator accounts: op0, op1", "Operator accounts: op2"]
    assert RoomRules(ROOM).describe([bob], False)[1] == "No operator here."


# -- expiry ------------------------------------------------------------------


def test_expiry_on_plain_float_times(rules: RoomRules) -> None:
    assert rules.next_expiry() is None
    assert rules.expire(1e9) == []
    bob = person("bob", account="bob")
    rules.mute(bob, 2, "alice", 100.0)
    rules.ban(parse_pattern("192.0.2.0/24"), 5, "", "alice", 100.0, members=())
    rules.ban(parse_pattern("192.0.3.0/24"), None, "", "alice", 100.0, members=())
    assert rules.next_expiry() == 102.0
    assert rules.expire(101.9) == []
    bob.nick = Nick.parse("robert")  # the notice names who they are now
    assert rules.expire(102.0) == [Change("mute-ended", "robert")]
    assert not rules.speech_restricted
    assert rules.next_expiry() == 105.0
    assert rules.expire(105.0) == [Change("ban-ended", "192.0.2.0/24")]
    assert rules.next_expiry() is None
    assert len(rules.bans) == 1


def test_a_mute_whose_member_is_gone_ends_with_the_nick_it_was_set_on(
    rules: RoomRules,
) -> None:
    bob = person("bob")
    rules.mute(bob, 2, "alice", 0.0)
    bob.nick = Nick.parse("robert")
    bob.gone = True
    rules.member_left(bob, [], 0.0)
    assert restricted(rules)  # the address is still muted
    assert rules.expire(2.0) == [Change("mute-ended", "bob")]
    assert not rules.speech_restricted


# -- the last operator -------------------------------------------------------


def test_the_longest_present_member_who_is_not_muted_becomes_operator(
    rules: RoomRules, alice: Participant
) -> None:
    early, muted, late = person("early"), person("muted", "192.0.2.2"), person("late")
    rules.mute(muted, None, "alice", 0.0)
    rules.voice(alice)
    change = rules.member_left(alice, [muted, early, late], 1.0)
    assert change == Change("auto-op", "early")
    assert rules.is_operator(early)
    assert not rules.voiced
    assert notice_for(change, "", ROOM) == (
        "early is now an operator of #Den (its last operator left)"
    )


def test_a_plain_room_promotes_no_one(rules: RoomRules, alice: Participant) -> None:
    """As IRC: nothing is set that needs an operator, so no heir and no line."""
    bob = person("bob")
    assert rules.member_left(alice, [bob], 0.0) is None
    assert not rules.is_operator(bob)


@pytest.mark.parametrize(
    "restrict",
    [
        lambda rules: rules.configure("invite-only", "on"),
        lambda rules: rules.configure("key", "sesame"),
        lambda rules: rules.configure("limit", "5"),
        lambda rules: rules.configure("topic-lock", "on"),
        lambda rules: rules.mute(person("troll", "192.0.2.9"), None, "alice", 0.0),
    ],
)
def test_anything_set_makes_an_heir(
    rules: RoomRules,
    alice: Participant,
    restrict: collections.abc.Callable[[RoomRules], object],
) -> None:
    restrict(rules)
    bob = person("bob")
    assert rules.member_left(alice, [bob], 0.0) == Change("auto-op", "bob")


def test_no_one_is_promoted_while_an_operator_remains(
    rules: RoomRules, alice: Participant
) -> None:
    rules.configure("moderated", "on")
    bob, carol = person("bob"), person("carol")
    rules.op(bob)
    assert rules.member_left(alice, [bob, carol], 0.0) is None
    assert not rules.is_operator(carol)
    root = person("root", oper="root")
    assert rules.member_left(bob, [root, carol], 0.0) is None
    assert not rules.is_operator(carol)
    assert rules.member_left(carol, [root], 0.0) is None  # not an operator


def test_nobody_left_to_promote(rules: RoomRules, alice: Participant) -> None:
    rules.configure("moderated", "on")
    muted = person("muted")
    rules.mute(muted, None, "alice", 0.0)
    assert rules.member_left(alice, [muted], 0.0) is None
    op, gone = person("op"), person("gone")
    gone.gone = True
    rules.op(op)
    assert rules.member_left(op, [gone], 0.0) is None
    assert not rules.is_operator(gone)


def test_a_registered_room_promotes_no_one(
    rules: RoomRules, alice: Participant
) -> None:
    rules.register(alice)
    bob = person("bob")
    assert rules.member_left(alice, [bob], 0.0) is None
    assert not rules.is_operator(bob)


# -- registering -------------------------------------------------------------


def test_register_and_drop(rules: RoomRules, alice: Participant) -> None:
    guest = person("guest1")
    with pytest.raises(errors.NotLoggedIn):
        rules.register(guest)
    with pytest.raises(errors.NotRegisteredRoom, match="not registered"):
        rules.drop(alice, [alice])
    bob = person("bob", account="bob")
    rules.op(bob)
    rules.op(guest)
    change = rules.register(alice, "Alice")
    assert change == Change("register", "alice", "Alice")
    assert rules.registered
    assert rules.founder == name_key("alice")
    assert rules.operator_accounts == {name_key("bob"): "bob"}
    with pytest.raises(BadUsage, match="registered already; its founder is account"):
        rules.register(bob)
    with pytest.raises(BadUsage, match="founder of #Den"):
        rules.deop(alice)
    with pytest.raises(errors.NotOperator, match="Only the founder of #Den"):
        rules.drop(bob, [alice, bob])
    carol = person("carol", account="carol")
    rules.op(carol)
    assert rules.is_operator(person("carol", "192.0.2.9", account="carol"))
    assert rules.drop(alice, [alice, carol]) == Change("drop", ROOM)
    assert rules.to_dict()["founder"] is None
    assert not rules.operator_accounts
    assert rules.is_operator(carol)  # present: stays, live
    assert not rules.is_operator(person("carol", "192.0.2.9", account="carol"))


def test_a_server_operator_may_drop(rules: RoomRules, alice: Participant) -> None:
    rules.register(alice)
    root = person("root", oper="root")
    assert rules.drop(root, [], server_operator=True).kind == "drop"


def test_deop_takes_the_operator_account_too(
    rules: RoomRules, alice: Participant
) -> None:
    rules.register(alice)
    bob = person("bob", account="bob")
    rules.op(bob)
    assert rules.op(bob) is None
    assert rules.deop(bob) == Change("deop", "bob")
    assert not rules.operator_accounts
    assert not rules.is_operator(person("bob", account="bob"))


# -- the stored form ---------------------------------------------------------


def test_round_trip(rules: RoomRules, alice: Participant) -> None:
    rules.register(alice, "Alice")
    rules.op(person("Bob", account="Bob"))
    for setting, value in [
        ("moderated", "on"),
        ("invite-only", "on"),
        ("topic-lock", "on"),
        ("limit", "12"),
        ("key", "sesame"),
    ]:
        rules.configure(setting, value)
    rules.ban(parse_pattern("203.0.113.0/24"), None, "spam", "alice", 0.0, members=())
    rules.ban(parse_pattern("account:troll"), 600, "", "alice", 0.0, members=())
    rules.mute(person("carol", account="carol"), 300, "alice", 0.0)
    rules.mute(person("guest9", "192.0.2.9"), None, "alice", 0.0)
    rules.voice(person("dave"))
    rules.invite(person("erin"), 0.0)
    data = json.loads(json.dumps(rules.to_dict()))
    assert data["version"] == RULES_VERSION
    back = RoomRules.from_dict(data, ROOM, 10.0)
    assert back.to_dict() == rules.to_dict()
    assert back.founder == name_key("alice")
    assert back.operator_accounts == {name_key("Bob"): "Bob"}
    assert back.settings == rules.settings
    assert back.speech_restricted
    assert back.next_expiry() == 300.0
    carol = person("carol", "192.0.2.50", account="carol")
    assert code(back.speak_refusal(carol, 10.0)) == "muted"
    assert code(join(back, person("x", "203.0.113.5"), now=10.0)) == "banned"
    assert not back.voiced
    assert not len(back.invites)
    assert not back.operators


def test_from_dict_drops_what_ended_and_what_no_longer_parses(
    log_events: list[LogEvent],
) -> None:
    ban = {"pattern": "192.0.2.1", "set_by": "a", "reason": "", "set_at": 0.0}
    data = {
        "version": RULES_VERSION + 1,
        "future": {"anything": [1, 2]},
        "founder": "Alice",
        "operators": ["Bob", 7, "", "alice"],
        "settings": {"moderated": "yes", "limit": 0, "key": "two words", "x": 1},
        "bans": [
            {**ban, "expires_at": 5.0},
            {**ban, "pattern": "192.0.2.2", "expires_at": None},
            {**ban, "pattern": "not an address!"},
            {"pattern": "192.0.2.3"},
            "junk",
        ],
        "mutes": [
            {"pattern": "account:carol", "shown": "c", "set_by": "a", "set_at": 0},
            {
                "pattern": "account:dave",
                "shown": "d",
                "set_by": "a",
                "set_at": 0,
                "expires_at": 5,
            },
            {"pattern": "192.0.2.0/24", "shown": "n", "set_by": "a", "set_at": 0},
            {"pattern": "account:erin", "shown": "e", "set_by": "a", "set_at": True},
            None,
        ],
    }
    rules = RoomRules.from_dict(data, ROOM, 10.0)
    assert rules.founder_name == "Alice"
    assert rules.operator_accounts == {name_key("Bob"): "Bob"}
    assert rules.settings == RoomSettings()
    assert [b.pattern.text for b in rules.bans.bans()] == ["192.0.2.2"]
    assert [m.shown for m in rules.mutes.mutes()] == ["c"]
    assert rules.speech_restricted
    dropped = [e for e in log_events if "a stored rule of #Den" in formatEvent(e)]
    assert len(dropped) == 5
    assert RoomRules.from_dict({}, ROOM, 0.0).idle
    assert RoomRules.from_dict({"bans": "x", "settings": 3}, ROOM, 0.0).idle


def test_stored_mutes_are_bounded() -> None:
    rows = [
        {"pattern": f"10.0.0.{n}", "shown": "g", "set_by": "a", "set_at": 0}
        for n in range(MUTE_LIST_SIZE + 20)
    ]
    assert len(RoomRules.from_dict({"mutes": rows}, ROOM, 0.0).mutes) == MUTE_LIST_SIZE


# -- notices -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (Change("op", "bob"), "alice made bob an operator of #Den"),
        (Change("deop", "bob"), "alice took operator status in #Den from bob"),
        (Change("voice", "bob"), "alice gave bob a voice in #Den"),
        (Change("devoice", "bob"), "alice took the voice in #Den from bob"),
        (
            Change("ban", "203.0.113.7", "30m", "spam"),
            "alice banned 203.0.113.7 from #Den for 30m (spam)",
        ),
        (
            Change("ban", "account:bob"),
            "alice banned account:bob from #Den until lifted",
        ),
        (Change("unban", "account:bob"), "alice lifted the ban on account:bob in #Den"),
        (Change("mute", "bob", "2s"), "alice muted bob in #Den for 2s"),
        (Change("mute", "bob"), "alice muted bob in #Den until unmuted"),
        (Change("unmute", "bob"), "alice unmuted bob in #Den"),
        (Change("invite", "bob"), "alice invited bob to #Den"),
        (Change("set", "moderated", "on"), "alice turned moderated on in #Den"),
        (Change("set", "invite-only", "off"), "alice turned invite-only off in #Den"),
        (Change("set", "limit", "20"), "alice limited #Den to 20 members"),
        (Change("set", "limit", "off"), "alice removed the member limit of #Den"),
        (
            Change("set", "key", "set"),
            "alice set a key on #Den; joining needs /join #Den KEY",
        ),
        (Change("set", "key", "off"), "alice removed the key of #Den"),
        (
            Change("register", "alice", "Alice"),
            "alice registered #Den; its founder is account Alice",
        ),
        (Change("drop", "#Den"), "alice dropped the registration of #Den"),
        (
            Change("ban-ended", "192.0.2.0/24"),
            "The ban on 192.0.2.0/24 in #Den has ended",
        ),
        (Change("mute-ended", "bob"), "bob is no longer muted in #Den"),
    ],
)
def test_notice_texts(change: Change, text: str) -> None:
    assert notice_for(change, "alice", ROOM) == text


def test_no_notice_shows_the_key(rules: RoomRules) -> None:
    change = rules.configure("key", "sesame")
    assert change is not None
    assert "sesame" not in notice_for(change, "alice", ROOM)
    assert "sesame" not in repr(change)
    assert kick_notices("bob", "alice", ROOM, "rude") == (
        "bob was kicked from #Den by alice (rude)",
        "You were kicked from #Den by alice (rude)",
    )
    assert (
        kick_notices("bob", "alice", ROOM, "")[0] == "bob was kicked from #Den by alice"
    )
    assert (
        invitation("alice", ROOM) == "alice invites you to #Den; /join #Den to accept."
    )


def test_settings_from_dict_keeps_only_what_parses() -> None:
    settings = RoomSettings.from_dict(
        {
            "moderated": True,
            "topic-lock": "on",
            "limit": 7,
            "key": "k",
            "invite-only": 1,
        }
    )
    assert settings == RoomSettings(moderated=True, limit=7, key="k")
    assert RoomSettings.from_dict(settings.to_dict()) == settings
