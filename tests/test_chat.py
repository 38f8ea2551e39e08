# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""The chat rules (PROTOCOL.md) against ``ChatServer`` with recording clients."""

from __future__ import annotations

import re

import pytest
from attrs import define
from twisted.logger import LogEvent

from twisted_chat.core.bounds import MAX_ROOMS_PER_USER
from twisted_chat.core.chat import ChatServer, Participant
from twisted_chat.core.names import name_key
from twisted_chat.core.settings import Settings
from twisted_chat.testing import ChatHarness, RecordingClient, make_chat


def wide(text: str) -> str:
    """The full-width form of ASCII ``text`` (``A`` becomes U+FF21)."""
    return "".join(chr(ord(char) + 0xFEE0) for char in text)


@pytest.fixture
def chat() -> ChatHarness:
    """A server with PROTOCOL.md's defaults (default room ``#lobby``)."""
    return make_chat()


def said(chat: ChatHarness, participant: Participant, line: str) -> None:
    """Feed one line from ``participant`` to the server."""
    chat.server.receive(participant, line)


@define(eq=False)
class BrokenClient(RecordingClient):
    """A client whose ``send`` fails once ``broken``, like a transport with a bug."""

    broken: bool = False

    def send(self, data: bytes) -> None:
        if self.broken:
            raise RuntimeError("transport exploded")
        super().send(data)


def failures(events: list[LogEvent]) -> list[LogEvent]:
    """The events that carry a traceback (``log.failure``)."""
    return [event for event in events if "log_failure" in event]


# -- connecting ---------------------------------------------------------------


def test_connect_welcomes_with_a_guest_nick_and_joins_the_default_room(
    chat: ChatHarness,
) -> None:
    """A new client gets a welcome naming its guest nick, then joins #lobby."""
    client = RecordingClient()
    participant = chat.server.connect(client)
    nick = participant.nick.display
    assert re.fullmatch(r"guest\d+", nick)
    welcome, joined = client.lines()
    assert welcome.startswith(f"* Welcome to twisted-chat, {nick}!")
    assert "/nick" in welcome
    assert "/help" in welcome
    assert joined == "* You joined #lobby; nobody else is here yet."
    assert participant.current is chat.server.rooms["#lobby"]


def test_guest_numbers_skip_nicks_already_taken(chat: ChatHarness) -> None:
    """A guest never gets a name somebody chose, even a guestN one."""
    _, first = chat.connect()
    said(chat, first, "/nick guest2")
    _, second = chat.connect()
    assert second.nick.display not in {"guest1", "guest2"}
    assert re.fullmatch(r"guest\d+", second.nick.display)


def test_empty_default_room_means_no_room() -> None:
    """With ``default_room=""`` a new client is in no room."""
    chat = make_chat(Settings(default_room=""))
    client = RecordingClient()
    participant = chat.server.connect(client)
    assert participant.current is None
    assert chat.server.rooms == {}
    assert len(client.lines()) == 1


def test_text_with_no_room_says_to_join_one() -> None:
    """Plain text outside any room gets a ``! no-room`` error mentioning /join."""
    chat = make_chat(Settings(default_room=""))
    client, participant = chat.connect()
    said(chat, participant, "hello?")
    [line] = client.lines()
    assert line.startswith("! no-room: ")
    assert "/join" in line


def test_motd_lines_follow_the_welcome() -> None:
    """Each MOTD line is a notice, after the welcome and before the join."""
    chat = make_chat(Settings(motd=("Be nice.", "Rules: see /help")))
    client = RecordingClient()
    chat.server.connect(client)
    assert client.lines()[1:3] == ["* Be nice.", "* Rules: see /help"]
    assert client.lines()[3].startswith("* You joined #lobby")


def test_others_see_a_join_but_the_joiner_does_not(chat: ChatHarness) -> None:
    """Members get ``* NICK joined #room``; the joiner gets its own summary."""
    alice, _ = chat.connect("Alice")
    bob = RecordingClient()
    bob_p = chat.server.connect(bob)
    assert alice.lines() == [f"* {bob_p.nick.display} joined #lobby"]
    assert f"* {bob_p.nick.display} joined #lobby" not in bob.lines()
    assert bob.lines()[-1] == (
        "* You joined #lobby; 1 other person here (/who lists them)."
    )


# -- join and part ------------------------------------------------------------


def test_join_creates_the_room_and_makes_it_current(chat: ChatHarness) -> None:
    """``/join dev`` creates ``#dev`` (the '#' is optional) and switches to it."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/join dev")
    assert alice.lines() == ["* You joined #dev; nobody else is here yet."]
    assert alice_p.current is chat.server.rooms["#dev"]
    assert list(alice_p.rooms) == ["#lobby", "#dev"]


def test_join_an_existing_room_tells_its_members(chat: ChatHarness) -> None:
    """Members of the joined room hear of it; members elsewhere do not."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    said(chat, alice_p, "/join #dev")
    carol, carol_p = chat.connect("Carol")
    chat.clear_all()
    said(chat, carol_p, "/join #dev")
    assert alice.lines() == ["* Carol joined #dev"]
    assert bob.lines() == []
    assert carol.lines() == [
        "* You joined #dev; 1 other person here (/who lists them)."
    ]


def test_rejoin_switches_the_current_room_quietly(chat: ChatHarness) -> None:
    """Joining a room you are in makes it current and tells nobody else."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    said(chat, alice_p, "/join #dev")
    chat.clear_all()
    said(chat, alice_p, "/join #LOBBY")
    assert alice.lines() == ["* #lobby is now your current room."]
    assert bob.lines() == []
    assert alice_p.current is chat.server.rooms["#lobby"]


def test_room_keeps_the_spelling_it_was_created_with(chat: ChatHarness) -> None:
    """``#Dev`` then ``/join #DEV`` puts you in ``#Dev``, and every line says so."""
    alice, alice_p = chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    said(chat, alice_p, "/join #Dev")
    chat.clear_all()
    said(chat, bob_p, "/join #DEV")
    assert alice.lines() == ["* Bob joined #Dev"]
    assert bob.lines()[0].startswith("* You joined #Dev;")
    said(chat, bob_p, "hi")
    assert alice.lines()[-1] == "[#Dev] <Bob> hi"


def test_join_with_an_invalid_room_name_is_refused(chat: ChatHarness) -> None:
    """A bad room name gets an ``! invalid-name`` error and no room."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/join #no!pe")
    [line] = alice.lines()
    assert line.startswith("! invalid-name: ")
    assert list(chat.server.rooms) == ["#lobby"]


def test_part_tells_the_room_and_the_leaver(chat: ChatHarness) -> None:
    """``/part`` leaves the current room: others see it, the leaver is told where."""
    alice, alice_p = chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    said(chat, alice_p, "/join #dev")
    said(chat, bob_p, "/join #dev")
    chat.clear_all()
    said(chat, alice_p, "/part")
    # Alice made #dev, so Bob is its operator now (room moderation).
    assert bob.lines() == [
        "* Alice left #dev",
    ]
    assert alice.lines() == ["* You left #dev; your current room is now #lobby."]
    assert "#dev" not in alice_p.rooms


def test_part_with_a_reason_shows_it(chat: ChatHarness) -> None:
    """``/part #dev see you`` shows ``(see you)`` to those who stay."""
    _, alice_p = chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    said(chat, alice_p, "/join #dev")
    said(chat, bob_p, "/join #dev")
    said(chat, alice_p, "/join #lobby")
    chat.clear_all()
    said(chat, alice_p, "/part #dev see you")
    assert bob.lines() == [
        "* Alice left #dev (see you)",
    ]


def test_part_with_text_that_is_not_a_room_is_a_reason(chat: ChatHarness) -> None:
    """``/part bye all`` leaves the current room with reason ``bye all``."""
    _, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    chat.clear_all()
    said(chat, alice_p, "/part bye all")
    assert bob.lines() == [
        "* Alice left #lobby (bye all)",
    ]
    assert alice_p.current is None


def test_part_a_room_named_without_hash(chat: ChatHarness) -> None:
    """``/part dev`` leaves ``#dev`` when you are in it, not the current room."""
    _, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/join #dev")
    said(chat, alice_p, "/join #lobby")
    said(chat, alice_p, "/part dev")
    assert list(alice_p.rooms) == ["#lobby"]


def test_part_a_room_you_are_not_in_is_an_error(chat: ChatHarness) -> None:
    """``/part #notin`` gets ``! not-in-room`` and changes nothing."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/part #notin")
    assert alice.lines() == ["! not-in-room: You are not in #notin."]
    assert list(alice_p.rooms) == ["#lobby"]


def test_part_with_no_room_is_an_error() -> None:
    """``/part`` outside any room gets ``! no-room``."""
    chat = make_chat(Settings(default_room=""))
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/part")
    [line] = alice.lines()
    assert line.startswith("! no-room: ")


def test_part_current_room_falls_back_to_most_recently_joined(
    chat: ChatHarness,
) -> None:
    """After leaving the current room, the newest room still joined is current."""
    alice, alice_p = chat.connect("Alice")
    for room in ["#a", "#b", "#c"]:
        said(chat, alice_p, f"/join {room}")
    said(chat, alice_p, "/join #a")
    said(chat, alice_p, "/part")
    assert alice_p.current is chat.server.rooms["#c"]
    said(chat, alice_p, "/part")
    assert alice_p.current is chat.server.rooms["#b"]
    assert alice.lines()[-1] == "* You left #c; your current room is now #b."


def test_part_another_room_keeps_the_current_one(chat: ChatHarness) -> None:
    """Leaving a room that is not current does not move you."""
    _, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/join #dev")
    said(chat, alice_p, "/part #lobby")
    assert alice_p.current is chat.server.rooms["#dev"]


def test_part_last_room_leaves_you_in_none(chat: ChatHarness) -> None:
    """Leaving your only room says you are in no room now and how to join."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/part")
    assert alice.lines() == [
        "* You left #lobby; you are in no room now; /join one to chat."
    ]
    assert alice_p.current is None


def test_room_is_removed_when_its_last_member_leaves(chat: ChatHarness) -> None:
    """An empty room is gone: ``/who`` does not find it, and a rejoin recreates it."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/join #Dev")
    said(chat, alice_p, "/part")
    assert "#dev" not in chat.server.rooms
    alice.clear()
    said(chat, alice_p, "/who #dev")
    assert alice.lines()[0].startswith("! no-such-room: ")
    said(chat, alice_p, "/join #DEV")
    assert alice_p.current is not None
    assert alice_p.current.name.display == "#DEV"


def test_max_rooms_per_user_is_enforced() -> None:
    """Past MAX_ROOMS_PER_USER a join is refused; rooms you are in still switch."""
    chat = make_chat(Settings(default_room=""))
    alice, alice_p = chat.connect("Alice")
    for number in range(MAX_ROOMS_PER_USER):
        said(chat, alice_p, f"/join #r{number}")
    alice.clear()
    said(chat, alice_p, "/join #onemore")
    [line] = alice.lines()
    assert line.startswith("! ")
    assert str(MAX_ROOMS_PER_USER) in line
    assert name_key("#onemore") not in chat.server.rooms
    said(chat, alice_p, "/join #r0")
    assert alice_p.current is chat.server.rooms[name_key("#r0")]


# -- rooms and who ------------------------------------------------------------


def test_rooms_lists_member_counts_and_topics(chat: ChatHarness) -> None:
    """``/rooms`` (and ``/list``) give a count line, then the busiest rooms first."""
    alice, alice_p = chat.connect("Alice")
    _, bob_p = chat.connect("Bob")
    said(chat, bob_p, "/join #Dev")
    said(chat, bob_p, "/topic Rust talk")
    alice.clear()
    said(chat, alice_p, "/rooms")
    expected = ["* 2 rooms:", "* #lobby (2 people)", "* #Dev (1 person): Rust talk"]
    assert alice.lines() == expected
    alice.clear()
    said(chat, alice_p, "/list")
    assert alice.lines() == expected


def test_who_lists_the_current_room(chat: ChatHarness) -> None:
    """``/who`` names everybody in the current room, sorted."""
    alice, alice_p = chat.connect("Alice")
    chat.connect("Carol")
    chat.connect("Bob")
    alice.clear()
    said(chat, alice_p, "/who")
    # Alice made #lobby: she is its operator (room moderation).
    assert alice.lines() == ["* 3 people in #lobby:", "* @Alice, Bob, Carol"]


def test_who_lists_another_room(chat: ChatHarness) -> None:
    """``/who #dev`` works for a room you are not in."""
    alice, alice_p = chat.connect("Alice")
    _, bob_p = chat.connect("Bob")
    said(chat, bob_p, "/join #dev")
    alice.clear()
    said(chat, alice_p, "/who dev")
    assert alice.lines() == ["* 1 person in #dev:", "* @Bob"]


def test_who_of_a_missing_room_is_an_error(chat: ChatHarness) -> None:
    """``/who #nope`` gets ``! no-such-room`` pointing at /rooms."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/who #nope")
    [line] = alice.lines()
    assert line.startswith("! no-such-room: ")
    assert "/rooms" in line


def test_who_with_no_room_is_an_error() -> None:
    """``/who`` outside any room gets ``! no-room``."""
    chat = make_chat(Settings(default_room=""))
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/who")
    assert alice.lines()[0].startswith("! no-room: ")


# -- messages -----------------------------------------------------------------


def test_room_message_shape_and_no_echo(chat: ChatHarness) -> None:
    """Plain text reaches others as ``[#room] <nick> text``, not the sender."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    alice.clear()
    said(chat, alice_p, "hello 小明")
    assert bob.lines() == ["[#lobby] <Alice> hello 小明"]
    assert alice.lines() == []


def test_double_slash_sends_a_literal_slash(chat: ChatHarness) -> None:
    """``//shrug`` is said as ``/shrug``."""
    _, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    said(chat, alice_p, "//shrug")
    assert bob.lines() == ["[#lobby] <Alice> /shrug"]


def test_room_message_is_one_bytes_object_for_everybody(chat: ChatHarness) -> None:
    """A room message is encoded once; every member gets the very same bytes."""
    clients = [chat.connect(f"User{number}")[0] for number in range(4)]
    _, speaker = chat.connect("Speaker")
    chat.clear_all()
    said(chat, speaker, "hot path")
    said(chat, speaker, "/me runs")
    for index in (0, 1):
        first = clients[0].sent[index]
        assert all(client.sent[index] is first for client in clients)


def test_messages_go_to_the_current_room_only(chat: ChatHarness) -> None:
    """Text goes to the current room, not to the other rooms you are in."""
    _, alice_p = chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    said(chat, alice_p, "/join #dev")
    said(chat, bob_p, "/join #other")
    bob.clear()
    said(chat, alice_p, "in dev")
    assert bob.lines() == []


def test_private_message_shape_and_no_echo(chat: ChatHarness) -> None:
    """``/msg bob hi`` reaches only Bob, as ``[PM] <Alice> hi``."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    carol, _ = chat.connect("Carol")
    chat.clear_all()
    said(chat, alice_p, "/msg bob hi there")
    assert bob.lines() == ["[PM] <Alice> hi there"]
    assert alice.lines() == []
    assert carol.lines() == []


def test_private_message_finds_full_width_nick(chat: ChatHarness) -> None:
    """``/msg`` to a full-width BOB reaches Bob: nicks are found by key."""
    _, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    bob.clear()
    said(chat, alice_p, f"/msg {wide('BOB')} psst")
    assert bob.lines() == ["[PM] <Alice> psst"]


def test_private_message_to_unknown_nick_is_an_error(chat: ChatHarness) -> None:
    """``/msg nobody hi`` gets ``! no-such-nick``."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/msg nobody hi")
    [line] = alice.lines()
    assert line.startswith("! no-such-nick: ")
    assert "nobody" in line


def test_msg_to_a_room_you_are_in_does_not_switch(chat: ChatHarness) -> None:
    """``/msg #dev text`` speaks in #dev and leaves the current room alone."""
    alice, alice_p = chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    said(chat, alice_p, "/join #dev")
    said(chat, bob_p, "/join #dev")
    said(chat, alice_p, "/join #lobby")
    chat.clear_all()
    said(chat, alice_p, "/msg #DEV over here")
    assert bob.lines() == ["[#dev] <Alice> over here"]
    assert alice.lines() == []
    assert alice_p.current is chat.server.rooms["#lobby"]


def test_msg_to_a_room_you_are_not_in_is_an_error(chat: ChatHarness) -> None:
    """``/msg #dev text`` without being in #dev gets ``! not-in-room``."""
    alice, alice_p = chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    said(chat, bob_p, "/join #dev")
    chat.clear_all()
    said(chat, alice_p, "/msg #dev sneaky")
    assert alice.lines() == ["! not-in-room: You are not in #dev; /join #dev first."]
    assert bob.lines() == []


def test_me_action_shape_and_no_echo(chat: ChatHarness) -> None:
    """``/me waves`` reaches others as ``[#room] * nick waves``."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    alice.clear()
    said(chat, alice_p, "/me waves")
    assert bob.lines() == ["[#lobby] * Alice waves"]
    assert alice.lines() == []


def test_me_with_no_room_is_an_error() -> None:
    """``/me`` outside any room gets ``! no-room``."""
    chat = make_chat(Settings(default_room=""))
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/me waves")
    assert alice.lines()[0].startswith("! no-room: ")


# -- topic, ping, help --------------------------------------------------------


def test_topic_unset_says_how_to_set_one(chat: ChatHarness) -> None:
    """``/topic`` in a room with no topic says so and how to set one."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/topic")
    assert alice.lines() == ["* #lobby has no topic; set one with /topic TEXT."]


def test_topic_set_is_seen_by_everyone_in_the_room(chat: ChatHarness) -> None:
    """Setting the topic tells every member, the setter too, and it is kept."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    chat.clear_all()
    chat.clock.advance(42)
    said(chat, alice_p, "/topic Release day")
    notice = "* Alice set the topic of #lobby to: Release day"
    assert alice.lines() == [notice]
    assert bob.lines() == [notice]
    room = chat.server.rooms["#lobby"]
    assert (room.topic, room.topic_by, room.topic_at) == ("Release day", "Alice", 42)
    alice.clear()
    said(chat, alice_p, "/topic")
    assert alice.lines() == ["* Topic of #lobby: Release day (set by Alice)"]


def test_joiner_is_shown_the_topic(chat: ChatHarness) -> None:
    """Joining a room with a topic shows it after the join summary."""
    _, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/topic Welcome all")
    bob = RecordingClient()
    chat.server.connect(bob)
    assert bob.lines()[-1] == "* Topic of #lobby: Welcome all"


def test_ping_answers_pong(chat: ChatHarness) -> None:
    """``/ping`` answers ``* pong``, to the sender only."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    chat.clear_all()
    said(chat, alice_p, "/PING")
    assert alice.lines() == ["* pong"]
    assert bob.lines() == []


def test_help_lists_every_command(chat: ChatHarness) -> None:
    """``/help`` lists each command of PROTOCOL.md with its usage."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/help")
    text = "\n".join(alice.lines())
    assert alice.lines()[0].startswith("* Commands")
    for usage in [
        "/nick NAME",
        "/join ROOM [KEY]",
        "/part [ROOM] [reason]",
        "/rooms [PATTERN]",
        "/who [ROOM]",
        "/msg NICK text",
        "/me text",
        "/topic [text]",
        "/ping",
        "/help [command]",
        "/quit [reason]",
    ]:
        assert f"* {usage}: " in text
    assert all(line.startswith("* ") for line in alice.lines())


def test_help_explains_one_command(chat: ChatHarness) -> None:
    """``/help nick``: the summary line, then arguments, limits and an example."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/help NICK")
    [summary, *details] = alice.lines()
    assert summary == "* /nick NAME: change your nickname"
    assert len(details) >= 2
    text = "\n".join(details)
    assert "24" in text
    assert "* " + "  Example: /nick " in text


@pytest.mark.parametrize(
    ("alias", "command"),
    [
        ("leave", "/part"),
        ("names", "/who"),
        ("query", "/msg"),
        ("tell", "/msg"),
        ("exit", "/quit"),
        ("bye", "/quit"),
        ("list", "/rooms"),
    ],
)
def test_help_explains_an_alias_as_its_command(
    chat: ChatHarness, alias: str, command: str
) -> None:
    """``/help leave`` says it is an alias of /part and gives /part's help."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, f"/help {alias}")
    reply = alice.lines()
    assert reply[0] == f"* /{alias} is an alias of {command}."
    assert reply[1].startswith(f"* {command}")
    assert any("Example:" in line for line in reply)


def test_help_lists_each_command_once_with_its_aliases(chat: ChatHarness) -> None:
    """``/help`` stays one line per command, naming the aliases that work."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/help")
    reply = alice.lines()
    assert sum(line.startswith("* /part ") for line in reply) == 1
    assert not any(line.startswith("* /leave") for line in reply)
    [part] = [line for line in reply if line.startswith("* /part ")]
    assert "/leave" in part
    [quit_line] = [line for line in reply if line.startswith("* /quit ")]
    assert "/exit" in quit_line
    assert "/bye" in quit_line


def test_help_for_an_unknown_command_is_an_error(chat: ChatHarness) -> None:
    """``/help bogus`` is an ``!`` error pointing back at /help."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/help bogus")
    [line] = alice.lines()
    assert line.startswith("! ")
    assert "/bogus" in line
    assert "/help" in line


def test_unknown_command_is_an_error(chat: ChatHarness) -> None:
    """``/frob`` gets ``! unknown-command`` and nobody else hears anything."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    chat.clear_all()
    said(chat, alice_p, "/frob x")
    [line] = alice.lines()
    assert line.startswith("! unknown-command: There is no command /frob;")
    assert bob.lines() == []


def test_missing_arguments_are_a_usage_error(chat: ChatHarness) -> None:
    """``/msg`` alone gets ``! usage`` with the command's usage."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/msg")
    [line] = alice.lines()
    assert line.startswith("! usage: ")
    assert "/msg NICK text" in line


def test_hello_over_an_established_session_is_an_error(chat: ChatHarness) -> None:
    """``/hello`` from somebody already in gets an ``!`` error, nothing else."""
    alice, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/hello token")
    [line] = alice.lines()
    assert line.startswith("! usage: ")


# -- quitting -----------------------------------------------------------------


def test_quit_tells_rooms_the_reason_and_closes(chat: ChatHarness) -> None:
    """``/quit reason``: others see ``* NICK quit (reason)``, the client closes."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    chat.clear_all()
    said(chat, alice_p, "/quit gone fishing")
    assert bob.lines() == [
        "* Alice quit (gone fishing)",
    ]
    assert alice.lines() == ["* Bye!"]
    assert alice.closed
    assert alice_p.gone
    assert [m.nick.display for m in chat.server.rooms["#lobby"].members] == ["Bob"]


def test_quit_without_reason_still_gives_one(chat: ChatHarness) -> None:
    """A bare ``/quit`` shows ``(leaving)`` to the room."""
    _, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    bob.clear()
    said(chat, alice_p, "/quit")
    assert bob.lines() == [
        "* Alice quit (leaving)",
    ]


def test_quit_frees_the_nick(chat: ChatHarness) -> None:
    """After Alice quits, somebody else may take ``alice``."""
    _, alice_p = chat.connect("Alice")
    said(chat, alice_p, "/quit")
    assert "alice" not in chat.server.participants
    _, other = chat.connect("alice")
    assert other.nick.display == "alice"


def test_quit_notice_reaches_each_neighbour_once(chat: ChatHarness) -> None:
    """Somebody sharing two rooms with the quitter hears the quit once."""
    _, alice_p = chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    said(chat, alice_p, "/join #dev")
    said(chat, bob_p, "/join #dev")
    bob.clear()
    said(chat, alice_p, "/quit")
    assert bob.lines() == [
        "* Alice quit (leaving)",
    ]


def test_quit_removes_rooms_left_empty(chat: ChatHarness) -> None:
    """Rooms only the quitter was in disappear."""
    _, alice_p = chat.connect("Alice")
    chat.connect("Bob")
    said(chat, alice_p, "/join #solo")
    said(chat, alice_p, "/quit")
    assert list(chat.server.rooms) == ["#lobby"]


def test_lost_connection_is_a_quit_with_a_reason(chat: ChatHarness) -> None:
    """``disconnect`` tells the rooms ``* NICK quit (connection lost)``."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    chat.clear_all()
    chat.server.disconnect(alice_p, "connection lost")
    assert bob.lines() == [
        "* Alice quit (connection lost)",
    ]
    assert alice.lines() == []
    assert "alice" not in chat.server.participants


def test_disconnect_twice_tells_the_room_once(chat: ChatHarness) -> None:
    """A quit followed by the transport's connection-lost is one quit."""
    _, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    bob.clear()
    said(chat, alice_p, "/quit bye")
    chat.server.disconnect(alice_p, "connection lost")
    assert bob.lines() == [
        "* Alice quit (bye)",
    ]


def test_lines_after_disconnect_are_ignored(chat: ChatHarness) -> None:
    """A line that arrives after the participant is gone does nothing."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    chat.server.disconnect(alice_p, "connection lost")
    chat.clear_all()
    said(chat, alice_p, "still here?")
    said(chat, alice_p, "/join #ghost")
    assert bob.lines() == []
    assert alice.lines() == []
    assert "#ghost" not in chat.server.rooms


def test_broadcast_notice_reaches_everybody(chat: ChatHarness) -> None:
    """A server-wide notice reaches people in no room too."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    said(chat, alice_p, "/part")
    chat.clear_all()
    chat.server.broadcast_notice("Server shutting down")
    assert alice.lines() == bob.lines() == ["* Server shutting down"]


def test_shut_down_tells_nobody_of_the_others_leaving(chat: ChatHarness) -> None:
    """After ``shut_down`` each client hears the notice and no quit lines."""
    alice, alice_p = chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    chat.clear_all()
    chat.server.shut_down("Server shutting down")
    chat.server.disconnect(alice_p, "connection lost")
    chat.server.disconnect(bob_p, "connection lost")
    assert alice.lines() == bob.lines() == ["* Server shutting down"]
    assert chat.server.participants == {}
    assert chat.server.rooms == {}


def test_connect_keeps_the_address_group(chat: ChatHarness) -> None:
    """The transport's address group is kept on the participant ("" by default)."""
    assert chat.server.connect(RecordingClient(), group="192.0.2.7").group == (
        "192.0.2.7"
    )
    assert chat.server.connect(RecordingClient()).group == ""


# -- nicknames ----------------------------------------------------------------


def test_nick_change_is_told_once_to_each_neighbour(chat: ChatHarness) -> None:
    """Bob shares two rooms with Alice and hears her rename once; Carol none."""
    alice, alice_p = chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    carol, carol_p = chat.connect("Carol")
    said(chat, alice_p, "/join #dev")
    said(chat, bob_p, "/join #dev")
    said(chat, carol_p, "/part")
    chat.clear_all()
    said(chat, alice_p, "/nick 小明")
    assert alice.lines() == ["* You are now known as 小明."]
    assert bob.lines() == ["* Alice is now known as 小明"]
    assert carol.lines() == []
    assert chat.server.participants["小明"] is alice_p
    assert "alice" not in chat.server.participants


def test_nick_in_use_is_refused_and_nick_unchanged(chat: ChatHarness) -> None:
    """``/nick ALICE`` while Alice is here gets ``! nick-in-use``."""
    chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    said(chat, bob_p, "/nick ALICE")
    [line] = bob.lines()
    assert line.startswith("! nick-in-use: ")
    assert bob_p.nick.display == "Bob"
    assert chat.server.participants["bob"] is bob_p


def test_full_width_nick_collides_with_ascii(chat: ChatHarness) -> None:
    """A full-width ALICE is taken when ``Alice`` is here."""
    chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    said(chat, bob_p, f"/nick {wide('ALICE')}")
    assert bob.lines()[0].startswith("! nick-in-use: ")
    assert bob_p.nick.display == "Bob"


def test_invalid_nick_is_refused_and_nick_unchanged(chat: ChatHarness) -> None:
    """``/nick 9lives`` gets ``! invalid-name``; the old nick stays."""
    bob, bob_p = chat.connect("Bob")
    said(chat, bob_p, "/nick 9lives")
    [line] = bob.lines()
    assert line.startswith("! invalid-name: ")
    assert bob_p.nick.display == "Bob"


def test_changing_the_case_of_your_own_nick_is_allowed(chat: ChatHarness) -> None:
    """Alice may become ALICE: the key is hers already."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    chat.clear_all()
    said(chat, alice_p, "/nick ALICE")
    assert alice.lines() == ["* You are now known as ALICE."]
    assert bob.lines() == ["* Alice is now known as ALICE"]
    assert chat.server.participants["alice"] is alice_p


def test_same_nick_again_is_a_no_op(chat: ChatHarness) -> None:
    """``/nick Alice`` as Alice says so and tells nobody."""
    alice, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    chat.clear_all()
    said(chat, alice_p, "/nick Alice")
    assert alice.lines() == ["* You are already Alice."]
    assert bob.lines() == []


def test_new_nick_is_used_in_messages(chat: ChatHarness) -> None:
    """After a rename, room lines carry the new nick."""
    _, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    said(chat, alice_p, "/nick Ärger")
    bob.clear()
    said(chat, alice_p, "hi")
    assert bob.lines() == ["[#lobby] <Ärger> hi"]


# -- failures -----------------------------------------------------------------


def test_failing_client_does_not_stop_delivery(
    chat: ChatHarness, log_events: list[LogEvent]
) -> None:
    """A member whose send raises is logged and skipped; the rest still get it."""
    broken = BrokenClient()
    chat.server.connect(broken)
    _, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    bob.clear()
    broken.broken = True
    said(chat, alice_p, "still works")
    assert bob.lines() == ["[#lobby] <Alice> still works"]
    [event] = failures(log_events)
    assert isinstance(event["log_failure"].value, RuntimeError)
    assert event["nick"].startswith("guest")


def test_failing_client_does_not_stop_notices(
    chat: ChatHarness, log_events: list[LogEvent]
) -> None:
    """Quit and rename notices also skip a failing member and reach the rest."""
    broken = BrokenClient()
    chat.server.connect(broken)
    _, alice_p = chat.connect("Alice")
    bob, _ = chat.connect("Bob")
    bob.clear()
    broken.broken = True
    said(chat, alice_p, "/nick Alicia")
    said(chat, alice_p, "/quit")
    assert bob.lines() == ["* Alice is now known as Alicia", "* Alicia quit (leaving)"]
    assert len(failures(log_events)) == 2


def test_bug_in_a_handler_gives_a_short_error_and_no_traceback(
    log_events: list[LogEvent],
) -> None:
    """An exception in a command is logged; the user gets ``! internal-error``."""

    def broken_clock() -> float:
        raise RuntimeError("secret internal detail")

    server = ChatServer(Settings(), broken_clock)
    alice = RecordingClient()
    participant = server.connect(alice)
    alice.clear()
    server.receive(participant, "/topic boom")
    [line] = alice.lines()
    assert line.startswith("! internal-error: ")
    assert "Traceback" not in line
    assert "secret" not in line
    [event] = failures(log_events)
    assert isinstance(event["log_failure"].value, RuntimeError)
    alice.clear()
    server.receive(participant, "/ping")
    assert alice.lines() == ["* pong"]
