"""
The server operators' rules (twisted_chat.core.operators): /oper, who may do
what, /kill and /wall, against a ``ChatServer`` with the fake hasher and the
memory account store on a ``Clock``.  Server bans are in test_server_bans.py,
/stats and the counters in test_stats.py; ``Rig`` here serves all three.
"""

from __future__ import annotations

import attrs
import pytest
from _accounts_rig import AccountsRig
from attrs import define
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent

from twisted_chat.accounts.passwords import FakeHasher
from twisted_chat.accounts.store import MemoryAccountStore
from twisted_chat.core.account_ports import AccountServices
from twisted_chat.core.chat import ChatServer, Participant
from twisted_chat.core.settings import Settings
from twisted_chat.core.store import IMessageStore
from twisted_chat.testing import RecordingClient

PASSWORD = "open-sesame-42"  # noqa: S105 - a test password
HASH = FakeHasher.PREFIX + PASSWORD[::-1]
FAILED = "! oper-failed: Wrong operator name or password."
NOT_OPER = "! not-server-operator: Only server operators may do that; see /oper."


@define(eq=False)
class Rig(AccountsRig):
    """A chat server with operators ``Root`` and accounts, and its clients."""

    def turn(self) -> None:
        """End the reactor turn: deliver the hasher's answers, flush the rooms."""
        self.run()

    def oper(self, nick: str = "root") -> tuple[RecordingClient, Participant]:
        """A connected server operator."""
        client, participant = self.connect(nick)
        self.say(participant, f"/oper root {PASSWORD}")
        self.turn()
        assert client.lines() == ["* You are now a server operator."]
        client.clear()
        return client, participant


def make_rig(
    settings: Settings | None = None,
    *,
    store: MemoryAccountStore | None = None,
    clock: Clock | None = None,
    history: IMessageStore | None = None,
    hasher: FakeHasher | None = None,
) -> Rig:
    """A server whose operator ``Root`` has the password PASSWORD."""
    clock = Clock() if clock is None else clock
    if settings is None:
        settings = Settings(operators=(("Root", HASH),))
    hasher = FakeHasher() if hasher is None else hasher
    store = MemoryAccountStore(clock) if store is None else store
    server = ChatServer(
        settings,
        clock.seconds,
        history,
        defer=lambda f: clock.callLater(0, f),
        accounts=AccountServices(store, hasher),
    )
    return Rig(server, clock, hasher, store, settle_on_connect=True)


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def logged(events: list[LogEvent]) -> str:
    """Every log event as text, and its fields, to search for secrets."""
    return "\n".join(f"{formatEvent(event)} {event!r}" for event in events)


# -- /oper -----------------------------------------------------------------------


def test_oper_with_the_right_password(rig: Rig, log_events: list[LogEvent]) -> None:
    client, alice = rig.connect("alice")
    rig.say(alice, f"/oper ROOT {PASSWORD}")
    assert client.lines() == []  # the hasher has not answered yet
    rig.turn()
    assert client.lines() == ["* You are now a server operator."]
    assert alice.oper == "Root"  # the table's spelling
    assert rig.server.operators.is_operator(alice)
    [event] = [e for e in log_events if e.get("action") == "oper"]
    assert event["oper"] == "Root"
    assert event["nick"] == "alice"
    assert PASSWORD not in logged(log_events)
    assert HASH not in logged(log_events)


@pytest.mark.parametrize(
    "line", [f"/oper root {PASSWORD}x", f"/oper nobody {PASSWORD}"]
)
def test_a_wrong_password_or_name_gets_the_same_answer(
    rig: Rig, log_events: list[LogEvent], line: str
) -> None:
    client, alice = rig.connect("alice")
    rig.say(alice, line)
    rig.turn()
    assert client.lines() == [FAILED]
    assert alice.oper is None
    assert not alice.checking
    assert PASSWORD not in logged(log_events)


def test_an_unknown_name_costs_a_verification_too(rig: Rig) -> None:
    _, alice = rig.connect("alice")
    rig.say(alice, f"/oper nobody {PASSWORD}")
    assert rig.hasher.pending == 1
    assert rig.hasher.dummy_verifications == 1


def test_an_unknown_name_is_not_logged(rig: Rig, log_events: list[LogEvent]) -> None:
    """A password typed where the name goes must not reach the log."""
    _, alice = rig.connect("alice")
    rig.say(alice, "/oper hunter2-secret whatever")
    rig.turn()
    assert "hunter2-secret" not in logged(log_events)


def test_oper_is_throttled_as_logins_are(rig: Rig) -> None:
    client, alice = rig.connect("alice")
    for _ in range(5):
        rig.say(alice, "/oper root wrong-password")
        rig.turn()
    assert client.lines() == [FAILED] * 5
    client.clear()
    rig.say(alice, f"/oper root {PASSWORD}")
    rig.turn()
    [line] = client.lines()
    assert line.startswith("! login-throttled: Too many failed logins for that oper")
    assert alice.oper is None
    # The name is locked for every address, until the lockout is over.
    other_client, other = rig.connect("other")
    rig.say(other, f"/oper root {PASSWORD}")
    rig.turn()
    [line] = other_client.lines()
    assert line.startswith("! login-throttled: ")
    rig.clock.advance(61)
    client.clear()
    rig.say(alice, f"/oper root {PASSWORD}")
    rig.turn()
    assert client.lines() == ["* You are now a server operator."]


def test_one_check_at_a_time(rig: Rig) -> None:
    client, alice = rig.connect("alice")
    rig.say(alice, f"/oper root {PASSWORD}")
    rig.say(alice, f"/oper root {PASSWORD}")
    [line] = client.lines()
    assert line.startswith("! slow-down: ")
    rig.turn()
    assert client.lines()[-1] == "* You are now a server operator."


def test_a_busy_hasher_says_slow_down() -> None:
    rig = make_rig(hasher=FakeHasher(max_pending=0))
    client, alice = rig.connect("alice")
    rig.say(alice, f"/oper root {PASSWORD}")
    [line] = client.lines()
    assert line.startswith("! slow-down: ")
    assert not alice.checking


def test_oper_prompts_for_the_password(rig: Rig, log_events: list[LogEvent]) -> None:
    client, alice = rig.connect("alice")
    rig.say(alice, "/oper root")
    assert b"".join(client.sent).endswith(b"* Password:\r\n")
    client.clear()
    rig.say(alice, PASSWORD)
    rig.turn()
    assert b"".join(client.sent).endswith(b"* You are now a server operator.\r\n")
    assert alice.oper == "Root"
    everything = b"".join(client.sent).decode("utf-8", "replace")
    assert PASSWORD not in everything
    assert PASSWORD not in logged(log_events)


def test_an_answer_for_a_client_who_left_is_dropped(rig: Rig) -> None:
    client, alice = rig.connect("alice")
    rig.say(alice, f"/oper root {PASSWORD}")
    rig.server.disconnect(alice, "gone")
    rig.turn()
    assert client.lines() == []
    assert alice.oper is None


def test_an_operator_removed_from_the_table_is_one_no_more(rig: Rig) -> None:
    """SIGHUP replaces the settings; the rights go at the next use."""
    client, root = rig.oper()
    rig.server.settings = attrs.evolve(rig.server.settings, operators=())
    rig.say(root, "/stats")
    assert client.lines() == [NOT_OPER]
    assert root.oper is None
    assert not rig.server.operators.is_operator(root)


def test_without_account_services_there_are_no_operators() -> None:
    clock = Clock()
    server = ChatServer(Settings(operators=(("Root", HASH),)), clock.seconds)
    client = RecordingClient()
    participant = server.connect(client)
    client.clear()
    server.receive(participant, f"/oper root {PASSWORD}")
    server.receive(participant, "/oper root")
    assert (
        client.lines()
        == ["! oper-failed: Server operators are not set up on this server."] * 2
    )


# -- who may do what ---------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "/kill bob",
        "/kill bob because",
        "/serverban 192.0.2.9",
        "/serverban bob 1h spam",
        "/serverunban 192.0.2.9",
        "/serverbans",
        "/wall hello",
        "/stats",
    ],
)
def test_every_command_needs_an_operator(rig: Rig, line: str) -> None:
    rig.connect("bob")
    client, alice = rig.connect("alice")
    rig.say(alice, line)
    rig.turn()
    assert client.lines() == [NOT_OPER]
    assert len(rig.server.participants) == 2
    assert not len(rig.server.operators.server_bans)


# -- /kill ---------------------------------------------------------------------------


def test_kill(rig: Rig, log_events: list[LogEvent]) -> None:
    client, root = rig.oper()
    bob_client, bob = rig.connect("bob")
    carol_client, _ = rig.connect("carol")
    rig.clear_all()
    rig.say(root, "/kill BOB spamming the room")
    rig.turn()
    assert bob_client.lines() == ["* You were killed by root (spamming the room)"]
    assert bob_client.closed
    assert bob.gone
    assert "bob" not in rig.server.participants
    quit_line = "* bob quit (killed by root: spamming the room)"
    assert carol_client.lines() == [quit_line]
    assert client.lines() == [quit_line, "* bob was disconnected."]
    [event] = [e for e in log_events if e.get("action") == "kill"]
    assert (event["oper"], event["nick"], event["target"], event["reason"]) == (
        "Root",
        "root",
        "bob",
        "spamming the room",
    )


def test_kill_without_a_reason(rig: Rig) -> None:
    _, root = rig.oper()
    bob_client, _ = rig.connect("bob")
    carol_client, _ = rig.connect("carol")
    rig.clear_all()
    rig.say(root, "/kill bob")
    rig.turn()
    assert bob_client.lines() == ["* You were killed by root"]
    assert carol_client.lines() == ["* bob quit (killed by root)"]


def test_kill_hands_over_what_the_target_was_owed_first(rig: Rig) -> None:
    _, root = rig.oper()
    bob_client, _ = rig.connect("bob")
    _, carol = rig.connect("carol")
    rig.clear_all()
    rig.say(carol, "last words for bob")
    rig.say(root, "/kill bob")
    rig.turn()
    assert bob_client.lines() == [
        "[#lobby] <carol> last words for bob",
        "* You were killed by root",
    ]


def test_kill_refuses_yourself_and_nobody(rig: Rig) -> None:
    client, root = rig.oper()
    rig.say(root, "/kill root")
    rig.say(root, "/kill nobody")
    lines = client.lines()
    assert lines[0] == "! usage: You cannot /kill yourself; /quit leaves."
    assert lines[1].startswith("! no-such-nick: ")
    assert not root.gone


def test_kill_clips_a_long_reason(rig: Rig) -> None:
    _, root = rig.oper()
    bob_client, _ = rig.connect("bob")
    rig.say(root, "/kill bob " + "x" * 500)
    rig.turn()
    [line] = bob_client.lines()
    assert len(line) < 260
    assert line.endswith("…)")


# -- /wall -----------------------------------------------------------------------------


def test_wall_reaches_everyone_after_what_was_said(
    rig: Rig, log_events: list[LogEvent]
) -> None:
    client, root = rig.oper()
    alice_client, _ = rig.connect("alice")
    loner_client, loner = rig.connect("loner", transport="udp")
    rig.say(loner, "/part")
    _, bob = rig.connect("bob")
    rig.turn()
    rig.clear_all()
    rig.say(bob, "before the wall")
    rig.say(root, "/wall maintenance at noon")
    rig.turn()
    wall = "* [OPER] maintenance at noon"
    assert alice_client.lines() == ["[#lobby] <bob> before the wall", wall]
    assert client.lines() == ["[#lobby] <bob> before the wall", wall]
    assert loner_client.lines() == [wall]
    [event] = [e for e in log_events if e.get("action") == "wall"]
    assert event["reason"] == "maintenance at noon"
    assert event["oper"] == "Root"
