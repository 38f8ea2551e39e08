"""Room history and topics shared by every node through Redis (issue 19).

A person joining a room on any node must see what was said there on all
of them, and a node started later must see what was said before it ran.
`ClusterHistory` is the `IHistoryStore` of a clustered node:

- reads (`recent`, `topic`) come from a `MemoryStore` cache, so a join
  never waits for Redis;
- what this node's rooms said (`append_lines`: one call per room per
  reactor turn) goes to the cache and, in ONE Lua script call, to the
  room's stream ``tc:hist:<room key>``: an entry per message (fields ``t``
  epoch seconds, ``r`` the room's display name, ``d`` the line's bytes),
  trimmed ``MAXLEN ~ history_max``;
- what other nodes' rooms said reaches the cache through the mirror
  (`remote_lines`), never written again;
- `load` reads the last entries of every stream (SCAN, XREVRANGE) and the
  topics (``tc:topic:<room key>``, JSON of `StoredTopic`) into the cache,
  at start and after each reconnect.  What was appended while a load was
  in flight is kept on top of what it read, once.

While Redis is down the chat goes on: the cache keeps this node's
history, `trouble` says so, and the lines (up to `MAX_UNSAVED` turns) and
topics are written when Redis is back, before the next load reads.
Nothing here raises into the core.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import attrs
from twisted.internet.defer import Deferred, DeferredList, succeed
from zope.interface import implementer

from twisted_chat.cluster.replica import all_replies, reason_of, scan, text_of
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.records import StoredTopic
from twisted_chat.core.store import MAX_RECENT
from twisted_chat.history.memory import IHistoryStore, MemoryStore, Tail
from twisted_chat.history.schema import age_cutoff
from twisted_chat.history.wire import Turn

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from twisted.python.failure import Failure

    from twisted_chat.cluster.replica import RedisCommands
    from twisted_chat.core.records import StoredMessage

__all__ = ["HISTORY_PREFIX", "MAX_UNSAVED", "TOPIC_PREFIX", "TROUBLE", "ClusterHistory"]

HISTORY_PREFIX: Final = "tc:hist:"
TOPIC_PREFIX: Final = "tc:topic:"
#: What `trouble` says while Redis cannot be reached.
TROUBLE: Final = "cluster store unreachable; history of this node is kept in memory"
#: The most turns kept to write once Redis is back; older ones are dropped.
MAX_UNSAVED: Final = 10_000
#: Streams read per round of XREVRANGEs, topics per MGET.
READ_BATCH: Final = 100
MGET_BATCH: Final = 1000

#: A turn's lines as stream entries, in one call. KEYS: the stream. ARGV:
#: MAXLEN (0: no trim), t, r, then one line per entry.
APPEND: Final = """
local maxlen = tonumber(ARGV[1])
for i = 4, #ARGV do
  local t, r, d = ARGV[2], ARGV[3], ARGV[i]
  if maxlen > 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 't', t, 'r', r, 'd', d)
  else
    redis.call('XADD', KEYS[1], '*', 't', t, 'r', r, 'd', d)
  end
end
return #ARGV - 3
"""

#: Seconds between a line's time in a stream and its time here for it to
#: be the same line: the mirror stamps remote lines when they arrive.
SAME_TURN: Final = 5.0
#: A topic's JSON object's fields, as `StoredTopic` orders them.
TOPIC_FIELDS: Final = ("room_key", "room", "text", "set_by", "set_at")
#: (room key, room, at, data) of one turn.
_Said = tuple[str, str, float, bytes]


def turn_lines(data: bytes) -> list[bytes]:
    """A turn's lines, each with its CRLF (as `lines.parse_room_lines` splits)."""
    parts = data.split(b"\r\n")
    found = [part + b"\r\n" for part in parts[:-1]]
    if parts[-1]:
        found.append(parts[-1])
    return found


def entry_turns(room_key: str, entries: Iterable[Any]) -> list[Turn]:
    """XREVRANGE's entries (newest first) as turns, oldest first.

    Consecutive entries of one ``t`` and ``r`` are one turn again.
    """
    turns: list[Turn] = []
    for entry in reversed(list(entries)):
        fields = entry[1]
        values = {
            text_of(fields[i]): fields[i + 1] for i in range(0, len(fields) - 1, 2)
        }
        raw = values.get("d")
        data = raw if isinstance(raw, bytes) else text_of(raw).encode("utf-8")
        room, at = text_of(values.get("r")), float(text_of(values.get("t")) or 0)
        last = turns[-1] if turns else None
        if last is not None and last.at == at and last.room == room:
            turns[-1] = last._replace(
                data=last.data + data, line_count=last.line_count + 1
            )
        else:
            turns.append(Turn(0, room_key, room, at, data, 1))
    return turns


@implementer(IHistoryStore)
class ClusterHistory:
    """`IHistoryStore` over a `MemoryStore` cache and Redis streams (module).

    :param link: the node's `RedisLink` (only ``up``, ``call``, ``script``).
    :param memory: the cache every read is answered from; its
        ``max_per_room`` and ``max_age_days`` are the retention.
    :param history_max: each stream's MAXLEN (``--history-max``; 0: none).
    :param seconds: the clock (epoch seconds): a load leaves out what is
        older than the cache's ``max_age_days`` (not pruned from Redis yet).
    """

    _log = RateLimitedLogger()

    def __init__(
        self,
        link: RedisCommands,
        memory: MemoryStore,
        history_max: int,
        seconds: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.memory = memory
        self.history_max = history_max
        self.seconds = seconds
        self._stopped = False
        self._flying: set[Deferred[Any]] = set()
        self._unsaved: deque[_Said] = deque()
        self._unsaved_topics: dict[str, StoredTopic] = {}
        self.dropped = 0
        #: While a load runs: what was said and set meanwhile, by room.
        self._during: dict[str, list[_Said]] | None = None
        self._topics_during: dict[str, StoredTopic] = {}
        self._loads: list[Deferred[bool]] = []

    # -- IHistoryStore -------------------------------------------------------

    def start(self) -> None:
        """Nothing to start: `load` is the mirror's to call once the link is up."""

    def stop(self) -> Deferred[None]:
        """Ignore further changes; fires once the writes in flight are answered."""
        if self._unsaved and not self._stopped:
            self._log.warn(
                "history: {count} turns said while the cluster store was"
                " unreachable were never written to it",
                count=len(self._unsaved),
            )
        self._stopped = True
        return self.flush()

    def flush(self) -> Deferred[None]:
        """Fires once the writes sent before this call are answered."""
        if not self._flying:
            return succeed(None)
        waiting = DeferredList(list(self._flying), consumeErrors=True)
        return waiting.addCallback(lambda _: None)

    def append_lines(self, room_key: str, room: str, at: float, data: bytes) -> None:
        """`IMessageStore` API: the cache now, the stream in one call."""
        if self._stopped:
            self._log.warn("history: lines for {room} after stop ignored", room=room)
            return
        try:
            self._remember(room_key, room, at, data)
            self._send((room_key, room, at, data))
        except Exception:
            self._log.failure("history: lines for {room} not kept", room=room)

    def remote_lines(self, room_key: str, room: str, at: float, data: bytes) -> None:
        """What another node's room said (the mirror): the cache only."""
        try:
            self._remember(room_key, room, at, data)
        except Exception:
            self._log.failure(
                "history: lines from another node for {room} not kept", room=room
            )

    def recent(self, room_key: str, limit: int) -> list[StoredMessage]:
        """`IMessageStore` API, from the cache."""
        return self.memory.recent(room_key, limit)

    def set_topic(self, topic: StoredTopic) -> None:
        """`IMessageStore` API: the cache now, ``tc:topic:<key>`` in one SET."""
        if self._stopped:
            return
        self.remote_topic(topic)
        self._send_topic(topic)

    def remote_topic(self, topic: StoredTopic) -> None:
        """A topic another node set (the mirror): the cache only."""
        self.memory.set_topic(topic)
        if self._during is not None:
            self._topics_during[topic.room_key] = topic

    def topic(self, room_key: str) -> StoredTopic | None:
        """`IMessageStore` API, from the cache (filled by `load`)."""
        return self.memory.topic(room_key)

    def backlog(self) -> int:
        """Turns waiting for Redis: in flight, or kept until it is back."""
        return len(self._flying) + len(self._unsaved)

    def trouble(self) -> str | None:
        """`TROUBLE` while the link is down."""
        return None if self.link.up else TROUBLE

    def prune(self, now: float) -> None:
        """The cache at once; in Redis, each stream's entries past the age."""
        self.memory.prune(now)
        cutoff = age_cutoff(now, self.memory.max_age_days)
        if cutoff is None or not self.link.up:
            return
        minid = f"{max(int(cutoff * 1000), 0)}-0"

        def trim(keys: list[str]) -> None:
            for key in keys:
                trimmed = self.link.call("XTRIM", key, "MINID", minid)
                self._track(trimmed).addErrback(failed)

        def failed(failure: Failure) -> None:
            self._log.warn("history: not pruned: {reason}", reason=reason_of(failure))

        scan(self.link, f"{HISTORY_PREFIX}*").addCallbacks(trim, failed)

    # -- writes -------------------------------------------------------------

    def _remember(self, room_key: str, room: str, at: float, data: bytes) -> None:
        self.memory.append_lines(room_key, room, at, data)
        if self._during is not None:
            self._during.setdefault(room_key, []).append((room_key, room, at, data))

    def _track(self, d: Deferred[Any]) -> Deferred[Any]:
        self._flying.add(d)

        def landed(result: object) -> object:
            self._flying.discard(d)
            return result

        return d.addBoth(landed)

    def _send(self, said: _Said) -> None:
        if not self.link.up:
            self._keep(said)
            return
        room_key, room, at, data = said
        args: list[object] = [str(self.history_max), repr(at), room, *turn_lines(data)]
        d = self.link.script(APPEND, [HISTORY_PREFIX + room_key], args)
        self._track(d).addErrback(self._not_sent, said)

    def _not_sent(self, failure: Failure, said: _Said) -> None:
        self._log.warn(
            "history: not written to the cluster store ({reason}); kept to write later",
            reason=reason_of(failure),
        )
        self._keep(said)

    def _keep(self, said: _Said) -> None:
        self._unsaved.append(said)
        if len(self._unsaved) > MAX_UNSAVED:
            self._unsaved.popleft()
            self.dropped += 1
            self._log.warn(
                "history: more than {most} turns wait for the cluster store;"
                " the oldest are not written ({dropped} so far)",
                most=MAX_UNSAVED,
                dropped=self.dropped,
            )

    def _send_topic(self, topic: StoredTopic) -> None:
        if not self.link.up:
            self._unsaved_topics[topic.room_key] = topic
            return
        value = json.dumps(attrs.asdict(topic), ensure_ascii=False)

        def not_sent(failure: Failure) -> None:
            self._log.warn("history: topic not written ({e})", e=reason_of(failure))
            self._unsaved_topics.setdefault(topic.room_key, topic)

        sent = self.link.call("SET", TOPIC_PREFIX + topic.room_key, value)
        self._track(sent).addErrback(not_sent)

    def _send_unsaved(self) -> Deferred[None]:
        """Write what waited for Redis, in order; fires once it is answered."""
        unsaved, self._unsaved = self._unsaved, deque()
        topics, self._unsaved_topics = self._unsaved_topics, {}
        for said in unsaved:
            self._send(said)
        for topic in topics.values():
            self._send_topic(topic)
        return self.flush()

    # -- loads --------------------------------------------------------------

    def load(self, room_keys: Sequence[str] | None = None) -> Deferred[bool]:
        """Fill the cache from Redis (every stream, or ``room_keys``'s).

        At start and after each reconnect (the mirror's ``on_up``). A room
        with a stream gets what the stream holds, plus what was said while
        the load ran; a room without one keeps its cache. The topics are
        read too. True when done, False (logged) when Redis failed; a
        load asked for while one runs shares it.
        """
        d: Deferred[bool] = Deferred()
        self._loads.append(d)
        if self._during is None:
            self._during, self._topics_during = {}, {}
            work = Deferred.fromCoroutine(self._load(room_keys))
            work.addCallbacks(lambda _: self._end_load(True), self._load_failed)
        return d

    async def _load(self, room_keys: Sequence[str] | None) -> None:
        await self._send_unsaved()
        if room_keys is None:
            streams = await scan(self.link, f"{HISTORY_PREFIX}*")
        else:
            streams = [HISTORY_PREFIX + key for key in room_keys]
        count = min(self.memory.max_per_room or MAX_RECENT, MAX_RECENT)
        for start in range(0, len(streams), READ_BATCH):
            batch = streams[start : start + READ_BATCH]
            reads = [
                self.link.call("XREVRANGE", key, "+", "-", "COUNT", count)
                for key in batch
            ]
            replies = await all_replies(reads)
            for key, entries in zip(batch, replies, strict=True):
                if entries:
                    self._replace(key[len(HISTORY_PREFIX) :], entries)
        topics = await scan(self.link, f"{TOPIC_PREFIX}*")
        for start in range(0, len(topics), MGET_BATCH):
            values = await self.link.call("MGET", *topics[start : start + MGET_BATCH])
            for raw in values or []:
                if raw is not None:
                    self._load_topic(text_of(raw))

    def _replace(self, room_key: str, entries: list[Any]) -> None:
        """The room's cache as its stream holds it, then what came meanwhile."""
        turns = entry_turns(room_key, entries)
        cutoff = age_cutoff(self.seconds(), self.memory.max_age_days)
        if cutoff is not None:
            turns = [turn for turn in turns if turn.at >= cutoff]
        seen: dict[bytes, list[float]] = {}
        for turn in turns:
            for line in turn_lines(turn.data):
                seen.setdefault(line, []).append(turn.at)
        during = self._during.get(room_key, []) if self._during is not None else []
        for _, room, at, data in during:
            times = seen.get(turn_lines(data)[0] if data else b"", [])
            if not any(abs(at - then) <= SAME_TURN for then in times):
                turns.append(Turn(0, room_key, room, at, data, data.count(b"\n")))
        # The cache's own tails: MemoryStore keeps them by room key.
        self.memory._rooms[room_key] = Tail(self.memory.max_per_room or None, turns)

    def _load_topic(self, text: str) -> None:
        try:
            data = json.loads(text)
            key, room, text, by = (str(data[name]) for name in TOPIC_FIELDS[:4])
            topic = StoredTopic(key, room, text, by, float(data["set_at"]))
        except (ValueError, KeyError, TypeError) as e:
            self._log.warn("history: a stored topic skipped: {e}", e=str(e))
            return
        if topic.room_key not in self._topics_during:
            self.memory.set_topic(topic)

    def _load_failed(self, failure: Failure) -> None:
        self._log.warn(
            "history: not read from the cluster store: {reason}",
            reason=reason_of(failure),
        )
        self._end_load(False)

    def _end_load(self, ok: bool) -> None:
        self._during, self._topics_during = None, {}
        loads, self._loads = self._loads, []
        for d in loads:
            d.callback(ok)
