"""
When what a room hears goes out: at the end of the turn, or a little later.

Lines said in a reactor turn wait in their room (:attr:`Room.pending`) and go
out once the turn is done, one write per member for all of them.  A busy
room's membership notices (join, part, quit, nick) may wait longer, up to
``NOTICE_DELAY`` seconds, unless a message makes the room go out sooner:
with a thousand members every join would otherwise cost a thousand sends,
and a connect every ten milliseconds would keep the daemon busy.  Either
way, every member sees the room's lines in the order they were said.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted_chat.core.bounds import BUSY_ROOM, NOTICE_DELAY

if TYPE_CHECKING:
    from twisted_chat.core.room import Participant, Room


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

    @property
    def busy(self) -> bool:
        """Are lines waiting anywhere (so a direct reply must catch up first)?"""
        return bool(self._dirty or self._waiting)

    def say_in(
        self,
        room: Room,
        data: bytes,
        sender: Participant | None,
        *,
        notice: bool = False,
    ) -> None:
        """
        Queue a room line for the end of this turn, or send it now.

        ``sender`` does not get the line back.  A ``notice`` (join, quit,
        ...) is not history; in a busy room it may wait for the notice
        timer.
        """
        if self._defer is None:
            room.broadcast(data, sender)
            if not notice:
                self._remember(room, data)
            return
        # The fan-out's hot path: one call per line beyond this one.
        room.hear(data, sender)
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
        if not self._dirty:
            self._defer(self.end_of_turn)
        self._dirty[room] = None

    def end_of_turn(self) -> None:
        """Hand out what the rooms heard this turn (not the waiting notices)."""
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            for room in dirty:
                if room.pending:
                    self._remember(room, room.flush())

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
                self._remember(room, room.flush())

    def catch_up(self, participant: Participant) -> None:
        """Hand ``participant`` their pending room lines now, before a reply."""
        for room in participant.rooms.values():
            if room.pending:
                room.catch_up(participant)

    def flush_rooms_of(self, participant: Participant) -> None:
        """Hand out every pending line of ``participant``'s rooms now."""
        for room in participant.rooms.values():
            if room.pending:
                self._remember(room, room.flush())
