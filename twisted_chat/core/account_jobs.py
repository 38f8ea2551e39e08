"""
The password jobs of the account commands, and what a verified login does.

Apart from :mod:`twisted_chat.core.accounts` (the commands' rules) because
this is the part every command shares and the part most easily got wrong:
a job goes to the hasher off the reactor and its answer arrives on a later
turn, when the participant may be gone or the account deleted.  So:

- one job per participant at a time (``participant.checking``), set before
  the hasher is asked (a fake may answer at once) and cleared in the
  answer; a busy hasher is ``! slow-down`` and no job;
- a verification goes through the :class:`LoginThrottle` first; every
  attempt it let through is reported exactly once (failed, succeeded, or
  released when the hasher was busy);
- an answer for a participant who is gone does nothing but the throttle's
  bookkeeping; a reply from an answer first hands the participant the room
  lines queued before it (``Outbox.catch_up``), as ``ChatServer.receive``
  does for a direct reply;
- an answer never raises: the hasher calls it, and the user must get an
  ``!`` line, not a logged traceback.

``/password`` and ``/unregister`` are here as well: after their checks
they are nothing but a chain of these jobs.  A password reaches the hasher
only; the log names an account only when it exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from attrs import frozen

from twisted_chat.core import lines
from twisted_chat.core.account_ports import Refusal
from twisted_chat.core.errors import (
    ChatError,
    InvalidName,
    LoginFailed,
    NotLoggedIn,
    SlowDown,
)
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.names import Nick

if TYPE_CHECKING:
    from twisted_chat.core.account_ports import Account, AccountServices
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.login_throttle import LoginThrottle
    from twisted_chat.core.room import Participant
    from twisted_chat.core.secret_prompt import Secret

__all__ = [
    "INTERNAL_ERROR",
    "NO_ACCOUNT",
    "Attempt",
    "PasswordJobs",
    "account_gone",
    "busy",
    "login_failed",
    "one_at_a_time",
]

_log = RateLimitedLogger()

INTERNAL_ERROR: Final = lines.encode(
    "! internal-error: The password could not be processed; it has been logged."
)
#: What a log event says instead of a name that is no account.
NO_ACCOUNT: Final = "(no such account)"


def busy() -> SlowDown:
    """The hasher's queue is full."""
    return SlowDown(
        "The server is busy checking passwords; try again in a few seconds."
    )


def login_failed() -> LoginFailed:
    """The same for a wrong name and a wrong password."""
    return LoginFailed("Wrong account name or password.")


def one_at_a_time() -> SlowDown:
    """A password job of this participant's is under way."""
    return SlowDown("Your last password is still being checked; wait a moment.")


def account_gone() -> NotLoggedIn:
    """The account logged in to was deleted (by another connection)."""
    return NotLoggedIn("Your account no longer exists; you are not logged in.")


@frozen
class Attempt:
    """One verification: what the throttle counts it under, and what to log."""

    #: The throttle's account key (the name's key, account or not).
    key: str
    #: The account's name for the log, or :data:`NO_ACCOUNT`.
    shown: str
    #: The command, for the log (``login``, ``password``, ``unregister``).
    command: str


class PasswordJobs:
    """Hashing and verifying for one chat server's account commands."""

    def __init__(self, server: ChatServer, throttle: LoginThrottle) -> None:
        self._server = server
        self._throttle = throttle

    # -- replies from answers ----------------------------------------------------------

    def send(self, participant: Participant, data: bytes) -> None:
        """A direct reply from an answer: after the room lines queued before it."""
        self._server.outbox.reply(participant, data)

    def tell_error(self, participant: Participant, problem: ChatError) -> None:
        """``! code: text`` from an answer."""
        self.send(participant, lines.error(problem))

    # -- the jobs ----------------------------------------------------------------------

    def start(self, participant: Participant) -> None:
        """Mark a job under way; :raises SlowDown: when one is already."""
        if participant.checking:
            raise one_at_a_time()
        participant.checking = True

    def verify(
        self,
        participant: Participant,
        services: AccountServices,
        attempt: Attempt,
        stored: tuple[str | None, Secret],
        then: Callable[[], None],
    ) -> None:
        """
        Check a password through the throttle; ``then`` runs on a match (the
        participant may be gone by then), a mismatch gets ``! login-failed``.

        :param stored: the stored hash (None: no such account, which costs
            the same dummy verification) and the password typed.
        :raises LoginThrottled: from the throttle.
        :raises SlowDown: one job at a time, or the hasher is busy.
        """
        password_hash, password = stored
        throttle = self._throttle
        key, group, peer = attempt.key, participant.group, participant.client.peer
        self.start(participant)
        refusal = throttle.check(key, group, self._server.seconds())
        if refusal is not None:
            participant.checking = False
            _log.info(
                "login throttled ({command}) from {peer}",
                command=attempt.command,
                peer=peer,
            )
            raise refusal

        def verified(ok: bool) -> None:
            participant.checking = False
            now = self._server.seconds()
            if not ok:
                throttle.failed(key, group, now)
                self._server.operators.stats.logins_failed += 1
                _log.info(
                    "login failed ({command}): {account} from {peer}",
                    command=attempt.command,
                    account=attempt.shown,
                    peer=peer,
                )
                self.tell_error(participant, login_failed())
                return
            throttle.succeeded(key, group, now)
            try:
                then()
            except ChatError as problem:
                self.tell_error(participant, problem)

        if not services.hasher.verify(password_hash, password.value, verified):
            participant.checking = False
            self._release(key, group)
            raise busy()

    def hash(
        self,
        participant: Participant,
        services: AccountServices,
        password: Secret,
        then: Callable[[str], None],
    ) -> None:
        """
        Hash ``password``; ``then`` gets the hash, unless the participant is
        gone by then (what they asked for was never confirmed to them).

        :raises SlowDown: one job at a time, or the hasher is busy.
        """
        self.start(participant)

        def hashed(password_hash: str | None) -> None:
            participant.checking = False
            if participant.gone:
                return
            if password_hash is None:
                self.send(participant, INTERNAL_ERROR)
                return
            try:
                then(password_hash)
            except ChatError as problem:
                self.tell_error(participant, problem)

        if not services.hasher.hash(password.value, hashed):
            participant.checking = False
            raise busy()

    def _release(self, key: str, group: str) -> None:
        """An attempt the throttle let through was not made (the hasher was busy)."""
        self._throttle.cancelled(key, group)

    # -- what a login does -------------------------------------------------------------

    def log_in(
        self,
        participant: Participant,
        services: AccountServices,
        account: Account,
        password: Secret | None,
    ) -> None:
        """
        Log ``participant`` in to ``account`` and give them its nickname;
        with ``password``, store a new hash if the old one's parameters
        are out of date (in the background; a busy hasher: next time).
        """
        participant.account = account.key
        if self._server.cluster is not None:
            self._server.cluster.changed(participant)
        services.store.record_login(account.name, self._server.seconds())
        hasher = services.hasher
        if password is not None and hasher.needs_rehash(account.password_hash):
            old = account.password_hash

            def rehashed(password_hash: str | None) -> None:
                current = services.store.get(account.name)
                # Unless the password was changed meanwhile.
                if (
                    password_hash is not None
                    and current is not None
                    and current.password_hash == old
                ):
                    services.store.set_password(account.name, password_hash)

            hasher.hash(password.value, rehashed)
        self._take_nick(participant, account)

    def _take_nick(self, participant: Participant, account: Account) -> None:
        """The account's nickname for ``participant``; its holder becomes a guest."""
        try:
            wanted = Nick.parse(account.name)
        except InvalidName:  # the name rules changed since it was registered
            return
        directory = self._server.directory
        holder = directory.participants.get(wanted.key)
        if holder is not None and holder is not participant:
            guest = directory.guest_nick()
            directory.force_rename(holder, guest)
            _log.info(
                "{account} logged in; its nickname's holder is now {guest}",
                account=account.name,
                guest=guest.display,
            )
            self.send(
                holder,
                lines.notice(
                    f"{account.name} is a registered account and its owner "
                    f"logged in; you are now known as {guest.display}."
                ),
            )
        if participant.nick != wanted:
            directory.force_rename(participant, wanted)

    # -- /password and /unregister -----------------------------------------------------

    def change_password(
        self,
        participant: Participant,
        services: AccountServices,
        account: Account,
        passwords: tuple[Secret, Secret],
    ) -> None:
        """``/password OLD NEW`` once the checks are done: verify, hash, store."""
        old, new = passwords

        def stored(password_hash: str) -> None:
            if isinstance(
                services.store.set_password(account.name, password_hash), Refusal
            ):
                raise account_gone()
            _log.info(
                "password changed: {account} from {peer}",
                account=account.name,
                peer=participant.client.peer,
            )
            self.send(participant, lines.notice("Your password is changed."))

        def verified() -> None:
            if not participant.gone:
                self.hash(participant, services, new, stored)

        attempt = Attempt(account.key, account.name, "password")
        self.verify(
            participant, services, attempt, (account.password_hash, old), verified
        )

    def unregister(
        self,
        participant: Participant,
        services: AccountServices,
        account: Account,
        password: Secret,
    ) -> None:
        """``/unregister PASSWORD``: verify, delete, log out every connection of it."""

        def verified() -> None:
            if participant.gone:
                return
            deleted = services.store.delete(account.name)
            if isinstance(deleted, Refusal):
                raise account_gone()
            # Its rooms lose their founder: no later account of that name
            # may inherit them.
            self._server.moderation.registry.account_deleted(deleted.key)
            _log.info(
                "unregistered account {account} from {peer}",
                account=deleted.name,
                peer=participant.client.peer,
            )
            for other in list(self._server.participants.values()):
                if other.account != deleted.key:
                    continue
                other.account = None
                if other is participant:
                    text = f"The account {deleted.name} is deleted; you are logged out."
                else:
                    text = (
                        f"The account {deleted.name} was deleted on another "
                        f"connection; you are logged out."
                    )
                self.send(other, lines.notice(text))

        attempt = Attempt(account.key, account.name, "unregister")
        self.verify(
            participant, services, attempt, (account.password_hash, password), verified
        )
