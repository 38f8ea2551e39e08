"""
Text between IRC and the other front-ends (transports/irc_text.py):
formatting codes, CTCP, cloaks, ISUPPORT.

Formatting cases follow modern.ircdocs.horse/formatting, CTCP cases
modern.ircdocs.horse/ctcp, the ISUPPORT split the Modern document's
RPL_ISUPPORT (13 tokens) and irctest's isupport tests.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_chat.transports import irc_wire
from twisted_chat.transports.irc_text import (
    ISUPPORT_TRAILER,
    cloak,
    ctcp_action,
    ctcp_parts,
    is_ctcp,
    isupport_tokens,
    make_action,
    rpl_isupport_lines,
    strip_formatting,
    user_mask,
)

SECRET = b"s" * 32
CLOAK_SHAPE = re.compile(r"[a-z2-7]{8}\.[a-z2-7]{8}\.tc")


# -- formatting ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("\x02bold\x02 text", "bold text"),
        ("\x1ditalic\x1d \x1funder\x1f \x1estrike\x1e", "italic under strike"),
        ("\x11mono\x11 \x16reverse\x16 \x0freset", "mono reverse reset"),
        ("\x034red", "red"),
        ("\x0304red", "red"),
        ("\x0304,12red on blue", "red on blue"),
        ("\x034,2x", "x"),
        ("\x03plain", "plain"),  # a colour code alone resets the colour
        ("\x0312345", "345"),  # two digits at most
        ("\x0304,", ","),  # a comma without a digit is text
        ("\x03,12x", ",12x"),  # no background without a foreground
        ("\x0304,123", "3"),
        ("\x0399default", "default"),
        ("\x04FF0000red", "red"),
        ("\x04ff0000,00FF00red on green", "red on green"),
        ("\x04FFF", "FFF"),  # not six hex digits: text
        ("\x04plain", "plain"),
        ("\x03\u0663", "\u0663"),  # only ASCII digits belong to the code
        ("a\x02\x02b", "ab"),
    ],
)
def test_formatting_codes_are_removed(text: str, plain: str) -> None:
    assert strip_formatting(text) == plain


def test_text_without_codes_is_returned_as_it_is() -> None:
    text = "héllo wörld, 12 ,34 \x01ACTION\x01"
    assert strip_formatting(text) is text


@given(st.text())
def test_no_formatting_code_survives(text: str) -> None:
    stripped = strip_formatting(text)
    assert not set(stripped) & set("\x02\x03\x04\x0f\x11\x16\x1d\x1e\x1f")
    assert strip_formatting(stripped) == stripped


# -- CTCP ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("\x01ACTION waves\x01", "waves"),
        ("\x01ACTION waves", "waves"),  # lenient: no final \x01
        ("\x01ACTION\x01", ""),
        ("\x01action waves hello\x01", "waves hello"),
        ("\x01ACTION a \x02b\x02\x01 trailing", "a \x02b\x02"),
        ("\x01ACTIONS x\x01", None),
        ("\x01VERSION\x01", None),
        ("waves", None),
        ("x \x01ACTION y\x01", None),
    ],
)
def test_ctcp_action(text: str, action: str | None) -> None:
    assert ctcp_action(text) == action


@pytest.mark.parametrize(
    ("text", "ctcp"),
    [
        ("\x01VERSION\x01", True),
        ("\x01PING 1234\x01", True),
        ("\x01ping 1234", True),
        ("\x01ACTION waves\x01", False),
        ("\x01", False),
        ("\x01\x01", False),
        ("\x01 x\x01", False),
        ("hello", False),
    ],
)
def test_is_ctcp(text: str, ctcp: bool) -> None:
    assert is_ctcp(text) is ctcp


def test_ctcp_parts() -> None:
    assert ctcp_parts("\x01PING 12 34\x01") == ("PING", "12 34")
    assert ctcp_parts("\x01version") == ("VERSION", "")
    assert ctcp_parts("plain") is None


@given(st.text(st.characters(blacklist_characters="\x01")))
def test_make_action_round_trips(text: str) -> None:
    assert ctcp_action(make_action(text)) == text
    assert not is_ctcp(make_action(text))


# -- cloaks --------------------------------------------------------------------


def test_a_cloak_is_stable_and_shaped_like_a_host() -> None:
    first = cloak(SECRET, "203.0.113.7")
    assert first == cloak(SECRET, "203.0.113.7")
    assert CLOAK_SHAPE.fullmatch(first)
    assert cloak(SECRET, "x", suffix="example.net").endswith(".example.net")


def test_cloaks_differ_by_value_and_by_secret() -> None:
    addresses = [str(ipaddress.IPv4Address(0xCB007100 + n)) for n in range(2000)]
    addresses += [f"2001:db8::{n:x}" for n in range(2000)]
    cloaks = {cloak(SECRET, address) for address in addresses}
    assert len(cloaks) == len(addresses)
    assert cloak(SECRET, "203.0.113.7") != cloak(b"t" * 32, "203.0.113.7")


@pytest.mark.parametrize(
    "address",
    ["203.0.113.7", "198.51.100.254", "10.0.0.1", "2001:db8::8:800:200c:417a"],
)
def test_a_cloak_shows_nothing_of_the_address(address: str) -> None:
    hidden = cloak(SECRET, address)
    assert not set(hidden) & set("0189")  # base32 has none of these digits
    pieces = [piece for piece in re.split(r"[.:]", address) if len(piece) >= 2]
    assert not any(piece.lower() in hidden for piece in pieces)
    assert address not in hidden


def test_a_short_secret_or_a_bad_suffix_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        cloak(b"short", "203.0.113.7")
    for suffix in ["", "a b", "-x", "x.", "UPPER", "a..b"]:
        with pytest.raises(ValueError, match="not a host name"):
            cloak(SECRET, "203.0.113.7", suffix=suffix)


def test_user_mask() -> None:
    assert user_mask("alice", "a.b.c.tc") == "alice!~alice@a.b.c.tc"


# -- ISUPPORT ------------------------------------------------------------------


def standard(**changes: Any) -> list[str]:
    """The tokens for this server's default limits, with ``changes``."""
    limits: dict[str, Any] = {
        "network": "twisted-chat",
        "nicklen": 24,
        "channellen": 33,
        "topiclen": 300,
        "kicklen": 300,
        "awaylen": 300,
    }
    return isupport_tokens(**{**limits, **changes})


def test_the_tokens_state_the_rules() -> None:
    tokens = standard()
    assert tokens == [
        "AWAYLEN=300",
        "CASEMAPPING=ascii",
        "CHANMODES=b,k,l,imt",
        "CHANNELLEN=33",
        "CHANTYPES=#",
        "KICKLEN=300",
        "NETWORK=twisted-chat",
        "NICKLEN=24",
        "PREFIX=(ov)@+",
        "TOPICLEN=300",
        "UTF8MAPPING=rfc8265",
    ]


def test_optional_tokens() -> None:
    tokens = standard(
        chanlimit=20,
        maxlist=100,
        modes=4,
        maxtargets=4,
        targmax="PRIVMSG:4,NOTICE:4,KICK:1",
        statusmsg="@+",
        linelen=512,
        utf8only=True,
        utf8mapping=None,
        extra=["WHOX"],
    )
    assert "CHANLIMIT=#:20" in tokens
    assert "MAXLIST=b:100" in tokens
    assert "MODES=4" in tokens
    assert "TARGMAX=PRIVMSG:4,NOTICE:4,KICK:1" in tokens
    assert "UTF8ONLY" in tokens
    assert not any(token.startswith("UTF8MAPPING") for token in tokens)
    assert tokens[-1] == "WHOX"


@pytest.mark.parametrize(
    "bad",
    [{"network": "two words"}, {"extra": [":X"]}, {"extra": ["é"]}, {"extra": [""]}],
)
def test_a_token_that_cannot_be_a_parameter_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="cannot be sent"):
        standard(**bad)


def test_005_lines_hold_at_most_13_tokens() -> None:
    tokens = [f"TOKEN{n}={n}" for n in range(30)]
    lines = rpl_isupport_lines("irc.example", "bob", tokens)
    assert [len(line.params) - 2 for line in lines] == [13, 13, 4]
    assert [t for line in lines for t in line.params[1:-1]] == tokens
    for line in lines:
        assert line.command == "005"
        assert line.source == "irc.example"
        assert line.params[0] == "bob"
        assert line.params[-1] == ISUPPORT_TRAILER
        wire = irc_wire.format(line)
        assert irc_wire.parse(wire[:-2]) == line  # nothing was cut
        assert len(wire) <= 512
        assert len(line.params) <= 15


def test_005_lines_also_split_by_bytes() -> None:
    tokens = [f"T{n}=" + "v" * 90 for n in range(6)]
    lines = rpl_isupport_lines("irc.example", "bob", tokens)
    assert len(lines) > 1
    assert [t for line in lines for t in line.params[1:-1]] == tokens
    for line in lines:
        assert irc_wire.parse(irc_wire.format(line)[:-2]) == line


def test_a_token_too_long_for_any_line_is_refused() -> None:
    with pytest.raises(ValueError, match="fits in no line"):
        rpl_isupport_lines("irc.example", "bob", ["X=" + "v" * 500])


def test_the_real_tokens_fit_in_one_line() -> None:
    lines = rpl_isupport_lines("irc.example", "n" * 24, standard())
    assert len(lines) == 1
