"""
Token-bucket flood control, sans-IO: time comes in as an argument.

The TCP adapter pauses reading while the bucket is empty (a paste arrives
whole, at the rate); the UDP adapter drops datagrams instead, because it
cannot ask a UDP sender to wait.
"""

from __future__ import annotations

from attrs import define, field

_EPSILON = 1e-9
_MIN_WAIT = 0.001


@define(slots=True)
class TokenBucket:
    """``burst`` lines at once, then ``rate`` lines a second."""

    burst: float
    rate: float
    tokens: float = field(default=-1.0)
    stamp: float = 0.0

    def __attrs_post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float) -> float:
        """
        Spend one token if there is one.

        :return: 0.0 when the line may go now, else the seconds until a
            token will be there (nothing is spent in that case).
        """
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        # Refilling in small float steps can leave 0.9999999; count that as
        # a whole token, and never ask for a wait too small to move a clock.
        if tokens >= 1.0 - _EPSILON:
            self.tokens = max(0.0, tokens - 1.0)
            return 0.0
        self.tokens = tokens
        return max((1.0 - tokens) / self.rate, _MIN_WAIT)

    def spend(self, now: float, amount: float) -> float:
        """
        Charge ``amount`` tokens at once, going into debt if need be.

        :return: 0.0 when a token is left, else the seconds until there is
            one again.
        """
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens = tokens - amount
        if self.tokens >= 1.0 - _EPSILON:
            return 0.0
        return max((1.0 - self.tokens) / self.rate, _MIN_WAIT)
