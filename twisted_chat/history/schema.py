"""The history file's schema and the SQL every writer runs (issue 6).

Shared by the writer process (`twisted_chat.history.writer`), the writer
thread and the start-up checks of `twisted_chat.history.sqlite.SqliteStore`:
the tables, the checks a file must pass, the batched INSERT and the
retention DELETEs. Standard library only, so the writer child starts fast.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Final, NamedTuple

from twisted_chat.history.rekey import RoomKeys, recorded_key_version, rekey

if TYPE_CHECKING:
    from collections.abc import Sequence

    from twisted_chat.history.wire import Turn

__all__ = [
    "MAX_TOPICS",
    "SCHEMA_VERSION",
    "TopicRow",
    "TurnRow",
    "age_cutoff",
    "checkpoint_and_close",
    "commit",
    "migrate",
    "prepare",
    "prune",
    "set_pragmas",
    "turn_row",
]

#: Stored in ``PRAGMA user_version``; bump it and add a migration step in
#: `migrate` when the schema changes.
SCHEMA_VERSION: Final = 3

_SECONDS_PER_DAY: Final = 86_400

#: The most topics kept, on disk and in the daemon's memory; past it the
#: oldest ones go first. Topics of rooms nobody is in are the only state a
#: client can leave behind by itself (connect, /join #new, /topic, close),
#: so their number must be bounded; `prune` also forgets the topics of rooms
#: whose history is gone.
MAX_TOPICS: Final = 10_000


class TurnRow(NamedTuple):
    """What a room said in one reactor turn, as its row of ``turns``.

    The fields are the table's columns, in `INSERT_TURN`'s order.
    """

    first_id: int
    room_key: str
    room: str
    at: float
    line_count: int
    lines: str


class TopicRow(NamedTuple):
    """One topic as its row of ``topics``, in `UPSERT_TOPIC`'s order."""

    room_key: str
    room: str
    text: str
    set_by: str
    set_at: float


#: Why a row per turn and not per message: SQLite's cost is per row
#: inserted (binding, the table and its index; BENCHMARKS.md has the
#: figures), and a turn of a busy room holds tens of messages for the
#: price of one row. The lines
#: are kept as sent, ``[#room] <nick> text`` CRLF, so the file reads like
#: the chat (``SELECT datetime(at, 'unixepoch'), lines FROM turns``); the
#: daemon takes them apart when it replays them
#: (`twisted_chat.core.lines.parse_room_lines`). Message ids run on across
#: turns: a turn's messages are ``first_id`` .. ``first_id + count - 1``.
SCHEMA_V2: Final = (
    """
    CREATE TABLE turns (
        first_id INTEGER PRIMARY KEY,
        room_key TEXT NOT NULL,
        room TEXT NOT NULL,
        at REAL NOT NULL,
        count INTEGER NOT NULL,
        lines TEXT NOT NULL
    )
    """,
    "CREATE INDEX turns_room ON turns (room_key, first_id)",
    """
    CREATE TABLE IF NOT EXISTS topics (
        room_key TEXT PRIMARY KEY,
        room TEXT NOT NULL,
        text TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_at REAL NOT NULL
    )
    """,
)

#: Run on every file at start-up, whatever its version: what version 2
#: gained later without changing its meaning (a version-2 program that
#: knows nothing of it reads the file as before).
ENSURE_INDEXES: Final = ("CREATE INDEX IF NOT EXISTS topics_set_at ON topics (set_at)",)

#: Keeps the newest `MAX_TOPICS` topics (by ``set_at``).
TRIM_TOPICS: Final = """
    DELETE FROM topics WHERE room_key IN (
        SELECT room_key FROM topics ORDER BY set_at DESC LIMIT -1 OFFSET ?
    )
"""

#: Topics older than the cutoff of rooms with no history left.
PRUNE_TOPICS: Final = """
    DELETE FROM topics WHERE set_at < ? AND NOT EXISTS (
        SELECT 1 FROM turns WHERE turns.room_key = topics.room_key
    )
"""

#: Version 1 kept a row per message; each becomes a turn of one line.
MIGRATE_V1: Final = (
    *SCHEMA_V2,
    """
    INSERT INTO turns (first_id, room_key, room, at, count, lines)
    SELECT id, room_key, room, at, 1,
        '[' || room || '] '
        || CASE WHEN action THEN '* ' || sender || ' ' ELSE '<' || sender || '> ' END
        || text || char(13, 10)
    FROM messages ORDER BY id
    """,
    "DROP TABLE messages",
)

#: Version 3 adds `meta`, which records what the file's room keys were
#: computed with (``key_version``, see `rekey`). The key version is a row,
#: not the schema version, so that a new confusables table re-keys the
#: file without a schema change; the schema version went up all the same,
#: because a version-2 program would accept the file and write keys of the
#: old function into it, rows a later start would not look for again.
SCHEMA_V3: Final = ("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",)

#: What each older version needs to become `SCHEMA_VERSION`.
_UPGRADES: Final = {
    0: (*SCHEMA_V2, *SCHEMA_V3),
    1: (*MIGRATE_V1, *SCHEMA_V3),
    2: SCHEMA_V3,
}

INSERT_TURN: Final = (
    "INSERT INTO turns (first_id, room_key, room, at, count, lines)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)

UPSERT_TOPIC: Final = (
    "INSERT OR REPLACE INTO topics (room_key, room, text, set_by, set_at)"
    " VALUES (?, ?, ?, ?, ?)"
)

#: The oldest turn of a room that retention keeps whole or in part: the
#: newest turn at which the room's newest ``?2`` messages are reached.
_BOUNDARY_TURN: Final = """
    SELECT first_id, count, newer FROM (
        SELECT first_id, count,
            sum(count) OVER (ORDER BY first_id DESC ROWS UNBOUNDED PRECEDING)
                AS newer
        FROM turns WHERE room_key = ?1
    ) WHERE newer >= ?2 ORDER BY first_id DESC LIMIT 1
"""


def turn_row(turn: Turn) -> TurnRow:
    """The row of a turn the writer was handed.

    The core's lines are always valid UTF-8; "replace" makes sure a bug
    there costs a few characters, not the writer.
    """
    first_id, room_key, room, at, data, line_count = turn
    lines = data.decode("utf-8", "replace")
    return TurnRow(first_id, room_key, room, at, line_count, lines)


def age_cutoff(now: float, max_age_days: float) -> float | None:
    """The oldest ``at`` that retention keeps, or None to keep every age."""
    if max_age_days <= 0:
        return None
    return now - max_age_days * _SECONDS_PER_DAY


def set_pragmas(conn: sqlite3.Connection) -> None:
    """WAL mode and ``synchronous=NORMAL``; ValueError if WAL is refused."""
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        raise ValueError(f"cannot switch it to WAL mode (got {mode!r})")
    conn.execute("PRAGMA synchronous = NORMAL")
    # The newest pages of the table and its index are written again and
    # again; a larger WAL (checkpointed every 4,096 pages, ~16 MiB, not
    # 1,000) and page cache let them reach the main file far less often.
    conn.execute("PRAGMA wal_autocheckpoint = 4096")
    conn.execute("PRAGMA cache_size = -16384")


def prepare(conn: sqlite3.Connection, keys: RoomKeys | None = None) -> None:
    """Set the file up for the writer; raise ValueError if it is unusable.

    With ``keys`` (the daemon's start-up check), room keys computed by
    another key function are computed again (`rekey`); without (the
    writer), they are left for the daemon's next start.
    """
    set_pragmas(conn)
    # Reads every page once: a damaged file is refused at start-up rather
    # than failing commits in the middle of a chat.
    (check,) = conn.execute("PRAGMA quick_check(1)").fetchone()
    if check != "ok":
        # quick_check reports on several lines; twistd shows one line.
        found = " ".join(str(check).split())
        raise ValueError(
            f"it is damaged ({found}); move it away or restore it from a backup"
        )
    migrate(conn, keys)


def migrate(conn: sqlite3.Connection, keys: RoomKeys | None = None) -> None:
    """Create or upgrade the schema, and re-key if ``keys`` says so.

    Everything happens in one transaction: a version-1 file becomes a
    version-3 file with its keys computed again, or stays as it was.
    Raises ValueError for files not ours.
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"it has schema version {version}, newer than this program's"
            f" ({SCHEMA_VERSION}); upgrade twisted-chat or restore a backup"
        )
    if version == 0:
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        ).fetchone()[0]
        if tables:
            raise ValueError(
                "it is an SQLite database of another program (it has tables"
                " but no twisted-chat schema version)"
            )
    steps = _UPGRADES.get(version, ())
    stale = keys is not None and (
        bool(steps) or recorded_key_version(conn) != keys.version
    )
    if not steps and not stale:
        ensure_indexes(conn)
        return
    # An explicit transaction: the sqlite3 module runs DDL in autocommit,
    # and a half-made schema would read as "another program's" next time.
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in (*steps, *ENSURE_INDEXES):
            conn.execute(statement)
        if keys is not None and stale:
            rekey(conn, keys)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def ensure_indexes(conn: sqlite3.Connection) -> None:
    """Add the indexes of `ENSURE_INDEXES` a file lacks (sqlite3.Error)."""
    with conn:
        for statement in ENSURE_INDEXES:
            conn.execute(statement)


def commit(
    conn: sqlite3.Connection, turns: Sequence[TurnRow], topics: Sequence[TopicRow]
) -> None:
    """Insert turns and upsert topics in one transaction (sqlite3.Error)."""
    if not turns and not topics:
        return
    with conn:
        if turns:
            conn.executemany(INSERT_TURN, turns)
        if topics:
            conn.executemany(UPSERT_TOPIC, topics)
            # Walks the set_at index past MAX_TOPICS rows, and only for a
            # batch that set a topic.
            conn.execute(TRIM_TOPICS, (MAX_TOPICS,))


def prune(
    conn: sqlite3.Connection, now: float, max_per_room: int, max_age_days: float
) -> None:
    """Delete what retention removes, in one transaction (sqlite3.Error).

    A room keeps exactly its newest ``max_per_room`` messages: the oldest
    turn kept loses the lines before them. A topic set before the age
    cutoff goes once its room has no history left, so the topic of a room
    nobody used for ``max_age_days`` goes with its history; the newest
    `MAX_TOPICS` are kept in any case.
    """
    cutoff = age_cutoff(now, max_age_days)
    with conn:
        if cutoff is not None:
            conn.execute("DELETE FROM turns WHERE at < ?", (cutoff,))
            conn.execute(PRUNE_TOPICS, (cutoff,))
        conn.execute(TRIM_TOPICS, (MAX_TOPICS,))
        if max_per_room <= 0:
            return
        rooms = conn.execute("SELECT DISTINCT room_key FROM turns").fetchall()
        for (key,) in rooms:
            found = conn.execute(_BOUNDARY_TURN, (key, max_per_room)).fetchone()
            if found is None:
                continue  # fewer messages than the limit
            first_id, count, newer = found
            conn.execute(
                "DELETE FROM turns WHERE room_key = ? AND first_id < ?",
                (key, first_id),
            )
            extra = newer - max_per_room
            if extra:
                (lines,) = conn.execute(
                    "SELECT lines FROM turns WHERE first_id = ?", (first_id,)
                ).fetchone()
                kept = "\r\n".join(lines.split("\r\n")[extra:])
                conn.execute(
                    "UPDATE turns SET first_id = ?, count = ?, lines = ?"
                    " WHERE first_id = ?",
                    (first_id + extra, count - extra, kept, first_id),
                )


def checkpoint_and_close(conn: sqlite3.Connection) -> None:
    """Fold the WAL into the main file, then close (sqlite3.Error).

    After this the file is complete on its own, e.g. for copying.
    """
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
