"""Opening and checking the history file, on the daemon's side.

`SqliteStore.open` checks the file with `open_database` before any port is
bound, so that a file that cannot be used stops ``twistd`` with one
sentence (`HistoryStoreError`) instead of failing in the middle of a chat.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NamedTuple

from twisted_chat.core import names
from twisted_chat.history.memory import HistoryStoreError
from twisted_chat.history.rekey import RekeyError, RoomKeys
from twisted_chat.history.schema import SCHEMA_VERSION, prepare

__all__ = ["OpenedDatabase", "connect_reader", "open_database"]


class OpenedDatabase(NamedTuple):
    """A checked history file, as `open_database` hands it over."""

    #: The checked writer connection, usable from any thread.
    writer: sqlite3.Connection
    #: The reactor thread's read connection (`connect_reader`).
    reader: sqlite3.Connection
    #: The next free message id.
    next_id: int


def connect_reader(path: str) -> sqlite3.Connection:
    """The reactor thread's read connection (sqlite3.Error).

    Autocommit reads: each SELECT sees the latest commit. A short timeout,
    because this connection is used on the reactor thread.
    """
    reader = sqlite3.connect(path, timeout=1.0, isolation_level=None)
    try:
        reader.execute("PRAGMA query_only = ON")
    except BaseException:
        reader.close()
        raise
    return reader


def open_database(path: str) -> OpenedDatabase:
    """Check the file at ``path``, creating it if missing.

    Creates the parent directory if it is missing, sets WAL mode and
    ``synchronous=NORMAL``, creates or checks the schema (``PRAGMA
    user_version``), runs ``PRAGMA quick_check``, computes the room keys
    again if the file's were made by another key function than
    `twisted_chat.core.names.name_key` (see `twisted_chat.history.rekey`) and
    proves the file is writable. Only this check re-keys: it runs before
    the writer, thread or child, is started.

    :raises HistoryStoreError: the path cannot be used; the message says why.
    """
    prefix = f"{path} is not a valid history database"
    directory = Path(path).absolute().parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HistoryStoreError(
            f"{prefix}: cannot create directory {directory}: {e}"
        ) from e
    write_conn: sqlite3.Connection | None = None
    reader: sqlite3.Connection | None = None
    try:
        # The writer connection is built here so that every problem shows
        # now, then handed to the writer thread, the only one that uses it
        # afterwards (hence check_same_thread=False).
        write_conn = sqlite3.connect(path, check_same_thread=False)
        # names is looked up at call time, so that a test can replace it.
        prepare(write_conn, RoomKeys(names.KEY_VERSION, names.name_key))
        # Prove the file is writable now, not at the first message.
        write_conn.execute("BEGIN IMMEDIATE")
        write_conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        write_conn.commit()
        (next_id,) = write_conn.execute(
            "SELECT coalesce(max(first_id + count), 1) FROM turns"
        ).fetchone()
        reader = connect_reader(path)
    except (sqlite3.Error, ValueError, OSError) as e:
        for conn in (reader, write_conn):
            if conn is not None:
                conn.close()
        if isinstance(e, RekeyError):
            raise HistoryStoreError(f"{path} cannot be upgraded: {e}") from e
        raise HistoryStoreError(f"{prefix}: {e}") from e
    return OpenedDatabase(write_conn, reader, int(next_id))
