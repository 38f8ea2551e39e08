"""
What the core asks of accounts: the store and the password hasher.

The rules of accounts (who may register, what a login does to a nickname,
throttling, the prompt) are the core's (:mod:`twisted_chat.core.accounts`);
keeping passwords and files is the storage layer's
(:mod:`twisted_chat.accounts`).  These protocols are the seam between them,
declared here because the core is the one that calls them and may import
no other layer.  Both answer slow work through a callback the core passes,
run later on the reactor thread, so the core never holds a Deferred and a
login never stalls the chat.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from twisted_chat.core.room_ports import RoomStore

__all__ = [
    "Account",
    "AccountServices",
    "AccountStore",
    "BanRow",
    "PasswordHasher",
    "Refusal",
]

#: One server ban as stored (:meth:`twisted_chat.core.bans.Ban.to_dict`).
BanRow = Mapping[str, "str | float | None"]


class Refusal(enum.Enum):
    """Why a change was not made (nothing is written, ``done`` is not called)."""

    EXISTS = "exists"
    FULL = "full"
    NO_SUCH_ACCOUNT = "no-such-account"
    CLOSED = "closed"
    #: Registered rooms (`twisted_chat.core.room_ports.RoomStore`).
    NO_SUCH_ROOM = "no-such-room"
    #: The founder already has as many registered rooms as one may.
    TOO_MANY_FOUNDED = "too-many-founded"


@attrs.frozen
class Account:
    """One account. ``password_hash`` is argon2id's string; never show it."""

    key: str
    name: str
    password_hash: str = attrs.field(repr=False)
    created_at: float
    last_login: float | None = None


class AccountStore(Protocol):
    """
    The accounts, all in memory; changes are applied at once and written later.

    Every method runs on the reactor thread.  ``done`` (when given) is told
    on a later reactor turn whether the write was kept; a failed write is
    undone in memory.
    """

    def get(self, name: str) -> Account | None:
        """The account whose name has the key of ``name``, from memory."""

    def __len__(self) -> int:
        """How many accounts there are."""

    def create(
        self,
        name: str,
        password_hash: str,
        now: float,
        done: Callable[[bool], None] | None = None,
    ) -> Account | Refusal:
        """Make an account for ``name`` (EXISTS, FULL, CLOSED)."""

    def set_password(
        self, name: str, password_hash: str, done: Callable[[bool], None] | None = None
    ) -> Account | Refusal:
        """Store a new hash (NO_SUCH_ACCOUNT, CLOSED)."""

    def record_login(
        self, name: str, now: float, done: Callable[[bool], None] | None = None
    ) -> Account | Refusal:
        """Set ``last_login`` (NO_SUCH_ACCOUNT, CLOSED)."""

    def delete(
        self, name: str, done: Callable[[bool], None] | None = None
    ) -> Account | Refusal:
        """Delete the account; returns what was deleted (NO_SUCH_ACCOUNT, CLOSED)."""

    def server_bans(self) -> list[BanRow]:
        """The server bans as last saved (read once, at start)."""

    def save_server_bans(
        self, rows: list[BanRow], done: Callable[[bool], None] | None = None
    ) -> None:
        """Replace the saved server bans with ``rows`` (at most a thousand)."""

    def close(self) -> None:
        """Write what is queued, then refuse further changes (blocks briefly)."""


class PasswordHasher(Protocol):
    """Argon2id off the reactor thread; callbacks run on the reactor thread."""

    def hash(self, password: str, done: Callable[[str | None], None]) -> bool:
        """Hash ``password``; ``done`` gets the hash, or None if argon2 failed.

        Returns False, and never calls ``done``, when busy.
        """

    def verify(
        self, stored: str | None, password: str, done: Callable[[bool], None]
    ) -> bool:
        """Check ``password`` against ``stored`` (None: no such account).

        ``done`` gets True only for a match. Returns False, and never calls
        ``done``, when busy.
        """

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with other parameters (cheap, no argon2)."""

    @property
    def pending(self) -> int:
        """Jobs accepted and not yet answered."""


@attrs.frozen
class AccountServices:
    """The store and the hasher (and the registered rooms), handed to the core."""

    store: AccountStore
    hasher: PasswordHasher
    #: The registered rooms (None: rooms cannot be registered).
    rooms: RoomStore | None = None
