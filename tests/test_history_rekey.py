"""Room keys of an older history file are computed again at open (issue 11).

The files here are made by hand, as the previous release wrote them: schema
version 2 (or 1) and room keys of the old key function, NFKC and case
folding only. With them, rooms whose names hold look-alike letters
(``#games`` is ``#garnes`` now) lost their history and topic at upgrade.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import unicodedata
from typing import TYPE_CHECKING, Any, cast

import pytest
from test_history_store import V1_TABLES
from twisted.internet import reactor

from twisted_chat.core import names
from twisted_chat.core.names import KEY_VERSION, name_key
from twisted_chat.core.records import StoredMessage
from twisted_chat.history import files as history_files
from twisted_chat.history import schema as history_schema
from twisted_chat.history.memory import HistoryStoreError
from twisted_chat.history.rekey import recorded_key_version
from twisted_chat.history.schema import SCHEMA_VERSION
from twisted_chat.history.sqlite import SqliteStore
from twisted_chat.history.thread import ThreadLink

if TYPE_CHECKING:
    from pathlib import Path

    from twisted.internet.interfaces import IReactorFromThreads


def old_key(name: str) -> str:
    """The key function of the previous release."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


#: (first_id, room, at, sender, text): one message per turn.
TURNS = [
    (1, "#games", 10.0, "al", "gg"),
    (2, "#Games10", 11.0, "bo", "ten"),
    (3, "#lobby", 12.0, "cy", "hello"),
    (4, "#games", 13.0, "al", "again"),
]
#: (room, text, set_at): two rooms that are one under the new key.
TOPICS = [
    ("#lobby", "old lobby topic", 20.0),
    ("#1obby", "newest lobby topic", 30.0),
    ("#games", "play", 25.0),
]


def make_v2_file(path: Path, topics: list[tuple[str, str, float]] = TOPICS) -> None:
    """A history file as the previous release left it (WAL, schema 2)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in (*history_schema.SCHEMA_V2, *history_schema.ENSURE_INDEXES):
        conn.execute(statement)
    with conn:
        conn.executemany(
            "INSERT INTO turns VALUES (?, ?, ?, ?, 1, ?)",
            [
                (n, old_key(room), room, at, f"[{room}] <{nick}> {text}\r\n")
                for n, room, at, nick, text in TURNS
            ],
        )
        conn.executemany(
            "INSERT INTO topics VALUES (?, ?, ?, 'al', ?)",
            [(old_key(room), room, text, at) for room, text, at in topics],
        )
    conn.execute("PRAGMA user_version = 2")
    conn.close()


def dump(path: Path) -> tuple[int, list[str]]:
    """The file's schema version and whole content, to compare."""
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        return version, list(conn.iterdump())
    finally:
        conn.close()


def open_store(path: Path) -> SqliteStore:
    return SqliteStore.open(str(path), reactor=cast("IReactorFromThreads", reactor))


def close_store(store: SqliteStore) -> None:
    """Close a store that was never started."""
    store._close_reader(None)
    link = store._link
    assert isinstance(link, ThreadLink)
    link.core.close()


def test_open_rekeys_history_and_merges_topics(tmp_path: Path) -> None:
    """After the upgrade, every room's history and its newest topic are found."""
    # The file is only a test if these keys differ under the new function.
    assert name_key("#games") != old_key("#games")
    assert name_key("#Games10") != old_key("#Games10")
    assert name_key("#1obby") == name_key("#lobby") == old_key("#lobby")
    path = tmp_path / "history.db"
    make_v2_file(path)
    store = open_store(path)
    try:
        assert store.recent(name_key("#games"), 10) == [
            StoredMessage(name_key("#games"), "#games", "al", "gg", False, 10.0),
            StoredMessage(name_key("#games"), "#games", "al", "again", False, 13.0),
        ]
        assert [m.text for m in store.recent(name_key("#GAMES10"), 10)] == ["ten"]
        assert [m.text for m in store.recent("#lobby", 10)] == ["hello"]
        lobby = store.topic(name_key("#lobby"))
        assert lobby is not None
        assert (lobby.room, lobby.text) == ("#1obby", "newest lobby topic")
        games = store.topic(name_key("#games"))
        assert games is not None
        assert games.text == "play"
        assert store._backlog.next_id == 5
    finally:
        close_store(store)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert recorded_key_version(conn) == KEY_VERSION
        assert conn.execute("SELECT count(*) FROM topics").fetchone() == (2,)
        stale = conn.execute(
            "SELECT room FROM turns WHERE room_key <> ? AND room = '#games'",
            (name_key("#games"),),
        ).fetchall()
        assert stale == []
    finally:
        conn.close()


@pytest.mark.parametrize("newest", ["#lobby", "#1obby"])
def test_merged_rooms_keep_the_newest_topic(tmp_path: Path, newest: str) -> None:
    """Whichever spelling set the newer topic, its topic is the one kept."""
    path = tmp_path / "history.db"
    other = "#1obby" if newest == "#lobby" else "#lobby"
    make_v2_file(path, [(other, "older", 5.0), (newest, "newer", 6.0)])
    write_conn, reader, _ = history_files.open_database(str(path))
    try:
        rows = write_conn.execute("SELECT room_key, room, text FROM topics").fetchall()
        assert rows == [("#lobby", newest, "newer")]
    finally:
        write_conn.close()
        reader.close()


def test_second_open_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the version is recorded, an open neither writes rows nor computes keys."""
    path = tmp_path / "history.db"
    make_v2_file(path)
    write_conn, reader, _ = history_files.open_database(str(path))
    assert write_conn.total_changes > 0  # the first open re-keyed
    write_conn.close()
    reader.close()
    before = dump(path)

    calls: list[str] = []

    def counting_key(text: str) -> str:
        calls.append(text)
        return name_key(text)

    monkeypatch.setattr(names, "name_key", counting_key)
    statements: list[str] = []
    connect = sqlite3.connect

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced_connect)
    write_conn, reader, next_id = history_files.open_database(str(path))
    try:
        assert write_conn.total_changes == 0
        assert next_id == 5
    finally:
        write_conn.close()
        reader.close()
    assert calls == []
    assert any("quick_check" in s for s in statements)  # the trace works
    assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    assert dump(path) == before


def test_version_1_file_is_upgraded_and_rekeyed_in_one_open(tmp_path: Path) -> None:
    """A file of the first release (a row per message, old keys) reads at once."""
    path = tmp_path / "history.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1_TABLES)
    conn.executescript(
        """
        INSERT INTO messages VALUES (1, '#games', '#Games', 'al', 'gg', 0, 5.0);
        INSERT INTO messages VALUES (2, '#games', '#games', 'bo', 'waves', 1, 6.0);
        INSERT INTO topics VALUES ('#games', '#Games', 'play', 'al', 3.0);
        PRAGMA user_version = 1;
        """
    )
    conn.close()
    store = open_store(path)
    key = name_key("#games")
    try:
        assert store.recent(key, 10) == [
            StoredMessage(key, "#Games", "al", "gg", False, 5.0),
            StoredMessage(key, "#games", "bo", "waves", True, 6.0),
        ]
        topic = store.topic(key)
        assert topic is not None
        assert topic.text == "play"
    finally:
        close_store(store)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert recorded_key_version(conn) == KEY_VERSION
    finally:
        conn.close()


@pytest.mark.parametrize("failing_room", ["#Games10", "#1obby"])
def test_failed_rekey_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_room: str
) -> None:
    """A re-key that fails (in the turns, or later in the topics) changes nothing.

    ``#1obby`` has a topic and no turns: the turns were re-keyed before the
    failure, and are back as they were.
    """
    path = tmp_path / "history.db"
    make_v2_file(path)
    before = dump(path)

    def failing_key(text: str) -> str:
        if text == failing_room:
            raise RuntimeError("injected")
        return name_key(text)

    monkeypatch.setattr(names, "name_key", failing_key)
    with pytest.raises(HistoryStoreError) as info:
        open_store(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path} cannot be upgraded: cannot compute its room")
    assert "left as it was" in message
    assert dump(path) == before
    monkeypatch.undo()
    store = open_store(path)  # the next start, with a working function
    try:
        assert [m.text for m in store.recent(name_key("#games"), 10)] == ["gg", "again"]
    finally:
        close_store(store)


def test_writer_open_leaves_rekeying_to_the_daemon(tmp_path: Path) -> None:
    """The writer's prepare (no keys) upgrades the schema but records no key
    version, so the daemon's next open still re-keys."""
    path = tmp_path / "history.db"
    make_v2_file(path)
    conn = sqlite3.connect(path)
    history_schema.prepare(conn)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert recorded_key_version(conn) is None
    keys = conn.execute("SELECT DISTINCT room_key FROM turns").fetchall()
    assert (old_key("#games"),) in keys
    conn.close()
    store = open_store(path)
    try:
        assert [m.text for m in store.recent(name_key("#games"), 10)] == ["gg", "again"]
    finally:
        close_store(store)


def test_new_file_records_the_key_version(tmp_path: Path) -> None:
    """A file made by the daemon starts with the current key version."""
    path = tmp_path / "history.db"
    write_conn, reader, _ = history_files.open_database(str(path))
    try:
        assert recorded_key_version(write_conn) == KEY_VERSION
    finally:
        write_conn.close()
        reader.close()


def test_newer_key_version_rekeys_again(tmp_path: Path) -> None:
    """Another recorded key version (e.g. a newer confusables table) re-keys."""
    path = tmp_path / "history.db"
    make_v2_file(path)
    history_files.open_database(str(path))[0].close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = 'some-other-version'")
        conn.execute("UPDATE turns SET room_key = 'stale' WHERE first_id = 1")
    conn.close()
    write_conn, reader, _ = history_files.open_database(str(path))
    try:
        assert recorded_key_version(write_conn) == KEY_VERSION
        (key,) = write_conn.execute(
            "SELECT room_key FROM turns WHERE first_id = 1"
        ).fetchone()
        assert key == name_key("#games")
    finally:
        write_conn.close()
        reader.close()


def test_writer_child_does_not_load_the_confusables() -> None:
    """The writer process needs no key function: its imports stay light.

    Nor anything but the standard library and its own few modules: no
    Twisted, zope.interface or attrs, and nothing of the daemon's side.
    """
    code = (
        "import sys, twisted_chat.history.writer;"
        " print('twisted_chat.core.confusables' in sys.modules);"
        " print(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('twisted', 'zope', 'attr', 'attrs')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[:2] == ["False", "[]"]
