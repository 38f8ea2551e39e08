"""NodeLease (issue 19) against a real redis-server, with short leases.

A node that stops renewing (killed, cut off) is reaped once its lease runs
out: its nicknames are freed and ``node-dead`` is published exactly once,
however many reapers run; a clean stop does the same at once; after an
outage the reaper waits one ttl so the others can renew first.
"""

from __future__ import annotations

import json
import time

import pytest
import pytest_twisted
from _redis import RedisServer, redis_server, settle, until
from twisted.internet import reactor
from twisted.logger import LogEvent

from twisted_chat.cluster.lease import NodeLease
from twisted_chat.cluster.link import RedisLink
from twisted_chat.cluster.nick_claims import NickClaims
from twisted_chat.cluster.url import ClusterUrl

TTL = 2.0
REFRESH = 0.3
REAP_EVERY = 0.2


pytestmark = pytest.mark.usefixtures("no_tracebacks")


class Node:
    """A link subscribed to tc:control, its lease and its nick claims."""

    def __init__(self, redis: RedisServer, node_id: str) -> None:
        self.id = node_id
        self.control: list[dict[str, object]] = []
        self.link = RedisLink(
            ClusterUrl.parse(redis.url),
            reactor,
            ["tc:control"],
            lambda _channel, data: self.control.append(json.loads(data)),
            lambda: None,
            lambda _reason: None,
        )
        self.dead: list[str] = []
        self.lease = NodeLease(
            self.link, reactor, node_id, self.dead.append, TTL, REFRESH, REAP_EVERY
        )
        self.claims = NickClaims(self.link, node_id)

    async def start(self, lease: bool = True) -> Node:
        self.link.start()
        await until(lambda: self.link.up)
        if lease:
            await self.lease.start()
        return self

    async def crash(self) -> None:
        """Gone without a word: the lease is left to run out."""
        await self.link.stop()

    async def stop(self) -> None:
        await self.lease.stop()
        await self.link.stop()


def deaths(node: Node) -> list[object]:
    return [m["node"] for m in node.control if m.get("kind") == "node-dead"]


@pytest_twisted.ensureDeferred
async def test_the_lease_is_set_and_renewed(redis: RedisServer) -> None:
    a = await Node(redis, "node-a").start()
    try:
        assert json.loads(redis.cli("GET", "tc:node:node-a"))["node"] == "node-a"
        assert 0 < int(redis.cli("PTTL", "tc:node:node-a")) <= TTL * 1000
        seconds, micros = map(int, redis.cli("TIME").split())
        server_ms = seconds * 1000 + micros // 1000  # Redis's clock, not ours
        score = float(redis.cli("ZSCORE", "tc:nodes", "node-a"))
        assert server_ms < score <= server_ms + TTL * 1000
        await settle(TTL * 2)  # renewed meanwhile: still there
        assert redis.cli("EXISTS", "tc:node:node-a") == "1"
        assert deaths(a) == []
    finally:
        await a.stop()


@pytest_twisted.ensureDeferred
async def test_a_crashed_node_is_reaped_once_by_two_reapers(
    redis: RedisServer,
) -> None:
    a = await Node(redis, "node-a").start()
    b = await Node(redis, "node-b").start()
    c = await Node(redis, "node-c").start()
    try:
        assert await a.claims.claim("alice", "alice", 1.0)
        assert await a.claims.claim("amy", "amy", 1.0)
        assert await b.claims.claim("bob", "bob", 1.0)
        await a.crash()
        await until(lambda: deaths(b) == ["node-a"] and deaths(c) == ["node-a"])
        await settle(REAP_EVERY * 5)  # more reaps: no second message
        assert deaths(b) == ["node-a"]
        assert deaths(c) == ["node-a"]
        assert redis.cli("GET", "tc:nick:alice") == ""
        assert redis.cli("GET", "tc:nick:amy") == ""
        assert redis.cli("EXISTS", "tc:nicks:node-a") == "0"
        assert redis.cli("ZSCORE", "tc:nodes", "node-a") == ""
        assert json.loads(redis.cli("GET", "tc:nick:bob"))["node"] == "node-b"
        assert await c.claims.claim("alice", "Alice", 2.0)
        assert b.dead == []  # the lease never calls on_dead itself
    finally:
        await a.lease.stop()
        await b.stop()
        await c.stop()


@pytest_twisted.ensureDeferred
async def test_stop_is_a_clean_leave(redis: RedisServer) -> None:
    a = await Node(redis, "node-a").start()
    b = await Node(redis, "node-b").start()
    try:
        assert await a.claims.claim("alice", "alice", 1.0)
        await a.lease.stop()  # the link stays up, as in a daemon's shutdown
        assert redis.cli("EXISTS", "tc:node:node-a") == "0"
        assert redis.cli("ZSCORE", "tc:nodes", "node-a") == ""
        assert redis.cli("GET", "tc:nick:alice") == ""
        await until(lambda: deaths(b) == ["node-a"])
        # Our own node-dead may come in after: the lease stays gone.
        await a.lease.renew_now()
        assert await a.lease.reap() == []
        assert redis.cli("EXISTS", "tc:node:node-a") == "0"
    finally:
        await a.link.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_after_an_outage_the_reaper_waits_one_ttl(redis: RedisServer) -> None:
    a = await Node(redis, "node-a").start()
    try:
        # A node whose lease ran out while Redis was away.
        redis.cli("ZADD", "tc:nodes", "0", "ghost")
        await a.lease.renew_now()
        held_back = time.monotonic()
        assert await a.lease.reap() == []
        await until(lambda: deaths(a) == ["ghost"], timeout=TTL * 10)
        assert time.monotonic() - held_back >= TTL * 0.9
    finally:
        await a.stop()


@pytest_twisted.ensureDeferred
async def test_a_live_lease_is_not_reaped_and_self_never(redis: RedisServer) -> None:
    a = await Node(redis, "node-a").start(lease=False)  # listens, never reaps
    b = NodeLease(a.link, reactor, "node-b", lambda _node: None, TTL)  # not started
    try:
        redis.cli("SET", "tc:node:slow", "x", "PX", "60000")
        for node in ("slow", "gone", "node-b"):
            redis.cli("ZADD", "tc:nodes", "0", node)
        # "slow": its lease key lives (the key is the truth); "node-b": itself.
        assert await b.reap() == ["gone"]
        assert redis.cli("ZSCORE", "tc:nodes", "slow") == "0"
        assert redis.cli("ZSCORE", "tc:nodes", "node-b") == "0"
        await until(lambda: deaths(a) == ["gone"])
    finally:
        await a.link.stop()


@pytest_twisted.ensureDeferred
async def test_a_node_taken_for_dead_renews_and_says_so(
    redis: RedisServer, log_events: list[LogEvent]
) -> None:
    a = await Node(redis, "node-a").start()
    try:
        redis.cli("ZREM", "tc:nodes", "node-a")  # as if reaped meanwhile
        await until(lambda: redis.cli("ZSCORE", "tc:nodes", "node-a") != "")
        await until(
            lambda: any("taken for dead" in e["log_format"] for e in log_events)
        )
    finally:
        await a.stop()


@pytest_twisted.ensureDeferred
async def test_down_the_lease_keeps_quiet_and_renews_on_return() -> None:
    with redis_server() as redis:
        a = await Node(redis, "node-a").start()
        try:
            redis.stop()
            await until(lambda: not a.link.up)
            await settle(REFRESH * 2)  # renewals and reaps fail quietly
            assert await a.lease.reap() == []
            redis.start()  # empty: no persistence
            await until(lambda: a.link.up)
            await a.lease.renew_now()
            assert redis.cli("EXISTS", "tc:node:node-a") == "1"
        finally:
            await a.stop()
