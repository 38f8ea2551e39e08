"""`twisted_chat.core.lines`: room lines taken apart again, for the history.

The history keeps the bytes a room's members were sent and takes them
apart where it writes or reads them, so `parse_room_lines` must undo
`room_message` and `room_action` for every nickname and every cleaned text.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_chat.core.cleaning import clean_text
from twisted_chat.core.errors import InvalidName
from twisted_chat.core.lines import parse_room_lines, room_action, room_message
from twisted_chat.core.names import Nick, RoomName


def _valid(parse: type[Nick | RoomName], text: str) -> bool:
    try:
        parse.parse(text)
    except InvalidName:
        return False
    return True


letters = st.characters(categories=["L"])
name_chars = st.characters(categories=["L", "M", "Nd"]) | st.sampled_from("_-.")
nicks = st.builds(
    lambda first, rest: first + rest.replace(".", "_"),
    letters,
    st.text(name_chars, max_size=23),
).filter(lambda t: _valid(Nick, t))
rooms = st.builds(
    lambda first, rest: "#" + first + rest, letters, st.text(name_chars, max_size=31)
).filter(lambda t: _valid(RoomName, t))
texts = st.text(max_size=300).map(clean_text)
said = st.lists(st.tuples(nicks, texts, st.booleans()), min_size=1, max_size=20)


@settings(max_examples=300)
@given(rooms, said)
def test_parse_undoes_room_lines(room: str, lines: list[tuple[str, str, bool]]) -> None:
    """Any valid nicknames, any cleaned texts, messages and actions mixed."""
    data = b"".join(
        (room_action if action else room_message)(room, nick, text)
        for nick, text, action in lines
    )
    assert parse_room_lines(room, data) == lines


def test_parse_keeps_what_looks_like_markup_in_the_text() -> None:
    """``> ``, ``* ``, brackets and spaces in a text are text."""
    cases = [
        ("al", "<bob> hi > there", False),
        ("al", "* not an action", False),
        ("bo", " leading and trailing ", True),
        ("bo", "", True),
        ("cy", "", False),
        ("小明", "[#other] <x> y", False),
    ]
    data = b"".join(
        (room_action if action else room_message)("#Röom", nick, text)
        for nick, text, action in cases
    )
    assert parse_room_lines("#Röom", data) == cases


def test_parse_nothing() -> None:
    assert parse_room_lines("#a", b"") == []


def test_parsed_lines_read_by_name_and_by_position() -> None:
    """A parsed line is a record (``nick``, ``text``, ``action``) that still
    unpacks as the triple the history stores used to get."""
    data = room_message("#a", "al", "hi") + room_action("#a", "bo", "waves")
    said, done = parse_room_lines("#a", data)
    assert (said.nick, said.text, said.action) == ("al", "hi", False)
    assert (done.nick, done.text, done.action) == ("bo", "waves", True)
    nick, text, action = done
    assert (nick, text, action) == ("bo", "waves", True)
