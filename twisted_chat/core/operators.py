"""
The server operators: ``/oper`` and what an operator may do.

Operators are the config file's ``[operators]`` table
(``Settings.operators``: name and argon2id hash), which SIGHUP replaces with
the settings, so it is read at use time: someone whose operator name has
left the table is no longer one, without anybody walking the clients.
``/oper`` checks the password off the reactor (the account services'
hasher), through the login throttle under
:func:`~twisted_chat.core.login_throttle.oper_key`, with a dummy hash for a
name that is not an operator so that a wrong name and a wrong password take
as long and get the same ``! oper-failed``.

Every operator action is an audit event naming who (operator name and
nick), what, to whom and why, on a plain logger: only an operator can cause
them, so they are never held back.  ``/oper`` failures and throttling are a
stranger's to cause, so they go through the rate-limited logger, and name
the operator only when the name is one (a password typed in the name's
place must not reach the log).  No password or hash is ever logged.

Server bans are in :mod:`twisted_chat.core.server_bans`, the counters of
``/stats`` in :mod:`twisted_chat.core.stats`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_chat.core import lines
from twisted_chat.core.account_commands import (
    Kill,
    Oper,
    OperatorCommand,
    ServerBan,
    ServerBans,
    ServerUnban,
    Stats,
    Wall,
)
from twisted_chat.core.bounds import LOOKED_AT_PER_LINE
from twisted_chat.core.errors import (
    BadUsage,
    NotServerOperator,
    OperFailed,
    SlowDown,
)
from twisted_chat.core.login_throttle import oper_key
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.names import name_key
from twisted_chat.core.server_bans import ServerBans as BanCommands
from twisted_chat.core.server_bans import clip
from twisted_chat.core.stats import ServerStats

if TYPE_CHECKING:
    from twisted_chat.core.account_ports import AccountServices
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.room import Participant
    from twisted_chat.core.secret_prompt import Secret

__all__ = ["OperatorCommands"]

_audit = Logger(namespace="twisted_chat.operators")
_log = RateLimitedLogger()

_FAILED = "Wrong operator name or password."


class OperatorCommands:
    """The server operators' commands of one chat server, and its server bans."""

    def __init__(self, server: ChatServer, services: AccountServices | None) -> None:
        self._server = server
        self._services = services
        #: The counters of /stats (public: issue 17's metrics read them).
        self.stats = ServerStats(server.outbox, server.seconds)
        server.outbox.on_turn = self.stats.sample
        self.server_bans = BanCommands(server, services, self.stats, self.eject)
        # The table by name key, rebuilt when SIGHUP replaces it.
        self._table_of: tuple[tuple[str, str], ...] | None = None
        self._table: dict[str, tuple[str, str]] = {}

    # -- what the rest of the core calls -------------------------------------------

    def refusal(self, host: str, account_key: str | None) -> bytes | None:
        """The one ``! banned:`` line for a client a server ban matches, or None."""
        return self.server_bans.refusal(host, account_key)

    def eject(self, participant: Participant, line: bytes) -> None:
        """
        Send ``line`` (a ``! banned:`` line) and nothing else, then disconnect.

        No ``Bye``; the rooms see ``* NICK quit (banned)``.
        """
        if participant.gone:
            return
        participant.client.send(line)
        self._server.disconnect(participant, "banned")
        participant.client.close()

    def is_operator(self, participant: Participant) -> bool:
        """
        Whether ``participant`` is a server operator now.

        An operator name that has left the table (SIGHUP) is forgotten.
        """
        oper = participant.oper
        if oper is None:
            return False
        if name_key(oper) in self._operators():
            return True
        participant.oper = None
        return False

    def dispatch(self, participant: Participant, command: OperatorCommand) -> None:
        """Act on one server operator's command."""
        if isinstance(command, Oper):
            if self._services is None:
                raise OperFailed("Server operators are not set up on this server.")
            if command.password is None:
                self._server.accounts.ask_secret(participant, f"oper {command.name}")
            else:
                self.oper(participant, command.name, command.password)
            return
        oper = participant.oper
        if oper is None or not self.is_operator(participant):
            raise NotServerOperator("Only server operators may do that; see /oper.")
        bans = self.server_bans
        match command:
            case Kill(nick, reason):
                self._kill(participant, oper, nick, reason)
            case ServerBan(pattern, rest):
                bans.add(participant, oper, pattern, rest)
            case ServerUnban(pattern):
                bans.lift(participant, oper, pattern)
            case ServerBans():
                bans.listing(participant)
            case Wall(text):
                self._wall(participant, oper, text)
            case Stats():
                self._stats(participant)

    def oper(self, participant: Participant, name: str, password: Secret) -> None:
        """
        ``/oper NAME PASSWORD`` (or the prompt's answer): check, then make
        ``participant`` an operator, or ``! oper-failed``.
        """
        server = self._server
        services = self._services
        if services is None:
            raise OperFailed("Server operators are not set up on this server.")
        if participant.checking:
            raise SlowDown("A password of yours is being checked; wait for the answer.")
        key = name_key(name)
        entry = self._operators().get(key)
        # Only a real operator name is logged: a password typed in its place
        # must not be.
        shown = entry[0] if entry is not None else "(not an operator)"
        peer = participant.client.peer
        throttle = server.accounts.throttle
        throttle_key, group = oper_key(key), participant.group
        refusal = throttle.check(throttle_key, group, server.seconds())
        if refusal is not None:
            _log.info("oper throttled: {name} from {peer}", name=shown, peer=peer)
            raise refusal
        participant.checking = True

        def verified(ok: bool) -> None:
            participant.checking = False
            now = server.seconds()
            if not ok or entry is None:
                throttle.failed(throttle_key, group, now)
                self.stats.logins_failed += 1
                _log.info("oper failed: {name} from {peer}", name=shown, peer=peer)
                self._send(participant, lines.error(OperFailed(_FAILED)))
                return
            throttle.succeeded(throttle_key, group, now)
            if participant.gone:
                return
            participant.oper = entry[0]
            if server.cluster is not None:
                server.cluster.changed(participant)
            _audit.info(
                "operator {oper} ({nick}) {action} {target}: {reason}",
                oper=entry[0],
                nick=participant.nick.display,
                action="oper",
                target=peer,
                reason="password accepted",
            )
            self._send(participant, lines.notice("You are now a server operator."))

        stored = entry[1] if entry is not None else None
        if not services.hasher.verify(stored, password.value, verified):
            participant.checking = False
            # Counted as a failure: a success would let a storm that keeps
            # the hasher busy reset a name's count.
            throttle.failed(throttle_key, group, server.seconds())
            raise SlowDown("The server is busy checking passwords; try again soon.")

    # -- the commands ----------------------------------------------------------------

    def _kill(self, participant: Participant, oper: str, nick: str, why: str) -> None:
        server = self._server
        target = server.directory.find(nick)
        if target is participant:
            raise BadUsage("You cannot /kill yourself; /quit leaves.")
        reason = clip(why)
        by = participant.nick.display
        if server.outbox.busy:
            server.outbox.catch_up(target)
        told = (
            f"You were killed by {by} ({reason})"
            if reason
            else f"You were killed by {by}"
        )
        target.client.send(lines.notice(told))
        server.disconnect(
            target, f"killed by {by}: {reason}" if reason else f"killed by {by}"
        )
        target.client.close()
        _audit.info(
            "operator {oper} ({nick}) {action} {target}: {reason}",
            oper=oper,
            nick=by,
            action="kill",
            target=target.nick.display,
            reason=reason,
        )
        self._send(
            participant, lines.notice(f"{target.nick.display} was disconnected.")
        )

    def _wall(self, participant: Participant, oper: str, text: str) -> None:
        by = participant.nick.display
        _audit.info(
            "operator {oper} ({nick}) {action} {target}: {reason}",
            oper=oper,
            nick=by,
            action="wall",
            target="everyone",
            reason=text,
        )
        # PROTOCOL.md's ``* [OPER] text``: the tag says it is the server's
        # operators speaking (who, is in the log).  broadcast_notice flushes
        # the rooms first, so the wall follows what was said before it.
        self._server.broadcast_notice(f"[OPER] {text}")

    def _stats(self, participant: Participant) -> None:
        server = self._server
        server.budgets.refuse_if_over(participant)
        reply = self.stats.report(server, self._services, len(self.server_bans))
        self._send(participant, b"".join(reply))
        server.budgets.charge(
            participant, len(reply), len(server.participants) // LOOKED_AT_PER_LINE
        )

    # -- helpers ----------------------------------------------------------------------

    def _operators(self) -> dict[str, tuple[str, str]]:
        """The operator table by name key (rebuilt only when it was replaced)."""
        operators = self._server.settings.operators
        if operators is not self._table_of:
            self._table = {name_key(name): (name, hashed) for name, hashed in operators}
            self._table_of = operators
        return self._table

    def _send(self, participant: Participant, data: bytes) -> None:
        """A direct reply, after the room lines queued before it."""
        self._server.outbox.reply(participant, data)
