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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
from twisted.logger import Logger

from twisted_chat.core.account_ports import Account, AccountStore, Refusal
from twisted_chat.core.names import name_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.interfaces import IReactorTime

__all__ = [
    "MAX_ACCOUNTS",
    "Account",
    "AccountStore",
    "AccountStoreError",
    "MemoryAccountStore",
    "Refusal",
]

#: The most accounts a store holds; `create` refuses more.
MAX_ACCOUNTS: Final = 100_000


class AccountStoreError(Exception):
    """The accounts file cannot be used; raised by ``open`` only.

    One sentence naming the path and the reason: the daemon refuses to
    start with it, as with a bad history file.
    """


class BaseAccountStore:
    """The dict, the bound and the rules; subclasses write (`_write`)."""

    _log: Logger = Logger(namespace="twisted_chat.accounts")

    def __init__(self, accounts: dict[str, Account], max_accounts: int) -> None:
        self._accounts = accounts
        self.max_accounts = max_accounts
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
        if self._closed:
            return Refusal.CLOSED
        key = name_key(name)
        before = self._accounts.get(key)
        if before is None:
            return Refusal.NO_SUCH_ACCOUNT
        del self._accounts[key]
        self._write(key, before, None, done)
        return before

    def close(self) -> None:
        """`AccountStore.close`."""
        self._closed = True

    def _evolve(
        self,
        name: str,
        done: Callable[[bool], None] | None,
        change: Callable[[Account], Account],
    ) -> Account | Refusal:
        if self._closed:
            return Refusal.CLOSED
        key = name_key(name)
        before = self._accounts.get(key)
        if before is None:
            return Refusal.NO_SUCH_ACCOUNT
        return self._change(key, change(before), done)

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
        if done is not None:
            try:
                done(ok)
            except Exception:
                self._log.failure("in an account write callback")


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
