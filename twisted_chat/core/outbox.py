"""
When what a room hears goes out: at the end of the turn, or a little later.

Lines said in a reactor turn wait in their room (:attr:`Room.pending`) and go
out once the turn is done, one write per member for all of them.  A busy
room's membership notices (join, part, quit, nick) may wait longer, up to
``NOTICE_DELAY`` seconds, unless a message makes the room go out sooner:
with a thousand members every join would otherwise cost a thousand sends,
and a connect every ten milliseconds would keep the daemon busy.  Either
way, every member sees the room's lines in the order they were said.

It also counts what goes out, for ``/stats`` (:mod:`twisted_chat.core.stats`)
and the metrics (issue 17): a room's lines, and those lines times its
members, once per room flush and never per line or delivery; and, when it
is given a :attr:`Outbox.clock`, how long each turn's fan-out took, as
counts in the fixed buckets of :data:`FANOUT_BUCKETS` (two clock reads and
one bisect a turn, never a read per room or line).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from twisted_chat.core.bounds import BUSY_ROOM, NOTICE_DELAY
from twisted_chat.core.logs import RateLimitedLogger

if TYPE_CHECKING:
    from twisted_chat.core.events import RoomEvent
    from twisted_chat.core.room import Participant, Room

__all__ = ["FANOUT_BUCKETS", "Outbox"]

_log = RateLimitedLogger()

#: Upper bounds, in seconds, of the buckets a turn's fan-out time is counted
#: in (a Prometheus histogram's ``le``); one more bucket holds the rest.
FANOUT_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


class Outbox:
    """
    The rooms with lines waiting, and the calls that hand them out.

    :param remember: gives the store a room's messages as they go out.
    :param defer: runs a callable at the end of the reactor turn; None sends
        every line at once.
    :param call_later: runs a callable after a delay; None hands a busy
        room's notices out at the end of the turn too.
    """

    def __init__(
        self,
        remember: Callable[[Room, bytes], None],
        defer: Callable[[Callable[[], None]], object] | None,
        call_later: Callable[[float, Callable[[], None]], object] | None,
    ) -> None:
        self._remember = remember
        self._defer = defer
        self._call_later = call_later if defer is not None else None
        #: Rooms to flush at the end of this turn.
        self._dirty: dict[Room, None] = {}
        #: Busy rooms whose pending notices wait for the notice timer.
        self._waiting: dict[Room, None] = {}
        self._timer_set = False
        #: Direct replies waiting for the end of the turn (:meth:`reply_later`).
        self._replies: dict[Participant, list[bytes]] = {}
        #: Called once this turn's lines are handed out (:meth:`after_turn`).
        self._after: list[Callable[[], None]] = []
        #: Room lines handed out, and lines times members at each flush
        #: (:mod:`twisted_chat.core.stats` says why not exact deliveries).
        self.messages = 0
        self.deliveries = 0
        #: ``deliveries`` by the members' transport (``Room.transports``).
        self.deliveries_by: dict[str, int] = {}
        #: Called at the end of each turn that handed lines out, if set
        #: (the stats' clock sample: once a turn, not once a line).
        self.on_turn: Callable[[], None] | None = None
        #: Read at the start and end of each turn that hands lines out, if
        #: set (the chat's clock): how long the fan-out took.
        self.clock: Callable[[], float] | None = None
        #: Turns by fan-out time: ``fanout_counts[i]`` turns took at most
        #: ``FANOUT_BUCKETS[i]`` seconds and more than the bucket before
        #: (not cumulative); the last counts the turns over the last bound.
        self.fanout_counts = [0] * (len(FANOUT_BUCKETS) + 1)
        #: The seconds those turns took, in all.
        self.fanout_seconds = 0.0

    @property
    def busy(self) -> bool:
        """Are lines waiting anywhere (so a direct reply must catch up first)?"""
        return bool(self._dirty or self._waiting or self._replies)

    def say_in(
        self,
        room: Room,
        data: bytes,
        sender: Participant | None,
        *,
        notice: bool = False,
        event: RoomEvent | None = None,
    ) -> None:
        """
        Queue a room line for the end of this turn, or send it now.

        ``sender`` does not get the line back.  A ``notice`` (join, quit,
        ...) is not history; in a busy room it may wait for the notice
        timer.  ``event`` is the line as members of other wire formats get
        it (:mod:`twisted_chat.core.events`); a caller builds it only when
        ``room.foreign`` is set.
        """
        if self._defer is None:
            # Every line is its own flush here (tests, no reactor).
            self.messages += 1
            self.deliveries += len(room.members)
            self._count_by_transport(room, 1)
            room.broadcast(data, sender, event)
            if not notice:
                self._remember(room, data)
            return
        # The fan-out's hot path: one call per line beyond this one.
        room.hear(data, sender, event)
        if (
            notice
            and self._call_later is not None
            and len(room.members) >= BUSY_ROOM
            and room not in self._dirty
        ):
            self._waiting[room] = None
            if not self._timer_set:
                self._timer_set = True
                self._call_later(NOTICE_DELAY, self._notice_timer)
            return
        # Inline (not _end_turn_soon): this runs for every line said.
        if not self._dirty and not self._replies and not self._after:
            self._defer(self.end_of_turn)
        self._dirty[room] = None

    def heard_elsewhere(self, room: Room) -> None:
        """
        ``room`` heard lines from another node (``Room.hear_elsewhere``):
        they go out at the end of this turn, with what it hears here.
        """
        if self._defer is None:
            room.flush()
            return
        self._end_turn_soon()
        self._dirty[room] = None

    def say_run_in(
        self, room: Room, data: bytes, sender: Participant, count: int
    ) -> None:
        """
        :meth:`say_in` for ``count`` messages of ``sender`` made into one
        room line (``data``, several CRLF-ended lines; never a notice, and
        only for a room of line users).  The room holds them as one entry,
        so the counts the flush makes from its entries get the other
        ``count - 1`` here.
        """
        extra = count - 1
        self.messages += extra
        self.deliveries += extra * len(room.members)
        self._count_by_transport(room, extra)
        self.say_in(room, data, sender)

    def after_turn(self, release: Callable[[], None]) -> bool:
        """
        Call ``release`` once this turn's replies and room lines are handed
        out: a transport holding a client's output (the answers to its
        read, a new client's welcome) sends all of it, and the lines this
        turn owes the client, in one write, instead of one write now and
        one more at the end of the turn.  False without a reactor (``defer``
        None): the caller releases now.
        """
        if self._defer is None:
            return False
        self._end_turn_soon()
        self._after.append(release)
        return True

    def _end_turn_soon(self) -> None:
        """Have :meth:`end_of_turn` run at the end of this turn, once: the
        first room, reply or held output of the turn schedules it (nothing
        to schedule without a reactor)."""
        defer = self._defer
        if (
            defer is not None
            and not self._dirty
            and not self._replies
            and not self._after
        ):
            defer(self.end_of_turn)

    def end_of_turn(self) -> None:
        """Hand out what the rooms heard this turn (not the waiting notices),
        then let the held output go (:meth:`after_turn`)."""
        if self._replies:
            self._send_replies()
        if not self._dirty:
            if self._after:
                self._release_held()
            return
        clock = self.clock
        started = clock() if clock is not None else 0.0
        messages = deliveries = 0
        remember = self._remember
        by = self.deliveries_by
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            for room in dirty:
                pending = room.pending
                if pending:
                    count = len(pending)
                    messages += count
                    deliveries += count * (len(room.members) - room.remote)
                    for name, members in room.transports.items():
                        by[name] = by.get(name, 0) + count * members
                    remember(room, room.flush())
        self.messages += messages
        self.deliveries += deliveries
        if clock is not None:
            # A clock that stepped back counts as no time at all.
            elapsed = max(clock() - started, 0.0)
            self.fanout_counts[bisect_left(FANOUT_BUCKETS, elapsed)] += 1
            self.fanout_seconds += elapsed
        if self.on_turn is not None:
            self.on_turn()
        if self._after:
            self._release_held()

    def _release_held(self) -> None:
        after, self._after = self._after, []
        for release in after:
            try:
                release()
            except Exception:
                _log.failure("while releasing held output")

    def flush(self) -> None:
        """Hand out everything now, waiting notices included."""
        self.end_of_turn()
        self._flush_waiting()

    def _notice_timer(self) -> None:
        self._timer_set = False
        self._flush_waiting()

    def _flush_waiting(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for room in waiting:
            if room.pending:
                self._hand_out(room)

    def reply_later(self, participant: Participant, data: bytes) -> None:
        """
        A direct reply that may wait for the end of the turn (``/ping``'s
        pong, for a line user): it then goes out in one write with the room
        lines ``participant`` is owed by then, instead of a catch-up write
        now, a write for the reply and one more at the end of the turn.  A
        reply sent directly before then catches up first (:meth:`catch_up`),
        which sends this one too, so no reply overtakes it.  Without a
        reactor (``defer`` None) it goes at once.
        """
        if self._defer is None:
            participant.client.send(data)
            return
        waiting = self._replies.get(participant)
        if waiting is not None:
            waiting.append(data)
            return
        self._end_turn_soon()
        self._replies[participant] = [data]

    def _send_replies(self) -> None:
        replies, self._replies = self._replies, {}
        for participant, data in replies.items():
            self._send_owed(participant, data)

    def _send_owed(self, participant: Participant, replies: list[bytes]) -> None:
        """
        One write: the pending room lines ``participant`` is owed (as
        ``Room.catch_up`` gives them, marking them sent), then ``replies``.
        Only for line users, whom no room keeps among its foreign members.
        """
        if participant.gone:
            return
        chunks: list[bytes] = []
        for room in participant.rooms.values():
            if room.pending:
                chunks += room.owed(participant)
        chunks += replies
        try:
            participant.client.send(b"".join(chunks))
        except Exception:
            _log.failure("while replying to {nick}", nick=participant.nick.display)

    def catch_up(self, participant: Participant) -> None:
        """Hand ``participant`` their pending room lines (and the replies
        waiting for them) now, before a reply."""
        if self._replies:
            replies = self._replies.pop(participant, None)
            if replies is not None:
                self._send_owed(participant, replies)
                return
        for room in participant.rooms.values():
            if room.pending:
                room.catch_up(participant)

    def reply(self, participant: Participant, data: bytes) -> None:
        """
        Send ``participant`` a direct reply, after the room lines queued
        before it; nothing to one who is gone.  For replies that come later
        than the line that asked (a password checked on another thread).
        """
        if participant.gone:
            return
        if self.busy:
            self.catch_up(participant)
        participant.client.send(data)

    def flush_rooms_of(self, participant: Participant) -> None:
        """Hand out every pending line of ``participant``'s rooms now."""
        for room in participant.rooms.values():
            if room.pending:
                self._hand_out(room)

    def _hand_out(self, room: Room) -> None:
        """Flush one room that has lines pending, counting them."""
        pending = len(room.pending)
        self.messages += pending
        self.deliveries += pending * len(room.members)
        self._count_by_transport(room, pending)
        self._remember(room, room.flush())

    def _count_by_transport(self, room: Room, lines: int) -> None:
        by = self.deliveries_by
        for name, members in room.transports.items():
            by[name] = by.get(name, 0) + lines * members
