"""Contract tests for `twisted_chat.history`: one suite, every store.

The ``make_store`` fixture is parametrized over `MemoryStore` and
`SqliteStore` (a file under ``tmp_path``) with each writer, a thread and a
child process (`ProcessLink`), as txacme runs one suite over its
stores, and a clustered node's `ClusterHistory` (issue 19: a MemoryStore
cache over Redis streams, with a real redis-server and link).
SQLite-only behaviour (files, start-up checks, backups) follows, run
with both writers too, then the writer process's own behaviour. Nothing
here sleeps: the writer is waited for through the Deferreds of ``flush()``
and ``stop()``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import signal
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs
import pytest
import pytest_twisted
from test_cluster_history import cluster_link
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger, formatEvent
from zope.interface.verify import verifyObject

from twisted_chat.cluster.history import ClusterHistory
from twisted_chat.core import lines
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.records import StoredMessage, StoredTopic, format_history_line
from twisted_chat.core.settings import Settings
from twisted_chat.core.store import MAX_RECENT
from twisted_chat.history import memory as history_store
from twisted_chat.history import reader as history_reader
from twisted_chat.history import schema as history_schema
from twisted_chat.history import writer as history_writer
from twisted_chat.history import writer_core
from twisted_chat.history.memory import (
    HistoryStoreError,
    IHistoryStore,
    MemoryStore,
    Tail,
)
from twisted_chat.history.process import ProcessLink
from twisted_chat.history.schema import SCHEMA_VERSION, TopicRow
from twisted_chat.history.sqlite import STOP_TIMEOUT, SqliteStore
from twisted_chat.history.thread import ThreadLink
from twisted_chat.history.wire import (
    OP_FLUSH,
    OP_LINES,
    OP_STOP,
    OP_TOPIC,
    REPORT_COMMITTED,
    Committed,
    FrameDecoder,
    Marker,
    Op,
    Topic,
    Turn,
    decode_ops,
    encode_frame,
    encode_ops,
)
from twisted_chat.testing import RecordingClient

if TYPE_CHECKING:
    from pathlib import Path

    from twisted.internet.interfaces import IProcessTransport, IReactorFromThreads
    from twisted.logger import ILogObserver

#: The tables of a file of the first release (schema version 1: a row per
#: message), for the upgrade tests here and in test_history_rekey.
V1_TABLES = """
    CREATE TABLE messages (id INTEGER PRIMARY KEY, room_key TEXT NOT NULL,
        room TEXT NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL,
        action INTEGER NOT NULL, at REAL NOT NULL);
    CREATE INDEX messages_room_id ON messages (room_key, id);
    CREATE TABLE topics (room_key TEXT PRIMARY KEY, room TEXT NOT NULL,
        text TEXT NOT NULL, set_by TEXT NOT NULL, set_at REAL NOT NULL);
"""

# Long enough that nothing is committed before the test asks for it.
NEVER = 3600.0

MakeStore = Callable[..., IHistoryStore]
OpenSqlite = Callable[..., SqliteStore]


_F = TypeVar("_F", bound=Callable[..., Any])


def _typed(decorator: Any) -> Callable[[_F], _F]:
    """Give pytest_twisted's (untyped) decorators a type mypy --strict accepts."""
    return cast("Callable[[_F], _F]", decorator)


ensure_deferred = _typed(pytest_twisted.ensureDeferred)
async_yield_fixture = _typed(pytest_twisted.async_yield_fixture)


def _reactor() -> IReactorFromThreads:
    return cast("IReactorFromThreads", reactor)


def msg(
    room: str, n: int, *, at: float = 1_000.0, action: bool = False
) -> StoredMessage:
    """Message number ``n`` in ``room`` (the key is the lower-cased name)."""
    return StoredMessage(
        room_key=room.lower(),
        room=room,
        sender=f"nick{n}",
        text=f"text {n}",
        action=action,
        at=at + n,
    )


def say(store: IHistoryStore, message: StoredMessage) -> None:
    """Hand ``message`` to ``store`` as the chat core does: its room's line."""
    shape = lines.room_action if message.action else lines.room_message
    line = shape(message.room, message.sender, message.text)
    store.append_lines(message.room_key, message.room, message.at, line)


def writer_process(store: IHistoryStore) -> IProcessTransport | None:
    """The store's writer process, None while none runs."""
    link = cast("SqliteStore", store)._link
    assert isinstance(link, ProcessLink)
    return link.process


def running_writer(store: IHistoryStore) -> IProcessTransport:
    """The store's writer process, which must be running."""
    process = writer_process(store)
    assert process is not None
    return process


def thread_link(store: SqliteStore) -> ThreadLink:
    """The store's link to its writer thread."""
    link = store._link
    assert isinstance(link, ThreadLink)
    return link


def close_thread_writer(store: SqliteStore) -> None:
    """Close the writer connection of a store whose thread never started."""
    thread_link(store).core.close()


def has_process_writer(store: IHistoryStore) -> bool:
    """Whether ``store`` writes through a child process."""
    return isinstance(store, SqliteStore) and isinstance(store._link, ProcessLink)


def texts(messages: list[StoredMessage]) -> list[str]:
    return [m.text for m in messages]


def capture_log(store: SqliteStore) -> list[dict[str, Any]]:
    """Send the store's log events to a list (written from the writer thread)."""
    events: list[dict[str, Any]] = []
    store._log = Logger(observer=cast("ILogObserver", events.append))
    return events


@async_yield_fixture
async def cleanup() -> AsyncGenerator[list[IHistoryStore], None]:
    """Stores made by a test; all are stopped (idempotently) afterwards."""
    stores: list[IHistoryStore] = []
    yield stores
    for store in stores:
        await store.stop()


WRITERS = ["thread", "process"]


def _sqlite_opener(
    tmp_path: Path, cleanup: list[IHistoryStore], writer: str
) -> OpenSqlite:
    def open_(path: Path | None = None, **kwargs: Any) -> SqliteStore:
        kwargs.setdefault("writer", writer)
        store = SqliteStore.open(
            str(path or tmp_path / "history.db"), reactor=_reactor(), **kwargs
        )
        cleanup.append(store)
        return store

    return open_


@pytest.fixture(params=WRITERS)
def open_sqlite(
    request: pytest.FixtureRequest, tmp_path: Path, cleanup: list[IHistoryStore]
) -> OpenSqlite:
    """Open (not start) an SqliteStore at ``tmp_path/history.db`` by default,
    once with each writer (thread, process)."""
    return _sqlite_opener(tmp_path, cleanup, request.param)


@pytest.fixture(params=["memory", *WRITERS, "cluster"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, cleanup: list[IHistoryStore]
) -> MakeStore:
    """Make a started store of each kind with the given retention settings."""
    # Started here, outside the test's greenlet: the test cannot wait for it.
    link = (
        request.getfixturevalue("cluster_link") if request.param == "cluster" else None
    )

    def make(
        *,
        max_per_room: int = 10_000,
        max_age_days: float = 30,
        flush_interval: float = 0.1,
    ) -> IHistoryStore:
        store: IHistoryStore
        if request.param == "memory":
            store = MemoryStore(max_per_room=max_per_room, max_age_days=max_age_days)
        elif link is not None:  # "cluster"
            memory = MemoryStore(max_per_room=max_per_room, max_age_days=max_age_days)
            store = ClusterHistory(link, memory, max_per_room)
            cleanup.append(store)
        else:
            store = _sqlite_opener(tmp_path, cleanup, request.param)(
                max_per_room=max_per_room,
                max_age_days=max_age_days,
                flush_interval=flush_interval,
            )
        store.start()
        return store

    return make


__all__ = ["cluster_link"]  # the fixture, for pytest

# -- the contract ------------------------------------------------------------


def test_provides_interface(make_store: MakeStore) -> None:
    """Every store provides IHistoryStore."""
    assert verifyObject(IHistoryStore, make_store())


@ensure_deferred
async def test_recent_is_oldest_first_and_limited(make_store: MakeStore) -> None:
    """recent() returns the last `limit` messages of a room, oldest first."""
    store = make_store()
    for n in range(5):
        say(store, msg("#a", n))
    assert texts(store.recent("#a", 3)) == ["text 2", "text 3", "text 4"]
    await store.flush()
    assert store.recent("#a", 10) == [msg("#a", n) for n in range(5)]
    assert store.recent("#a", 1) == [msg("#a", 4)]
    assert store.recent("#a", 0) == []


def test_recent_clamps_limit(make_store: MakeStore) -> None:
    """A limit above MAX_RECENT returns the last MAX_RECENT messages."""
    store = make_store()
    for n in range(MAX_RECENT + 10):
        say(store, msg("#a", n))
    recent = store.recent("#a", 10 * MAX_RECENT)
    assert len(recent) == MAX_RECENT
    assert recent[-1] == msg("#a", MAX_RECENT + 9)


def test_recent_includes_queued_messages(make_store: MakeStore) -> None:
    """Messages not yet committed show in recent(), read cold or warm."""
    store = make_store(flush_interval=NEVER)
    say(store, msg("#cold", 1))
    assert store.recent("#warm", 5) == []
    say(store, msg("#warm", 1))
    say(store, msg("#warm", 2))
    assert store.recent("#cold", 5) == [msg("#cold", 1)]
    assert store.recent("#warm", 5) == [msg("#warm", 1), msg("#warm", 2)]


@ensure_deferred
async def test_recent_merges_committed_and_queued(make_store: MakeStore) -> None:
    """A room read first after some commits shows committed then queued, once."""
    store = make_store(flush_interval=NEVER)
    say(store, msg("#a", 1))
    say(store, msg("#a", 2))
    await store.flush()
    say(store, msg("#a", 3))
    assert texts(store.recent("#a", 10)) == ["text 1", "text 2", "text 3"]
    say(store, msg("#a", 4))
    assert texts(store.recent("#a", 10)) == ["text 1", "text 2", "text 3", "text 4"]


@ensure_deferred
async def test_append_lines_takes_a_turn_apart(make_store: MakeStore) -> None:
    """A turn's wire lines, handed over at once, read back as its messages."""
    store = make_store()
    store.recent("#a", 5)  # warm the tail cache of one room, not the other
    said_a = [msg("#A", 1), msg("#A", 2, action=True), msg("#A", 3)]
    data = b"".join(
        (lines.room_action if m.action else lines.room_message)(
            m.room, m.sender, m.text
        )
        for m in said_a
    )
    store.append_lines("#a", "#A", 1_500.0, data)
    store.append_lines("#b", "#B", 1_600.0, lines.room_message("#B", "bo", "hi"))
    expected_a = [attrs.evolve(m, at=1_500.0) for m in said_a]
    expected_b = [StoredMessage("#b", "#B", "bo", "hi", False, 1_600.0)]
    assert store.recent("#a", 10) == expected_a
    assert store.recent("#b", 10) == expected_b
    assert store.recent("#a", 2) == expected_a[1:]
    await store.flush()
    assert store.recent("#a", 10) == expected_a
    await store.stop()
    if isinstance(store, SqliteStore):
        reopened = SqliteStore.open(store.path, reactor=_reactor())
        try:
            assert reopened.recent("#a", 10) == expected_a
            assert reopened.recent("#b", 10) == expected_b
        finally:
            await reopened.stop()


def test_rooms_are_separate(make_store: MakeStore) -> None:
    """Messages of one room never show in another."""
    store = make_store()
    say(store, msg("#a", 1))
    say(store, msg("#b", 2))
    say(store, msg("#a", 3, action=True))
    assert store.recent("#a", 10) == [msg("#a", 1), msg("#a", 3, action=True)]
    assert store.recent("#b", 10) == [msg("#b", 2)]
    assert store.recent("#c", 10) == []


def test_prune_keeps_max_per_room(make_store: MakeStore) -> None:
    """prune() leaves at most max_per_room newest messages in each room."""
    store = make_store(max_per_room=3, max_age_days=0, flush_interval=NEVER)
    for n in range(6):
        say(store, msg("#warm", n))
        say(store, msg("#cold", n))
    say(store, msg("#small", 1))
    assert len(store.recent("#warm", 10)) == 3  # loads the tail before pruning
    store.prune(now=1_000_000.0)
    assert texts(store.recent("#warm", 10)) == ["text 3", "text 4", "text 5"]
    assert texts(store.recent("#cold", 10)) == ["text 3", "text 4", "text 5"]
    assert texts(store.recent("#small", 10)) == ["text 1"]


def test_prune_drops_old_messages(make_store: MakeStore) -> None:
    """prune(now) drops messages older than max_age_days before now."""
    store = make_store(max_age_days=1, flush_interval=NEVER)
    say(store, msg("#warm", 1, at=10_000))
    say(store, msg("#warm", 2, at=20_000))
    say(store, msg("#cold", 1, at=10_000))
    say(store, msg("#cold", 2, at=20_000))
    say(store, msg("#old", 1, at=10_000))
    assert len(store.recent("#warm", 10)) == 2
    store.prune(now=20_000 + 86_400 - 1)  # cutoff between the two messages
    assert store.recent("#warm", 10) == [msg("#warm", 2, at=20_000)]
    assert store.recent("#cold", 10) == [msg("#cold", 2, at=20_000)]
    assert store.recent("#old", 10) == []


def test_prune_age_zero_keeps_everything(make_store: MakeStore) -> None:
    """max_age_days=0 keeps messages of any age."""
    store = make_store(max_age_days=0)
    say(store, msg("#a", 1, at=0))
    store.prune(now=1e12)
    assert store.recent("#a", 10) == [msg("#a", 1, at=0)]


@ensure_deferred
async def test_topics_round_trip(make_store: MakeStore) -> None:
    """topic() returns the last topic set in a room, None for others."""
    store = make_store()
    assert store.topic("#a") is None
    first = StoredTopic("#a", "#A", "hello", "alice", 1.0)
    second = StoredTopic("#a", "#A", "bye", "bob", 2.0)
    other = StoredTopic("#b", "#b", "b's topic", "carol", 3.0)
    store.set_topic(first)
    store.set_topic(other)
    store.set_topic(second)
    assert (store.topic("#a"), store.topic("#b"), store.topic("#c")) == (
        second,
        other,
        None,
    )
    await store.flush()
    assert (store.topic("#a"), store.topic("#b")) == (second, other)
    assert store.trouble() is None


@ensure_deferred
async def test_stop_twice(make_store: MakeStore) -> None:
    """stop() may be called again and fires again."""
    store = make_store()
    say(store, msg("#a", 1))
    await store.stop()
    await store.stop()


# -- SqliteStore: the file -------------------------------------------------------


@ensure_deferred
async def test_sqlite_survives_reopen(open_sqlite: OpenSqlite) -> None:
    """Messages and topics are read back after stop() and a new open()."""
    store = open_sqlite()
    store.start()
    say(store, msg("#a", 1))
    say(store, msg("#b", 2, action=True))
    say(store, msg("#a", 3))
    topic = StoredTopic("#a", "#A", "ünïcode topic", "alice", 5.5)
    store.set_topic(topic)
    await store.stop()

    again = open_sqlite()
    again.start()
    assert again.recent("#a", 10) == [msg("#a", 1), msg("#a", 3)]
    assert again.recent("#b", 10) == [msg("#b", 2, action=True)]
    assert again.topic("#a") == topic
    assert again.topic("#b") is None
    say(again, msg("#a", 4))
    await again.stop()
    assert texts(open_sqlite().recent("#a", 10)) == ["text 1", "text 3", "text 4"]


@ensure_deferred
async def test_sqlite_stop_commits_everything_queued(
    open_sqlite: OpenSqlite, tmp_path: Path
) -> None:
    """stop() fires only after every queued message is on disk."""
    store = open_sqlite(flush_interval=NEVER)
    store.start()
    for n in range(500):
        say(store, msg(f"#r{n % 3}", n))
    await store.stop()
    with sqlite3.connect(tmp_path / "history.db") as conn:
        (count,) = conn.execute("SELECT sum(count) FROM turns").fetchone()
    conn.close()
    assert count == 500


@ensure_deferred
async def test_sqlite_stop_without_start_commits(open_sqlite: OpenSqlite) -> None:
    """A store stopped before it was started still commits its queue."""
    store = open_sqlite()
    say(store, msg("#a", 1))
    await store.stop()
    assert open_sqlite().recent("#a", 10) == [msg("#a", 1)]


@ensure_deferred
async def test_sqlite_commit_during_tail_load_shows_once(
    open_sqlite: OpenSqlite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message both committed and still queued when a tail loads shows once."""
    store = open_sqlite(flush_interval=NEVER)
    store.start()
    say(store, msg("#a", 1))
    # As if the writer committed these before it reported so.
    monkeypatch.setattr(store._backlog, "trim", lambda: None)
    say(store, msg("#a", 2))
    say(store, msg("#a", 3))
    await store.flush()
    assert len(store._backlog.turns) == 3
    assert texts(store.recent("#a", 10)) == ["text 1", "text 2", "text 3"]


@ensure_deferred
async def test_sqlite_prune_on_disk(open_sqlite: OpenSqlite) -> None:
    """prune() deletes from the file, by count per room and by age."""
    store = open_sqlite(max_per_room=2, max_age_days=1)
    store.start()
    for n in range(4):
        say(store, msg("#a", n, at=50_000))
    say(store, msg("#b", 1, at=1_000))
    say(store, msg("#b", 2, at=50_000))
    store.prune(now=50_000 + 86_400 - 10)
    say(store, msg("#b", 3, at=50_000))  # queued after prune: kept
    await store.stop()

    again = open_sqlite(max_per_room=2, max_age_days=1)
    assert texts(again.recent("#a", 10)) == ["text 2", "text 3"]
    assert texts(again.recent("#b", 10)) == ["text 2", "text 3"]


def _turn_of(room: str, start: int, count: int) -> bytes:
    return b"".join(
        lines.room_message(room, f"nick{n}", f"text {n}")
        for n in range(start, start + count)
    )


@ensure_deferred
async def test_sqlite_prune_trims_a_turn_to_the_limit(
    open_sqlite: OpenSqlite, tmp_path: Path
) -> None:
    """The oldest turn kept loses just the lines past ``max_per_room``."""
    store = open_sqlite(max_per_room=3, max_age_days=0)
    store.start()
    store.append_lines("#a", "#a", 1.0, _turn_of("#a", 1, 5))
    store.append_lines("#b", "#b", 1.0, _turn_of("#b", 6, 1))
    store.append_lines("#a", "#a", 2.0, _turn_of("#a", 7, 2))
    store.prune(now=10.0)
    await store.stop()
    with sqlite3.connect(tmp_path / "history.db") as conn:
        rows = conn.execute(
            "SELECT first_id, count FROM turns WHERE room_key = '#a' ORDER BY 1"
        ).fetchall()
    conn.close()
    assert rows == [(5, 1), (7, 2)]

    again = open_sqlite(max_per_room=3, max_age_days=0)
    assert texts(again.recent("#a", 10)) == ["text 5", "text 7", "text 8"]
    again.start()
    say(again, msg("#a", 9))  # numbered after everything on disk
    await again.stop()
    assert texts(open_sqlite().recent("#a", 10)) == [
        "text 5",
        "text 7",
        "text 8",
        "text 9",
    ]


def test_sqlite_upgrades_a_version_1_file(tmp_path: Path) -> None:
    """A file of the first release (a row per message) is converted at open."""
    path = tmp_path / "history.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1_TABLES)
    conn.executescript(
        """
        INSERT INTO messages VALUES (1, '#a', '#A', 'al', 'hi > there', 0, 5.0);
        INSERT INTO messages VALUES (2, '#b', '#B', 'bo', 'waves', 1, 6.0);
        INSERT INTO messages VALUES (4, '#a', '#A', '小明', '', 0, 7.0);
        INSERT INTO topics VALUES ('#a', '#A', 'the topic', 'al', 3.0);
        PRAGMA user_version = 1;
        """
    )
    conn.close()
    store = SqliteStore.open(str(path), reactor=_reactor())
    try:
        assert store.recent("#a", 10) == [
            StoredMessage("#a", "#A", "al", "hi > there", False, 5.0),
            StoredMessage("#a", "#A", "小明", "", False, 7.0),
        ]
        assert store.recent("#b", 10) == [
            StoredMessage("#b", "#B", "bo", "waves", True, 6.0)
        ]
        topic = store.topic("#a")
        assert topic is not None
        assert topic.text == "the topic"
        assert store._backlog.next_id == 5
    finally:
        store._close_reader(None)
        close_thread_writer(store)
    conn = sqlite3.connect(path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()
    assert "messages" not in tables


def test_sqlite_failed_upgrade_leaves_the_version_1_file_as_it_was(
    tmp_path: Path,
) -> None:
    """An upgrade that fails half-way (here: the copy) leaves the file as it was."""
    path = tmp_path / "history.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE messages (id INTEGER PRIMARY KEY, room_key TEXT NOT NULL,
            room TEXT NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL,
            at REAL NOT NULL);
        INSERT INTO messages VALUES (1, '#a', '#A', 'al', 'kept', 5.0);
        PRAGMA user_version = 1;
        """
    )
    conn.close()
    with pytest.raises(HistoryStoreError, match="not a valid history database"):
        SqliteStore.open(str(path), reactor=_reactor())
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        assert conn.execute("SELECT text FROM messages").fetchall() == [("kept",)]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert tables == {"messages"}  # no half-made turns, index or topics
    finally:
        conn.close()


@ensure_deferred
async def test_sqlite_file_settings(open_sqlite: OpenSqlite, tmp_path: Path) -> None:
    """The file is in WAL mode, versioned, and indexed by (room_key, first_id)."""
    await open_sqlite().stop()
    conn = sqlite3.connect(tmp_path / "history.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        columns = [row[2] for row in conn.execute("PRAGMA index_info(turns_room)")]
        assert columns == ["room_key", "first_id"]
    finally:
        conn.close()


def test_sqlite_creates_missing_directory(
    open_sqlite: OpenSqlite, tmp_path: Path
) -> None:
    """open() creates the state directory if it does not exist."""
    path = tmp_path / "state" / "chat" / "history.db"
    open_sqlite(path)
    assert path.is_file()


def test_sqlite_corrupt_file_fails_at_open(tmp_path: Path) -> None:
    """A file that is not an SQLite database is refused with HistoryStoreError."""
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not a database, just garbage\x00\xff" * 200)
    with pytest.raises(HistoryStoreError, match="is not a valid history database"):
        SqliteStore.open(str(path), reactor=_reactor())
    with pytest.raises(HistoryStoreError, match=str(path)):
        SqliteStore.open(str(path), reactor=_reactor())


def test_sqlite_unwritable_path_fails_at_open(tmp_path: Path) -> None:
    """A path whose directory cannot be created is refused with HistoryStoreError."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / "history.db"
    with pytest.raises(HistoryStoreError, match="cannot create directory") as info:
        SqliteStore.open(str(path), reactor=_reactor())
    assert str(path) in str(info.value)


def test_sqlite_directory_as_path_fails_at_open(tmp_path: Path) -> None:
    """A directory given as the database path is refused with HistoryStoreError."""
    with pytest.raises(HistoryStoreError, match="is not a valid history database"):
        SqliteStore.open(str(tmp_path), reactor=_reactor())


def test_sqlite_foreign_database_fails_at_open(tmp_path: Path) -> None:
    """An SQLite file of another program is refused, not written into."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (name TEXT)")
    conn.close()
    with pytest.raises(HistoryStoreError, match="another program"):
        SqliteStore.open(str(path), reactor=_reactor())


def test_sqlite_newer_schema_fails_at_open(tmp_path: Path) -> None:
    """A file written by a newer schema version is refused."""
    path = tmp_path / "history.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(HistoryStoreError, match="newer"):
        SqliteStore.open(str(path), reactor=_reactor())


@ensure_deferred
async def test_sqlite_write_error_is_logged_not_raised(
    open_sqlite: OpenSqlite, tmp_path: Path
) -> None:
    """A failing commit at run time is logged and the store keeps working."""
    store = open_sqlite()
    events = capture_log(store)
    store.start()
    say(store, msg("#a", 1))
    await store.flush()
    assert texts(store.recent("#a", 10)) == ["text 1"]  # cache #a's tail
    # Break the file under the running store: its next insert fails.
    conn = sqlite3.connect(tmp_path / "history.db")
    conn.execute("DROP TABLE turns")
    conn.commit()
    conn.close()

    say(store, msg("#a", 2))
    await store.flush()
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1
    assert "could not be saved" in formatEvent(failures[0])
    assert str(tmp_path / "history.db") in formatEvent(failures[0])
    assert texts(store.recent("#a", 10)) == ["text 1", "text 2"]
    assert store.recent("#unread", 10) == []
    assert len([e for e in events if "log_failure" in e]) == 2  # the read failed
    say(store, msg("#a", 3))
    await store.stop()


@ensure_deferred
async def test_thread_writer_bug_is_logged_and_markers_still_fire(
    tmp_path: Path, cleanup: list[IHistoryStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the writer thread is logged; flush() and stop() still fire."""
    store = _sqlite_opener(tmp_path, cleanup, "thread")(flush_interval=NEVER)
    events = capture_log(store)

    def broken(self: writer_core.WriterCore, batch: Any) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setattr(writer_core.WriterCore, "write_batch", broken)
    store.start()
    say(store, msg("#a", 1))
    await store.flush()
    failures = [e for e in events if "log_failure" in e]
    assert "in the history writer" in formatEvent(failures[0])
    assert failures[0]["log_failure"].check(RuntimeError)
    await store.stop()


@ensure_deferred
async def test_sqlite_append_after_stop_is_ignored(open_sqlite: OpenSqlite) -> None:
    """append() and set_topic() after stop() neither raise nor write."""
    store = open_sqlite()
    events = capture_log(store)
    await store.stop()
    say(store, msg("#a", 1))
    store.set_topic(StoredTopic("#a", "#a", "t", "x", 1.0))
    assert events
    assert open_sqlite().recent("#a", 10) == []


@ensure_deferred
async def test_sqlite_online_backup_of_the_live_file_is_readable(
    open_sqlite: OpenSqlite, tmp_path: Path
) -> None:
    """The README's backup, SQLite's online backup of the running file, reads back."""
    store = open_sqlite()
    store.start()
    say(store, msg("#a", 1))
    store.set_topic(StoredTopic("#a", "#a", "t", "x", 1.0))
    await store.flush()
    dest = tmp_path / "copy.db"
    source = sqlite3.connect(tmp_path / "history.db")
    copy_conn = sqlite3.connect(dest)
    source.backup(copy_conn)
    copy_conn.close()
    source.close()
    copy = open_sqlite(dest)
    assert copy.recent("#a", 10) == [msg("#a", 1)]
    assert copy.topic("#a") is not None


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    """Negative limits and a zero flush interval raise ValueError."""
    with pytest.raises(ValueError):
        MemoryStore(max_per_room=-1)
    with pytest.raises(ValueError):
        SqliteStore.open(str(tmp_path / "h.db"), reactor=_reactor(), max_age_days=-1)
    with pytest.raises(ValueError):
        SqliteStore.open(str(tmp_path / "h.db"), reactor=_reactor(), flush_interval=0)


# -- the writer process ----------------------------------------------------------


def test_open_with_process_writer_gives_process_store(tmp_path: Path) -> None:
    """writer="process" gives a process link when the reactor can spawn."""
    store = SqliteStore.open(
        str(tmp_path / "h.db"), reactor=_reactor(), writer="process"
    )
    try:
        assert isinstance(store._link, ProcessLink)
    finally:
        store._close_reader(None)


def test_process_writer_falls_back_to_thread(tmp_path: Path) -> None:
    """A reactor that cannot start processes gets the thread writer instead."""
    fake = cast("IReactorFromThreads", MemoryReactor())
    store = SqliteStore.open(str(tmp_path / "h.db"), reactor=fake, writer="process")
    try:
        assert isinstance(store._link, ThreadLink)
    finally:
        store._close_reader(None)
        close_thread_writer(store)


def test_unknown_writer_is_refused(tmp_path: Path) -> None:
    """A writer other than thread or process raises ValueError."""
    with pytest.raises(ValueError, match="writer"):
        SqliteStore.open(
            str(tmp_path / "h.db"), reactor=_reactor(), writer=cast("Any", "fork")
        )


async def wait_until(check: Callable[[], bool], what: str) -> None:
    """Let the reactor run until ``check()`` holds (bounded by a deadline)."""
    deadline = time.monotonic() + 20
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await deferLater(reactor, 0.02, lambda: None)


@ensure_deferred
async def test_process_writer_death_is_loud_and_it_is_restarted(
    tmp_path: Path, cleanup: list[IHistoryStore]
) -> None:
    """A killed writer is logged, shown by trouble(), and started again."""
    store = _sqlite_opener(tmp_path, cleanup, "process")(flush_interval=NEVER)
    assert has_process_writer(store)
    events = capture_log(store)
    store.start()
    say(store, msg("#a", 1))
    await store.flush()
    assert texts(store.recent("#a", 10)) == ["text 1"]  # cache #a's tail
    assert store.trouble() is None
    running_writer(store).signalProcess("KILL")
    await wait_until(lambda: writer_process(store) is None, "the death is noticed")
    trouble = store.trouble()
    assert trouble is not None
    assert "history writer was killed (signal 9); history is not saved" in trouble
    assert [e for e in events if e["log_level"].name == "error"]
    say(store, msg("#a", 2))  # dropped: nobody to write it
    await store.flush()
    assert not store._backlog.turns  # nothing waits for a writer that is gone
    await wait_until(lambda: writer_process(store) is not None, "the writer restarts")
    assert store.trouble() is None
    say(store, msg("#a", 3))
    await store.flush()
    assert texts(store.recent("#a", 10)) == ["text 1", "text 2", "text 3"]
    await store.stop()
    on_disk = _sqlite_opener(tmp_path, cleanup, "thread")().recent("#a", 9)
    assert texts(on_disk) == ["text 1", "text 3"]


@ensure_deferred
async def test_stop_kills_a_stopped_writer_within_the_deadline(
    tmp_path: Path, cleanup: list[IHistoryStore]
) -> None:
    """A SIGSTOPped writer cannot hold stop(): it is killed after STOP_TIMEOUT."""
    store = _sqlite_opener(tmp_path, cleanup, "process")()
    assert has_process_writer(store)
    events = capture_log(store)
    store.start()
    await store.flush()
    running_writer(store).signalProcess(signal.SIGSTOP)
    for n in range(100):
        say(store, msg("#a", n))
    began = time.monotonic()
    await store.stop()
    took = time.monotonic() - began
    # The reactor's timer runs on its own clock (reactor.seconds), which
    # may be a few ms ahead of time.monotonic here.
    assert STOP_TIMEOUT - 0.1 <= took < STOP_TIMEOUT + 2
    said = [formatEvent(e) for e in events]
    assert any("did not finish within 1.5 s" in line for line in said), said


@ensure_deferred
async def test_stop_gives_up_on_a_locked_file_within_the_deadline(
    open_sqlite: OpenSqlite, tmp_path: Path
) -> None:
    """A file locked by another program (BEGIN EXCLUSIVE) cannot hold stop()."""
    store = open_sqlite()
    store.start()
    await store.flush()
    other = sqlite3.connect(tmp_path / "history.db", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        say(store, msg("#a", 1))
        began = time.monotonic()
        await store.stop()
        assert time.monotonic() - began < STOP_TIMEOUT + 2
    finally:
        other.close()


@ensure_deferred
async def test_a_writer_behind_drops_rows_past_the_byte_bound(
    open_sqlite: OpenSqlite,
) -> None:
    """Past max_waiting_bytes rows are dropped, counted and logged once."""
    store = open_sqlite(flush_interval=NEVER)
    store._backlog.max_bytes = 2_000
    events = capture_log(store)
    store.start()
    if has_process_writer(store):
        await store.flush()
        running_writer(store).signalProcess(signal.SIGSTOP)  # behind for real
    else:
        thread_link(store)._hurry.set = lambda: None  # type: ignore[method-assign]
    for n in range(1, 41):
        say(store, msg("#a", n))
    assert store._backlog.waiting <= store._backlog.max_bytes
    dropped = store._backlog.dropped
    assert dropped > 20
    trouble = store.trouble()
    assert trouble is not None
    assert f"{dropped} messages dropped" in trouble
    errors = [formatEvent(e) for e in events if "behind" in e.get("log_format", "")]
    assert len(errors) == 1, errors
    if has_process_writer(store):
        running_writer(store).signalProcess(signal.SIGCONT)
    else:
        del thread_link(store)._hurry.set
        thread_link(store)._hurry.set()
    await store.flush()
    assert store.trouble() is None
    assert [e for e in events if "caught up" in e.get("log_format", "")]
    say(store, msg("#b", 1))
    await store.stop()


@ensure_deferred
async def test_topics_count_against_the_byte_bound_too(
    tmp_path: Path, cleanup: list[IHistoryStore]
) -> None:
    """Topics queued for a writer that is behind stop at max_waiting_bytes."""
    store = _sqlite_opener(tmp_path, cleanup, "thread")(flush_interval=NEVER)
    store._backlog.max_bytes = 2_000
    store.start()
    for n in range(40):
        store.set_topic(StoredTopic(f"#r{n}", f"#r{n}", "t" * 100, "x", float(n)))
    assert store._backlog.waiting <= store._backlog.max_bytes
    assert 0 < len(store._backlog.topics) < 40
    assert store.trouble() is not None
    await store.stop()


@ensure_deferred
async def test_the_tail_cache_keeps_the_rooms_read_last(
    open_sqlite: OpenSqlite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past _MAX_CACHED_ROOMS tails the least recently read room is dropped."""
    monkeypatch.setattr(history_reader, "_MAX_CACHED_ROOMS", 2)
    store = open_sqlite()
    store.start()
    for room in ("#a", "#b", "#c"):
        say(store, msg(room, 1))
    await store.flush()
    for room in ("#a", "#b", "#c"):
        assert [m.text for m in store.recent(room, 5)] == ["text 1"]
    assert list(store._reads.tails) == ["#b", "#c"]
    assert [m.text for m in store.recent("#a", 5)] == ["text 1"]  # from disk
    assert list(store._reads.tails) == ["#c", "#a"]


@ensure_deferred
async def test_the_topic_cache_keeps_the_topics_set_last(
    open_sqlite: OpenSqlite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past _MAX_CACHED_TOPICS the oldest set topic is dropped (and read back)."""
    monkeypatch.setattr(history_reader, "_MAX_CACHED_TOPICS", 2)
    store = open_sqlite()
    store.start()
    for n in range(3):
        store.set_topic(StoredTopic(f"#r{n}", f"#r{n}", f"t{n}", "x", float(n)))
    assert list(store._reads.topics) == ["#r1", "#r2"]
    await store.flush()
    found = store.topic("#r0")  # from disk
    assert found is not None
    assert found.text == "t0"
    await store.stop()


def _count_topic_reads(reader: sqlite3.Connection, into: list[str]) -> None:
    """Append every statement ``reader`` runs on the topics table to ``into``."""
    reader.set_trace_callback(
        lambda sql: into.append(sql) if "FROM topics" in sql else None
    )


@ensure_deferred
async def test_a_room_without_a_topic_reads_the_file_once(
    open_sqlite: OpenSqlite,
) -> None:
    """A room made again and again (a default room emptied between clients)
    asks the file for its topic once; a topic set later is seen at once,
    and after a reopen the file is asked again."""
    store = open_sqlite()
    store.start()
    await store.flush()
    reader = store._reads.reader
    assert reader is not None
    selects: list[str] = []
    _count_topic_reads(reader, selects)
    for _ in range(5):
        assert store.topic("#lobby") is None
    assert len(selects) == 1
    store.set_topic(StoredTopic("#lobby", "#lobby", "welcome", "x", 1.0))
    found = store.topic("#lobby")
    assert found is not None
    assert found.text == "welcome"
    assert store.topic("#other") is None
    assert len(selects) == 2
    store._reads.close()
    store._reads.reopen()
    reopened = store._reads.reader
    assert reopened is not None
    _count_topic_reads(reopened, selects)
    assert store.topic("#other") is None
    assert len(selects) == 3
    await store.stop()


@ensure_deferred
async def test_rooms_without_a_topic_are_remembered_up_to_a_bound(
    open_sqlite: OpenSqlite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past _MAX_NO_TOPIC the oldest is forgotten (and asked for again)."""
    monkeypatch.setattr(history_reader, "_MAX_NO_TOPIC", 3)
    store = open_sqlite()
    store.start()
    for n in range(10):
        assert store.topic(f"#r{n}") is None
    assert list(store._reads.no_topic) == ["#r7", "#r8", "#r9"]
    await store.stop()


@ensure_deferred
async def test_a_removed_file_is_noticed_and_made_again(
    open_sqlite: OpenSqlite, tmp_path: Path
) -> None:
    """rm of the history file is logged, shown, and history goes to a new file."""
    path = tmp_path / "history.db"
    store = open_sqlite()
    events = capture_log(store)
    store.start()
    say(store, msg("#a", 1))
    store.set_topic(StoredTopic("#a", "#a", "kept topic", "x", 1.0))
    await store.flush()
    for name in ("history.db", "history.db-wal", "history.db-shm"):
        if (tmp_path / name).exists():
            (tmp_path / name).unlink()
            break  # only the main file, as `rm history.db` does
    await wait_until(
        lambda: any("started a new" in formatEvent(e) for e in events),
        "a new file is made",
    )
    said = [formatEvent(e) for e in events if e["log_level"].name == "error"]
    assert any("was removed while the daemon ran" in line for line in said), said
    trouble = store.trouble()
    assert trouble is not None
    assert "history" in trouble
    say(store, msg("#a", 2))
    await store.stop()
    again = open_sqlite(path)
    assert texts(again.recent("#a", 10)) == ["text 2"]
    topic = again.topic("#a")
    assert topic is not None
    assert topic.text == "kept topic"


@ensure_deferred
async def test_topics_are_capped_oldest_first(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most MAX_TOPICS topics are kept; the oldest set go first."""
    monkeypatch.setattr(history_store, "MAX_TOPICS", 3)
    monkeypatch.setattr(history_schema, "MAX_TOPICS", 3)
    store = make_store()
    for n in range(5):
        store.set_topic(StoredTopic(f"#r{n}", f"#r{n}", "t", "x", float(n)))
    await store.flush()
    if has_process_writer(store):
        return  # the child has its own MAX_TOPICS; the SQL is the thread's
    if isinstance(store, SqliteStore):
        store._reads.topics.clear()  # read from the file
    kept = [n for n in range(5) if store.topic(f"#r{n}") is not None]
    assert kept == [2, 3, 4]


@ensure_deferred
async def test_prune_forgets_topics_of_rooms_whose_history_is_gone(
    make_store: MakeStore,
) -> None:
    """An old topic goes with its room's history; one of a room with turns stays."""
    store = make_store(max_age_days=1)
    day = 86_400.0
    say(store, msg("#busy", 1, at=10 * day))
    store.set_topic(StoredTopic("#busy", "#busy", "old", "x", 1.0))
    store.set_topic(StoredTopic("#gone", "#gone", "old", "x", 1.0))
    store.set_topic(StoredTopic("#new", "#new", "recent", "x", 10 * day))
    store.prune(now=10.5 * day)
    await store.flush()
    if isinstance(store, SqliteStore):
        store._reads.topics.clear()  # read from the file
    assert store.topic("#busy") is not None
    assert store.topic("#gone") is None
    assert store.topic("#new") is not None


def test_a_refused_niceness_is_said_and_the_writer_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """EPERM from os.nice (a sandbox) is one stderr line, not the writer's end."""

    def refuse(_: int) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "nice", refuse)
    history_writer.lower_priority(10)
    assert "cannot lower its priority to niceness 10" in capsys.readouterr().err


def test_status_counts_with_plurals_and_shows_history_trouble() -> None:
    """STATUS= says "1 client in 1 room" and HISTORY NOT SAVED when in trouble."""

    class Troubled(MemoryStore):
        reason: str | None = None

        def trouble(self) -> str | None:
            return self.reason

    store = Troubled()
    server = ChatServer(Settings(), lambda: 1_000.0, store)
    assert server.status() == "0 clients in 0 rooms"
    server.connect(RecordingClient())
    assert server.status() == "1 client in 1 room"
    server.connect(RecordingClient())
    store.reason = "history writer ended (exit code 1)"
    assert server.status() == (
        "2 clients in 1 room; HISTORY NOT SAVED: history writer ended (exit code 1)"
    )


def test_chat_keeps_topics_only_on_live_rooms() -> None:
    """A room's topic is read from the store when the room is made again."""
    store = MemoryStore()
    server = ChatServer(Settings(), lambda: 1_000.0, store)
    alice = server.connect(RecordingClient())
    server.receive(alice, "/join #x")
    server.receive(alice, "/topic hello")
    server.receive(alice, "/part #x")
    assert "#x" not in server.rooms
    assert not hasattr(server, "_saved_topics")
    asked: list[str] = []
    real = store.topic

    def topic(key: str) -> StoredTopic | None:
        asked.append(key)
        return real(key)

    store.topic = topic  # type: ignore[method-assign,assignment]
    bob = server.connect(RecordingClient())
    server.receive(bob, "/join #x")
    assert "#x" in asked
    assert server.rooms["#x"].topic == "hello"


@ensure_deferred
async def test_process_writer_runs_nicer_with_a_big_pipe(
    tmp_path: Path, cleanup: list[IHistoryStore]
) -> None:
    """The writer yields the CPU to the daemon and its pipe holds 1 MiB."""
    store = _sqlite_opener(tmp_path, cleanup, "process")()
    assert has_process_writer(store)
    store.start()
    await store.flush()  # the child has started and set itself up
    pid = running_writer(store).pid
    assert pid is not None
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    theirs = os.getpriority(os.PRIO_PROCESS, pid)
    assert theirs == min(19, ours + history_writer.NICENESS)
    pipe = cast("Any", running_writer(store)).pipes[0].fileno()
    assert fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ) >= history_writer.PIPE_SIZE


def test_frames_survive_any_split() -> None:
    """Frames fed one byte at a time decode to the ops sent, in order."""
    said = lines.room_message("#A", "al", "hi ünï")
    topic = TopicRow("#a", "#A", "the topic", "al", 2.0)
    frames: list[list[Op]] = [
        [Turn(1, "#a", "#A", 1.5, said, 1), Topic(OP_TOPIC, topic, 2)],
        [Marker(OP_FLUSH, 7)],
        [Marker(OP_STOP, 8)],
    ]
    stream = b"".join(encode_ops(ops) for ops in frames)
    decoder = FrameDecoder()
    got: list[Any] = []
    for n in range(len(stream)):
        got.extend(decode_ops(frame) for frame in decoder.feed(stream[n : n + 1]))
    assert got == frames
    assert [type(op) for op in got[0]] == [Turn, Topic]
    assert type(got[0][1].row) is TopicRow


def test_writer_core_stores_bad_utf8_replaced(tmp_path: Path) -> None:
    """A turn that is not UTF-8 is stored with U+FFFD, not dropped."""
    conn = sqlite3.connect(tmp_path / "h.db")
    history_schema.prepare(conn)
    reports: list[Any] = []
    core = writer_core.WriterCore(
        conn, path="h.db", max_per_room=0, max_age_days=0, send=reports.append
    )
    bad = b"[#a] <al> \xff\r\n"
    assert not core.write_batch([Turn(1, "#a", "#a", 1.0, bad, 1)])
    assert reports == [Committed(REPORT_COMMITTED, 1, -1)]
    assert conn.execute("SELECT lines FROM turns").fetchall() == [
        ("[#a] <al> \ufffd\r\n",)
    ]
    core.close()


def test_writer_commits_what_it_read_at_end_of_input(tmp_path: Path) -> None:
    """At end of input (the daemon died) the writer commits all it received."""
    path = tmp_path / "h.db"
    with sqlite3.connect(path) as conn:
        history_schema.prepare(conn)
    conn.close()
    said = b"".join(
        (lines.room_action if n == 2 else lines.room_message)("#A", "al", f"m{n}")
        for n in range(1, 4)
    )
    topic = ("#a", "#A", "the topic", "al", 2.0)
    read_in, write_in = os.pipe()
    read_out, write_out = os.pipe()
    with os.fdopen(write_in, "wb") as pipe:
        # As the daemon writes them (plain tuples), a topic without its id too.
        pipe.write(encode_frame([(OP_LINES, 1, "#a", "#A", 7.0, said)]))
        pipe.write(encode_frame([(OP_TOPIC, topic)]))
    status = history_writer.run(
        str(path),
        flush_interval=NEVER,
        max_per_room=0,
        max_age_days=0,
        stdin=read_in,
        stdout=write_out,
    )
    os.close(read_in)
    os.close(write_out)
    with os.fdopen(read_out, "rb") as pipe:
        reports = FrameDecoder().feed(pipe.read())
    assert status == 0
    assert reports == [("c", 3, -1)]
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT * FROM turns").fetchall()
        topics = conn.execute("SELECT * FROM topics").fetchall()
    conn.close()
    assert rows == [(1, "#a", "#A", 7.0, 3, said.decode())]
    assert topics == [topic]


# -- the tails ---------------------------------------------------------------


def _turn(first_id: int, count: int, at: float = 1.0) -> Turn:
    data = b"".join(
        lines.room_message("#a", "al", f"m{n}")
        for n in range(first_id, first_id + count)
    )
    return Turn(first_id, "#a", "#a", at, data, count)


def test_tail_keeps_whole_turns_and_at_least_keep() -> None:
    """Old turns go once the newer ones alone hold ``keep`` messages."""
    tail = Tail(5)
    for first, count in [(1, 3), (4, 3), (7, 1), (8, 1)]:
        tail.add(_turn(first, count))
    # 4..8 are 5 messages: the turn 1..3 went, the turn 4..6 stays whole.
    assert [turn.first_id for turn in tail.turns] == [4, 7, 8]
    assert tail.count == 5
    assert texts(tail.newest(2)) == ["m7", "m8"]
    assert texts(tail.newest(4)) == ["m5", "m6", "m7", "m8"]
    assert texts(tail.newest(9)) == ["m4", "m5", "m6", "m7", "m8"]
    assert tail.newest(0) == []


def test_tail_age_cutoff_is_per_turn() -> None:
    tail = Tail(None, [_turn(1, 2, at=10.0), _turn(3, 2, at=20.0)])
    assert texts(tail.newest(10, cutoff=15.0)) == ["m3", "m4"]
    tail.drop_before(15.0)
    assert tail.count == 2
    assert texts(tail.newest(10)) == ["m3", "m4"]


# -- format_history_line -----------------------------------------------------------

UTC = dt.timezone.utc


def _ts(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def _said(at: float, *, action: bool = False, room: str = "#Lobby") -> StoredMessage:
    return StoredMessage("#lobby", room, "alice", "hi there", action, at)


def test_format_today_shows_time_only() -> None:
    """A message from today shows HH:MM and PROTOCOL.md's message shape."""
    line = format_history_line(
        _said(_ts(2026, 11, 28, 14, 3)), now=_ts(2026, 11, 28, 23, 59), tz=UTC
    )
    assert line == "[#Lobby 14:03] <alice> hi there"


def test_format_action() -> None:
    """An action uses the `* nick text` shape."""
    line = format_history_line(
        _said(_ts(2026, 11, 28, 9, 5), action=True),
        now=_ts(2026, 11, 28, 10, 0),
        tz=UTC,
    )
    assert line == "[#Lobby 09:05] * alice hi there"


def test_format_other_day_shows_date() -> None:
    """A message from another day shows the date as well."""
    line = format_history_line(
        _said(_ts(2026, 11, 27, 14, 3)), now=_ts(2026, 11, 28, 0, 1), tz=UTC
    )
    assert line == "[#Lobby 2026-11-27 14:03] <alice> hi there"


def test_format_day_is_decided_in_the_given_zone() -> None:
    """Today is decided in the given time zone, not in UTC."""
    plus2 = dt.timezone(dt.timedelta(hours=2))
    at = _ts(2026, 11, 27, 23, 30)  # 01:30 on the 28th at UTC+2
    now = _ts(2026, 11, 28, 8, 0)
    assert format_history_line(_said(at), now, tz=plus2) == (
        "[#Lobby 01:30] <alice> hi there"
    )
    assert format_history_line(_said(at), now, tz=UTC) == (
        "[#Lobby 2026-11-27 23:30] <alice> hi there"
    )


def test_format_default_zone_is_local_time() -> None:
    """Without tz, the local time zone is used."""
    at = _ts(2026, 11, 28, 12, 0)
    local = dt.datetime.fromtimestamp(at, UTC).astimezone()
    assert format_history_line(_said(at), at) == (
        f"[#Lobby {local:%H:%M}] <alice> hi there"
    )


def test_format_adds_missing_hash() -> None:
    """A room spelled without `#` is shown with it."""
    line = format_history_line(
        _said(_ts(2026, 1, 1, 0, 0), room="Lobby"), now=_ts(2026, 1, 1, 1, 0), tz=UTC
    )
    assert line == "[#Lobby 00:00] <alice> hi there"
