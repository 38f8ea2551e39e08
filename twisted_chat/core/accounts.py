"""
The account commands' rules: register, log in and out, passwords, whois.

PROTOCOL.md ("Accounts") is the contract; this module owns the flow around
the slow parts.  Hashing and verifying happen off the reactor
(:class:`~twisted_chat.core.account_ports.PasswordHasher`) and answer
through a callback on a later turn, so every callback checks again what
may have changed meanwhile: the participant may be gone (nothing is done
for a connection that is gone, not even a password change it asked for: it
was never told it happened), renamed, or the account deleted.  Where the
contract is silent the choices follow Ergo and the IRC services:

- One password job per participant at a time (``participant.checking``);
  a second gets ``! slow-down``, as does a full hasher (its "busy" answer).
- Every attempt that verifies a password (``/login``, ``/password``,
  ``/unregister``) goes through :attr:`AccountCommands.throttle` first, by
  account key and address group; a name that cannot be an account (not a
  valid nickname) gets the very ``! login-failed`` a wrong password gets,
  without a verification or a count (its validity is no secret).
- A login gives the participant the account's nickname, in its stored
  spelling.  Whoever holds it is renamed to a fresh guest nick and told
  (NickServ's REGAIN): a guest who took it before it was registered, or
  another connection of the same account, which stays logged in (Ergo lets
  several connections share an account).  Logging in to another account
  while logged in switches accounts; to the same one is only a notice.
- ``/register`` registers the nickname held when it was typed; when the
  hash comes back the registrant is logged in, and so gets that nickname
  back if they changed it meanwhile.  Registering while logged in is
  ``! already-registered``.  A full store answers ``! registration-closed``
  (no new accounts can be made, which is what the code means).
- ``/logout`` gives a guest nick; ``/unregister`` logs out every
  connection of the account, which keep their (now unprotected) nicknames.
- ``/password`` does not log out the account's other connections.
- ``--accounts off`` answers every command of PROTOCOL.md's accounts table
  with ``! accounts-disabled``, ``/whois`` included (it is in that table).

Secrets: a password only ever travels in a
:class:`~twisted_chat.core.secret_prompt.Secret` and reaches nothing but the
hasher.  Log events name the account only when it exists, so a password
typed where the name goes (``/login hunter22``) is not logged either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted_chat.core import account_rules, lines
from twisted_chat.core.account_commands import (
    ChangePassword,
    Login,
    Logout,
    Register,
    Unregister,
    Whois,
)
from twisted_chat.core.account_jobs import (
    NO_ACCOUNT,
    Attempt,
    PasswordJobs,
    account_gone,
    login_failed,
    one_at_a_time,
)
from twisted_chat.core.account_ports import Refusal
from twisted_chat.core.errors import (
    AccountsDisabled,
    AlreadyRegistered,
    BadUsage,
    InvalidName,
    NickRegistered,
    NotLoggedIn,
    RegistrationClosed,
)
from twisted_chat.core.login_throttle import LoginThrottle
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.names import Nick
from twisted_chat.core.secret_prompt import SecretPrompt

if TYPE_CHECKING:
    from twisted_chat.core.account_commands import AccountCommand
    from twisted_chat.core.account_ports import Account, AccountServices
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.room import Participant
    from twisted_chat.core.secret_prompt import Secret

__all__ = ["AccountCommands"]

_log = RateLimitedLogger()


class AccountCommands:
    """
    The account commands of one chat server, and the nickname guard.

    Sets itself as ``server.directory.guard`` so that ``/nick`` asks it
    (:class:`~twisted_chat.core.people.NickGuard`).
    """

    def __init__(self, server: ChatServer, services: AccountServices | None) -> None:
        self._server = server
        self._services = services
        #: Login (and ``/oper``) failures by account and address.
        self.throttle = LoginThrottle()
        self._jobs = PasswordJobs(server, self.throttle)
        server.directory.guard = self

    # -- the chat server's calls --------------------------------------------------

    def dispatch(self, participant: Participant, command: AccountCommand) -> None:
        """Act on one account command."""
        services = self._require()
        match command:
            case Whois(nick):
                self._whois(participant, services, nick)
            case Register(name, password):
                self._register(participant, services, name, password)
            case Login(name, password):
                self._login(participant, services, name, password)
            case Logout():
                self._logout(participant)
            case ChangePassword(old, new):
                account = self._own_account(participant, services)
                account_rules.check_new_password(new)
                self._jobs.change_password(participant, services, account, (old, new))
            case Unregister(password):
                account = self._own_account(participant, services)
                self._jobs.unregister(participant, services, account, password)

    def take_secret(self, participant: Participant, text: str) -> None:
        """``participant.prompt`` is waiting: ``text`` is the password."""
        prompt, participant.prompt = participant.prompt, None
        if prompt is None or not prompt.waiting:
            return
        taken = prompt.take(text)
        if taken.send:
            participant.client.send(taken.send)
        server = self._server
        if server.outbox.busy:
            server.outbox.catch_up(participant)
        kind, _, name = taken.for_what.partition(" ")
        if kind == "login":
            self._login(participant, self._require(), name, taken.secret)
        elif kind == "oper":
            server.operators.oper(participant, name, taken.secret)

    def ask_secret(self, participant: Participant, for_what: str) -> None:
        """Take ``participant``'s next line as a password for ``for_what``."""
        prompt = participant.prompt
        if prompt is None:
            prompt = participant.prompt = SecretPrompt(
                telnet=participant.transport == "tcp"
            )
        participant.client.send(prompt.start(for_what))

    def forget(self, participant: Participant) -> None:
        """``participant`` is gone: drop what waits for them."""
        participant.prompt = None

    # -- the nickname guard (people.NickGuard) -----------------------------------

    def refuse_nick(self, participant: Participant, nick: Nick) -> None:
        """``/nick`` to an account needs a login to it."""
        services = self._active()
        if services is None or participant.account == nick.key:
            return
        account = services.store.get(nick.display)
        if account is not None and account.key != participant.account:
            raise NickRegistered(
                f"{account.name} is a registered account; "
                f"/login {account.name} to use it."
            )

    def reserved(self, nick: Nick) -> bool:
        """Whether ``nick`` is an account (no guest is given it)."""
        services = self._active()
        return services is not None and services.store.get(nick.display) is not None

    # -- commands -------------------------------------------------------------------

    def _register(
        self,
        participant: Participant,
        services: AccountServices,
        name: str | None,
        password: Secret,
    ) -> None:
        server = self._server
        if name is not None:
            if not server.operators.is_operator(participant):
                raise BadUsage(
                    "/register PASSWORD makes your nickname an account; "
                    "/register NAME PASSWORD is for server operators."
                )
            nick = Nick.parse(name)
        else:
            if not (
                server.settings.registration_open
                or server.operators.is_operator(participant)
            ):
                raise RegistrationClosed(
                    "Only server operators create accounts on this server."
                )
            if participant.account is not None:
                raise AlreadyRegistered(
                    "You are logged in to an account already; /logout first."
                )
            nick = participant.nick
        if account_rules.is_guest_name(nick):
            raise InvalidName(
                "A guest nickname cannot be an account; pick a nick first "
                "with /nick NAME, then /register PASSWORD."
            )
        if services.store.get(nick.display) is not None:
            raise AlreadyRegistered(
                f"{nick.display} is a registered account already; "
                f"/login {nick.display} if it is yours."
            )
        account_rules.check_new_password(password)
        for_self = name is None
        self._jobs.hash(
            participant,
            services,
            password,
            lambda password_hash: self._registered(
                participant, services, nick, password_hash, for_self=for_self
            ),
        )

    def _registered(
        self,
        participant: Participant,
        services: AccountServices,
        nick: Nick,
        password_hash: str,
        *,
        for_self: bool,
    ) -> None:
        jobs = self._jobs
        now = self._server.seconds()
        created = services.store.create(nick.display, password_hash, now)
        if created is Refusal.EXISTS:
            raise AlreadyRegistered(f"{nick.display} is a registered account already.")
        if isinstance(created, Refusal):
            _log.warn("registration refused: {why}", why=created.value)
            raise RegistrationClosed(
                "No new accounts can be made on this server right now."
            )
        _log.info(
            "registered account {account} from {peer} (operator: {by})",
            account=created.name,
            peer=participant.client.peer,
            by=participant.oper or "-",
        )
        if for_self:
            jobs.log_in(participant, services, created, None)
            text = (
                f"The account {created.name} is registered; "
                f"you are logged in as {created.name}."
            )
        else:
            text = f"The account {created.name} is registered."
        jobs.send(participant, lines.notice(text))

    def _login(
        self,
        participant: Participant,
        services: AccountServices,
        name: str,
        password: Secret | None,
    ) -> None:
        try:
            nick = Nick.parse(name)
        except InvalidName:
            raise login_failed() from None
        if participant.account == nick.key:
            account = services.store.get(nick.display)
            shown = account.name if account is not None else nick.display
            participant.client.send(
                lines.notice(f"You are logged in as {shown} already.")
            )
            return
        if participant.checking:
            raise one_at_a_time()
        if password is None:
            self.ask_secret(participant, f"login {nick.display}")
            return
        account = services.store.get(nick.display)
        stored = account.password_hash if account is not None else None
        shown = account.name if account is not None else NO_ACCOUNT
        self._jobs.verify(
            participant,
            services,
            Attempt(nick.key, shown, "login"),
            (stored, password),
            lambda: self._login_verified(participant, services, nick, password),
        )

    def _login_verified(
        self,
        participant: Participant,
        services: AccountServices,
        nick: Nick,
        password: Secret,
    ) -> None:
        if participant.gone:
            return
        account = services.store.get(nick.display)
        if account is None:  # deleted while the password was checked
            raise login_failed()
        peer = participant.client.peer
        refusal = self._server.operators.refusal(participant.host, account.key)
        if refusal is not None:
            _log.info(
                "login refused: {account} is server-banned, from {peer}",
                account=account.name,
                peer=peer,
            )
            self._server.operators.eject(participant, refusal)
            return
        _log.info("login ok: {account} from {peer}", account=account.name, peer=peer)
        self._jobs.log_in(participant, services, account, password)
        self._jobs.send(
            participant, lines.notice(f"You are logged in as {account.name}.")
        )

    def _logout(self, participant: Participant) -> None:
        key = participant.account
        if key is None:
            raise NotLoggedIn("You are not logged in; /login NAME logs in.")
        participant.account = None
        services = self._active()
        account = services.store.get(key) if services is not None else None
        directory = self._server.directory
        guest = directory.guest_nick()
        directory.force_rename(participant, guest)
        _log.info(
            "logout: {account} from {peer}",
            account=account.name if account is not None else key,
            peer=participant.client.peer,
        )
        participant.client.send(
            lines.notice(f"You are logged out; you are now {guest.display}.")
        )

    def _whois(
        self, participant: Participant, services: AccountServices, text: str
    ) -> None:
        server = self._server
        server.budgets.refuse_if_over(participant)
        reply = account_rules.whois_reply(
            server.directory,
            services.store,
            participant,
            text,
            server.seconds(),
            is_operator=server.operators.is_operator,
        )
        participant.client.send(b"".join(reply))
        server.budgets.charge(participant, len(reply))

    # -- the shared steps -------------------------------------------------------------

    def _active(self) -> AccountServices | None:
        """The services, if accounts are on (the settings may be reloaded)."""
        if self._services is None or not self._server.settings.accounts:
            return None
        return self._services

    def _require(self) -> AccountServices:
        services = self._active()
        if services is None:
            raise AccountsDisabled("Accounts are turned off on this server.")
        return services

    def _own_account(
        self, participant: Participant, services: AccountServices
    ) -> Account:
        """The account ``participant`` is logged in to; one password job at a time."""
        key = participant.account
        if key is None:
            raise NotLoggedIn("You are not logged in; /login NAME first.")
        account = services.store.get(key)
        if account is None:
            participant.account = None
            raise account_gone()
        if participant.checking:
            raise one_at_a_time()
        return account
