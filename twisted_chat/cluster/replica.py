"""What the replicated cluster stores share (issue 19): one source of truth.

The accounts, the server bans (`shared_accounts`) and the registered rooms
(`shared_rooms`) live in Redis, and every node keeps all of them in memory,
as the core expects (a look-up never waits). A write is one Lua script
that changes the data, counts the store's version (INCR ``tc:<store>:v``)
and PUBLISHes the new value on ``tc:control``. One script, so the change
and its announcement are atomic: every node sees the announcements in the
order Redis made the changes, and the last one is what Redis holds.

`Replica` applies them in version order: announcements that arrive while
a load (a snapshot with its version, read in one script) is in flight
wait for it, and only those newer than the snapshot are applied; a gap in
the versions (an announcement missed) loads again. It also runs every
write on a later reactor turn, so a ``done`` is never told before the call
that made the change returned, even when Redis refuses at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from twisted.internet.defer import Deferred, DeferredList, fail, succeed

from twisted_chat.core.logs import RateLimitedLogger

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from twisted.internet.interfaces import IReactorTime
    from twisted.python.failure import Failure

__all__ = [
    "CONTROL",
    "LOAD",
    "WRITE_ENTRY",
    "RedisCommands",
    "Replica",
    "Replicated",
    "all_replies",
    "reason_of",
    "scan",
    "text_of",
]

#: Rate-limited: while Redis is down, every write fails and says so.
_log = RateLimitedLogger(namespace="twisted_chat.cluster.stores")

CONTROL: Final = "tc:control"

#: One entry of a replicated HASH changed, counted and announced at once.
#: KEYS: the hash, its version. ARGV: mode (create | update | delete), the
#: field, the value (JSON text), the message's kind and name (a JSON
#: fragment), the channel. Returns 1 when written, 0 when refused (create of
#: a field that exists, update of one that does not): then what Redis holds
#: is announced instead, so every node settles on it. INCR comes first, so a
#: failure writes nothing.
WRITE_ENTRY: Final = """
local v = redis.call('INCR', KEYS[2])
local mode, field, value = ARGV[1], ARGV[2], ARGV[3]
local ok = 1
if mode == 'create' then
  if redis.call('HSETNX', KEYS[1], field, value) == 0 then
    ok = 0
    value = redis.call('HGET', KEYS[1], field)
  end
elseif mode == 'update' then
  if redis.call('HEXISTS', KEYS[1], field) == 0 then
    ok = 0
    value = 'null'
  else
    redis.call('HSET', KEYS[1], field, value)
  end
else
  redis.call('HDEL', KEYS[1], field)
  value = 'null'
end
local said = '{"v":' .. v .. ',' .. ARGV[4] .. ',"value":' .. value .. '}'
redis.call('PUBLISH', ARGV[5], said)
return ok
"""

#: A snapshot with its version, in one step. KEYS: version, hash[, string].
LOAD: Final = """
local found = {redis.call('GET', KEYS[1]) or '0', redis.call('HGETALL', KEYS[2])}
if KEYS[3] then found[3] = redis.call('GET', KEYS[3]) or '' end
return found
"""


class RedisCommands(Protocol):
    """What the cluster stores use of `twisted_chat.cluster.link.RedisLink`."""

    @property
    def up(self) -> bool:
        """Whether Redis answers now."""

    def call(self, *args: object) -> Deferred[Any]:
        """One command; fails (soon) while Redis is down."""

    def script(
        self, source: str, keys: Sequence[str], args: Sequence[object]
    ) -> Deferred[Any]:
        """A Lua script (EVALSHA, loaded once)."""


def text_of(value: object) -> str:
    """A reply as text, whatever the client made of it (bytes, str, a number)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def scan(link: RedisCommands, pattern: str) -> Deferred[list[str]]:
    """Every key matching ``pattern`` (SCAN; a key seen twice is given once)."""

    async def keys() -> list[str]:
        found: dict[str, None] = {}
        cursor = "0"
        while True:
            reply = await link.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            cursor = text_of(reply[0])
            found.update(dict.fromkeys(text_of(key) for key in reply[1]))
            if cursor == "0":
                return list(found)

    return Deferred.fromCoroutine(keys())


async def all_replies(reads: list[Deferred[Any]]) -> list[Any]:
    """Every reply of ``reads`` (sent together), or the first failure."""
    results = await DeferredList(reads, fireOnOneErrback=True, consumeErrors=True)
    return [value for _, value in results]


def reason_of(failure: Failure) -> str:
    """A failed command's reason on one line (no arguments: no secrets)."""
    return " ".join(failure.getErrorMessage().split()) or repr(failure.value)


class Replica:
    """The versioned, replicated part both cluster stores share.

    It counts writes in flight (`settled`), runs each write on a later
    reactor turn (so that ``done`` is never told before the call that made
    the change returned, even when Redis refuses at once), and orders the
    announcements against the loads.
    """

    def __init__(
        self,
        link: RedisCommands,
        reactor: IReactorTime,
        what: str,
        apply_one: Callable[[dict[str, Any]], None],
    ) -> None:
        self.link = link
        self._reactor = reactor
        self.what = what
        self._apply_one = apply_one
        #: The version of the last announcement applied (or snapshot loaded).
        self.version = 0
        #: Announcements waiting for the load in flight; None: no load.
        self._waiting: list[dict[str, Any]] | None = None
        self._loads: list[Deferred[bool]] = []
        self.pending = 0
        self._idle: list[Deferred[None]] = []

    # -- writes ------------------------------------------------------------

    def later(self, job: Callable[[], Deferred[Any]]) -> None:
        """Run ``job`` on the next turn; it is pending until its Deferred fires."""
        self.pending += 1
        self._reactor.callLater(0, self._run, job)

    def _run(self, job: Callable[[], Deferred[Any]]) -> None:
        try:
            d = job()
        except Exception:
            _log.failure("in a {what} write", what=self.what)
            d = succeed(None)
        d.addErrback(lambda f: _log.failure("in a {what} write", f, what=self.what))
        d.addBoth(self._one_done)

    def _one_done(self, _: object) -> None:
        self.pending -= 1
        if not self.pending:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def settled(self) -> Deferred[None]:
        """Fires once no write is scheduled or in flight (tests, shutdown)."""
        if not self.pending:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d

    def script(
        self, source: str, keys: Sequence[str], args: Sequence[object]
    ) -> Deferred[Any]:
        """``link.script``, failing like a command when the link raises."""
        try:
            return self.link.script(source, keys, args)
        except Exception as e:
            return fail(e)

    # -- announcements and loads --------------------------------------------

    def receive(self, message: dict[str, Any], reload: Callable[[], object]) -> None:
        """An announcement from ``tc:control``: apply it in version order."""
        if self._waiting is not None:
            self._waiting.append(message)
            return
        version = message.get("v")
        if not isinstance(version, int) or isinstance(version, bool):
            _log.warn(
                "{what}: an announcement without a version, ignored", what=self.what
            )
            return
        if version <= self.version:
            return  # already in the snapshot, or seen
        if version > self.version + 1:
            _log.info(
                "{what}: announcements {first} to {last} missed; loading again",
                what=self.what,
                first=self.version + 1,
                last=version - 1,
            )
            reload()  # the snapshot will hold this one too
            return
        self.version = version
        self._apply(message)

    def _apply(self, message: dict[str, Any]) -> None:
        try:
            self._apply_one(message)
        except (ValueError, TypeError, KeyError) as e:  # another node's bad value
            _log.warn(
                "{what}: an announcement that does not read ignored: {reason}",
                what=self.what,
                reason=" ".join(str(e).split()),
            )
        except Exception:
            _log.failure("{what}: applying an announcement", what=self.what)

    def load(
        self, keys: Sequence[str], install: Callable[[list[Any]], int]
    ) -> Deferred[bool]:
        """Read a snapshot (`LOAD`) and ``install`` it; True when loaded.

        ``install`` replaces the store's contents and returns the
        snapshot's version. A load asked for while one runs shares it.
        """
        d: Deferred[bool] = Deferred()
        self._loads.append(d)
        if self._waiting is None:
            self._waiting = []
            self.script(LOAD, keys, []).addCallbacks(
                self._loaded, self._not_loaded, callbackArgs=(install,)
            )
        return d

    def _loaded(self, reply: object, install: Callable[[list[Any]], int]) -> None:
        waiting, self._waiting = self._waiting or [], None
        ok = isinstance(reply, list)
        try:
            if isinstance(reply, list):
                self.version = install(reply)
        except Exception:
            ok = False
        if not ok:
            _log.failure("{what}: the snapshot could not be read", what=self.what)
        for message in waiting:
            version = message.get("v")
            if isinstance(version, int) and version > self.version:
                self.version = version
                self._apply(message)
        self._answer_loads(ok)

    def _not_loaded(self, failure: Failure) -> None:
        self._waiting = None
        _log.warn(
            "{what} not loaded from the cluster store: {reason}",
            what=self.what,
            reason=reason_of(failure),
        )
        self._answer_loads(False)

    def _answer_loads(self, ok: bool) -> None:
        loads, self._loads = self._loads, []
        for d in loads:
            d.callback(ok)


class Replicated:
    """What both replicated stores add to their base: their writes' state."""

    _replica: Replica

    @property
    def pending_writes(self) -> int:
        """Writes scheduled or waiting for Redis."""
        return self._replica.pending

    def settled(self) -> Deferred[None]:
        """Fires once every write made so far is answered."""
        return self._replica.settled()
