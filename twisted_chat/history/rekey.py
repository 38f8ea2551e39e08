"""Room keys computed again when the key function changed (issue 11).

Room keys (`twisted_chat.core.names.name_key`) are stored with every turn and
topic, and a read finds a room's rows by its key, so a file written with
another key function would hide the history and topic of every room whose
key changed (``#games`` became ``#garnes`` with the TR39 skeletons). The
daemon's start-up check (`twisted_chat.history.files.open_database`) calls
`twisted_chat.history.schema.migrate` with the current `RoomKeys`, and the
keys are computed again once, in the transaction of the schema upgrade.
Standard library only, like ``history_schema``: the writer child imports it.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RekeyError", "RoomKeys", "recorded_key_version", "rekey"]

#: Rooms whose names now share a key keep the newest topic.
_DROP_MERGED_TOPICS: Final = """
    DELETE FROM topics WHERE rowid IN (
        SELECT rowid FROM (
            SELECT rowid, row_number() OVER (
                PARTITION BY name_key(room) ORDER BY set_at DESC, rowid DESC
            ) AS rank FROM topics
        ) WHERE rank > 1
    )
"""

_INSERT_TOPIC: Final = (
    "INSERT INTO topics (room_key, room, text, set_by, set_at) VALUES (?, ?, ?, ?, ?)"
)


class RoomKeys(NamedTuple):
    """The function that makes room keys, and the name of its version.

    Passed in (`twisted_chat.core.names.name_key`, ``KEY_VERSION``) rather than
    imported, so that the writer child does not load the confusables table.
    """

    version: str
    function: Callable[[str], str]


class RekeyError(ValueError):
    """The room keys could not be computed again; the file is unchanged."""


def recorded_key_version(conn: sqlite3.Connection) -> str | None:
    """The key version a version-3 file records, None if it has none."""
    found = conn.execute("SELECT value FROM meta WHERE name = 'key_version'").fetchone()
    return None if found is None else str(found[0])


def rekey(conn: sqlite3.Connection, keys: RoomKeys) -> None:
    """Compute every stored room key again, inside the caller's transaction.

    Only rows whose key changes are written (the WHERE clauses), so a file
    of ASCII rooms without look-alike letters costs one read. Rooms whose
    names now share a key become one room; of their topics the newest is
    kept. Records ``keys.version`` last. Raises `RekeyError`; the caller
    rolls back.
    """
    conn.create_function("name_key", 1, keys.function, deterministic=True)
    try:
        conn.execute(
            "UPDATE turns SET room_key = name_key(room)"
            " WHERE room_key <> name_key(room)"
        )
        conn.execute(_DROP_MERGED_TOPICS)
        # Moved by delete and insert, not UPDATE: the primary key is
        # checked row by row, and a row may move to a key another row
        # still holds until its own turn comes.
        moved = conn.execute(
            "SELECT rowid, name_key(room), room, text, set_by, set_at"
            " FROM topics WHERE room_key <> name_key(room)"
        ).fetchall()
        conn.executemany(
            "DELETE FROM topics WHERE rowid = ?", [(row[0],) for row in moved]
        )
        conn.executemany(_INSERT_TOPIC, [row[1:] for row in moved])
        conn.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('key_version', ?)",
            (keys.version,),
        )
    except sqlite3.Error as e:
        raise RekeyError(
            f"cannot compute its room keys again for {keys.version} ({e});"
            " the file was left as it was"
        ) from e
    finally:
        conn.create_function("name_key", 1, None)
