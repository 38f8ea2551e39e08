"""``/rooms`` amplification (issue 11, finding 7): reply size, CPU, bystander.

Usage::

    python bench/rooms_amplify.py [--twistd PATH] [--rooms 9800] [--seconds 20]
        [--slow 2] [--runs 3] [--json]

Starts ``twistd -n chat`` on 127.0.0.1 (a fresh state directory, the
default SQLite history, ``--max-per-ip 0``, default flood control) and
creates ``--rooms`` rooms: holders of 50 rooms each (the per-person cap),
each holder from its own 127.5.x.y source address (so the per-address room
cap of 100 is not what stops them).  Then it measures:

- ``/rooms`` reply size in bytes, and the daemon's CPU per ``/rooms``
  (20 requests, each from a fresh source address, minus the same number of
  ``/ping`` requests made the same way);
- for ``--seconds``: ``--slow`` clients that send ``/rooms`` as fast as the
  daemon reads them and never read a byte (one reconnects when it is
  dropped as a slow reader), while a bystander sends ``/ping`` every 250 ms;
  the bystander's round trip (median, p99, max), the daemon's CPU %, how
  many ``/rooms`` the slow clients got in and how often they were dropped.

Compare daemons with ``--twistd`` (e.g. ``/work/baseline/.venv/bin/twistd``).
Everything goes to loopback, is bounded in count and time, and the daemon
is killed at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

from _loopback import (
    Daemon,
    LineClient,
    Pinger,
    add_run_options,
    bench_parser,
    daemon,
    run_and_report,
    source_address,
)

#: Rooms one person may be in (``MAX_ROOMS_PER_USER``, the same in both).
ROOMS_PER_HOLDER = 50
#: Seconds setting up the rooms may take.
SETUP_TIMEOUT = 300.0
#: ``/rooms`` requests whose CPU is measured.
PROBES = 20
#: Seconds between the bystander's pings: under the default flood-control
#: rate (5 lines a second), which would otherwise delay the pings themselves.
PING_INTERVAL = 0.25


def holders_main(port: int, rooms: int, ready: Connection, stop: Any) -> None:
    """Hold ``rooms`` rooms, 50 a connection, until told to stop."""
    holders: list[LineClient] = []
    count = 0
    n = 0
    while count < rooms:
        client = LineClient.connect(port, source_address(n, block=5))
        take = min(ROOMS_PER_HOLDER, rooms - count)
        for k in range(take):
            client.say(f"/join #room-{n}-{k}")
        holders.append(client)
        count += take
        n += 1
    deadline = time.monotonic() + SETUP_TIMEOUT
    for client in holders:
        client.say("/ping held")
    for client in holders:
        client.expect("* pong held", deadline)
        client.buffer = b""
    ready.send(count)
    while not stop.wait(0.5):
        for client in holders:
            client.sock.setblocking(False)
            try:
                while client.sock.recv(1 << 20):
                    pass
            except (BlockingIOError, OSError):
                pass
    for client in holders:
        client.close()


def slow_main(port: int, index: int, seconds: float, out: Connection) -> None:
    """Send ``/rooms`` as fast as the daemon takes it; never read."""
    end = time.monotonic() + seconds
    sent = drops = 0
    n = 0
    request = b"/rooms\n" * 64
    while time.monotonic() < end:
        sock = socket.socket()
        sock.bind((source_address(index * 1000 + n, block=6), 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        n += 1
        try:
            sock.connect(("127.0.0.1", port))
            sock.settimeout(0.2)
            while time.monotonic() < end:
                try:
                    sent += sock.send(request) // 7
                except TimeoutError:
                    continue
        except OSError:
            drops += 1
        finally:
            sock.close()
    out.send({"slow_requests_sent": sent, "slow_drops": drops})


def reply_bytes(chat: Daemon, n: int, command: str) -> tuple[int, float]:
    """Bytes of one ``command`` reply from a fresh address, and its wall time."""
    client = LineClient.connect(chat.port, source_address(n, block=7))
    deadline = time.monotonic() + 60
    client.say("/ping start")
    client.expect("* pong start", deadline)
    client.buffer = b""
    started = time.monotonic()
    client.say(command)
    client.say("/ping end")
    _, before = client.expect("* pong end", deadline)
    took = time.monotonic() - started
    client.close()
    return sum(len(line) + 2 for line in before), took


def cpu_per(chat: Daemon, command: str, first: int) -> float:
    """Daemon CPU seconds for ``PROBES`` ``command``, each from a new address."""
    before = chat.cpu()
    for n in range(PROBES):
        reply_bytes(chat, first + n, command)
    return chat.cpu() - before


def one_run(args: argparse.Namespace) -> dict[str, float]:
    """One daemon: make the rooms, probe, then the slow clients and a bystander."""
    fork = multiprocessing.get_context("fork")
    options = ["--max-per-ip", "0", "--max-clients", "20000", *args.daemon_option]
    result: dict[str, float] = {}
    with daemon(args.twistd, *options) as chat:
        ready, ready_child = fork.Pipe()
        stop = fork.Event()
        holders = fork.Process(
            target=holders_main, args=(chat.port, args.rooms, ready_child, stop)
        )
        holders.start()
        try:
            if not ready.poll(SETUP_TIMEOUT):
                raise SystemExit("the rooms were never all made")
            result["rooms"] = float(ready.recv())
            size, took = reply_bytes(chat, 0, "/rooms")
            result["rooms_reply_bytes"] = float(size)
            result["rooms_reply_ms"] = took * 1000
            rooms_cpu = cpu_per(chat, "/rooms", 100)
            ping_cpu = cpu_per(chat, "/ping", 200)
            result["cpu_ms_per_rooms"] = (rooms_cpu - ping_cpu) / PROBES * 1000
            bystander = LineClient.connect(chat.port, source_address(1, block=8))
            bystander.say("/ping ready")
            bystander.expect("* pong ready", time.monotonic() + 60)
            outs = []
            slow = []
            for index in range(args.slow):
                out, out_child = fork.Pipe()
                process = fork.Process(
                    target=slow_main, args=(chat.port, index, args.seconds, out_child)
                )
                outs.append(out)
                slow.append(process)
            cpu_before, wall_before = chat.cpu(), time.monotonic()
            for process in slow:
                process.start()
            # Under the default flood control (5 lines a second).
            pinger = Pinger(bystander, interval=PING_INTERVAL)
            pinger.run(args.seconds)
            cpu_after, wall_after = chat.cpu(), time.monotonic()
            for out, process in zip(outs, slow, strict=True):
                if out.poll(60):
                    for key, value in out.recv().items():
                        result[key] = result.get(key, 0.0) + value
                process.join(10)
                if process.is_alive():
                    process.kill()
            bystander.close()
            result.update(pinger.summary())
            result["daemon_cpu_percent"] = (
                100 * (cpu_after - cpu_before) / (wall_after - wall_before)
            )
        finally:
            stop.set()
            holders.join(30)
            if holders.is_alive():
                holders.kill()
    return result


KEYS = (
    "rooms",
    "rooms_reply_bytes",
    "rooms_reply_ms",
    "cpu_ms_per_rooms",
    "ping_median_ms",
    "ping_p99_ms",
    "ping_max_ms",
    "pings_lost",
    "daemon_cpu_percent",
    "slow_drops",
)


def main(argv: list[str] | None = None) -> int:
    """Run, print a table (or JSON), exit 0."""
    parser = bench_parser(__doc__)
    parser.add_argument("--rooms", type=int, default=9800)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--slow", type=int, default=2)
    add_run_options(parser)
    args = parser.parse_args(argv)
    setup = (
        f"{args.rooms} rooms, {args.slow} slow /rooms clients for {args.seconds:g} s"
    )
    return run_and_report(args, one_run, KEYS, setup)


if __name__ == "__main__":
    raise SystemExit(main())
