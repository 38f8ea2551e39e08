# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Token-bucket flood control with explicit time (PROTOCOL.md, "Limits")."""

from __future__ import annotations

import pytest

from twisted_chat.core.flood import FloodCredit, TokenBucket
from twisted_chat.core.settings import Settings


def test_a_full_burst_goes_at_once() -> None:
    """A fresh bucket lets ``burst`` lines through at the same instant."""
    bucket = TokenBucket(burst=10, rate=5)
    assert [bucket.take(now=0.0) for _ in range(10)] == [0.0] * 10


def test_line_after_the_burst_waits_one_interval() -> None:
    """With the bucket empty the next line must wait 1/rate seconds."""
    bucket = TokenBucket(burst=10, rate=5)
    for _ in range(10):
        bucket.take(now=0.0)
    assert bucket.take(now=0.0) == pytest.approx(0.2)


def test_refused_take_spends_nothing() -> None:
    """Asking again at the same instant gives the same wait: refusal is free."""
    bucket = TokenBucket(burst=1, rate=5)
    bucket.take(now=0.0)
    first = bucket.take(now=0.0)
    assert bucket.take(now=0.0) == first == pytest.approx(0.2)


def test_after_the_burst_lines_flow_at_the_rate() -> None:
    """Once empty, one line goes every 1/rate seconds, and no faster."""
    bucket = TokenBucket(burst=10, rate=5)
    for _ in range(10):
        bucket.take(now=0.0)
    assert bucket.take(now=0.2) == 0.0
    assert bucket.take(now=0.2) > 0.0
    assert bucket.take(now=0.4) == 0.0


def test_wait_shrinks_as_tokens_trickle_in() -> None:
    """Half a token in, the wait is half an interval."""
    bucket = TokenBucket(burst=1, rate=5)
    bucket.take(now=0.0)
    assert bucket.take(now=0.1) == pytest.approx(0.1)


def test_idle_time_refills_no_more_than_the_burst() -> None:
    """A long silence refills the bucket to ``burst``, not beyond."""
    bucket = TokenBucket(burst=3, rate=5)
    for _ in range(3):
        bucket.take(now=0.0)
    assert [bucket.take(now=100.0) for _ in range(3)] == [0.0] * 3
    assert bucket.take(now=100.0) > 0.0


def test_bucket_starts_full_at_any_clock_value() -> None:
    """A bucket first used at a large reactor time still starts with its burst."""
    bucket = TokenBucket(burst=2, rate=1)
    assert [bucket.take(now=1e9) for _ in range(2)] == [0.0, 0.0]
    assert bucket.take(now=1e9) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("burst", "rate", "on"), [(10, 5.0, True), (0, 5.0, False), (10, 0.0, False)]
)
def test_zero_burst_or_rate_turns_flood_control_off(
    burst: int, rate: float, on: bool
) -> None:
    """Settings say flood control is off when either number is 0."""
    assert Settings(flood_burst=burst, flood_rate=rate).flood_control is on


def test_spend_can_go_into_debt_and_reports_the_wait() -> None:
    """Charging many tokens at once leaves a debt that refills at the rate."""
    bucket = TokenBucket(burst=10, rate=5)
    assert bucket.spend(0.0, 5) == 0.0
    assert bucket.spend(0.0, 25) == pytest.approx((1 + 20) / 5)
    assert bucket.take(4.0) > 0
    assert bucket.take(4.2) == 0.0


# -- flood credit per address --------------------------------------------------


def test_a_new_connection_starts_from_what_its_group_left() -> None:
    """Reconnecting does not refill the burst; the time since does, at the rate."""
    credit = FloodCredit()
    first = credit.bucket("a", 10, 5.0, now=0.0)
    for _ in range(10):
        assert first.take(0.0) == 0.0
    credit.remember("a", first, now=0.0)
    second = credit.bucket("a", 10, 5.0, now=0.0)
    assert second.take(0.0) == pytest.approx(0.2)
    assert credit.bucket("a", 10, 5.0, now=1.0).tokens == pytest.approx(5.0)
    assert credit.bucket("b", 10, 5.0, now=0.0).tokens == 10


def test_the_lowest_credit_of_a_group_wins() -> None:
    """An idle connection closed last cannot hand its full burst to the next one."""
    credit = FloodCredit()
    spent = TokenBucket.holding(10, 5.0, 0.0, now=0.0)
    idle = TokenBucket(10, 5.0, stamp=0.0)
    credit.remember("a", spent, now=0.0)
    credit.remember("a", idle, now=0.0)
    assert credit.bucket("a", 10, 5.0, now=0.0).tokens == 0.0


def test_debt_is_remembered_too() -> None:
    """A bucket in debt (telnet negotiation) is remembered with its debt."""
    credit = FloodCredit()
    credit.remember("a", TokenBucket.holding(10, 5.0, -20.0, now=0.0), now=0.0)
    assert credit.bucket("a", 10, 5.0, now=0.0).take(0.0) == pytest.approx(4.2)


def test_credit_is_forgotten_once_it_would_be_full_again() -> None:
    """Entries last burst / rate seconds at most, so the table stays small."""
    credit = FloodCredit()
    for group in ("a", "b"):
        credit.remember(group, TokenBucket.holding(10, 5.0, 0.0, now=0.0), now=0.0)
    credit.remember("c", TokenBucket(10, 5.0, stamp=0.0), now=0.0)  # full: not kept
    assert len(credit) == 2
    credit.remember("d", TokenBucket.holding(10, 5.0, 0.0, now=2.0), now=2.0)
    assert len(credit) == 1


def test_credit_table_is_bounded_and_drops_the_oldest() -> None:
    """Full of recent entries, the table forgets the oldest: it starts from a burst."""
    credit = FloodCredit(capacity=3)
    for n in range(5):
        credit.remember(f"g{n}", TokenBucket.holding(10, 5.0, 0.0, now=0.0), now=0.0)
    assert len(credit) == 3
    assert credit.bucket("g0", 10, 5.0, now=0.0).tokens == 10
    assert credit.bucket("g4", 10, 5.0, now=0.0).tokens == 0.0


def test_unix_socket_clients_have_no_remembered_credit() -> None:
    """Group "" (no address) is never remembered: it is not one person."""
    credit = FloodCredit()
    credit.remember("", TokenBucket.holding(10, 5.0, 0.0, now=0.0), now=0.0)
    assert len(credit) == 0
