"""
The link's PINGs against a subscriber far behind (issue 19): a node whose
subscriber keeps reading messages is not cut off because its PONG waits
behind them; a silent one is.  (Found by bench/cluster.py: a node 5 s
behind dropped its subscriber, and its users lost the backlog.)
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from twisted_chat.cluster.link import REPLY_TIMEOUT, _Connection
from twisted_chat.cluster.resp import SubscriberProtocol


class Silent:
    """A subscriber protocol whose PONG never comes."""

    def __init__(self) -> None:
        self.heard = 0
        self.pings = 0

    def execute_command(self, *args: object) -> Deferred[Any]:
        assert args == ("PING",)
        self.pings += 1
        return Deferred()


def connection() -> tuple[_Connection, Silent, Clock, list[str]]:
    clock = Clock()
    link: Any = SimpleNamespace(reactor=clock)
    conn = _Connection(link, "subscriber", SubscriberProtocol)
    proto = Silent()
    conn.ready = proto
    aborted: list[str] = []

    def abort(proto: Any, why: str) -> None:
        del proto
        aborted.append(why)

    conn.abort = abort  # type: ignore[method-assign]
    return conn, proto, clock, aborted


def test_messages_flowing_keep_the_subscriber() -> None:
    conn, proto, clock, aborted = connection()
    conn.ping()
    proto.heard += 3  # messages read while the PONG waits behind them
    clock.advance(REPLY_TIMEOUT + 0.1)
    assert aborted == []
    conn.ping()  # more were read since: no PING needed this time
    assert proto.pings == 1
    assert aborted == []


def test_a_silent_subscriber_is_dropped() -> None:
    conn, proto, clock, aborted = connection()
    conn.ping()
    clock.advance(REPLY_TIMEOUT + 0.1)
    assert aborted == ["no answer to PING"]
    assert proto.pings == 1


def test_the_command_connection_needs_its_pong() -> None:
    conn, _, clock, aborted = connection()
    conn.ready = SimpleNamespace(execute_command=lambda *_: Deferred())
    conn.ping()
    clock.advance(REPLY_TIMEOUT + 0.1)
    assert aborted == ["no answer to PING"]
