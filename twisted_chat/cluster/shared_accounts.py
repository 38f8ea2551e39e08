"""Accounts and server bans shared by every node through Redis (issue 19).

One source of truth, so that an account registered on one node logs in on
another and a server ban set on one node refuses on all.  The store stays
what the core expects (`twisted_chat.core.account_ports.AccountStore`):
every account in a dict, a change seen by the next look-up at once, its
write answered later through ``done``.  Only the write goes elsewhere:

- an account is one field of the HASH ``tc:accounts`` (account key ->
  JSON), the server bans the JSON string ``tc:serverbans``;
- each write is one Lua script that changes the key, counts the store's
  version (``tc:accounts:v``, INCR) and PUBLISHes the new value on
  ``tc:control`` as ``{"v": N, "kind": "accounts", "name": key, "value":
  {...} | null}`` or ``{"v": N, "kind": "bans", "value": [...]}``.  Being
  one script, the change and its announcement are atomic, so every node
  sees the announcements in the order Redis made the changes, and the
  last one is what Redis holds;
- a new account is created with HSETNX: two nodes registering one name at
  once give one winner; the loser's ``done`` gets False (the core says it
  could not save) and the winner's account, announced again, replaces it.

Every node, the writer too, applies the announcements (`apply`, routed by
the mirror); `load` reads the whole store with its version, at start and
after each reconnect.  Announcements that arrive while a load is in
flight wait for it and only those newer than its snapshot are applied; a
gap in the versions (a missed announcement) loads again.  While Redis is
down every write answers ``done(False)`` and is undone in memory.

`twisted_chat.cluster.replica` holds what the registered rooms share.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final, TypeGuard

from twisted_chat.accounts.store import (
    MAX_ACCOUNTS,
    Account,
    Bans,
    BaseAccountStore,
    ban_rows,
)
from twisted_chat.cluster.replica import (
    CONTROL,
    WRITE_ENTRY,
    RedisCommands,
    Replica,
    Replicated,
    reason_of,
    text_of,
)
from twisted_chat.core.account_ports import Refusal
from twisted_chat.core.logs import RateLimitedLogger

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTime
    from twisted.python.failure import Failure

__all__ = [
    "ACCOUNTS_KEY",
    "BANS_KEY",
    "RedisAccountStore",
    "account_from",
    "account_value",
]

ACCOUNTS_KEY: Final = "tc:accounts"
ACCOUNTS_VERSION: Final = "tc:accounts:v"
BANS_KEY: Final = "tc:serverbans"

#: Rate-limited: while Redis is down, every write fails and says so.
_log = RateLimitedLogger(namespace="twisted_chat.cluster.stores")

#: The server bans replaced, counted and announced. KEYS: bans, version.
WRITE_BANS: Final = """
local v = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1])
local said = '{"v":' .. v .. ',"kind":"bans","value":' .. ARGV[1] .. '}'
redis.call('PUBLISH', ARGV[2], said)
return 1
"""


def account_value(account: Account) -> str:
    """``account`` as the JSON text kept in ``tc:accounts``."""
    return json.dumps(
        {
            "key": account.key,
            "name": account.name,
            "password_hash": account.password_hash,
            "created_at": account.created_at,
            "last_login": account.last_login,
        },
        separators=(",", ":"),
    )


def account_from(data: object) -> Account:
    """The account a decoded JSON value holds; ValueError if it is not one."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    key, name, hashed = data.get("key"), data.get("name"), data.get("password_hash")
    created, last = data.get("created_at"), data.get("last_login")
    if not (isinstance(key, str) and isinstance(name, str) and isinstance(hashed, str)):
        raise ValueError("key, name and password_hash must be text")
    if not _is_number(created) or not (last is None or _is_number(last)):
        raise ValueError("created_at and last_login must be numbers")
    return Account(
        key, name, hashed, float(created), None if last is None else float(last)
    )


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


class RedisAccountStore(Replicated, BaseAccountStore):
    """`AccountStore` of a clustered node: memory, written to Redis.

    :param on_change: told ``("accounts", key)`` or ``("bans", None)`` after
        an announcement changed an account or the bans, and ``("bans",
        None)`` after a load changed them: the mirror hands new bans to the
        core (``ServerBans.reload``), which reads them once, at start.
    """

    def __init__(
        self,
        link: RedisCommands,
        reactor: IReactorTime,
        *,
        max_accounts: int = MAX_ACCOUNTS,
        on_change: Callable[[str, str | None], None] | None = None,
    ) -> None:
        super().__init__({}, max_accounts)
        self._replica = Replica(link, reactor, "accounts", self._apply_one)
        self.on_change = on_change

    def create(
        self,
        name: str,
        password_hash: str,
        now: float,
        done: Callable[[bool], None] | None = None,
    ) -> Account | Refusal:
        """
        ``AccountStore.create``, refused while Redis is away: the user would
        be told "registered" and the account lost when the nodes rejoin.
        """
        if not self._replica.link.up:
            return Refusal.CLOSED
        return super().create(name, password_hash, now, done)

    def load(self) -> Deferred[bool]:
        """Replace the accounts and bans with Redis's; True when loaded.

        Call it at start (before the core reads `server_bans`) and after
        each reconnect. Never fails: False (logged) when Redis is down.
        """
        return self._replica.load(
            [ACCOUNTS_VERSION, ACCOUNTS_KEY, BANS_KEY], self._install
        )

    def apply(self, message: dict[str, Any]) -> None:
        """A ``tc:control`` message of kind ``accounts`` or ``bans``."""
        self._replica.receive(message, self.load)

    def _install(self, reply: list[Any]) -> int:
        version, fields, bans = reply
        accounts: dict[str, Account] = {}
        for raw in list(fields or [])[1::2]:
            try:
                account = account_from(json.loads(text_of(raw)))
            except ValueError as e:
                _log.warn(
                    "an account in {key} skipped: {reason}",
                    key=ACCOUNTS_KEY,
                    reason=str(e),
                )
                continue
            accounts[account.key] = account
        self._accounts.clear()
        self._accounts.update(accounts)
        before, self._bans = (
            self._bans,
            (self._read_bans(text_of(bans)) if text_of(bans) else ()),
        )
        if self._bans != before:
            self._changed("bans", None)  # changed while this node did not listen
        return int(text_of(version) or 0)

    def _read_bans(self, text: str) -> Bans:
        try:
            return ban_rows(json.loads(text))
        except (ValueError, TypeError) as e:
            _log.warn(
                "the server bans in {key} skipped: {reason}",
                key=BANS_KEY,
                reason=str(e),
            )
            return self._bans

    def _apply_one(self, message: dict[str, Any]) -> None:
        kind, value = message.get("kind"), message.get("value")
        if kind == "bans":
            self._bans = ban_rows(value)  # type: ignore[arg-type]  # checked there
            self._changed("bans", None)
            return
        name = message.get("name")
        if kind != "accounts" or not isinstance(name, str):
            _log.warn("accounts: an announcement of kind {kind!r} ignored", kind=kind)
            return
        if value is None:
            self._accounts.pop(name, None)
        else:
            account = account_from(value)
            self._accounts[account.key] = account
        self._changed("accounts", name)

    def _changed(self, kind: str, key: str | None) -> None:
        if self.on_change is not None:
            try:
                self.on_change(kind, key)
            except Exception:
                _log.failure("in an accounts change callback")

    def _write(
        self,
        key: str,
        before: Account | None,
        after: Account | None,
        done: Callable[[bool], None] | None,
    ) -> None:
        if after is None:
            mode, value = "delete", "null"
        else:
            mode = "create" if before is None else "update"
            value = account_value(after)
        head = f'"kind":"accounts","name":{json.dumps(key)}'
        args = [mode, key, value, head, CONTROL]

        def send() -> Deferred[Any]:
            d = self._replica.script(
                WRITE_ENTRY, [ACCOUNTS_KEY, ACCOUNTS_VERSION], args
            )
            return d.addCallbacks(written, refused)

        def written(result: object) -> None:
            ok = text_of(result) == "1"
            if not ok:
                _log.error(
                    "account write failed for {name}: it was changed on another node",
                    name=key,
                )
            self._written(ok, key, before, after, done)

        def refused(failure: Failure) -> None:
            _log.error(
                "account write failed for {name}: {reason}",
                name=key,
                reason=reason_of(failure),
            )
            self._written(False, key, before, after, done)

        self._replica.later(send)

    def _write_bans(
        self, before: Bans, after: Bans, done: Callable[[bool], None] | None
    ) -> None:
        value = json.dumps(list(after), separators=(",", ":"))

        def send() -> Deferred[Any]:
            d = self._replica.script(
                WRITE_BANS, [BANS_KEY, ACCOUNTS_VERSION], [value, CONTROL]
            )
            return d.addCallbacks(
                lambda _: self._bans_written(True, before, after, done), refused
            )

        def refused(failure: Failure) -> None:
            _log.error("server bans write failed: {reason}", reason=reason_of(failure))
            self._bans_written(False, before, after, done)

        self._replica.later(send)
