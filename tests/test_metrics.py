"""
What ``--metrics`` exports (twisted_chat.daemon.metrics) and what
``/healthz`` says (twisted_chat.daemon.health), on a fake clock: the text
parses with prometheus_client's parser, names and types are the agreed
ones, labels are bounded and never a nick or an address; the fan-out and
lateness histograms count per turn and per tick; 200 and 503 follow the
loop's lateness and the history store's trouble.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_operators_core import Rig, make_rig
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest

from twisted_chat.core.admission import Admission
from twisted_chat.core.outbox import FANOUT_BUCKETS
from twisted_chat.core.settings import Settings
from twisted_chat.daemon.addresses import tcp_description, udp_description
from twisted_chat.daemon.frontends import FRONT_ENDS, METRICS
from twisted_chat.daemon.health import LATE, LoopWatch, troubles
from twisted_chat.daemon.metrics import TRANSPORTS, ChatCollector, metrics_site
from twisted_chat.daemon.options import Options
from twisted_chat.daemon.service import make_chat_service
from twisted_chat.history.memory import MemoryStore
from twisted_chat.testing import RecordingClient
from twisted_chat.transports.udp import ChatDatagramProtocol


class FakeUdpListener:
    def __init__(self, protocol: ChatDatagramProtocol) -> None:
        self.chat_protocol = protocol


class Datagrams:
    """A UDP transport that keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


def scrape(site: Site) -> dict[str, Any]:
    """``/metrics`` as parsed families by name."""
    request = DummyRequest([b""])
    body = site.resource.children[b"metrics"].render(request)
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def healthz(site: Site) -> tuple[int, dict[str, Any]]:
    request = DummyRequest([b""])
    body = site.resource.children[b"healthz"].render(request)
    return request.responseCode or 200, json.loads(body)


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    """The sample ``name`` (or ``name_total``) with exactly ``labels``."""
    for family in families.values():
        for sample in family.samples:
            if sample.labels == labels and sample.name in (name, name + "_total"):
                return float(sample.value)
    raise AssertionError(f"no {name}{labels}")


def fanout_buckets(families: dict[str, Any]) -> dict[str, float]:
    """The fan-out histogram's cumulative buckets by ``le``."""
    samples = families["twisted_chat_fanout_seconds"].samples
    return {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}


def udp_session(protocol: ChatDatagramProtocol, port: int) -> None:
    """Challenge, then prove, an address."""
    transport = cast("Datagrams", protocol.transport)
    protocol.datagramReceived(b"hi\n", ("127.0.0.1", port))
    challenge = transport.sent[-1][0].decode()
    token = challenge.split("/hello ", 1)[1].split()[0]
    protocol.datagramReceived(f"/hello {token}\n".encode(), ("127.0.0.1", port))


@pytest.fixture
def rig() -> Rig:
    return make_rig(Settings(flood_burst=0))


def test_the_counters_move_by_the_right_amounts(rig: Rig) -> None:
    server = rig.server
    admission = Admission(
        max_clients=2, max_per_ip=0, refusals=server.operators.stats.refusals
    )
    protocol = ChatDatagramProtocol(server, admission, rig.clock)
    protocol.transport = Datagrams()  # type: ignore[assignment]
    watch = LoopWatch(rig.clock)
    udp: Any = [FakeUdpListener(protocol)]
    site = metrics_site(server, watch, rig.clock, {"udp": udp})
    before = scrape(site)
    assert value(before, "twisted_chat_messages") == 0
    _, alice = rig.connect("alice", host="192.0.2.10")
    _, bob = rig.connect("bob", host="192.0.2.11", transport="irc")
    _, carol = rig.connect("carol", host="192.0.2.12", transport="web")
    udp_session(protocol, 4000)
    rig.turn()
    for participant in (alice, bob, carol):
        rig.say(participant, "/join #dev")
    rig.turn()
    joined = scrape(site)
    base = fanout_buckets(joined)
    base_sum = value(joined, "twisted_chat_fanout_seconds_sum")
    server.outbox.clock = iter([10.0, 10.003, 20.0, 20.3]).__next__
    rig.say(alice, "one")
    rig.say(alice, "two")
    rig.turn()  # 2 messages x 3 members; 3 ms
    rig.say(bob, "three")
    rig.turn()  # 1 x 3; 300 ms
    assert admission.admit("x", 0.0) is None  # the 2nd client of 2
    assert admission.admit("y", 0.0) is not None
    after = scrape(site)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("twisted_chat_messages") >= 3
    # From the joins on: 3 lines said (2 over TCP, 1 over IRC) in a room
    # of one TCP, one IRC and one web member (the UDP session is elsewhere).
    said = {"tcp": 2, "irc": 1, "web": 0, "udp": 0}
    for transport, count in said.items():
        received = value(after, "twisted_chat_messages_received", transport=transport)
        assert (
            received
            - value(joined, "twisted_chat_messages_received", transport=transport)
            == count
        )
        sent = value(after, "twisted_chat_deliveries", transport=transport)
        assert sent - value(joined, "twisted_chat_deliveries", transport=transport) == (
            0 if transport == "udp" else 3
        )
    assert value(after, "twisted_chat_clients", transport="tcp") == 1
    assert value(after, "twisted_chat_clients", transport="irc") == 1
    assert value(after, "twisted_chat_clients", transport="web") == 1
    assert value(after, "twisted_chat_clients", transport="udp") == 1
    assert value(after, "twisted_chat_clients", transport="tls") == 0
    assert value(after, "twisted_chat_rooms") == len(server.rooms)
    assert value(after, "twisted_chat_connections_accepted", transport="udp") == 1
    for transport in ("tcp", "irc", "web"):
        assert moved("twisted_chat_connections_accepted", transport=transport) == 1
    assert value(after, "twisted_chat_connections_refused", reason="server-full") == 1
    assert value(after, "twisted_chat_udp_challenges_sent") == 1
    assert value(after, "twisted_chat_udp_sessions_proven") == 1
    assert value(after, "twisted_chat_udp_datagrams_received") == 2
    assert after["twisted_chat_fanout_seconds"].type == "histogram"
    buckets = fanout_buckets(after)
    assert len(buckets) == len(FANOUT_BUCKETS) + 1
    moved_by = {le: count - base[le] for le, count in buckets.items()}
    assert moved_by["0.0025"] == 0
    assert moved_by["0.005"] == 1  # the 3 ms turn
    assert moved_by["0.25"] == 1
    assert moved_by["1.0"] == moved_by["+Inf"] == 2  # and the 300 ms one
    fanout_sum = value(after, "twisted_chat_fanout_seconds_sum") - base_sum
    assert fanout_sum == pytest.approx(0.303)


def test_types_names_and_bounded_labels(rig: Rig) -> None:
    """No nick, room or address in a label; each label from a fixed set."""
    server = rig.server
    for index in range(20):
        _, someone = rig.connect(f"nick{index}", host=f"198.51.100.{index}")
        rig.say(someone, f"/join #room{index}")
    rig.turn()
    families = scrape(metrics_site(server, LoopWatch(rig.clock), rig.clock, {}))
    expected = {
        "twisted_chat_clients": "gauge",
        "twisted_chat_rooms": "gauge",
        "twisted_chat_connections_accepted": "counter",
        "twisted_chat_connections_refused": "counter",
        "twisted_chat_messages": "counter",
        "twisted_chat_deliveries": "counter",
        "twisted_chat_fanout_seconds": "histogram",
        "twisted_chat_event_loop_lateness_seconds": "histogram",
        "twisted_chat_udp_challenges_sent": "counter",
        "twisted_chat_udp_sessions_proven": "counter",
        "twisted_chat_udp_flood_dropped_lines": "counter",
        "twisted_chat_logins_failed": "counter",
        "twisted_chat_kicks": "counter",
        "twisted_chat_server_bans": "gauge",
        "twisted_chat_history_enabled": "gauge",
        "process_cpu_seconds": "counter",
        "process_resident_memory_bytes": "gauge",
    }
    for name, kind in expected.items():
        assert families[name].type == kind, name
    allowed: dict[str, set[str] | None] = {
        "transport": set(TRANSPORTS),
        "le": None,
        "version": None,
    }
    for family in families.values():
        if not family.name.startswith("twisted_chat_"):
            continue
        for sample in family.samples:
            for label, text in sample.labels.items():
                if family.name == "twisted_chat_connections_refused":
                    assert label == "reason"
                    continue
                assert label in allowed, (family.name, label)
                values = allowed[label]
                assert values is None or text in values
                assert "nick" not in text
                assert "#room" not in text
                assert "198.51" not in text
    rooms = value(families, "twisted_chat_rooms")
    assert rooms >= 20


class TlsClient(RecordingClient):
    """The line protocol over TLS: a "tcp" participant behind a TLS transport."""

    transport: TLSMemoryBIOProtocol


def test_tls_clients_are_told_apart(rig: Rig) -> None:
    client = TlsClient(peer="tcp 192.0.2.1:4000")
    client.transport = TLSMemoryBIOProtocol.__new__(TLSMemoryBIOProtocol)
    rig.server.connect(client, "192.0.2.1", host="192.0.2.1", transport="tcp")
    families = scrape(metrics_site(rig.server, LoopWatch(rig.clock), rig.clock, {}))
    assert value(families, "twisted_chat_clients", transport="tls") == 1
    assert value(families, "twisted_chat_clients", transport="tcp") == 0


def test_history_metrics_of_a_memory_store() -> None:
    rig = make_rig(history=MemoryStore())
    _, alice = rig.connect("alice")
    rig.say(alice, "hello")
    rig.turn()
    families = scrape(metrics_site(rig.server, LoopWatch(rig.clock), rig.clock, {}))
    assert value(families, "twisted_chat_history_enabled") == 1
    assert value(families, "twisted_chat_history_ok") == 1
    assert value(families, "twisted_chat_history_backlog_messages") == 0


def test_fanout_is_timed_once_a_turn_not_once_a_room(rig: Rig) -> None:
    reads: list[float] = []

    def clock() -> float:
        reads.append(0.0)
        return 0.0

    people = [rig.connect(f"p{index}")[1] for index in range(3)]
    for index, person in enumerate(people):
        rig.say(person, f"/join #r{index}")
    rig.turn()
    rig.server.outbox.clock = clock
    for person in people:
        rig.say(person, "hi")
    rig.turn()
    assert len(reads) == 2  # three rooms flushed, the clock read twice
    assert sum(rig.server.outbox.fanout_counts) >= 1


# -- the loop's lateness and /healthz --------------------------------------------


def test_lateness_buckets_and_healthz_on_a_clock(rig: Rig) -> None:
    clock = Clock()
    watch = LoopWatch(clock)
    watch.start()
    site = metrics_site(rig.server, watch, clock, {})
    clock.advance(1)
    assert watch.last_lateness == 0
    assert healthz(site) == (200, healthz(site)[1])
    assert healthz(site)[1]["status"] == "ok"
    clock.advance(LATE + 2)  # one tick, due 1 s ago... and LATE + 1 s late
    assert watch.last_lateness == pytest.approx(LATE + 1)
    code, body = healthz(site)
    assert code == 503
    assert body["status"] == "unhealthy"
    assert "late" in body["reasons"][0]
    clock.advance(1)  # on time again
    assert healthz(site)[0] == 200
    families = scrape(site)
    lateness = families["twisted_chat_event_loop_lateness_seconds"]
    assert lateness.type == "histogram"
    count = [s for s in lateness.samples if s.name.endswith("_count")]
    assert count[0].value == 3
    assert value(families, "twisted_chat_event_loop_lateness_seconds_sum") == (
        pytest.approx(LATE + 1)
    )


def test_no_tick_for_too_long_is_unhealthy() -> None:
    """A loop stuck right now: no tick for TICK + LATE seconds."""
    clock = Clock()
    watch = LoopWatch(clock)
    watch.start()
    clock.advance(1)
    assert watch.trouble(clock.seconds() + 1) is None
    assert "no timer" in (watch.trouble(clock.seconds() + 1 + LATE + 0.1) or "")


class TroubledStore(MemoryStore):
    def trouble(self) -> str | None:
        return "history writer was killed (signal 9)"


def test_history_trouble_is_unhealthy() -> None:
    rig = make_rig(history=TroubledStore())
    watch = LoopWatch(rig.clock)
    watch.start()
    reasons = troubles(rig.server, watch, rig.clock.seconds())
    assert reasons == ["history: history writer was killed (signal 9)"]
    code, body = healthz(metrics_site(rig.server, watch, rig.clock, {}))
    assert code == 503
    assert body["reasons"] == reasons
    families = scrape(metrics_site(rig.server, watch, rig.clock, {}))
    assert value(families, "twisted_chat_history_ok") == 0


def test_other_paths_are_404(rig: Rig) -> None:
    site = metrics_site(rig.server, LoopWatch(rig.clock), rig.clock, {})
    request = DummyRequest([b"secret"])
    child = site.getResourceFor(request)
    assert child.render(request)
    assert request.responseCode == 404


# -- the option and the wiring -----------------------------------------------------


def test_metrics_alone_keeps_the_chat_defaults() -> None:
    options = Options()
    options.parseOptions(["--metrics", "tcp:9100:interface=127.0.0.1"])
    settings = options["settings"]
    assert settings.listeners("metrics") == ("tcp:9100:interface=127.0.0.1",)
    assert settings.listeners("tcp") == (tcp_description("9000"),)
    assert settings.listeners("udp") == (udp_description("9001"),)
    assert settings.listeners_defaulted


def test_the_daemon_builds_the_metrics_listener() -> None:
    reactor = MemoryReactorClock()
    settings = Settings(history_db="off", state_dir="/tmp").with_listeners(
        {"tcp": ("tcp:0",), "metrics": ("tcp:9100:interface=127.0.0.1",)}
    )
    service = make_chat_service(settings, reactor)
    assert "metrics" in service.namedServices
    assert service.listeners["metrics"] == ()
    service.privilegedStartService()
    service.startService()
    ports = [port for port, *_ in reactor.tcpServers]
    assert 9100 in ports
    interfaces = [entry[3] for entry in reactor.tcpServers if entry[0] == 9100]
    assert interfaces == ["127.0.0.1"]
    assert METRICS in FRONT_ENDS
    collector = ChatCollector(service.server, LoopWatch(reactor), {})
    assert any(f.name == "twisted_chat_clients" for f in collector.collect())


def test_without_metrics_prometheus_client_is_not_imported() -> None:
    script = (
        "import sys\n"
        "from twisted.internet.testing import MemoryReactorClock\n"
        "from twisted_chat.core.settings import Settings\n"
        "from twisted_chat.daemon.service import make_chat_service\n"
        "s = Settings(history_db='off', state_dir='/tmp').with_listeners("
        "{'tcp': ('tcp:0',)})\n"
        "make_chat_service(s, MemoryReactorClock())\n"
        "print(sorted(m for m in sys.modules if m.startswith('prometheus')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "[]"


def test_the_fanout_is_timed_only_when_exported(rig: Rig) -> None:
    assert rig.server.outbox.clock is None
    metrics_site(rig.server, LoopWatch(rig.clock), rig.clock, {})
    assert rig.server.outbox.clock is rig.server.seconds


def test_the_metrics_key_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "chat.toml"
    config.write_text('metrics = ["tcp:9100:interface=127.0.0.1"]\ntcp = ["9005"]\n')
    options = Options()
    options.parseOptions(["--config", str(config)])
    settings = options["settings"]
    assert settings.listeners("metrics") == ("tcp:9100:interface=127.0.0.1",)
    assert settings.listeners("tcp") == (tcp_description("9005"),)
    assert not settings.listeners("udp")


def test_failed_logins_and_kicks_are_counted(rig: Rig) -> None:
    """Each failed ``/login`` and each kick adds one, as it happens."""
    server = rig.server
    watch = LoopWatch(rig.clock)
    site = metrics_site(server, watch, rig.clock, {})
    _, alice = rig.connect("alice", host="192.0.2.10")
    _, bob = rig.connect("bob", host="192.0.2.11")
    rig.say(alice, "/join #dev")
    rig.say(bob, "/join #dev")
    rig.turn()
    before = scrape(site)
    rig.say(alice, "/kick bob go")
    rig.turn()
    rig.say(bob, "/oper root wrong-password")
    rig.turn()
    after = scrape(site)
    assert value(after, "twisted_chat_kicks") - value(before, "twisted_chat_kicks") == 1
    failed = value(after, "twisted_chat_logins_failed")
    assert failed - value(before, "twisted_chat_logins_failed") == 1


def test_stream_bytes_and_flood_pauses_are_counted_per_read_and_write() -> None:
    """A read adds its length once, a write its length once, a flood pause
    one: through the real TCP protocol, with the metrics scraped."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from twisted_chat.core.chat import ChatServer
    from twisted_chat.transports.tcp import ChatServerFactory

    clock = Clock()
    settings = Settings(flood_burst=2, flood_rate=1.0, default_room="")
    server = ChatServer(settings, clock.seconds, defer=lambda f: clock.callLater(0, f))
    factory = ChatServerFactory(server, Admission(100, 0), clock)
    address = IPv4Address("TCP", "192.0.2.20", 4000)
    protocol = factory.buildProtocol(address)
    assert protocol is not None
    transport = StringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    clock.advance(0)  # the welcome goes out at the end of the turn
    site = metrics_site(server, LoopWatch(clock), clock, {})
    before = scrape(site)
    sent_before = len(transport.value())
    data = b"/ping\n/ping\n/ping\n"  # the third waits for a token
    protocol.dataReceived(data)
    clock.advance(0)
    after = scrape(site)

    def moved(name: str) -> float:
        return value(after, name) - value(before, name)

    assert moved("twisted_chat_bytes_received") == len(data)
    assert moved("twisted_chat_bytes_sent") == len(transport.value()) - sent_before
    assert moved("twisted_chat_flood_pauses") == 1
    assert moved("twisted_chat_sendq_drops") == 0


def test_udp_bytes_count_every_datagram_both_ways(rig: Rig) -> None:
    """UDP's datagrams add to the byte counters: each one read (the challenge
    and hello included) and each payload the socket took."""
    server = rig.server
    admission = Admission(max_clients=0, max_per_ip=0)
    protocol = ChatDatagramProtocol(server, admission, rig.clock)
    transport = Datagrams()
    protocol.transport = transport  # type: ignore[assignment]
    udp: Any = [FakeUdpListener(protocol)]
    site = metrics_site(server, LoopWatch(rig.clock), rig.clock, {"udp": udp})
    before = scrape(site)
    udp_session(protocol, 4001)
    line = b"/join #bytes\n"
    protocol.datagramReceived(line, ("127.0.0.1", 4001))
    rig.turn()
    after = scrape(site)
    read = len(b"hi\n") + len(f"/hello {'x' * 16}\n") + len(line)
    sent = sum(len(data) for data, _ in transport.sent)
    assert sent > 0

    def moved(name: str) -> float:
        return value(after, name) - value(before, name)

    assert moved("twisted_chat_bytes_received") == read
    assert moved("twisted_chat_bytes_sent") == sent


def test_messages_received_survive_the_sender_leaving(rig: Rig) -> None:
    """What a client said stays counted after it quits (the live count is
    on the participant; the core keeps the gone ones' by transport)."""
    site = metrics_site(rig.server, LoopWatch(rig.clock), rig.clock, {})
    _, dave = rig.connect("dave", host="192.0.2.20", transport="web")
    rig.say(dave, "/join #said")
    rig.turn()
    before = value(scrape(site), "twisted_chat_messages_received", transport="web")
    rig.say(dave, "one")
    rig.say(dave, "/me waves")
    rig.say(dave, "/msg dave to myself")
    rig.turn()
    live = value(scrape(site), "twisted_chat_messages_received", transport="web")
    assert live - before == 3
    rig.server.disconnect(dave, "bye")
    rig.turn()
    gone = value(scrape(site), "twisted_chat_messages_received", transport="web")
    assert gone == live
    assert value(scrape(site), "twisted_chat_clients", transport="web") == 0
