"""Accounts in their own SQLite file, written by one thread (issue 13).

`SqliteAccountStore.open` checks the file (`twisted_chat.accounts.schema`)
before the daemon binds a port, so a damaged, foreign, newer or
unwritable file stops it with one sentence (`AccountStoreError`). It
then reads every account into memory: look-ups never touch the disk.

Changes are written in order by one daemon thread that owns the
connection; each write is its own transaction (accounts change rarely,
and a registration must be on disk when ``done`` says so) and its result
comes back through ``callFromThread``. Why a thread of its own and not
the reactor's pool, nor history's writer: SQLite wants one writer and
the order of writes matters (create, then set the password), which one
thread gives for free; the history writer's batching and backlog are for
thousands of rows a second, not a few a minute.

The registered rooms (issue 14) share the file and the thread: `open`
loads them too and hands them to a `SqliteRoomStore` (``rooms``), whose
writes are jobs on this writer, in order with the account writes.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final

from twisted_chat.accounts import rooms, schema
from twisted_chat.accounts.store import (
    MAX_ACCOUNTS,
    Account,
    AccountStoreError,
    Bans,
    BaseAccountStore,
    ban_rows,
)
from twisted_chat.core import names

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.interfaces import IReactorFromThreads

    from twisted_chat.core.room_ports import RegisteredRoom

__all__ = ["FILE_NAME", "SqliteAccountStore"]

#: The file's name in the state directory.
FILE_NAME: Final = "accounts.sqlite3"
#: How long `close` waits for the writer thread.
CLOSE_TIMEOUT: Final = 5.0

#: One account change: key, before, after, done.
_Write = tuple[str, Account | None, Account | None, "Callable[[bool], None] | None"]
#: The server bans replaced: before, after, done.
_BanSave = tuple[Bans, Bans, "Callable[[bool], None] | None"]
#: Any other work (a registered room's write): run with the connection,
#: it returns what the reactor thread runs next.
_Job = tuple["Callable[[sqlite3.Connection], Callable[[], None]]"]


class SqliteAccountStore(BaseAccountStore):
    """`AccountStore` in an SQLite file; build it with `open`."""

    def __init__(
        self,
        path: str,
        conn: sqlite3.Connection | None,
        accounts: dict[str, Account],
        *,
        reactor: IReactorFromThreads,
        max_accounts: int,
        bans: Bans = (),
        registered: dict[str, RegisteredRoom] | None = None,
    ) -> None:
        """Use `open`; this only assembles checked parts and starts the writer."""
        super().__init__(accounts, max_accounts, bans)
        self.path = path
        self._conn = conn
        self._reactor = reactor
        self._queue: queue.SimpleQueue[_Write | _BanSave | _Job | None] = (
            queue.SimpleQueue()
        )
        #: The registered rooms of the file (`RoomStore`).
        self.rooms = rooms.SqliteRoomStore(registered or {}, self._submit, path)
        #: Writes queued whose answer has not reached the reactor thread.
        self.pending_writes = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer thread (connecting again if `open` did not start).

        The daemon opens the store before twistd forks into the background
        and starts it from ``startService``, after the fork: neither a
        thread nor an SQLite connection survives a fork.  Writes made
        before are queued, in order.

        :raises sqlite3.Error: the file cannot be opened again.
        """
        if self._thread is not None:
            return
        conn = self._conn
        if conn is None:
            conn = self._conn = _connect(self.path)
            conn.execute("PRAGMA synchronous = FULL")
        self._thread = threading.Thread(
            target=self._run,
            args=(conn,),
            name=f"accounts-writer {self.path}",
            daemon=True,
        )
        self._thread.start()

    @classmethod
    def open(
        cls,
        path: str,
        *,
        reactor: IReactorFromThreads,
        max_accounts: int = MAX_ACCOUNTS,
        start: bool = True,
    ) -> SqliteAccountStore:
        """Open (or create) the accounts file at ``path``, check it, load it.

        :param start: start the writer now; False leaves it to `start`
            (closing the connection the checks used).

        :raises AccountStoreError: the file cannot be used; one sentence
            naming ``path`` and why.
        """
        prefix = f"{path} is not a usable accounts database"
        directory = Path(path).absolute().parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AccountStoreError(
                f"{prefix}: cannot create directory {directory}: {e}"
            ) from e
        _create_private(path)
        conn: sqlite3.Connection | None = None
        try:
            # Opened here so that every problem shows now, then owned by the
            # writer thread (hence check_same_thread=False).
            conn = _connect(path)
            # names is looked up at call time, so that a test can replace it.
            schema.prepare(conn, names.KEY_VERSION, names.name_key)
            rows = conn.execute(
                "SELECT key, name, hash, created_at, last_login FROM accounts"
            ).fetchall()
            bans = ban_rows(
                [
                    dict(zip(_BAN_FIELDS, row, strict=True))
                    for row in conn.execute(schema.BANS_SELECT)
                ]
            )
            registered = rooms.load_rooms(
                conn.execute(rooms.ROOMS_SELECT), names.name_key, path
            )
        except (sqlite3.Error, ValueError, OSError) as e:
            if conn is not None:
                conn.close()
            reason = " ".join(str(e).split())
            raise AccountStoreError(f"{prefix}: {reason}") from e
        accounts = {
            key: Account(
                key,
                name,
                password_hash,
                float(created_at),
                None if last_login is None else float(last_login),
            )
            for key, name, password_hash, created_at, last_login in rows
        }
        if not start:
            conn.close()
        store = cls(
            path,
            conn if start else None,
            accounts,
            reactor=reactor,
            max_accounts=max_accounts,
            bans=bans,
            registered=registered,
        )
        if start:
            store.start()
        return store

    def close(self) -> None:
        """Refuse changes, let the writer finish the queue, close the file.

        Blocks the caller until the queued writes are on disk (a few
        milliseconds each) or `CLOSE_TIMEOUT` passes; their ``done``
        callbacks still arrive through the reactor.
        """
        if self._closed:
            return
        super().close()
        self.rooms.close()
        if self._thread is None:
            if not self.pending_writes:
                return
            try:
                self.start()
            except sqlite3.Error as e:
                self._log.error(
                    "{count} account writes lost: cannot open {path}: {error}",
                    count=self.pending_writes,
                    path=self.path,
                    error=str(e),
                )
                return
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT)

    def _write(
        self,
        key: str,
        before: Account | None,
        after: Account | None,
        done: Callable[[bool], None] | None,
    ) -> None:
        self.pending_writes += 1
        self._queue.put((key, before, after, done))

    def _write_bans(
        self, before: Bans, after: Bans, done: Callable[[bool], None] | None
    ) -> None:
        self.pending_writes += 1
        self._queue.put((before, after, done))

    def _submit(self, job: Callable[[sqlite3.Connection], Callable[[], None]]) -> None:
        """Queue ``job`` for the writer thread (the registered rooms' writes)."""
        self.pending_writes += 1
        self._queue.put((job,))

    def _job_answered(self, then: Callable[[], None]) -> None:
        """On the reactor thread: a job is done; run what it returned."""
        self.pending_writes -= 1
        then()

    def _bans_answered(
        self,
        ok: bool,
        before: Bans,
        after: Bans,
        done: Callable[[bool], None] | None,
    ) -> None:
        """On the reactor thread: one save of the server bans is answered."""
        self.pending_writes -= 1
        self._bans_written(ok, before, after, done)

    def _answered(
        self,
        ok: bool,
        key: str,
        before: Account | None,
        after: Account | None,
        done: Callable[[bool], None] | None,
    ) -> None:
        """On the reactor thread: one write is answered."""
        self.pending_writes -= 1
        self._written(ok, key, before, after, done)

    def _run(self, conn: sqlite3.Connection) -> None:
        """The writer thread: one transaction per change, in order."""
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if len(item) == 1:
                    self._reactor.callFromThread(self._job_answered, item[0](conn))
                    continue
                if len(item) == 3:
                    self._save_bans(conn, *item)
                    continue
                key, before, after, done = item
                ok = True
                try:
                    with conn:
                        _apply(conn, key, before, after)
                except Exception as e:
                    ok = False
                    # The account's name and the error, never the hash.
                    self._log.error(
                        "account write failed for {name} in {path}: {error}",
                        name=key,
                        path=self.path,
                        error=" ".join(str(e).split()),
                    )
                self._reactor.callFromThread(
                    self._answered, ok, key, before, after, done
                )
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    def _save_bans(
        self,
        conn: sqlite3.Connection,
        before: Bans,
        after: Bans,
        done: Callable[[bool], None] | None,
    ) -> None:
        """On the writer thread: replace every row of ``server_bans``."""
        ok = True
        try:
            with conn:
                conn.execute(schema.BANS_CLEAR)
                conn.executemany(
                    schema.BANS_INSERT,
                    [tuple(row[name] for name in _BAN_FIELDS) for row in after],
                )
        except Exception as e:
            ok = False
            self._log.error(
                "server bans write failed in {path}: {error}",
                path=self.path,
                error=" ".join(str(e).split()),
            )
        self._reactor.callFromThread(self._bans_answered, ok, before, after, done)


def _create_private(path: str) -> None:
    """
    Make a new accounts file readable by its owner only, whatever the umask:
    it holds password hashes.  SQLite gives the ``-wal`` and ``-shm`` files
    the database's mode.  An existing file is left as it is (and problems
    are for `open`'s checks to name).
    """
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _connect(path: str) -> sqlite3.Connection:
    # Opened on one thread, then owned by the writer (check_same_thread).
    return sqlite3.connect(path, check_same_thread=False, timeout=5.0)


#: The columns of ``server_bans``, in `schema.BANS_SELECT`'s order.
_BAN_FIELDS: Final = ("pattern", "set_by", "reason", "set_at", "expires_at")


def _apply(
    conn: sqlite3.Connection, key: str, before: Account | None, after: Account | None
) -> None:
    """Run the statements that turn ``before`` into ``after`` (sqlite3.Error).

    Each must change exactly one row: anything else means the file and
    memory disagree, and the write counts as failed.
    """
    if after is None:
        steps: list[tuple[str, tuple[object, ...]]] = [(schema.DELETE, (key,))]
    elif before is None:
        row = (key, after.name, after.password_hash, after.created_at, after.last_login)
        steps = [(schema.INSERT, row)]
    else:
        steps = []
        if after.password_hash != before.password_hash:
            steps.append((schema.SET_HASH, (after.password_hash, key)))
        if after.last_login != before.last_login:
            steps.append((schema.SET_LOGIN, (after.last_login, key)))
    for statement, values in steps:
        if conn.execute(statement, values).rowcount != 1:
            raise sqlite3.IntegrityError("the row was not where memory had it")
