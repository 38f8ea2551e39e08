"""The cluster's RESP reader and encoder (issue 19).

The reader must give the same replies however the bytes are cut into reads
(a reply may end mid-read, a read may hold many replies), keep its place in
a long array, and refuse what is not RESP rather than guess.
"""

from __future__ import annotations

from typing import Any

import pytest
import txredisapi  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from twisted_chat.cluster.resp import ReplyReader, encode


def serialise(value: Any) -> bytes:
    """``value`` as Redis would send it (the test's own, simple writer)."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, str):
        return b"+%s\r\n" % value.encode()
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(serialise(v) for v in value)
    raise TypeError(value)


replies = st.recursive(
    st.none()
    | st.binary(max_size=40)
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(
        st.characters(blacklist_characters="\r\n", codec="utf-8"),
        max_size=10,
    ),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=30,
)


@given(st.lists(replies, min_size=1, max_size=8), st.data())
def test_any_cut_gives_the_same_replies(values: list[Any], data: st.DataObject) -> None:
    wire = b"".join(serialise(v) for v in values)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    reader = ReplyReader()
    got: list[Any] = []
    start = 0
    for cut in [*cuts, len(wire)]:
        got += reader.feed(wire[start:cut])
        start = cut
    assert got == values


def test_byte_by_byte_and_many_at_once() -> None:
    wire = (
        b"*3\r\n$7\r\nmessage\r\n$4\r\ntc:a\r\n$2\r\nhi\r\n:5\r\n+OK\r\n*0\r\n*-1\r\n"
    )
    reader = ReplyReader()
    one_by_one = [r for i in range(len(wire)) for r in reader.feed(wire[i : i + 1])]
    expected = [[b"message", b"tc:a", b"hi"], 5, "OK", [], None]
    assert one_by_one == expected
    assert ReplyReader().feed(wire) == expected


def test_errors_are_values_and_keep_their_text() -> None:
    (error,) = ReplyReader().feed(b"-NOSCRIPT No matching script\r\n")
    assert isinstance(error, txredisapi.ResponseError)
    assert str(error) == "NOSCRIPT No matching script"
    (inner,) = ReplyReader().feed(b"*2\r\n:1\r\n-ERR x\r\n")
    assert inner[0] == 1
    assert isinstance(inner[1], txredisapi.ResponseError)


def test_a_long_array_is_read_once() -> None:
    items = [b"x" * 100] * 5000
    wire = serialise(items)
    reader = ReplyReader()
    got: list[Any] = []
    for start in range(0, len(wire), 4096):
        got += reader.feed(wire[start : start + 4096])
        # The reader keeps only the unread tail, not the whole reply so far.
        assert len(reader._buffer) < 4096 + 200
    assert got == [items]


@pytest.mark.parametrize("garbage", [b"?what\r\n", b"$x\r\n", b"*?\r\n", b":1.5\r\n"])
def test_garbage_is_refused(garbage: bytes) -> None:
    with pytest.raises(ValueError):
        ReplyReader().feed(garbage)


def test_encode() -> None:
    assert encode(["SET", "ké", b"\x00\xff", 12, 1.5]) == (
        b"*5\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$2\r\n\x00\xff\r\n"
        b"$2\r\n12\r\n$3\r\n1.5\r\n"
    )
    with pytest.raises(TypeError, match="str, bytes, int or float"):
        encode(["SET", None])
