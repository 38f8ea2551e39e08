"""Room events rendered as IRC lines (twisted_chat.transports.irc_format)."""

from __future__ import annotations

from attrs import define

from twisted_chat.core.events import (
    Acted,
    Joined,
    Kicked,
    Left,
    Quit,
    Renamed,
    RoomEvent,
    RoomNotice,
    Said,
    TopicSet,
)
from twisted_chat.core.names import Nick, RoomName
from twisted_chat.core.room import Participant, Room
from twisted_chat.testing import RecordingClient
from twisted_chat.transports.irc_format import MAX_LINE, IrcFormat, split_text

SECRET = b"a test secret of 32 bytes or so."


@define(eq=False)
class IrcUser(RecordingClient):
    irc_user: str = ""


def person(nick: str, host: str = "192.0.2.7", user: str = "") -> Participant:
    client = IrcUser(peer=f"test {nick}", irc_user=user) if user else RecordingClient()
    return Participant(client=client, nick=Nick.parse(nick), host=host)


def room() -> Room:
    return Room(name=RoomName.parse("#dev"))


def lines_of(data: bytes) -> list[str]:
    assert data.endswith(b"\r\n")
    return data.decode().split("\r\n")[:-1]


def test_every_event_as_its_irc_line() -> None:
    fmt = IrcFormat("chat.test", SECRET)
    alice, bob = person("alice"), person("bob", "198.51.100.9", user="bobby")
    a = fmt.mask(alice, "alice")
    b = fmt.mask(bob, "bob")
    assert a.startswith("alice!~alice@")
    assert b.startswith("bob!~bobby@")
    events: list[RoomEvent] = [
        Said(alice, "alice", "hello"),
        Acted(alice, "alice", "waves"),
        Joined(bob, "bob"),
        TopicSet(bob, "bob", "release friday"),
        Renamed(bob, "bob", "robert"),
        Left(alice, "alice", "lunch"),
        Kicked(bob, "robert", alice, "alice", "spam"),
        Quit(bob, "robert", "connection lost"),
        RoomNotice("alice turned moderated on in #dev"),
    ]
    got = lines_of(fmt.render(room(), [(event, None) for event in events]))
    robert = fmt.mask(bob, "robert")
    assert got == [
        f":{a} PRIVMSG #dev :hello",
        f":{a} PRIVMSG #dev :\x01ACTION waves\x01",
        f":{b} JOIN #dev",
        f":{b} TOPIC #dev :release friday",
        f":{b} NICK robert",
        f":{a} PART #dev :lunch",
        f":{a} KICK #dev robert :spam",
        f":{robert} QUIT :connection lost",
        ":chat.test NOTICE #dev :alice turned moderated on in #dev",
    ]


def test_the_cloak_hides_the_address_and_is_stable() -> None:
    fmt = IrcFormat("chat.test", SECRET)
    one = fmt.mask(person("a", "203.0.113.77"), "a")
    again = fmt.mask(person("b", "203.0.113.77"), "b")
    other = fmt.mask(person("c", "203.0.113.78"), "c")
    assert one.split("@")[1] == again.split("@")[1]
    assert one.split("@")[1] != other.split("@")[1]
    assert "203" not in one
    assert "113" not in one
    assert (
        IrcFormat("chat.test", b"another secret, long enough").mask(
            person("a", "203.0.113.77"), "a"
        )
        != one
    )


def test_server_time_tags_when_asked() -> None:
    fmt = IrcFormat("chat.test", SECRET, tags=True, clock=lambda: 1_780_000_000.25)
    alice = person("alice")
    got = lines_of(fmt.render(room(), [(Said(alice, "alice", "hi"), None)]))
    assert got[0].startswith("@time=2026-05-28T")
    assert got[0].split(" ", 1)[0].endswith(".250Z")


def test_a_long_line_is_split_under_512_bytes_on_character_boundaries() -> None:
    fmt = IrcFormat("chat.test", SECRET)
    alice = person("alice")
    text = "小明" * 300  # 1,800 bytes
    data = fmt.render(room(), [(Said(alice, "alice", text), None)])
    lines = data.split(b"\r\n")[:-1]
    assert len(lines) >= 4
    assert all(len(line) + 2 <= MAX_LINE for line in lines)
    rebuilt = "".join(line.decode().split(" :", 1)[1] for line in lines)
    assert rebuilt == text


def test_split_text_prefers_a_space_and_never_loops() -> None:
    assert split_text("aaa bbb ccc", 8) == [b"aaa bbb ", b"ccc"]
    assert split_text("x" * 10, 0) == [b"xxxx", b"xxxx", b"xx"]


def test_a_private_message() -> None:
    fmt = IrcFormat("chat.test", SECRET)
    alice, bob = person("alice"), person("bob")
    got = lines_of(fmt.render_private(alice, bob, "psst"))
    assert got == [f":{fmt.mask(alice, 'alice')} PRIVMSG bob :psst"]
