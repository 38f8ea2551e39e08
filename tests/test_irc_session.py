"""The IRC session's fast path for plain PRIVMSGs (transports/irc_session.py)."""

from __future__ import annotations

import pytest

from twisted_chat.transports import irc_wire
from twisted_chat.transports.irc_session import _plain_privmsg


@pytest.mark.parametrize(
    "line",
    [
        b"PRIVMSG #dev :hello there",
        b"PRIVMSG bob :hi",
        b"PRIVMSG #dev :",
        b"PRIVMSG #dev ::starts with a colon",
        b"PRIVMSG #dev :caf\xc3\xa9 \xff bad byte",
        b"PRIVMSG #a,#b :two targets",
    ],
)
def test_the_fast_path_reads_what_the_parser_reads(line: bytes) -> None:
    fast = _plain_privmsg(line)
    assert fast is not None
    assert fast == irc_wire.parse(line)


@pytest.mark.parametrize(
    "line",
    [
        b"PRIVMSG #dev",  # no text: the parser and 412 decide
        b"PRIVMSG  #dev :two spaces",
        b"PRIVMSG #dev :nul \x00 inside",
        b"PRIVMSG #dev :" + b"x" * 600,  # too long: 417 from the parser
        b"PRIVMSG #dev extra :words",
    ],
)
def test_anything_unusual_goes_to_the_parser(line: bytes) -> None:
    assert _plain_privmsg(line) is None
