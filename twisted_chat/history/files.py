"""Opening, checking and copying the history file, on the daemon's side.

`SqliteStore.open` checks the file with `open_database` before any port is
bound, so that a file that cannot be used stops ``twistd`` with one
sentence (`HistoryStoreError`) instead of failing in the middle of a chat.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from twisted_chat.core import names
from twisted_chat.history.memory import HistoryStoreError
from twisted_chat.history.rekey import RekeyError, RoomKeys
from twisted_chat.history.schema import SCHEMA_VERSION, prepare

__all__ = ["backup_database", "connect_reader", "open_database"]


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


def open_database(path: str) -> tuple[sqlite3.Connection, sqlite3.Connection, int]:
    """Check the file at ``path``, creating it if missing.

    Creates the parent directory if it is missing, sets WAL mode and
    ``synchronous=NORMAL``, creates or checks the schema (``PRAGMA
    user_version``), runs ``PRAGMA quick_check``, computes the room keys
    again if the file's were made by another key function than
    `twisted_chat.core.names.name_key` (see `twisted_chat.history.rekey`) and
    proves the file is writable. Only this check re-keys: it runs before
    the writer, thread or child, is started.

    :return: the checked writer connection (usable from any thread), the
        reader connection and the next free message id.
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
    return write_conn, reader, int(next_id)


def backup_database(path: str, dest_path: str) -> None:
    """Copy the committed history at ``path`` to ``dest_path``.

    See `SqliteStore.backup`.

    :raises HistoryStoreError: the copy could not be made.
    """
    try:
        Path(dest_path).absolute().parent.mkdir(parents=True, exist_ok=True)
        source = sqlite3.connect(path)
        try:
            dest = sqlite3.connect(dest_path)
            try:
                # Copy in steps so the writer is not locked out meanwhile.
                source.backup(dest, pages=256)
            finally:
                dest.close()
        finally:
            source.close()
    except (sqlite3.Error, OSError) as e:
        raise HistoryStoreError(f"cannot back up {path} to {dest_path}: {e}") from e
