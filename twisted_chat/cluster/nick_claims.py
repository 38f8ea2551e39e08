"""One nickname, one node: nickname claims in Redis (issue 19).

Why Lua: a claim reads who holds the name and writes ours in one step, and
Redis runs a script alone, so two nodes claiming ``alice`` at the same
moment get exactly one ``True``. Every key a node holds is also in its set
``tc:nicks:<node>``, so a dead node's names can be freed without a SCAN
(`free_node`, run by the reaper in `twisted_chat.cluster.lease`).

Records: ``tc:nick:<key>`` is JSON ``{"node": id, "nick": display, "at": t}``
where ``at`` is when the user took the name (epoch seconds). After an
outage each node ran alone and may have given the same name to a user of
its own; `NickClaims.reclaim` settles it: the earlier ``at`` keeps it (on
a tie the smaller node id), and the loser is told on ``tc:to:<loser>`` with
``{"kind": "nick-lost", "key": key}`` so it renames its user.

While Redis is down the Deferreds fail with `LinkDown` at once: the caller
runs alone then (and reclaims after ``on_up``); `release` is silent.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twisted_chat.cluster.link import LinkDown, RedisLink
from twisted_chat.core.logs import RateLimitedLogger

__all__ = [
    "FREE_NODE_LUA",
    "NICK_PREFIX",
    "NICK_SET_PREFIX",
    "TO_PREFIX",
    "NickClaims",
    "free_node",
    "nick_key",
    "nick_set",
]

NICK_PREFIX = "tc:nick:"
NICK_SET_PREFIX = "tc:nicks:"
#: The channel of messages to one node (``tc:to:<node>``).
TO_PREFIX = "tc:to:"

#: Rate-limited: a Redis refusing every write would log each release.
_log = RateLimitedLogger()


def nick_key(key: str) -> str:
    """The Redis key of one nickname's claim."""
    return NICK_PREFIX + key


def nick_set(node: str) -> str:
    """The Redis key of the set of nickname keys ``node`` holds."""
    return NICK_SET_PREFIX + node


# KEYS: claim, our set. ARGV: node, record, key. -> 1 (ours now) or 0.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, held = pcall(cjson.decode, current)
  if not ok or type(held) ~= 'table' or held.node ~= ARGV[1] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""

# KEYS: claim, our set. ARGV: node, key. -> 1 (deleted) or 0 (not ours).
_RELEASE = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SREM', KEYS[2], ARGV[2])
  return 0
end
local ok, held = pcall(cjson.decode, current)
if ok and type(held) == 'table' and held.node == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
redis.call('SREM', KEYS[2], ARGV[2])
return 0
"""

# KEYS: claim, our set. ARGV: node, record, key, at, set prefix, to-node prefix.
# -> "" when ours now, else the holder's node id (it claimed earlier).
_RECLAIM = """
local current = redis.call('GET', KEYS[1])
local loser = nil
if current then
  local ok, held = pcall(cjson.decode, current)
  if ok and type(held) == 'table' and type(held.node) == 'string'
      and held.node ~= ARGV[1] then
    local theirs = tonumber(held.at) or 0
    local ours = tonumber(ARGV[4])
    if theirs < ours or (theirs == ours and held.node < ARGV[1]) then
      return held.node
    end
    loser = held.node
  end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if loser then
  redis.call('SREM', ARGV[5] .. loser, ARGV[3])
  redis.call('PUBLISH', ARGV[6] .. loser,
    cjson.encode({kind = 'nick-lost', key = ARGV[3]}))
end
return ''
"""

#: A Lua function, shared with the reaper's script in `lease`: deletes each
#: claim the dead node still holds (a key in its set may have been taken over
#: since), then its set; returns how many were deleted.
FREE_NODE_LUA = """
local function free_node(dead, set_key, claim_prefix)
  local freed = 0
  for _, key in ipairs(redis.call('SMEMBERS', set_key)) do
    local name = claim_prefix .. key
    local current = redis.call('GET', name)
    if current then
      local ok, held = pcall(cjson.decode, current)
      if ok and type(held) == 'table' and held.node == dead then
        redis.call('DEL', name)
        freed = freed + 1
      end
    end
  end
  redis.call('DEL', set_key)
  return freed
end
"""

# KEYS: the dead node's set. ARGV: dead node, claim prefix. -> how many.
_FREE_NODE = FREE_NODE_LUA + "return free_node(ARGV[1], KEYS[1], ARGV[2])\n"

# KEYS: our set. ARGV: node, claim prefix, then the keys to keep.
# Releases every other claim we hold; -> how many.
_PRUNE = """
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local freed = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not keep[key] then
    local name = ARGV[2] .. key
    local current = redis.call('GET', name)
    if current then
      local ok, held = pcall(cjson.decode, current)
      if ok and type(held) == 'table' and held.node == ARGV[1] then
        redis.call('DEL', name)
        freed = freed + 1
      end
    end
    redis.call('SREM', KEYS[1], key)
  end
end
return freed
"""


def free_node(link: RedisLink, dead: str) -> Deferred[int]:
    """Delete the claims a dead node still holds, and its set; how many."""
    return link.script(_FREE_NODE, [nick_set(dead)], [dead, NICK_PREFIX]).addCallback(
        int
    )


class NickClaims:
    """This node's nickname claims (see the module)."""

    def __init__(self, link: RedisLink, node_id: str) -> None:
        self.link = link
        self.node_id = node_id

    def _record(self, display: str, at: float) -> str:
        return json.dumps({"node": self.node_id, "nick": display, "at": at})

    def claim(self, key: str, display: str, at: float) -> Deferred[bool]:
        """Take ``key`` if nobody holds it (or we do); True when ours now.

        Fails with `LinkDown` while Redis is down (the caller runs alone).
        """
        keys = [nick_key(key), nick_set(self.node_id)]
        args = [self.node_id, self._record(display, at), key]
        return self.link.script(_CLAIM, keys, args).addCallback(lambda won: won == 1)

    def release(self, key: str) -> None:
        """Give ``key`` up if we hold it; fire and forget, silent when down.

        A release lost to an outage is made up by `prune` after ``on_up``.
        """
        keys = [nick_key(key), nick_set(self.node_id)]
        if not self.link.up:
            return
        self.link.script(_RELEASE, keys, [self.node_id, key]).addErrback(
            _ignored, "release"
        )

    def reclaim(self, key: str, display: str, at: float) -> Deferred[str | None]:
        """Claim ``key`` again after an outage; None when ours now.

        Otherwise the holder's node id: it took the name earlier, and the
        caller renames its own user. When ours is the earlier claim we take
        the name over and the script tells the loser (``nick-lost``).
        """
        keys = [nick_key(key), nick_set(self.node_id)]
        record = self._record(display, at)
        args = [self.node_id, record, key, repr(at), NICK_SET_PREFIX, TO_PREFIX]
        return self.link.script(_RECLAIM, keys, args).addCallback(_holder)

    def prune(self, keep: Collection[str]) -> Deferred[int]:
        """Release every claim we hold but ``keep``; how many were released.

        After an outage: users that left meanwhile leave claims behind.
        """
        args = [self.node_id, NICK_PREFIX, *keep]
        return self.link.script(_PRUNE, [nick_set(self.node_id)], args).addCallback(int)

    def holder(self, key: str) -> Deferred[str | None]:
        """The node id holding ``key``, or None."""
        return self.link.call("GET", nick_key(key)).addCallback(_node_of)


def _holder(reply: Any) -> str | None:
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return text or None


def _node_of(reply: bytes | None) -> str | None:
    if reply is None:
        return None
    try:
        node = json.loads(reply)["node"]
    except (ValueError, KeyError, TypeError):
        return None
    return node if isinstance(node, str) else None


def _ignored(failure: Failure, what: str) -> None:
    if not failure.check(LinkDown):
        _log.failure("nick {what} failed", failure, what=what)
