"""Topics nobody needs any more: memory and disk (issue 11, finding 3).

Usage::

    python bench/topic_churn.py [--twistd PATH] [--rooms 30000] [--threads 8]
        [--seconds 60] [--topic-bytes 1024] [--runs 3] [--extra ARG ...]

Starts ``twistd -n chat`` (``--twistd``, e.g. the checkout before issue 11:
``/work/baseline/.venv/bin/twistd``) on 127.0.0.1 with a fresh state
directory and the SQLite history, then repeats what the issue's attacker
did: connect, ``/join #new``, ``/topic <1 KB>``, ``/quit``, each time in a
new room, over ``--threads`` connections at a time, until ``--rooms``
rooms were made or ``--seconds`` passed. The per-address limits that
other parts of issue 11 add (connections per address, rate of new
connections, rooms per address) would stop this loop early and measure
them instead of the store, so they are turned off: ``--max-per-ip 0``,
flood control off, and anything in ``--extra`` (e.g. ``--extra=--conn-rate
0``) is passed on.

Printed, medians of ``--runs``: rooms made, the daemon's RSS growth (after
the loop, minus before), the history file's size (main file and WAL) and
the topics it holds after a clean exit. Every daemon is killed at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _loopback import TWISTD, free_port, rss_kib, wait_for_port


def start(
    twistd: str, state: Path, extra: list[str]
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    args = [
        twistd,
        "--nodaemon",
        "--pidfile=",
        "chat",
        "--tcp",
        f"tcp:{port}:interface=127.0.0.1",
        "--udp",
        f"127.0.0.1:{free_port()}",
        "--state-dir",
        str(state),
        "--max-per-ip",
        "0",
        "--flood-burst",
        "0",
        "--flood-rate",
        "0",
        *extra,
    ]
    with (state / "twistd.log").open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own twistd
            args, cwd=state, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(proc, port, state / "twistd.log")
    except SystemExit:
        proc.kill()
        proc.wait()
        raise
    return proc, port


def churn(port: int, rooms: int, threads: int, seconds: float, topic: str) -> int:
    """Make rooms with topics until ``rooms`` or ``seconds``; how many made."""
    counter = iter(range(rooms))
    lock = threading.Lock()
    made = [0]
    deadline = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(f"/join #churn{n}\n/topic {topic}\n/quit\n".encode())
                    while s.recv(65536):
                        pass
            except OSError:
                continue
            with lock:
                made[0] += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return made[0]


def one_run(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        proc, port = start(args.twistd, state, args.extra)
        try:
            time.sleep(0.5)
            before = rss_kib(proc.pid)
            topic = "t" * args.topic_bytes
            made = churn(port, args.rooms, args.threads, args.seconds, topic)
            time.sleep(1.0)
            after = rss_kib(proc.pid)
            db = state / "history.sqlite3"
            size = sum(
                p.stat().st_size
                for p in (db, db.with_name(db.name + "-wal"))
                if p.exists()
            )
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            (topics,) = conn.execute("SELECT count(*) FROM topics").fetchone()
        return {
            "rooms": made,
            "rss_growth_mib": (after - before) / 1024,
            "file_mib": size / (1 << 20),
            "topics_on_disk": topics,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--twistd", default=TWISTD)
    parser.add_argument("--rooms", type=int, default=30_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--topic-bytes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--extra", action="append", default=[])
    args = parser.parse_args()
    runs = [one_run(args) for _ in range(args.runs)]
    print(f"twistd: {args.twistd}  runs: {args.runs}  load: {os.getloadavg()[0]:.1f}")
    for key in runs[0]:
        values = [run[key] for run in runs]
        print(f"{key:16} median {statistics.median(values):,.1f}  all {values}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
