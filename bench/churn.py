"""Churn in a busy room (issue 11, finding 6): what connects cost a bystander.

Usage::

    python bench/churn.py [--twistd PATH] [--members 1000] [--rate 100]
        [--seconds 20] [--runs 3] [--json]

Starts ``twistd -n chat`` on 127.0.0.1 (a fresh state directory, the default
SQLite history, ``--max-per-ip 0``, flood control off, a large
``--max-sendq``), fills ``#lobby`` with ``--members`` idle clients (one
process that reads what they get every 0.2 s), then for ``--seconds``:

- a churn process opens ``--rate`` connections a second, each from its own
  127.x.y.z source address; each waits for ``* You joined #lobby`` and
  hangs up, so every second the room sees ``--rate`` joins and quits;
- a bystander in ``#lobby`` sends ``/ping N`` every 100 ms and times the
  ``* pong N``.

It prints the bystander's round trip (median, p99, max) and the daemon's CPU
use over the churn window (% of one core), per run and as medians.  Compare
two daemons with ``--twistd`` (e.g. ``/work/baseline/.venv/bin/twistd``).
Everything goes to loopback, is bounded in count and time, and the daemon
is killed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import selectors
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

from _loopback import (
    LineClient,
    Pinger,
    add_run_options,
    bench_parser,
    daemon,
    median,
    run_and_report,
    source_address,
)

#: Unread output a member may have before the server drops it: far above
#: the default, so a member that falls behind on a busy machine is not
#: dropped (which would shrink the room being measured).
MAX_SENDQ = str(64 * 1024 * 1024)
#: Seconds the setup (filling the room) may take.
SETUP_TIMEOUT = 180.0
#: Connections the churn process may have open at once.
MAX_IN_FLIGHT = 500


def members_main(port: int, count: int, ready: Connection, stop: Any) -> None:
    """Hold ``count`` members in the default room, reading what they get."""
    selector = selectors.DefaultSelector()
    members: list[socket.socket] = []
    closed = 0
    received = 0

    def drain() -> None:
        nonlocal closed, received
        for key, _ in selector.select(0):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            while True:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    sock.close()
                    closed += 1
                    break
                received += len(data)

    for n in range(count):
        sock = socket.socket()
        sock.bind((source_address(n, block=2), 0))
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        members.append(sock)
        if n % 20 == 0:
            drain()
    drain()
    ready.send(count - closed)
    while not stop.wait(0.2):
        drain()
    drain()
    ready.send({"members_closed": closed, "member_bytes": received})


async def _churn(port: int, rate: float, seconds: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    joined: list[float] = []
    failed = 0

    async def one(n: int) -> None:
        nonlocal failed
        async with slots:
            start = loop.time()
            writer = None
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        "127.0.0.1", port, local_addr=(source_address(n, 3), 0)
                    ),
                    10,
                )
                await asyncio.wait_for(reader.readuntil(b"* You joined"), 10)
                joined.append(loop.time() - start)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                failed += 1
            finally:
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()

    tasks = []
    begin = loop.time()
    for n in range(int(rate * seconds)):
        delay = begin + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the connection schedule
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    return {
        "churn_joined": float(len(joined)),
        "churn_failed": float(failed),
        "churn_join_median_ms": median([t * 1000 for t in joined]),
        "churn_seconds": loop.time() - begin,
    }


def churn_main(port: int, rate: float, seconds: float, out: Connection) -> None:
    """Open ``rate`` connections a second for ``seconds``; report counts."""
    out.send(asyncio.run(_churn(port, rate, seconds)))


def join_full_room(port: int, size: int) -> LineClient:
    """A bystander in ``#lobby``, once the daemon has ``size`` people there."""
    bystander = LineClient.connect(port, source_address(1, block=4))
    deadline = time.monotonic() + SETUP_TIMEOUT
    bystander.say("/nick bystander")
    bystander.expect("* You are now known as", deadline)
    # Wait until the daemon has every member (accepts may lag).
    while True:
        bystander.say("/who")
        line, _ = bystander.expect("* ", deadline)
        while not line.endswith(" in #lobby:"):
            line, _ = bystander.expect("* ", deadline)
        if int(line.split()[1]) >= size:
            break
        time.sleep(0.2)  # polling a condition, bounded by the deadline
    bystander.say("/ping ready")
    bystander.expect("* pong ready", deadline)
    return bystander


def one_run(args: argparse.Namespace) -> dict[str, float]:
    """One daemon, one filled room, one churn window."""
    fork = multiprocessing.get_context("fork")
    options = [
        "--max-per-ip",
        "0",
        "--max-clients",
        str(args.members + 10 * int(args.rate) + 100),
        "--flood-burst",
        "0",
        "--flood-rate",
        "0",
        "--max-sendq",
        MAX_SENDQ,
        *args.daemon_option,
    ]
    with daemon(args.twistd, *options) as chat:
        ready, ready_child = fork.Pipe()
        stop = fork.Event()
        members = fork.Process(
            target=members_main, args=(chat.port, args.members, ready_child, stop)
        )
        members.start()
        try:
            if not ready.poll(SETUP_TIMEOUT):
                raise SystemExit("the members never all connected")
            ready.recv()
            bystander = join_full_room(chat.port, args.members + 1)
            results, results_child = fork.Pipe()
            churn = fork.Process(
                target=churn_main,
                args=(chat.port, args.rate, args.seconds, results_child),
            )
            cpu_before, wall_before = chat.cpu(), time.monotonic()
            churn.start()
            pinger = Pinger(bystander)
            pinger.run(args.seconds)
            cpu_after, wall_after = chat.cpu(), time.monotonic()
            if not results.poll(SETUP_TIMEOUT):
                raise SystemExit("the churn process never finished")
            result: dict[str, float] = results.recv()
            churn.join()
            bystander.close()
        finally:
            stop.set()
            result_members = ready.recv() if ready.poll(30) else {}
            members.join(30)
            if members.is_alive():
                members.kill()
        result.update(pinger.summary())
        result.update(result_members)
        result["daemon_cpu_percent"] = (
            100 * (cpu_after - cpu_before) / (wall_after - wall_before)
        )
    return result


KEYS = (
    "ping_median_ms",
    "ping_p99_ms",
    "ping_max_ms",
    "daemon_cpu_percent",
    "churn_joined",
    "churn_failed",
    "churn_join_median_ms",
    "members_closed",
)


def main(argv: list[str] | None = None) -> int:
    """Run, print a table (or JSON), exit 0."""
    parser = bench_parser(__doc__)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    add_run_options(parser)
    args = parser.parse_args(argv)
    setup = f"{args.members} members, {args.rate:g} connects/s for {args.seconds:g} s"
    return run_and_report(args, one_run, KEYS, setup)


if __name__ == "__main__":
    raise SystemExit(main())
