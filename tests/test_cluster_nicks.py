"""NickClaims (issue 19) against a real redis-server: one name, one node.

Two nodes claiming the same names at once get exactly one winner each;
only the holder releases; after an outage the earlier claim keeps a name
(the loser is told on its channel); a dead node's names are freed by
`free_node`, and `prune` drops the claims of users gone during an outage.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from _redis import RedisServer, redis_server, until
from twisted.internet import reactor
from twisted.internet.defer import gatherResults

from twisted_chat.cluster.link import LinkDown, RedisLink
from twisted_chat.cluster.nick_claims import NickClaims, free_node
from twisted_chat.cluster.url import ClusterUrl

pytestmark = pytest.mark.usefixtures("no_tracebacks")


class Node:
    """A link subscribed to ``tc:to:<id>`` and the node's NickClaims."""

    def __init__(self, redis: RedisServer, node_id: str) -> None:
        self.id = node_id
        self.messages: list[dict[str, object]] = []
        self.link = RedisLink(
            ClusterUrl.parse(redis.url),
            reactor,
            [f"tc:to:{node_id}"],
            lambda _channel, data: self.messages.append(json.loads(data)),
            lambda: None,
            lambda _reason: None,
        )
        self.claims = NickClaims(self.link, node_id)

    async def start(self) -> Node:
        self.link.start()
        await until(lambda: self.link.up)
        return self

    async def stop(self) -> None:
        await self.link.stop()


def record(redis: RedisServer, key: str) -> dict[str, object] | None:
    text = redis.cli("GET", f"tc:nick:{key}")
    return json.loads(text) if text else None


def members(redis: RedisServer, node: str) -> set[str]:
    return set(redis.cli("SMEMBERS", f"tc:nicks:{node}").split())


@pytest_twisted.ensureDeferred
async def test_claim_race_has_exactly_one_winner_per_name(redis: RedisServer) -> None:
    a = await Node(redis, "node-a").start()
    b = await Node(redis, "node-b").start()
    try:
        keys = [f"nick{i}" for i in range(60)]
        tries = []
        for i, key in enumerate(keys):
            # Interleaved, both in flight at once, in either order.
            first, second = (a, b) if i % 2 else (b, a)
            tries.append(first.claims.claim(key, key.upper(), 100.0 + i))
            tries.append(second.claims.claim(key, key.title(), 100.0 + i))
        results = await gatherResults(tries)
        for i, key in enumerate(keys):
            first_won, second_won = results[2 * i], results[2 * i + 1]
            assert first_won != second_won, key
            winner = (a, b) if i % 2 else (b, a)
            expected = winner[0] if first_won else winner[1]
            held = record(redis, key)
            assert held is not None
            assert held["node"] == expected.id
            assert held["at"] == 100.0 + i
        won_a, won_b = members(redis, "node-a"), members(redis, "node-b")
        assert won_a | won_b == set(keys)
        assert not won_a & won_b
        assert await a.claims.holder(keys[0]) in {"node-a", "node-b"}
        assert await a.claims.holder("nobody") is None
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_claim_again_by_the_holder_updates_it(redis: RedisServer) -> None:
    a = await Node(redis, "node-a").start()
    b = await Node(redis, "node-b").start()
    try:
        assert await a.claims.claim("alice", "alice", 1.5)
        assert await a.claims.claim("alice", "Alice", 1.5)
        assert record(redis, "alice") == {"node": "node-a", "nick": "Alice", "at": 1.5}
        assert not await b.claims.claim("alice", "ALICE", 0.5)
        assert record(redis, "alice") == {"node": "node-a", "nick": "Alice", "at": 1.5}
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_release_only_by_the_holder(redis: RedisServer) -> None:
    a = await Node(redis, "node-a").start()
    b = await Node(redis, "node-b").start()
    try:
        assert await a.claims.claim("alice", "alice", 1.0)
        b.claims.release("alice")
        # Proven handled: B's next command runs after B's release.
        assert await b.link.call("PING") == "PONG"
        assert record(redis, "alice") is not None
        a.claims.release("alice")
        assert await a.link.call("PING") == "PONG"
        assert record(redis, "alice") is None
        assert members(redis, "node-a") == set()
        assert await b.claims.claim("alice", "Alice", 2.0)
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_reclaim_the_earlier_claim_keeps_the_name(redis: RedisServer) -> None:
    a = await Node(redis, "node-a").start()
    b = await Node(redis, "node-b").start()
    try:
        # Free: ours. Ours already: still ours.
        assert await a.claims.reclaim("free", "free", 5.0) is None
        assert await a.claims.reclaim("free", "Free", 5.0) is None
        assert record(redis, "free") == {"node": "node-a", "nick": "Free", "at": 5.0}
        # B holds it since earlier: B keeps it, A is told who.
        assert await b.claims.claim("early", "early", 1.0)
        assert await a.claims.reclaim("early", "early", 2.0) == "node-b"
        assert record(redis, "early") == {"node": "node-b", "nick": "early", "at": 1.0}
        # B holds it since later: A takes it over, B is told.
        assert await b.claims.claim("late", "late", 9.0)
        assert await a.claims.reclaim("late", "Late", 3.0) is None
        assert record(redis, "late") == {"node": "node-a", "nick": "Late", "at": 3.0}
        assert "late" not in members(redis, "node-b")
        assert "late" in members(redis, "node-a")
        await until(lambda: b.messages == [{"kind": "nick-lost", "key": "late"}])
        assert a.messages == []
        # A tie: the smaller node id wins, whoever asks.
        assert await b.claims.claim("tie", "tie", 4.0)
        assert await a.claims.reclaim("tie", "tie", 4.0) is None
        assert await b.claims.reclaim("tie", "tie", 4.0) == "node-a"
        await until(lambda: len(b.messages) == 2)
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_free_node_frees_only_the_dead_nodes_claims(redis: RedisServer) -> None:
    a = await Node(redis, "node-a").start()
    b = await Node(redis, "node-b").start()
    try:
        for key in ("x", "y", "z"):
            assert await a.claims.claim(key, key, 1.0)
        assert await b.claims.claim("w", "w", 1.0)
        # A stale member: "z" was taken over by B but is still in A's set.
        await b.link.call("SET", "tc:nick:z", json.dumps({"node": "node-b", "at": 0}))
        assert await free_node(b.link, "node-a") == 2
        assert record(redis, "x") is None
        assert record(redis, "y") is None
        assert record(redis, "z") == {"node": "node-b", "at": 0}
        assert record(redis, "w") is not None
        assert redis.cli("EXISTS", "tc:nicks:node-a") == "0"
        assert await free_node(b.link, "node-a") == 0
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_prune_releases_all_but_the_kept(redis: RedisServer) -> None:
    a = await Node(redis, "node-a").start()
    try:
        for key in ("p", "q", "r"):
            assert await a.claims.claim(key, key, 1.0)
        assert await a.claims.prune(["q"]) == 2
        assert members(redis, "node-a") == {"q"}
        assert record(redis, "q") is not None
        assert record(redis, "p") is None
        assert await a.claims.prune(["q"]) == 0
    finally:
        await a.stop()


@pytest_twisted.ensureDeferred
async def test_down_claims_fail_at_once_release_is_silent() -> None:
    with redis_server() as redis:
        a = await Node(redis, "node-a").start()
        redis.stop()
        await until(lambda: not a.link.up)
        try:
            claimed = a.claims.claim("alice", "alice", 1.0)
            assert claimed.called
            with pytest.raises(LinkDown):
                await claimed
            with pytest.raises(LinkDown):
                await a.claims.reclaim("alice", "alice", 1.0)
            a.claims.release("alice")  # no error, nothing logged
        finally:
            await a.stop()
