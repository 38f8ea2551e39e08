"""Ban patterns, durations and ban lists (twisted_chat.core.bans)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from twisted_chat.core.bans import (
    BAN_LIST_SIZE,
    LABEL_MAX,
    Ban,
    BanList,
    TooManyBans,
    hidden_address,
    looks_like_nick,
    parse_pattern,
)
from twisted_chat.core.durations import (
    MAX_DURATION,
    format_left,
    looks_like_duration,
    parse_duration,
)
from twisted_chat.core.errors import BadUsage, InvalidName
from twisted_chat.core.names import name_key


def ban(
    text: str, now: float = 0.0, ends: float | None = None, reason: str = ""
) -> Ban:
    return Ban(parse_pattern(text), "alice", reason, now, ends)


@pytest.mark.parametrize(
    ("text", "kind", "shown"),
    [
        ("account:Bob", "account", "account:Bob"),
        ("ACCOUNT:Bob", "account", "account:Bob"),
        ("203.0.113.7", "address", "203.0.113.7"),
        ("::ffff:203.0.113.7", "address", "203.0.113.7"),
        ("2001:DB8::1", "address", "2001:db8::1"),
        ("203.0.113.0/24", "network", "203.0.113.0/24"),
        ("2001:db8::/48", "network", "2001:db8::/48"),
        ("::ffff:203.0.113.0/120", "network", "203.0.113.0/24"),
        ("203.0.113.7/32", "address", "203.0.113.7"),
        ("10.0.0.0/8", "network", "10.0.0.0/8"),
        ("2001::/16", "network", "2001::/16"),
    ],
)
def test_patterns_parse_to_their_canonical_form(
    text: str, kind: str, shown: str
) -> None:
    pattern = parse_pattern(text)
    assert (pattern.kind, pattern.text) == (kind, shown)
    assert parse_pattern(pattern.text) == pattern


def test_account_patterns_compare_by_name_key() -> None:
    assert parse_pattern("account:BOB") == parse_pattern("account:bob")
    assert parse_pattern("account:Bob").key == name_key("Bob")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("203.0.113.7/24", "host bits set; did you mean 203.0.113.0/24?"),
        ("10.0.0.0/7", "too wide"),
        ("0.0.0.0/0", "too wide"),
        ("2000::/15", "too wide"),
        ("::/0", "too wide"),
        ("::ffff:0.0.0.0/100", "too wide"),
        ("203.0.113.0/33", "is not a block"),
        ("fe80::1%eth0", "%zone"),
        ("203.0.113.300", "is not a nick"),
        ("nick!user@host", "is not a nick"),
    ],
)
def test_bad_patterns_are_refused_clearly(text: str, says: str) -> None:
    with pytest.raises(BadUsage) as raised:
        parse_pattern(text)
    assert says in raised.value.text


def test_a_bad_account_name_is_an_invalid_name() -> None:
    with pytest.raises(InvalidName):
        parse_pattern("account:1bob")


@pytest.mark.parametrize(
    ("text", "nick"),
    [
        ("bob", True),
        ("Bob_2", True),
        ("203.0.113.7", False),
        ("account:bob", False),
        ("2001:db8::/48", False),
        ("dead::", False),
        ("10.0.0.0/8", False),
    ],
)
def test_looks_like_nick(text: str, nick: bool) -> None:
    assert looks_like_nick(text) is nick


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("12h", 43200),
        ("7d", 604800),
        ("2w", 1209600),
        ("1h30m", 5400),
        ("365d", MAX_DURATION),
        ("30M", 1800),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert looks_like_duration(text)
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("366d", "1s to 365d"),
        ("53w", "1s to 365d"),
        ("0m", "1s to 365d"),
        ("30", "not a duration"),
        ("m", "not a duration"),
        ("1.5h", "not a duration"),
        ("9999999d", "not a duration"),
        ("spam", "not a duration"),
    ],
)
def test_bad_durations(text: str, says: str) -> None:
    with pytest.raises(BadUsage) as raised:
        parse_duration(text)
    assert says in raised.value.text
    assert not looks_like_duration("spam")


def test_format_left() -> None:
    assert [format_left(s) for s in (0, 0.2, 40, 720, 3_700, 273_600)] == [
        "0s",
        "1s",
        "40s",
        "12m",
        "1h 1m",
        "3d 4h",
    ]


def test_exact_address_and_mapped_forms_match() -> None:
    bans = BanList()
    bans.add(ban("203.0.113.7"), 0)
    assert bans.matching("203.0.113.7", None, 0) is not None
    assert bans.matching("::ffff:203.0.113.7", None, 0) is not None
    assert bans.matching("203.0.113.8", None, 0) is None
    assert bans.matching("", None, 0) is None  # a UNIX socket
    assert bans.matching("not-an-ip", None, 0) is None


def test_ipv4_blocks_match_mapped_clients_and_ipv4_mapped_blocks_match_ipv4() -> None:
    bans = BanList()
    bans.add(ban("198.51.100.0/24"), 0)
    bans.add(ban("::ffff:203.0.113.0/120"), 0)
    for host in ("198.51.100.1", "::ffff:198.51.100.255", "203.0.113.9"):
        assert bans.matching(host, None, 0) is not None, host
    assert bans.matching("198.51.101.1", None, 0) is None
    assert bans.matching("::ffff:198.51.101.1", None, 0) is None


def test_ipv6_slash_48_matches_its_addresses_only() -> None:
    bans = BanList()
    bans.add(ban("2001:db8:1::/48"), 0)
    assert bans.matching("2001:db8:1:ffff::1", None, 0) is not None
    assert bans.matching("2001:db8:1::1%eth0", None, 0) is not None
    assert bans.matching("2001:db8:2::1", None, 0) is None
    # An IPv4 address whose number is the block's does not match an IPv6 block.
    assert bans.matching("32.1.13.184", None, 0) is None


def test_several_prefix_lengths_each_match() -> None:
    bans = BanList()
    bans.add(ban("10.0.0.0/8"), 0)
    bans.add(ban("192.168.4.0/22"), 0)
    assert bans.matching("10.200.1.1", None, 0) is not None
    assert bans.matching("192.168.7.255", None, 0) is not None
    assert bans.matching("192.168.8.0", None, 0) is None


def test_accounts_match_by_key_and_guests_do_not() -> None:
    bans = BanList()
    bans.add(ban("account:Bob"), 0)
    assert bans.matching("203.0.113.7", name_key("BOB"), 0) is not None
    assert bans.matching("203.0.113.7", None, 0) is None
    assert bans.matching("203.0.113.7", name_key("carol"), 0) is None


def test_expiry_by_clock_lookup_expire_and_next_expiry() -> None:
    clock = Clock()
    bans = BanList()
    assert bans.next_expiry() is None
    bans.add(ban("203.0.113.7", ends=60), clock.seconds())
    bans.add(ban("203.0.113.8", ends=30), clock.seconds())
    bans.add(ban("203.0.113.9"), clock.seconds())
    assert bans.next_expiry() == 30
    clock.advance(30)
    assert bans.matching("203.0.113.8", None, clock.seconds()) is None
    assert len(bans) == 2  # dropped at lookup
    assert bans.next_expiry() == 60
    clock.advance(29)
    assert bans.expire(clock.seconds()) == []
    assert bans.matching("203.0.113.7", None, clock.seconds()) is not None
    clock.advance(1)
    assert [b.pattern.text for b in bans.expire(clock.seconds())] == ["203.0.113.7"]
    assert bans.next_expiry() is None
    assert bans.matching("203.0.113.9", None, 1e12) is not None  # until lifted


def test_replacing_a_ban_moves_its_end_and_leaves_no_stale_expiry() -> None:
    bans = BanList()
    bans.add(ban("203.0.113.7", ends=10, reason="one"), 0)
    earlier = bans.add(ban("203.0.113.7", ends=100, reason="two"), 0)
    assert earlier is not None
    assert earlier.reason == "one"
    assert len(bans) == 1
    assert bans.next_expiry() == 100
    assert bans.expire(50) == []
    assert bans.matching("203.0.113.7", None, 50) is not None


def test_remove_lifts_each_kind() -> None:
    bans = BanList()
    for text in ("account:bob", "203.0.113.7", "2001:db8::/48"):
        bans.add(ban(text, ends=5), 0)
    for text in ("account:BOB", "203.0.113.7", "2001:db8::/48"):
        assert bans.remove(parse_pattern(text)) is not None
    assert bans.remove(parse_pattern("203.0.113.7")) is None
    assert len(bans) == 0
    assert bans.next_expiry() is None
    assert bans.matching("2001:db8::1", name_key("bob"), 0) is None


def test_the_list_is_bounded_and_expired_bans_make_room() -> None:
    bans = BanList(capacity=3)
    bans.add(ban("192.0.2.1", ends=10), 0)
    bans.add(ban("192.0.2.2"), 0)
    bans.add(ban("192.0.2.3"), 0)
    with pytest.raises(TooManyBans) as raised:
        bans.add(ban("192.0.2.4"), 5)
    assert raised.value.code == "usage"
    assert "full (3 bans)" in raised.value.text
    bans.add(ban("192.0.2.3", reason="again"), 5)  # a replacement still fits
    bans.add(ban("192.0.2.4"), 10)  # the first has expired
    assert len(bans) == 3


def test_the_default_bound_holds() -> None:
    bans = BanList()
    for n in range(BAN_LIST_SIZE):
        bans.add(ban(f"10.{n // 256}.{n % 256}.1"), 0)
    with pytest.raises(TooManyBans):
        bans.add(ban("192.0.2.1"), 0)
    assert len(bans) == BAN_LIST_SIZE


def test_stale_expiry_entries_stay_bounded() -> None:
    bans = BanList()
    for n in range(10_000):
        bans.add(ban("192.0.2.1", ends=n + 1.0), 0)
        bans.remove(parse_pattern("192.0.2.1"))
    assert len(bans._ends) <= 16 + 1


def test_listing_says_pattern_who_when_and_why() -> None:
    now = 1_764_590_400.0  # 2025-12-01 12:00 UTC
    bans = BanList()
    bans.add(
        Ban(parse_pattern("203.0.113.0/24"), "alice", "spam", now, now + 1800), now
    )
    bans.add(Ban(parse_pattern("account:Bob"), "carol", "", now, None), now)
    bans.add(Ban(parse_pattern("192.0.2.1"), "alice", "", now, now + 10), now)
    assert bans.listing(now + 60) == [
        "203.0.113.0/24 by alice, until 2025-12-01 12:30 UTC (29m left): spam",
        "account:Bob by carol, until lifted",
    ]


def test_records_round_trip_through_plain_dicts() -> None:
    original = Ban(parse_pattern("::ffff:203.0.113.0/120"), "alice", "why", 5.0, 65.0)
    data = original.to_dict()
    assert data == {
        "pattern": "203.0.113.0/24",
        "set_by": "alice",
        "reason": "why",
        "set_at": 5.0,
        "expires_at": 65.0,
    }
    assert Ban.from_dict(data) == original
    with pytest.raises(ValueError, match="not a ban record"):
        Ban.from_dict({**data, "set_at": "soon"})
    with pytest.raises(BadUsage):
        Ban.from_dict({**data, "pattern": "0.0.0.0/0"})


def test_load_skips_what_ended_while_stored_and_keeps_the_bound() -> None:
    stored = [
        ban("192.0.2.1", ends=10),
        ban("192.0.2.2"),
        ban("192.0.2.3"),
        ban("192.0.2.4"),
    ]
    bans = BanList.load(stored, now=20, capacity=2)
    assert [b.pattern.text for b in bans.bans()] == ["192.0.2.2", "192.0.2.3"]


def test_a_hidden_address_is_stored_with_its_label_and_read_back() -> None:
    """The address is kept (so the ban holds) and its label shown, after a restart."""
    pattern = hidden_address("198.51.100.7", "bob")
    ban = Ban(pattern, "alice", "spam", 10.0, None)
    row = ban.to_dict()
    assert row["pattern"] == "198.51.100.7"
    assert row["label"] == "bob (by address)"
    again = Ban.from_dict(row)
    assert again.pattern == pattern
    assert again.pattern.text == "bob (by address)"
    assert again.describe(11.0).startswith("bob (by address) by alice")


def test_a_row_without_a_label_or_with_a_bad_one_shows_the_pattern() -> None:
    plain = Ban(parse_pattern("203.0.113.0/24"), "alice", "", 0.0, None).to_dict()
    assert "label" not in plain
    assert Ban.from_dict(plain).pattern.text == "203.0.113.0/24"
    for label in ("", "x" * (LABEL_MAX + 1), 7):
        row = {**plain, "label": label}
        assert Ban.from_dict(row).pattern.text == "203.0.113.0/24"
