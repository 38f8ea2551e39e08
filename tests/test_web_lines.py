"""The core's direct replies as web events (twisted_chat.transports.web_lines)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from twisted_chat.core import lines
from twisted_chat.core.errors import NickInUse
from twisted_chat.transports.web_lines import (
    event_for_line,
    events_for_lines,
    frames_for_lines,
)

STAMP = "2026-12-01T10:00:00Z"


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (
            b"* Welcome to twisted-chat, guest7! Pick a name with /nick NAME.\r\n",
            {
                "type": "notice",
                "text": "Welcome to twisted-chat, guest7! Pick a name with /nick NAME.",
            },
        ),
        (
            b"! nick-in-use: bob is taken; choose another with /nick NAME.\r\n",
            {
                "type": "error",
                "code": "nick-in-use",
                "text": "bob is taken; choose another with /nick NAME.",
            },
        ),
        (
            b"[PM] <bob> hi: there > you\r\n",
            {
                "type": "private",
                "nick": "bob",
                "text": "hi: there > you",
                "time": STAMP,
            },
        ),
        (
            b"[#dev] <bob> hi\r\n",
            {
                "type": "message",
                "room": "#dev",
                "nick": "bob",
                "text": "hi",
                "time": STAMP,
            },
        ),
        (
            b"[#dev] * bob waves at <alice>\r\n",
            {
                "type": "action",
                "room": "#dev",
                "nick": "bob",
                "text": "waves at <alice>",
                "time": STAMP,
            },
        ),
        (
            "[#Café] <Zoë> ça va\r\n".encode(),
            {
                "type": "message",
                "room": "#Café",
                "nick": "Zoë",
                "text": "ça va",
                "time": STAMP,
            },
        ),
        # A replayed line (history goes through WebFormat; if one comes here
        # it is kept whole).
        (
            b"[#dev 14:02] <alice> anyone?\r\n",
            {"type": "notice", "text": "[#dev 14:02] <alice> anyone?"},
        ),
        # Shapes of nothing known: a notice of the text, never lost.
        (b"!bang\r\n", {"type": "notice", "text": "!bang"}),
        (b"! No code here\r\n", {"type": "notice", "text": "! No code here"}),
        (b"*\r\n", {"type": "notice", "text": "*"}),
        (b"* \r\n", {"type": "notice", "text": ""}),
        (b"[PM] bob hi\r\n", {"type": "notice", "text": "[PM] bob hi"}),
        (b"[dev] <bob> hi\r\n", {"type": "notice", "text": "[dev] <bob> hi"}),
        (b"plain words", {"type": "notice", "text": "plain words"}),
        (b"", {"type": "notice", "text": ""}),
        (b"\xff\xfe* x\r\n", {"type": "notice", "text": "\ufffd\ufffd* x"}),
        (b"* caf\xc3\r\n", {"type": "notice", "text": "caf\ufffd"}),
    ],
)
def test_each_shape(line: bytes, event: dict[str, object]) -> None:
    assert event_for_line(line, STAMP) == event


def test_the_core_s_own_lines() -> None:
    assert event_for_line(lines.notice("You joined #dev."), STAMP) == {
        "type": "notice",
        "text": "You joined #dev.",
    }
    assert event_for_line(lines.error(NickInUse("bob is taken.")), STAMP) == {
        "type": "error",
        "code": "nick-in-use",
        "text": "bob is taken.",
    }
    assert event_for_line(lines.private_message("bob", "hi"), STAMP)["type"] == (
        "private"
    )
    assert event_for_line(lines.room_message("#dev", "bob", "hi"), STAMP)["type"] == (
        "message"
    )
    assert event_for_line(lines.room_action("#dev", "bob", "hi"), STAMP)["type"] == (
        "action"
    )


def test_several_lines_at_once() -> None:
    data = b"* a\r\n! usage: b\r\n\r\n[PM] <bob> c\r\n* d"
    assert events_for_lines(data, STAMP) == [
        {"type": "notice", "text": "a"},
        {"type": "error", "code": "usage", "text": "b"},
        {"type": "private", "nick": "bob", "text": "c", "time": STAMP},
        {"type": "notice", "text": "d"},
    ]
    assert events_for_lines(b"", STAMP) == []
    assert events_for_lines(b"\r\n", STAMP) == []


def received(data: bytes) -> list[object]:
    """What a browser makes of ``data``: each text frame's JSON."""
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(data)
    out = []
    for got in client.received_frames():
        assert got.opcode is Opcode.TEXT
        assert got.message_finished
        out.append(json.loads(got.payload))  # type: ignore[arg-type]
    return out


def test_frames_for_lines_is_one_frame_per_line() -> None:
    data = frames_for_lines(b"* a\r\n* b\r\n", STAMP)
    assert data.startswith(b'\x81\x1c{"type":"notice","text":"a"}\x81')
    assert received(data) == [
        {"type": "notice", "text": "a"},
        {"type": "notice", "text": "b"},
    ]


def test_the_wall_clock_when_no_stamp() -> None:
    event = event_for_line(b"[PM] <bob> hi\r\n")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(event["time"]))


@given(st.binary(max_size=300))
def test_never_raises_and_always_parses(data: bytes) -> None:
    event = event_for_line(data, STAMP)
    assert isinstance(event["type"], str)
    assert isinstance(event["text"], str)
    events = events_for_lines(data, STAMP)
    assert all(isinstance(one["text"], str) for one in events)
    # Every event makes a frame a browser can parse.
    assert received(frames_for_lines(data, STAMP)) == events


@given(
    st.sampled_from(
        ["* ", "! code: ", "[PM] <bob> ", "[#dev] <bob> ", "[#dev] * bob "]
    ),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs")),
        max_size=80,
    ),
)
def test_text_comes_back_exactly(head: str, text: str) -> None:
    event = event_for_line((head + text + "\r\n").encode(), STAMP)
    assert event["text"] == text
    [again] = events_for_lines((head + text + "\r\n").encode(), STAMP)
    assert again == event
