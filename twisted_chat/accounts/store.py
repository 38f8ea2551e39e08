"""Accounts in memory, and what every account store shares (issue 13).

`Account` is one account (frozen); `AccountStore` is what the chat calls.
Every store holds all accounts in a dict by name key
(`twisted_chat.core.names.name_key`), so a look-up never touches the disk,
and applies a change to that dict at once: the next look-up sees it. The
change is then written (`MemoryAccountStore`: nowhere; the SQLite store of
`twisted_chat.accounts.sqlite`: by its writer thread) and the caller's
``done`` callback is told, later and on the reactor thread, whether it
was kept. A write that failed is logged and undone in memory (unless the
account changed again meanwhile), so memory and disk agree.

The number of accounts is bounded (`MAX_ACCOUNTS`): past it `create`
answers `Refusal.FULL`. Nothing here logs a password hash.

The server bans ride along (`save_server_bans`): the core keeps the live
list (`twisted_chat.core.bans.BanList`) and hands the store the whole of
it after each change, at most `MAX_SERVER_BANS` rows. Replacing all of
them is simpler than a diff and cheap at that size, and bans change a
few times a day; the store keeps the last rows given, which is what
`server_bans` answers (the core reads them once, at start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
from twisted.logger import Logger

from twisted_chat.core.account_ports import Account, AccountStore, BanRow, Refusal
from twisted_chat.core.bans import BAN_LIST_SIZE
from twisted_chat.core.names import name_key

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from twisted.internet.interfaces import IReactorTime

__all__ = [
    "MAX_ACCOUNTS",
    "MAX_SERVER_BANS",
    "Account",
    "AccountStore",
    "AccountStoreError",
    "BanRow",
    "MemoryAccountStore",
    "Refusal",
]

#: The most accounts a store holds; `create` refuses more.
MAX_ACCOUNTS: Final = 100_000
#: The most server bans `save_server_bans` takes: what the core's list holds.
MAX_SERVER_BANS: Final = BAN_LIST_SIZE

#: A ban row as stored: `twisted_chat.core.bans.Ban.to_dict`'s values.
Bans = tuple[dict[str, "str | float | None"], ...]


class AccountStoreError(Exception):
    """The accounts file cannot be used; raised by ``open`` only.

    One sentence naming the path and the reason: the daemon refuses to
    start with it, as with a bad history file.
    """


class BaseAccountStore:
    """The dict, the bound and the rules; subclasses write (`_write`)."""

    _log: Logger = Logger(namespace="twisted_chat.accounts")

    def __init__(
        self, accounts: dict[str, Account], max_accounts: int, bans: Bans = ()
    ) -> None:
        self._accounts = accounts
        self.max_accounts = max_accounts
        self._bans = bans
        self._closed = False

    def get(self, name: str) -> Account | None:
        """`AccountStore.get`."""
        return self._accounts.get(name_key(name))

    def __len__(self) -> int:
        return len(self._accounts)

    def create(
        self,
        name: str,
        password_hash: str,
        now: float,
        done: Callable[[bool], None] | None = None,
    ) -> Account | Refusal:
        """`AccountStore.create`."""
        if self._closed:
            return Refusal.CLOSED
        key = name_key(name)
        if key in self._accounts:
            return Refusal.EXISTS
        if len(self._accounts) >= self.max_accounts:
            return Refusal.FULL
        account = Account(key, name, password_hash, now)
        return self._change(key, account, done)

    def set_password(
        self, name: str, password_hash: str, done: Callable[[bool], None] | None = None
    ) -> Account | Refusal:
        """`AccountStore.set_password`."""
        return self._evolve(
            name, done, lambda a: attrs.evolve(a, password_hash=password_hash)
        )

    def record_login(
        self, name: str, now: float, done: Callable[[bool], None] | None = None
    ) -> Account | Refusal:
        """`AccountStore.record_login`."""
        return self._evolve(name, done, lambda a: attrs.evolve(a, last_login=now))

    def delete(
        self, name: str, done: Callable[[bool], None] | None = None
    ) -> Account | Refusal:
        """`AccountStore.delete`."""
        before = self._existing(name)
        if isinstance(before, Refusal):
            return before
        key = before.key
        del self._accounts[key]
        self._write(key, before, None, done)
        return before

    def server_bans(self) -> list[BanRow]:
        """`AccountStore.server_bans`: copies, so the caller may keep them."""
        return [dict(row) for row in self._bans]

    def save_server_bans(
        self, rows: Sequence[BanRow], done: Callable[[bool], None] | None = None
    ) -> None:
        """`AccountStore.save_server_bans`; ignored (no ``done``) once closed.

        :raises ValueError: more than `MAX_SERVER_BANS` rows, or a row that
            is not `Ban.to_dict`'s shape (the caller's bug: nothing is kept).
        """
        if self._closed:
            return
        after = ban_rows(rows)
        before, self._bans = self._bans, after
        self._write_bans(before, after, done)

    def close(self) -> None:
        """`AccountStore.close`."""
        self._closed = True

    def _write_bans(
        self, before: Bans, after: Bans, done: Callable[[bool], None] | None
    ) -> None:
        """Persist the ban rows ``after``; then call `_bans_written`."""
        raise NotImplementedError

    def _bans_written(
        self,
        ok: bool,
        before: Bans,
        after: Bans,
        done: Callable[[bool], None] | None,
    ) -> None:
        """On the reactor thread: undo a failed save, then tell ``done``."""
        if not ok and self._bans is after:
            self._bans = before
        self._tell(done, ok)

    def _evolve(
        self,
        name: str,
        done: Callable[[bool], None] | None,
        change: Callable[[Account], Account],
    ) -> Account | Refusal:
        before = self._existing(name)
        if isinstance(before, Refusal):
            return before
        return self._change(before.key, change(before), done)

    def _existing(self, name: str) -> Account | Refusal:
        """The account a change is for, or why there is none to change."""
        if self._closed:
            return Refusal.CLOSED
        before = self._accounts.get(name_key(name))
        return Refusal.NO_SUCH_ACCOUNT if before is None else before

    def _change(
        self, key: str, after: Account, done: Callable[[bool], None] | None
    ) -> Account:
        before = self._accounts.get(key)
        self._accounts[key] = after
        self._write(key, before, after, done)
        return after

    def _write(
        self,
        key: str,
        before: Account | None,
        after: Account | None,
        done: Callable[[bool], None] | None,
    ) -> None:
        """Persist ``before`` → ``after``; then call `_written` on the reactor."""
        raise NotImplementedError

    def _written(
        self,
        ok: bool,
        key: str,
        before: Account | None,
        after: Account | None,
        done: Callable[[bool], None] | None,
    ) -> None:
        """On the reactor thread: undo a failed write, then tell ``done``."""
        if not ok and self._accounts.get(key) is after:
            if before is None:
                self._accounts.pop(key, None)
            else:
                self._accounts[key] = before
        self._tell(done, ok)

    def _tell(self, done: Callable[[bool], None] | None, ok: bool) -> None:
        if done is not None:
            try:
                done(ok)
            except Exception:
                self._log.failure("in an account write callback")


def ban_rows(rows: Sequence[BanRow]) -> Bans:
    """``rows`` checked and copied as the store keeps them.

    :raises ValueError: too many rows, or one of another shape.
    """
    if len(rows) > MAX_SERVER_BANS:
        raise ValueError(f"{len(rows)} server bans; at most {MAX_SERVER_BANS} are kept")
    kept = []
    for row in rows:
        texts = [row.get(name) for name in ("pattern", "set_by", "reason")]
        set_at, ends = row.get("set_at"), row.get("expires_at")
        if not all(isinstance(text, str) for text in texts) or not (
            _is_number(set_at) and (ends is None or _is_number(ends))
        ):
            raise ValueError(f"not a server ban row: {sorted(row)}")
        pattern, set_by, reason = texts
        kept.append(
            {
                "pattern": pattern,
                "set_by": set_by,
                "reason": reason,
                "set_at": float(set_at),  # type: ignore[arg-type]
                "expires_at": None if ends is None else float(ends),
            }
        )
    return tuple(kept)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class MemoryAccountStore(BaseAccountStore):
    """`AccountStore` in memory only (tests, ``--accounts`` without a file).

    ``done`` runs on the next reactor turn (``callLater(0, ...)``), as the
    SQLite store's runs after its writer thread, so that callers never see
    a callback before the method returned. ``fail_writes`` makes every
    write fail, to test the undo.
    """

    def __init__(
        self, reactor: IReactorTime, *, max_accounts: int = MAX_ACCOUNTS
    ) -> None:
        super().__init__({}, max_accounts)
        self._reactor = reactor
        self.fail_writes = False

    def _write(
        self,
        key: str,
        before: Account | None,
        after: Account | None,
        done: Callable[[bool], None] | None,
    ) -> None:
        ok = not self.fail_writes
        if not ok:
            self._log.error("account write failed for {name}", name=key)
        self._reactor.callLater(0, self._written, ok, key, before, after, done)

    def _write_bans(
        self, before: Bans, after: Bans, done: Callable[[bool], None] | None
    ) -> None:
        ok = not self.fail_writes
        if not ok:
            self._log.error("server bans write failed")
        self._reactor.callLater(0, self._bans_written, ok, before, after, done)
