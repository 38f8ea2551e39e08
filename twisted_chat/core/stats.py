"""
What ``/stats`` reports, counted where counting is cheap.

A server operator asks "how busy is it, and who is being turned away?";
issue 17's metrics will ask the same, so the counters are public
attributes, read without side effects:

- messages and deliveries: :class:`~twisted_chat.core.outbox.Outbox` adds a
  room's pending lines, and those lines times the room's members, once per
  room flush (``Outbox.messages``, ``Outbox.deliveries``).  Never per line
  nor per delivery: the fan-out must not get slower for being counted.  A
  delivery is a line and a member at flush time, the sender included, so a
  room of 3 hearing 4 lines from one member in one turn adds 4 messages and
  12 deliveries, though only 8 line-copies go out (nobody is sent their own
  lines).  In a busy room the two differ by one member in many; counting
  exactly would cost a look at every line.
- refusals by code (:attr:`ServerStats.refusals`): admission's caps
  (``server-full``, ``too-many-connections``; the daemon hands
  :class:`~twisted_chat.core.admission.Admission` this dict) and server bans
  (``banned``).  Codes are constants, so the dict stays small.
- messages said, for issue 17's metrics by transport: one slot increment
  on the sender (``Participant.said``), folded in by transport when the
  client goes (:meth:`ServerStats.retire`); a dict by transport bumped per
  message cost three times as much (BENCHMARKS.md, issue 17).
- per event, for issue 17's metrics: connections accepted by transport
  (:meth:`ServerStats.connected`) and failed logins (kicks are counted by
  ``Membership.kicks``, which does the kicking): a handful of
  names, one increment when the event happens.  The fan-out time of each
  turn is the outbox's (``Outbox.fanout_counts``), timed only once the
  metrics hand it a clock.

Rates come from snapshots ``(time, messages, deliveries)`` taken at most once
a :data:`SAMPLE_INTERVAL` (at the end of a reactor turn that handed lines
out, and on ``/stats``), so the clock is read once a turn at most, never per
line; the first is taken by the first such turn.  A rate is over the time
since the newest snapshot at least :data:`RATE_INTERVAL` old: recent enough
to show a burst, long enough not to be noise.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from attrs import frozen

from twisted_chat.core import lines
from twisted_chat.core.lines import counted

if TYPE_CHECKING:
    from twisted_chat.core.account_ports import AccountServices
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.outbox import Outbox

__all__ = ["RATE_INTERVAL", "SAMPLE_INTERVAL", "Rates", "ServerStats"]

#: Seconds between snapshots at least.
SAMPLE_INTERVAL: Final = 1.0
#: A rate is taken over at least this many seconds (when the server has
#: been up that long).
RATE_INTERVAL: Final = 10.0
#: Snapshots kept: enough to span RATE_INTERVAL at one a second, and more.
SNAPSHOTS: Final = 32

_Snapshot = tuple[float, int, int]


@frozen
class Rates:
    """Messages and deliveries a second, over the last ``seconds``."""

    messages: float
    deliveries: float
    seconds: float


class ServerStats:
    """
    The counters ``/stats`` reads, and the snapshots its rates come from.

    :param outbox: the chat's outbox, which counts messages and deliveries.
    :param seconds: the current time (the chat's clock).
    """

    def __init__(self, outbox: Outbox, seconds: Callable[[], float]) -> None:
        self._outbox = outbox
        self._seconds = seconds
        #: Refused connections, hellos and logins, by error code.
        self.refusals: dict[str, int] = {}
        #: Clients let in, by transport (``tcp``, ``udp``, ``irc``, ``web``).
        self.accepted: dict[str, int] = {}
        #: Logins and ``/oper`` attempts refused for a wrong password.
        self.logins_failed = 0
        #: Messages, actions and private messages said by clients now gone,
        #: by transport; the rest are each live ``Participant.said``: one
        #: slot increment a message, no lookup (the metrics add them up).
        self.said_by_gone: dict[str, int] = {}
        #: Bytes read from and written to stream clients (TCP, TLS, IRC, web):
        #: added once per read and once per write (a write carries a turn's
        #: lines for one member), never per line or per delivery.
        self.bytes_received = 0
        self.bytes_sent = 0
        #: Times a stream client's reading was paused by flood control, and
        #: clients dropped at the send-queue cap.
        self.flood_pauses = 0
        self.sendq_drops = 0
        # The first is taken by the first sample: making a server must not
        # read its clock.
        self._snapshots: deque[_Snapshot] = deque(maxlen=SNAPSHOTS)
        self._next_sample = float("-inf")

    @property
    def messages(self) -> int:
        """Room lines handed out since start (messages, actions, notices)."""
        return self._outbox.messages

    @property
    def deliveries(self) -> int:
        """Lines times members at each room flush since start (see above)."""
        return self._outbox.deliveries

    def refused(self, code: str) -> None:
        """Count one refusal of ``code`` (``banned``, ``server-full``, ...)."""
        refusals = self.refusals
        refusals[code] = refusals.get(code, 0) + 1

    def connected(self, transport: str) -> None:
        """Count one client let in over ``transport`` (a fixed few names)."""
        accepted = self.accepted
        accepted[transport] = accepted.get(transport, 0) + 1

    def retire(self, transport: str, said: int) -> None:
        """Keep what a client that is gone said (``Participant.said``)."""
        gone = self.said_by_gone
        gone[transport] = gone.get(transport, 0) + said

    def sample(self) -> None:
        """Take a snapshot if the last one is SAMPLE_INTERVAL old (one clock read)."""
        now = self._seconds()
        if now < self._next_sample:
            return
        self._next_sample = now + SAMPLE_INTERVAL
        outbox = self._outbox
        self._snapshots.append((now, outbox.messages, outbox.deliveries))

    def rates(self) -> Rates:
        """The rates since the newest snapshot RATE_INTERVAL old (or the oldest)."""
        self.sample()
        now = self._seconds()
        snapshots = self._snapshots
        start = snapshots[0]
        for snapshot in reversed(snapshots):
            if now - snapshot[0] >= RATE_INTERVAL:
                start = snapshot
                break
        elapsed = now - start[0]
        if elapsed <= 0:
            return Rates(0.0, 0.0, 0.0)
        outbox = self._outbox
        return Rates(
            (outbox.messages - start[1]) / elapsed,
            (outbox.deliveries - start[2]) / elapsed,
            elapsed,
        )

    def report(
        self, server: ChatServer, services: AccountServices | None, bans: int
    ) -> list[bytes]:
        """
        The lines of ``/stats``: a fixed handful, whatever the server's size.

        Counting clients by transport looks at every client (the caller
        charges that to the reply budget): an operator's command, rare,
        where keeping per-transport counts would cost every connect.
        """
        transports: dict[str, int] = {}
        for participant in server.participants.values():
            if not participant.remote:  # another node's (--cluster)
                name = participant.transport
                transports[name] = transports.get(name, 0) + 1
        by = ", ".join(
            f"{name} {count:,}" for name, count in sorted(transports.items())
        )
        clients = counted(sum(transports.values()), "client", "clients")
        rates = self.rates()
        refusals = ", ".join(
            f"{code} {count:,}" for code, count in sorted(self.refusals.items())
        )
        report = [
            "Server stats:",
            f"{clients}" + (f" ({by})" if by else ""),
            counted(len(server.rooms), "room", "rooms"),
            (
                f"{rates.messages:,.1f} messages and {rates.deliveries:,.1f} "
                f"deliveries a second over the last {rates.seconds:,.0f} s; "
                f"{self.messages:,} and {self.deliveries:,} since start (a "
                "delivery: a line times a member of its room)"
            ),
            f"refusals: {refusals or 'none'}",
            f"history: {_history(server)}",
            (
                f"accounts: {len(services.store):,}"
                if services is not None
                else "accounts: off"
            )
            + f"; server bans: {bans:,}",
        ]
        return [lines.notice(text) for text in report]


def _history(server: ChatServer) -> str:
    store = server.store
    if store is None:
        return "off"
    trouble = store.trouble()
    if trouble:
        return f"NOT SAVED: {trouble}"
    waiting = store.backlog()
    return f"{counted(waiting, 'message', 'messages')} waiting to be written"
