"""A node's lease, and the reaping of nodes whose lease ran out (issue 19).

Why leases: a node killed with SIGKILL (or cut off from Redis) says nothing,
yet the others must see its users quit and its nicknames freed. Each node
keeps ``tc:node:<id>`` alive (``SET ... PX ttl``, renewed every ``refresh``
seconds) and its expiry in the ZSET ``tc:nodes``; every node's reaper looks
every ``reap_every`` seconds for entries past their expiry whose lease key
is gone, and cleans each up: its claims (`nick_claims.FREE_NODE_LUA`), its
set, its ZSET entry, then PUBLISHes ``{"kind": "node-dead", "node": id}`` on
``tc:control``. All in one Lua script, so with every node reaping, each
death is published exactly once; the mirrors (the reaper's too) react to
that message. Times are Redis's own (``TIME``), so the nodes' clocks do
not have to agree.

After an outage every lease may have run out meanwhile: the node calls
`NodeLease.renew_now` on ``on_up``, which also holds its reaper back for one
``ttl`` so the other nodes get the time to renew theirs first. A reaper never
reaps its own node; if the others did (this node was cut off longer than
``ttl``), the node sees ``node-dead`` with its own id on ``tc:control``, and
`renew` logs it: the mirror then claims its users' nicknames again.

`NodeLease.stop` is a clean leave: the same clean-up as a reaper's, at once
(so stop the lease before the link).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from twisted_chat.cluster.link import LinkDown, RedisLink
from twisted_chat.cluster.nick_claims import (
    FREE_NODE_LUA,
    NICK_PREFIX,
    NICK_SET_PREFIX,
)
from twisted_chat.core.logs import RateLimitedLogger

__all__ = ["CONTROL_CHANNEL", "LEASE_PREFIX", "NODES", "NodeLease"]

LEASE_PREFIX = "tc:node:"
NODES = "tc:nodes"
CONTROL_CHANNEL = "tc:control"

#: Rate-limited: a Redis refusing every write would log each renewal.
_log = RateLimitedLogger()

_NOW_MS = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
"""

# KEYS: our lease, the ZSET. ARGV: ttl ms, lease value, node.
# -> 1 when the ZSET had no entry for us (first renewal, or reaped), else 0.
_RENEW = (
    _NOW_MS
    + """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
return redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[3])
"""
)

_BURY = """
local function bury(node)
  free_node(node, ARGV[3] .. node, ARGV[4])
  redis.call('DEL', ARGV[2] .. node)
  redis.call('ZREM', KEYS[1], node)
  redis.call('PUBLISH', ARGV[5], cjson.encode({kind = 'node-dead', node = node}))
end
"""

# KEYS: the ZSET. ARGV: our node, lease prefix, set prefix, claim prefix,
# control channel. -> the nodes reaped.
_REAP = (
    FREE_NODE_LUA
    + _BURY
    + _NOW_MS
    + """
local reaped = {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  if node ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. node) == 0 then
    bury(node)
    table.insert(reaped, node)
  end
end
return reaped
"""
)

# Same KEYS and ARGV as _REAP: our own clean leave.
_LEAVE = FREE_NODE_LUA + _BURY + "bury(ARGV[1])\nreturn 1\n"


class NodeLease:
    """This node's lease and its reaper of dead nodes (see the module)."""

    def __init__(  # noqa: PLR0917 - the plan's interface
        self,
        link: RedisLink,
        clock: IReactorTime,
        node_id: str,
        on_dead: Callable[[str], None],
        ttl: float = 10.0,
        refresh: float = 3.0,
        reap_every: float = 2.5,
    ) -> None:
        self.link = link
        self.clock = clock
        self.node_id = node_id
        #: Not called by the lease: every node learns of a death from the
        #: ``node-dead`` message, once (kept for the daemon's wiring).
        self.on_dead = on_dead
        self.ttl = ttl
        self.refresh = refresh
        self.reap_every = reap_every
        self._renewer = LoopingCall(self.renew)
        self._renewer.clock = clock
        self._reaper = LoopingCall(self.reap)
        self._reaper.clock = clock
        self._renewed = False
        self._stopped = False
        self._no_reap_until = 0.0
        self._value = json.dumps({"node": node_id, "started": clock.seconds()})

    @property
    def _lease_key(self) -> str:
        return LEASE_PREFIX + self.node_id

    def _args(self) -> list[object]:
        return [
            self.node_id,
            LEASE_PREFIX,
            NICK_SET_PREFIX,
            NICK_PREFIX,
            CONTROL_CHANNEL,
        ]

    def start(self) -> Deferred[None]:
        """Renew now and every ``refresh`` s, reap every ``reap_every`` s.

        Fires when the first renewal is done (or failed: Redis may be down).
        """
        first: Deferred[None] = self.renew()
        self._renewer.start(self.refresh, now=False)
        self._reaper.start(self.reap_every, now=False)
        return first

    def renew_now(self) -> Deferred[None]:
        """Renew at once (after ``on_up``) and hold the reaper back one ttl."""
        self._no_reap_until = self.clock.seconds() + self.ttl
        return self.renew()

    def renew(self) -> Deferred[None]:
        """Set the lease and its ZSET entry; never fails (logged instead).

        Nothing once stopped: our own ``node-dead`` may still come in, and
        must not bring the lease back.
        """
        if self._stopped:
            return succeed(None)
        keys = [self._lease_key, NODES]
        args = [round(self.ttl * 1000), self._value, self.node_id]
        return (
            self.link.script(_RENEW, keys, args)
            .addCallback(self._renewal)
            .addErrback(_logged, "lease renewal")
        )

    def _renewal(self, added: Any) -> None:
        if added == 1 and self._renewed:
            _log.warn(
                "cluster node {node} was taken for dead (its lease ran out); "
                "it is back",
                node=self.node_id,
            )
        self._renewed = True

    def reap(self) -> Deferred[list[str]]:
        """Clean up after nodes whose lease ran out; the ids reaped."""
        held_back = self.clock.seconds() < self._no_reap_until
        if self._stopped or held_back or not self.link.up:
            return succeed([])
        return (
            self.link.script(_REAP, [NODES], self._args())
            .addCallback(self._reaped)
            .addErrback(_logged, "reaping", [])
        )

    def _reaped(self, nodes: Any) -> list[str]:
        reaped = [node.decode() for node in nodes or ()]
        for node in reaped:
            _log.info("cluster node {node} is dead (its lease ran out)", node=node)
        return reaped

    def stop(self) -> Deferred[None]:
        """Leave: stop renewing and reaping, free our claims, say node-dead.

        Fires when done, or at once when Redis is down (the lease then runs
        out and another node's reaper does the same).
        """
        self._stopped = True
        for loop in (self._renewer, self._reaper):
            if loop.running:
                loop.stop()
        return (
            self.link.script(_LEAVE, [NODES], self._args())
            .addCallback(lambda _: None)
            .addErrback(_logged, "leaving")
        )


def _logged(failure: Failure, what: str, result: Any = None) -> Any:
    """The failure of a background step: logged (not when down), then ``result``."""
    if not failure.check(LinkDown):
        _log.failure("cluster {what} failed", failure, what=what)
    return result
