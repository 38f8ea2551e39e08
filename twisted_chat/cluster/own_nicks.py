"""
This node's users' nicknames, claimed in Redis so that each is held once
in the whole cluster (issue 19).

A ``/nick`` waits for its claim (:meth:`OwnNicks.claim_first`): of two
nodes racing for one name, exactly one user is told they have it.  The
names a user gets without asking (a guest name, a login's) are taken at
once and claimed after (:meth:`OwnNicks.claim`); a claim lost there, or
after an outage in which two nodes gave one name away (the earlier
taker keeps it: :meth:`OwnNicks.reclaim_all`), gives the user their
previous name back, or a guest name, with a notice saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted_chat.core import lines

if TYPE_CHECKING:
    from twisted_chat.cluster.link import RedisLink
    from twisted_chat.cluster.nick_claims import NickClaims
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.names import Nick
    from twisted_chat.core.room import Participant

__all__ = ["OwnNicks"]


class OwnNicks:
    """The claims of this node's users' nicknames."""

    def __init__(
        self, server: ChatServer, link: RedisLink, claims: NickClaims, clock: Any
    ) -> None:
        self.server = server
        self.link = link
        self.claims = claims
        self._clock = clock
        #: When each user here took their nickname (the earlier claim wins).
        self.since: dict[Participant, float] = {}

    def claim_first(
        self, participant: Participant, new: Nick, then: Callable[[bool], None]
    ) -> bool:
        """``/nick``: the claim in Redis decides, so one of two racing nodes wins."""
        if not self.link.up:
            return False  # running alone: claimed when Redis is back
        d = self.claims.claim(new.key, new.display, self._clock.seconds())

        def settled(won: bool) -> None:
            then(won)
            if won and participant.nick.key != new.key:
                self.claims.release(new.key)  # gone, or renamed meanwhile

        # Redis lost on the way: the node runs alone and claims it later.
        d.addErrback(lambda _: True)
        d.addCallback(settled)
        return True

    def claim(self, participant: Participant, new: Nick, old: Nick | None) -> None:
        if not self.link.up:
            return  # claimed again when Redis is back (reclaim_all)
        d = self.claims.claim(new.key, new.display, self.since.get(participant, 0.0))

        def settled(won: bool) -> None:
            if participant.gone or participant.nick.key != new.key:
                if won:
                    self.claims.release(new.key)
                return
            if won:
                if old is not None:
                    self.claims.release(old.key)
                return
            self.lost(participant, old)

        d.addCallbacks(settled, lambda _: None)

    def lost(self, participant: Participant, old: Nick | None) -> None:
        """Another node's user holds ``participant``'s nickname: give it up."""
        taken = participant.nick.display
        directory = self.server.directory
        if old is not None and old.key not in self.server.participants:
            back = old
        else:
            back = directory.guest_nick()
        participant.client.send(
            lines.notice(
                f"{taken} is taken on another node of this server; "
                f"you are {back.display} now (/nick NAME to choose another)."
            )
        )
        directory.force_rename(participant, back)

    def reclaim_all(self) -> None:
        """
        After an outage: claim every user's nickname again, and give up the
        claims of those who left or were renamed meanwhile (their releases
        could not be sent), so other nodes' users may take those names.
        """
        here = [
            p for p in self.server.participants.values() if not p.remote and not p.gone
        ]
        self.claims.prune([p.nick.key for p in here]).addErrback(lambda _: None)
        for participant in here:
            nick = participant.nick
            d = self.claims.reclaim(
                nick.key, nick.display, self.since.get(participant, 0.0)
            )

            def settled(
                holder: str | None,
                participant: Participant = participant,
                nick: Nick = nick,
            ) -> None:
                if holder is not None and participant.nick.key == nick.key:
                    self.lost(participant, None)

            d.addCallbacks(settled, lambda _: None)
