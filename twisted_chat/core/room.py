"""
Rooms and the people in them: membership and fan-out.

Fan-out is the hot path: a room keeps a ready-made tuple of its members'
``send`` methods, and a message is formatted and encoded once, then the same
``bytes`` go to every member.  Membership changes only mark that tuple
stale; it is rebuilt (one C-level copy of the member table) the next time
lines go out, so a thousand joins in one turn cost one rebuild, not a
thousand.

What a room hears in one reactor turn waits in :attr:`Room.pending` and goes
out in :meth:`Room.flush` as one write per member.  Each member gets the
lines said while they were a member and nothing else: a member who joined
mid-turn, or was handed their lines early (so that a direct reply to them
does not overtake a room line said before it), starts at their place in
:attr:`Room.caught_up`; a member who left is no longer in the tuple.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from attrs import define, field
from zope.interface import implementer

from twisted_chat.core.foreign import ForeignMembers, notice_event, wire_format_of
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.names import Nick

if TYPE_CHECKING:
    from twisted_chat.core.events import RoomEvent
    from twisted_chat.core.flood import TokenBucket
    from twisted_chat.core.names import RoomName
    from twisted_chat.core.room_rules import RoomRules
    from twisted_chat.core.secret_prompt import SecretPrompt

_log = RateLimitedLogger()

Send = Callable[[bytes], None]
#: One line a room heard this turn and who said it (None: a notice, which
#: everybody gets).  A pair rather than a record because one is made for
#: every line said, on the fan-out path, and a ``NamedTuple`` costs several
#: times as much to build (BENCHMARKS.md, "Per-line records"); the pairs
#: stay inside :class:`Room`, which alone fills (:meth:`Room.hear`) and
#: reads them.
Heard = tuple[bytes, "Participant | None"]


@define(eq=False, slots=True)
class Participant:
    """One person: their nickname, their rooms and how to reach them."""

    client: IChatClient
    nick: Nick
    #: Rooms by key, in the order they were joined (the last is the newest).
    rooms: dict[str, Room] = field(factory=dict)
    current: Room | None = None
    gone: bool = False
    #: The client's address group (:func:`twisted_chat.core.admission.address_group`),
    #: what per-address caps count by; "" (UNIX sockets, tests) is uncapped.
    group: str = ""
    #: What big replies are charged to; shared by the address group.
    budget: TokenBucket | None = None
    #: The address (server bans match it; shown only to server operators).
    host: str = ""
    #: ``tcp``, ``udp`` (``irc``, ``web`` when they land), for ``/whois``.
    transport: str = "tcp"
    #: The key of the account logged in to, if any.
    account: str | None = None
    #: The server operator's name after ``/oper``, if any.
    oper: str | None = None
    #: When they last said something (``/whois`` idle time).
    last_active: float = 0.0
    #: Messages, actions and private messages they said (``--metrics``).
    said: int = 0
    #: Set while their next line is taken as a password.
    prompt: SecretPrompt | None = None
    #: True while a password of theirs is being hashed or checked.
    checking: bool = False
    #: A user of another node of the cluster (issue 19), mirrored here so
    #: that listings, nicknames and private messages see them: they are
    #: members of rooms but never in a fan-out (their own node delivers).
    remote: bool = False


@define(eq=False, slots=True)
class Room:
    """A room exists while somebody is in it (its topic may be stored)."""

    name: RoomName
    topic: str = ""
    topic_by: str = ""
    topic_at: float = 0.0
    #: Members and their ``send``, in the order they joined.
    members: dict[Participant, Send] = field(factory=dict)
    #: The address group whose client created the room ("" for none).
    group: str = ""
    #: When IRC first asked of the room (its 329 "creation time"; 0: never).
    #: Not set at creation, which stays free of the clock.
    created_at: float = 0.0
    #: Its moderation (operators, bans, mutes, settings); None for a room
    #: nobody moderates.  A message reads only ``rules.speech_restricted``.
    rules: RoomRules | None = None
    #: What the room heard this reactor turn and has not handed out yet, in
    #: order: ``(line, sender)`` pairs (see :data:`Heard`), filled by
    #: :meth:`hear` only.
    pending: list[Heard] = field(factory=list)
    #: Members who start somewhere other than at the beginning of
    #: ``pending``: the index of the first line they have not been given.
    caught_up: dict[Participant, int] = field(factory=dict)
    #: How many of ``pending`` the store has been given already.
    stored: int = 0
    #: Members whose clients speak another format (IRC, web); None while
    #: there are none, so a room of line users pays one ``is None`` a line.
    foreign: ForeignMembers | None = None
    #: Members by transport (``tcp``, ``udp``, ``irc``, ``web``), kept as
    #: they join and leave, so a flush counts deliveries by transport per
    #: room, not per member.
    transports: dict[str, int] = field(factory=dict)
    #: Members who are users of other nodes (``Participant.remote``).
    remote: int = 0
    #: Entries of ``pending`` heard from other nodes this turn
    #: (:meth:`hear_elsewhere`): theirs to store, not this node's.
    elsewhere: int = 0
    # Plain pairs, not records: the fan-out loop unpacks one per delivery,
    # and ``for member, send in`` a tuple of pairs is the cheapest such loop
    # CPython has; a record's attribute reads would cost every delivery.
    # Read only by that unpacking (here and in Membership.tell_neighbours).
    _fanout: tuple[tuple[Participant, Send], ...] = field(default=(), init=False)
    _stale: bool = field(default=False, init=False)

    @property
    def fanout(self) -> tuple[tuple[Participant, Send], ...]:
        """``(participant, send)`` pairs, so the fan-out loop does no lookups."""
        if self._stale:
            foreign = self.foreign
            if foreign is None and not self.remote:
                self._fanout = tuple(self.members.items())
            else:
                others = foreign.members if foreign is not None else {}
                self._fanout = tuple(
                    pair
                    for pair in self.members.items()
                    if pair[0] not in others and not pair[0].remote
                )
            self._stale = False
        return self._fanout

    def add(self, participant: Participant) -> None:
        """Make ``participant`` a member, hearing only what is said from now on."""
        self.members[participant] = participant.client.send
        self._stale = True
        if participant.remote:
            self.remote += 1
            return
        transports = self.transports
        name = participant.transport
        transports[name] = transports.get(name, 0) + 1
        fmt = wire_format_of(participant)
        if fmt is not None:
            if self.foreign is None:
                self.foreign = ForeignMembers()
            self.foreign.add(participant, fmt, len(self.pending))
        elif self.pending:
            self.caught_up[participant] = len(self.pending)

    def hear(
        self,
        data: bytes,
        sender: Participant | None,
        event: RoomEvent | None = None,
    ) -> None:
        """
        Queue ``data`` for the end of the turn; ``sender`` does not get it
        back.  ``event`` is what members of other formats get (without
        one, the line's text as a :class:`~twisted_chat.core.events.RoomNotice`).
        """
        pending = self.pending
        pending.append((data, sender))
        if self.foreign is not None:
            self.foreign.hear(len(pending) - 1, event or notice_event(data), sender)

    def hear_elsewhere(self, data: bytes, event: RoomEvent) -> None:
        """
        Queue what another node's room heard (:data:`ELSEWHERE` said it):
        every member here gets it, and the store does not (that node
        stored it).
        """
        self.pending.append((data, ELSEWHERE))
        self.elsewhere += 1
        if self.foreign is not None:
            self.foreign.hear(len(self.pending) - 1, event, ELSEWHERE)

    def remove(self, participant: Participant) -> None:
        """Drop ``participant``; nothing happens if they were not here."""
        if self.members.pop(participant, None) is not None:
            self._stale = True
            if participant.remote:
                self.remote -= 1
                return
            transports = self.transports
            name = participant.transport
            if transports[name] > 1:
                transports[name] -= 1
            else:
                del transports[name]
            self.caught_up.pop(participant, None)
            foreign = self.foreign
            if foreign is not None:
                foreign.remove(participant)
                if not foreign.members:
                    self.foreign = None

    def broadcast(
        self,
        data: bytes,
        exclude: Participant | None,
        event: RoomEvent | None = None,
    ) -> None:
        """
        Hand the same bytes to every member but ``exclude``, now.

        One member's failure is logged and does not stop the others, as in
        ``twisted.words``' ``Group.receive``.
        """
        self._send_all(data, exclude)
        if self.foreign is not None:
            self.foreign.now(self, event or notice_event(data), exclude)

    def _send_all(self, data: bytes, exclude: Participant | None) -> None:
        for member, send in self.fanout:
            if member is not exclude:
                try:
                    send(data)
                except Exception:
                    self._delivery_failed(member)

    def catch_up(self, member: Participant) -> None:
        """Give ``member`` now the pending lines they are owed, before a reply."""
        pending = self.pending
        foreign = self.foreign
        if foreign is not None and member in foreign.members:
            foreign.catch_up(self, member, len(pending))
            return
        data = b"".join(self.owed(member))
        if data:
            try:
                self.members[member](data)
            except Exception:
                self._delivery_failed(member)

    def owed(self, member: Participant) -> list[bytes]:
        """
        The pending lines a line user ``member`` has not been given (not
        their own), marked given: for :meth:`catch_up`, and for a reply
        that goes out in one write with them (``Outbox.reply_later``; a
        list, so that write joins them once).
        """
        pending = self.pending
        start = self.caught_up.get(member, 0)
        if start >= len(pending) or member not in self.members:
            return []
        self.caught_up[member] = len(pending)
        return [line for line, sender in pending[start:] if sender is not member]

    def flush(self) -> bytes:
        """
        Hand out what was said this turn: one write per member for all of it.

        A member who said some of it gets the rest, without their own lines;
        one who joined or caught up meanwhile gets what came after.
        Returns the messages the store has not been given, for the history.
        """
        pending = self.pending
        if not pending:
            return b""
        self.pending = []
        caught_up = self.caught_up
        if caught_up:
            self.caught_up = {}
        if len(pending) == 1 and not caught_up:
            batch = pending[0][0]
            self._send_all(batch, pending[0][1])
        else:
            batch = b"".join([data for data, _ in pending])
            special: set[Participant | None] = {sender for _, sender in pending}
            special.update(caught_up)
            for member, send in self.fanout:
                data = batch
                if member in special:
                    rest = pending[caught_up.get(member, 0) :] if caught_up else pending
                    data = b"".join(
                        [line for line, sender in rest if sender is not member]
                    )
                    if not data:
                        continue
                try:
                    send(data)
                except Exception:
                    self._delivery_failed(member)
        if self.foreign is not None:
            self.foreign.flush(self)
        # Usually all of it: no notices and nothing stored early.
        stored, self.stored = self.stored, 0
        if self.elsewhere:
            self.elsewhere = 0
            return _messages(pending, stored)
        messages = [data for data, _ in pending[stored:] if data[:1] == b"["]
        return batch if len(messages) == len(pending) else b"".join(messages)

    def unstored(self) -> bytes:
        """
        The pending messages the store has not been given; from now on it has.

        History is read on join and by ``/history`` before this turn's lines
        go out, so the store must have them first.
        """
        data = _messages(self.pending, self.stored)
        self.stored = len(self.pending)
        return data

    def _delivery_failed(self, member: Participant) -> None:
        """Log the failure being handled; the others still get their lines."""
        _log.failure(
            "while delivering to {nick} in {room}",
            nick=member.nick.display,
            room=self.name.display,
        )


def _messages(pending: list[Heard], start: int) -> bytes:
    """
    The room messages (not notices) of ``pending`` from ``start`` on.

    A room line starts with ``[`` (``[#room] ...``, see :mod:`lines`) and a
    notice with ``*``, so the line itself says which it is.  What another
    node said (:data:`ELSEWHERE`) is that node's to store.
    """
    return b"".join(
        [
            data
            for data, sender in pending[start:]
            if data[:1] == b"[" and sender is not ELSEWHERE
        ]
    )


@implementer(IChatClient)
class _Nobody:
    """The client of :data:`ELSEWHERE`: nothing is ever sent to it."""

    peer = "elsewhere"

    def send(self, data: bytes) -> None:
        """Never a member: nothing to send."""

    def close(self) -> None:
        """Never connected: nothing to close."""


#: The sender of what a room heard from another node of the cluster
#: (:meth:`Room.hear_elsewhere`): nobody here, so every member gets it,
#: and a cluster relay can tell it from what this node's users said.
ELSEWHERE = Participant(client=_Nobody(), nick=Nick(display="*", key="*"))
