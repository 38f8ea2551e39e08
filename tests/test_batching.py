"""Room lines said in one reactor turn go out as one write per member."""

from __future__ import annotations

from attrs import Factory, define
from twisted.internet.task import Clock

from twisted_chat.core.bounds import BUSY_ROOM, NOTICE_DELAY
from twisted_chat.core.chat import ChatServer, Participant
from twisted_chat.core.settings import Settings
from twisted_chat.testing import RecordingClient


class Room:
    """A batching ChatServer on a Clock, with named RecordingClients in #lobby."""

    def __init__(self, *nicks: str, transport: str = "tcp") -> None:
        self.clock = Clock()
        self.server = ChatServer(
            Settings(history_db="off"),
            self.clock.seconds,
            defer=lambda f: self.clock.callLater(0, f),
        )
        self.clients: dict[str, RecordingClient] = {}
        self.people: dict[str, Participant] = {}
        for nick in nicks:
            client = RecordingClient(peer=f"test {nick}")
            participant = self.server.connect(client, transport=transport)
            self.server.receive(participant, f"/nick {nick}")
            self.clients[nick] = client
            self.people[nick] = participant
        self.clock.advance(0)
        for client in self.clients.values():
            client.sent.clear()

    def say(self, nick: str, text: str) -> None:
        self.server.receive(self.people[nick], text)

    def turn(self) -> None:
        self.clock.advance(0)


def test_lines_wait_for_the_end_of_the_turn_then_go_in_one_write() -> None:
    """Nothing is written mid-turn; then each member gets one write, in order."""
    room = Room("alice", "bob", "carol")
    room.say("alice", "one")
    room.say("bob", "two")
    room.say("alice", "three")
    assert room.clients["carol"].sent == []
    room.turn()
    assert room.clients["carol"].lines() == [
        "[#lobby] <alice> one",
        "[#lobby] <bob> two",
        "[#lobby] <alice> three",
    ]
    assert len(room.clients["carol"].sent) == 1


def test_a_sender_gets_the_others_lines_but_never_their_own() -> None:
    """Batching keeps the no-echo rule for every sender in the batch."""
    room = Room("alice", "bob", "carol")
    room.say("alice", "one")
    room.say("bob", "two")
    room.turn()
    assert room.clients["alice"].lines() == ["[#lobby] <bob> two"]
    assert room.clients["bob"].lines() == ["[#lobby] <alice> one"]


def test_a_lone_speaker_gets_nothing_back() -> None:
    """A batch made only of your own lines sends you no write at all."""
    room = Room("alice", "bob")
    room.say("alice", "one")
    room.say("alice", "two")
    room.turn()
    assert room.clients["alice"].sent == []
    assert len(room.clients["bob"].lines()) == 2


def test_commands_keep_the_order_of_queued_lines() -> None:
    """A part after a message is seen after the message, as it happened."""
    room = Room("alice", "bob", "carol")
    room.say("alice", "bye bob")
    room.say("bob", "/part")
    # bob gets the line said before he left, then the reply to /part, at once.
    assert room.clients["bob"].lines() == [
        "[#lobby] <alice> bye bob",
        "* You left #lobby; you are in no room now; /join one to chat.",
    ]
    room.say("alice", "he's gone")
    room.turn()
    assert room.clients["carol"].lines() == [
        "[#lobby] <alice> bye bob",
        "* bob left #lobby",
        "[#lobby] <alice> he's gone",
    ]
    assert len(room.clients["carol"].sent) == 1
    assert "he's gone" not in "".join(room.clients["bob"].lines())


def test_a_private_message_does_not_overtake_a_room_line_to_its_recipient() -> None:
    """The recipient of a /msg gets the room line said before it first."""
    room = Room("alice", "bob", "carol")
    room.say("alice", "hello room")
    room.say("alice", "/msg carol psst")
    assert room.clients["carol"].lines() == [
        "[#lobby] <alice> hello room",
        "[PM] <alice> psst",
    ]
    # Only the recipient was handed the line early; bob gets it at the turn.
    assert room.clients["bob"].lines() == []
    room.turn()
    assert room.clients["bob"].lines() == ["[#lobby] <alice> hello room"]
    assert room.clients["carol"].lines() == [
        "[#lobby] <alice> hello room",
        "[PM] <alice> psst",
    ]


def test_a_newcomer_does_not_get_lines_said_before_joining() -> None:
    """Membership is what it was when the line was said, not when it went out."""
    room = Room("alice", "bob")
    room.say("alice", "before")
    newcomer = RecordingClient(peer="test dave")
    room.server.connect(newcomer)
    room.turn()
    assert not any("before" in line for line in newcomer.lines())
    assert "[#lobby] <alice> before" in room.clients["bob"].lines()


@define(eq=False)
class BrokenClient(RecordingClient):
    """A client whose sends fail once ``broken`` is set."""

    broken: bool = False

    def send(self, data: bytes) -> None:
        if self.broken:
            raise OSError("boom")
        super().send(data)


def test_a_failing_member_does_not_stop_the_batch() -> None:
    """One member whose send raises is skipped; the rest get the batch."""
    room = Room("alice", "carol")
    broken = BrokenClient(peer="test broken")
    room.server.connect(broken)
    broken.broken = True
    room.turn()
    room.clients["carol"].sent.clear()
    room.say("alice", "one")
    room.say("alice", "two")
    room.turn()
    assert room.clients["carol"].lines() == [
        "[#lobby] <alice> one",
        "[#lobby] <alice> two",
    ]


def test_the_same_bytes_object_goes_to_every_plain_member() -> None:
    """The batch is joined once, not once per recipient."""
    room = Room("alice", "bob", "carol", "dave")
    room.say("alice", "one")
    room.say("alice", "two")
    room.turn()
    batches = [room.clients[nick].sent[0] for nick in ("bob", "carol", "dave")]
    assert batches[0] is batches[1] is batches[2]


def test_the_store_gets_a_turns_lines_in_one_call() -> None:
    """History is handed over once per turn, and before a join can read it."""
    from twisted_chat.history.memory import MemoryStore

    calls: list[int] = []

    class CountingStore(MemoryStore):
        def append_lines(self, key: str, room: str, at: float, data: bytes) -> None:
            calls.append(data.count(b"\n"))
            super().append_lines(key, room, at, data)

    clock = Clock()
    server = ChatServer(
        Settings(),
        clock.seconds,
        CountingStore(),
        defer=lambda f: clock.callLater(0, f),
    )
    alice = server.connect(RecordingClient(peer="test alice"))
    for n in range(5):
        server.receive(alice, f"line {n}")
    assert calls == []
    newcomer = RecordingClient(peer="test bob")
    server.connect(newcomer)
    assert calls == [5]
    assert sum("line 4" in line for line in newcomer.lines()) == 1
    # The rest of the turn was the join notice: not history, no empty row.
    clock.advance(0)
    assert calls == [5]


# -- churn in a busy room (issue 11, finding 6) -------------------------------


class BusyRoom:
    """A batching server with a notice timer, and ``size`` members in #lobby."""

    def __init__(self, size: int) -> None:
        self.clock = Clock()
        self.server = ChatServer(
            Settings(history_db="off"),
            self.clock.seconds,
            defer=lambda f: self.clock.callLater(0, f),
            call_later=self.clock.callLater,
        )
        self.members = [self.join(f"m{n}") for n in range(size)]
        self.settle()

    def join(self, peer: str) -> tuple[RecordingClient, Participant]:
        client = RecordingClient(peer=f"test {peer}")
        return client, self.server.connect(client)

    def settle(self) -> None:
        """Let every timer run, then forget what everybody got."""
        self.clock.advance(NOTICE_DELAY)
        self.clock.advance(NOTICE_DELAY)
        for client, _ in self.members:
            client.clear()


def test_joins_in_one_turn_reach_a_member_in_one_write() -> None:
    """Ten connects in a turn cost each member one write, not ten."""
    room = Room("alice", "bob")
    for n in range(10):
        room.server.connect(RecordingClient(peer=f"test new{n}"))
    room.turn()
    bob = room.clients["bob"]
    assert len(bob.sent) == 1
    assert len([line for line in bob.lines() if line.endswith(" joined #lobby")]) == 10


def test_a_busy_rooms_notices_wait_for_the_notice_timer() -> None:
    """In a room of BUSY_ROOM members, churn goes out every NOTICE_DELAY s at most."""
    room = BusyRoom(BUSY_ROOM)
    watcher, _ = room.members[0]
    for n in range(5):
        _, newcomer = room.join(f"new{n}")
        room.clock.advance(0)
        room.server.disconnect(newcomer, "connection lost")
        room.clock.advance(0)
    assert watcher.sent == []
    room.clock.advance(NOTICE_DELAY)
    assert len(watcher.sent) == 1
    assert len(watcher.lines()) == 10


def test_a_smaller_rooms_notices_go_at_the_end_of_the_turn() -> None:
    """Below BUSY_ROOM members nothing waits for the notice timer."""
    room = BusyRoom(BUSY_ROOM - 1)
    watcher, _ = room.members[0]
    room.join("new")
    room.clock.advance(0)
    assert len(watcher.sent) == 1
    assert watcher.lines()[0].endswith(" joined #lobby")


def test_a_message_takes_waiting_notices_along_in_order() -> None:
    """A line said after a join goes out at the end of its turn, after the join."""
    room = BusyRoom(BUSY_ROOM)
    (watcher, _), (_, speaker) = room.members[0], room.members[1]
    client, _ = room.join("late")
    room.clock.advance(0)
    room.server.receive(speaker, "hello late")
    room.clock.advance(0)
    lines = watcher.lines()
    assert lines[-1].endswith("> hello late")
    assert lines[-2].endswith(" joined #lobby")
    assert client.lines()[-1].endswith("> hello late")


def test_a_joiner_gets_what_is_said_after_joining_in_the_same_turn() -> None:
    """Lines before the join are not the joiner's; lines after it are."""
    room = Room("alice", "bob")
    room.say("alice", "before")
    newcomer = RecordingClient(peer="test dave")
    room.server.connect(newcomer)
    room.say("bob", "after")
    room.turn()
    said = [line for line in newcomer.lines() if line.startswith("[#lobby]")]
    assert said == ["[#lobby] <bob> after"]


def test_one_who_quits_mid_turn_gets_nothing_said_after() -> None:
    """A quitter's rooms keep talking; the quitter hears none of it."""
    room = Room("alice", "bob", "carol")
    room.say("alice", "before")
    room.say("bob", "/quit")
    room.say("alice", "after")
    room.turn()
    bob = room.clients["bob"].lines()
    assert bob == ["[#lobby] <alice> before", "* Bye!"]
    assert room.clients["carol"].lines() == [
        "[#lobby] <alice> before",
        "* bob quit (leaving)",
        "[#lobby] <alice> after",
    ]


def test_a_quit_is_told_once_to_a_neighbour_in_two_rooms() -> None:
    """Sharing two rooms with a quitter, you hear the quit once, after the lines."""
    room = Room("alice", "bob")
    room.say("alice", "/join #dev")
    room.say("bob", "/join #dev")
    room.turn()
    room.clients["bob"].clear()
    room.say("alice", "bye")
    room.server.disconnect(room.people["alice"], "connection lost")
    room.turn()
    assert room.clients["bob"].lines() == [
        "[#dev] <alice> bye",
        "* alice quit (connection lost)",
    ]


def test_notices_never_reach_the_store() -> None:
    """Joins, parts and topics go through the room's queue but are not history."""
    from twisted_chat.history.memory import MemoryStore

    said: list[bytes] = []

    class Recording(MemoryStore):
        def append_lines(self, key: str, room: str, at: float, data: bytes) -> None:
            said.append(data)
            super().append_lines(key, room, at, data)

    clock = Clock()
    server = ChatServer(
        Settings(), clock.seconds, Recording(), defer=lambda f: clock.callLater(0, f)
    )
    alice = server.connect(RecordingClient(peer="test alice"))
    server.receive(alice, "hello")
    server.receive(alice, "/topic news")
    bob = server.connect(RecordingClient(peer="test bob"))
    server.receive(bob, "/part")
    clock.advance(0)
    assert b"".join(said) == b"[#lobby] <guest1> hello\r\n"


@define(eq=False)
class CountingClient(RecordingClient):
    """Counts how often the core looks up ``send``: once per member is enough."""

    lookups: list[int] = Factory(lambda: [0])

    def __getattribute__(self, name: str) -> object:
        if name == "send":
            object.__getattribute__(self, "lookups")[0] += 1
        return object.__getattribute__(self, name)


def test_joining_a_big_room_does_not_rebuild_its_fan_out_per_join() -> None:
    """A thousand joins cost O(members), not O(members) each (issue 11, 6)."""
    lookups = [0]
    server = ChatServer(Settings(history_db="off"), Clock().seconds)
    for n in range(1000):
        server.connect(CountingClient(peer=f"test {n}", lookups=lookups))
    assert lookups[0] <= 3 * 1000
