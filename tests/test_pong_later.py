"""A line user's ``/ping`` waits for the end of the turn and goes out in one
write with the room lines they are owed (``Outbox.reply_later``); no direct
reply overtakes it."""

from __future__ import annotations

from test_batching import Room as Chat


def test_the_pong_goes_with_the_room_lines_in_one_write() -> None:
    chat = Chat("alice", "bob")
    chat.say("bob", "one")
    chat.say("alice", "/ping")
    chat.say("bob", "two")
    assert chat.clients["alice"].sent == []
    chat.clock.advance(0)
    assert chat.clients["alice"].sent == [
        b"[#lobby] <bob> one\r\n[#lobby] <bob> two\r\n* pong\r\n"
    ]
    # bob's lines went to alice with her pong, and to nobody twice.
    assert chat.clients["bob"].sent == []


def test_a_pong_alone_still_goes_at_the_end_of_the_turn() -> None:
    chat = Chat("alice")
    chat.say("alice", "/ping token")
    chat.clock.advance(0)
    assert chat.clients["alice"].lines() == ["* pong token"]


def test_a_later_reply_does_not_overtake_the_pong() -> None:
    chat = Chat("alice", "bob")
    chat.say("bob", "one")
    chat.say("alice", "/ping")
    chat.say("alice", "/ping again")
    chat.say("alice", "/who")
    chat.say("bob", "/msg alice psst")
    chat.clock.advance(0)
    got = chat.clients["alice"].lines()
    assert got[:3] == ["[#lobby] <bob> one", "* pong", "* pong again"]
    assert got[-1] == "[PM] <bob> psst"


def test_a_udp_pong_is_not_held() -> None:
    chat = Chat("alice", transport="udp")
    chat.say("alice", "/ping")
    assert chat.clients["alice"].lines() == ["* pong"]


def test_the_pong_of_someone_gone_is_dropped() -> None:
    chat = Chat("alice", "bob")
    chat.say("alice", "/ping")
    chat.server.disconnect(chat.people["alice"], "lost")
    chat.clock.advance(0)
    assert chat.clients["alice"].sent == []


def test_many_pongs_in_a_turn_go_in_one_write_and_nothing_is_kept() -> None:
    """What waits for the end of the turn is one turn's: the pongs of a
    pipelined burst go out together, and the outbox keeps none of them."""
    chat = Chat("alice", "bob")
    for n in range(1000):
        chat.say("alice", f"/ping t{n}")
    assert chat.clients["alice"].sent == []
    chat.clock.advance(0)
    (write,) = chat.clients["alice"].sent
    assert write.count(b"pong t") == 1000
    assert not chat.server.outbox.busy
