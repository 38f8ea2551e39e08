# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Every reply is bounded, big ones are charged, rooms per address are capped.

Issue 11, finding 7 (``/rooms`` amplifies) and the core parts of 15.
"""

from __future__ import annotations

import pytest

from twisted_chat.core.bounds import (
    FREE_REPLY_LINES,
    HISTORY_LIMIT,
    LOOKED_AT_PER_LINE,
    MAX_ROOMS_PER_GROUP,
    REPLY_BURST,
    REPLY_RATE,
    ROOMS_SHOWN,
    WHO_NAMES_SHOWN,
)
from twisted_chat.core.settings import Settings
from twisted_chat.history.memory import MemoryStore
from twisted_chat.testing import ChatHarness, RecordingClient, make_chat


@pytest.fixture
def chat() -> ChatHarness:
    """PROTOCOL.md's defaults, no history."""
    return make_chat()


def make_rooms(chat: ChatHarness, count: int, prefix: str = "r") -> None:
    """``count`` rooms of one member each, each its own (uncapped) client."""
    for n in range(count):
        client = RecordingClient()
        participant = chat.server.connect(client)
        chat.server.receive(participant, f"/join #{prefix}{n}")


# -- /rooms -------------------------------------------------------------------


def test_rooms_lists_at_most_the_busiest_then_a_count(chat: ChatHarness) -> None:
    """With many rooms, ``/rooms`` shows ROOMS_SHOWN, busiest first, then the rest."""
    make_rooms(chat, ROOMS_SHOWN + 10)
    alice, alice_p = chat.connect("Alice")
    chat.server.receive(alice_p, "/join #big")
    _, bob_p = chat.connect("Bob")
    chat.server.receive(bob_p, "/join #big")
    alice.clear()
    chat.server.receive(alice_p, "/rooms")
    reply = alice.lines()
    assert len(reply) == ROOMS_SHOWN + 2
    total = ROOMS_SHOWN + 12  # the r rooms, #big and #lobby
    assert reply[0] == f"* {total} rooms; the {ROOMS_SHOWN} busiest:"
    members = ROOMS_SHOWN + 12  # everybody is in #lobby too
    assert reply[1] == f"* #lobby ({members} people)"
    assert reply[2] == "* #big (2 people)"
    assert reply[-1] == (
        f"* ... and {total - ROOMS_SHOWN} more rooms; /rooms PATTERN searches them."
    )


def test_rooms_with_few_rooms_lists_them_all(chat: ChatHarness) -> None:
    """Under the bound nothing is cut and no count line is added."""
    alice, alice_p = chat.connect("Alice")
    chat.server.receive(alice_p, "/rooms")
    assert alice.lines() == ["* 1 room:", "* #lobby (1 person)"]


def test_rooms_pattern_searches_names_by_key(chat: ChatHarness) -> None:
    """``/rooms dev`` finds names containing it in any case; ``#dev`` anchors."""
    for name in ("#dev", "#DevOps", "#webdev", "#lunch"):
        client = RecordingClient()
        chat.server.receive(chat.server.connect(client), f"/join {name}")
    alice, alice_p = chat.connect("Alice")
    chat.server.receive(alice_p, "/rooms DEV")
    reply = alice.lines()
    assert reply[0] == '* 3 rooms match "DEV":'
    assert sorted(reply[1:]) == [
        "* #DevOps (1 person)",
        "* #dev (1 person)",
        "* #webdev (1 person)",
    ]
    alice.clear()
    chat.server.receive(alice_p, "/list #dev")
    assert alice.lines()[0] == '* 2 rooms match "#dev":'
    alice.clear()
    chat.server.receive(alice_p, "/rooms nothing")
    assert alice.lines() == ['* No room matches "nothing"; /rooms lists the busiest.']


def test_rooms_pattern_is_bounded_too(chat: ChatHarness) -> None:
    """A pattern matching many rooms shows ROOMS_SHOWN of them and a count."""
    make_rooms(chat, ROOMS_SHOWN + 5, prefix="team")
    alice, alice_p = chat.connect("Alice")
    chat.server.receive(alice_p, "/rooms team")
    reply = alice.lines()
    assert len(reply) == ROOMS_SHOWN + 2
    assert reply[-1] == "* ... and 5 more rooms; a longer pattern narrows the search."


# -- /who -----------------------------------------------------------------------


def test_who_in_a_huge_room_shows_the_first_names_then_a_count(
    chat: ChatHarness,
) -> None:
    """``/who`` lists at most WHO_NAMES_SHOWN names, the first in order."""
    for _ in range(WHO_NAMES_SHOWN + 49):
        chat.server.connect(RecordingClient())
    alice, alice_p = chat.connect("Alice")
    chat.server.receive(alice_p, "/who")
    reply = alice.lines()
    total = WHO_NAMES_SHOWN + 50
    assert reply[0] == f"* {total} people in #lobby:"
    names = [name for line in reply[1:-1] for name in line[2:].split(", ")]
    assert len(names) == WHO_NAMES_SHOWN
    # By name; the first guest made #lobby and is its operator (``@``).
    assert names == sorted(names, key=lambda name: name.lstrip("@+"))
    assert names[0] == "Alice"
    assert reply[-1] == (
        f"* ... and 50 more; /who shows the first {WHO_NAMES_SHOWN} by name."
    )


# -- the reply budget -------------------------------------------------------------


def listing_costs(chat: ChatHarness) -> int:
    """Fill the server so that one ``/rooms`` is the biggest it can be."""
    make_rooms(chat, ROOMS_SHOWN + 5)
    return ROOMS_SHOWN + 2 - FREE_REPLY_LINES


def test_big_replies_are_charged_and_refused_past_the_budget(
    chat: ChatHarness,
) -> None:
    """Asking for ``/rooms`` over and over gets ``! slow-down`` and no listing."""
    cost = listing_costs(chat)
    alice, alice_p = chat.connect("Alice")
    answered = 0
    for _ in range(REPLY_BURST):
        alice.clear()
        chat.server.receive(alice_p, "/rooms")
        if alice.lines()[0].startswith("! "):
            break
        answered += 1
    assert answered == -(-REPLY_BURST // cost)  # until the budget is in debt
    [refusal] = alice.lines()
    assert refusal.startswith("! slow-down: ")
    chat.clock.advance(cost / REPLY_RATE + 0.01)
    alice.clear()
    chat.server.receive(alice_p, "/rooms")
    assert alice.lines()[0].startswith("* ")


def test_the_budget_is_shared_by_an_address_group() -> None:
    """Two connections from one address share one budget; another address not."""
    chat = make_chat()
    listing_costs(chat)
    _, one_p = chat.connect(group="192.0.2.7")
    two, two_p = chat.connect(group="192.0.2.7")
    other, other_p = chat.connect(group="198.51.100.1")
    for _ in range(REPLY_BURST):
        chat.server.receive(one_p, "/rooms")
    two.clear()
    chat.server.receive(two_p, "/who")
    assert two.lines()[0].startswith("! slow-down: ")
    other.clear()
    chat.server.receive(other_p, "/rooms")
    assert other.lines()[0].startswith("* ")


def test_reconnecting_does_not_refill_the_budget() -> None:
    """An address whose every connection closed still has its spent budget."""
    chat = make_chat()
    listing_costs(chat)
    _, one_p = chat.connect(group="192.0.2.7")
    for _ in range(REPLY_BURST):
        chat.server.receive(one_p, "/rooms")
    chat.server.disconnect(one_p, "connection lost")
    again, again_p = chat.connect(group="192.0.2.7")
    chat.server.receive(again_p, "/rooms")
    assert again.lines()[0].startswith("! slow-down: ")
    # Once it would be full again it is forgotten, as if never spent.
    chat.server.disconnect(again_p, "connection lost")
    chat.clock.advance(REPLY_BURST * 2 / REPLY_RATE)
    late, late_p = chat.connect(group="192.0.2.7")
    chat.server.receive(late_p, "/rooms")
    assert late.lines()[0].startswith("* ")


def test_small_replies_are_free(chat: ChatHarness) -> None:
    """``/ping``, ``/who`` of a small room and the like never run out."""
    alice, alice_p = chat.connect("Alice")
    for _ in range(REPLY_BURST * 3):
        chat.server.receive(alice_p, "/who")
    alice.clear()
    chat.server.receive(alice_p, "/rooms")
    assert alice.lines()[0] == "* 1 room:"


def test_history_is_charged_too() -> None:
    """``/history 200`` over and over is refused once the budget is spent."""
    chat = make_chat(store=MemoryStore())
    alice, alice_p = chat.connect("Alice")
    for n in range(HISTORY_LIMIT):
        chat.server.receive(alice_p, f"line {n}")
    refused = False
    for _ in range(5):
        alice.clear()
        chat.server.receive(alice_p, f"/history {HISTORY_LIMIT}")
        if alice.lines()[0].startswith("! slow-down: "):
            refused = True
            break
        assert len(alice.lines()) == HISTORY_LIMIT
    assert refused


# -- rooms per address ---------------------------------------------------------


def test_one_address_may_create_only_so_many_rooms() -> None:
    """The rooms one address group made are capped; "" is not; the count drops."""
    chat = make_chat(Settings(default_room=""))
    clients = []
    for n in range(MAX_ROOMS_PER_GROUP):
        _, participant = chat.connect(group="192.0.2.7")
        chat.server.receive(participant, f"/join #r{n}")
        clients.append(participant)
    late, late_p = chat.connect(group="192.0.2.7")
    chat.server.receive(late_p, "/join #onemore")
    [line] = late.lines()[-1:]
    assert line.startswith("! too-many-rooms: ")
    assert str(MAX_ROOMS_PER_GROUP) in line
    assert "#onemore" not in chat.server.rooms
    # Joining a room that exists is fine.
    late.clear()
    chat.server.receive(late_p, "/join #r0")
    assert late.lines()[0].startswith("* You joined #r0")
    # An uncapped client ("" group) may create rooms.
    free = RecordingClient()
    chat.server.receive(chat.server.connect(free), "/join #free")
    assert "#free" in chat.server.rooms
    # Once one of the group's rooms is gone, the group may make another.
    chat.server.disconnect(clients[1], "connection lost")
    assert "#r1" not in chat.server.rooms
    late.clear()
    chat.server.receive(late_p, "/join #onemore")
    assert late.lines()[0].startswith("* You joined #onemore")


# -- /history ------------------------------------------------------------------


def test_history_over_the_cap_says_so() -> None:
    """``/history 500`` replays at most HISTORY_LIMIT and says that is the cap."""
    chat = make_chat(store=MemoryStore())
    alice, alice_p = chat.connect("Alice")
    chat.server.receive(alice_p, "one")
    alice.clear()
    chat.server.receive(alice_p, "/history 500")
    reply = alice.lines()
    assert reply[0] == f"* /history shows at most the last {HISTORY_LIMIT} lines."
    assert reply[1].endswith("<Alice> one")


def test_history_zero_is_refused_with_the_range(chat: ChatHarness) -> None:
    """``/history 0`` is a usage error, not the default replay."""
    alice, alice_p = chat.connect("Alice")
    chat.server.receive(alice_p, "/history 0")
    [line] = alice.lines()
    assert line.startswith(
        f"! usage: /history [N], where N is a number from 1 to {HISTORY_LIMIT}"
    )


def test_no_per_address_cap_means_no_room_cap() -> None:
    """With ``--max-per-ip 0`` one address may make as many rooms as it likes."""
    chat = make_chat(Settings(default_room="", max_per_ip=0))
    for n in range(MAX_ROOMS_PER_GROUP + 1):
        _, participant = chat.connect(group="192.0.2.7")
        chat.server.receive(participant, f"/join #r{n}")
    assert len(chat.server.rooms) == MAX_ROOMS_PER_GROUP + 1


def test_a_search_that_finds_nothing_is_not_free_to_repeat() -> None:
    """``/rooms nosuch`` answers one line but looks at every room: it is charged."""
    chat = make_chat(Settings(default_room=""))
    make_rooms(chat, LOOKED_AT_PER_LINE * 2)
    alice, alice_p = chat.connect("Alice")
    for _ in range(REPLY_BURST):
        alice.clear()
        chat.server.receive(alice_p, "/rooms nosuch")
        if alice.lines()[0].startswith("! slow-down: "):
            break
    else:
        pytest.fail("an empty search over many rooms was never refused")


def test_a_join_while_over_budget_skips_the_replay() -> None:
    """Joining rooms cannot draw their history without end: over budget, a note."""
    chat = make_chat(store=MemoryStore())
    _, bob_p = chat.connect("Bob")
    chat.server.receive(bob_p, "/join #old")
    chat.server.receive(bob_p, "said before")
    cost = listing_costs(chat)
    alice, alice_p = chat.connect("Alice")
    for _ in range(-(-REPLY_BURST // cost)):
        chat.server.receive(alice_p, "/rooms")
    alice.clear()
    chat.server.receive(alice_p, "/join #old")
    reply = alice.lines()
    assert reply[0].startswith("* You joined #old")
    assert reply[-1] == (
        "* History is not replayed now: you asked for a lot in a short time; "
        "/history shows it later."
    )
    assert not any("said before" in line for line in reply)
