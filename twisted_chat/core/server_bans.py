"""
The server bans: who may not connect, say hello or log in, and the commands
that set, lift and list them.

Apart from :mod:`twisted_chat.core.operators` because the bans are checked
on every new connection and UDP hello (:meth:`ServerBans.refusal`), so that
check must stay a few dict look-ups (:class:`~twisted_chat.core.bans.BanList`
is indexed) and nothing when there are no bans; the commands are an
operator's, rare, and may look at every client.

The bans live in memory and are written whole to the account store
(``AccountStore.save_server_bans``) after each change; they are read back
once, when the server starts, without those that ended meanwhile.  An ended
ban stops matching at once (the list drops it when a look-up meets it) and
leaves the file at the next save: no timer is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from twisted.logger import Logger

from twisted_chat.core import lines
from twisted_chat.core.ban_listing import ban_listing
from twisted_chat.core.bans import (
    Ban,
    BanList,
    BanPattern,
    address_key,
    looks_like_nick,
    parse_pattern,
)
from twisted_chat.core.bounds import LOOKED_AT_PER_LINE
from twisted_chat.core.durations import format_left, looks_like_duration, parse_duration
from twisted_chat.core.errors import BadUsage, Banned

if TYPE_CHECKING:
    from twisted_chat.core.account_ports import AccountServices, BanRow
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.room import Participant
    from twisted_chat.core.stats import ServerStats

__all__ = ["BANS_SHOWN", "REASON_MAX", "ServerBans", "clip"]

#: Bans ``/serverbans`` lists at most, the newest first.
BANS_SHOWN: Final = 30
#: Characters of a ban's or a kill's reason that are kept (the ``! banned:``
#: line must fit a UDP datagram).
REASON_MAX: Final = 200

# Operators' actions are not client floods: never rate-limited.
_audit = Logger(namespace="twisted_chat.operators")


def clip(reason: str) -> str:
    """A reason as kept: at most REASON_MAX characters."""
    reason = reason.strip()
    return reason if len(reason) <= REASON_MAX else reason[: REASON_MAX - 1] + "…"


def banned_line(ban: Ban, now: float) -> bytes:
    """The one line a banned client gets: why, and for how long."""
    why = f" ({ban.reason})" if ban.reason else ""
    if ban.expires_at is None:
        how_long = "the ban lasts until it is lifted"
    else:
        how_long = f"the ban ends in {format_left(ban.expires_at - now)}"
    return lines.error(Banned(f"You are banned from this server{why}; {how_long}."))


class ServerBans:
    """
    The server's ban list, its file, and ``/serverban`` and the like.

    :param server: the chat server (clients, clock, reply budgets).
    :param services: where the bans are saved (None: in memory only).
    :param stats: counts the refusals.
    :param eject: disconnects a matching client with its one line.
    """

    def __init__(
        self,
        server: ChatServer,
        services: AccountServices | None,
        stats: ServerStats,
        eject: Callable[[Participant, bytes], None],
    ) -> None:
        self._server = server
        self._services = services
        self._stats = stats
        self._eject = eject
        self.bans = self._load()

    def __len__(self) -> int:
        return len(self.bans)

    def _load(self) -> BanList:
        if self._services is None:
            return BanList()
        now = self._server.seconds()
        try:
            rows = self._services.store.server_bans()
        except Exception:
            _audit.failure("while reading the server bans; starting without them")
            return BanList()
        bans = []
        for row in rows:
            try:
                bans.append(Ban.from_dict(row))
            except Exception:
                # A pattern today's rules refuse, or a damaged row: skip it.
                _audit.warn(
                    "skipped a stored server ban that no longer reads: {row!r}",
                    row=dict(row),
                )
        return BanList.load(bans, now)

    def reload(self) -> int:
        """
        Read the bans again (``--cluster``: another node changed them) and
        disconnect this node's users they match now; how many.
        """
        self.bans = self._load()
        if not len(self.bans):
            return 0
        server = self._server
        now = server.seconds()
        ejected = 0
        for client in list(server.participants.values()):
            if client.remote or client.gone:
                continue
            ban = self.bans.matching(client.host, client.account, now)
            if ban is not None:
                self._eject(client, banned_line(ban, now))
                ejected += 1
        return ejected

    def refusal(self, host: str, account_key: str | None) -> bytes | None:
        """The ``! banned:`` line for a client a ban matches, or None (counted)."""
        if not len(self.bans):
            return None
        now = self._server.seconds()
        ban = self.bans.matching(host, account_key, now)
        if ban is None:
            return None
        self._stats.refused(Banned.code)
        return banned_line(ban, now)

    # -- the commands ----------------------------------------------------------------

    def add(self, participant: Participant, oper: str, text: str, rest: str) -> None:
        """``/serverban PATTERN [DURATION] [reason]`` by server operator ``oper``."""
        server = self._server
        now = server.seconds()
        pattern = self._resolve(text)
        first, _, more = rest.partition(" ")
        duration: int | None = None
        if first and looks_like_duration(first):
            duration = parse_duration(first)
            rest = more
        reason = clip(rest)
        ends = None if duration is None else now + duration
        ban = Ban(pattern, set_by=oper, reason=reason, set_at=now, expires_at=ends)
        earlier = self.bans.add(ban, now)
        self._save(oper)
        line = banned_line(ban, now)
        probe = BanList(1)
        probe.add(ban, now)
        matched = [
            client
            for client in server.participants.values()
            if probe.matching(client.host, client.account, now) is not None
        ]
        ejected = 0
        spared = False
        for client in matched:
            if client is participant:
                spared = True
            elif not client.gone:
                self._eject(client, line)
                ejected += 1
        how_long = "until lifted" if duration is None else format_left(duration)
        _audit.info(
            "operator {oper} ({nick}) {action} {target} {duration}: {reason}; "
            "{ejected} clients disconnected",
            oper=oper,
            nick=participant.nick.display,
            action="serverban",
            target=pattern.text,
            duration=how_long if duration is None else f"for {how_long}",
            reason=reason,
            ejected=ejected,
        )
        done = "updated" if earlier is not None else "added"
        reply = (
            f"Server ban on {pattern.text} {done} ({how_long}); "
            f"{lines.counted(ejected, 'client', 'clients')} disconnected."
        )
        if spared:
            reply += " It matches you too; you stay connected."
        self._reply(participant, [lines.notice(reply)])

    def lift(self, participant: Participant, oper: str, text: str) -> None:
        """``/serverunban PATTERN``."""
        if looks_like_nick(text):
            # A nick's ban was set on their account (or address): guess the
            # account, the only one a name can mean once they are gone.
            text = "account:" + text
        pattern = parse_pattern(text)
        now = self._server.seconds()
        ban = self.bans.remove(pattern)
        if ban is None or ban.expired(now):
            raise BadUsage(f"No server ban on {pattern.text}; /serverbans lists them.")
        self._save(oper)
        _audit.info(
            "operator {oper} ({nick}) {action} {target}: {reason}",
            oper=oper,
            nick=participant.nick.display,
            action="serverunban",
            target=pattern.text,
            reason=ban.reason,
        )
        self._reply(
            participant, [lines.notice(f"Server ban on {pattern.text} lifted.")]
        )

    def listing(self, participant: Participant) -> None:
        """``/serverbans``: the newest :data:`BANS_SHOWN`, and how many more."""
        server = self._server
        server.budgets.refuse_if_over(participant)
        now = server.seconds()
        self.bans.expire(now)
        bans = self.bans.bans()
        texts = ban_listing(
            bans,
            now,
            BANS_SHOWN,
            kind=("server ban", "server bans"),
            where="",
            empty="No server bans.",
            unban="/serverunban",
        )
        reply = [lines.notice(text) for text in texts]
        self._reply(participant, reply, looked_at=len(bans))

    # -- helpers ----------------------------------------------------------------------

    def _resolve(self, text: str) -> BanPattern:
        """A pattern, or a connected nick's account (logged in) or address."""
        if not looks_like_nick(text):
            return parse_pattern(text)
        person = self._server.directory.find(text)
        if person.account is not None:
            services = self._services
            account = (
                services.store.get(person.account) if services is not None else None
            )
            name = account.name if account is not None else person.nick.display
            return BanPattern("account", person.account, "account:" + name)
        address = address_key(person.host)
        if address is None:
            raise BadUsage(
                f"{person.nick.display} has no IP address to ban (a local "
                "connection); ban account:NAME or an address instead."
            )
        return parse_pattern(str(address))

    def _save(self, oper: str) -> None:
        services = self._services
        if services is None:
            return
        self.bans.expire(self._server.seconds())
        rows: list[BanRow] = [ban.to_dict() for ban in self.bans.bans()]

        def saved(ok: bool) -> None:
            if not ok:
                _audit.error(
                    "the server bans were not saved (changed by {oper}); they "
                    "hold until a restart",
                    oper=oper,
                )

        services.store.save_server_bans(rows, saved)

    def _reply(
        self, participant: Participant, reply: list[bytes], looked_at: int = 0
    ) -> None:
        """Send after the room lines queued before (a quit, say), and charge it."""
        server = self._server
        if server.outbox.busy:
            server.outbox.catch_up(participant)
        participant.client.send(b"".join(reply))
        server.budgets.charge(participant, len(reply), looked_at // LOOKED_AT_PER_LINE)
