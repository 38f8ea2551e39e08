"""The rooms load in one process: the real TCP protocol, no sockets, ns per line.

Usage::

    python bench/rooms_inproc.py [ROOMS] [PER_ROOM] [LINES]

Connects ``ROOMS * PER_ROOM`` `ChatLineProtocol` objects to one
`ChatServer` over transports that drop what they are sent, puts them in
rooms of ``PER_ROOM``, and has every member say ``LINES`` lines, one read
each, with the end-of-turn flush after each round.  Prints the nanoseconds
per line said (each reaches ``PER_ROOM`` members), the least and the median
of 7 repetitions.  Without the kernel, the load generator and the scheduler
in the way, two builds on this noisy shared machine can be told apart
where the socket benchmark (`ab_hotpath.py --workloads rooms`) cannot:
run it with each build's python, alternating, pinned to one CPU
(``taskset -c 1``).  It imports the layered package (issue 12) or, failing
that, the flat one before it, so the same script measures both.
"""

from __future__ import annotations

import gc
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport


def _load(new: str, old: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(new), name)
    except ImportError:
        return getattr(importlib.import_module(old), name)


class _Sink(StringTransport):
    """A transport that keeps nothing: the server's side is what is measured."""

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Any) -> None:
        pass


def main(argv: list[str]) -> int:
    rooms, per_room, lines = (int(a) for a in [*argv, "100", "10", "10"][:3])
    chat_server = _load("twisted_chat.core.chat", "twisted_chat.chat", "ChatServer")
    settings_class = _load(
        "twisted_chat.core.settings", "twisted_chat.settings", "Settings"
    )
    admission = _load("twisted_chat.core.admission", "twisted_chat.limits", "Admission")
    factory_class = _load(
        "twisted_chat.transports.tcp", "twisted_chat.tcp", "ChatServerFactory"
    )
    reactor = MemoryReactorClock()
    settings = attrs.evolve(
        settings_class(), flood_burst=0, flood_rate=0, max_per_ip=0, max_clients=0
    )
    later: list[Callable[[], None]] = []
    server = chat_server(
        settings,
        reactor.seconds,
        None,
        defer=later.append,
        call_later=reactor.callLater,
    )
    factory = factory_class(server, admission(max_clients=0, max_per_ip=0), reactor)

    def end_of_turn() -> None:
        while later:
            later.pop(0)()

    members = []
    for n in range(rooms * per_room):
        peer = IPv4Address("TCP", f"127.0.{n // 250}.{n % 250 + 1}", 1024 + n)
        protocol = factory.buildProtocol(peer)
        protocol.makeConnection(_Sink(peerAddress=peer))
        protocol.dataReceived(f"/nick u{n}\r\n/join #r{n % rooms}\r\n".encode())
        members.append(protocol)
    end_of_turn()
    line = b"x" * 90 + b"\r\n"
    gc.collect()
    took = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(lines):
            for member in members:
                member.dataReceived(line)
            end_of_turn()
        took.append((time.perf_counter() - start) / (lines * len(members)) * 1e9)
    print(
        f"{sys.executable}: ns per line said, rooms of {per_room}: "
        f"least {min(took):,.0f}, median {statistics.median(took):,.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
