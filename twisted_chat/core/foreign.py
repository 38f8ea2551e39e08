"""
The members of a room whose clients speak another wire format than the line
protocol (IRC, web), and their fan-out.

Kept apart from :class:`~twisted_chat.core.room.Room` so that a room of only
line users carries none of it: ``room.foreign`` is None, and the hot path
pays one ``is None`` test a line.  When a room has such members, every line
it hears also brings its event (:mod:`twisted_chat.core.events`), and at
the room's flush each format renders the turn's events once and hands the
same bytes to all of its members; only a member who said something this
turn (their own lines are left out, unless the format echoes) or who
started mid-turn gets a rendering of their own, as line members get a join
of their own.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from itertools import accumulate
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from attrs import define, field

from twisted_chat.core.events import RoomEvent, RoomNotice, WireFormat
from twisted_chat.core.logs import RateLimitedLogger

if TYPE_CHECKING:
    from twisted_chat.core.room import Participant, Room

__all__ = ["ForeignMembers", "notice_event", "tell", "wire_format_of"]

_log = RateLimitedLogger()

Send = Callable[[bytes], None]
#: One event heard this turn: its place among the room's pending lines,
#: the event, and who said it (None: everybody gets it).
Pending = tuple[int, RoomEvent, "Participant | None"]


def _starting_at(events: list[Pending], start: int) -> int:
    """How many of the turn's first events came before line ``start``."""
    if not start:
        return 0
    return bisect_left(events, start, key=itemgetter(0))


def _without(batch: bytes, ends: list[int], skipped: int, own: Sequence[int]) -> bytes:
    """
    ``batch`` without its first ``skipped`` pieces and the pieces at ``own``
    (ascending); ``ends`` are the pieces' end offsets.  Cut by offsets, so a
    sender's share costs its own events, not the turn's.
    """
    parts = []
    at = ends[skipped - 1] if skipped else 0
    for position in own:
        if position < skipped:
            continue
        begin = ends[position - 1] if position else 0
        if begin > at:
            parts.append(batch[at:begin])
        at = ends[position]
    if at == 0:
        return batch
    parts.append(batch[at:])
    return b"".join(parts)


def notice_event(data: bytes) -> RoomNotice:
    """A line said without an event, for the other formats: its text."""
    return RoomNotice(data.decode("utf-8", "replace").rstrip("\r\n").removeprefix("* "))


def tell(participant: Participant, room: Room, data: bytes, event: RoomEvent) -> None:
    """Send ``participant`` line ``data``, or ``event`` in their own format."""
    fmt = wire_format_of(participant)
    if fmt is None:
        participant.client.send(data)
    else:
        participant.client.send_wire(fmt.render(room, [(event, None)]))  # type: ignore[attr-defined]


def wire_format_of(participant: Participant) -> WireFormat | None:
    """The participant's format (None: the line protocol)."""
    fmt: WireFormat | None = getattr(participant.client, "wire_format", None)
    return fmt


@define(eq=False, slots=True)
class ForeignMembers:
    """One room's members of other formats, grouped by format, and their events."""

    #: Each member's format and ``send_wire``, in the order they joined.
    members: dict[Participant, tuple[WireFormat, Send]] = field(factory=dict)
    #: What the room heard this turn, for them.
    events: list[Pending] = field(factory=list)
    #: Members who start later than the turn's first line: its index.
    starts: dict[Participant, int] = field(factory=dict)
    # Per format, its members' (participant, send) pairs: the fan-out loop's
    # tuple, rebuilt only after a membership change (as Room.fanout is).
    _groups: dict[WireFormat, tuple[tuple[Participant, Send], ...]] = field(
        factory=dict, init=False
    )
    _stale: bool = field(default=False, init=False)

    def add(self, participant: Participant, fmt: WireFormat, start: int) -> None:
        client: Any = participant.client
        # The fan-out's writer (``send_fanout``) may skip what ``send_wire``
        # checks for a client's own replies.
        send = getattr(client, "send_fanout", None) or client.send_wire
        self.members[participant] = (fmt, send)
        self._stale = True
        if start:
            self.starts[participant] = start

    def remove(self, participant: Participant) -> None:
        if self.members.pop(participant, None) is not None:
            self._stale = True
        self.starts.pop(participant, None)

    @property
    def groups(self) -> dict[WireFormat, tuple[tuple[Participant, Send], ...]]:
        if self._stale:
            grouped: dict[WireFormat, list[tuple[Participant, Send]]] = {}
            for member, (fmt, send) in self.members.items():
                grouped.setdefault(fmt, []).append((member, send))
            self._groups = {fmt: tuple(pairs) for fmt, pairs in grouped.items()}
            self._stale = False
        return self._groups

    def hear(self, index: int, event: RoomEvent, sender: Participant | None) -> None:
        self.events.append((index, event, sender))

    def flush(self, room: Room) -> None:
        """Hand out the turn's events: one rendering per format, then each member's."""
        events, self.events = self.events, []
        starts, self.starts = self.starts, {}
        if not events:
            return
        # Where each sender's events are, found once for every format.
        said: dict[Participant | None, list[int]] = {}
        for position, (_, _, sender) in enumerate(events):
            said.setdefault(sender, []).append(position)
        everyone = [(event, sender) for _, event, sender in events]
        for fmt, group in self.groups.items():
            # Each event rendered once; a sender's share is cut from the batch.
            pieces = fmt.render_each(room, everyone)
            batch = b"".join(pieces)
            ends: list[int] = []
            for member, send in group:
                data = batch
                own = None if fmt.echo else said.get(member)
                if own is not None or member in starts:
                    if not ends:
                        ends = list(accumulate(map(len, pieces)))
                    skipped = _starting_at(events, starts.get(member, 0))
                    data = _without(batch, ends, skipped, own or ())
                    if not data:
                        continue
                try:
                    send(data)
                except Exception:
                    self._failed(room, member)

    def catch_up(self, room: Room, member: Participant, upto: int) -> None:
        """Give ``member`` now what the room heard before line ``upto``."""
        entry = self.members.get(member)
        if entry is None:
            return
        fmt, send = entry
        start = self.starts.get(member, 0)
        owed = [pending for pending in self.events if start <= pending[0] < upto]
        self.starts[member] = upto
        data = self._render_for(room, member, fmt, owed, 0)
        if data:
            self._send(room, member, send, data)

    def tell(self, room: Room, event: RoomEvent, told: set[Participant]) -> None:
        """Send ``event`` now to the members not in ``told`` (who are added)."""
        rendered: dict[WireFormat, bytes] = {}
        for member, (fmt, send) in self.members.items():
            if member not in told:
                told.add(member)
                if fmt not in rendered:
                    rendered[fmt] = fmt.render(room, [(event, None)])
                self._send(room, member, send, rendered[fmt])

    def now(self, room: Room, event: RoomEvent, sender: Participant | None) -> None:
        """Send ``event`` at once (no end of turn: tests, a busy room's notice)."""
        self.events.append((0, event, sender))
        self.flush(room)

    def _render_for(
        self,
        room: Room,
        member: Participant,
        fmt: WireFormat,
        events: list[Pending],
        start: int,
    ) -> bytes:
        own = [
            (event, sender)
            for index, event, sender in events
            if index >= start and (sender is not member or fmt.echo)
        ]
        return fmt.render(room, own) if own else b""

    def _send(self, room: Room, member: Participant, send: Send, data: bytes) -> None:
        try:
            send(data)
        except Exception:
            self._failed(room, member)

    def _failed(self, room: Room, member: Participant) -> None:
        _log.failure(
            "while delivering to {nick} in {room}",
            nick=member.nick.display,
            room=room.name.display,
        )
