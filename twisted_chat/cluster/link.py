"""The node's two connections to Redis, kept up through outages (issue 19).

Why two: a connection that has sent SUBSCRIBE can only (un)subscribe and
ping, so commands go over one connection and channels arrive over another.
`RedisLink` is *up* when both are ready (logged in, database selected, a
PING or the SUBSCRIBEs answered). Anything else is an outage, however it
started: Redis refusing, a connection lost, a wrong password, no answer to
the login or to a PING within `REPLY_TIMEOUT`.

Why the connecting is ours, not txredisapi's reconnecting factories: the
node must know at once when it is cut off (``on_down``, once per outage: the
mirror tells its users the server runs alone for now); commands must fail at
once meanwhile, not wait in a queue (txredisapi's lazy handler waits); and
the node must know when it is back (``on_up``, once per recovery, after the
subscriber has subscribed again: the mirror resynchronises what it missed).
Each connection is a txredisapi protocol (AUTH, SELECT, SUBSCRIBE; the
wire read and written by `resp`, faster) connected by `_Connection`, which
retries (`FIRST_DELAY` doubling to `MAX_DELAY`) until stop.

Replies are raw (bulk strings bytes, integers int, status replies str,
arrays lists, nil None; no number conversion); arguments str, bytes, int or
float. A subscriber that keeps hearing messages is alive: its PING waits.
Every caller's commands share one connection, in order: no blocking
commands (BLPOP stalls them all, and the PING), no MULTI (another caller's
commands would join the transaction); a Lua `RedisLink.script` instead.
Errors: `LinkDown` (a ConnectionError) when Redis cannot be reached, now or
during the command; `CommandError` when Redis answered with an error.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import txredisapi  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IDelayedCall,
    IOpenSSLClientConnectionCreator,
    IReactorTime,
)
from twisted.internet.protocol import ClientFactory
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from twisted_chat.cluster.resp import CommandProtocol, SubscriberProtocol
from twisted_chat.cluster.url import ClusterUrl
from twisted_chat.core.logs import RateLimitedLogger

__all__ = ["CommandError", "LinkDown", "RedisLink"]

#: Seconds before the first retry, doubled after each failure up to MAX_DELAY.
FIRST_DELAY = 0.5
MAX_DELAY = 8.0
#: Seconds a TCP (and TLS) connect may take.
CONNECT_TIMEOUT = 5.0
#: Seconds Redis has to answer the login or a PING (or the connection goes),
#: and between PINGs on both connections, so a silent peer is noticed.
REPLY_TIMEOUT, PING_EVERY = 5.0, 3.0

#: Rate-limited: a failing on_message would log a traceback per message.
_log = RateLimitedLogger()


class LinkDown(ConnectionError):
    """Redis cannot be reached: the link is down, or went down meanwhile."""


class CommandError(Exception):
    """Redis answered the command with an error (its message is the text)."""


class _Connection(ClientFactory):
    """One connection to Redis: connect, wait until ready, retry with back-off;
    ``ready`` is the protocol once usable, else None (also the factory the
    txredisapi protocol expects: a failed AUTH or SELECT is one failure)."""

    noisy = False
    isLazy = False

    def __init__(self, link: RedisLink, name: str, kind: type[Any]) -> None:
        self.link = link
        self.name = name
        self.kind = kind
        self.ready: Any = None
        self.problem: str | None = None
        self._proto: Any = None
        self._attempt: Deferred[Any] | None = None
        self._retry: IDelayedCall | None = None
        self._deadline: IDelayedCall | None = None
        self._delay = FIRST_DELAY
        self._running = False
        self._heard = 0
        self._closed: list[Deferred[None]] = []

    def buildProtocol(self, addr: object) -> Any:  # noqa: ARG002
        url = self.link.url
        proto = self.kind(
            charset=None,
            password=url.password,
            dbid=url.db or None,
            convertNumbers=False,
        )
        # txredisapi schedules on the global reactor; ours may be another.
        proto.callLater = self.link.reactor.callLater
        proto.factory = self
        if isinstance(proto, SubscriberProtocol):
            proto.on_message = self.link.deliver
        base_lost = proto.connectionLost

        def connection_lost(why: Failure) -> None:
            try:
                base_lost(why)
            finally:
                self.lost(proto, why)

        proto.connectionLost = connection_lost
        return proto

    def stopTrying(self) -> None:
        """Our `_retry_after` decides about retrying, not the protocol."""

    def connectionError(self, why: str) -> None:
        self.problem = why

    def start(self) -> None:
        self._running = True
        self._connect()

    def _connect(self) -> None:
        self._retry = None
        self.problem = None
        attempt = self.link.endpoint().connect(self)
        self._attempt = attempt
        attempt.addCallbacks(self._connected, self._failed)

    def _connected(self, proto: Any) -> None:
        self._attempt = None
        self._proto = proto
        if not self._running:
            proto.transport.loseConnection()
            return
        # Until ready: AUTH, SELECT, then a PING or the SUBSCRIBEs answered.
        self._deadline = self.link.reactor.callLater(
            REPLY_TIMEOUT, self.abort, proto, "no answer"
        )
        proto.whenConnected().addCallback(self._logged_in)

    def _logged_in(self, proto: Any) -> None:
        """Ready once Redis answers (a stopped Redis still accepts connections)."""
        if proto is not self._proto or not self._running:
            return
        if self.kind is SubscriberProtocol:
            first = [proto.subscribe(channel) for channel in self.link.channels]
        else:
            first = [proto.execute_command("PING")]
        gatherResults(first, consumeErrors=True).addCallbacks(
            lambda _: self._become_ready(proto),
            lambda failure: self.abort(proto, f"no answer: {failure.value}"),
        )

    def _become_ready(self, proto: Any) -> None:
        if proto is not self._proto or not self._running:
            return
        self._no_deadline()
        self.ready = proto
        self._delay = FIRST_DELAY
        self.link.changed()

    def subscribe(self, channel: str) -> None:
        """Subscribe the ready subscriber to one more channel."""
        proto = self.ready
        if proto is None:
            return  # subscribed with the others when (re)connected
        proto.subscribe(channel).addTimeout(
            REPLY_TIMEOUT, self.link.reactor
        ).addErrback(lambda failure: self.abort(proto, f"subscribe: {failure.value}"))

    def abort(self, proto: Any, why: str) -> None:
        """Drop a connection that misbehaves; the retry makes a fresh one."""
        self.problem = why
        if proto.transport is not None:
            proto.transport.abortConnection()

    def _failed(self, failure: Failure) -> None:
        self._attempt = None
        self._retry_after(failure.getErrorMessage())

    def lost(self, proto: Any, why: Failure) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        self.ready = None
        self._no_deadline()
        self._closed, waiting = [], self._closed
        for done in waiting:
            done.callback(None)
        self._retry_after(self.problem or why.getErrorMessage())

    def _retry_after(self, reason: str) -> None:
        """An outage (if not one already), and the next attempt scheduled."""
        if not self._running:
            return
        self.link.trouble(f"{self.name}: {reason}")
        delay, self._delay = self._delay, min(self._delay * 2, MAX_DELAY)
        self._retry = self.link.reactor.callLater(delay, self._connect)

    def _no_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def ping(self) -> None:
        """PING the ready protocol: no answer in time (and, on the subscriber,
        no message either: a PONG waits behind them) drops the connection."""
        proto = self.ready
        heard = getattr(proto, "heard", None)
        if heard is not None and heard != self._heard:
            self._heard = heard
        elif proto is not None:

            def silent(_: Failure) -> None:
                if getattr(proto, "heard", None) in (None, heard):
                    self.abort(proto, "no answer to PING")

            proto.execute_command("PING").addTimeout(
                REPLY_TIMEOUT, self.link.reactor
            ).addErrback(silent)

    def stop(self) -> Deferred[None]:
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._attempt is not None:
            self._attempt.cancel()
        proto, self.ready = self._proto, None
        if proto is None or proto.transport is None:
            self._proto = None
            return succeed(None)
        closed: Deferred[None] = Deferred()
        self._closed.append(closed)
        proto.transport.loseConnection()
        return closed


class RedisLink:
    """A command connection and a subscriber, both reconnecting (see module)."""

    def __init__(  # noqa: PLR0917 - the plan's interface
        self,
        url: ClusterUrl,
        reactor: IReactorTime,
        channels: Sequence[str],
        on_message: Callable[[str, bytes], None],
        on_up: Callable[[], None],
        on_down: Callable[[str], None],
        *,
        tls: IOpenSSLClientConnectionCreator | None = None,
    ) -> None:
        """``tls``: for ``rediss://``, instead of the system's trust roots."""
        self.url = url
        self.tls = tls
        self.reactor = reactor
        self.channels: list[str] = list(dict.fromkeys(channels))
        self._on_message, self._on_up, self._on_down = on_message, on_up, on_down
        #: "new" until the first outcome, then "up" or "down".
        self._state = "new"
        self._command = _Connection(self, "commands", CommandProtocol)
        self._subscriber = _Connection(self, "subscriber", SubscriberProtocol)
        self._pinger = LoopingCall(self._ping)
        self._pinger.clock = reactor
        #: PUBLISHes dropped because the link was down (for tests, metrics).
        self.dropped = 0

    @property
    def up(self) -> bool:
        """Both connections are ready (the subscriber subscribed)."""
        return self._state == "up"

    def endpoint(self) -> Any:
        """The client endpoint to Redis (TLS for ``rediss://``)."""
        plain = HostnameEndpoint(
            self.reactor, self.url.host, self.url.port, timeout=CONNECT_TIMEOUT
        )
        if not self.url.tls:
            return plain
        return wrapClientTLS(self.tls or optionsForClientTLS(self.url.host), plain)

    def start(self) -> None:
        """Connect both; ``on_up`` (or ``on_down``) follows."""
        self._command.start()
        self._subscriber.start()
        self._pinger.start(PING_EVERY, now=False)

    def stop(self) -> Deferred[None]:
        """Close both connections for good; fires when they are closed."""
        self._state = "stopped"
        if self._pinger.running:
            self._pinger.stop()
        closing = [self._command.stop(), self._subscriber.stop()]
        return gatherResults(closing).addCallback(lambda _: None)

    def changed(self) -> None:
        """A connection became ready: the link is up when both are."""
        ready = self._command.ready is not None and self._subscriber.ready is not None
        if self._state in {"up", "stopped"} or not ready:
            return
        self._state = "up"
        _log.info("cluster store {url} reachable", url=self.url.redacted())
        self._notify(self._on_up)

    def trouble(self, reason: str) -> None:
        """An attempt failed or a connection was lost: down, once per outage."""
        if self._state in ("down", "stopped"):
            return
        self._state = "down"
        text = "cluster store {url} unreachable ({reason}); retrying"
        _log.warn(text, url=self.url.redacted(), reason=reason)
        self._notify(self._on_down, reason)

    def _notify(self, callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            _log.failure("cluster link callback {callback!r} failed", callback=callback)

    def deliver(self, channel: bytes, message: bytes) -> None:
        """A message from the subscriber, handed on; never raises."""
        name = channel.decode("utf-8", "replace")
        try:
            self._on_message(name, message)
        except Exception:
            _log.failure("cluster message on {channel} failed", channel=name)

    def _ping(self) -> None:
        self._command.ping()
        self._subscriber.ping()

    def publish(self, channel: str, data: bytes) -> None:
        """PUBLISH, fire and forget; dropped (counted) while the link is down."""
        proto = self._command.ready
        if not self.up or proto is None:
            self.dropped += 1
            return
        proto.send_quiet(("PUBLISH", channel, data))

    def call(self, *args: object) -> Deferred[Any]:
        """Send one command; its raw reply (see module), or LinkDown at once."""
        proto = self._command.ready
        if not self.up or proto is None:
            return fail(LinkDown(f"cluster store {self.url.redacted()} unreachable"))
        try:
            sent: Deferred[Any] = proto.send(args)
        except txredisapi.ConnectionError as error:
            return fail(LinkDown(str(error)))
        except TypeError as error:
            return fail(error)
        return sent.addErrback(_translate)

    def script(
        self, source: str, keys: Sequence[str], args: Sequence[object]
    ) -> Deferred[Any]:
        """Run a Lua script by EVALSHA; sent in full (EVAL) when Redis lacks it
        (it keeps an EVAL'd script: the text goes once per Redis start)."""
        sha = _sha1(source)

        def load(failure: Failure) -> Deferred[Any] | Failure:
            if failure.check(CommandError) and str(failure.value).startswith(
                "NOSCRIPT"
            ):
                return self.call("EVAL", source, len(keys), *keys, *args)
            return failure

        return self.call("EVALSHA", sha, len(keys), *keys, *args).addErrback(load)

    def subscribe(self, channel: str) -> None:
        """Add a channel, kept across reconnects."""
        if channel in self.channels:
            return
        self.channels.append(channel)
        self._subscriber.subscribe(channel)


@functools.cache
def _sha1(source: str) -> str:
    """A script's id in Redis's script cache."""
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


def _translate(failure: Failure) -> Failure:
    """txredisapi's errors as ours, so callers need not import it."""
    if failure.check(txredisapi.ConnectionError):
        return Failure(LinkDown(str(failure.value)))
    if failure.check(txredisapi.ResponseError):
        return Failure(CommandError(str(failure.value)))
    return failure
