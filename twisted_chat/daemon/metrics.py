"""
``--metrics``: what the daemon exports to Prometheus, and the Site serving it.

:class:`ChatCollector` is a prometheus_client custom collector: it counts
nothing itself, and at each scrape reads the counters the rest of the
daemon already keeps as plain attributes (the core's ``ServerStats`` and
``Outbox``, each UDP listener's ``UdpStats``, the history store's backlog,
the :class:`~twisted_chat.daemon.health.LoopWatch`).  The hot path pays
nothing for being watched: the counting it does is per room flush or per
event, and the one walk over every client (clients by transport) happens
here, once a scrape.

Labels are bounded: ``transport`` is one of :data:`TRANSPORTS`, ``reason``
an error code constant; no nick, room or address is ever a label.

:func:`metrics_site` is the twisted.web ``Site``: ``/metrics`` is
the registry of our own (this collector, the process and platform
collectors) rendered by prometheus_client's encoder on the reactor thread
(:class:`MetricsPage` says why not its thread-pool ``MetricsResource``),
``/healthz`` the
:class:`~twisted_chat.daemon.health.HealthResource`, anything else 404.
The daemon imports this module only when ``--metrics`` is given.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from twisted_chat import __version__
from twisted_chat.core.errors import Banned, ServerFull, TooManyConnections
from twisted_chat.core.outbox import FANOUT_BUCKETS
from twisted_chat.daemon.health import LATENESS_BUCKETS, HealthResource, LoopWatch
from twisted_chat.daemon.metrics_cluster import cluster_families
from twisted_chat.history.health import WriterHealth

if TYPE_CHECKING:
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.transports.listener import IChatListener
    from twisted_chat.transports.udp_session import UdpStats

__all__ = ["PREFIX", "REFUSALS", "TRANSPORTS", "ChatCollector", "metrics_site"]

PREFIX: Final = "twisted_chat_"
#: The values of every ``transport`` label (TLS is the line protocol over TLS).
TRANSPORTS: Final = ("tcp", "tls", "udp", "irc", "web")

#: The refusal codes always exported (at 0 until one happens), so a rate
#: over them starts with the daemon.
REFUSALS: Final = (Banned.code, ServerFull.code, TooManyConnections.code)

#: The stream front-ends' counters (TCP, TLS, IRC, web), counted per read,
#: per write and per event in the transports; the byte counts add UDP's.
_STREAM: Final = (
    ("bytes_received", "bytes_received", "Bytes read from clients (and datagrams)."),
    ("bytes_sent", "bytes_sent", "Bytes written to clients (and datagrams)."),
    ("flood_pauses", "flood_pauses", "Times flood control paused a client's reading."),
    ("sendq_drops", "sendq_drops", "Clients dropped at the send-queue cap."),
)
#: ``UdpStats`` attributes exported as counters: name, attribute, help.
_UDP: Final = (
    ("udp_datagrams_received", "datagrams", "UDP datagrams received."),
    ("udp_oversized_datagrams", "oversized", "UDP datagrams dropped as too large."),
    ("udp_challenges_sent", "challenges", "UDP /hello challenges sent."),
    (
        "udp_challenges_silenced",
        "silenced",
        "UDP challenges not sent: the address or the server was over its rate.",
    ),
    ("udp_bad_tokens", "bad_tokens", "UDP /hello lines with a wrong or old token."),
    ("udp_sessions_proven", "sessions", "UDP sessions started by a good /hello."),
    ("udp_sessions_expired", "expired", "UDP sessions ended by --udp-idle."),
    (
        "udp_flood_dropped_lines",
        "dropped_lines",
        "UDP datagrams whose rest was dropped by flood control (one per datagram).",
    ),
    ("udp_send_failures", "send_failures", "UDP datagrams the socket refused."),
)

Listeners = Mapping[str, Sequence["IChatListener"]]


def _histogram(
    name: str, text: str, bounds: Sequence[float], counts: Sequence[int], total: float
) -> HistogramMetricFamily:
    """A histogram family from per-bucket (not cumulative) counts."""
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(bounds, counts, strict=False):
        running += count
        buckets.append((repr(float(bound)), running))
    buckets.append(("+Inf", running + counts[-1]))
    return HistogramMetricFamily(name, text, buckets=buckets, sum_value=total)


def _by_transport(name: str, text: str, counts: Mapping[str, int]) -> Metric:
    """A counter with a sample for every transport, 0 for the quiet ones
    (``tls`` is left out: the core counts it as ``tcp``)."""
    family = CounterMetricFamily(name, text, labels=["transport"])
    for transport in TRANSPORTS:
        if transport != "tls":
            family.add_metric([transport], counts.get(transport, 0))
    return family


def _transport(participant: Any) -> str:
    """A participant's transport label: ``tls`` for the line protocol over TLS."""
    name: str = "remote" if participant.remote else participant.transport
    if name == "tcp" and isinstance(
        getattr(participant.client, "transport", None), TLSMemoryBIOProtocol
    ):
        return "tls"
    return name


class ChatCollector(Collector):
    """
    The daemon's metrics, read from its counters at each scrape.

    :param server: the chat core.
    :param watch: the event loop's timer.
    :param listeners: every front-end's listeners by name, as the daemon
        fills them in (the UDP ones hold the datagram counters).
    """

    def __init__(
        self, server: ChatServer, watch: LoopWatch, listeners: Listeners
    ) -> None:
        self._server = server
        self._watch = watch
        self._listeners = listeners
        # The fan-out is timed (two clock reads a turn) only when exported.
        if server.outbox.clock is None:
            server.outbox.clock = server.seconds
        writer = _writer(server)
        #: The first message id of this run, so "queued" counts from start.
        self._first_id = writer.counters().next_id if writer is not None else 0

    def collect(self) -> Iterator[Metric]:
        server = self._server
        stats = server.operators.stats
        outbox = server.outbox
        p = PREFIX
        info = GaugeMetricFamily(
            p + "build_info", "The running version.", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info

        clients = dict.fromkeys(TRANSPORTS, 0)
        said = dict(stats.said_by_gone)
        for participant in server.participants.values():
            label = _transport(participant)
            if label in clients:
                clients[label] += 1
            said[participant.transport] = (
                said.get(participant.transport, 0) + participant.said
            )
        family = GaugeMetricFamily(
            p + "clients", "Clients in the chat, by transport.", labels=["transport"]
        )
        for name, count in clients.items():
            family.add_metric([name], count)
        yield family
        yield GaugeMetricFamily(p + "rooms", "Rooms.", value=len(server.rooms))

        udp = self._udp_stats()
        accepted = dict.fromkeys(TRANSPORTS, 0)
        for name, count in stats.accepted.items():
            if name in accepted:
                accepted[name] += count
        # A proven UDP session is an accepted UDP client, counted here
        # whether or not the core counts it too.
        accepted["udp"] = max(accepted["udp"], sum(one.sessions for one in udp))
        counter = CounterMetricFamily(
            p + "connections_accepted",
            "Clients let in (connections, proven UDP sessions), by transport.",
            labels=["transport"],
        )
        for name, count in accepted.items():
            counter.add_metric([name], count)
        yield counter
        counter = CounterMetricFamily(
            p + "connections_refused",
            "Connections, UDP hellos and logins refused, by error code.",
            labels=["reason"],
        )
        refusals = dict.fromkeys(REFUSALS, 0)
        refusals.update(stats.refusals)
        for code, count in sorted(refusals.items()):
            counter.add_metric([code], count)
        yield counter

        yield CounterMetricFamily(
            p + "messages",
            "Room lines handed out (messages, actions, notices), all transports "
            "(counted per room flush, whose members mix transports).",
            value=outbox.messages,
        )
        yield _by_transport(
            p + "messages_received",
            "Messages, actions and private messages said, by the sender's "
            "transport (tcp includes TLS).",
            said,
        )
        yield _by_transport(
            p + "deliveries",
            "Room lines times the members of their room at each flush, by the "
            "members' transport (tcp includes TLS).",
            outbox.deliveries_by,
        )
        yield _histogram(
            p + "fanout_seconds",
            "Time to hand out a reactor turn's room lines.",
            FANOUT_BUCKETS,
            outbox.fanout_counts,
            outbox.fanout_seconds,
        )
        watch = self._watch
        yield _histogram(
            p + "event_loop_lateness_seconds",
            "How late the event loop's 1-second timer fired.",
            LATENESS_BUCKETS,
            watch.counts,
            watch.late_seconds,
        )
        for name, attribute, text in _STREAM:
            value = getattr(stats, attribute)
            if name.startswith("bytes_"):  # UDP counts its own, per datagram
                value += sum(getattr(one, attribute) for one in udp)
            yield CounterMetricFamily(p + name, text, value=value)
        yield CounterMetricFamily(
            p + "logins_failed",
            "Logins and /oper refused for a wrong password.",
            value=stats.logins_failed,
        )
        yield CounterMetricFamily(
            p + "kicks", "Members kicked out of a room.", value=server.membership.kicks
        )
        yield GaugeMetricFamily(
            p + "server_bans",
            "Server bans in force.",
            value=len(server.operators.server_bans),
        )
        for name, attribute, text in _UDP:
            yield CounterMetricFamily(
                p + name, text, value=sum(getattr(one, attribute) for one in udp)
            )
        yield from self._history()
        yield from cluster_families(server, p)

    def _udp_stats(self) -> list[UdpStats]:
        found = []
        for listener in self._listeners.get("udp", ()):
            protocol = getattr(listener, "chat_protocol", None)
            if protocol is not None:
                found.append(protocol.stats)
        return found

    def _history(self) -> Iterator[Metric]:
        store = self._server.store
        p = PREFIX
        yield GaugeMetricFamily(
            p + "history_enabled", "1 if history is kept.", value=int(store is not None)
        )
        if store is None:
            return
        yield GaugeMetricFamily(
            p + "history_ok",
            "1 when history is being saved (no trouble), else 0.",
            value=int(not store.trouble()),
        )
        yield GaugeMetricFamily(
            p + "history_backlog_messages",
            "Messages queued for the writer and not yet committed.",
            value=store.backlog(),
        )
        writer = _writer(self._server)
        if writer is None:
            return  # the memory store: nothing is written
        now = writer.counters()
        yield GaugeMetricFamily(
            p + "history_writer_up",
            "1 while the history writer runs, 0 while it is down.",
            value=int(now.writer_up),
        )
        first = self._first_id
        yield CounterMetricFamily(
            p + "history_queued_messages",
            "Messages numbered for the writer since start (dropped ones included).",
            value=max(now.next_id - first, 0),
        )
        yield CounterMetricFamily(
            p + "history_committed_messages",
            "Messages the writer confirmed, or that were given up when it died.",
            value=max(now.committed_id - (first - 1), 0),
        )
        yield CounterMetricFamily(
            p + "history_dropped_messages",
            "Messages not saved: the writer was down or too far behind.",
            value=now.dropped,
        )
        yield CounterMetricFamily(
            p + "history_write_errors",
            "Commits the history writer reported failed.",
            value=now.commit_failures,
        )
        yield CounterMetricFamily(
            p + "history_writer_restarts",
            "Times the history writer was started again after it ended.",
            value=now.restarts,
        )


def _writer(server: ChatServer) -> WriterHealth | None:
    """The history writer's health, when history goes to a writer (SQLite)."""
    health = getattr(server.store, "health", None)
    return health if isinstance(health, WriterHealth) else None


def metrics_site(
    server: ChatServer, watch: LoopWatch, clock: Any, listeners: Listeners
) -> Site:
    """The ``--metrics`` Site: ``/metrics`` and ``/healthz``, 404 elsewhere."""
    registry = CollectorRegistry()
    registry.register(ChatCollector(server, watch, listeners))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    root = _Root()
    root.putChild(b"metrics", MetricsPage(registry))
    root.putChild(b"healthz", HealthResource(server, watch, clock))
    site = _QuietSite(root)
    site.displayTracebacks = False
    return site


class MetricsPage(Resource):
    """
    ``/metrics``: the registry in the format the scraper asks for (text, or
    OpenMetrics), made on the reactor thread.

    Not prometheus_client's ``twisted.MetricsResource``: that is a
    ``WSGIResource`` on the reactor's thread pool, so the collector would
    read the core's dicts (participants, rooms, refusals) on another thread
    while the reactor changes them.  Here a scrape is one short step of the
    reactor (a walk over the clients, a read of ``/proc``), and no thread
    is started for it.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        accept = request.getHeader("accept")
        encoder, content_type = choose_encoder(accept or "")
        body: bytes = encoder(self._registry)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return body


class _Root(Resource):
    """Our two pages, and a plain 404 for any other path."""

    def getChild(self, path: bytes, request: Request) -> Resource:  # noqa: ARG002
        return notFound()  # type: ignore[return-value]


class _QuietSite(Site):
    """A Site that logs no access line: a scrape every 15 s is not news."""

    noisy = False

    def log(self, request: Any) -> None:
        pass
