"""
The accounts file and the password hasher, as the daemon opens and closes them.

:func:`open_accounts` runs in ``makeService``, where :func:`open_store`
(:mod:`twisted_chat.daemon.service`) checks the history file: before any
port is bound, so a damaged, foreign or newer ``accounts.sqlite3`` stops
the daemon with one line (:class:`StartupError`) instead of a daemon that
forgets every account.  The file is opened whatever ``--accounts`` says,
because it also holds the server bans, which apply to guests too.  It
lives in the state directory, found as the history file's is
(``--state-dir``, ``$STATE_DIRECTORY``, ``./chat-state``).

:class:`AccountsService` starts the store's writer thread and the hasher's
threads in ``startService`` (twistd forks into the background between
``makeService`` and ``startService``, and threads do not survive a fork)
and closes both when the daemon stops.  It is the service added first, so
it stops last: after every client has gone and the listeners are closed,
the queued account writes reach the disk.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.logger import Logger

from twisted_chat.accounts.passwords import Argon2Hasher
from twisted_chat.accounts.sqlite import FILE_NAME, SqliteAccountStore
from twisted_chat.accounts.store import AccountStoreError
from twisted_chat.core.account_ports import AccountServices
from twisted_chat.daemon.config import default_state_dir
from twisted_chat.daemon.startup import StartupError

if TYPE_CHECKING:
    from twisted_chat.core.settings import Settings

__all__ = ["AccountsService", "accounts_path", "open_accounts"]

_log = Logger()


def accounts_path(settings: Settings) -> Path:
    """Where the accounts file is: ``accounts.sqlite3`` in the state directory."""
    return Path(settings.state_dir or default_state_dir(os.environ), FILE_NAME)


def open_accounts(settings: Settings, reactor: Any) -> AccountServices:
    """
    The account store (checked and loaded, not yet started) and the hasher.

    :raises StartupError: the accounts file cannot be used; one line that
        names it and says why.
    """
    path = accounts_path(settings)
    try:
        store = SqliteAccountStore.open(str(path), reactor=reactor, start=False)
    except AccountStoreError as problem:
        raise StartupError(str(problem)) from None
    _log.info(
        "accounts: {count} in {path}, {bans} server bans; accounts {state},"
        " registration {registration}",
        count=len(store),
        path=str(path),
        bans=len(store.server_bans()),
        state="on" if settings.accounts else "off",
        registration="open" if settings.registration_open else "closed",
    )
    return AccountServices(store, Argon2Hasher(reactor), store.rooms)


class AccountsService(Service):
    """Starts the accounts' threads once the daemon runs; closes them last."""

    def __init__(self, services: AccountServices) -> None:
        self.services = services

    def startService(self) -> None:
        super().startService()
        store, hasher = self.services.store, self.services.hasher
        if isinstance(hasher, Argon2Hasher):
            hasher.start()
        if isinstance(store, SqliteAccountStore):
            try:
                store.start()
            except sqlite3.Error as problem:
                _log.error(
                    "ACCOUNTS NOT SAVED: cannot open {path} again: {problem}",
                    path=store.path,
                    problem=str(problem),
                )

    def stopService(self) -> None:
        """Write what is queued (blocks up to a few seconds), end the threads."""
        super().stopService()
        self.services.store.close()
        if isinstance(self.services.hasher, Argon2Hasher):
            self.services.hasher.stop()
