"""
Is the daemon well: its event loop on time, its history writer alive.

Two things an operator's probe cannot see from outside and a person feels
at once: a reactor that is late (every client waits with it) and history
that is not being saved.  :class:`LoopWatch` is a timer due every
:data:`TICK` seconds that counts how late it fires, in the fixed buckets of
:data:`LATENESS_BUCKETS` (plain ints: the metrics collector reads them at
scrape time, so nothing here imports prometheus_client), and
:func:`troubles` turns its last tick and the history store's
``trouble()`` into the reasons ``/healthz`` gives with its 503
(:class:`HealthResource`).

The timer is a chain of ``callLater`` rather than a ``LoopingCall``: each
tick knows the time it was due, so its lateness is the time now minus that,
and a stall of many seconds shows as one tick that many seconds late (a
``LoopingCall`` would skip the missed calls).  A reactor that is stalled
cannot answer ``/healthz`` at all; once it runs again, its timers fire
before the request that waited is read, so the first answer after a stall
is the 503 that says how late it was.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Final

from twisted.application.service import Service
from twisted.web.resource import Resource

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime
    from twisted.web.server import Request

    from twisted_chat.core.chat import ChatServer

__all__ = [
    "LATE",
    "LATENESS_BUCKETS",
    "TICK",
    "HealthResource",
    "LoopWatch",
    "LoopWatchService",
    "troubles",
]

#: Seconds between two ticks of the loop's timer.
TICK: Final = 1.0
#: A tick this many seconds late, or no tick for TICK plus this long, and
#: ``/healthz`` says the loop is late.
LATE: Final = 2.0
#: Upper bounds, in seconds, of the lateness buckets (a histogram's ``le``);
#: one more bucket holds the rest.
LATENESS_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class LoopWatch:
    """
    A timer due every :data:`TICK` seconds, and how late each tick fired.

    :param clock: the reactor (a ``Clock`` in tests).
    """

    def __init__(self, clock: IReactorTime, interval: float = TICK) -> None:
        self._clock = clock
        self.interval = interval
        #: Ticks by lateness, not cumulative: ``counts[i]`` were at most
        #: ``LATENESS_BUCKETS[i]`` late; the last, later than every bound.
        self.counts = [0] * (len(LATENESS_BUCKETS) + 1)
        #: Seconds late, summed over the ticks.
        self.late_seconds = 0.0
        #: How late the last tick was, and when it fired (None: none yet).
        self.last_lateness = 0.0
        self.last_tick: float | None = None
        self._due = 0.0
        self._started_at = 0.0
        self._call: IDelayedCall | None = None

    @property
    def ticks(self) -> int:
        """Ticks so far."""
        return sum(self.counts)

    def start(self) -> None:
        """Start ticking (once)."""
        if self._call is None:
            self._started_at = self._clock.seconds()
            self._schedule(self._started_at)

    def stop(self) -> None:
        """Stop ticking."""
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _schedule(self, now: float) -> None:
        self._due = now + self.interval
        self._call = self._clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        now = self._clock.seconds()
        late = max(now - self._due, 0.0)
        self.counts[bisect_left(LATENESS_BUCKETS, late)] += 1
        self.late_seconds += late
        self.last_lateness = late
        self.last_tick = now
        self._schedule(now)

    def trouble(self, now: float) -> str | None:
        """Why the loop counts as late at ``now``, or None."""
        if self._call is None:
            return None
        if self.last_lateness > LATE:
            return (
                f"event loop: the last 1 s timer fired {self.last_lateness:.1f} s late"
            )
        since = now - (
            self.last_tick if self.last_tick is not None else self._started_at
        )
        if since > self.interval + LATE:
            return f"event loop: no timer has fired for {since:.1f} s"
        return None


class LoopWatchService(Service):
    """Ticks a :class:`LoopWatch` while the daemon runs."""

    def __init__(self, watch: LoopWatch) -> None:
        self.watch = watch

    def startService(self) -> None:
        super().startService()
        self.watch.start()

    def stopService(self) -> None:
        super().stopService()
        self.watch.stop()


def troubles(server: ChatServer, watch: LoopWatch, now: float) -> list[str]:
    """Every reason the daemon is unwell at ``now`` (none: healthy)."""
    reasons = []
    late = watch.trouble(now)
    if late is not None:
        reasons.append(late)
    store = server.store
    if store is not None:
        trouble = store.trouble()
        if trouble:
            reasons.append(f"history: {trouble}")
    return reasons


class HealthResource(Resource):
    """
    ``/healthz``: 200 and ``{"status": "ok", ...}``, or 503 and
    ``{"status": "unhealthy", "reasons": [...]}``.  No nick, no address.
    """

    isLeaf = True

    def __init__(self, server: ChatServer, watch: LoopWatch, clock: Any) -> None:
        super().__init__()
        self._server = server
        self._watch = watch
        self._clock = clock

    def render_GET(self, request: Request) -> bytes:
        now = self._clock.seconds()
        watch = self._watch
        reasons = troubles(self._server, watch, now)
        body: dict[str, object] = {
            "status": "unhealthy" if reasons else "ok",
            "loop_lateness_seconds": round(watch.last_lateness, 4),
            "history": "off" if self._server.store is None else "on",
        }
        if reasons:
            body["reasons"] = reasons
            request.setResponseCode(503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(body).encode() + b"\n"

    render_HEAD = render_GET
