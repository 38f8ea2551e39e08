"""The registered-rooms stores (issue 14): one contract for both, and the file.

The contract runs against `MemoryRoomStore` (written on the next Clock
turn) and the `SqliteRoomStore` of an `SqliteAccountStore` (written by its
writer thread, answered through a fake reactor's ``callFromThread`` queue
that the test runs), so the fake cannot drift from the real store; and
against a clustered node's `RedisRoomStore` (issue 19) on a real
redis-server, through test_cluster_stores' blocking client.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest
from _redis import RedisServer, redis_server
from test_account_store import HASH, ThreadReactor
from test_cluster_stores import sync_rooms
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent

from twisted_chat.accounts import schema
from twisted_chat.accounts.rooms import (
    MAX_REGISTERED_ROOMS,
    MAX_ROOMS_PER_FOUNDER,
    ROOM_COLUMNS,
    ROOMS_UPSERT,
    BaseRoomStore,
    MemoryRoomStore,
    SqliteRoomStore,
    room_row,
)
from twisted_chat.accounts.sqlite import SqliteAccountStore
from twisted_chat.core import names
from twisted_chat.core.account_ports import Refusal
from twisted_chat.core.names import RoomName
from twisted_chat.core.room_ports import (
    MAX_RULES_BYTES,
    RegisteredRoom,
    RoomStore,
    RoomTopic,
)

RULES = {
    "version": 1,
    "operators": ["alice", "bob"],
    "settings": {"moderated": True, "limit": 20, "key": "sésame"},
    "bans": [{"pattern": "account:Mallory", "set_at": 1.5, "expires_at": None}],
    "mutes": {"eve": 99.5},
}


def room(
    name: str, founder: str = "alice", at: float = 1.0, **kw: Any
) -> RegisteredRoom:
    parsed = RoomName.parse(name)
    return RegisteredRoom(parsed.key, parsed.display, names.name_key(founder), at, **kw)


class Harness:
    def __init__(
        self,
        kind: str,
        tmp_path: Path,
        max_rooms: int = 6,
        per_founder: int = 3,
        redis: RedisServer | None = None,
    ) -> None:
        self.kind = kind
        self.redis = redis
        self.path = str(tmp_path / "state" / "accounts.sqlite3")
        self.max_rooms, self.per_founder = max_rooms, per_founder
        self.clock = Clock()
        self.reactor = ThreadReactor()
        self.accounts: SqliteAccountStore | None = None
        self.store: BaseRoomStore = self.open()

    def open(self) -> BaseRoomStore:
        if self.kind == "memory":
            return MemoryRoomStore(
                self.clock, max_rooms=self.max_rooms, max_per_founder=self.per_founder
            )
        if self.redis is not None:
            return sync_rooms(
                self.redis,
                self.clock,
                max_rooms=self.max_rooms,
                max_per_founder=self.per_founder,
            )
        self.accounts = SqliteAccountStore.open(self.path, reactor=self.reactor)
        rooms = self.accounts.rooms
        rooms.max_rooms, rooms.max_per_founder = self.max_rooms, self.per_founder
        return rooms

    def settle(self) -> None:
        if self.accounts is not None:
            while self.accounts.pending_writes:
                self.reactor.run_one()
        else:
            self.clock.advance(0)

    def break_writes(self) -> None:
        if self.redis is not None:
            self.redis.cli("SET", "tc:rooms:v", "not a number")  # INCR fails
        elif isinstance(self.store, MemoryRoomStore):
            self.store.fail_writes = True
        else:
            with sqlite3.connect(self.path) as other:
                other.execute("DROP TABLE rooms")
            other.close()

    def mend_writes(self) -> None:
        """Undo `break_writes` (the memory and Redis stores)."""
        if self.redis is not None:
            self.redis.cli("SET", "tc:rooms:v", "0")
        else:
            assert isinstance(self.store, MemoryRoomStore)
            self.store.fail_writes = False

    def close(self) -> None:
        if self.accounts is not None:
            self.accounts.close()
        else:
            self.store.close()

    def reopen(self) -> None:
        """Close the file and open it again (the memory store has no file)."""
        assert self.kind == "sqlite"
        self.settle()
        self.close()
        self.store = self.open()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    with contextlib.ExitStack() as servers:
        redis = (
            servers.enter_context(redis_server()) if request.param == "redis" else None
        )
        harness = Harness(request.param, tmp_path, redis=redis)
        yield harness
        harness.close()


def test_both_stores_are_room_stores(h: Harness) -> None:
    store: RoomStore = h.store
    assert len(store) == 0
    assert store.all() == []


def test_register_then_get_at_once_and_done_later(h: Harness) -> None:
    done: list[bool] = []
    lobby = room("#Lobby", rules=RULES)
    assert h.store.register(lobby, done.append) is lobby
    assert h.store.get(RoomName.parse("#LOBBY").key) == lobby
    assert h.store.get(lobby.key) is lobby
    assert done == []  # never before the call returned
    h.settle()
    assert done == [True]
    assert h.store.all() == [lobby]
    assert len(h.store) == 1
    assert h.store.get(RoomName.parse("#other").key) is None


def test_a_registered_name_is_refused_by_key(h: Harness) -> None:
    h.store.register(room("#Lobby"))
    done: list[bool] = []
    assert h.store.register(room("#l0bby", "bob"), done.append) is Refusal.EXISTS
    h.settle()
    assert done == []


def test_update_rules_and_topic_and_drop(h: Harness) -> None:
    lobby = room("#lobby")
    h.store.register(lobby)
    done: list[bool] = []
    topic = RoomTopic("Welcome", "alice", 5.0)
    changed = h.store.update(lobby.key, topic=topic, done=done.append)
    assert isinstance(changed, RegisteredRoom)
    assert changed.topic == topic
    assert changed.rules == {}
    ruled = h.store.update(lobby.key, rules=RULES, done=done.append)
    assert isinstance(ruled, RegisteredRoom)
    assert (ruled.rules, ruled.topic) == (RULES, topic)
    cleared = h.store.update(lobby.key, topic=None)
    assert isinstance(cleared, RegisteredRoom)
    assert cleared.topic is None
    assert cleared.rules == RULES
    assert h.store.drop(lobby.key, done.append) == cleared
    assert h.store.get(lobby.key) is None
    h.settle()
    assert done == [True, True, True]


def test_changes_to_an_unregistered_room_are_refused(h: Harness) -> None:
    key = RoomName.parse("#nowhere").key
    assert h.store.update(key, rules={}) is Refusal.NO_SUCH_ROOM
    assert h.store.drop(key) is Refusal.NO_SUCH_ROOM


def test_the_rules_are_a_private_copy(h: Harness) -> None:
    rules: dict[str, Any] = {"operators": ["alice"]}
    lobby = room("#lobby", rules=rules)
    rules["operators"].append("mallory")
    h.store.register(lobby)
    assert h.store.get(lobby.key).rules == {"operators": ["alice"]}  # type: ignore[union-attr]
    h.settle()


@pytest.mark.parametrize(
    "bad",
    [
        {"when": float("nan")},
        {"who": {1, 2}},
        {1: "not a text key"},
        {"big": "x" * (MAX_RULES_BYTES + 1)},
        {"big": "é" * (MAX_RULES_BYTES // 2 + 1)},  # two bytes each
        ["not", "a", "mapping"],
    ],
)
def test_rules_that_are_not_bounded_json_are_refused(h: Harness, bad: Any) -> None:
    with pytest.raises(ValueError, match="rules"):
        room("#lobby", rules=bad)
    lobby = room("#lobby", rules={"ok": True})
    h.store.register(lobby)
    with pytest.raises(ValueError, match="rules"):
        h.store.update(lobby.key, rules=bad)
    assert h.store.get(lobby.key) is lobby
    h.settle()


def test_rules_up_to_the_bound_are_kept(h: Harness) -> None:
    filler = "x" * (MAX_RULES_BYTES - len('{"big":""}'))
    lobby = room("#lobby", rules={"big": filler})
    h.store.register(lobby)
    h.settle()
    if h.kind == "sqlite":
        h.reopen()
    assert h.store.get(lobby.key) == lobby


def test_the_number_of_rooms_is_bounded(h: Harness) -> None:
    for n in range(h.max_rooms):
        founder = f"founder{n // h.per_founder}"
        assert isinstance(h.store.register(room(f"#r{n}", founder)), RegisteredRoom)
    assert h.store.register(room("#onemore", "newcomer")) is Refusal.FULL
    assert len(h.store) == h.max_rooms
    h.store.drop(RoomName.parse("#r0").key)
    assert isinstance(h.store.register(room("#onemore", "newcomer")), RegisteredRoom)
    h.settle()


def test_the_rooms_of_one_founder_are_bounded(h: Harness) -> None:
    for n in range(h.per_founder):
        h.store.register(room(f"#alice{n}", "Alice", at=10.0 - n))
    assert h.store.register(room("#more", "ALICE")) is Refusal.TOO_MANY_FOUNDED
    assert isinstance(h.store.register(room("#bobs", "bob")), RegisteredRoom)
    founded = h.store.founded_by(names.name_key("alice"))
    assert [r.name for r in founded] == [
        "#alice2",
        "#alice1",
        "#alice0",
    ]  # oldest first
    assert h.store.founded_by(names.name_key("nobody")) == []
    h.settle()


def test_the_default_bounds(tmp_path: Path) -> None:
    store = MemoryRoomStore(Clock())
    assert (store.max_rooms, store.max_per_founder) == (10_000, 20)
    assert (MAX_REGISTERED_ROOMS, MAX_ROOMS_PER_FOUNDER) == (10_000, 20)
    accounts = SqliteAccountStore.open(
        str(tmp_path / "accounts.sqlite3"), reactor=ThreadReactor()
    )
    assert accounts.rooms.max_rooms == MAX_REGISTERED_ROOMS
    assert accounts.rooms.max_per_founder == MAX_ROOMS_PER_FOUNDER
    accounts.close()


def test_a_closed_store_refuses_changes(h: Harness) -> None:
    lobby = room("#lobby")
    h.store.register(lobby)
    h.settle()
    h.close()
    assert h.store.register(room("#other")) is Refusal.CLOSED
    assert h.store.update(lobby.key, rules={}) is Refusal.CLOSED
    assert h.store.drop(lobby.key) is Refusal.CLOSED
    assert h.store.get(lobby.key) == lobby  # reads still answer


def test_a_failed_register_is_undone_reported_and_logged(
    h: Harness, log_events: list[LogEvent]
) -> None:
    h.break_writes()
    done: list[bool] = []
    lobby = room("#lobby")
    h.store.register(lobby, done.append)
    h.settle()
    assert done == [False]
    assert h.store.get(lobby.key) is None
    assert any("room write failed" in (formatEvent(e) or "") for e in log_events)


def test_a_failed_update_or_drop_goes_back_to_what_was_saved(h: Harness) -> None:
    lobby = room("#lobby", rules={"n": 0})
    h.store.register(lobby)
    h.settle()
    h.break_writes()
    done: list[bool] = []
    h.store.update(lobby.key, rules={"n": 1}, done=done.append)
    h.settle()
    assert h.store.get(lobby.key) == lobby
    h.store.drop(lobby.key, done.append)
    h.settle()
    assert h.store.get(lobby.key) == lobby
    assert done == [False, False]


def test_changes_in_one_turn_are_one_write_and_the_last_wins(h: Harness) -> None:
    gate = threading.Event()
    if h.accounts is not None:  # hold the writer thread until the changes are in
        h.accounts._submit(lambda _conn: (gate.wait(10), lambda: None)[1])
    lobby = room("#lobby")
    done: list[bool] = []
    h.store.register(lobby, done.append)
    for n in range(50):
        h.store.update(lobby.key, rules={"n": n}, done=done.append)
    if h.accounts is not None:
        assert h.accounts.pending_writes == 2  # the gate and one write
        gate.set()
    else:
        assert len(h.clock.getDelayedCalls()) == 1
    h.settle()
    assert done == [True] * 51
    assert h.store.get(lobby.key).rules == {"n": 49}  # type: ignore[union-attr]
    if h.kind == "sqlite":
        h.reopen()
        assert h.store.get(lobby.key).rules == {"n": 49}  # type: ignore[union-attr]


def test_register_and_drop_in_one_turn_leave_nothing(h: Harness) -> None:
    lobby = room("#lobby")
    h.store.register(lobby)
    h.store.drop(lobby.key)
    h.settle()
    assert h.store.all() == []
    if h.kind == "sqlite":
        h.reopen()
        assert h.store.all() == []


def test_a_failure_does_not_undo_a_newer_change(h: Harness) -> None:
    """A change made after the failed write was taken keeps its own write."""
    lobby = room("#lobby", rules={"n": 0})
    h.store.register(lobby)
    h.settle()
    h.break_writes()
    h.store.update(lobby.key, rules={"n": 1})
    # Take the first write now, then change again before its answer.
    if h.kind != "sqlite":
        held: list[tuple[Any, ...]] = []
        h.store._answer = lambda *args: held.append(args)  # type: ignore[method-assign]
        h.clock.advance(0)  # the write is taken and fails; its answer held back
        del h.store._answer
        h.mend_writes()
        newer = h.store.update(lobby.key, rules={"n": 2})
        h.store._answer(*held[0])
        assert h.store.get(lobby.key) is newer
        h.settle()
        assert h.store.get(lobby.key) is newer
    else:
        assert h.accounts is not None
        answer, args = h.reactor.calls.get(timeout=10)  # the failure, held back
        with sqlite3.connect(h.path) as other:
            other.execute(schema.SCHEMA_V3[0])
        other.close()
        newer = h.store.update(lobby.key, rules={"n": 2})
        answer(*args)
        assert h.store.get(lobby.key) is newer
        h.settle()
        assert h.store.get(lobby.key) is newer
        h.reopen()
        assert h.store.get(lobby.key) == newer


# -- the file ------------------------------------------------------------------


def sqlite_harness(tmp_path: Path) -> Harness:
    return Harness("sqlite", tmp_path)


def test_registered_rooms_survive_a_restart(tmp_path: Path) -> None:
    h = sqlite_harness(tmp_path)
    topic = RoomTopic("Ünïcode topic", "Bob", 7.25)
    lobby = room("#Lobby", "Alice", 3.0, topic=topic, rules=RULES)
    h.store.register(lobby)
    h.store.register(room("#gone"))
    h.store.register(room("#plain", "bob", 4.0))
    h.store.drop(RoomName.parse("#gone").key)
    h.accounts.create("Alice", HASH, 1.0)  # type: ignore[union-attr]
    before = h.store.all()
    h.reopen()
    try:
        assert h.store.all() == before
        assert h.store.get(lobby.key) == lobby
        assert h.accounts.get("alice") is not None  # type: ignore[union-attr]
    finally:
        h.close()


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    h = sqlite_harness(tmp_path)
    lobby = room("#lobby", rules=RULES)
    h.store.register(lobby)
    h.close()  # before any answer reached the "reactor"
    again = sqlite_harness(tmp_path)
    try:
        assert again.store.get(lobby.key) == lobby
    finally:
        again.close()


def test_a_version_2_file_keeps_its_accounts_and_bans(tmp_path: Path) -> None:
    path = tmp_path / "state" / "accounts.sqlite3"
    path.parent.mkdir()
    ban = ("203.0.113.7", "oper", "spam", 1.0, None)
    with sqlite3.connect(path) as conn:
        for statement in schema.SCHEMA_V1 + schema.SCHEMA_V2:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
        conn.execute("INSERT INTO meta VALUES ('key_version', ?)", (names.KEY_VERSION,))
        conn.execute(schema.INSERT, (names.name_key("Alice"), "Alice", HASH, 1.0, 5.0))
        conn.execute(schema.BANS_INSERT, ban)
    conn.close()
    h = sqlite_harness(tmp_path)
    try:
        account = h.accounts.get("alice")  # type: ignore[union-attr]
        assert account is not None
        assert account.last_login == 5.0
        assert h.accounts.server_bans()[0]["pattern"] == "203.0.113.7"  # type: ignore[union-attr]
        assert h.store.all() == []
        h.store.register(room("#lobby"))
        h.reopen()
        assert [r.name for r in h.store.all()] == ["#lobby"]
    finally:
        h.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute(
            "SELECT value FROM meta WHERE name = 'schema_version'"
        ).fetchone() == ("3",)
    conn.close()


def put_row(path: str, *values: object) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(ROOMS_UPSERT, values)
    conn.close()


@pytest.mark.parametrize(
    "damage",
    [
        {"rules": "{not json"},
        {"rules": "[1, 2]"},
        {"rules": json.dumps({"big": "x" * MAX_RULES_BYTES})},
        {"created_at": "yesterday"},
        {"founder": None},
        {"topic_by": None},
        {"topic_at": "noon"},
        {"key": "#not-its-name"},
    ],
)
def test_a_damaged_row_is_skipped_and_logged(
    tmp_path: Path, log_events: list[LogEvent], damage: dict[str, object]
) -> None:
    h = sqlite_harness(tmp_path)
    good = room("#good")
    h.store.register(good)
    h.settle()
    h.close()
    sample = room("#bad", topic=RoomTopic("t", "a", 1.0))
    bad = dict(zip(ROOM_COLUMNS, room_row(sample), strict=True))
    bad.update(damage)
    with sqlite3.connect(h.path) as conn:
        conn.execute("DROP TABLE rooms")  # without NOT NULL, to store any damage
        conn.execute(
            "CREATE TABLE rooms (key PRIMARY KEY, name, founder, created_at,"
            " topic, topic_by, topic_at, rules)"
        )
    conn.close()
    put_row(h.path, *room_row(good))
    put_row(h.path, *bad.values())
    again = sqlite_harness(tmp_path)
    try:
        assert again.store.all() == [good]
        warnings = [
            formatEvent(e) or ""
            for e in log_events
            if "skipped" in (formatEvent(e) or "")
        ]
        assert len(warnings) == 1
        assert "'#bad'" in warnings[0]
        assert "\n" not in warnings[0]
        # The name can be registered again: the row is replaced.
        fresh = room("#bad", "bob")
        assert again.store.register(fresh) is fresh
        again.reopen()
        assert again.store.get(fresh.key) == fresh
    finally:
        again.close()


def test_the_file_stays_refused_when_the_rooms_table_is_missing(tmp_path: Path) -> None:
    h = sqlite_harness(tmp_path)
    h.close()
    with sqlite3.connect(h.path) as conn:
        conn.execute("DROP TABLE rooms")
    conn.close()
    from test_account_store import refused

    message = refused(Path(h.path))
    assert "no such table: rooms" in message


def test_a_new_key_function_rekeys_rooms_and_founders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = sqlite_harness(tmp_path)
    h.accounts.create("Alice", HASH, 1.0)  # type: ignore[union-attr]
    h.store.register(room("#Lobby", "Alice", rules=RULES))
    h.store.register(room("#Orphan", "Gone"))
    h.settle()
    h.close()
    monkeypatch.setattr(names, "KEY_VERSION", "test-upper")
    monkeypatch.setattr(names, "name_key", str.upper)
    again = SqliteAccountStore.open(h.path, reactor=ThreadReactor())
    try:
        lobby = again.rooms.get("#LOBBY")
        assert lobby is not None
        assert (lobby.name, lobby.founder, lobby.rules) == ("#Lobby", "ALICE", RULES)
        orphan = again.rooms.get("#ORPHAN")
        assert orphan is not None
        assert orphan.founder == "GONE"
    finally:
        again.close()


def test_rooms_that_meet_under_a_new_key_function_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = sqlite_harness(tmp_path)
    h.store.register(room("#one"))
    h.store.register(room("#two"))
    h.settle()
    h.close()
    monkeypatch.setattr(names, "KEY_VERSION", "test-constant")
    monkeypatch.setattr(names, "name_key", lambda _name: "same")
    from test_account_store import refused

    assert "'#one' and '#two'" in refused(Path(h.path))


def test_the_sqlite_rooms_store_is_the_accounts_files(tmp_path: Path) -> None:
    h = sqlite_harness(tmp_path)
    try:
        assert isinstance(h.store, SqliteRoomStore)
        assert h.store.path == h.path
        evolved = attrs.evolve(room("#lobby"), founder="bob")
        h.store.register(evolved)
        h.settle()
        with sqlite3.connect(h.path) as conn:
            rows = conn.execute("SELECT key, founder FROM rooms").fetchall()
        conn.close()
        assert rows == [(evolved.key, "bob")]
    finally:
        h.close()
