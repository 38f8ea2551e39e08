"""
What /stats reports and the counters behind it (twisted_chat.core.stats):
messages and deliveries counted once per room flush, their rates, refusals
by code (admission and bans), the history backlog.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
import pytest_twisted
from test_operators_core import Rig, make_rig
from twisted.internet import reactor
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock

from twisted_chat.core.admission import Admission
from twisted_chat.core.bounds import BUSY_ROOM, NOTICE_DELAY
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.settings import Settings
from twisted_chat.core.stats import RATE_INTERVAL
from twisted_chat.history.memory import MemoryStore
from twisted_chat.history.sqlite import SqliteStore
from twisted_chat.testing import RecordingClient, make_chat


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def three_in_the_lobby(rig: Rig) -> Rig:
    for nick in ("alice", "bob", "carol"):
        rig.connect(nick)
    rig.turn()
    return rig


def test_counting_is_per_room_flush(rig: Rig) -> None:
    """4 lines in a room of 3 in one turn: 4 messages, 4 x 3 = 12 deliveries."""
    three_in_the_lobby(rig)
    outbox = rig.server.outbox
    alice, bob = rig.server.participants["alice"], rig.server.participants["bob"]
    samples = []
    outbox.on_turn = lambda: samples.append(outbox.messages)
    before = (outbox.messages, outbox.deliveries)
    rig.say(alice, "one")
    rig.say(alice, "two")
    rig.say(bob, "three")
    rig.say(bob, "/me four")
    assert (outbox.messages, outbox.deliveries) == before  # nothing per line
    rig.turn()
    assert (outbox.messages - before[0], outbox.deliveries - before[1]) == (4, 12)
    assert samples == [outbox.messages]  # one sample for the turn


def test_notices_that_wait_are_counted_when_they_go_out() -> None:
    clock = Clock()
    server = ChatServer(
        Settings(),
        clock.seconds,
        defer=lambda f: clock.callLater(0, f),
        call_later=clock.callLater,
    )
    for _ in range(BUSY_ROOM):
        server.connect(RecordingClient())
    clock.advance(NOTICE_DELAY)
    outbox = server.outbox
    before = (outbox.messages, outbox.deliveries)
    server.connect(RecordingClient())  # one join notice, in a busy room
    clock.advance(0)
    assert (outbox.messages, outbox.deliveries) == before
    clock.advance(NOTICE_DELAY)
    assert outbox.messages - before[0] == 1
    assert outbox.deliveries - before[1] == BUSY_ROOM + 1


def test_without_a_reactor_every_line_counts_at_once() -> None:
    chat = make_chat()
    chat.connect("alice")
    _, bob = chat.connect("bob")
    outbox = chat.server.outbox
    before = (outbox.messages, outbox.deliveries)
    chat.server.receive(bob, "hi")
    assert (outbox.messages - before[0], outbox.deliveries - before[1]) == (1, 2)


def test_rates_are_over_the_last_few_seconds(rig: Rig) -> None:
    three_in_the_lobby(rig)
    alice = rig.server.participants["alice"]
    stats = rig.server.operators.stats
    for _ in range(30):
        rig.clock.advance(1)
        rig.say(alice, "tick")
        rig.say(alice, "tock")
        rig.turn()
    rates = stats.rates()
    assert rates.seconds >= RATE_INTERVAL
    assert rates.seconds <= RATE_INTERVAL + 1
    assert rates.messages == pytest.approx(2.0)
    assert rates.deliveries == pytest.approx(6.0)
    rig.clock.advance(3600)  # then silence: the rate falls
    assert stats.rates().messages < 0.1


def test_rates_before_any_traffic(rig: Rig) -> None:
    rates = rig.server.operators.stats.rates()
    assert (rates.messages, rates.deliveries, rates.seconds) == (0, 0, 0)


def test_admission_counts_refusals_by_code() -> None:
    admission = Admission(max_clients=2, max_per_ip=1)
    assert admission.admit("a", 0.0) is None
    assert admission.admit("a", 0.0) is not None
    assert admission.admit("b", 0.0) is None
    assert admission.admit("c", 0.0) is not None
    assert admission.refusals == {"too-many-connections": 1, "server-full": 1}
    assert admission.total == 2


def test_stats_reports_everything() -> None:
    history = MemoryStore()
    rig = make_rig(history=history)
    client, root = rig.oper()
    rig.connect("bob")
    rig.connect("udp1", transport="udp")
    rig.store.create("Bob", "fake$x", 0.0)
    # The daemon hands admission the same table.
    admission = Admission(
        max_clients=100, max_per_ip=1, refusals=rig.server.operators.stats.refusals
    )
    admission.admit("g", 0.0)
    admission.admit("g", 0.0)
    rig.say(root, "/serverban 198.51.100.5")
    rig.server.connect(RecordingClient(), "x", host="198.51.100.5")
    rig.server.connect(RecordingClient(), "x", host="198.51.100.5")
    rig.say(root, "/join #dev")
    rig.turn()
    client.clear()
    rig.say(root, "/stats")
    lines = client.lines()
    assert lines[:3] == ["* Server stats:", "* 3 clients (tcp 2, udp 1)", "* 2 rooms"]
    assert lines[3].startswith("* ")
    assert "deliveries a second" in lines[3]
    assert lines[4:] == [
        "* refusals: banned 2, too-many-connections 1",
        "* history: 0 messages waiting to be written",
        "* accounts: 1; server bans: 1",
    ]


class _Troubled(MemoryStore):
    def trouble(self) -> str | None:
        return "history writer ended"


@pytest.mark.parametrize(
    ("history", "shown"),
    [
        (None, "* history: off"),
        (_Troubled(), "* history: NOT SAVED: history writer ended"),
    ],
)
def test_stats_history(history: MemoryStore | None, shown: str) -> None:
    rig = make_rig(history=history)
    client, root = rig.oper()
    rig.say(root, "/stats")
    assert shown in client.lines()
    assert "* refusals: none" in client.lines()


def test_stats_is_charged_to_the_reply_budget(rig: Rig) -> None:
    client, root = rig.oper()
    for _ in range(60):
        rig.say(root, "/stats")
    assert client.lines()[-1].startswith("! slow-down: ")


def test_memory_store_has_no_backlog() -> None:
    store = MemoryStore()
    store.append_lines("#a", "#a", 1.0, b"[#a] <x> one\r\n")
    assert store.backlog() == 0


@pytest_twisted.ensureDeferred
async def test_sqlite_backlog_is_what_the_writer_has_not_committed(
    tmp_path: Path,
) -> None:
    store = SqliteStore.open(
        str(tmp_path / "h.db"), reactor=cast("IReactorFromThreads", reactor)
    )
    try:
        store.start()
        store.append_lines("#a", "#a", 1.0, b"[#a] <x> one\r\n[#a] <x> two\r\n")
        store.append_lines("#b", "#b", 1.0, b"[#b] <x> three\r\n")
        assert store.backlog() == 3
        await store.flush()
        assert store.backlog() == 0
    finally:
        await store.stop()
