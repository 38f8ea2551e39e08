"""
What a client can make the daemon log is bounded (issue 11, finding 11).

30 s of connection churn used to write 18 MB of log.  The modules whose log
lines a client triggers log through :class:`twisted_chat.core.logs.RateLimitedLogger`;
these tests drive them as clients would, on a fake clock, and count events.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from typing import cast

import pytest
from conftest import TIMEOUT, Daemon, FakeClock, LineClient, free_port, summaries
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, formatEvent
from twisted.python.failure import Failure

from twisted_chat.core.admission import log_refusal
from twisted_chat.core.errors import TooManyConnections
from twisted_chat.core.logs import LIMIT, LIMITER
from twisted_chat.daemon.options import Options
from twisted_chat.daemon.service import SHUTDOWN_GRACE, ChatService, make_chat_service
from twisted_chat.transports.tcp import ChatLineProtocol


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """The daemon's log limiter on a clock the test moves."""
    fake = FakeClock(5000.0)
    monkeypatch.setattr(LIMITER, "clock", fake)
    LIMITER.reset()
    yield fake
    LIMITER.reset()


def held_back(events: list[LogEvent]) -> int:
    return sum(int(cast("int", event["suppressed"])) for event in summaries(events))


def daemon(*argv: str) -> ChatService:
    options = Options()
    options.parseOptions(["--tcp", "tcp:0", "--history-db", "off", *argv])
    return make_chat_service(
        options["settings"], MemoryReactorClock(), options["given"]
    )


def connect(service: ChatService, host: str, port: int = 40000) -> ChatLineProtocol:
    address = IPv4Address("TCP", host, port)
    protocol = cast("ChatLineProtocol", service.tcp_factory.buildProtocol(address))
    protocol.makeConnection(StringTransport(peerAddress=address))
    return protocol


def test_ten_thousand_refusals_are_a_bounded_number_of_log_events(
    clock: FakeClock, log_events: list[LogEvent]
) -> None:
    """30 s of refusals: at most K a window and a summary, every one counted."""
    refusal = TooManyConnections("Too many connections from your address.")
    for n in range(10_000):
        clock.now = 5000.0 + n * 0.003
        log_refusal(f"tcp 192.0.2.7:{1024 + n}", refusal)
    LIMITER.flush(everything=True)
    refused = [
        e for e in log_events if e.get("log_namespace") == "twisted_chat.core.admission"
    ]
    assert len(refused) <= 4 * (LIMIT + 1)
    written = [event for event in refused if "suppressed" not in event]
    assert len(written) + held_back(refused) == 10_000
    assert "the last: refused connection peer=tcp 192.0.2.7:11023" in formatEvent(
        summaries(refused)[-1]
    )


def test_refused_connections_through_the_listener_are_bounded(
    clock: FakeClock, log_events: list[LogEvent]
) -> None:
    """One address over its cap, 1,000 times: the log holds K lines and a count."""
    service = daemon("--max-per-ip", "1")
    connect(service, "192.0.2.7")
    for n in range(1000):
        refused = connect(service, "192.0.2.7", 41000 + n)
        refused.connectionLost(Failure(ConnectionDone()))
    clock.now += 10
    LIMITER.flush()
    lines = [formatEvent(event) for event in log_events]
    assert sum(line.startswith("refused connection") for line in lines) <= LIMIT
    assert held_back(log_events) >= 1000 - LIMIT


def test_connect_and_quit_churn_is_bounded(
    clock: FakeClock, log_events: list[LogEvent]
) -> None:
    """1,000 clients that connect and go: not 2,000 info lines."""
    service = daemon("--max-per-ip", "0")
    for n in range(1000):
        client = connect(service, f"10.0.{n >> 8}.{n & 0xFF}")
        client.connectionLost(Failure(ConnectionDone()))
    LIMITER.flush(everything=True)
    chat = [
        event
        for event in log_events
        if str(event.get("log_namespace", "")).startswith("twisted_chat.")
    ]
    assert len(chat) <= 4 * (LIMIT + 1)
    written = [event for event in chat if "suppressed" not in event]
    assert len(written) + held_back(chat) >= 2000


def test_shutdown_writes_what_was_held_back(
    clock: FakeClock, log_events: list[LogEvent]
) -> None:
    """A count still in its window at SIGTERM is written, not lost."""
    service = daemon()
    service.startService()
    refusal = TooManyConnections("Too many connections from your address.")
    for n in range(LIMIT + 5):
        log_refusal(f"tcp 192.0.2.7:{2000 + n}", refusal)
    assert not summaries(log_events)
    done = service.stopService()
    cast("MemoryReactorClock", service.reactor).advance(SHUTDOWN_GRACE + 1)
    assert done.called
    assert held_back(log_events) == 5


@pytest.mark.slow
def test_a_real_daemon_logs_a_loop_of_refusals_as_k_lines_and_a_count(
    daemons: Callable[..., Daemon],
) -> None:
    """A real twistd, one address over its cap 300 times: K lines, the rest counted."""
    port = free_port()
    daemon = daemons(
        "--tcp", f"tcp:{port}:interface=127.0.0.1", "--history-db", "off",
        "--max-per-ip", "1",
    )  # fmt: skip
    daemon.wait_for_port(port)
    # The port probe may not be counted out yet: retry until one is let in.
    deadline = time.monotonic() + TIMEOUT
    tries_refused = 0
    while True:
        held = LineClient(port)
        if held.expect(r"^(\* You joined #lobby|! )").startswith("*"):
            break
        held.close()
        tries_refused += 1
        assert time.monotonic() < deadline
    refusals = 300
    for _ in range(refusals):
        refused = LineClient(port)
        refused.expect(r"^! ")
        refused.close()
    assert daemon.stop(signal.SIGTERM) == -signal.SIGTERM
    held.close()
    log = daemon.log
    written = [line for line in log.splitlines() if "] refused connection" in line]
    counted = sum(int(n) for n in re.findall(r"suppressed (\d+) similar events", log))
    assert len(written) <= LIMIT
    assert len(written) + counted == refusals + tries_refused
    assert "Traceback" not in log
