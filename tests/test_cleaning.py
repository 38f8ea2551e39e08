# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Tests for twisted_chat.core.cleaning: telnet filtering and control stripping."""

from __future__ import annotations

import re

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_chat.core.cleaning import (
    MAX_SUBNEGOTIATION,
    TelnetFilter,
    clean_text,
)

IAC = b"\xff"
SB = b"\xfa"
SE = b"\xf0"
WILL, WONT, DO, DONT = b"\xfb", b"\xfc", b"\xfd", b"\xfe"
NOP, GA, AYT = b"\xf1", b"\xf9", b"\xf6"
ECHO, NAWS, TTYPE = b"\x01", b"\x1f", b"\x18"

ESC = "\x1b"
CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split data at the given offsets (clamped, deduplicated, sorted)."""
    positions = sorted({min(cut, len(data)) for cut in cuts})
    starts = [0, *positions]
    ends = [*positions, len(data)]
    return [data[a:b] for a, b in zip(starts, ends, strict=True)]


def feed_all(chunks: list[bytes]) -> bytes:
    """Feed chunks to one fresh filter and join what it returns."""
    telnet = TelnetFilter()
    return b"".join(telnet.feed(chunk) for chunk in chunks)


# --- TelnetFilter ---------------------------------------------------------

TELNET_CASES = [
    pytest.param(b"hello\r\n", b"hello\r\n", id="plain"),
    pytest.param(b"a" + IAC + NOP + b"b", b"ab", id="iac-nop"),
    pytest.param(b"a" + IAC + GA + b"b", b"ab", id="iac-ga"),
    pytest.param(b"a" + IAC + AYT + b"b", b"ab", id="iac-ayt"),
    pytest.param(b"a" + IAC + SE + b"b", b"ab", id="stray-se"),
    pytest.param(IAC + WILL + ECHO + b"x", b"x", id="will"),
    pytest.param(IAC + WONT + ECHO + b"x", b"x", id="wont"),
    pytest.param(IAC + DO + TTYPE + b"x", b"x", id="do"),
    pytest.param(IAC + DONT + NAWS + b"x", b"x", id="dont"),
    pytest.param(IAC + DO + IAC + b"x", b"x", id="option-byte-is-255"),
    pytest.param(
        b"hi" + IAC + SB + NAWS + b"\x00\x50\x00\x18" + IAC + SE + b"!",
        b"hi!",
        id="sb-naws",
    ),
    pytest.param(
        IAC + SB + TTYPE + b"\x00\n\r\x1b[2J" + IAC + SE + b"ok",
        b"ok",
        id="sb-content-with-newlines-and-escapes",
    ),
    pytest.param(
        IAC + SB + TTYPE + IAC + IAC + b"x" + IAC + SE + b"ok",
        b"ok",
        id="sb-with-escaped-iac",
    ),
    pytest.param(
        IAC + SB + TTYPE + b"x" + IAC + WILL + ECHO + b"ok",
        b"ok",
        id="sb-ended-by-other-command",
    ),
    pytest.param(IAC + IAC, b"\xff", id="iac-iac"),
    pytest.param(b"a" + IAC + IAC + IAC + IAC + b"b", b"a\xff\xffb", id="iac-iac-x2"),
    pytest.param(b"a" + IAC + b"z" + b"b", b"ab", id="unknown-byte-after-iac"),
    pytest.param(b"a" + IAC + b"\n" + b"b", b"ab", id="newline-after-iac"),
    pytest.param(b"a\r\x00b", b"a\rb", id="cr-nul"),
    pytest.param(b"a\r\x00\x00b", b"a\r\x00b", id="cr-nul-nul-keeps-one"),
    pytest.param(b"a\x00b", b"a\x00b", id="lone-nul-kept"),
    pytest.param(b"a\r\nb", b"a\r\nb", id="crlf"),
    pytest.param(b"x" + IAC, b"x", id="trailing-iac-waits"),
]


@pytest.mark.parametrize(("raw", "expected"), TELNET_CASES)
def test_telnet_filter_removes_sequence(raw: bytes, expected: bytes) -> None:
    """Each telnet sequence is removed, and only it, when fed at once."""
    assert feed_all([raw]) == expected


@pytest.mark.parametrize(("raw", "expected"), TELNET_CASES)
def test_telnet_filter_split_at_every_position(raw: bytes, expected: bytes) -> None:
    """Splitting the stream into two chunks anywhere gives the same output."""
    for cut in range(len(raw) + 1):
        assert feed_all([raw[:cut], raw[cut:]]) == expected, cut


@pytest.mark.parametrize(("raw", "expected"), TELNET_CASES)
def test_telnet_filter_byte_by_byte(raw: bytes, expected: bytes) -> None:
    """Feeding one byte at a time gives the same output."""
    assert feed_all([raw[i : i + 1] for i in range(len(raw))]) == expected


def test_telnet_filter_fast_path_returns_same_object() -> None:
    """A chunk with nothing to remove comes back as the very same object."""
    telnet = TelnetFilter()
    chunk = b"just some text\r\nand more\n" * 10
    assert telnet.feed(chunk) is chunk


def test_telnet_filter_cr_nul_across_chunks() -> None:
    """CR at the end of one chunk and NUL at the start of the next is CR."""
    telnet = TelnetFilter()
    assert telnet.feed(b"abc\r") == b"abc\r"
    assert telnet.feed(b"\x00def") == b"def"
    assert telnet.feed(b"\x00") == b"\x00"


def test_telnet_filter_command_across_chunks() -> None:
    """IAC at the end of a chunk and its command in the next are both removed."""
    telnet = TelnetFilter()
    assert telnet.feed(b"abc" + IAC) == b"abc"
    assert telnet.feed(DO) == b""
    assert telnet.feed(ECHO + b"def") == b"def"


def test_telnet_filter_unterminated_subnegotiation_is_bounded() -> None:
    """After MAX_SUBNEGOTIATION bytes without IAC SE, data flows again."""
    telnet = TelnetFilter()
    out = telnet.feed(IAC + SB + TTYPE + b"a" * (MAX_SUBNEGOTIATION - 1))
    assert out == b""
    assert telnet.feed(b"hello\n") == b"hello\n"


@pytest.mark.parametrize(
    "length", [0, 1, MAX_SUBNEGOTIATION - 2, MAX_SUBNEGOTIATION - 1, MAX_SUBNEGOTIATION]
)
def test_telnet_filter_subnegotiation_at_the_limit(length: int) -> None:
    """Near the limit, a subnegotiation ends the same way in any chunking."""
    raw = b"<" + IAC + SB + b"x" * length + IAC + SE + b">"
    if length + 1 <= MAX_SUBNEGOTIATION:  # content and closing IAC fit
        expected = b"<>"
    else:  # given up just before IAC SE, which is then a lone command
        expected = b"<" + b"x" * (length - MAX_SUBNEGOTIATION) + b">"
    assert feed_all([raw]) == expected
    assert feed_all([raw[i : i + 1] for i in range(len(raw))]) == expected
    for cut in range(len(raw) - 8, len(raw) + 1):
        assert feed_all([raw[:cut], raw[cut:]]) == expected, cut


def test_telnet_filter_subnegotiation_limit_counts_escaped_iac() -> None:
    """Escaped IAC IAC inside a subnegotiation counts towards the limit."""
    content = (IAC + IAC) * MAX_SUBNEGOTIATION
    out = feed_all([IAC + SB + content + b"tail"])
    # The limit is reached half-way through the escaped pairs; the rest are
    # read as ordinary IAC IAC, each one literal 0xFF.
    assert out == b"\xff" * (MAX_SUBNEGOTIATION // 2) + b"tail"


def test_telnet_filter_state_stays_small_under_huge_subnegotiation() -> None:
    """8 MiB of subnegotiation content leaves only a few integers of state."""
    telnet = TelnetFilter()
    telnet.feed(IAC + SB + TTYPE)
    chunk = b"\x01" * 65536
    passed = 0
    for _ in range((8 * 1024 * 1024) // len(chunk)):
        passed += len(telnet.feed(chunk))
        # Re-open the subnegotiation each time it is given up on.
        telnet.feed(IAC + SB)
        for attribute in attrs.fields(TelnetFilter):
            value = getattr(telnet, attribute.name)
            assert isinstance(value, (int, bool)), attribute.name
            assert value <= MAX_SUBNEGOTIATION, attribute.name
    assert not hasattr(telnet, "__dict__")
    # Everything past each limit was passed on, not held back.
    assert passed == 128 * (len(chunk) - MAX_SUBNEGOTIATION) + 1


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300)))
def test_telnet_filter_chunking_does_not_matter(data: bytes, cuts: list[int]) -> None:
    """Any bytes fed in any chunking never raise and give the one-shot output."""
    assert feed_all(chunked(data, cuts)) == feed_all([data])


# Telnet-heavy bytes, so that the property above reaches every state often.
_TELNETISH = st.lists(
    st.sampled_from(
        [IAC, SB, SE, WILL, DONT, NOP, b"\r", b"\x00", b"\n", b"a", b"\x01"]
    ),
    max_size=80,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=_TELNETISH, cuts=st.lists(st.integers(0, 80)))
def test_telnet_filter_chunking_does_not_matter_telnetish(
    data: bytes, cuts: list[int]
) -> None:
    """Streams dense in telnet bytes give the same output in any chunking."""
    assert feed_all(chunked(data, cuts)) == feed_all([data])


# --- clean_text -----------------------------------------------------------

CLEAN_CASES = [
    pytest.param("hello world", "hello world", id="plain"),
    pytest.param("a\tb", "a\tb", id="tab-kept"),
    pytest.param(f"{ESC}[31mred{ESC}[0m", "red", id="csi-colour"),
    pytest.param(f"{ESC}[38;2;255;0;0mrgb", "rgb", id="csi-truecolour"),
    pytest.param(f"{ESC}[2J{ESC}[Hhi", "hi", id="csi-clear-screen-home"),
    pytest.param(f"a{ESC}[10;20Hb", "ab", id="csi-cursor-position"),
    pytest.param(f"a{ESC}[?25lb", "ab", id="csi-private-hide-cursor"),
    pytest.param(f"a{ESC}[1 qb", "ab", id="csi-intermediate"),
    pytest.param(f"a{ESC}[12", "a", id="csi-unterminated"),
    pytest.param(f"a{ESC}]52;c;aGVsbG8=\x07b", "ab", id="osc52-bel"),
    pytest.param(f"a{ESC}]52;c;aGVsbG8={ESC}\\b", "ab", id="osc52-st"),
    pytest.param(f"a{ESC}]0;title\x07b", "ab", id="osc-title-bel"),
    pytest.param(f"a{ESC}]8;;http://x{ESC}\\link", "alink", id="osc8-hyperlink"),
    pytest.param(f"a{ESC}]0;title forever", "a", id="osc-unterminated"),
    pytest.param(f"a{ESC}]0;t{ESC}[31mb", "ab", id="osc-ended-by-csi"),
    pytest.param(f"a{ESC}Pq#0;2;0;0;0{ESC}\\b", "ab", id="dcs"),
    pytest.param(f"a{ESC}Xsos{ESC}\\b", "ab", id="sos"),
    pytest.param(f"a{ESC}^pm{ESC}\\b", "ab", id="pm"),
    pytest.param(f"a{ESC}_apc{ESC}\\b", "ab", id="apc"),
    pytest.param(f"a{ESC}Pno end", "a", id="dcs-unterminated"),
    pytest.param("a\x9b31mb", "ab", id="c1-csi"),
    pytest.param("a\x9d52;c;eA==\x9cb", "ab", id="c1-osc-c1-st"),
    pytest.param("a\x9d0;t\x07b", "ab", id="c1-osc-bel"),
    pytest.param("a\x90dcs\x9cb", "ab", id="c1-dcs"),
    pytest.param("a\x98sos\x9cb", "ab", id="c1-sos"),
    pytest.param("a\x9epm\x9cb", "ab", id="c1-pm"),
    pytest.param("a\x9fapc\x9cb", "ab", id="c1-apc"),
    pytest.param("a\x85b\x8ec\x9cd", "abcd", id="c1-bare"),
    pytest.param(f"a{ESC}cb", "ab", id="esc-reset"),
    pytest.param(f"a{ESC}7b{ESC}8c", "abc", id="esc-save-restore"),
    pytest.param(f"a{ESC}(Bb", "ab", id="esc-charset"),
    pytest.param(f"a{ESC}#8b", "ab", id="esc-decaln"),
    pytest.param(f"a{ESC}", "a", id="lone-esc-at-end"),
    pytest.param(f"a{ESC}é", "aé", id="esc-then-non-ascii"),
    pytest.param("ding\x07dong", "dingdong", id="bell"),
    pytest.param("abc\x08\x08\x08xyz", "abcxyz", id="backspace"),
    pytest.param("a\x7fb", "ab", id="del"),
    pytest.param("a\x00b\rc\nd\x0be\x0cf", "abcdef", id="other-c0"),
    pytest.param("a\ufffdb", "a\ufffdb", id="replacement-char-kept"),
    pytest.param("小明 你好", "小明 你好", id="cjk"),
    pytest.param(
        "👩\u200d👩\u200d👧 ❤\ufe0f", "👩\u200d👩\u200d👧 ❤\ufe0f", id="zwj-emoji"
    ),
    pytest.param("e\u0301 n\u0303", "e\u0301 n\u0303", id="combining-marks"),
    pytest.param(f"{ESC}[1m小明{ESC}[0m 👋", "小明 👋", id="escapes-around-unicode"),
    # Invisible layout characters (finding 10 of issue 11).
    pytest.param(
        "hi\u2028* Alice is now known as admin",
        "hi* Alice is now known as admin",
        id="line-separator-forged-line",
    ),
    pytest.param("a\u2029b", "ab", id="paragraph-separator"),
    pytest.param("look \u202eevil\u202c here", "look evil here", id="rlo-pdf"),
    pytest.param("a\u202ab\u202bc\u202dd", "abcd", id="embeddings-lro"),
    pytest.param("a\u2066b\u2067c\u2068d\u2069e", "abcde", id="isolates"),
    pytest.param("pay\u200bpal", "paypal", id="zero-width-space"),
    pytest.param("a\u2060b\u2062c", "abc", id="word-joiner-invisible-times"),
    pytest.param("\ufeffhello\ufeff", "hello", id="bom"),
    pytest.param("pay\u200dpal \u200cx", "paypal x", id="joiners-in-latin"),
    pytest.param("\u200d👩 👩\u200d", "👩 👩", id="joiners-at-edges"),
    pytest.param("👩\u200d\u200d👩", "👩👩", id="doubled-zwj"),
    pytest.param("می\u200cخواهم", "می\u200cخواهم", id="persian-zwnj-kept"),
    pytest.param("क\u200dष", "क\u200dष", id="devanagari-zwj-kept"),
    pytest.param("❤\ufe0f\u200d🔥", "❤\ufe0f\u200d🔥", id="vs16-zwj-emoji-kept"),
    pytest.param("שלום\u200f!", "שלום\u200f!", id="rlm-kept"),
    pytest.param(f"{ESC}[31m\u202ex\u2028", "x", id="escape-and-invisible"),
]


@pytest.mark.parametrize(("raw", "expected"), CLEAN_CASES)
def test_clean_text_removes_controls(raw: str, expected: str) -> None:
    """Each escape sequence or control character is removed, and only it."""
    assert clean_text(raw) == expected


@pytest.mark.parametrize(
    "line",
    [
        "hello 小明 👋\tand more",
        "plain ascii",
        "ascii\twith\ttabs",
        "Ça va\u00a0?",
        "👩\u200d👩\u200d👧",
        "می\u200cخواهم",
    ],
)
def test_clean_text_fast_path_returns_same_object(line: str) -> None:
    """A line with nothing to remove comes back as the very same object."""
    assert clean_text(line) is line


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_clean_text_output_has_no_controls(text: str) -> None:
    """Arbitrary text never raises and comes out with no control but TAB."""
    cleaned = clean_text(text)
    assert CONTROL.search(cleaned) is None
    assert ESC not in cleaned


# Text built from the characters escape sequences are made of, so that the
# property reaches the sequence patterns often, not just the control strip.
_ESCAPEISH = st.lists(
    st.sampled_from(
        [
            *(ESC, "[", "]", "P", "X", "^", "_", "\\", "\x07", "\x9b", "\x9c"),
            *("\x9d", "\x90", "(", "#", ";", "3", "1", "m", "?", " ", "a", "é"),
            *("\t", "\x00"),
        ]
    ),
    max_size=60,
).map("".join)


# Always removed: separators, bidi embeddings/overrides/isolates, ZWSP, word
# joiner and invisible operators, deprecated format controls, BOM.
INVISIBLE = re.compile(
    "[\u2028\u2029\u202a-\u202e\u2066-\u2069\u200b\u2060-\u2064\u206a-\u206f\ufeff]"
)
JOINERS = "\u200c\u200d"
# Where PROTOCOL.md's exception keeps a joiner: between two letters of a
# script that uses them (Arabic to Sinhala, Myanmar, Khmer, Mongolian, ...),
# and a ZWJ between two emoji.
JOINING_SCRIPTS = [
    (0x0600, 0x08FF),
    (0x0900, 0x0DFF),
    (0x1000, 0x109F),
    (0x1780, 0x18AF),
    (0xA8E0, 0xA8FF),
    (0xFB50, 0xFDFF),
    (0xFE70, 0xFEFE),
]
EMOJI = [(0x2190, 0x21FF), (0x2300, 0x23FF), (0x2600, 0x27BF), (0x2B00, 0x2BFF)]
EMOJI += [(0x1F000, 0x1FAFF)]

# Text built around the joiners and the invisible characters, next to letters
# of joining scripts, Latin letters, emoji and spaces.
_INVISIBLEISH = st.lists(
    st.sampled_from(
        [
            *("\u200c", "\u200d", "\u200b", "\u2028", "\u202e", "\u2066", "\ufeff"),
            *("\u200e", "\ufe0f", "a", " ", "\t", "ب", "क", "्", "👩", "❤", "🔥"),
            *(ESC, "[", "m", "\x07"),
        ]
    ),
    max_size=40,
).map("".join)


def _joiner_context_ok(text: str, at: int) -> bool:
    """Whether the joiner at ``at`` sits where clean_text promises to keep one."""
    before = text[at - 1] if at else ""
    after = text[at + 1] if at + 1 < len(text) else ""

    def within(char: str, ranges: list[tuple[int, int]]) -> bool:
        return char != "" and any(low <= ord(char) <= high for low, high in ranges)

    def joining(char: str) -> bool:
        return within(char, JOINING_SCRIPTS)

    def emoji(char: str) -> bool:
        return within(char, EMOJI)

    if joining(before) and joining(after):
        return True
    return (
        text[at] == "\u200d" and (emoji(before) or before == "\ufe0f") and emoji(after)
    )


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), _INVISIBLEISH))
def test_clean_text_output_has_no_layout_characters(text: str) -> None:
    """No separator, bidi control, ZWSP or BOM survives; joiners only in context."""
    cleaned = clean_text(text)
    assert INVISIBLE.search(cleaned) is None
    assert CONTROL.search(cleaned) is None
    for at, char in enumerate(cleaned):
        if char in JOINERS:
            assert _joiner_context_ok(cleaned, at), (cleaned, at)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), _ESCAPEISH, _INVISIBLEISH))
def test_clean_text_is_idempotent(text: str) -> None:
    """Cleaning a cleaned line changes nothing."""
    once = clean_text(text)
    assert CONTROL.search(once) is None
    assert clean_text(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cc", "Cs", "Cf", "Zl", "Zp"])))
def test_clean_text_keeps_printable_text(text: str) -> None:
    """Text without control, format or separator characters survives unchanged."""
    assert clean_text(text) == text
