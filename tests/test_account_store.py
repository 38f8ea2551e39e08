"""The account stores (issue 13): one contract for both, and the file's refusals.

The contract runs against `MemoryAccountStore` (done on the next Clock
turn) and `SqliteAccountStore` (done from its writer thread through a
fake reactor's ``callFromThread`` queue, which the test runs), so the
in-memory fake cannot drift from the real store. It also runs against a
clustered node's `RedisAccountStore` (issue 19) on a real redis-server,
through test_cluster_stores' blocking client, done on the next Clock turn.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _redis import RedisServer, redis_server
from test_cluster_stores import sync_accounts
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent
from zope.interface import implementer

from twisted_chat.accounts import schema
from twisted_chat.accounts.sqlite import SqliteAccountStore
from twisted_chat.accounts.store import (
    Account,
    AccountStoreError,
    BaseAccountStore,
    MemoryAccountStore,
    Refusal,
)
from twisted_chat.core import names

HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2VjcmV0c2FsdA$SECRETHASHVALUE"
HASH2 = "$argon2id$v=19$m=19456,t=2,p=1$b3RoZXJzYWx0$OTHERHASHVALUE"


@implementer(IReactorFromThreads)
class ThreadReactor:
    """``callFromThread`` into a queue that the test thread runs."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[object, ...]]] = (
            queue.SimpleQueue()
        )
        self.ran_on: list[threading.Thread] = []

    def callFromThread(
        self,
        callable: Callable[..., Any],  # noqa: A002
        *args: object,
        **kwargs: object,
    ) -> None:
        assert not kwargs
        self.calls.put((callable, args))

    def run_one(self, timeout: float = 10.0) -> None:
        f, args = self.calls.get(timeout=timeout)
        self.ran_on.append(threading.current_thread())
        f(*args)


class Harness:
    def __init__(
        self,
        kind: str,
        tmp_path: Path,
        max_accounts: int = 5,
        redis: RedisServer | None = None,
    ) -> None:
        self.kind = kind
        self.redis = redis
        self.path = str(tmp_path / "state" / "accounts.sqlite3")
        self.max_accounts = max_accounts
        self.clock = Clock()
        self.reactor = ThreadReactor()
        self.store: BaseAccountStore = self.open()

    def open(self) -> BaseAccountStore:
        if self.kind == "memory":
            return MemoryAccountStore(self.clock, max_accounts=self.max_accounts)
        if self.kind == "redis":
            assert self.redis is not None
            return sync_accounts(self.redis, self.clock, max_accounts=self.max_accounts)
        return SqliteAccountStore.open(
            self.path, reactor=self.reactor, max_accounts=self.max_accounts
        )

    def settle(self) -> None:
        """Deliver every outstanding done callback."""
        if isinstance(self.store, SqliteAccountStore):
            while self.store.pending_writes:
                self.reactor.run_one()
        else:
            self.clock.advance(0)

    def break_writes(self) -> None:
        if self.redis is not None:
            self.redis.cli("SET", "tc:accounts:v", "not a number")  # INCR fails
        elif isinstance(self.store, MemoryAccountStore):
            self.store.fail_writes = True
        else:
            with sqlite3.connect(self.path) as other:
                other.execute("DROP TABLE accounts")
            other.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    with contextlib.ExitStack() as servers:
        redis = (
            servers.enter_context(redis_server()) if request.param == "redis" else None
        )
        harness = Harness(request.param, tmp_path, redis=redis)
        yield harness
        harness.store.close()


def test_create_then_get_by_any_spelling_of_the_name(h: Harness) -> None:
    done: list[bool] = []
    account = h.store.create("Alice", HASH, 100.0, done.append)
    assert isinstance(account, Account)
    assert account == Account(names.name_key("Alice"), "Alice", HASH, 100.0, None)
    assert h.store.get("alice") == account  # at once, before the write
    assert h.store.get("ALICE") == account
    assert done == []  # never before the call returned
    h.settle()
    assert done == [True]
    assert len(h.store) == 1
    assert h.store.get("bob") is None


def test_a_taken_name_is_refused_by_key(h: Harness) -> None:
    h.store.create("Alice", HASH, 1.0)
    done: list[bool] = []
    assert h.store.create("ALICE", HASH2, 2.0, done.append) is Refusal.EXISTS
    h.settle()
    assert done == []
    stored = h.store.get("alice")
    assert stored is not None
    assert stored.password_hash == HASH


def test_set_password_record_login_delete(h: Harness) -> None:
    done: list[bool] = []
    h.store.create("alice", HASH, 1.0, done.append)
    changed = h.store.set_password("Alice", HASH2, done.append)
    assert isinstance(changed, Account)
    assert changed.password_hash == HASH2
    logged = h.store.record_login("alice", 50.0, done.append)
    assert isinstance(logged, Account)
    assert logged.last_login == 50.0
    assert logged.password_hash == HASH2
    assert h.store.delete("alice", done.append) == logged
    assert h.store.get("alice") is None
    h.settle()
    assert done == [True, True, True, True]


def test_changes_to_a_missing_account_are_refused(h: Harness) -> None:
    assert h.store.set_password("nobody", HASH) is Refusal.NO_SUCH_ACCOUNT
    assert h.store.record_login("nobody", 1.0) is Refusal.NO_SUCH_ACCOUNT
    assert h.store.delete("nobody") is Refusal.NO_SUCH_ACCOUNT


def test_the_number_of_accounts_is_bounded(h: Harness) -> None:
    for n in range(h.max_accounts):
        assert isinstance(h.store.create(f"user{n}", HASH, 1.0), Account)
    assert h.store.create("onemore", HASH, 1.0) is Refusal.FULL
    assert len(h.store) == h.max_accounts
    h.store.delete("user0")
    assert isinstance(h.store.create("onemore", HASH, 1.0), Account)
    h.settle()


def test_a_closed_store_refuses_changes(h: Harness) -> None:
    h.store.create("alice", HASH, 1.0)
    h.settle()
    h.store.close()
    assert h.store.create("bob", HASH, 1.0) is Refusal.CLOSED
    assert h.store.set_password("alice", HASH2) is Refusal.CLOSED
    assert h.store.record_login("alice", 2.0) is Refusal.CLOSED
    assert h.store.delete("alice") is Refusal.CLOSED
    assert h.store.get("alice") is not None  # reads still answer


def test_a_failed_write_is_undone_reported_and_logged_without_the_hash(
    h: Harness, log_events: list[LogEvent]
) -> None:
    h.break_writes()
    done: list[bool] = []
    h.store.create("alice", HASH, 1.0, done.append)
    h.settle()
    assert done == [False]
    assert h.store.get("alice") is None
    failures = [e for e in log_events if "write failed" in (formatEvent(e) or "")]
    assert failures
    for event in log_events:
        assert "SECRETHASHVALUE" not in repr(event)


def test_no_hash_appears_in_any_log_event(
    h: Harness, log_events: list[LogEvent]
) -> None:
    h.store.create("alice", HASH, 1.0)
    h.store.set_password("alice", HASH2)
    h.store.record_login("alice", 2.0)
    h.store.delete("alice")
    h.settle()
    assert "SECRETHASHVALUE" not in repr(h.store.get("alice"))
    account = h.store.create("bob", HASH, 1.0)
    assert "SECRETHASHVALUE" not in repr(account)
    h.settle()
    for event in log_events:
        text = repr(event) + (formatEvent(event) or "")
        assert "HASHVALUE" not in text


# -- the SQLite file ------------------------------------------------------------


def sqlite_harness(tmp_path: Path, max_accounts: int = 5) -> Harness:
    return Harness("sqlite", tmp_path, max_accounts)


def test_accounts_survive_a_restart(tmp_path: Path) -> None:
    first = sqlite_harness(tmp_path)
    first.store.create("Alice", HASH, 1.0)
    first.store.create("bob", HASH, 2.0)
    first.store.record_login("alice", 9.0)
    first.store.set_password("bob", HASH2)
    first.store.create("carol", HASH, 3.0)
    first.store.delete("carol")
    first.settle()
    assert first.reactor.ran_on == [threading.current_thread()] * 6
    before = {n: first.store.get(n) for n in ("alice", "bob", "carol")}
    first.store.close()
    second = sqlite_harness(tmp_path)
    try:
        after = {n: second.store.get(n) for n in ("alice", "bob", "carol")}
        assert after == before
        assert after["carol"] is None
        assert len(second.store) == 2
    finally:
        second.store.close()


def test_a_reopened_file_still_enforces_the_bound(tmp_path: Path) -> None:
    first = sqlite_harness(tmp_path, max_accounts=2)
    first.store.create("a1", HASH, 1.0)
    first.store.create("a2", HASH, 1.0)
    first.settle()
    first.store.close()
    second = sqlite_harness(tmp_path, max_accounts=2)
    assert second.store.create("a3", HASH, 1.0) is Refusal.FULL
    second.store.close()


def refused(path: Path) -> str:
    with pytest.raises(AccountStoreError) as info:
        SqliteAccountStore.open(str(path), reactor=ThreadReactor())
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite3"
    path.write_bytes(b"this is not a database at all\n" * 200)
    assert "not a database" in refused(path)


def test_a_damaged_file_is_refused(tmp_path: Path) -> None:
    h = sqlite_harness(tmp_path, max_accounts=5000)
    for n in range(2000):
        h.store.create(f"user{n}", HASH, 1.0)
    h.settle()
    h.store.close()
    path = Path(h.path)
    data = bytearray(path.read_bytes())
    assert len(data) > 4 * 4096
    data[4096 * 2 : 4096 * 3] = b"\xa5" * 4096  # a page of the table
    path.write_bytes(bytes(data))
    message = refused(path)
    assert "malformed" in message or "damaged" in message


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    h = sqlite_harness(tmp_path)
    h.store.close()
    with sqlite3.connect(h.path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    conn.close()
    assert "schema version 99, newer" in refused(Path(h.path))


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    conn.close()
    assert "another program" in refused(path)


def test_an_unwritable_path_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    assert "cannot create directory" in refused(blocker / "state" / "a.sqlite3")


def test_a_read_only_file_is_refused(tmp_path: Path) -> None:
    h = sqlite_harness(tmp_path)
    h.store.close()
    uri = f"file:{h.path}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    with pytest.raises(sqlite3.Error):
        schema.prepare(conn, names.KEY_VERSION, names.name_key)
    conn.close()


def test_a_new_key_function_rekeys_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = sqlite_harness(tmp_path)
    h.store.create("Alice", HASH, 1.0)
    h.settle()
    h.store.close()
    monkeypatch.setattr(names, "KEY_VERSION", "test-upper")
    monkeypatch.setattr(names, "name_key", str.upper)
    again = SqliteAccountStore.open(h.path, reactor=ThreadReactor())
    try:
        assert again._accounts.keys() == {"ALICE"}
        assert again._accounts["ALICE"].name == "Alice"
    finally:
        again.close()


def test_names_that_meet_under_a_new_key_function_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = sqlite_harness(tmp_path)
    h.store.create("Ann", HASH, 1.0)
    h.store.create("Bob", HASH, 2.0)
    h.settle()
    h.store.close()
    monkeypatch.setattr(names, "KEY_VERSION", "test-constant")
    monkeypatch.setattr(names, "name_key", lambda _name: "same")
    message = refused(Path(h.path))
    assert "'Ann' and 'Bob'" in message


# -- the server bans (schema version 2) ----------------------------------------------


def ban_row(pattern: str, at: float = 1.0, ends: float | None = None) -> dict[str, Any]:
    return {
        "pattern": pattern,
        "set_by": "oper",
        "reason": "spam",
        "set_at": at,
        "expires_at": ends,
    }


def test_server_bans_start_empty_and_are_replaced_whole(h: Harness) -> None:
    assert h.store.server_bans() == []
    done: list[bool] = []
    first = [ban_row("203.0.113.7"), ban_row("account:Mallory", 2.0, 99.0)]
    h.store.save_server_bans(first, done.append)
    assert h.store.server_bans() == first
    assert done == []  # never before the call returned
    second = [ban_row("198.51.100.0/24", 3.0)]
    h.store.save_server_bans(second, done.append)
    h.settle()
    assert done == [True, True]
    assert h.store.server_bans() == second
    h.store.save_server_bans([], done.append)
    h.settle()
    assert h.store.server_bans() == []


def test_server_bans_are_copies(h: Harness) -> None:
    row = ban_row("203.0.113.7")
    h.store.save_server_bans([row])
    row["reason"] = "changed by the caller"
    got = h.store.server_bans()
    got[0]["reason"] = "changed again"  # type: ignore[index]
    assert h.store.server_bans() == [ban_row("203.0.113.7")]
    h.settle()


def test_the_number_of_server_bans_is_bounded(h: Harness) -> None:
    from twisted_chat.accounts.store import MAX_SERVER_BANS
    from twisted_chat.core.bans import BAN_LIST_SIZE

    assert MAX_SERVER_BANS == BAN_LIST_SIZE
    rows = [ban_row(f"10.0.{n // 256}.{n % 256}") for n in range(MAX_SERVER_BANS)]
    h.store.save_server_bans(rows)
    with pytest.raises(ValueError, match="at most"):
        h.store.save_server_bans([*rows, ban_row("192.0.2.1")])
    assert len(h.store.server_bans()) == MAX_SERVER_BANS
    h.settle()


@pytest.mark.parametrize(
    "bad",
    [
        {"pattern": "1.2.3.4", "set_by": "o", "reason": "r"},
        {**ban_row("1.2.3.4"), "set_at": "yesterday"},
        {**ban_row("1.2.3.4"), "pattern": None},
        {**ban_row("1.2.3.4"), "expires_at": True},
    ],
)
def test_a_row_of_another_shape_is_refused(h: Harness, bad: dict[str, Any]) -> None:
    h.store.save_server_bans([ban_row("203.0.113.7")])
    with pytest.raises(ValueError, match="not a server ban row"):
        h.store.save_server_bans([bad])
    assert h.store.server_bans() == [ban_row("203.0.113.7")]
    h.settle()


def test_rows_made_by_the_core_round_trip(h: Harness) -> None:
    from twisted_chat.core.bans import Ban, parse_pattern

    bans = [
        Ban(parse_pattern("2001:db8::/48"), "alice", "", 5.0),
        Ban(parse_pattern("account:Zoë"), "alice", "ban evasion", 6.0, 7.0),
    ]
    h.store.save_server_bans([ban.to_dict() for ban in bans])
    h.settle()
    assert [Ban.from_dict(row) for row in h.store.server_bans()] == bans


def test_a_closed_store_ignores_a_save(h: Harness) -> None:
    h.store.save_server_bans([ban_row("203.0.113.7")])
    h.settle()
    h.store.close()
    done: list[bool] = []
    h.store.save_server_bans([], done.append)
    h.settle()
    assert done == []
    assert h.store.server_bans() == [ban_row("203.0.113.7")]


def test_a_failed_save_is_undone_and_reported(
    h: Harness, log_events: list[LogEvent]
) -> None:
    h.store.save_server_bans([ban_row("203.0.113.7")])
    h.settle()
    if h.kind == "redis":
        h.break_writes()
    elif isinstance(h.store, MemoryAccountStore):
        h.store.fail_writes = True
    else:
        with sqlite3.connect(h.path) as other:
            other.execute("DROP TABLE server_bans")
        other.close()
    done: list[bool] = []
    h.store.save_server_bans([ban_row("198.51.100.9")], done.append)
    h.settle()
    assert done == [False]
    assert h.store.server_bans() == [ban_row("203.0.113.7")]
    assert any("bans write failed" in (formatEvent(e) or "") for e in log_events)


def test_server_bans_survive_a_restart_in_order(tmp_path: Path) -> None:
    first = sqlite_harness(tmp_path)
    rows = [ban_row("203.0.113.7", 1.0), ban_row("account:Eve", 2.0, 50.5)]
    rows += [ban_row("192.0.2.0/24", 0.5)]
    first.store.save_server_bans(rows[:1])
    first.store.create("alice", HASH, 1.0)
    first.store.save_server_bans(rows)
    first.settle()
    first.store.close()
    second = sqlite_harness(tmp_path)
    try:
        assert second.store.server_bans() == rows
        assert second.store.get("alice") is not None
    finally:
        second.store.close()


def test_close_writes_a_queued_save(tmp_path: Path) -> None:
    first = sqlite_harness(tmp_path)
    first.store.save_server_bans([ban_row("203.0.113.7")])
    first.store.close()  # before any answer reached the "reactor"
    second = sqlite_harness(tmp_path)
    try:
        assert second.store.server_bans() == [ban_row("203.0.113.7")]
    finally:
        second.store.close()


def test_a_version_1_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state" / "accounts.sqlite3"
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        for statement in schema.SCHEMA_V1:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute("INSERT INTO meta VALUES ('key_version', ?)", (names.KEY_VERSION,))
        conn.execute(schema.INSERT, (names.name_key("Alice"), "Alice", HASH, 1.0, None))
    conn.close()
    h = sqlite_harness(tmp_path)
    try:
        assert h.store.get("alice") == Account(
            names.name_key("Alice"), "Alice", HASH, 1.0
        )
        assert h.store.server_bans() == []
        h.store.save_server_bans([ban_row("203.0.113.7")])
        h.settle()
    finally:
        h.store.close()
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute(
            "SELECT value FROM meta WHERE name = 'schema_version'"
        ).fetchone()
        assert version == str(schema.SCHEMA_VERSION) == "3"
        assert conn.execute("SELECT pattern FROM server_bans").fetchall() == [
            ("203.0.113.7",)
        ]
        assert conn.execute("SELECT key FROM rooms").fetchall() == []
    conn.close()


def test_a_file_missing_its_bans_table_is_refused(tmp_path: Path) -> None:
    h = sqlite_harness(tmp_path)
    h.store.close()
    with sqlite3.connect(h.path) as conn:
        conn.execute("DROP TABLE server_bans")
    conn.close()
    assert "no such table: server_bans" in refused(Path(h.path))


def test_a_damaged_ban_row_is_refused(tmp_path: Path) -> None:
    h = sqlite_harness(tmp_path)
    h.store.close()
    with sqlite3.connect(h.path) as conn:
        conn.execute(schema.BANS_INSERT, ("1.2.3.4", "o", "r", "not a time", None))
    conn.close()
    assert "not a server ban row" in refused(Path(h.path))


def test_a_new_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        h = sqlite_harness(tmp_path)
        h.store.create("alice", HASH, 1.0)
        h.settle()
        modes = {
            path.name: stat.S_IMODE(path.stat().st_mode)
            for path in Path(h.path).parent.iterdir()
        }
        h.store.close()
    finally:
        os.umask(old)
    assert modes["accounts.sqlite3"] == 0o600
    assert modes["accounts.sqlite3-wal"] == 0o600
