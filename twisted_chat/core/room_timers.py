"""
One timer per room for its bans and mutes that end by themselves.

A room's rules know when their next ban or mute ends
(:meth:`~twisted_chat.core.room_state.RoomState.next_expiry`); a timer per
ban would let an operator who bans a thousand addresses for a minute set a
thousand timers.  So a room holds at most one, for its earliest end, and
when it fires the room announces what ended and asks for the next.
Sans-IO: the ``call_later`` is the chat server's (``reactor.callLater`` in
the daemon, a ``Clock``'s in tests); without one, ends are only noticed
when somebody speaks or joins (the checks compare with the time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from twisted_chat.core.room import Room

CallLater = Callable[[float, Callable[[], None]], object]


@runtime_checkable
class _Cancellable(Protocol):
    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class RoomTimers:
    """
    The rooms' expiry timers: at most one per live room.

    :param call_later: runs a callable after a delay; None for no timers.
    :param seconds: the current time.
    :param expired: called with a room when its timer fires; it expires the
        rules, announces, and calls :meth:`schedule` again.
    """

    def __init__(
        self,
        call_later: CallLater | None,
        seconds: Callable[[], float],
        expired: Callable[[Room], None],
    ) -> None:
        self._call_later = call_later
        self._seconds = seconds
        self._expired = expired
        #: Room -> (when it fires, the delayed call).
        self._timers: dict[Room, tuple[float, object]] = {}

    def __len__(self) -> int:
        return len(self._timers)

    def due(self, room: Room) -> float | None:
        """When ``room``'s timer fires (None: it has none)."""
        timer = self._timers.get(room)
        return None if timer is None else timer[0]

    def schedule(self, room: Room) -> None:
        """Make ``room``'s timer fire at its rules' next expiry (or not at all)."""
        call_later = self._call_later
        if call_later is None:
            return
        rules = room.rules
        due = rules.next_expiry() if rules is not None else None
        current = self._timers.get(room)
        if current is not None:
            if due is not None and current[0] <= due:
                return  # it fires first, and schedules the next then
            self.forget(room)
        if due is None:
            return
        delay = max(0.0, due - self._seconds())
        self._timers[room] = (due, call_later(delay, lambda: self._fire(room)))

    def forget(self, room: Room) -> None:
        """Cancel ``room``'s timer (it emptied and went)."""
        timer = self._timers.pop(room, None)
        if timer is not None:
            call = timer[1]
            if isinstance(call, _Cancellable) and call.active():
                call.cancel()

    def _fire(self, room: Room) -> None:
        self._timers.pop(room, None)
        self._expired(room)
