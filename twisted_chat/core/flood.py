"""
Token-bucket flood control, sans-IO: time comes in as an argument.

The TCP adapter pauses reading while the bucket is empty (a paste arrives
whole, at the rate); the UDP adapter drops datagrams instead, because it
cannot ask a UDP sender to wait.

A bucket belongs to one connection, but the credit it holds belongs to the
address: :class:`FloodCredit` remembers what a connection's bucket had left
when it ended, so reconnecting does not buy a fresh burst.
"""

from __future__ import annotations

from attrs import define, field

_EPSILON = 1e-9
_MIN_WAIT = 0.001

#: Address groups whose flood credit is remembered at most.  An entry lives
#: only until its bucket would be full again (``burst / rate`` seconds, 2 s
#: by default), so this many is far more than honest traffic needs.
FLOOD_CREDIT_TABLE_SIZE = 16_384


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

    @classmethod
    def holding(
        cls, burst: float, rate: float, tokens: float, now: float
    ) -> TokenBucket:
        """A bucket with exactly ``tokens`` at ``now`` (debt included)."""
        bucket = cls(burst, rate, stamp=now)
        bucket.tokens = tokens
        return bucket

    def level(self, now: float) -> float:
        """The tokens there would be at ``now``, without taking any."""
        return min(self.burst, self.tokens + (now - self.stamp) * self.rate)

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

    def full(self, now: float) -> bool:
        """Whether the bucket is back to its whole burst at ``now``."""
        return self.level(now) >= self.burst - _EPSILON


@define
class BucketTable:
    """
    Token buckets by key, each forgotten once it is full again.

    A full bucket is what a key with no entry gets anyway, so dropping it
    changes nothing; that keeps the table to the keys active lately.  The
    table never holds more than ``capacity`` entries: when it is full the
    least recently stored entry goes, and that key starts from a full
    bucket next time, as if it had been quiet.  Entries are kept in the
    order they were last stored, so the expiry sweep looks at the front only
    and stops at the first entry that is not full yet: amortised O(1).
    """

    capacity: int
    _buckets: dict[str, TokenBucket] = field(factory=dict, init=False)

    def __len__(self) -> int:
        return len(self._buckets)

    def get(self, key: str) -> TokenBucket | None:
        """The bucket stored for ``key``, if any."""
        return self._buckets.get(key)

    def put(self, key: str, bucket: TokenBucket, now: float) -> None:
        """Store ``bucket`` for ``key`` (newest last); full buckets are not kept."""
        buckets = self._buckets
        buckets.pop(key, None)
        self.sweep(now)
        if bucket.full(now):
            return
        while len(buckets) >= self.capacity > 0:
            del buckets[next(iter(buckets))]
        buckets[key] = bucket

    def discard(self, key: str) -> None:
        """Forget ``key``."""
        self._buckets.pop(key, None)

    def sweep(self, now: float) -> None:
        """Forget the oldest entries while they are full again."""
        buckets = self._buckets
        while buckets:
            key = next(iter(buckets))
            if not buckets[key].full(now):
                return
            del buckets[key]


@define
class FloodCredit:
    """
    What flood control left each address group when its connections ended.

    Without it, flood control per connection is flood control per connect:
    closing and reconnecting refills the burst.  A new connection of a group
    starts from what its group's last connection left, refilled for the time
    since, never from more.  Groups are the admission groups
    (:func:`twisted_chat.core.admission.address_group`); "" (UNIX sockets) is never
    remembered, as it is never capped.

    :param capacity: groups remembered at most (see :class:`BucketTable`).
    """

    capacity: int = FLOOD_CREDIT_TABLE_SIZE
    _left: BucketTable = field(init=False)

    @_left.default
    def _make_table(self) -> BucketTable:
        return BucketTable(self.capacity)

    def __len__(self) -> int:
        return len(self._left)

    def bucket(self, group: str, burst: float, rate: float, now: float) -> TokenBucket:
        """The bucket a new connection of ``group`` starts with at ``now``."""
        left = self._left.get(group) if group else None
        if left is None:
            return TokenBucket(burst, rate, stamp=now)
        return TokenBucket.holding(burst, rate, min(float(burst), left.level(now)), now)

    def remember(self, group: str, bucket: TokenBucket, now: float) -> None:
        """
        A connection of ``group`` has ended with ``bucket``: keep what it had.

        When several connections of a group end close together the lowest
        credit wins, so the group's next connection cannot pick the best of
        them.
        """
        if not group:
            return
        tokens = bucket.level(now)
        earlier = self._left.get(group)
        if earlier is not None:
            tokens = min(tokens, earlier.level(now))
        self._left.put(
            group, TokenBucket.holding(bucket.burst, bucket.rate, tokens, now), now
        )
