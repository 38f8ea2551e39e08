"""How fast the daemon takes new clients, and what each one costs it (issue 18).

Usage::

    python bench/connect_rate.py [--steps 1000,10000,19000] [--procs 3]
        [--inflight 128] [--churn 1000 --seconds 10] [--runs 3]
        [--twistd PATH] [--daemon-option=--flood-rate=0 ...] [--json]
    python bench/connect_rate.py --port P --server-pid PID ...   # a daemon of yours

Starts ``twistd -n chat`` on 127.0.0.1 (a fresh state directory, history
off, ``--max-clients 0``, a listen backlog of ``--backlog``, 4,096; every
other limit at its default unless ``--daemon-option`` says otherwise), or
uses the one at ``--port``.  Then
``--procs`` worker processes, each a raw non-blocking socket loop on epoll,
connect clients as fast as the server takes them (at most ``--inflight``
being set up per process), each from its own 127.x.y.z source address, and
register each the way the load generator does
(:func:`twisted_chat.bench.wire.setup_lines`: ``/join`` a room of ten,
``/part #lobby``, ``/ping``); a client is registered when its ``* pong``
arrives.  The workers stop at every step (1,000, 10,000, 19,000 clients in
all by default) and hold their clients; at each step the script reports

- clients registered a second over the step (first connect to last pong),
- the server's CPU time per client over the step (µs, from ``/proc``),
- its RSS growth per client since before the first client, and over the
  step alone (the marginal cost), once RSS has been steady for 0.3 s.

With ``--churn R`` the held clients stay and for ``--seconds`` the workers
also open ``R`` connections a second in all (each registers and hangs up at
its pong) while a bystander alone in a room sends ``/ping`` every 10 ms: its
median, p99 and max round trip, and the server's CPU share, are reported.

Everything is on loopback and bounded in count and time; a daemon the script
started is stopped at the end.  Medians of ``--runs`` runs, a fresh daemon
each (memory an earlier run grew and freed would hide the cost per client).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import multiprocessing
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _loopback import (
    TWISTD,
    LineClient,
    Pinger,
    cpu_seconds,
    free_port,
    median,
    percentile,
    rss_kib,
    source_address,
    wait_for_port,
)

from twisted_chat.bench.wire import setup_lines

PONG = b"\n* pong\r"
#: Seconds without progress before a step is given up.
STALL_TIMEOUT = 30.0
#: Clients per room, as the load generator's idle workload.
ROOM_SIZE = 10


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Worker:
    """One process's clients: the held ones, and the ones being set up."""

    def __init__(self, wid: int, procs: int, port: int, inflight: int) -> None:
        self.wid, self.procs, self.port, self.inflight = wid, procs, port, inflight
        self.ep = select.epoll()
        self.socks: dict[int, socket.socket] = {}
        #: fd -> tail of the stream seen so far (None once registered).
        self.pending: dict[int, bytes] = {}
        #: fd -> what it sends once connected.
        self.setup: dict[int, bytes] = {}
        #: fd of a churn client (closed at its pong).
        self.churning: set[int] = set()
        self.opened = 0
        self.churn_opened = 0
        self.registered = 0
        self.failed = 0
        self.churn_done = 0
        self.buf = bytearray(1 << 16)

    def open(self, n: int, block: int, room: str, churn: bool) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source_address(n, block=block), 0))
        err = sock.connect_ex(("127.0.0.1", self.port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.failed += 1
            return
        fd = sock.fileno()
        self.socks[fd] = sock
        self.pending[fd] = b""
        if churn:
            self.churning.add(fd)
        # The setup lines go out once connected (writable); then we read.
        self.setup[fd] = setup_lines(room)
        self.ep.register(fd, select.EPOLLOUT)

    def close(self, fd: int) -> None:
        sock = self.socks.pop(fd)
        self.pending.pop(fd, None)
        self.setup.pop(fd, None)
        self.churning.discard(fd)
        with contextlib.suppress(OSError):
            self.ep.unregister(fd)
        sock.close()

    def events(self, timeout: float) -> None:
        buf = self.buf
        for fd, mask in self.ep.poll(timeout):
            sock = self.socks.get(fd)
            if sock is None:
                continue
            if mask & select.EPOLLOUT:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self.failed += 1
                    self.close(fd)
                    continue
                self.ep.modify(fd, select.EPOLLIN)
                try:
                    sock.send(self.setup.pop(fd))
                except OSError:
                    self.failed += 1
                    self.close(fd)
                continue
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if n == 0:
                if fd in self.pending:
                    self.failed += 1
                self.close(fd)
                continue
            tail = self.pending.get(fd)
            if tail is None:
                continue
            seen = tail + bytes(buf[:n])
            if PONG in seen:
                del self.pending[fd]
                if fd in self.churning:
                    self.churn_done += 1
                    self.close(fd)
                else:
                    self.registered += 1
            else:
                self.pending[fd] = seen[-16:]

    def share(self, total: int) -> int:
        """This worker's part of ``total`` clients."""
        return total // self.procs + (1 if self.wid < total % self.procs else 0)

    def reach(self, total: int, control: Connection) -> None:
        """Connect and register until this worker holds its share of ``total``."""
        want = self.share(total)
        first = time.monotonic_ns()
        last_progress = time.monotonic()
        while self.registered < want:
            while self.opened < want and len(self.pending) < self.inflight:
                n = self.opened * self.procs + self.wid
                self.open(n, 1, f"#r{n // ROOM_SIZE}", churn=False)
                self.opened += 1
            before = self.registered
            self.events(1.0)
            if self.registered != before:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_TIMEOUT:
                break
            if self.failed:
                break
        control.send(("at", self.registered, self.failed, first, time.monotonic_ns()))

    def churn(self, rate: float, seconds: float, control: Connection) -> None:
        """Open ``rate`` (this worker's share) connections a second; each hangs up
        at its pong.  Held clients keep being read."""
        start = time.monotonic()
        end = start + seconds
        interval = 1.0 / rate
        due = start
        while True:
            now = time.monotonic()
            if now >= end and not self.churning:
                break
            if now > end + STALL_TIMEOUT:
                break
            while due <= now and due < end:
                n = self.churn_opened * self.procs + self.wid
                self.open(n, 2 + (n // 65_000) % 50, "#churn", churn=True)
                self.churn_opened += 1
                due += interval
            self.events(
                max(0.0, min(due, end) - time.monotonic()) if due < end else 0.1
            )
        control.send(("churned", self.churn_opened, self.churn_done, self.failed))


def worker_main(
    wid: int, procs: int, port: int, inflight: int, control: Connection
) -> None:
    _raise_fd_limit()
    worker = Worker(wid, procs, port, inflight)
    while True:
        command = control.recv()
        if command[0] == "reach":
            worker.reach(command[1], control)
        elif command[0] == "churn":
            worker.churn(command[1] / procs, command[2], control)
        else:
            break
        if worker.failed:
            # A refused or dropped client ends the run: say so and stop.
            break
    for fd in list(worker.socks):
        worker.close(fd)
    control.send(("closed",))


def steady_rss(pid: int) -> int:
    """The server's RSS in KiB once it stopped moving for 0.3 s (at most 5 s)."""
    deadline = time.monotonic() + 5.0
    last = rss_kib(pid)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)  # sampling /proc, bounded by the deadline
        now = rss_kib(pid)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= 0.3:
            break
    return last


def one_run(args: argparse.Namespace, port: int, pid: int) -> dict[str, Any]:
    steps = [int(s) for s in args.steps.split(",")]
    result: dict[str, Any] = {"steps": []}
    ctx = multiprocessing.get_context("fork")
    pipes = []
    procs = []
    for wid in range(args.procs):
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=worker_main, args=(wid, args.procs, port, args.inflight, child)
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    try:
        rss0 = steady_rss(pid)
        result["rss_before_kib"] = rss0
        prev_rss, prev_n = rss0, 0
        for step in steps:
            cpu0 = cpu_seconds(pid)
            for pipe in pipes:
                pipe.send(("reach", step))
            answers = [pipe.recv() for pipe in pipes]
            cpu1 = cpu_seconds(pid)
            held = sum(a[1] for a in answers)
            failed = sum(a[2] for a in answers)
            t0 = min(a[3] for a in answers)
            t1 = max(a[4] for a in answers)
            rss = steady_rss(pid)
            added = held - prev_n
            seconds = (t1 - t0) / 1e9
            row = {
                "clients": held,
                "failed": failed,
                "seconds": seconds,
                "clients_per_s": added / seconds if seconds else 0.0,
                "cpu_us_per_client": (cpu1 - cpu0) * 1e6 / added if added else 0.0,
                "server_cpu_pct": 100 * (cpu1 - cpu0) / seconds if seconds else 0.0,
                "rss_kib": rss,
                "kib_per_client": (rss - rss0) / held if held else 0.0,
                "marginal_kib_per_client": (rss - prev_rss) / added if added else 0.0,
            }
            result["steps"].append(row)
            print(
                f"  {held} clients: {row['clients_per_s']:,.0f}/s, "
                f"{row['cpu_us_per_client']:.0f} µs CPU each, "
                f"{row['kib_per_client']:.2f} KiB each "
                f"({row['marginal_kib_per_client']:.2f} over the step)"
                + (f", {failed} FAILED" if failed else ""),
                file=sys.stderr,
                flush=True,
            )
            prev_rss, prev_n = rss, held
            if failed or held < step:
                break
        if args.churn:
            result["churn"] = churn(args, port, pid, pipes)
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop",))
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    return result


def churn(
    args: argparse.Namespace, port: int, pid: int, pipes: list[Connection]
) -> dict[str, float]:
    bystander = LineClient.connect(port, "127.0.0.2")
    # In a room of its own, as the load generator's churn pair: the
    # round trip is the server's, not the time to read 2,000 notices a
    # second of #lobby's comings and goings.
    bystander.say("/join #bystander")
    bystander.say("/part #lobby")
    bystander.say("/ping 0")
    bystander.expect("* pong 0", time.monotonic() + 10)
    pinger = Pinger(bystander, interval=0.01)
    cpu0 = cpu_seconds(pid)
    t0 = time.monotonic()
    for pipe in pipes:
        pipe.send(("churn", args.churn, args.seconds))
    pinger.run(args.seconds)
    answers = [pipe.recv() for pipe in pipes]
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(pid) - cpu0
    bystander.close()
    opened = sum(a[1] for a in answers)
    done = sum(a[2] for a in answers)
    ms = [rtt * 1000 for rtt in pinger.rtts]
    row = {
        "churn_opened": float(opened),
        "churn_registered": float(done),
        "churn_per_s": done / elapsed,
        "churn_failed": float(sum(a[3] for a in answers)),
        "ping_median_ms": median(ms),
        "ping_p99_ms": percentile(ms, 0.99),
        "ping_max_ms": max(ms) if ms else float("nan"),
        "pings_lost": float(pinger.lost),
        "server_cpu_pct": 100 * cpu / elapsed,
    }
    print(
        f"  churn: {row['churn_per_s']:,.0f} connects+quits/s, bystander "
        f"p50 {row['ping_median_ms']:.2f} / p99 {row['ping_p99_ms']:.2f} / "
        f"max {row['ping_max_ms']:.2f} ms, server {row['server_cpu_pct']:.0f} %",
        file=sys.stderr,
        flush=True,
    )
    return row


@contextlib.contextmanager
def listening_daemon(
    twistd: str, backlog: int, options: list[str]
) -> Iterator[tuple[int, int]]:
    """``twistd -n chat`` on a free 127.0.0.1 port with a listen backlog of
    ``backlog`` (Twisted's default of 50 drops SYNs in a storm): (port, pid)."""
    with tempfile.TemporaryDirectory(prefix="connect-rate-") as tmp:
        port = free_port()
        log = Path(tmp) / "twistd.log"
        command = [
            *(twistd, "-n", "--pidfile=", "chat", "--state-dir", tmp),
            *("--tcp", f"tcp:{port}:interface=127.0.0.1:backlog={backlog}"),
            *("--history-db", "off", "--max-clients", "0", *options),
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=tmp, stdout=out, stderr=out)  # noqa: S603
        try:
            wait_for_port(proc, port, log)
            yield port, proc.pid
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--twistd", default=TWISTD)
    parser.add_argument("--port", type=int, default=0, help="a running daemon's port")
    parser.add_argument("--server-pid", type=int, default=0)
    parser.add_argument("--steps", default="1000,10000,19000")
    parser.add_argument("--procs", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=128)
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument("--churn", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--daemon-option", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    _raise_fd_limit()
    runs = []
    for n in range(args.runs):
        print(f"run {n + 1}/{args.runs}", file=sys.stderr, flush=True)
        if args.port:
            runs.append(one_run(args, args.port, args.server_pid))
            continue
        with listening_daemon(args.twistd, args.backlog, args.daemon_option) as (
            port,
            pid,
        ):
            runs.append(one_run(args, port, pid))
    summary: dict[str, Any] = {"load": os.getloadavg()[0], "steps": []}
    for i, step in enumerate(args.steps.split(",")):
        rows = [run["steps"][i] for run in runs if len(run["steps"]) > i]
        summary["steps"].append(
            {k: median([row[k] for row in rows]) for k in rows[0]}
            if rows
            else {"clients": step}
        )
    if args.churn:
        rows = [run["churn"] for run in runs if "churn" in run]
        summary["churn"] = {k: median([row[k] for row in rows]) for k in rows[0]}
    if args.json:
        print(json.dumps({"runs": runs, "medians": summary, "argv": sys.argv}))
        return 0
    print(f"medians of {args.runs} run(s), load average {summary['load']:.2f}")
    print(
        "| clients | clients/s | µs CPU/client | server CPU % | KiB/client "
        "| KiB/client over the step |"
    )
    print("|--:|--:|--:|--:|--:|--:|")
    for row in summary["steps"]:
        if "seconds" not in row:
            continue
        print(
            f"| {row['clients']:,.0f} | {row['clients_per_s']:,.0f} | "
            f"{row['cpu_us_per_client']:.0f} | {row['server_cpu_pct']:.0f} | "
            f"{row['kib_per_client']:.2f} | {row['marginal_kib_per_client']:.2f} |"
        )
    if args.churn:
        c = summary["churn"]
        print(
            f"churn {c['churn_per_s']:,.0f}/s: bystander "
            f"p50 {c['ping_median_ms']:.2f} ms, "
            f"p99 {c['ping_p99_ms']:.2f} ms, max {c['ping_max_ms']:.2f} ms, "
            f"server CPU {c['server_cpu_pct']:.0f} %"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
