"""
``--metrics`` end to end (issue 17): a real ``twistd -n chat --tcp ... --udp
... --metrics tcp:PORT:interface=127.0.0.1``, chat over TCP and UDP, then
``/metrics`` scraped over HTTP: the text parses with prometheus_client's
parser and the counters moved by the right amounts.  ``/healthz`` is 200,
turns 503 when the history writer process is killed (until it is running
again), and when the reactor was stopped for a few seconds (SIGSTOP, then
SIGCONT: the first answer after it says how late the loop's timer was).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import TIMEOUT, free_port
from prometheus_client.parser import text_string_to_metric_families
from test_accounts_e2e import Chat
from test_accounts_e2e import chat as chat  # noqa: PLC0414 - the fixture

pytestmark = pytest.mark.slow

#: How long the daemon is stopped: past health.LATE (2 s) plus a tick.
STALL = 4.0


def get(port: int, path: str) -> tuple[int, bytes]:
    """One HTTP GET on 127.0.0.1: the status and the body (a 503 too)."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed: every sample by name and labels."""
    status, body = get(port, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def health(port: int) -> tuple[int, dict[str, Any]]:
    status, body = get(port, "/healthz")
    return status, json.loads(body)


def wait_for_health(port: int, want: int, what: str) -> dict[str, Any]:
    """Poll ``/healthz`` until it answers ``want``; its body."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        status, body = health(port)
        if status == want:
            return body
        assert time.monotonic() < deadline, f"no {want} {what}: {status} {body}"
        time.sleep(0.02)  # polling a condition, bounded by the deadline


def start(chat: Chat, *args: str) -> int:
    """The daemon with ``--metrics`` on a free port, once /metrics answers."""
    port = free_port()
    chat.start("--metrics", f"tcp:{port}:interface=127.0.0.1", *args)
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            get(port, "/metrics")
        except OSError:
            assert time.monotonic() < deadline, f"no /metrics:\n{chat.log}"
            time.sleep(0.05)  # polling a condition, bounded by the deadline
        else:
            return port


def writer_pid(daemon: int, not_this: int = 0) -> int:
    """
    The history writer: the daemon's child running twisted_chat.history.writer
    (polled: a child just forked shows the daemon's command line until exec).
    """
    deadline = time.monotonic() + TIMEOUT
    while True:
        for task in Path(f"/proc/{daemon}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    command = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue  # it has just exited
                if b"twisted_chat.history.writer" in command and int(child) != not_this:
                    return int(child)
        assert time.monotonic() < deadline, "no history writer process"
        time.sleep(0.02)  # polling a condition, bounded by the deadline


def test_counters_after_chat_over_tcp_and_udp(chat: Chat) -> None:
    port = start(chat, "--max-clients", "3", "--flood-burst", "0")
    before = scrape(port)
    alice = chat.connect("alice")
    bob = chat.connect("bob")
    carol = chat.udp("carol")
    for client in (alice, bob):
        client.settle()
    carol.settle()
    middle = scrape(port)
    assert metric(middle, "twisted_chat_clients", transport="tcp") == 2
    assert metric(middle, "twisted_chat_clients", transport="udp") == 1
    assert metric(middle, "twisted_chat_clients", transport="irc") == 0
    assert metric(middle, "twisted_chat_rooms") == 1
    assert (
        metric(middle, "twisted_chat_connections_accepted_total", transport="udp") == 1
    )
    assert metric(middle, "twisted_chat_udp_sessions_proven_total") == 1
    assert metric(middle, "twisted_chat_udp_challenges_sent_total") >= 1

    for index in range(3):
        alice.say(f"tcp line {index}")
    carol.say("udp line 0")
    carol.say("udp line 1")
    for index in range(3):
        bob.expect(rf"^\[#lobby\] <alice> tcp line {index}$")
        carol.expect(rf"^\[#lobby\] <alice> tcp line {index}$")
    for index in range(2):
        alice.expect(rf"^\[#lobby\] <carol> udp line {index}$")
        bob.expect(rf"^\[#lobby\] <carol> udp line {index}$")
    alice.settle()
    refused = chat.raw()
    assert b"server-full" in refused.read_until_closed()
    after = scrape(port)

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(middle, name, **labels)

    # 5 room lines, each to a room of 3 at its flush.
    assert moved("twisted_chat_messages_total") == 5
    # By transport: 3 said over TCP and 2 over UDP; alice and bob (TCP) and
    # carol (UDP) are each counted for all 5 lines at their flush.
    assert moved("twisted_chat_messages_received_total", transport="tcp") == 3
    assert moved("twisted_chat_messages_received_total", transport="udp") == 2
    assert moved("twisted_chat_deliveries_total", transport="tcp") == 10
    assert moved("twisted_chat_deliveries_total", transport="udp") == 5
    assert moved("twisted_chat_deliveries_total", transport="irc") == 0
    assert moved("twisted_chat_connections_refused_total", reason="server-full") == 1
    assert moved("twisted_chat_udp_datagrams_received_total") >= 2
    # Both ways over both transports: at least the lines said (3 over TCP, 2
    # as datagrams) and the 10 deliveries (3 of them datagrams to carol).
    said = 3 * len(b"tcp line 0\n") + 2 * len(b"udp line 0\n")
    assert moved("twisted_chat_bytes_received_total") >= said
    delivered = 10 * len(b"[#lobby] <alice> tcp line 0\n")
    assert moved("twisted_chat_bytes_sent_total") >= delivered
    assert moved("twisted_chat_fanout_seconds_count") >= 1
    assert metric(after, "twisted_chat_fanout_seconds_bucket", le="+Inf") == (
        metric(after, "twisted_chat_fanout_seconds_count")
    )
    assert moved("twisted_chat_history_queued_messages_total") == 5
    assert metric(after, "twisted_chat_history_writer_up") == 1
    assert metric(after, "process_cpu_seconds_total") > 0
    assert metric(after, "process_resident_memory_bytes") > 0
    # Nothing refused before the fourth client.
    refused_total = "twisted_chat_connections_refused_total"
    assert metric(before, refused_total, reason="server-full") == 0
    # The writer commits what was queued: the backlog drains.
    deadline = time.monotonic() + TIMEOUT
    while True:
        now = scrape(port)
        if metric(now, "twisted_chat_history_backlog_messages") == 0 and metric(
            now, "twisted_chat_history_committed_messages_total"
        ) == metric(now, "twisted_chat_history_queued_messages_total"):
            break
        assert time.monotonic() < deadline, "the history backlog never drained"
        time.sleep(0.05)  # polling a condition, bounded by the deadline
    # A second of chat ticks the loop's timer at least once.
    deadline = time.monotonic() + TIMEOUT
    while metric(scrape(port), "twisted_chat_event_loop_lateness_seconds_count") < 1:
        assert time.monotonic() < deadline, "the loop's timer never ticked"
        time.sleep(0.05)  # polling a condition, bounded by the deadline
    # No nick in the exposition.
    _, text = get(port, "/metrics")
    for nick in (b"alice", b"bob", b"carol"):
        assert nick not in text


def test_healthz_when_the_history_writer_is_killed(chat: Chat) -> None:
    port = start(chat)
    status, body = health(port)
    assert (status, body["status"]) == (200, "ok")
    assert metric(scrape(port), "twisted_chat_history_writer_restarts_total") == 0
    assert chat.proc is not None
    writer = writer_pid(chat.proc.pid)
    os.kill(writer, signal.SIGKILL)
    body = wait_for_health(port, 503, "after the writer was killed")
    assert body["status"] == "unhealthy"
    assert any("history writer" in reason for reason in body["reasons"]), body
    # The daemon starts the writer again (after 1 s): healthy again.
    wait_for_health(port, 200, "once the writer runs again")
    assert writer_pid(chat.proc.pid, not_this=writer) != writer
    after = scrape(port)
    assert metric(after, "twisted_chat_history_writer_restarts_total") == 1
    assert metric(after, "twisted_chat_history_writer_up") == 1


def test_healthz_when_the_reactor_was_blocked(chat: Chat) -> None:
    port = start(chat)
    wait_for_health(port, 200, "at start")
    assert chat.proc is not None
    chat.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(STALL)  # the stall itself: the daemon runs nothing meanwhile
    finally:
        chat.proc.send_signal(signal.SIGCONT)
    status, body = health(port)
    assert status == 503, body
    assert any("event loop" in reason for reason in body["reasons"]), body
    samples = scrape(port)
    assert (
        metric(samples, "twisted_chat_event_loop_lateness_seconds_bucket", le="+Inf")
        >= 1
    )
    late = metric(samples, "twisted_chat_event_loop_lateness_seconds_bucket", le="2.5")
    total = metric(samples, "twisted_chat_event_loop_lateness_seconds_count")
    assert total - late >= 1  # a tick more than 2.5 s late
    wait_for_health(port, 200, "once the loop is on time again")
