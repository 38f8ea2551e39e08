"""Room events as WebSocket frames of JSON (transports.web_format)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from attrs import define, field
from hypothesis import given
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

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
from twisted_chat.core.names import Nick, RoomName
from twisted_chat.core.records import StoredMessage
from twisted_chat.core.room import Participant, Room
from twisted_chat.core.room_records import Change
from twisted_chat.core.room_rules import RoomRules
from twisted_chat.testing import RecordingClient
from twisted_chat.transports.web_format import (
    WebFormat,
    frame,
    frame_header,
    hello_frame,
    iso_time,
    members_frame,
    topic_frame,
    you_frame,
)

#: 2026-12-01T10:00:00Z
NOON = 1_796_119_200.0
STAMP = "2026-12-01T10:00:00Z"


@define(eq=False)
class WebClient(RecordingClient):
    wire_format: WebFormat | None = None
    wired: list[bytes] = field(factory=list)

    def send_wire(self, data: bytes) -> None:
        self.wired.append(data)


def person(nick: str) -> Participant:
    return Participant(
        client=RecordingClient(), nick=Nick.parse(nick), host="192.0.2.7"
    )


def room(*members: Participant) -> Room:
    made = Room(name=RoomName.parse("#Dev"))
    for member in members:
        made.members[member] = member.client.send
    return made


def parse_frames(data: bytes) -> list[dict[str, Any]]:
    """Take ``data`` apart as a browser would: each frame unmasked, final, text."""
    out = []
    while data:
        assert data[0] == 0x81, "FIN and opcode 1, no RSV bits"
        length = data[1]
        assert not length & 0x80, "a server's frames are not masked"
        start = 2
        if length == 126:
            length, start = int.from_bytes(data[2:4], "big"), 4
            assert length >= 126, "the shortest length encoding"
        elif length == 127:
            length, start = int.from_bytes(data[2:10], "big"), 10
            assert length >= 0x10000, "the shortest length encoding"
        payload = data[start : start + length]
        assert len(payload) == length
        out.append(json.loads(payload.decode("utf-8")))
        data = data[start + length :]
    return out


def parse_one(data: bytes) -> dict[str, Any]:
    [obj] = parse_frames(data)
    return obj


def fmt() -> WebFormat:
    return WebFormat(clock=lambda: NOON + 0.75)


def test_iso_time_is_utc_to_the_second() -> None:
    assert iso_time(NOON) == STAMP
    assert iso_time(NOON + 59.999) == "2026-12-01T10:00:59Z"
    assert iso_time(0) == "1970-01-01T00:00:00Z"


def test_every_event_as_its_json() -> None:
    alice, bob = person("alice"), person("Bob")
    dev = room(alice, bob)
    change = Change("mute", "Bob", "30m")
    events: list[RoomEvent] = [
        Said(alice, "alice", "hello"),
        Said(alice, "alice", "a notice", notice=True),
        Acted(alice, "alice", "waves"),
        Joined(bob, "Bob"),
        Left(alice, "alice", "lunch"),
        Left(alice, "alice"),
        Kicked(bob, "Bob", alice, "alice", "spam"),
        Quit(bob, "Bob", "bye"),
        Renamed(bob, "Bob", "robert"),
        TopicSet(bob, "Bob", "release friday"),
        Moderated(change, alice, "alice", "alice muted Bob in #Dev for 30m"),
        RoomNotice("the server restarts soon"),
    ]
    pieces = fmt().render_each(dev, [(event, alice) for event in events])
    assert len(pieces) == len(events)
    got = [parse_one(piece) for piece in pieces]
    common = {"room": "#Dev", "time": STAMP}
    assert got == [
        {"type": "message", "nick": "alice", "text": "hello", **common},
        {"type": "message", "nick": "alice", "text": "a notice", **common},
        {"type": "action", "nick": "alice", "text": "waves", **common},
        {"type": "join", "nick": "Bob", **common},
        {"type": "part", "nick": "alice", "reason": "lunch", **common},
        {"type": "part", "nick": "alice", "reason": "", **common},
        {"type": "kick", "nick": "Bob", "by": "alice", "reason": "spam", **common},
        {"type": "quit", "nick": "Bob", "reason": "bye", "time": STAMP},
        {"type": "nick", "old": "Bob", "new": "robert", "time": STAMP},
        {"type": "topic", "nick": "Bob", "text": "release friday", **common},
        {"type": "notice", "room": "#Dev", "text": "alice muted Bob in #Dev for 30m"},
        {"type": "notice", "room": "#Dev", "text": "the server restarts soon"},
    ]
    # ``type`` comes first, so a reader can dispatch on the frame's start.
    assert all(piece[2:].startswith(b'{"type":') for piece in pieces)


def test_render_is_the_pieces_joined_and_rendered_once_for_all() -> None:
    alice = person("alice")
    dev = room(alice)
    events: list[tuple[RoomEvent, Participant | None]] = [
        (Said(alice, "alice", "one"), alice),
        (Acted(alice, "alice", "two"), alice),
    ]
    web = fmt()
    assert web.render(dev, events) == b"".join(web.render_each(dev, events))
    assert [obj["text"] for obj in parse_frames(web.render(dev, events))] == [
        "one",
        "two",
    ]
    assert web.echo is False


@pytest.mark.parametrize("kind", ["op", "deop", "voice", "devoice", "auto-op"])
def test_a_change_of_operators_or_voices_is_followed_by_the_members(
    kind: str,
) -> None:
    alice, bob, carol = person("alice"), person("bob"), person("carol")
    dev = room(alice, bob, carol)
    rules = dev.rules = RoomRules.for_creator("#Dev", alice)
    rules.voice(carol)
    change = Change(kind, "bob")  # type: ignore[arg-type]
    data = fmt().render(dev, [(Moderated(change, alice, "alice", "text"), alice)])
    notice, members = parse_frames(data)
    assert notice == {"type": "notice", "room": "#Dev", "text": "text"}
    assert members == {
        "type": "members",
        "room": "#Dev",
        "members": [
            {"nick": "alice", "op": True, "voice": False},
            {"nick": "bob", "op": False, "voice": False},
            {"nick": "carol", "op": False, "voice": True},
        ],
    }


@pytest.mark.parametrize("kind", ["ban", "mute", "unmute", "invite", "set", "unban"])
def test_other_changes_are_a_notice_alone(kind: str) -> None:
    alice = person("alice")
    dev = room(alice)
    change = Change(kind, "bob")  # type: ignore[arg-type]
    data = fmt().render(dev, [(Moderated(change, alice, "alice", "text"), alice)])
    assert parse_frames(data) == [{"type": "notice", "room": "#Dev", "text": "text"}]


def test_members_of_a_room_without_rules_and_an_empty_room() -> None:
    alice, bob = person("alice"), person("bob")
    assert parse_one(members_frame(room(bob, alice))) == {
        "type": "members",
        "room": "#Dev",
        "members": [
            {"nick": "bob", "op": False, "voice": False},
            {"nick": "alice", "op": False, "voice": False},
        ],
    }
    assert parse_one(members_frame(room())) == {
        "type": "members",
        "room": "#Dev",
        "members": [],
    }


def test_an_account_operator_is_marked() -> None:
    alice, bob = person("alice"), person("bob")
    bob.account = "bob"
    dev = room(alice, bob)
    rules = dev.rules = RoomRules.for_creator("#Dev", alice)
    rules.register(bob, "bob")
    members = parse_one(members_frame(dev))["members"]
    assert [m["op"] for m in members] == [True, True]


def test_private_message() -> None:
    alice, bob = person("alice"), person("Bob")
    assert parse_one(fmt().render_private(bob, alice, "psst")) == {
        "type": "private",
        "nick": "Bob",
        "text": "psst",
        "time": STAMP,
    }


def test_history_is_one_frame_with_each_time() -> None:
    dev = room()
    messages = [
        StoredMessage("#dev", "#Dev", "alice", "hi", False, NOON - 3600),
        StoredMessage("#dev", "#Dev", "bob", "waves", True, NOON - 60.5),
    ]
    assert parse_one(fmt().render_history(dev, messages)) == {
        "type": "history",
        "room": "#Dev",
        "messages": [
            {
                "type": "message",
                "nick": "alice",
                "text": "hi",
                "time": "2026-12-01T09:00:00Z",
            },
            {
                "type": "action",
                "nick": "bob",
                "text": "waves",
                "time": "2026-12-01T09:58:59Z",
            },
        ],
    }


def test_topic_on_join_has_no_nick_and_the_time_it_was_set() -> None:
    dev = room()
    dev.topic, dev.topic_by, dev.topic_at = "release friday", "alice", NOON - 86400
    assert parse_one(topic_frame(dev)) == {
        "type": "topic",
        "room": "#Dev",
        "nick": None,
        "text": "release friday",
        "time": "2026-11-30T10:00:00Z",
    }
    dev.topic_at = 0.0  # not known: now
    assert parse_one(topic_frame(dev, clock=lambda: NOON))["time"] == STAMP


def test_hello_and_you() -> None:
    assert parse_one(hello_frame("guest7", "chat.test", 512)) == {
        "type": "hello",
        "nick": "guest7",
        "server": "chat.test",
        "max_line": 512,
    }
    assert parse_one(you_frame("alice")) == {"type": "you", "nick": "alice"}


@pytest.mark.parametrize(
    "text",
    [
        "<img src=x onerror=alert(1)>",
        "<script>alert('x')</script>",
        '"quoted" and \\backslash\\ and \\" both',
        "line\u2028separator\u2029paragraph",
        "</script><!--",
        "emoji 🎉 and ünïcödé and 中文",
        "\ufeffbom and \u200bzero width",
        '{"type":"error"}',
        "",
    ],
)
def test_text_stays_literal(text: str) -> None:
    alice = person("alice")
    data = fmt().render(room(alice), [(Said(alice, "alice", text), alice)])
    assert parse_one(data)["text"] == text


def test_a_lone_surrogate_never_makes_invalid_utf8() -> None:
    data = frame({"type": "notice", "text": "a\ud800b"})
    assert parse_one(data) == {"type": "notice", "text": "a?b"}


def test_json_is_compact_and_not_ascii_escaped() -> None:
    data = frame({"type": "notice", "text": "é"})
    assert data[2:] == '{"type":"notice","text":"é"}'.encode()


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_frame_header_lengths(length: int, header: bytes) -> None:
    assert frame_header(length) == header
    # The same bytes as wsproto's server side makes.
    payload = "x" * length
    assert bytes(FrameProtocol(client=False, extensions=[]).send_data(payload)) == (
        header + payload.encode()
    )


@pytest.mark.parametrize("size", [125, 126, 65535, 65536])
def test_frames_at_the_length_boundaries_parse(size: int) -> None:
    empty = len(frame({"type": "notice", "text": ""})) - 2
    text = "y" * (size - empty)
    data = frame({"type": "notice", "text": text})
    # The payload is exactly ``size`` bytes, after its header.
    assert len(data) - len(frame_header(size)) == size
    assert parse_one(data)["text"] == text
    # A browser's side of the connection (wsproto as a client) agrees.
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(data)
    [received] = list(client.received_frames())
    assert received.opcode is Opcode.TEXT
    assert received.message_finished
    assert json.loads(received.payload)["text"] == text  # type: ignore[arg-type]


def test_the_clock_is_read_once_per_turn_and_the_stamp_kept_per_second() -> None:
    now = [NOON]
    reads = []

    def clock() -> float:
        reads.append(1)
        return now[0]

    web = WebFormat(clock=clock)
    alice = person("alice")
    dev = room(alice)
    events: list[tuple[RoomEvent, Participant | None]] = [
        (Said(alice, "alice", str(n)), alice) for n in range(5)
    ]
    first = parse_frames(web.render(dev, events))
    assert len(reads) == 1
    assert {obj["time"] for obj in first} == {STAMP}
    now[0] = NOON + 61
    later = parse_frames(web.render(dev, events[:1]))
    assert later[0]["time"] == "2026-12-01T10:01:01Z"


def test_every_web_member_gets_the_same_bytes_rendered_once() -> None:
    from twisted_chat.core.foreign import ForeignMembers

    web = fmt()
    renders = []
    real = web.render_each

    def counting(
        room: Room, events: Sequence[tuple[RoomEvent, Participant | None]]
    ) -> list[bytes]:
        renders.append(1)
        return real(room, events)

    web.render_each = counting  # type: ignore[method-assign]
    got: dict[str, list[bytes]] = {}
    people = []
    for nick in ("alice", "bob", "carol"):
        client = WebClient(wire_format=web)
        got[nick] = client.wired
        people.append(Participant(client=client, nick=Nick.parse(nick)))
    alice, bob, carol = people
    dev = room(alice, bob, carol)
    members = ForeignMembers()
    for who in people:
        members.add(who, web, 0)
    members.hear(0, Said(alice, "alice", "hi"), alice)
    members.hear(1, Joined(carol, "carol"), None)
    members.flush(dev)
    assert renders == [1]
    [to_bob], [to_carol] = got["bob"], got["carol"]
    assert to_bob is to_carol  # one object for all who heard it all
    assert [obj["type"] for obj in parse_frames(to_bob)] == ["message", "join"]
    # The speaker is not echoed their own message.
    assert [obj["type"] for obj in parse_frames(b"".join(got["alice"]))] == ["join"]


@given(
    st.text(max_size=200),
    st.text(min_size=1, max_size=30),
    st.sampled_from(["#Dev", "#Café", '#a"b\\']),
)
def test_messages_are_the_bytes_json_makes(text: str, nick: str, name: str) -> None:
    alice = person("alice")
    # Any name and nick, even those the core refuses: JSON must quote them.
    dev = Room(name=RoomName(display=name, key=name))
    for event, kind in (
        (Said(alice, nick, text), "message"),
        (Acted(alice, nick, text), "action"),
    ):
        [piece] = fmt().render_each(dev, [(event, alice)])
        expected = {"type": kind, "room": name, "nick": nick, "text": text}
        assert piece == frame({**expected, "time": STAMP})


def test_several_changes_in_a_turn_send_the_members_once_after_the_last() -> None:
    alice, bob, carol = person("alice"), person("bob"), person("carol")
    dev = room(alice, bob, carol)
    rules = dev.rules = RoomRules.for_creator("#Dev", alice)
    rules.op(bob)
    rules.voice(carol)
    events: list[tuple[RoomEvent, Participant | None]] = [
        (Moderated(Change("op", "bob"), alice, "alice", "op bob"), None),
        (Said(alice, "alice", "there"), alice),
        (Moderated(Change("voice", "carol"), alice, "alice", "voice carol"), None),
        (Moderated(Change("mute", "dave"), alice, "alice", "mute dave"), None),
    ]
    pieces = fmt().render_each(dev, events)
    assert [[obj["type"] for obj in parse_frames(piece)] for piece in pieces] == [
        ["notice"],
        ["message"],
        ["notice", "members"],
        ["notice"],
    ]
    members = parse_frames(pieces[2])[1]["members"]
    assert [(m["nick"], m["op"], m["voice"]) for m in members] == [
        ("alice", True, False),
        ("bob", True, False),
        ("carol", False, True),
    ]


@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=12), st.booleans(), st.booleans()),
        max_size=12,
    ),
    st.booleans(),
)
def test_members_are_the_bytes_json_makes(
    people: list[tuple[str, bool, bool]], with_rules: bool
) -> None:
    dev = room()
    marks = []
    creator = person("creator")
    rules = RoomRules.for_creator("#Dev", creator)
    rules.operators.clear()
    for nick, op, voice in people:
        member = Participant(client=RecordingClient(), nick=Nick(nick, nick))
        dev.members[member] = member.client.send
        if with_rules:
            if op:
                rules.operators.add(member)
            if voice:
                rules.voiced.add(member)
        marks.append(
            {"nick": nick, "op": op and with_rules, "voice": voice and with_rules}
        )
    dev.rules = rules if with_rules else None
    expected = {"type": "members", "room": "#Dev", "members": marks}
    assert members_frame(dev) == frame(expected)
