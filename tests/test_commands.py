# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""The line grammar: ``parse_line`` maps a cleaned line to a command value."""

from __future__ import annotations

import contextlib

import pytest

from twisted_chat.core.commands import (
    ALIASES,
    HELP,
    Command,
    Hello,
    Help,
    History,
    Join,
    ListRooms,
    Me,
    Msg,
    Part,
    Ping,
    Quit,
    Say,
    SetNick,
    Topic,
    Who,
    parse_line,
)
from twisted_chat.core.errors import BadUsage, UnknownCommand


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello there", Say("hello there")),
        ("//literal", Say("/literal")),
        ("//", Say("/")),
        ("///x", Say("//x")),
        ("a /b", Say("a /b")),
    ],
)
def test_text_and_double_slash_are_messages(line: str, command: Command) -> None:
    """A line not starting with '/' is text; '//text' sends the literal '/text'."""
    assert parse_line(line) == command


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/nick Bob", SetNick("Bob")),
        ("/nick 小明", SetNick("小明")),
        ("/join #dev", Join("#dev")),
        ("/join dev", Join("dev")),
        ("/part", Part("")),
        ("/part #dev", Part("#dev")),
        ("/part #dev see you later", Part("#dev see you later")),
        ("/part bye all", Part("bye all")),
        ("/rooms", ListRooms()),
        ("/rooms  ", ListRooms(None)),
        ("/who", Who(None)),
        ("/who #dev", Who("#dev")),
        ("/msg Bob hi there", Msg("Bob", "hi there")),
        ("/msg #dev hi", Msg("#dev", "hi")),
        ("/me waves", Me("waves")),
        ("/topic", Topic(None)),
        ("/topic Rust 2.0 release", Topic("Rust 2.0 release")),
        ("/ping", Ping("")),
        ("/ping 42", Ping("42")),
        ("/help", Help(None)),
        ("/help msg", Help("msg")),
        ("/quit", Quit(None)),
        ("/quit gone fishing", Quit("gone fishing")),
        ("/history", History(None)),
        ("/history 5", History(5)),
        ("/hello abc123", Hello("abc123")),
    ],
)
def test_every_command_parses_to_its_value(line: str, command: Command) -> None:
    """Each command of PROTOCOL.md maps to its command value and arguments."""
    assert parse_line(line) == command


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/NICK Bob", SetNick("Bob")),
        ("/Join #Dev", Join("#Dev")),
        ("/ROOMS", ListRooms()),
        ("/MSG bob Hi", Msg("bob", "Hi")),
        ("/Quit BYE", Quit("BYE")),
        ("/HELP NICK", Help("nick")),
    ],
)
def test_command_names_are_case_insensitive(line: str, command: Command) -> None:
    """Command names match in any case; arguments keep theirs."""
    assert parse_line(line) == command


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/list", ListRooms()),
        ("/LIST", ListRooms()),
        ("/leave #dev", Part("#dev")),
        ("/names #dev", Who("#dev")),
        ("/query bob hi", Msg("bob", "hi")),
        ("/tell bob hi", Msg("bob", "hi")),
        ("/exit", Quit(None)),
        ("/bye now", Quit("now")),
    ],
)
def test_aliases_map_to_the_same_command(line: str, command: Command) -> None:
    """``/list`` is ``/rooms``, and the IRC-ish aliases do what users expect."""
    assert parse_line(line) == command


def test_help_topic_may_carry_a_slash() -> None:
    """``/help /nick`` explains ``/nick``, as users often type it that way."""
    assert parse_line("/help /Nick") == Help("nick")


def test_extra_spaces_between_arguments_are_ignored() -> None:
    """Runs of spaces between the command, target and text do not matter."""
    assert parse_line("/msg   bob    hi") == Msg("bob", "hi")


@pytest.mark.parametrize(
    ("line", "usage"),
    [
        ("/nick", "/nick NAME"),
        ("/join", "/join ROOM"),
        ("/msg", "/msg NICK text"),
        ("/msg bob", "/msg NICK text"),
        ("/me", "/me text"),
    ],
)
def test_missing_arguments_give_a_usage_error(line: str, usage: str) -> None:
    """A command without its required arguments raises BadUsage showing the usage."""
    with pytest.raises(BadUsage) as raised:
        parse_line(line)
    assert raised.value.code == "usage"
    assert raised.value.text.startswith(usage + " (")
    assert "/help " in raised.value.text


@pytest.mark.parametrize("line", ["/nick", "/msg bob", "/history x", "/history 0"])
def test_usage_errors_do_not_say_usage_twice(line: str) -> None:
    """``! usage: Usage: ...`` repeated itself; the text now starts with the usage."""
    with pytest.raises(BadUsage) as raised:
        parse_line(line)
    assert not raised.value.text.lower().startswith("usage")
    assert "Usage:" not in str(raised.value)


@pytest.mark.parametrize("line", ["/history 0", "/history 000"])
def test_history_zero_is_a_usage_error_naming_the_range(line: str) -> None:
    """``/history 0`` used to replay the default; it is refused with the range."""
    with pytest.raises(BadUsage) as raised:
        parse_line(line)
    assert "1 to 200" in raised.value.text


def test_history_count_may_have_leading_zeros() -> None:
    """``/history 007`` is seven."""
    assert parse_line("/history 007") == History(7)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/rooms dev", ListRooms("dev")),
        ("/list #dev", ListRooms("#dev")),
        ("/rooms " + "x" * 500, ListRooms("x" * 33)),
    ],
)
def test_rooms_takes_a_pattern(line: str, command: Command) -> None:
    """``/rooms PATTERN`` (alias ``/list``) searches; the pattern is cut short."""
    assert parse_line(line) == command


@pytest.mark.parametrize(
    "line",
    [
        "/nick two words",
        "/join #a #b",
        "/history x",
        "/history \uff15",  # full-width 5: a digit, but not an ASCII one
    ],
)
def test_extra_or_malformed_arguments_give_a_usage_error(line: str) -> None:
    """A nick with a space, two rooms at once, or a non-ASCII-number N is refused."""
    with pytest.raises(BadUsage):
        parse_line(line)


def test_unknown_command_is_refused_with_a_hint() -> None:
    """An unknown ``/word`` raises UnknownCommand pointing at /help and //."""
    with pytest.raises(UnknownCommand) as raised:
        parse_line("/frobnicate now")
    assert raised.value.code == "unknown-command"
    assert "/frobnicate" in raised.value.text
    assert "/help" in raised.value.text
    assert "//" in raised.value.text


def test_unknown_command_name_is_cut_in_the_reply() -> None:
    """A huge unknown command name is not echoed back whole."""
    with pytest.raises(UnknownCommand) as raised:
        parse_line("/" + "x" * 500)
    assert "x" * 33 not in raised.value.text
    assert "…" in raised.value.text


@pytest.mark.parametrize("name", list(HELP))
def test_every_help_entry_is_a_command(name: str) -> None:
    """Each command ``/help`` lists is one ``parse_line`` knows."""
    # BadUsage is fine: the command exists, "arg" is just the wrong shape.
    with contextlib.suppress(BadUsage):
        parse_line(f"/{name} arg")


def test_history_count_is_capped_in_digits() -> None:
    """A huge ``/history`` count is cut to at most six digits, not parsed whole."""
    assert parse_line("/history " + "9" * 4000) == History(999_999)


@pytest.mark.parametrize("name", list(HELP))
def test_every_command_has_real_help(name: str) -> None:
    """``/help CMD`` is more than the summary: details and an example."""
    from twisted_chat.core.help import explain

    reply = [line.decode() for line in explain(name)]
    assert len(reply) >= 3
    assert reply[0].startswith("* /" + name)
    assert any("Example: /" in line for line in reply)
    assert all(len(line.encode()) < 1200 for line in reply)  # one UDP datagram


@pytest.mark.parametrize("alias", list(ALIASES))
def test_every_alias_parses_and_has_help(alias: str) -> None:
    """Each alias ``/help`` knows is one ``parse_line`` knows, and vice versa."""
    from twisted_chat.core.help import explain

    with contextlib.suppress(BadUsage):
        parse_line(f"/{alias} arg")
    assert explain(alias)[0].decode().startswith(f"* /{alias} is an alias of /")
