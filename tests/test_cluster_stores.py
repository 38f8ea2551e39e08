"""The replicated cluster stores (issue 19) against a real redis-server.

`RedisAccountStore` and `RedisRoomStore` keep everything in memory and
write to Redis; every node applies the announcements on ``tc:control``.
Here: two nodes (each its own `RedisLink`) on one Redis see each other's
writes, a name registered on both at once has one winner, a node started
later loads everything, an outage answers ``done(False)`` and a load
after it catches up, and a missed announcement loads again.

`SyncRedis` (a blocking RESP client over a socket, every reply already
there) is what the contract suites (tests/test_account_store.py,
tests/test_room_store.py) run these stores over, against real Redis,
with a `Clock` for the store's "next turn", as the memory stores are.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast

import pytest
import pytest_twisted
from _redis import RedisServer, until
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime

from twisted_chat.cluster.link import RedisLink
from twisted_chat.cluster.replica import CONTROL
from twisted_chat.cluster.shared_accounts import ACCOUNTS_KEY, RedisAccountStore
from twisted_chat.cluster.shared_rooms import ROOMS_KEY, RedisRoomStore
from twisted_chat.cluster.url import ClusterUrl
from twisted_chat.core.account_ports import Account, Refusal
from twisted_chat.core.names import RoomName, name_key
from twisted_chat.core.room_ports import RegisteredRoom, RoomTopic

HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2VjcmV0c2FsdA$SECRETHASHVALUE"

ensure_deferred = pytest_twisted.ensureDeferred
async_yield_fixture = pytest_twisted.async_yield_fixture


pytestmark = pytest.mark.usefixtures("no_tracebacks")


class RedisError(Exception):
    """Redis answered with an error."""


class SyncRedis:
    """`RedisCommands` over a blocking socket: each Deferred has fired already."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.sock.makefile("rb")
        self.up = True

    def command(self, *args: object) -> Any:
        """Send one command, return its reply (raise RedisError)."""
        parts = [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]
        out = [b"*%d\r\n" % len(parts)]
        out += [b"$%d\r\n%s\r\n" % (len(part), part) for part in parts]
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _reply(self) -> Any:
        line = self.reader.readline()[:-2]
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _ in range(size)]
        raise AssertionError(f"not a RESP reply: {line!r}")

    def call(self, *args: object) -> Deferred[Any]:
        if not self.up:
            return fail(ConnectionError("down"))
        try:
            return succeed(self.command(*args))
        except RedisError as e:
            return fail(e)

    def script(
        self, source: str, keys: Sequence[str], args: Sequence[object]
    ) -> Deferred[Any]:
        return self.call("EVAL", source, len(keys), *keys, *args)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def sync_accounts(
    redis: RedisServer, clock: IReactorTime, **kw: Any
) -> RedisAccountStore:
    """A `RedisAccountStore` over `SyncRedis` (the contract suite's)."""
    return RedisAccountStore(SyncRedis(redis.port), clock, **kw)


def sync_rooms(redis: RedisServer, clock: IReactorTime, **kw: Any) -> RedisRoomStore:
    """A `RedisRoomStore` over `SyncRedis` (the contract suite's)."""
    return RedisRoomStore(SyncRedis(redis.port), clock, **kw)


# -- two nodes, each with its own RedisLink ---------------------------------


class Node:
    """A node's link and stores; control messages routed as the mirror does."""

    def __init__(self, url: str) -> None:
        self.changes: list[tuple[str, str | None]] = []
        self.downs: list[str] = []
        self.link = RedisLink(
            ClusterUrl.parse(url),
            reactor,
            [CONTROL],
            self.route,
            self.on_up,
            self.downs.append,
        )
        r = cast("IReactorTime", reactor)
        self.accounts = RedisAccountStore(self.link, r, on_change=self.changed)
        self.rooms = RedisRoomStore(self.link, r, on_change=self.changed)
        self.ups = 0

    def changed(self, kind: str, key: str | None) -> None:
        self.changes.append((kind, key))

    def route(self, channel: str, data: bytes) -> None:
        assert channel == CONTROL
        message = json.loads(data)
        if message["kind"] in ("accounts", "bans"):
            self.accounts.apply(message)
        elif message["kind"] == "rooms":
            self.rooms.apply(message)

    def on_up(self) -> None:
        self.ups += 1

    async def start(self) -> Node:
        self.link.start()
        await until(lambda: self.link.up)
        assert await self.accounts.load()
        assert await self.rooms.load()
        return self

    async def stop(self) -> None:
        await self.link.stop()


@async_yield_fixture
async def nodes(redis: RedisServer) -> AsyncIterator[Callable[[], Any]]:
    made: list[Node] = []

    async def make() -> Node:
        node = Node(redis.url)
        made.append(node)
        return await node.start()

    yield make
    for node in made:
        await node.stop()


def done_list() -> tuple[list[bool], Callable[[bool], None]]:
    got: list[bool] = []
    return got, got.append


def room(name: str, founder: str = "alice", **kw: Any) -> RegisteredRoom:
    parsed = RoomName.parse(name)
    return RegisteredRoom(parsed.key, parsed.display, name_key(founder), 1.0, **kw)


@ensure_deferred
async def test_an_account_made_on_one_node_is_seen_on_the_other(
    nodes: Callable[[], Any],
) -> None:
    a, b = await nodes(), await nodes()
    got, done = done_list()
    made = a.accounts.create("Alice", HASH, 5.0, done)
    assert isinstance(made, Account)
    await until(lambda: b.accounts.get("alice") == made)
    assert got == [True]
    assert ("accounts", "alice") in b.changes
    b.accounts.record_login("ALICE", 9.0)
    await until(lambda: (a.accounts.get("alice") or made).last_login == 9.0)
    a.accounts.delete("alice")
    await until(lambda: b.accounts.get("alice") is None)
    await a.accounts.settled()
    await b.accounts.settled()
    assert a.accounts.get("alice") is None


@ensure_deferred
async def test_one_name_registered_on_two_nodes_at_once_has_one_winner(
    nodes: Callable[[], Any], redis: RedisServer
) -> None:
    a, b = await nodes(), await nodes()
    got_a, done_a = done_list()
    got_b, done_b = done_list()
    for n in range(20):
        a.accounts.create(f"user{n}", HASH, 1.0, done_a)
        b.accounts.create(f"USER{n}", HASH, 2.0, done_b)
    await until(lambda: len(got_a) + len(got_b) == 40)
    assert sorted(got_a + got_b) == [False] * 20 + [True] * 20
    keys = [name_key(f"user{n}") for n in range(20)]
    for key in keys:
        stored = json.loads(redis.cli("HGET", ACCOUNTS_KEY, key))
        await until(lambda: all(a.accounts.get(k) == b.accounts.get(k) for k in keys))
        winner = a.accounts.get(key)
        assert winner is not None
        assert (winner.name, winner.created_at) == (
            stored["name"],
            stored["created_at"],
        )


@ensure_deferred
async def test_server_bans_saved_on_one_node_hold_on_the_other(
    nodes: Callable[[], Any],
) -> None:
    a, b = await nodes(), await nodes()
    row = {
        "pattern": "203.0.113.7",
        "set_by": "op",
        "reason": "spam",
        "set_at": 1.0,
        "expires_at": None,
    }
    got, done = done_list()
    a.accounts.save_server_bans([row], done)
    await until(lambda: b.accounts.server_bans() == [row])
    assert ("bans", None) in b.changes
    assert got == [True]
    c = await nodes()  # started later: loads them
    assert c.accounts.server_bans() == [row]
    assert ("bans", None) in c.changes  # the load changed them


@ensure_deferred
async def test_registered_rooms_are_shared_and_loaded(
    nodes: Callable[[], Any], redis: RedisServer
) -> None:
    a, b = await nodes(), await nodes()
    rules = {"operators": ["alice"], "settings": {"key": "sésame"}}
    lobby = room("#Lobby", rules=rules)
    got, done = done_list()
    assert a.rooms.register(lobby, done) is lobby
    await until(lambda: b.rooms.get(lobby.key) == lobby)
    topic = RoomTopic("hello", "bob", 3.0)
    b.rooms.update(lobby.key, topic=topic, done=done)
    await until(lambda: (a.rooms.get(lobby.key) or lobby).topic == topic)
    assert got == [True, True]
    assert ("rooms", lobby.key) in a.changes
    c = await nodes()
    assert c.rooms.all() == [a.rooms.get(lobby.key)]
    assert ("rooms", lobby.key) in c.changes  # the load changed it
    assert c.rooms.get(lobby.key).rules == rules
    # The same name registered elsewhere meanwhile: refused, the founder kept.
    taken = room("#taken", founder="carol")
    redis.cli(
        "HSET",
        ROOMS_KEY,
        taken.key,
        '{"key":"#taken","name":"#taken",'
        '"founder":"dave","created_at":1,"topic":null,"rules":{}}',
    )
    got2, done2 = done_list()
    a.rooms.register(taken, done2)
    await until(lambda: got2 == [False])
    await until(lambda: (a.rooms.get(taken.key) or taken).founder == "dave")
    c.rooms.drop(lobby.key)
    await until(
        lambda: a.rooms.get(lobby.key) is None and b.rooms.get(lobby.key) is None
    )


@ensure_deferred
async def test_one_room_registered_on_two_nodes_at_once_has_one_founder(
    nodes: Callable[[], Any],
) -> None:
    a, b = await nodes(), await nodes()
    got_a, done_a = done_list()
    got_b, done_b = done_list()
    for n in range(10):
        a.rooms.register(room(f"#r{n}", founder=f"a{n}"), done_a)
        b.rooms.register(room(f"#R{n}", founder=f"b{n}"), done_b)
    await until(lambda: len(got_a) + len(got_b) == 20)
    assert sorted(got_a + got_b) == [False] * 10 + [True] * 10
    keys = [RoomName.parse(f"#r{n}").key for n in range(10)]
    await until(lambda: all(a.rooms.get(k) == b.rooms.get(k) for k in keys))
    assert all(a.rooms.get(k) is not None for k in keys)


@ensure_deferred
async def test_a_write_while_redis_is_down_fails_and_a_load_catches_up(
    nodes: Callable[[], Any], redis: RedisServer
) -> None:
    a, b = await nodes(), await nodes()
    redis.stop()
    await until(lambda: not a.link.up and not b.link.up)
    got, done = done_list()
    # A new account or room is refused at once: the user must not be told
    # it is made when the nodes would lose it on rejoining.
    assert a.accounts.create("alice", HASH, 1.0, done) is Refusal.CLOSED
    assert a.accounts.get("alice") is None
    assert a.rooms.register(room("#r"), done) is Refusal.CLOSED
    assert got == []
    assert await a.accounts.load() is False
    redis.start()  # empty again: persistence is off
    await until(lambda: a.link.up and b.link.up)
    redis.cli(
        "HSET",
        ACCOUNTS_KEY,
        "zoe",
        json.dumps(
            {
                "key": "zoe",
                "name": "Zoe",
                "password_hash": HASH,
                "created_at": 1.0,
                "last_login": None,
            }
        ),
    )
    assert await b.accounts.load() is True
    assert b.accounts.get("zoe") is not None
    b.accounts.create("bob", HASH, 1.0, done)
    await until(lambda: a.accounts.get("bob") is not None)
    assert got == [True]


@ensure_deferred
async def test_a_missed_announcement_loads_again(
    nodes: Callable[[], Any], redis: RedisServer
) -> None:
    a = await nodes()
    redis.cli(
        "HSET",
        ACCOUNTS_KEY,
        "quiet",
        json.dumps(
            {
                "key": "quiet",
                "name": "quiet",
                "password_hash": HASH,
                "created_at": 1.0,
                "last_login": None,
            }
        ),
    )
    redis.cli("INCRBY", "tc:accounts:v", "5")  # five writes a went without
    a.accounts.create("alice", HASH, 1.0)
    await until(lambda: a.accounts.get("quiet") is not None)
    assert a.accounts.get("alice") is not None
    assert a.accounts._replica.version == 6


def test_a_load_skips_what_it_cannot_read(
    redis: RedisServer, log_events: list[Any]
) -> None:
    from twisted.internet.task import Clock

    redis.cli("HSET", ACCOUNTS_KEY, "bad", "{not json")
    redis.cli("HSET", ACCOUNTS_KEY, "odd", '{"key": "odd"}')
    redis.cli("HSET", ROOMS_KEY, "#bad", '{"key": "#bad", "rules": 3}')
    redis.cli("SET", "tc:serverbans", '[{"pattern": 1}]')
    clock = Clock()
    accounts = sync_accounts(redis, clock)
    rooms = sync_rooms(redis, clock)
    loaded: list[bool] = []
    accounts.load().addCallback(loaded.append)
    rooms.load().addCallback(loaded.append)
    assert loaded == [True, True]
    assert len(accounts) == 0
    assert accounts.server_bans() == []
    assert len(rooms) == 0
    skipped = [e for e in log_events if "skipped" in str(e.get("log_format"))]
    assert len(skipped) == 4


def test_a_load_in_flight_keeps_newer_announcements_and_drops_older(
    redis: RedisServer,
) -> None:
    from twisted.internet.task import Clock

    from twisted_chat.cluster.replica import LOAD
    from twisted_chat.cluster.shared_accounts import ACCOUNTS_VERSION, BANS_KEY

    def account(key: str) -> dict[str, Any]:
        return {
            "key": key,
            "name": key,
            "password_hash": HASH,
            "created_at": 1.0,
            "last_login": None,
        }

    link = SyncRedis(redis.port)
    store = RedisAccountStore(link, Clock())
    redis.cli("SET", "tc:accounts:v", "3")  # the snapshot's version
    held: Deferred[Any] = Deferred()
    store._replica.link = type("Held", (), {"script": lambda *_: held})()
    loaded: list[bool] = []
    store.load().addCallback(loaded.append)
    store.apply({"v": 3, "kind": "accounts", "name": "old", "value": account("old")})
    store.apply({"v": 4, "kind": "accounts", "name": "new", "value": account("new")})
    assert store.get("new") is None  # waits for the load
    held.callback(
        link.command("EVAL", LOAD, 3, ACCOUNTS_VERSION, ACCOUNTS_KEY, BANS_KEY)
    )
    assert loaded == [True]
    assert store.get("new") is not None
    assert store.get("old") is None  # older than the snapshot, which lacks it
    assert store._replica.version == 4
    store.apply({"v": 4, "kind": "accounts", "name": "new", "value": None})
    assert store.get("new") is not None  # seen already: ignored


def test_an_announcement_that_does_not_read_is_logged_and_skipped(
    redis: RedisServer, log_events: list[Any]
) -> None:
    from twisted.internet.task import Clock

    accounts = sync_accounts(redis, Clock())
    rooms = sync_rooms(redis, Clock())
    accounts.apply({"v": 1, "kind": "accounts", "name": "x", "value": {"key": 3}})
    accounts.apply({"v": 2, "kind": "bans", "value": None})
    rooms.apply({"v": 1, "kind": "rooms", "name": "#x", "value": {"rules": 3}})
    accounts.apply({"kind": "accounts", "name": "y"})  # no version
    assert len(accounts) == 0
    assert len(rooms) == 0
    ignored = [e for e in log_events if "ignored" in str(e.get("log_format"))]
    assert len(ignored) == 4
    account = {"key": "y", "name": "Y", "password_hash": HASH, "created_at": 1.0}
    accounts.apply({"v": 3, "kind": "accounts", "name": "y", "value": account})
    assert accounts.get("y") == Account("y", "Y", HASH, 1.0, None)
