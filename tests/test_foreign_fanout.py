"""
Rooms with members of another wire format (core/events.py, core/foreign.py).

A fake format stands in for IRC: it renders each event as ``name|kind|...``
lines and counts its renderings, so the tests can hold the core to "each
event rendered once per format and turn, the same bytes to every member of
that format", while line members get exactly what they got before.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from attrs import define, field
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from twisted_chat.core.chat import ChatServer
from twisted_chat.core.events import (
    Acted,
    Joined,
    Kicked,
    Left,
    Moderated,
    Quit,
    Renamed,
    RoomEvent,
    RoomNotice,
    Said,
    TopicSet,
)
from twisted_chat.core.room import Participant, Room
from twisted_chat.core.settings import Settings
from twisted_chat.testing import RecordingClient


@define(eq=False)
class FakeFormat:
    """Renders events as ``|``-separated lines and counts its renderings."""

    name: str
    echo: bool = False
    renders: int = 0

    def render(
        self, room: Room, events: Sequence[tuple[RoomEvent, Participant | None]]
    ) -> bytes:
        self.renders += 1
        out = []
        for event, sender in events:
            by = sender.nick.display if sender is not None else "-"
            out.append(f"{self.name}|{room.name.display}|{by}|{_describe(event)}\n")
        return "".join(out).encode()

    def render_each(
        self, room: Room, events: Sequence[tuple[RoomEvent, Participant | None]]
    ) -> list[bytes]:
        self.renders += 1
        out = []
        for event, sender in events:
            by = sender.nick.display if sender is not None else "-"
            out.append(f"{self.name}|{room.name.display}|{by}|{_describe(event)}\n")
        return [line.encode() for line in out]

    def render_private(
        self, sender: Participant, recipient: Participant, text: str
    ) -> bytes:
        to = recipient.nick.display
        return f"{self.name}|PM|{sender.nick.display}>{to}|{text}\n".encode()


def _describe(event: RoomEvent) -> str:
    name = type(event).__name__
    match event:
        case (
            Said(text=text)
            | Acted(text=text)
            | RoomNotice(text=text)
            | Moderated(text=text)
        ):
            return f"{name}:{text}"
        case Renamed(nick=nick, new=new):
            return f"{name}:{nick}>{new}"
        case Kicked(nick=nick, by_nick=by):
            return f"{name}:{nick}<{by}"
        case (
            Joined(nick=nick) | Left(nick=nick) | Quit(nick=nick) | TopicSet(nick=nick)
        ):
            return f"{name}:{nick}"


@define(eq=False)
class WireClient(RecordingClient):
    """A client of a fake format: room bytes arrive in ``wire``."""

    wire_format: FakeFormat | None = None
    wire: list[bytes] = field(factory=list)

    def send_wire(self, data: bytes) -> None:
        self.wire.append(data)


@define(eq=False)
class Rig:
    server: ChatServer
    clock: Clock
    clients: list[WireClient] = field(factory=list)

    def connect(
        self, nick: str, fmt: FakeFormat | None = None
    ) -> tuple[WireClient, Participant]:
        client = WireClient(peer=f"test {nick}", wire_format=fmt)
        participant = self.server.connect(client, "")
        self.say(participant, f"/nick {nick}")
        self.say(participant, "/join #dev")
        self.turn()
        self.clients.append(client)
        for each in self.clients:  # a test starts from silence
            each.clear()
            each.wire.clear()
        return client, participant

    def say(self, participant: Participant, line: str) -> None:
        self.server.receive(participant, line)

    def turn(self) -> None:
        self.clock.advance(0)

    def room(self) -> Room:
        return self.server.rooms["#dev"]


@pytest.fixture
def rig() -> Rig:
    clock = Clock()
    server = ChatServer(
        Settings(default_room=""),
        clock.seconds,
        defer=lambda f: clock.callLater(0, f),
        call_later=clock.callLater,
    )
    return Rig(server, clock)


def test_a_room_of_line_users_has_no_foreign_members(rig: Rig) -> None:
    _, alice = rig.connect("alice")
    bob_c, _ = rig.connect("bob")
    assert rig.room().foreign is None
    rig.say(alice, "hello")
    rig.turn()
    assert bob_c.lines() == ["[#dev] <alice> hello"]
    assert rig.room().foreign is None


def test_each_turn_is_rendered_once_per_format_for_all_its_members(rig: Rig) -> None:
    irc = FakeFormat("irc")
    alice_c, alice = rig.connect("alice")
    one, _ = rig.connect("one", irc)
    two, _ = rig.connect("two", irc)
    line_c, _ = rig.connect("carol")
    irc.renders = 0
    rig.say(alice, "hello")
    rig.say(alice, "/me waves")
    rig.turn()
    assert irc.renders == 1
    assert one.wire == [b"irc|#dev|alice|Said:hello\nirc|#dev|alice|Acted:waves\n"]
    assert two.wire[0] is one.wire[0]  # the very same bytes
    assert line_c.lines() == ["[#dev] <alice> hello", "[#dev] * alice waves"]
    assert one.lines() == two.lines() == []  # nothing in the line format
    assert alice_c.lines() == []


def test_a_foreign_sender_does_not_get_its_own_lines_unless_the_format_echoes(
    rig: Rig,
) -> None:
    plain, echoing = FakeFormat("irc"), FakeFormat("irc+echo", echo=True)
    one, one_p = rig.connect("one", plain)
    two, _ = rig.connect("two", plain)
    three, three_p = rig.connect("three", echoing)
    line_c, _ = rig.connect("carol")
    rig.say(one_p, "from one")
    rig.say(three_p, "from three")
    rig.turn()
    assert one.wire == [b"irc|#dev|three|Said:from three\n"]
    assert two.wire == [b"irc|#dev|one|Said:from one\nirc|#dev|three|Said:from three\n"]
    assert three.wire == [
        b"irc+echo|#dev|one|Said:from one\nirc+echo|#dev|three|Said:from three\n"
    ]
    assert line_c.lines() == ["[#dev] <one> from one", "[#dev] <three> from three"]


def test_a_member_who_joins_mid_turn_gets_only_what_follows(rig: Rig) -> None:
    irc = FakeFormat("irc")
    _, alice = rig.connect("alice")
    rig.say(alice, "before")
    late = WireClient(peer="test late", wire_format=irc)
    late_p = rig.server.connect(late, "")
    rig.say(late_p, "/nick late")
    rig.say(late_p, "/join #dev")
    rig.say(alice, "after")
    rig.turn()
    assert late.wire == [b"irc|#dev|alice|Said:after\n"]


def test_a_direct_reply_does_not_overtake_the_room(rig: Rig) -> None:
    irc = FakeFormat("irc")
    _, alice = rig.connect("alice")
    one, one_p = rig.connect("one", irc)
    rig.say(alice, "first")
    rig.say(one_p, "/ping")  # a direct reply: the room line goes first
    assert one.wire == [b"irc|#dev|alice|Said:first\n"]
    assert one.lines() == ["* pong"]
    rig.turn()
    assert one.wire == [b"irc|#dev|alice|Said:first\n"]  # not twice


def test_membership_topics_and_notices_reach_the_other_format_as_events(
    rig: Rig,
) -> None:
    irc = FakeFormat("irc")
    one, _ = rig.connect("one", irc)
    _, bob = rig.connect("bob")
    rig.say(bob, "/topic release friday")
    rig.say(bob, "/nick robert")
    rig.say(bob, "/part")
    rig.say(bob, "/join #dev")
    rig.server.broadcast_notice("maintenance at noon")
    rig.turn()
    rig.server.disconnect(bob, "connection lost")
    rig.turn()
    assert b"".join(one.wire).decode().splitlines() == [
        "irc|#dev|-|TopicSet:bob",
        "irc|#dev|robert|Renamed:bob>robert",
        "irc|#dev|robert|Left:robert",
        "irc|#dev|-|Joined:robert",
        "irc|#dev|robert|Quit:robert",
    ]
    assert one.lines() == ["* maintenance at noon"]  # to each client, not a room


def test_a_notice_without_an_event_reaches_the_other_format_as_its_text(
    rig: Rig,
) -> None:
    irc = FakeFormat("irc")
    _, alice = rig.connect("alice")  # made #dev: its operator
    one, _ = rig.connect("one", irc)
    rig.say(alice, "/room moderated on")
    rig.turn()
    assert one.wire == [b"irc|#dev|-|Moderated:alice turned moderated on in #dev\n"]


def test_a_kicked_member_of_another_format_gets_the_kick_in_it(rig: Rig) -> None:
    irc = FakeFormat("irc")
    _, alice = rig.connect("alice")  # made #dev: its operator
    one, _ = rig.connect("one", irc)
    two, _ = rig.connect("two", irc)
    rig.say(alice, "/kick one spam")
    rig.turn()
    assert one.wire == [b"irc|#dev|-|Kicked:one<alice\n"]
    assert one.lines() == []
    assert two.wire == [b"irc|#dev|one|Kicked:one<alice\n"]


def test_a_neighbour_in_two_rooms_hears_a_quit_once(rig: Rig) -> None:
    irc = FakeFormat("irc")
    one, one_p = rig.connect("one", irc)
    _, bob = rig.connect("bob")
    rig.say(one_p, "/join #ops")
    rig.say(bob, "/join #ops")
    rig.turn()
    one.wire.clear()
    rig.server.disconnect(bob, "bye")
    rig.turn()
    assert b"".join(one.wire).decode().splitlines() == ["irc|#dev|-|Quit:bob"]


def test_the_last_foreign_member_leaving_makes_the_room_line_only(rig: Rig) -> None:
    irc = FakeFormat("irc")
    rig.connect("alice")
    _, one_p = rig.connect("one", irc)
    assert rig.room().foreign is not None
    rig.say(one_p, "/part")
    rig.turn()
    assert rig.room().foreign is None


def test_a_private_message_to_a_foreign_client_is_in_its_format(rig: Rig) -> None:
    irc = FakeFormat("irc")
    _, alice = rig.connect("alice")
    one, _ = rig.connect("one", irc)
    rig.say(alice, "/msg one psst")
    assert one.wire == [b"irc|PM|alice>one|psst\n"]
    assert one.lines() == []


# -- a turn's pieces kept for the catch-ups before direct replies ----------------


@define(eq=False)
class CountingFormat(FakeFormat):
    """Also counts the events rendered (each should be, once a turn)."""

    events: int = 0

    def render(
        self, room: Room, events: Sequence[tuple[RoomEvent, Participant | None]]
    ) -> bytes:
        self.events += len(events)
        return super().render(room, events)

    def render_each(
        self, room: Room, events: Sequence[tuple[RoomEvent, Participant | None]]
    ) -> list[bytes]:
        self.events += len(events)
        return super().render_each(room, events)


def _busy_turn(rig: Rig, speakers: list[Participant], ping: bool) -> None:
    """Each speaker says three lines, then (``ping``) asks something."""
    for turn, speaker in enumerate(speakers):
        for n in range(3):
            rig.say(speaker, f"{speaker.nick.display} {turn}.{n}")
        if ping:
            rig.say(speaker, "/ping")
    rig.turn()


def test_catch_ups_render_each_event_once_and_change_nothing_received(
    rig: Rig,
) -> None:
    fmt = CountingFormat("irc")
    echo = CountingFormat("echo", echo=True)
    members = [rig.connect(f"w{n}", fmt) for n in range(4)]
    members.append(rig.connect("e0", echo))
    line_c, line_p = rig.connect("carol")
    speakers = [members[0][1], members[1][1], line_p, members[4][1]]
    _busy_turn(rig, speakers, ping=False)
    quiet = [b"".join(client.wire) for client, _ in members]
    quiet_lines = line_c.lines()
    for client, _ in members:
        client.wire.clear()
    line_c.clear()
    fmt.events = echo.events = 0
    _busy_turn(rig, speakers, ping=True)
    # The same bytes in all, only split differently (each speaker's share
    # came before its pong), and each event rendered once per format.
    assert [b"".join(client.wire) for client, _ in members] == quiet
    assert len(members[0][0].wire) == 1  # the first to speak owed nothing
    assert len(members[1][0].wire) == 2  # w0's lines before its pong, the rest
    assert fmt.events == echo.events == 12
    assert [line for line in line_c.lines() if line != "* pong"] == quiet_lines
    # The echoing member got its own lines too, before its pong.
    assert b"echo|#dev|e0|Said:e0 3.2\n" in members[4][0].wire[0]


def test_a_catch_up_gives_only_what_came_since_the_last(rig: Rig) -> None:
    fmt = CountingFormat("irc")
    _, alice = rig.connect("alice")
    one, one_p = rig.connect("one", fmt)
    rig.say(alice, "first")
    rig.say(one_p, "/ping")
    rig.say(one_p, "/ping")  # nothing new: nothing sent
    rig.say(alice, "second")
    rig.say(one_p, "/ping")
    rig.turn()
    assert one.wire == [b"irc|#dev|alice|Said:first\n", b"irc|#dev|alice|Said:second\n"]
    assert one.lines() == ["* pong"] * 3
    assert fmt.events == 2


def test_a_member_who_joins_after_a_catch_up_gets_only_what_follows(
    rig: Rig,
) -> None:
    fmt = CountingFormat("irc")
    _, alice = rig.connect("alice")
    one, one_p = rig.connect("one", fmt)
    rig.say(alice, "before")
    rig.say(one_p, "/ping")  # the turn's first pieces rendered and kept
    late = WireClient(peer="test late", wire_format=fmt)
    late_p = rig.server.connect(late, "")
    rig.say(late_p, "/nick late")
    rig.say(late_p, "/join #dev")
    late.wire.clear()
    rig.say(alice, "after")
    rig.say(late_p, "/ping")
    assert late.wire == [b"irc|#dev|alice|Said:after\n"]
    rig.say(alice, "later")
    rig.turn()
    assert late.wire == [b"irc|#dev|alice|Said:after\n", b"irc|#dev|alice|Said:later\n"]
    assert b"".join(one.wire).decode().splitlines() == [
        "irc|#dev|alice|Said:before",
        "irc|#dev|-|Joined:late",
        "irc|#dev|alice|Said:after",
        "irc|#dev|alice|Said:later",
    ]
    assert fmt.events == 4  # each once, whoever asked first


def test_the_kept_pieces_go_with_the_turn(rig: Rig) -> None:
    fmt = CountingFormat("irc")
    _, alice = rig.connect("alice")
    one, one_p = rig.connect("one", fmt)
    rig.say(alice, "first")
    rig.say(one_p, "/ping")
    rig.turn()
    rig.say(alice, "second")
    rig.say(one_p, "/ping")
    rig.turn()
    assert one.wire == [b"irc|#dev|alice|Said:first\n", b"irc|#dev|alice|Said:second\n"]
    foreign = rig.room().foreign
    assert foreign is not None
    assert foreign._rendered == {}


def test_interleaved_speakers_get_all_but_their_own_in_order(rig: Rig) -> None:
    fmt = CountingFormat("irc")
    one, one_p = rig.connect("one", fmt)
    two, two_p = rig.connect("two", fmt)
    three, _ = rig.connect("three", fmt)
    _, alice = rig.connect("alice")
    said = []
    for n in range(4):
        for speaker in (one_p, two_p, alice, one_p):
            text = f"{speaker.nick.display} {n}"
            rig.say(speaker, text)
            said.append((speaker.nick.display, text))
        rig.say(two_p if n % 2 else one_p, "/ping")
    late = WireClient(peer="test late", wire_format=fmt)
    late_p = rig.server.connect(late, "")
    rig.say(late_p, "/nick late")
    rig.say(late_p, "/join #dev")
    late.wire.clear()
    rig.say(alice, "last")
    rig.turn()

    def got(client: WireClient) -> list[str]:
        return b"".join(client.wire).decode().splitlines()

    everyone = [f"irc|#dev|{nick}|Said:{text}" for nick, text in said]
    assert got(three)[: len(everyone)] == everyone
    assert got(three)[-1] == "irc|#dev|alice|Said:last"
    assert got(one) == [line for line in got(three) if "|one|" not in line]
    assert got(two) == [line for line in got(three) if "|two|" not in line]
    assert got(late) == ["irc|#dev|alice|Said:last"]


def _fresh_rig() -> Rig:
    clock = Clock()
    server = ChatServer(
        Settings(default_room=""),
        clock.seconds,
        defer=lambda f: clock.callLater(0, f),
        call_later=clock.callLater,
    )
    return Rig(server, clock)


@settings(max_examples=60, deadline=None)
@given(script=st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=30))
def test_any_turn_gives_each_member_all_but_its_own_once_in_order(
    script: list[tuple[int, bool]],
) -> None:
    """Whatever the order of speakers (three of another format, one line
    user) and of their direct replies (``/ping``, a catch-up) in one turn:
    each foreign member gets every other speaker's line, once, in order, and
    each event is rendered once."""
    rig = _fresh_rig()
    fmt = CountingFormat("irc")
    members = [rig.connect(f"m{n}", fmt) for n in range(3)]
    _, line_user = rig.connect("liner")
    speakers = [p for _, p in members] + [line_user]
    fmt.events = 0
    said: list[tuple[int, str]] = []
    for n, (who, ping) in enumerate(script):
        text = f"{speakers[who].nick.display} {n}"
        rig.say(speakers[who], text)
        said.append((who, text))
        if ping:
            rig.say(speakers[who], "/ping")
    rig.turn()
    for index, (client, _) in enumerate(members):
        got = b"".join(client.wire).decode().splitlines()
        nick = f"m{index}"
        assert got == [
            f"irc|#dev|{speakers[who].nick.display}|Said:{text}"
            for who, text in said
            if who != index
        ], nick
    assert fmt.events == len(said)
