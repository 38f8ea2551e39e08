"""The bench's ``rooms`` workload in one process, read by read, for instruction counts.

Usage::

    python bench/rooms_reads_inproc.py [ROUNDS] [--rooms 100] [--per-room 10]
        [--lines 20] [--turn 1000] [--time]
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/rooms_reads_inproc.py 3

``--rooms * --per-room`` ``ChatLineProtocol`` clients of one ``ChatServer``
on a ``MemoryReactorClock``, over transports that count their writes and
drop the bytes, each in one room (``/join``, then ``/part #lobby``, as the
load generator does).  Then ROUNDS rounds in which every client sends, in
one read, ``--lines`` messages of 100 bytes and a ``/ping`` (what
``python -m twisted_chat.bench --workload rooms`` sends: 20 messages and
its barrier ping in one write of each client), with the end-of-turn flush
after every ``--turn`` reads (the reactor turn; the load generator's
clients all send at once, so a turn holds many of them).

Where ``bench/rooms_inproc.py`` has each member say one line per read, this
is the bench's shape, which is what the daemon's per-read work (several
lines in a read go to the core together, the pong goes with the turn's
lines) is for.  Setup costs as much in every run, so with callgrind the
instructions of ROUNDS=3 minus those of ROUNDS=1, divided by the messages
of two rounds (printed), are the instructions one message costs the
server, its deliveries included.  ``--time`` prints ns per message too
(noisy on a shared machine; pin it with ``taskset -c 1``).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from twisted_chat.core.admission import Admission
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.settings import Settings
from twisted_chat.transports.tcp import ChatServerFactory


class _Counting(StringTransport):
    """Keeps no bytes; counts the writes and what they carried."""

    writes = 0
    written = 0

    def write(self, data: bytes) -> None:
        _Counting.writes += 1
        _Counting.written += len(data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rounds", type=int, nargs="?", default=3)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--per-room", type=int, default=10)
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--turn", type=int, default=1000)
    parser.add_argument("--time", action="store_true")
    args = parser.parse_args(argv)
    reactor = MemoryReactorClock()
    settings = attrs.evolve(
        Settings(), flood_burst=0, flood_rate=0, max_per_ip=0, max_clients=0
    )
    later: list[Any] = []
    server = ChatServer(
        settings,
        reactor.seconds,
        None,
        defer=later.append,
        call_later=reactor.callLater,
    )
    factory = ChatServerFactory(server, Admission(max_clients=0, max_per_ip=0), reactor)

    def end_of_turn() -> None:
        while later:
            later.pop(0)()

    clients = []
    for n in range(args.rooms * args.per_room):
        peer = IPv4Address("TCP", f"127.0.{n // 250}.{n % 250 + 1}", 1024 + n)
        protocol = factory.buildProtocol(peer)
        if protocol is None:
            raise SystemExit("the factory refused a connection")
        protocol.makeConnection(_Counting(peerAddress=peer))
        room = f"#r{n % args.rooms}"
        protocol.dataReceived(f"/join {room}\n/part #lobby\n".encode())
        clients.append(protocol)
    end_of_turn()
    message = b"x" * 75 + b" 123 1234567890123456789\n"
    read = message * args.lines + b"/ping\n"
    gc.collect()
    before = server.outbox.deliveries
    _Counting.writes = _Counting.written = 0
    started = time.perf_counter_ns()
    for _ in range(args.rounds):
        for i, protocol in enumerate(clients):
            protocol.dataReceived(read)
            if i % args.turn == args.turn - 1:
                end_of_turn()
        end_of_turn()
    took = time.perf_counter_ns() - started
    said = args.rounds * len(clients) * args.lines
    print(
        f"{said} messages said, {server.outbox.deliveries - before} deliveries "
        f"counted, {_Counting.writes} writes of {_Counting.written} bytes"
    )
    if args.time:
        print(f"{took / said:,.0f} ns per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
