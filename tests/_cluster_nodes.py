"""
Three real ``twistd -n chat`` nodes sharing one real redis-server (issue 19).

Why a harness of its own: the cluster's promises (PROTOCOL.md, "Several
daemons as one server") are about separate processes that know each other
only through Redis, so the tests start exactly that: a ``redis-server`` from
``tests/_redis.py`` on a free loopback port with persistence off, and nodes
that are the same :class:`test_accounts_e2e.Chat` daemons the accounts and
operator tests use (free 127.0.0.1 TCP and UDP ports, a state directory and a
log of their own), each given ``--cluster redis://127.0.0.1:PORT/0``. Nodes
share nothing on disk, so whatever one node learns from another came through
Redis.  A test stops what it started: :meth:`Node.kill` is ``kill -9``,
``cluster.redis.stop()``/``start()`` an outage on the same port, and the
fixture kills whatever is left.

Nothing sleeps for luck.  A node "has joined" when users elsewhere can see
it: :meth:`Cluster.wait_formed` puts a probe user on every node into one room
and polls ``/who`` on each until it counts them all.  Other waits poll a
condition with a deadline (:func:`eventually`).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from _redis import RedisServer, redis_server
from conftest import TIMEOUT
from test_accounts_e2e import Chat, Client, operator_hash, password

T = TypeVar("T")

#: The promise for a dead node: its users quit on the others within 15 s.
DEAD_NODE_SECONDS = 15.0
#: The notice a node gives its users, once, when Redis is unreachable.
ALONE = "* The server is running alone for now: "
#: The room the readiness probes meet in.
PROBE_ROOM = "#cluster-ready"
WHO_HEADER = re.compile(r"^\* (\d+) (?:person|people) in (\S+):$")


def eventually(check: Callable[[], T | None], what: str, timeout: float = TIMEOUT) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout} s: {what}")
        time.sleep(0.1)  # polling a condition, bounded by the deadline


def who(client: Client, room: str) -> set[str]:
    """The nicknames ``/who ROOM`` lists, without their ``@``/``+`` badges."""
    lines = client.replies(f"/who {room}")
    names: set[str] = set()
    counted = -1
    for line in lines:
        header = WHO_HEADER.match(line)
        if header:
            counted = int(header.group(1))
            continue
        # A line of names has no space but after its commas: a room event
        # or a notice between the lines of the reply is no such line.
        if (
            counted >= 0
            and line.startswith("* ")
            and " " not in line[2:].replace(", ", ",")
        ):
            names.update(name.lstrip("@+") for name in line[2:].split(", "))
    assert counted == len(names), (counted, lines)
    return names


def _lists(client: Client, room: str, names: set[str]) -> bool:
    return who(client, room) == names


def said(client: Client, pattern: str) -> list[str]:
    """Every line ``client`` has read so far that matches ``pattern``."""
    regex = re.compile(pattern)
    return [line for line in client.lines if regex.search(line)]


class Node(Chat):
    """
    One daemon of the cluster: a :class:`Chat` with its own directory, ports
    and log, started with the cluster's arguments (and the shared config).
    """

    def __init__(self, cluster: Cluster, name: str) -> None:
        home = cluster.tmp / f"node-{name}"
        home.mkdir()
        super().__init__(home)
        self.name = name
        self.cluster = cluster

    def start(self, *args: str) -> Node:
        """Start (or restart) with the cluster's arguments and then ``args``."""
        self.config = self.cluster.config
        super().start(*self.cluster.node_args(), *self.cluster.extra, *args)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __repr__(self) -> str:
        return f"<Node {self.name} tcp={self.port} udp={self.udp_port}>"


class Cluster:
    """Redis and the nodes of one test, and the passwords that must not leak."""

    def __init__(self, tmp: Path, redis: RedisServer, *, clustered: bool) -> None:
        self.tmp = tmp
        self.redis = redis
        #: False only for the harness's own check before ``--cluster`` exists.
        self.clustered = clustered
        self.nodes: dict[str, Node] = {}
        self.config: Path | None = None
        self.secrets: list[str] = []
        #: More arguments for every node started from now on.
        self.extra: tuple[str, ...] = ()
        self._probes = 0

    def node_args(self) -> tuple[str, ...]:
        """What every node gets: the cluster's URL, history in memory."""
        cluster = ("--cluster", self.redis.url) if self.clustered else ()
        return (*cluster, "--history-db", ":memory:")

    def secret(self) -> str:
        """A fresh password that must never leak (see :meth:`check_secrets`)."""
        value = password()
        self.secrets.append(value)
        return value

    def operators(self, *names: str) -> dict[str, str]:
        """
        One config file for every node with an ``[operators]`` table for
        ``names`` (fresh passwords, returned by name); call before starting.
        """
        chosen = {name: self.secret() for name in names}
        table = "".join(
            f'{name} = "{operator_hash(secret)}"\n' for name, secret in chosen.items()
        )
        self.config = self.tmp / "chat.toml"
        self.config.write_text(f"[operators]\n{table}", "utf-8")
        return chosen

    def start(self, *names: str, formed: bool = True) -> list[Node]:
        """Start nodes called ``names``; wait until the live ones see each other."""
        started = [self.add(name) for name in names]
        if formed:
            self.wait_formed()
        return started

    def add(self, name: str, *args: str) -> Node:
        """Start one node with ``args`` of its own (no waiting for the others)."""
        assert name not in self.nodes, name
        node = Node(self, name)
        self.nodes[name] = node
        node.secrets = self.secrets  # one list: Chat.register appends to it
        return node.start(*args)

    @property
    def live(self) -> list[Node]:
        return [node for node in self.nodes.values() if node.running]

    def wait_formed(self, timeout: float = TIMEOUT) -> None:
        """
        Wait until a probe user on every live node is listed by ``/who`` on
        every live node: each node's link to Redis is up and the others hear it.
        Without ``--cluster`` the nodes are independent and there is nothing to
        wait for.
        """
        if not self.clustered:
            return
        nodes = self.live
        probes: list[Client] = []
        for node in nodes:
            self._probes += 1
            probe = node.connect(f"probe{self._probes}")
            probe.say(f"/join {PROBE_ROOM}")
            probe.expect(rf"^\* You joined {PROBE_ROOM}")
            probes.append(probe)
        expected = {f"probe{self._probes - n}" for n in range(len(nodes))}
        for probe, node in zip(probes, nodes, strict=True):
            eventually(
                functools.partial(_lists, probe, PROBE_ROOM, expected),
                f"node {node.name} lists every node's probe in {PROBE_ROOM}",
                timeout,
            )
        for probe in probes:
            probe.say("/quit")
            probe.read_until_closed()
            probe.close()

    def redis_dump(self) -> str:
        """Every key and value in Redis, as redis-cli prints them (for leak checks)."""
        if self.redis.proc is None:
            return ""
        readers = {
            "string": ("GET",),
            "hash": ("HGETALL",),
            "set": ("SMEMBERS",),
            "zset": ("ZRANGE", "0", "-1"),
            "list": ("LRANGE", "0", "-1"),
            "stream": ("XRANGE", "-", "+"),
        }
        out = []
        for key in self.redis.cli("--scan").splitlines():
            kind = self.redis.cli("TYPE", key)
            reader = readers.get(kind)
            if reader:
                out.append(f"{key}: {self.redis.cli(reader[0], key, *reader[1:])}")
        return "\n".join(out)

    def check_secrets(self) -> None:
        """No password may be in Redis, any client's output, log or state file."""
        stored = self.redis_dump()
        for secret in self.secrets:
            assert secret not in stored, "a password is in Redis"
        for node in self.nodes.values():
            node.check_secrets()  # stops the node

    def close(self) -> None:
        for node in self.nodes.values():
            for client in node.clients:
                client.close()
            for udp in node.udp_clients:
                udp.close()
            node.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Redis on a free port and room for nodes; everything killed afterwards."""
    with redis_server() as server:
        world = Cluster(tmp_path, server, clustered=True)
        try:
            yield world
        finally:
            world.close()


__all__ = [
    "ALONE",
    "DEAD_NODE_SECONDS",
    "Cluster",
    "Node",
    "cluster",
    "eventually",
    "said",
    "who",
]
