# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""The grammar of the room moderation commands, and its switch."""

from __future__ import annotations

import contextlib

import attrs
import pytest

from twisted_chat.core import account_commands, commands, room_commands
from twisted_chat.core import help as helptext
from twisted_chat.core.commands import Join, parse_line
from twisted_chat.core.errors import BadUsage
from twisted_chat.core.room_commands import (
    MODERATION_COMMANDS,
    Ban,
    Bans,
    Deop,
    Devoice,
    Invite,
    Kick,
    ModerationCommand,
    Mute,
    Op,
    RoomDrop,
    RoomFlag,
    RoomKey,
    RoomLimit,
    RoomRegister,
    RoomShow,
    Unban,
    Unmute,
    Voice,
)
from twisted_chat.testing import make_chat

NAMES = [name for name in room_commands.HELP if name != "join"]
WORDS = NAMES + list(room_commands.ALIASES)


@pytest.fixture
def enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands as they will be once the core acts on them."""
    monkeypatch.setattr(room_commands, "ENABLED", True)


def usage_error(line: str) -> str:
    """The text of the usage error ``line`` gets."""
    with pytest.raises(BadUsage) as raised:
        parse_line(line)
    assert raised.value.code == "usage"
    return raised.value.text


PARSES: list[tuple[str, ModerationCommand]] = [
    ("/op bob", Op("bob")),
    ("/deop  bob ", Deop("bob")),
    ("/voice bob", Voice("bob")),
    ("/devoice bob", Devoice("bob")),
    ("/kick bob", Kick("bob", "")),
    ("/kick bob  calm down ", Kick("bob", "calm down")),
    ("/ban bob", Ban("bob", None, "")),
    ("/ban bob 30m", Ban("bob", 1800, "")),
    ("/ban bob 1h30m flooding the room", Ban("bob", 5400, "flooding the room")),
    ("/ban bob flooding", Ban("bob", None, "flooding")),
    ("/ban account:Bob 7d", Ban("account:Bob", 7 * 86_400, "")),
    ("/ban 203.0.113.7", Ban("203.0.113.7", None, "")),
    ("/ban 203.0.113.0/24 12H spam", Ban("203.0.113.0/24", 12 * 3600, "spam")),
    ("/ban 2001:db8::/48", Ban("2001:db8::/48", None, "")),
    ("/unban account:bob", Unban("account:bob")),
    ("/unban 203.0.113.0/24", Unban("203.0.113.0/24")),
    ("/bans", Bans()),
    ("/mute bob", Mute("bob", None)),
    ("/mute bob 2s", Mute("bob", 2)),
    ("/unmute bob", Unmute("bob")),
    ("/invite carol", Invite("carol")),
    ("/room", RoomShow()),
    ("/room moderated on", RoomFlag("moderated", on=True)),
    ("/room moderated off", RoomFlag("moderated", on=False)),
    ("/room invite-only ON", RoomFlag("invite-only", on=True)),
    ("/room topic-lock Off", RoomFlag("topic-lock", on=False)),
    ("/room limit 1", RoomLimit(1)),
    ("/room limit 10000", RoomLimit(10_000)),
    ("/room limit 007", RoomLimit(7)),
    ("/room limit off", RoomLimit(None)),
    ("/room key blue-door", RoomKey("blue-door")),
    ("/room key " + "k" * 32, RoomKey("k" * 32)),
    ("/room key OFF", RoomKey(None)),
    ("/room register", RoomRegister()),
    ("/room drop", RoomDrop()),
    # Command words and settings in any case; arguments keep theirs.
    ("/OP Bob", Op("Bob")),
    ("/Room Moderated on", RoomFlag("moderated", on=True)),
    ("/ROOM KEY Blue", RoomKey("Blue")),
]


@pytest.mark.usefixtures("enabled")
@pytest.mark.parametrize(("line", "command"), PARSES)
def test_every_command_parses_to_its_value(
    line: str, command: ModerationCommand
) -> None:
    """Each moderation command of PROTOCOL.md maps to its value and arguments."""
    parsed = parse_line(line)
    assert parsed == command
    assert isinstance(parsed, MODERATION_COMMANDS)


@pytest.mark.usefixtures("enabled")
@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/quiet bob 10m", Mute("bob", 600)),
        ("/unquiet bob", Unmute("bob")),
        ("/banlist", Bans()),
    ],
)
def test_aliases_are_the_irc_spellings(line: str, command: ModerationCommand) -> None:
    """``/quiet`` is ``/mute`` as IRC networks call it; ``/banlist`` is ``/bans``."""
    assert parse_line(line) == command


@pytest.mark.usefixtures("enabled")
@pytest.mark.parametrize(
    ("line", "usage"),
    [
        ("/op", "/op NICK ("),
        ("/op bob carol", "/op NICK ("),
        ("/deop", "/deop NICK ("),
        ("/voice", "/voice NICK ("),
        ("/devoice a b", "/devoice NICK ("),
        ("/kick", "/kick NICK [reason] ("),
        ("/kick #dev bob", "/kick works in your current room"),
        ("/ban", "/ban PATTERN [DURATION] [reason] ("),
        ("/ban #dev", "/ban works in your current room"),
        ("/ban bob 0s", "DURATION is"),
        ("/ban bob 400d", "DURATION is"),
        ("/unban", "/unban PATTERN ("),
        ("/unban a b", "/unban PATTERN ("),
        ("/bans #dev", "/bans lists the current room's bans."),
        ("/mute", "/mute NICK [DURATION] ("),
        ("/mute bob forever", "DURATION is"),
        ("/mute bob 10m stop it", "/mute NICK [DURATION] ("),
        ("/mute bob 0m", "DURATION is"),
        ("/unmute", "/unmute NICK ("),
        ("/invite", "/invite NICK ("),
        ("/invite bob #dev", "/invite NICK ("),
        ("/room bogus", "The settings are moderated, invite-only, topic-lock,"),
        ("/room moderated", "/room moderated on|off;"),
        ("/room moderated maybe", "/room moderated on|off;"),
        ("/room invite-only on off", "/room invite-only on|off;"),
        ("/room topic-lock yes", "/room topic-lock on|off;"),
        ("/room limit", "/room limit N|off, where N is 1 to 10000;"),
        ("/room limit 0", "/room limit N|off"),
        ("/room limit 10001", "/room limit N|off"),
        ("/room limit -1", "/room limit N|off"),
        ("/room limit 12 13", "/room limit N|off"),
        ("/room limit \uff15", "/room limit N|off"),  # a digit, not an ASCII one
        ("/room limit " + "9" * 4000, "/room limit N|off"),
        ("/room key", "/room key KEY|off, where KEY is one word"),
        ("/room register now", "/room register;"),
        ("/room drop it", "/room drop;"),
    ],
)
def test_usage_errors_quote_the_usage(line: str, usage: str) -> None:
    """A wrong shape is ``! usage:`` with the usage (or why, then the usage)."""
    text = usage_error(line)
    assert usage in text
    assert "/help " in text
    assert not text.lower().startswith("usage")


@pytest.mark.usefixtures("enabled")
@pytest.mark.parametrize(
    "line",
    [
        "/op zebra quagga",
        "/kick #zebra quagga",
        "/ban #zebra 1d quagga",
        "/ban bob 0s zebra",
        "/bans zebra",
        "/mute bob zebra",
        "/mute bob 1d zebra",
        "/unmute zebra quagga",
        "/invite zebra quagga",
        "/room zebra",
        "/room moderated zebra",
        "/room limit zebra",
        "/room register zebra",
        "/room key zebra quagga",
        "/room key #zebra",
        "/room key " + "zebra" * 7,
        "/join #a zebra quagga",
        "/join #a #zebra",
        "/join #a " + "zebra" * 7,
    ],
)
def test_usage_errors_never_repeat_what_was_typed(line: str) -> None:
    """A key, a reason or a stray word is never sent back in the error."""
    text = usage_error(line)
    assert "zebra" not in text
    assert "quagga" not in text


@pytest.mark.parametrize("on", [False, True])
def test_join_takes_a_key(monkeypatch: pytest.MonkeyPatch, *, on: bool) -> None:
    """``/join ROOM KEY`` carries the key, with the moderation switch or without."""
    monkeypatch.setattr(room_commands, "ENABLED", on)
    assert parse_line("/join #staff blue-door") == Join("#staff", "blue-door")
    assert parse_line("/join  #staff   Blue ") == Join("#staff", "Blue")
    assert parse_line("/join #staff " + "k" * 32) == Join("#staff", "k" * 32)
    assert parse_line("/join #staff") == Join("#staff")


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("/join #a #b", "Join one room at a time: /join ROOM [KEY]."),
        ("/join #a key extra", "Join one room at a time: /join ROOM [KEY]."),
        ("/join #a key\textra", "Join one room at a time: /join ROOM [KEY]."),
        ("/join #a " + "k" * 33, "A room key is one word of at most 32 characters;"),
    ],
)
def test_join_refuses_two_rooms_and_long_keys(line: str, text: str) -> None:
    """A second room is still refused (a key never starts with #), as is a long key."""
    assert usage_error(line).startswith(text)


def test_a_key_is_never_in_a_repr() -> None:
    """A room key does not reach a log line or a traceback that formats the value."""
    assert "blue-door" not in repr(RoomKey("blue-door"))
    assert "<hidden>" in repr(RoomKey("blue-door"))
    assert repr(RoomKey(None)) == "RoomKey(key=None)"
    assert "blue-door" not in repr(Join("#staff", "blue-door"))
    assert repr(Join("#staff")) == "Join(room='#staff', key=None)"


def test_command_values_are_frozen() -> None:
    """Values, not objects to change on the way to the core."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Kick("bob", "").reason = "x"  # type: ignore[misc]


def test_every_value_is_in_the_dispatch_tuple_and_no_other() -> None:
    """MODERATION_COMMANDS holds each value once, none of the other modules' ones."""
    assert len(set(MODERATION_COMMANDS)) == len(MODERATION_COMMANDS) == 17
    assert {type(command) for _, command in PARSES} == set(MODERATION_COMMANDS)
    others = (*account_commands.ACCOUNT_COMMANDS, *account_commands.OPERATOR_COMMANDS)
    assert not set(others) & set(MODERATION_COMMANDS)
    assert not {commands.Join, commands.Topic} & set(MODERATION_COMMANDS)


def test_names_do_not_collide_with_other_commands() -> None:
    """A word the other grammars know would shadow a moderation command."""
    taken = {
        *commands.HELP,
        *commands.ALIASES,
        *account_commands.ACCOUNT_HELP,
        *account_commands.OPERATOR_HELP,
        *account_commands.ALIASES,
        "hello",
    }
    assert not taken & set(WORDS)
    assert set(room_commands.ALIASES.values()) <= set(NAMES)
    assert set(room_commands.DETAILS) == set(room_commands.HELP)


# -- the switch ------------------------------------------------------------------


@pytest.mark.parametrize("word", WORDS)
def test_the_commands_are_switched_on(word: str) -> None:
    """The core acts on them now: /op and the rest parse and have help."""
    assert room_commands.ENABLED is True
    with contextlib.suppress(BadUsage):
        assert isinstance(parse_line(f"/{word} bob"), MODERATION_COMMANDS)
    assert helptext.explain(word)


def test_the_chat_dispatches_the_commands() -> None:
    """/op and /room reach the room's moderation, not ``unknown-command``."""
    chat = make_chat()
    client, participant = chat.connect("Alice")
    chat.server.receive(participant, "/join #dev")
    chat.connect("Bob")  # connected, not in #dev
    client.clear()
    chat.server.receive(participant, "/op Bob")
    chat.server.receive(participant, "/room moderated on")
    [op, room] = client.lines()
    assert op == "! not-in-room: Bob is not in #dev."
    assert room == "* Alice turned moderated on in #dev"


def test_help_lists_them_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``/help`` has one line per moderation command, /join with its key in place."""
    reply = [line.decode().rstrip() for line in helptext.overview()]
    monkeypatch.setattr(room_commands, "ENABLED", False)
    before = [line.decode().rstrip() for line in helptext.overview()]
    for usage, what in room_commands.HELP.values():
        assert sum(line.startswith(f"* {usage}: {what}") for line in reply) == 1
    assert not any(line.startswith("* /join ROOM: ") for line in reply)
    [join] = [i for i, line in enumerate(reply) if line.startswith("* /join ")]
    assert reply[join].startswith("* /join ROOM [KEY]: ")
    assert before[join].startswith("* /join ROOM: ")
    assert len(reply) == len(before) + len(NAMES)
    [mute] = [line for line in reply if line.startswith("* /mute ")]
    assert "(alias /quiet)" in mute


@pytest.mark.usefixtures("enabled")
@pytest.mark.parametrize("name", list(room_commands.HELP))
def test_switched_on_every_command_has_real_help(name: str) -> None:
    """``/help CMD``: the summary, details, an example, each line one datagram."""
    reply = [line.decode().rstrip() for line in helptext.explain(name)]
    assert len(reply) >= 3
    assert reply[0].startswith(f"* /{name}")
    assert any("Example" in line and f": /{name}" in line for line in reply)
    assert all(len(line.encode()) < 1200 for line in reply)


@pytest.mark.usefixtures("enabled")
@pytest.mark.parametrize("alias", list(room_commands.ALIASES))
def test_switched_on_aliases_have_help(alias: str) -> None:
    """``/help quiet`` says it is /mute and explains /mute."""
    reply = [line.decode().rstrip() for line in helptext.explain(alias)]
    assert reply[0] == f"* /{alias} is an alias of /{room_commands.ALIASES[alias]}."


@pytest.mark.usefixtures("enabled")
@pytest.mark.parametrize("word", WORDS)
def test_switched_on_every_word_parses(word: str) -> None:
    """Each word ``/help`` lists is one ``parse_line`` knows."""
    with contextlib.suppress(BadUsage):
        assert isinstance(parse_line(f"/{word} arg"), MODERATION_COMMANDS)
