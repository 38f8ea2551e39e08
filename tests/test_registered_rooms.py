"""
Registered rooms in the chat (twisted_chat.core.registered_rooms): ``/room
register`` and ``/room drop``, every change kept in the RoomStore, empty
registered rooms that stay (and are listed), and a restart that keeps the
founder, operator accounts, bans, mutes, settings and topic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _accounts_rig import AccountsRig
from attrs import define
from test_account_store import ThreadReactor
from twisted.internet.task import Clock

from twisted_chat.accounts.passwords import FakeHasher
from twisted_chat.accounts.rooms import MemoryRoomStore
from twisted_chat.accounts.sqlite import SqliteAccountStore
from twisted_chat.accounts.store import MemoryAccountStore
from twisted_chat.core.account_ports import AccountServices
from twisted_chat.core.chat import ChatServer, Participant
from twisted_chat.core.names import name_key
from twisted_chat.core.room_ports import MAX_TOPIC_CHARS
from twisted_chat.core.settings import Settings
from twisted_chat.daemon.accounts import open_accounts
from twisted_chat.testing import RecordingClient

PASSWORD = "correct-horse-9"  # noqa: S105 - a test password
OPERATORS = (("root", "$argon2id$unused"),)
DEV = "#dev"


@define(eq=False)
class Rig(AccountsRig):
    """A chat with accounts and a room store; lines go out at once."""

    rooms: Any = None
    pump: Any = None

    def account(
        self, nick: str, *, room: str | None = DEV, host: str | None = None
    ) -> tuple[RecordingClient, Participant]:
        """A new client with a new account (``/register``), then in ``room``."""
        client, participant = self.member(nick, room=None, host=host)
        self.say(participant, f"/register {PASSWORD}")
        self.run()
        assert participant.account is not None, client.lines()
        if room is not None:
            self.say(participant, f"/join {room}")
        self.clear_all()
        return client, participant

    def login(
        self, nick: str, *, host: str | None = None
    ) -> tuple[RecordingClient, Participant]:
        client, participant = self.member(f"{nick}_", room=None, host=host)
        self.say(participant, f"/login {nick} {PASSWORD}")
        self.run()
        assert participant.account is not None, client.lines()
        self.clear_all()
        return client, participant

    def run(self) -> None:
        super().run()
        if self.pump is not None:
            self.pump()
            super().run()

    def restart(self) -> Rig:
        """A second chat on the same stores (the first one's clients left)."""
        self.run()
        return make_rig(self.clock, self.store, self.rooms, self.hasher)


def make_rig(
    clock: Clock | None = None,
    store: Any = None,
    rooms: Any = None,
    hasher: FakeHasher | None = None,
    pump: Any = None,
) -> Rig:
    if clock is None:
        clock = Clock()
        clock.advance(1000)
    store = MemoryAccountStore(clock) if store is None else store
    rooms = MemoryRoomStore(clock) if rooms is None else rooms
    hasher = FakeHasher() if hasher is None else hasher
    server = ChatServer(
        Settings(operators=OPERATORS),
        clock.seconds,
        call_later=clock.callLater,
        accounts=AccountServices(store, hasher, rooms),
    )
    return Rig(server, clock, hasher, store, rooms=rooms, pump=pump)


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def registered_dev(rig: Rig) -> tuple[RecordingClient, Participant]:
    alice_c, alice = rig.account("Alice")
    rig.say(alice, "/room register")
    rig.run()
    rig.clear_all()
    return alice_c, alice


# -- /room register, /room drop ------------------------------------------------------


def test_register_keeps_the_room_and_tells_it(rig: Rig) -> None:
    alice_c, alice = rig.account("Alice")
    bob_c, _ = rig.member("Bob")
    rig.say(alice, "/topic plans")
    rig.say(alice, "/room register")
    rig.run()
    notice = "* Alice registered #dev; its founder is account Alice"
    assert alice_c.lines()[-1] == notice
    assert bob_c.lines()[-1] == notice
    stored = rig.rooms.get(DEV)
    assert stored is not None
    assert stored.founder == alice.account
    assert stored.name == DEV
    assert stored.topic is not None
    assert stored.topic.text == "plans"
    assert stored.rules["founder"] == "Alice"


def test_register_needs_an_operator_and_an_account(rig: Rig) -> None:
    _, _alice = rig.member("Alice")
    bob_c, bob = rig.account("Bob")
    rig.say(bob, "/room register")
    assert bob_c.lines() == [
        (
            "! not-operator: You are not an operator of #dev; only its operators "
            "may use /room register."
        )
    ]
    guest_c, guest = rig.member("Guest", room="#guests")
    rig.say(guest, "/room register")
    assert guest_c.lines()[0].startswith("! not-logged-in:")
    assert len(rig.rooms) == 0


def test_register_twice_is_refused(rig: Rig) -> None:
    alice_c, alice = registered_dev(rig)
    rig.say(alice, "/room register")
    assert alice_c.lines()[0].startswith("! usage: #dev is registered already")


def test_the_stores_bounds_are_clear_errors_and_change_nothing(rig: Rig) -> None:
    rig.rooms.max_per_founder = 1
    alice_c, alice = registered_dev(rig)
    rig.say(alice, "/join #two")
    rig.clear_all()
    rig.say(alice, "/room register")
    assert alice_c.lines() == [
        (
            "! too-many-rooms: Your account founded as many rooms as one account "
            "may; /room drop one of them first."
        )
    ]
    room = rig.server.rooms["#two"]
    assert room.rules is not None
    assert not room.rules.registered
    rig.rooms.max_per_founder, rig.rooms.max_rooms = 20, 1
    alice_c.clear()
    rig.say(alice, "/room register")
    assert alice_c.lines()[0].startswith("! too-many-rooms: This server holds as many")
    assert not room.rules.registered
    assert rig.rooms.get("#two") is None


def test_drop_by_the_founder_or_a_server_operator_only(rig: Rig) -> None:
    alice_c, alice = registered_dev(rig)
    bob_c, bob = rig.member("Bob")
    rig.say(alice, "/op Bob")
    rig.clear_all()
    rig.say(bob, "/room drop")
    assert bob_c.lines()[0].startswith("! not-operator: Only the founder of #dev")
    assert rig.rooms.get(DEV) is not None
    rig.say(alice, "/room drop")
    rig.run()
    assert alice_c.lines()[-1] == "* Alice dropped the registration of #dev"
    assert rig.rooms.get(DEV) is None
    rig.say(alice, "/room drop")
    assert alice_c.lines()[-1].startswith("! not-registered-room:")


def test_a_server_operator_drops_a_room(rig: Rig) -> None:
    registered_dev(rig)
    root_c, root = rig.member("root")
    root.oper = "root"
    rig.say(root, "/room drop")
    rig.run()
    assert root_c.lines()[-1] == "* root dropped the registration of #dev"
    assert rig.rooms.get(DEV) is None


# -- every change is kept -----------------------------------------------------------


def test_each_change_and_the_topic_reach_the_store(rig: Rig) -> None:
    _, alice = registered_dev(rig)
    _, bob = rig.account("Bob")
    rig.member("Carol")
    steps = [
        ("/op Bob", lambda r: r["operators"] == ["Bob"]),
        ("/deop Bob", lambda r: r["operators"] == []),
        ("/ban account:Mallory", lambda r: len(r["bans"]) == 1),
        ("/unban account:Mallory", lambda r: r["bans"] == []),
        ("/mute Carol 10m", lambda r: len(r["mutes"]) == 1),
        ("/unmute Carol", lambda r: r["mutes"] == []),
        ("/room moderated on", lambda r: r["settings"]["moderated"] is True),
        ("/room limit 7", lambda r: r["settings"]["limit"] == 7),
    ]
    for line, check in steps:
        rig.say(alice, line)
        rig.run()
        rules = rig.rooms.get(DEV).rules
        assert check(rules), (line, rules)
    rig.say(alice, "/topic kept")
    rig.run()
    topic = rig.rooms.get(DEV).topic
    assert topic is not None
    assert (topic.text, topic.set_by) == ("kept", "Alice")
    assert bob.account is not None


def test_an_unregistered_room_writes_nothing(rig: Rig) -> None:
    _, alice = rig.account("Alice")
    rig.member("Bob")
    rig.say(alice, "/ban account:Mallory")
    rig.say(alice, "/topic not kept")
    rig.run()
    assert len(rig.rooms) == 0


# -- an empty registered room stays --------------------------------------------------


def test_an_empty_registered_room_stays_and_is_listed(rig: Rig) -> None:
    _, alice = registered_dev(rig)
    rig.say(alice, "/topic still here")
    rig.say(alice, "/room key blue")
    rig.say(alice, "/part")
    rig.run()
    room = rig.server.rooms.get(DEV)
    assert room is not None
    assert not room.members
    bob_c, bob = rig.member("Bob", room=None)
    rig.say(bob, "/rooms")
    assert "* #dev (0 people): still here" in bob_c.lines()
    bob_c.clear()
    rig.say(bob, "/who #dev")
    assert bob_c.lines() == ["* Nobody is in #dev right now."]
    bob_c.clear()
    rig.say(bob, "/join #dev")
    assert bob_c.lines()[0].startswith("! bad-key:")
    bob_c.clear()
    rig.say(bob, "/join #dev blue")
    assert bob_c.lines() == [
        "* You joined #dev; nobody else is here yet.",
        "* Topic of #dev: still here",
    ]
    assert room.rules is not None
    assert not room.rules.is_operator(bob)  # a registered room promotes no one


def test_an_unregistered_room_still_goes_when_empty(rig: Rig) -> None:
    _, alice = rig.account("Alice")
    rig.say(alice, "/part")
    assert DEV not in rig.server.rooms


def test_rooms_keeps_its_bound_with_empty_registered_rooms(rig: Rig) -> None:
    _, alice = rig.account("Alice")
    for n in range(20):
        rig.say(alice, f"/join #r{n:02}")
        rig.say(alice, "/room register")
        rig.say(alice, "/part")
    rig.run()
    assert len(rig.rooms) == 20
    client, guest = rig.member("Guest", room=None)
    rig.say(guest, "/rooms")
    lines = client.lines()
    assert lines[0] == f"* {len(rig.server.rooms)} rooms:"
    assert sum("(0 people)" in line for line in lines) == 20
    assert len(lines) <= 60


def test_a_registered_room_does_not_count_against_its_creators_address(
    rig: Rig,
) -> None:
    _, alice = rig.account("Alice")
    counts = rig.server.membership.rooms_by_group
    before = counts.get(alice.group, 0)
    assert before >= 1
    rig.say(alice, "/room register")
    assert counts.get(alice.group, 0) == before - 1
    rig.say(alice, "/part")
    assert counts.get(alice.group, 0) == before - 1


def test_a_timed_mute_in_a_room_that_emptied_lifts_after_a_rejoin(rig: Rig) -> None:
    _, alice = registered_dev(rig)
    carol_c, carol = rig.member("Carol", host="192.0.2.77")
    rig.say(alice, "/mute Carol 1m")
    rig.say(carol, "/part")
    rig.say(alice, "/part")
    rig.run()
    assert not rig.server.rooms[DEV].members
    rig.say(carol, "/join #dev")
    carol_c.clear()
    rig.say(carol, "hi")
    assert carol_c.lines()[0].startswith("! muted:")
    rig.clock.advance(61)
    assert carol_c.lines()[-1] == "* Carol is no longer muted in #dev"


# -- restart survival --------------------------------------------------------------


def _moderate(rig: Rig) -> None:
    """#dev registered by Alice: Bob an operator account, Mallory banned,
    Carol (a guest from 192.0.2.77) muted for ten minutes, a key, a limit,
    a topic."""
    _, alice = registered_dev(rig)
    _, bob = rig.account("Bob")
    rig.account("Mallory")
    rig.member("Carol", host="192.0.2.77")
    for line in (
        "/op Bob",
        "/ban Mallory",
        "/mute Carol 10m",
        "/room key blue",
        "/room limit 5",
        "/topic survives",
    ):
        rig.say(alice, line)
    rig.run()
    assert bob.account is not None


def _check_after_restart(again: Rig) -> None:
    server = again.server
    room = server.rooms.get(DEV)
    assert room is not None
    assert not room.members
    assert room.topic == "survives"
    assert room.rules is not None
    assert room.rules.settings.limit == 5
    guest_c, guest = again.member("Guest", room=None)
    again.say(guest, "/rooms")
    assert "* #dev (0 people): survives" in guest_c.lines()
    # The founder is an operator again, by account.
    alice_c, alice = again.login("Alice")
    again.say(alice, "/join #dev blue")
    assert room.rules.is_operator(alice)
    _bob_c, bob = again.login("Bob")
    again.say(bob, "/join #dev blue")
    assert room.rules.is_operator(bob)
    # The ban holds the account.
    mallory_c, mallory = again.login("Mallory")
    again.say(mallory, "/join #dev blue")
    assert mallory_c.lines() == [mallory_c.lines()[0]]
    assert mallory_c.lines()[0].startswith("! banned:")
    # The mute holds the address, and ends on time.
    carol_c, carol = again.member("Carol", host="192.0.2.77", room="#dev blue")
    again.say(carol, "hi")
    assert carol_c.lines()[0].startswith("! muted:")
    again.clock.advance(600)
    carol_c.clear()
    again.say(carol, "hi")
    assert carol_c.lines() == []
    assert alice_c.lines()[-1] == "[#dev] <Carol> hi"
    again.say(alice, "/who")
    assert "@Alice" in alice_c.lines()[-1]


def test_a_registered_room_survives_a_restart(rig: Rig) -> None:
    _moderate(rig)
    _check_after_restart(rig.restart())


def test_a_registered_room_survives_a_restart_on_the_accounts_file(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "accounts.sqlite3")
    reactor = ThreadReactor()
    clock = Clock()
    clock.advance(1000)

    def open_rig(hasher: FakeHasher | None = None) -> tuple[Rig, SqliteAccountStore]:
        store = SqliteAccountStore.open(path, reactor=reactor)

        def pump() -> None:
            while store.pending_writes:
                reactor.run_one()

        return make_rig(clock, store, store.rooms, hasher, pump), store

    rig, store = open_rig()
    try:
        _moderate(rig)
        rig.run()
    finally:
        store.close()
    again, store = open_rig(rig.hasher)
    try:
        _check_after_restart(again)
    finally:
        store.close()


def test_a_room_whose_founder_account_is_gone_is_dropped_at_start(rig: Rig) -> None:
    registered_dev(rig)
    rig.run()
    rig.store.delete("Alice")
    rig.run()
    again = rig.restart()
    assert DEV not in again.server.rooms
    assert rig.rooms.get(DEV) is None


# -- a founder's account deleted ----------------------------------------------------


def test_a_deleted_founder_drops_their_rooms(rig: Rig) -> None:
    _, alice = registered_dev(rig)
    bob_c, _ = rig.member("Bob")
    rig.say(alice, "/join #empty")
    rig.say(alice, "/room register")
    rig.say(alice, "/part")
    rig.run()
    assert len(rig.rooms) == 2
    key = alice.account
    assert key is not None
    told = rig.server.moderation.registry.account_deleted(key)
    assert [room.name.key for room in told] == [DEV]
    assert len(rig.rooms) == 0
    assert "#empty" not in rig.server.rooms
    dev = rig.server.rooms[DEV]
    assert dev.rules is not None
    assert not dev.rules.registered
    assert bob_c.lines()[-1] == (
        "* #dev is no longer registered: its founder's account was deleted"
    )


def test_unregister_drops_the_rooms_the_account_founded(rig: Rig) -> None:
    """A new account of the same name must not inherit the old one's rooms."""
    _, alice = registered_dev(rig)
    bob_c, _ = rig.member("Bob")
    rig.say(alice, f"/unregister {PASSWORD}")
    rig.run()
    assert len(rig.rooms) == 0
    dev = rig.server.rooms[DEV]
    assert dev.rules is not None
    assert not dev.rules.registered
    assert bob_c.lines()[-1] == (
        "* #dev is no longer registered: its founder's account was deleted"
    )


def test_the_daemon_hands_the_accounts_files_rooms_to_the_core(tmp_path: Path) -> None:
    services = open_accounts(Settings(state_dir=str(tmp_path)), ThreadReactor())
    try:
        assert isinstance(services.store, SqliteAccountStore)
        assert services.rooms is services.store.rooms
    finally:
        services.store.close()


def test_a_topic_longer_than_the_store_keeps_is_kept_cut(rig: Rig) -> None:
    """With ``--max-line 65536`` a topic may outgrow the store's bound."""
    _, alice = registered_dev(rig)
    rig.say(alice, "/topic " + "x" * (MAX_TOPIC_CHARS + 100))
    rig.run()
    stored = rig.rooms.get(name_key(DEV))
    assert stored is not None
    assert stored.topic is not None
    assert stored.topic.text == "x" * MAX_TOPIC_CHARS


def test_refresh_keeps_a_live_room_and_its_members(rig: Rig) -> None:
    """--cluster: another node changed a registered room (or the node rejoins)."""
    _, alice = registered_dev(rig)
    _, bob = rig.member("Bob")
    rig.say(alice, "/voice Bob")
    live = rig.server.rooms[DEV]
    stored = rig.rooms.get(DEV)
    rules = dict(stored.rules)
    rules["settings"] = {**dict(rules.get("settings") or {}), "moderated": True}
    rig.rooms.update(DEV, rules=rules)
    rig.run()
    rig.server.moderation.registry.refresh(DEV)
    room = rig.server.rooms[DEV]
    assert room is live
    assert set(room.members) == {alice, bob}
    assert room.rules is not None
    assert room.rules.settings.moderated
    assert room.rules.speech_restricted
    assert bob in room.rules.voiced  # live grants stay


def test_refresh_revives_a_registered_room_that_is_not_live(rig: Rig) -> None:
    _, alice = registered_dev(rig)
    rig.say(alice, f"/part {DEV}")
    del rig.server.rooms[DEV]  # as on a node that has not seen it yet
    rig.server.moderation.registry.refresh("#nowhere")  # not registered: nothing
    assert "#nowhere" not in rig.server.rooms
    rig.server.moderation.registry.refresh(DEV)
    room = rig.server.rooms[DEV]
    assert room.rules is not None
    assert room.rules.founder == alice.account
    assert not room.members
