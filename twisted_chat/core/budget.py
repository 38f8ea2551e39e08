"""
The reply budget: big replies are charged to the address that asks.

Flood control counts the lines a client sends; this counts the lines the
server sends back in answer (listings, help, history), so that a short
command cannot draw a long reply over and over.  One token bucket per
address group, shared by its connections (a UNIX socket client, group "",
gets its own); the first ``FREE_REPLY_LINES`` of a reply are free, and a
command that would draw a reply while the bucket is in debt gets
``! slow-down`` and nothing else.  Time comes from the injected
``seconds``, as everywhere in the core.  A group's bucket outlives its last
connection until it is full again (as flood credit does,
:class:`~twisted_chat.core.flood.FloodCredit`), so reconnecting does not refill it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from attrs import define

from twisted_chat.core.bounds import FREE_REPLY_LINES, REPLY_BURST, REPLY_RATE
from twisted_chat.core.errors import SlowDown
from twisted_chat.core.flood import FLOOD_CREDIT_TABLE_SIZE, BucketTable, TokenBucket

if TYPE_CHECKING:
    from twisted_chat.core.room import Participant


@define(slots=True)
class _Holding:
    """An address group's bucket while participants of the group hold it."""

    bucket: TokenBucket
    #: How many participants hold it; the bucket is set aside at 0.
    holders: int = 0


class ReplyBudgets:
    """Every address group's reply budget, kept while in use or not yet full."""

    def __init__(self, seconds: Callable[[], float]) -> None:
        self._seconds = seconds
        #: Each group's bucket and how many participants hold it.
        self._held: dict[str, _Holding] = {}
        #: The buckets of groups with no participant left, until full again.
        self._left = BucketTable(FLOOD_CREDIT_TABLE_SIZE)

    def hold(self, participant: Participant) -> None:
        """Give ``participant`` their address group's budget (a new one for "")."""
        group = participant.group
        held = self._held.get(group) if group else None
        if held is None:
            left = self._left.get(group) if group else None
            if left is not None:
                self._left.discard(group)
                bucket = left
            else:
                # Full, and stamped 0: the first charge refills it to the
                # burst at whatever the time is then.
                bucket = TokenBucket(REPLY_BURST, REPLY_RATE)
            held = _Holding(bucket)
            if group:
                self._held[group] = held
        participant.budget = held.bucket
        held.holders += 1

    def release(self, participant: Participant) -> None:
        """``participant`` is gone."""
        group = participant.group
        held = self._held.get(group) if group else None
        if held is not None:
            held.holders -= 1
            if not held.holders:
                del self._held[group]
                self._left.put(group, held.bucket, self._seconds())

    def over(self, participant: Participant) -> bool:
        """Has ``participant``'s address spent its budget, and more?"""
        bucket = participant.budget
        return bucket is not None and bucket.level(self._seconds()) < 1.0

    def refuse_if_over(self, participant: Participant) -> None:
        """
        Refuse a reply before it is built, while the budget is in debt.

        :raises SlowDown: then.
        """
        if self.over(participant):
            raise SlowDown(
                "That is a lot of output in a short time; wait a second and ask again."
            )

    def charge(self, participant: Participant, count: int, work: int = 0) -> None:
        """
        Charge a reply of ``count`` lines; the first few are free.

        :param work: lines' worth of work beyond the lines themselves (a
            search through every room), never free.
        """
        bucket = participant.budget
        cost = max(0, count - FREE_REPLY_LINES) + work
        if bucket is not None and cost > 0:
            bucket.spend(self._seconds(), cost)
