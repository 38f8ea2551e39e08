# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""
The UDP proof-of-address handshake, sans-IO.

A UDP source address can be forged, so a server that answered every datagram
with room traffic would be a reflection and amplification weapon: an attacker
sends small datagrams "from" a victim and the server floods the victim.
PROTOCOL.md's rule is that nothing but one short challenge line goes to an
address until that address has shown it receives what is sent to it: it must
echo a token that only the server can compute and that was only ever sent to
that address.

- :class:`TokenMint` makes and checks tokens.  A token is an HMAC of the
  address and a time window under a random per-process secret, so checking
  one needs no state at all: an unproven address costs the server nothing but
  the challenge it gets.  A token is accepted in its own window and the next,
  so it stays valid for at least one whole window (and at most two).
- :class:`ChallengeLimiter` decides whether a challenge may be sent: at most
  one per address every :data:`CHALLENGE_INTERVAL` seconds, and at most
  :data:`CHALLENGES_PER_SECOND` in all.  The table behind the per-address rule
  is bounded (:data:`CHALLENGE_TABLE_SIZE`), so a flood of datagrams from
  forged sources cannot grow the server's memory; when the table is full of
  recent entries the limiter refuses rather than forgets, because forgetting
  an entry would let that address get a second challenge too soon.

Time comes in as arguments (``now``), so everything here is tested with plain
numbers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets

from attrs import define, field

from twisted_chat.core.flood import TokenBucket

#: Seconds in one token window.  A token is accepted in the window it was
#: made in and the next one: a person has at least this long to type
#: ``/hello TOKEN``.
TOKEN_WINDOW = 120.0
#: Bytes of HMAC kept in a token: 80 bits, which nobody guesses by sending
#: datagrams, in 16 characters a person can copy.
TOKEN_BYTES = 10
#: At most one challenge per address in this many seconds (PROTOCOL.md).
CHALLENGE_INTERVAL = 10.0
#: Challenges the whole server sends per second at most, whatever the number
#: of sources: this bounds what forged traffic can make the server emit.
CHALLENGES_PER_SECOND = 100.0
#: Recently challenged addresses remembered at most.  It must exceed what the
#: global cap lets through in :data:`CHALLENGE_INTERVAL` (burst plus rate
#: times interval), or the limiter would refuse honest newcomers.
CHALLENGE_TABLE_SIZE = 4096

Address = tuple[str, int]


def _window_key(secret: bytes, window: int, address: Address) -> bytes:
    host, port = address
    message = f"{window}\x00{host}\x00{port}".encode()
    return hmac.new(secret, message, hashlib.sha256).digest()[:TOKEN_BYTES]


def _spell(digest: bytes) -> str:
    """Lowercase base32: letters and digits only, so a double-click selects it."""
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


@define
class TokenMint:
    """
    Makes and checks ``/hello`` tokens for addresses.

    :param secret: the HMAC key; a fresh random one per process by default,
        so tokens die with the process and are never stored anywhere.
    :param window: seconds per window; see :data:`TOKEN_WINDOW`.
    """

    secret: bytes = field(factory=lambda: secrets.token_bytes(32), repr=False)
    window: float = TOKEN_WINDOW

    def _index(self, now: float) -> int:
        return math.floor(now / self.window)

    def token(self, address: Address, now: float) -> str:
        """The token that proves ``address`` during the window holding ``now``."""
        return _spell(_window_key(self.secret, self._index(now), address))

    def check(self, token: str, address: Address, now: float) -> bool:
        """
        Whether ``token`` was made for ``address`` in this window or the last.

        Compared in constant time; case and surrounding blanks do not matter
        (people retype tokens).
        """
        given = token.strip().lower().encode("ascii", "replace")
        index = self._index(now)
        found = False
        for window in (index, index - 1):
            expected = _spell(_window_key(self.secret, window, address))
            # No short-cut: both comparisons always run.
            found |= hmac.compare_digest(given, expected.encode("ascii"))
        return found


@define
class ChallengeLimiter:
    """
    Whether a challenge may go to an address now.

    :param interval: seconds between two challenges to one address.
    :param rate: challenges per second in all (also the burst).
    :param capacity: addresses remembered at most.
    """

    interval: float = CHALLENGE_INTERVAL
    rate: float = CHALLENGES_PER_SECOND
    capacity: int = CHALLENGE_TABLE_SIZE
    #: Address -> when it was last challenged, oldest first: an address is
    #: re-inserted when challenged again, so the order is the time order and
    #: expired entries are always at the front.
    _recent: dict[Address, float] = field(factory=dict, init=False)
    _bucket: TokenBucket = field(init=False)
    #: Challenges refused so far, for stats and tests.
    refused: int = field(default=0, init=False)

    @_bucket.default
    def _make_bucket(self) -> TokenBucket:
        return TokenBucket(burst=self.rate, rate=self.rate)

    def __len__(self) -> int:
        return len(self._recent)

    def allow(self, address: Address, now: float) -> bool:
        """
        Say whether ``address`` may be challenged now, and if so count it.

        Refuses when the address was challenged less than ``interval``
        seconds ago, when the global rate is spent, or when the table is full
        of addresses still inside their interval.
        """
        self._forget_expired(now)
        last = self._recent.get(address)
        if last is not None and now - last < self.interval:
            self.refused += 1
            return False
        if last is None and len(self._recent) >= self.capacity:
            self.refused += 1
            return False
        if self._bucket.take(now):
            self.refused += 1
            return False
        self._recent.pop(address, None)
        self._recent[address] = now
        return True

    def _forget_expired(self, now: float) -> None:
        recent = self._recent
        while recent:
            address, last = next(iter(recent.items()))
            if now - last < self.interval:
                return
            del recent[address]
