"""Login throttling (twisted_chat.core.login_throttle)."""

from __future__ import annotations

from twisted.internet.task import Clock

from twisted_chat.core.admission import address_group
from twisted_chat.core.errors import LoginThrottled
from twisted_chat.core.login_throttle import (
    FAILURES,
    THROTTLE_TABLE_SIZE,
    LoginThrottle,
    oper_key,
)

GROUP = address_group("203.0.113.7")


def fail(throttle: LoginThrottle, account: str, group: str, now: float) -> None:
    assert throttle.check(account, group, now) is None
    throttle.failed(account, group, now)


def test_five_failures_for_one_account_lock_it_for_a_minute() -> None:
    """Failures at 0, 10, ..., 40 s: locked from 40 s to 100 s."""
    clock, throttle = Clock(), LoginThrottle()
    for n in range(FAILURES):
        fail(throttle, "bob", address_group(f"198.51.100.{n}"), clock.seconds())
        clock.advance(10)
    refusal = throttle.check("bob", address_group("192.0.2.1"), clock.seconds())
    assert isinstance(refusal, LoginThrottled)
    assert str(refusal) == (
        "login-throttled: Too many failed logins for that account; "
        "try again in 50 seconds."
    )
    assert throttle.check("carol", address_group("192.0.2.1"), clock.seconds()) is None
    clock.advance(49.5)
    assert throttle.check("bob", "x", clock.seconds()) is not None
    clock.advance(0.5)
    assert throttle.check("bob", "x", clock.seconds()) is None


def test_five_failures_from_one_address_lock_it() -> None:
    throttle = LoginThrottle()
    for n in range(FAILURES):
        fail(throttle, f"user{n}", GROUP, 0)
    refusal = throttle.check("someone", GROUP, 1)
    assert refusal is not None
    assert "from your address" in refusal.text
    # The same /64 is the same address; another address is not.
    six = address_group("2001:db8::1")
    for n in range(FAILURES):
        fail(throttle, f"v6user{n}", six, 0)
    assert throttle.check("x", address_group("2001:db8::ffff:1"), 1) is not None
    assert throttle.check("x", address_group("2001:db8:0:1::1"), 1) is None
    assert throttle.check("x", GROUP, 61) is None


def test_failures_older_than_the_window_do_not_count() -> None:
    throttle = LoginThrottle()
    for n in range(FAILURES - 1):
        fail(throttle, "bob", GROUP, n)
    fail(throttle, "bob", GROUP, 60.5)  # the first has left the window
    assert throttle.check("bob", GROUP, 61) is None


def test_attempts_being_verified_count_at_once() -> None:
    throttle = LoginThrottle()
    for _ in range(FAILURES):
        assert throttle.check("bob", GROUP, 0) is None
    refusal = throttle.check("bob", GROUP, 0)
    assert refusal is not None
    assert "1 second" in refusal.text
    throttle.succeeded("bob", GROUP, 0.1)
    assert throttle.check("bob", GROUP, 0.1) is None


def test_success_clears_the_account_not_the_address() -> None:
    throttle = LoginThrottle()
    for _ in range(FAILURES - 1):
        fail(throttle, "bob", GROUP, 0)
    assert throttle.check("bob", GROUP, 1) is None
    throttle.succeeded("bob", GROUP, 1)
    other = address_group("192.0.2.9")
    for _ in range(FAILURES - 1):
        fail(throttle, "bob", other, 2)  # the account starts again from zero
    # The address had 4 failures and one success: one more failure locks it.
    fail(throttle, "carol", GROUP, 3)
    assert throttle.check("dave", GROUP, 4) is not None


def test_oper_names_are_counted_apart_but_the_address_is_shared() -> None:
    throttle = LoginThrottle()
    for _ in range(FAILURES):
        fail(throttle, oper_key("alice"), address_group(f"192.0.2.{_}"), 0)
    refusal = throttle.check(oper_key("alice"), "other", 1)
    assert refusal is not None
    assert "that operator name" in refusal.text
    assert throttle.check("alice", "other", 1) is None
    throttle.failed("alice", "other", 1)
    for _ in range(FAILURES - 1):
        fail(throttle, oper_key("zed"), GROUP, 2)
    fail(throttle, "eve", GROUP, 2)
    assert throttle.check(oper_key("zed"), GROUP, 3) is not None


def test_unix_sockets_are_not_counted_by_address() -> None:
    throttle = LoginThrottle()
    for n in range(FAILURES * 2):
        fail(throttle, f"user{n}", "", 0)
    assert throttle.check("someone", "", 0) is None
    assert throttle.sizes() == (FAILURES * 2 + 1, 0)


def test_tables_are_bounded() -> None:
    throttle = LoginThrottle(capacity=100)
    for n in range(1_000):
        fail(throttle, f"user{n}", f"group{n}", 0)
    assert throttle.sizes() == (100, 100)
    assert LoginThrottle().capacity == THROTTLE_TABLE_SIZE


def test_quiet_keys_are_forgotten() -> None:
    throttle = LoginThrottle()
    fail(throttle, "bob", GROUP, 0)
    assert throttle.sizes() == (1, 1)
    fail(throttle, "carol", address_group("192.0.2.1"), 61)
    assert throttle.sizes() == (1, 1)


def test_a_cancelled_attempt_counts_neither_way() -> None:
    """A busy hasher's attempts never lock a user out, and never reset a count."""
    throttle = LoginThrottle()
    for _ in range(FAILURES * 3):
        assert throttle.check("bob", GROUP, 0) is None
        throttle.cancelled("bob", GROUP)
    assert throttle.check("bob", GROUP, 0) is None
    throttle.failed("bob", GROUP, 0)
    for _ in range(FAILURES - 2):
        fail(throttle, "bob", GROUP, 1)
    # Four failures so far; cancelling does not forget them.
    assert throttle.check("bob", GROUP, 2) is None
    throttle.cancelled("bob", GROUP)
    fail(throttle, "bob", GROUP, 3)
    assert throttle.check("bob", GROUP, 4) is not None
