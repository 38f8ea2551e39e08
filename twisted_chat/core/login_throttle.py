"""
Login throttling: 5 failures in a minute, then a minute of refusals.

PROTOCOL.md: "After 5 failures in a minute for one account, or from one
address, logins are refused with ``! login-throttled: …`` for a minute."
``/oper`` is "throttled as logins are": it goes through the same object with
:func:`oper_key` as its account key, so operator names and account names
never share a count, while an address's failures at either add up.

Accounts are counted whether they exist or not (a refusal must not tell
which names are accounts), by name key; addresses by admission group
(:func:`twisted_chat.core.admission.address_group`, so an IPv6 /64 is one
address).  The "" group (UNIX sockets) is not counted by address, as
admission never caps it; its accounts still are.

A sliding window rather than :class:`~twisted_chat.core.flood.TokenBucket`:
a bucket refilling at 5 a minute gives a guess every 12 seconds forever,
where the contract says a minute of silence after the fifth.  Verifying a
password takes a while off the reactor, so an attempt counts from
:meth:`LoginThrottle.check`, not from its result: 50 logins sent at once
from one address get 5 verifications, not 50.  Each table holds at most
``capacity`` keys, in the order they were last touched; the sweep drops
keys quiet for a window from the front (amortised O(1)), and when a table is
full the least recently touched key goes.
"""

from __future__ import annotations

from typing import Final

from attrs import define, field

from .errors import LoginThrottled

__all__ = [
    "FAILURES",
    "LOCKOUT",
    "THROTTLE_TABLE_SIZE",
    "WINDOW",
    "LoginThrottle",
    "oper_key",
]

#: Failures within :data:`WINDOW` seconds that start a lockout.
FAILURES: Final = 5
#: The window failures are counted in, in seconds.
WINDOW: Final = 60.0
#: How long a lockout lasts, in seconds.
LOCKOUT: Final = 60.0
#: Keys each table (accounts, addresses) remembers at most.
THROTTLE_TABLE_SIZE: Final = 16_384


def oper_key(name_key: str) -> str:
    """The account key ``/oper NAME`` is counted under (apart from accounts)."""
    return "oper\x00" + name_key


@define(slots=True)
class _Record:
    """One key's recent failures, attempts being verified, and lockout."""

    failures: list[float] = field(factory=list)
    pending: int = 0
    locked_until: float = 0.0
    touched: float = 0.0


@define
class _Table:
    """Records by key, least recently touched first, bounded."""

    capacity: int
    quiet: float
    records: dict[str, _Record] = field(factory=dict)

    def get(self, key: str) -> _Record | None:
        return self.records.get(key)

    def touch(self, key: str, now: float) -> _Record:
        """The record of ``key``, created if need be, moved to the back."""
        records = self.records
        record = records.pop(key, None)
        self.sweep(now)
        if record is None:
            record = _Record()
            while len(records) >= self.capacity > 0:
                del records[next(iter(records))]
        record.touched = now
        records[key] = record
        return record

    def sweep(self, now: float) -> None:
        """Forget the front records that have been quiet long enough."""
        records = self.records
        while records:
            key = next(iter(records))
            record = records[key]
            if record.pending or record.touched + self.quiet > now:
                return
            del records[key]


@define
class LoginThrottle:
    """
    Failures per account key and per address group, and the refusals they earn.

    After every :meth:`check` that returned None the caller reports the
    attempt's outcome exactly once: :meth:`failed`, :meth:`succeeded`, or
    :meth:`cancelled` when it never ran.
    """

    failures: int = FAILURES
    window: float = WINDOW
    lockout: float = LOCKOUT
    capacity: int = THROTTLE_TABLE_SIZE
    _accounts: _Table = field(init=False)
    _groups: _Table = field(init=False)

    def __attrs_post_init__(self) -> None:
        quiet = max(self.window, self.lockout)
        self._accounts = _Table(self.capacity, quiet)
        self._groups = _Table(self.capacity, quiet)

    def sizes(self) -> tuple[int, int]:
        """Keys remembered: (accounts, address groups)."""
        return len(self._accounts.records), len(self._groups.records)

    def check(self, account_key: str, group: str, now: float) -> LoginThrottled | None:
        """
        The refusal for a login (or /oper) attempt at ``now``, or None and
        the attempt counts as under way.
        """
        account = self._accounts.get(account_key)
        wait = self._wait(account, now)
        if wait:
            return LoginThrottled(
                f"Too many failed logins for {_shown(account_key)}; "
                f"try again in {_seconds(wait)}."
            )
        address = self._groups.get(group) if group else None
        wait = self._wait(address, now)
        if wait:
            return LoginThrottled(
                "Too many failed logins from your address; "
                f"try again in {_seconds(wait)}."
            )
        self._accounts.touch(account_key, now).pending += 1
        if group:
            self._groups.touch(group, now).pending += 1
        return None

    def failed(self, account_key: str, group: str, now: float) -> None:
        """The attempt :meth:`check` let through was wrong."""
        self._count(self._accounts.touch(account_key, now), now)
        if group:
            self._count(self._groups.touch(group, now), now)

    def succeeded(self, account_key: str, group: str, now: float) -> None:
        """
        The attempt was right: the account's failures are forgotten, the
        address's are not (one good account must not reset the count of an
        address guessing at others).
        """
        account = self._accounts.touch(account_key, now)
        account.pending = max(0, account.pending - 1)
        account.failures.clear()
        if group:
            address = self._groups.touch(group, now)
            address.pending = max(0, address.pending - 1)

    def cancelled(self, account_key: str, group: str) -> None:
        """
        The attempt never ran (the hasher was busy): it counts neither way,
        so a storm that keeps the hasher busy cannot lock a user out.
        """
        for table, key in ((self._accounts, account_key), (self._groups, group)):
            record = table.get(key) if key else None
            if record is not None:
                record.pending = max(0, record.pending - 1)

    def _wait(self, record: _Record | None, now: float) -> float:
        """Seconds until ``record`` lets an attempt through (0: now)."""
        if record is None:
            return 0.0
        if record.locked_until > now:
            return record.locked_until - now
        failures = record.failures
        while failures and failures[0] + self.window <= now:
            del failures[0]
        if len(failures) + record.pending < self.failures:
            return 0.0
        # Attempts under way may yet fail and lock; ask for a moment.
        return 1.0

    def _count(self, record: _Record, now: float) -> None:
        record.pending = max(0, record.pending - 1)
        failures = record.failures
        failures.append(now)
        while failures and failures[0] + self.window <= now:
            del failures[0]
        if len(failures) >= self.failures:
            record.locked_until = now + self.lockout
            failures.clear()


def _shown(account_key: str) -> str:
    return (
        "that operator name" if account_key.startswith("oper\x00") else "that account"
    )


def _seconds(wait: float) -> str:
    whole = max(1, int(wait + 0.999))
    return "1 second" if whole == 1 else f"{whole} seconds"
