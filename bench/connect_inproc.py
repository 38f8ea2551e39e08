"""Connect and register in one process: the real TCP protocol, no sockets, µs each.

Usage::

    python bench/connect_inproc.py [CLIENTS] [--profile]

Connects ``CLIENTS`` (default 5,000) `ChatLineProtocol` objects to one
`ChatServer` (the default settings: flood control, the per-address caps,
``#lobby``), each from its own 127.x.y.z address, over transports that drop
what they are sent, and has each send what the load generator sends once
connected (:func:`twisted_chat.bench.wire.setup_lines`: ``/join`` a room of
ten, ``/part #lobby``, ``/ping``), one read each, with the end-of-turn flush
after every 64 clients (the daemon's turns hold a few connections each).
Then every client hangs up.  Prints the µs per connect + register and per
disconnect, the least of 5 repetitions (a fresh server each), and the bytes
of Python objects each idle registered client holds (``tracemalloc``).
What the kernel and Twisted's ``tcp.Server`` cost is not in it:
``bench/connect_rate.py`` measures that from outside.  ``--profile`` prints
the top of a cProfile of one repetition instead.

For instruction counts that do not move with the machine's load::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/connect_inproc.py 2000 --once
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import connectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport

from twisted_chat.bench.wire import setup_lines
from twisted_chat.core.admission import Admission
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.settings import Settings
from twisted_chat.transports.tcp import ChatLineProtocol, ChatServerFactory

#: Connections per simulated reactor turn.
PER_TURN = 64


class _Sink(StringTransport):
    """A transport that keeps nothing: the server's side is what is measured."""

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Any) -> None:
        pass


def _server() -> tuple[ChatServerFactory, Callable[[], None]]:
    reactor = MemoryReactorClock()
    settings = Settings()
    later: list[Callable[[], None]] = []
    server = ChatServer(
        settings,
        reactor.seconds,
        None,
        defer=later.append,
        call_later=reactor.callLater,
    )
    admission = Admission(max_clients=0, max_per_ip=settings.max_per_ip)
    factory = ChatServerFactory(server, admission, reactor)

    def end_of_turn() -> None:
        while later:
            later.pop(0)()

    return factory, end_of_turn


def _connect(
    factory: ChatServerFactory, peer: IPv4Address, setup: bytes, sink: _Sink
) -> ChatLineProtocol:
    """One client: connected over ``sink``, and its setup lines read."""
    protocol: ChatLineProtocol = factory.buildProtocol(peer)  # type: ignore[assignment]
    protocol.makeConnection(sink)
    protocol.dataReceived(setup)
    return protocol


def _peer(n: int) -> IPv4Address:
    n += 1
    return IPv4Address("TCP", f"127.1.{n >> 8}.{n & 0xFF}", 40000 + n % 20000)


def one(clients: int) -> tuple[float, float, int]:
    """(µs per connect + register, µs per disconnect, bytes per idle client)."""
    factory, end_of_turn = _server()
    peers = [_peer(n) for n in range(clients)]
    setups = [setup_lines(f"#r{n // 10}") for n in range(clients)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    start = time.perf_counter()
    protocols = []
    for n in range(clients):
        protocols.append(
            _connect(factory, peers[n], setups[n], _Sink(peerAddress=peers[n]))
        )
        if n % PER_TURN == PER_TURN - 1:
            end_of_turn()
    end_of_turn()
    connect = (time.perf_counter() - start) / clients * 1e6
    start = time.perf_counter()
    for n, protocol in enumerate(protocols):
        protocol.connectionLost(connectionDone)
        if n % PER_TURN == PER_TURN - 1:
            end_of_turn()
    end_of_turn()
    disconnect = (time.perf_counter() - start) / clients * 1e6
    del protocols, before
    return connect, disconnect, _bytes_per_client(clients)


def _bytes_per_client(clients: int) -> int:
    """Python bytes held per idle registered client (the sink transport's own
    object excluded: a real connection has a ``tcp.Server`` instead)."""
    factory, end_of_turn = _server()
    peers = [_peer(n) for n in range(clients)]
    setups = [setup_lines(f"#r{n // 10}") for n in range(clients)]
    sinks = [_Sink(peerAddress=peer) for peer in peers]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(clients):
        _connect(factory, peers[n], setups[n], sinks[n])
        if n % PER_TURN == PER_TURN - 1:
            end_of_turn()
    end_of_turn()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) // clients


def main(argv: list[str]) -> int:
    numbers = [a for a in argv if not a.startswith("--")]
    clients = int(numbers[0]) if numbers else 5000
    if "--once" in argv:
        factory, end_of_turn = _server()
        for n in range(clients):
            peer = _peer(n)
            _connect(
                factory, peer, setup_lines(f"#r{n // 10}"), _Sink(peerAddress=peer)
            )
            if n % PER_TURN == PER_TURN - 1:
                end_of_turn()
        end_of_turn()
        return 0
    if "--profile" in argv:
        profile = cProfile.Profile()
        profile.enable()
        one(clients)
        profile.disable()
        order = "cumtime" if "cumtime" in argv else "tottime"
        pstats.Stats(profile).sort_stats(order).print_stats(60)
        return 0
    runs = [one(clients) for _ in range(5)]
    print(
        f"{clients} clients: connect + register {min(r[0] for r in runs):.1f} µs, "
        f"disconnect {min(r[1] for r in runs):.1f} µs (least of 5); "
        f"{runs[0][2]:,} bytes of Python objects per idle client"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
