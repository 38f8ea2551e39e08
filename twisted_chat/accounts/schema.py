"""The accounts file's schema, its checks and its SQL (issue 13).

Version 2 added ``server_bans``: the server bans live in the accounts
file, not the history file, because they are about who may connect (an
``account:NAME`` ban is as much an account's as its hash) and must
survive ``--history-db off``; a version-1 file gets the table at open.
Version 3 added ``rooms``, the registered rooms of issue 14
(`twisted_chat.accounts.rooms`), for the same reasons: their founders
and operators are accounts.  Older files get the (empty) table at open
and keep their accounts and bans.

Used by `twisted_chat.accounts.store.SqliteAccountStore`: the tables, the
start-up checks a file must pass (`prepare`), the migration steps and
the statements its writer thread runs. The schema version lives in the
``meta`` table (``schema_version``), next to ``key_version``, what the
account keys were computed with (`twisted_chat.core.names.KEY_VERSION`):
when the key function changes, `prepare` computes every key again from
the stored display name, as the history file does for room keys.
Standard library and the core's names only.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "BANS_CLEAR",
    "BANS_INSERT",
    "BANS_SELECT",
    "DELETE",
    "INSERT",
    "SCHEMA_VERSION",
    "SET_HASH",
    "SET_LOGIN",
    "prepare",
]

#: Bump it and add a step to `_UPGRADES` when the schema changes.
SCHEMA_VERSION: Final = 3

SCHEMA_V1: Final = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """
    CREATE TABLE accounts (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_login REAL
    )
    """,
)

#: Version 2: the server bans (`twisted_chat.core.bans.Ban.to_dict`'s
#: fields), in the order the core gave them (``id``).
SCHEMA_V2: Final = (
    """
    CREATE TABLE server_bans (
        id INTEGER PRIMARY KEY,
        pattern TEXT NOT NULL,
        set_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        set_at REAL NOT NULL,
        expires_at REAL
    )
    """,
)

#: Version 3: the registered rooms.  ``key`` is the room name's key (with
#: its ``#``), ``founder`` an account key; the topic is three NULLs or
#: none; ``rules`` is a JSON object (`twisted_chat.core.room_rules`' plain
#: form), opaque to this layer.
SCHEMA_V3: Final = (
    """
    CREATE TABLE rooms (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        founder TEXT NOT NULL,
        created_at REAL NOT NULL,
        topic TEXT,
        topic_by TEXT,
        topic_at REAL,
        rules TEXT NOT NULL
    )
    """,
)

#: What each older version needs to become `SCHEMA_VERSION`.
_UPGRADES: Final[dict[int, tuple[str, ...]]] = {
    0: SCHEMA_V1 + SCHEMA_V2 + SCHEMA_V3,
    1: SCHEMA_V2 + SCHEMA_V3,
    2: SCHEMA_V3,
}

INSERT: Final = (
    "INSERT INTO accounts (key, name, hash, created_at, last_login)"
    " VALUES (?, ?, ?, ?, ?)"
)
SET_HASH: Final = "UPDATE accounts SET hash = ? WHERE key = ?"
SET_LOGIN: Final = "UPDATE accounts SET last_login = ? WHERE key = ?"
DELETE: Final = "DELETE FROM accounts WHERE key = ?"
BANS_SELECT: Final = (
    "SELECT pattern, set_by, reason, set_at, expires_at FROM server_bans ORDER BY id"
)
BANS_CLEAR: Final = "DELETE FROM server_bans"
BANS_INSERT: Final = (
    "INSERT INTO server_bans (pattern, set_by, reason, set_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?)"
)
_SET_META: Final = "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)"


def _version(conn: sqlite3.Connection) -> int:
    """The file's schema version; 0 for a new file; ValueError if not ours."""
    tables = {
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if "meta" not in tables:
        if tables:
            raise ValueError(
                "it is an SQLite database of another program (it has tables"
                " but no twisted-chat schema version)"
            )
        return 0
    row = conn.execute(
        "SELECT value FROM meta WHERE name = 'schema_version'"
    ).fetchone()
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise ValueError("its meta table has no valid schema_version") from None


def prepare(
    conn: sqlite3.Connection, key_version: str, key: Callable[[str], str]
) -> None:
    """Check, create or upgrade the file; re-key it if ``key_version`` changed.

    WAL mode with ``synchronous=FULL`` (an account write is rare and must
    survive a power cut), ``quick_check``, then one transaction that
    upgrades, re-keys and proves the file writable. Raises ValueError or
    sqlite3.Error, whose text says what is wrong.
    """
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        raise ValueError(f"cannot switch it to WAL mode (got {mode!r})")
    conn.execute("PRAGMA synchronous = FULL")
    (check,) = conn.execute("PRAGMA quick_check(1)").fetchone()
    if check != "ok":
        found = " ".join(str(check).split())
        raise ValueError(
            f"it is damaged ({found}); move it away or restore it from a backup"
        )
    version = _version(conn)
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"it has schema version {version}, newer than this program's"
            f" ({SCHEMA_VERSION}); upgrade twisted-chat or restore a backup"
        )
    # Explicit: the sqlite3 module runs DDL in autocommit, and a half-made
    # schema would read as "another program's" next time. BEGIN IMMEDIATE
    # also proves now, not at the first /register, that the file is writable.
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _UPGRADES.get(version, ()):
            conn.execute(statement)
        recorded = conn.execute(
            "SELECT value FROM meta WHERE name = 'key_version'"
        ).fetchone()
        if recorded is None or recorded[0] != key_version:
            _rekey(conn, key)
        conn.execute(_SET_META, ("schema_version", str(SCHEMA_VERSION)))
        conn.execute(_SET_META, ("key_version", key_version))
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def _rekey(conn: sqlite3.Connection, key: Callable[[str], str]) -> None:
    """Compute every account's key again from its name (inside a transaction).

    Two accounts whose names now meet cannot both be kept, and which one to
    drop is a person's decision: ValueError naming both.  The registered
    rooms follow (`_rekey_rooms`).
    """
    rows = conn.execute("SELECT key, name FROM accounts ORDER BY created_at").fetchall()
    seen: dict[str, str] = {}
    for _, name in rows:
        new = key(name)
        if new in seen:
            raise ValueError(
                f"the accounts {seen[new]!r} and {name!r} now count as the same"
                " name; delete one of them with the sqlite3 shell and start again"
            )
        seen[new] = name
    conn.execute("CREATE TEMP TABLE rekeyed AS SELECT * FROM accounts")
    conn.execute("DELETE FROM accounts")
    for old, name in rows:
        conn.execute(
            "INSERT INTO accounts SELECT ?, name, hash, created_at, last_login"
            " FROM rekeyed WHERE key = ?",
            (key(name), old),
        )
    conn.execute("DROP TABLE rekeyed")
    _rekey_rooms(conn, key, {old: key(name) for old, name in rows})


def _rekey_rooms(
    conn: sqlite3.Connection, key: Callable[[str], str], accounts: dict[str, str]
) -> None:
    """Re-key the rooms from their names, and their founders as their accounts.

    A founder whose account is gone is keyed from the old key (keys are
    names too).  Two rooms that now meet: ValueError naming both, as for
    accounts.  The account keys inside ``rules`` are opaque here: the
    core's ``from_dict`` keys them again when it reads them.
    """
    # A row with a name or founder that is not text is left as it is: the
    # load skips it with a warning.
    rows = [
        row
        for row in conn.execute(
            "SELECT key, name, founder FROM rooms ORDER BY created_at"
        )
        if isinstance(row[1], str) and isinstance(row[2], str)
    ]
    seen: dict[str, str] = {}
    for _, name, _founder in rows:
        new = key(name)
        if new in seen:
            raise ValueError(
                f"the registered rooms {seen[new]!r} and {name!r} now count as the"
                " same name; delete one of them with the sqlite3 shell and start again"
            )
        seen[new] = name
    conn.execute("CREATE TEMP TABLE rekeyed_rooms AS SELECT * FROM rooms")
    conn.executemany("DELETE FROM rooms WHERE key = ?", [(r[0],) for r in rows])
    for old, name, founder in rows:
        conn.execute(
            "INSERT INTO rooms SELECT ?, name, ?, created_at, topic, topic_by,"
            " topic_at, rules FROM rekeyed_rooms WHERE key = ?",
            (key(name), accounts.get(founder) or key(founder), old),
        )
    conn.execute("DROP TABLE rekeyed_rooms")
