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
started mid-turn gets a share of their own, joined from the same pieces,
as line members get a join of their own.

A direct reply to a member (the pong of a ``/ping``, any command's answer)
must not overtake what the room heard before it, so the member is given
those events first (:meth:`ForeignMembers.catch_up`).  The pieces rendered
for that are kept until the turn's end (per format, one for each event so
far), and every later catch-up and the flush render only the events heard
since: in a busy room where every speaker also sends commands, each event
is still rendered once per format and turn, not once more for each
command said after it (the bench's fan-out rendered each message about six
times so, and spent most of the web's cost there).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import define, field

from twisted_chat.core.events import RoomEvent, RoomNotice, WireFormat
from twisted_chat.core.logs import RateLimitedLogger

if TYPE_CHECKING:
    from twisted_chat.core.room import Participant, Room

__all__ = ["ForeignMembers", "notice_event", "tell", "wire_format_of"]

_log = RateLimitedLogger()

Send = Callable[[bytes], None]
#: One event heard this turn and who said it (None: everybody gets it), as
#: a format renders it; its place among the room's pending lines is kept
#: apart (``places``), so that neither needs a pass to make the other.
Pending = tuple[RoomEvent, "Participant | None"]
#: Runs of events said by one sender: (first position, last + 1, sender).
Span = tuple[int, int, "Participant | None"]
#: No sender yet this turn (None is a sender: the server's notices).
_NOBODY: Any = object()


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
    #: Each event's place among the room's lines (what ``starts`` count in).
    places: list[int] = field(factory=list)
    #: Members who start later than the turn's first line: its index.
    starts: dict[Participant, int] = field(factory=dict)
    # Per format, its members' (participant, send) pairs: the fan-out loop's
    # tuple, rebuilt only after a membership change (as Room.fanout is).
    _groups: dict[WireFormat, tuple[tuple[Participant, Send], ...]] = field(
        factory=dict, init=False
    )
    _stale: bool = field(default=False, init=False)
    # Per format, the pieces of ``events`` rendered so far this turn, one per
    # event and in its order (a prefix of ``events``); emptied with them.
    _rendered: dict[WireFormat, list[bytes]] = field(factory=dict, init=False)
    # Where each run of one sender's events starts in ``events``, and who it
    # is: a member's share (all but their own) is joined from the slices
    # between their runs, not judged piece by piece.
    _runs: list[tuple[int, Participant | None]] = field(factory=list, init=False)
    _speaker: Any = field(default=_NOBODY, init=False)

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
        events = self.events
        if sender is not self._speaker:
            self._runs.append((len(events), sender))
            self._speaker = sender
        events.append((event, sender))
        self.places.append(index)

    def flush(self, room: Room) -> None:
        """Hand out the turn's events: one rendering per format, then each member's."""
        events, self.events = self.events, []
        places, self.places = self.places, []
        starts, self.starts = self.starts, {}
        rendered, self._rendered = self._rendered, {}
        runs, self._runs = self._runs, []
        self._speaker = _NOBODY
        if not events:
            return
        count = len(events)
        spans = _spans(runs, count)
        senders = {sender for _, _, sender in spans}
        # Where each member who started mid-turn starts among the events.
        firsts = {
            member: bisect_left(places, start) for member, start in starts.items()
        }
        for fmt, group in self.groups.items():
            echo = fmt.echo
            special = firsts.keys() if echo else senders.union(firsts)
            # Each event rendered once; a sender's share is joined from them.
            pieces = _complete(room, fmt, events, rendered.get(fmt))
            batch = b"".join(pieces)
            for member, send in group:
                data = batch
                if member in special:
                    first = firsts.get(member, 0)
                    data = _share(pieces, spans, member, first, count, echo=echo)
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
        self.starts[member] = upto
        events, places = self.events, self.places
        if not places or places[-1] < start:
            return  # nothing heard since they were last given the room's events
        first = bisect_left(places, start) if start else 0
        last = bisect_left(places, upto)
        if first >= last:
            return
        pieces = self._rendered.get(fmt)
        if pieces is None or len(pieces) < last:
            pieces = self._rendered[fmt] = _complete(room, fmt, events, pieces)
        spans = _spans(self._runs, len(events))
        data = _share(pieces, spans, member, first, last, echo=fmt.echo)
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
        self.hear(0, event, sender)
        self.flush(room)

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


def _complete(
    room: Room, fmt: WireFormat, events: list[Pending], done: list[bytes] | None
) -> list[bytes]:
    """
    The pieces of ``events`` in ``fmt``: ``done`` (those of its first
    events, rendered earlier in the turn) and the rest, rendered now.
    """
    if done is None:
        return fmt.render_each(room, events)
    if len(done) < len(events):
        done += fmt.render_each(room, events[len(done) :])
    return done


def _spans(runs: list[tuple[int, Participant | None]], count: int) -> list[Span]:
    """The runs of ``count`` events as spans: where each starts and ends."""
    ends = [begin for begin, _ in runs[1:]]
    ends.append(count)
    return [
        (begin, end, sender) for (begin, sender), end in zip(runs, ends, strict=True)
    ]


def _share(
    pieces: list[bytes],
    spans: list[Span],
    member: Participant,
    first: int,
    last: int,
    *,
    echo: bool,
) -> bytes:
    """``member``'s pieces from ``first`` to ``last``, theirs left out (unless echo)."""
    if echo:
        return b"".join(pieces[first:last])
    out: list[bytes] = []
    for begin, end, sender in spans:
        if sender is not member and end > first and begin < last:
            out += pieces[max(begin, first) : min(end, last)]
    return b"".join(out)
