"""Rate-limited reporting of repeated failures."""

from __future__ import annotations

from twisted_chat.core.throttle import LogThrottle


def test_first_failure_is_reported_then_one_per_interval() -> None:
    """The first failure is reported; later ones wait out the interval, counted."""
    throttle = LogThrottle(60.0)
    assert throttle.report(1000.0) == 0
    assert throttle.report(1001.0) is None
    assert throttle.report(1059.0) is None
    assert throttle.report(1060.0) == 2
    assert throttle.report(1061.0) is None
    assert throttle.report(2000.0) == 1
