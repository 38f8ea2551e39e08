"""ClusterHistory (issue 19): room history shared through Redis streams.

Against a real redis-server and the node's real `RedisLink`: what one
node's rooms said is read by a node that never saw it (in order, trimmed
to the history size), every message is one stream entry and every turn
one script call, what other nodes said stays in the cache only, topics
travel too, and an outage keeps history in memory (said by ``trouble``)
and writes it once Redis is back. The contract every store keeps runs
in tests/test_history_store.py (its "cluster" case uses `cluster_link`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import pytest
import pytest_twisted
from _redis import RedisServer, redis_server, until
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from twisted_chat.cluster.history import TROUBLE, ClusterHistory
from twisted_chat.cluster.link import RedisLink
from twisted_chat.cluster.url import ClusterUrl
from twisted_chat.core import lines
from twisted_chat.core.records import StoredMessage, StoredTopic
from twisted_chat.history.memory import MemoryStore

#: "Now" for what is said: a load leaves out what is past the age limit.
NOW = time.time()

ensure_deferred = pytest_twisted.ensureDeferred
async_yield_fixture = pytest_twisted.async_yield_fixture


pytestmark = pytest.mark.usefixtures("no_tracebacks")


class LinkRig:
    """A started `RedisLink` to a redis-server (``redis``), stopped by `close`."""

    def __init__(self, server: RedisServer) -> None:
        self.redis = server
        self.link = RedisLink(
            ClusterUrl.parse(server.url),
            cast("IReactorTime", reactor),
            [],
            lambda _channel, _data: None,
            lambda: None,
            lambda _reason: None,
        )

    async def start(self) -> RedisLink:
        self.link.start()
        await until(lambda: self.link.up)
        return self.link


@pytest.fixture
def cluster_link() -> Iterator[RedisLink]:
    """A fresh redis-server and an up `RedisLink` to it (sync fixtures too)."""
    with redis_server() as server:
        rig = LinkRig(server)
        link = pytest_twisted.blockon(Deferred.fromCoroutine(rig.start()))
        yield link
        pytest_twisted.blockon(link.stop())


@async_yield_fixture
async def node(redis: RedisServer) -> AsyncIterator[Callable[..., Any]]:
    """Make nodes: each a `ClusterHistory` over its own link to ``redis``."""
    made: list[tuple[RedisLink, ClusterHistory]] = []

    async def make(history_max: int = 50, max_age_days: float = 30) -> ClusterHistory:
        link = await LinkRig(redis).start()
        memory = MemoryStore(max_per_room=history_max, max_age_days=max_age_days)
        history = ClusterHistory(link, memory, history_max)
        history.start()
        made.append((link, history))
        return history

    yield make
    for link, history in made:
        await history.stop()
        await link.stop()


def said(room: str, n: int) -> bytes:
    return lines.room_message(room, f"nick{n}", f"text {n}")


def texts(messages: list[StoredMessage]) -> list[str]:
    return [m.text for m in messages]


@ensure_deferred
async def test_what_one_node_said_is_loaded_by_another_in_order_and_trimmed(
    node: Callable[..., Any], redis: RedisServer
) -> None:
    a = await node(history_max=5)
    for n in range(0, 12, 3):  # turns of three lines
        data = said("#A", n) + said("#A", n + 1) + said("#A", n + 2)
        a.append_lines("#a", "#A", NOW + n, data)
    a.append_lines("#b", "#B", NOW + 20, said("#B", 99))
    await a.flush()
    assert redis.cli("XLEN", "tc:hist:#a") == "12"  # one entry per message
    b = await node(history_max=5)
    assert b.recent("#a", 50) == []
    assert await b.load() is True
    assert texts(b.recent("#a", 50)) == [f"text {n}" for n in range(7, 12)]
    assert b.recent("#a", 50) == a.recent("#a", 50)
    assert b.recent("#b", 5) == [
        StoredMessage("#b", "#B", "nick99", "text 99", False, NOW + 20)
    ]


@ensure_deferred
async def test_streams_are_trimmed_to_about_history_max(
    node: Callable[..., Any], redis: RedisServer
) -> None:
    a = await node(history_max=10)
    for n in range(600):
        a.append_lines("#a", "#a", float(n), said("#a", n))
    await a.flush()
    # MAXLEN ~: Redis trims whole nodes of its stream (100 entries each).
    assert 10 <= int(redis.cli("XLEN", "tc:hist:#a")) <= 210


@ensure_deferred
async def test_one_script_call_per_room_per_turn_and_remote_lines_are_not_written(
    node: Callable[..., Any], redis: RedisServer
) -> None:
    a = await node()
    calls: list[tuple[Any, ...]] = []
    script: Callable[..., Deferred[Any]] = a.link.script

    def counted(*args: Any) -> Deferred[Any]:
        calls.append(args)
        return script(*args)

    a.link.script = counted
    a.append_lines("#a", "#a", 1.0, b"".join(said("#a", n) for n in range(40)))
    a.append_lines("#b", "#b", 1.0, said("#b", 1))
    a.remote_lines("#c", "#c", 2.0, said("#c", 1))
    await a.flush()
    assert len(calls) == 2
    assert redis.cli("XLEN", "tc:hist:#a") == "40"
    assert redis.cli("EXISTS", "tc:hist:#c") == "0"
    assert texts(a.recent("#c", 5)) == ["text 1"]  # kept in the cache
    assert a.backlog() == 0


@ensure_deferred
async def test_topics_are_shared(node: Callable[..., Any], redis: RedisServer) -> None:
    a = await node()
    topic = StoredTopic("#a", "#A", "Ünïcode topic", "alice", 5.5)
    a.set_topic(topic)
    a.remote_topic(StoredTopic("#z", "#z", "not written", "x", 1.0))
    await a.flush()
    assert redis.cli("EXISTS", "tc:topic:#z") == "0"
    b = await node()
    await b.load()
    assert b.topic("#a") == topic
    assert b.topic("#z") is None


@ensure_deferred
async def test_an_outage_keeps_history_in_memory_and_writes_it_when_redis_is_back(
    node: Callable[..., Any], redis: RedisServer
) -> None:
    a = await node()
    a.append_lines("#a", "#a", NOW + 1, said("#a", 1))
    await a.flush()
    redis.stop()
    await until(lambda: not a.link.up)
    assert a.trouble() == TROUBLE
    a.append_lines("#a", "#a", NOW + 2, said("#a", 2))
    a.set_topic(StoredTopic("#a", "#a", "set while down", "bob", NOW))
    assert texts(a.recent("#a", 5)) == ["text 1", "text 2"]
    assert a.backlog() == 1
    assert await a.load() is False  # never raises
    assert texts(a.recent("#a", 5)) == ["text 1", "text 2"]
    redis.start()  # empty: persistence is off
    await until(lambda: a.link.up)
    assert a.trouble() is None
    assert await a.load() is True  # writes what waited first
    assert a.backlog() == 0
    assert texts(a.recent("#a", 5)) == ["text 2"]  # what Redis holds now
    b = await node()
    await b.load()
    assert texts(b.recent("#a", 5)) == ["text 2"]
    topic = b.topic("#a")
    assert topic is not None
    assert topic.text == "set while down"


@ensure_deferred
async def test_lines_that_arrive_during_a_load_are_kept_once(
    node: Callable[..., Any],
) -> None:
    a = await node()
    a.append_lines("#a", "#a", NOW + 1, said("#a", 1))
    a.append_lines("#a", "#a", NOW + 2, said("#a", 2))
    await a.flush()
    b = await node()
    loading = b.load()
    b.remote_lines("#a", "#a", NOW + 3, said("#a", 2))  # in the stream (arrived later)
    b.remote_lines("#a", "#a", NOW + 3, said("#a", 3))  # not yet
    assert await loading is True
    assert texts(b.recent("#a", 10)) == ["text 1", "text 2", "text 3"]


@ensure_deferred
async def test_prune_trims_streams_by_age(
    node: Callable[..., Any], redis: RedisServer
) -> None:
    a = await node(max_age_days=1)
    now = time.time()
    a.append_lines("#a", "#a", now, said("#a", 1))
    await a.flush()
    a.prune(now + 0.5 * 86_400)
    await until(lambda: not a.backlog())
    assert redis.cli("XLEN", "tc:hist:#a") == "1"
    a.prune(now + 2 * 86_400)
    await until(lambda: redis.cli("XLEN", "tc:hist:#a") == "0")
    assert a.recent("#a", 5) == []


@ensure_deferred
async def test_a_load_leaves_out_what_is_past_the_age_limit(
    node: Callable[..., Any],
) -> None:
    a = await node(max_age_days=1)
    a.append_lines("#a", "#a", NOW - 2 * 86_400, said("#a", 1))
    a.append_lines("#a", "#a", NOW, said("#a", 2))
    await a.flush()
    b = await node(max_age_days=1)
    await b.load()
    assert texts(b.recent("#a", 5)) == ["text 2"]


__all__ = ["cluster_link"]  # the fixture, for pytest


class _Away:
    """A link to a Redis that cannot be reached: nothing is sent."""

    up = False

    def call(self, *args: object) -> Deferred[Any]:
        raise AssertionError(f"sent while down: {args!r}")

    def script(self, *args: object) -> Deferred[Any]:
        raise AssertionError(f"sent while down: {args!r}")


def test_what_waits_for_redis_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """While Redis is away, only the newest MAX_UNSAVED turns wait to be written."""
    from twisted_chat.cluster import history as module

    monkeypatch.setattr(module, "MAX_UNSAVED", 5)
    store = ClusterHistory(_Away(), MemoryStore(), 100, lambda: 1.0)
    for n in range(12):
        store.append_lines("#a", "#a", float(n), lines.room_message("#a", "x", f"m{n}"))
    assert len(store._unsaved) == 5
    assert store.dropped == 7
    assert store.trouble() == TROUBLE
    # The cache still has all of them: this node's users lose nothing.
    assert len(store.recent("#a", 20)) == 12
