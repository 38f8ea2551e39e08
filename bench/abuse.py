"""Transport abuse, measured from outside: issue 11, findings 2, 5 and 8.

Usage::

    python bench/abuse.py tls [--stalled 4] [--mib 32] [--twistd PATH] [--runs 3]
    python bench/abuse.py reconnect [--loops 32] [--seconds 10] [--twistd PATH]
    python bench/abuse.py paste [--clients 240] [--lines 32768] [--twistd PATH]

Each run starts ``twistd -n chat`` as a subprocess listening on 127.0.0.1
only (``--twistd`` picks the build: ``/work/baseline/.venv/bin/twistd`` for
the code before the fix), drives it from this process, prints one line of
numbers and kills the daemon.  Every load goes to 127.0.0.1, is bounded in
count and time, and stops by itself.  ``--runs N`` repeats and prints the
median.

``tls`` (finding 2): ``--stalled`` clients connect to an ``ssl:`` listener
and send half a ClientHello, then nothing; a plain TCP client sends
``--mib`` MiB of room traffic to ``#lobby`` (flood control off) and
``/ping``\\s at the end.  Prints the daemon's RSS before and after, and how
many stalled clients the daemon has closed 15 s after they connected.
Before the fix every stalled client is a member of ``#lobby`` and the TLS
layer keeps the traffic for it: RSS grows by about ``--mib`` (the stalled
clients share the same bytes objects, so not by ``stalled x mib``), and
nobody is ever closed.

``reconnect`` (finding 5): ``--loops`` threads, all from 127.0.0.1, each
connect, send ``--burst`` lines and close, in a loop, for ``--seconds``
seconds; an observer on 127.0.0.2 counts the lines ``#lobby`` receives.
Prints lines per second received, connections made and refused.  With
flood control per connection only, every reconnect buys a fresh burst.

``paste`` (finding 8): ``--clients`` clients (``--max-per-ip 0``) each paste
``--lines`` lines of one space (``--text`` to change; blank to a person,
a line to flood control) at once, so flood control holds nearly all of it.
Prints the daemon's CPU share (``/proc/PID/stat`` utime + stime) over
``--seconds`` seconds once every paste is in.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _loopback import START_TIMEOUT, TWISTD, cpu_seconds, free_port

from twisted_chat.testing_tls import client_hello, self_signed_pem

#: The longest any one wait in this script lasts.
WAIT = 120.0


class Daemon:
    """``twistd -n chat`` on 127.0.0.1 in a temporary directory."""

    def __init__(self, twistd: str, args: list[str], ports: list[int]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="abuse-bench-"))
        self.log = (self.dir / "twistd.log").open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own twistd, our arguments
            [twistd, "--nodaemon", "--pidfile=", "chat", "--history-db", "off", *args],
            cwd=self.dir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        for port in ports:
            while True:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise SystemExit(f"twistd did not start: {self.log_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)

    def log_text(self) -> str:
        return (self.dir / "twistd.log").read_text("utf-8", "replace")[-2000:]

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.log.close()


def read_until(sock: socket.socket, marker: bytes, buffer: bytes = b"") -> bytes:
    """Read until ``marker`` shows up; return everything read."""
    deadline = time.monotonic() + WAIT
    while marker not in buffer:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise SystemExit(f"closed before {marker!r}: {buffer[-300:]!r}")
        buffer += data
        if time.monotonic() > deadline:
            raise SystemExit(f"no {marker!r} in time")
    return buffer


def chat_client(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=WAIT, source_address=(source, 0)
    )
    read_until(sock, b"You joined #lobby")
    return sock


def closed_within(sock: socket.socket, deadline: float) -> bool:
    """Whether the daemon closes ``sock`` (EOF or reset) before ``deadline``."""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:
            return True


# -- tls ------------------------------------------------------------------------


def bench_tls(args: argparse.Namespace) -> dict[str, float]:
    plain, secure = free_port(), free_port()
    pem = Path(tempfile.mkdtemp(prefix="abuse-pem-")) / "bench.pem"
    pem.write_bytes(self_signed_pem())
    daemon = Daemon(
        args.twistd,
        [
            "--tcp", f"tcp:{plain}:interface=127.0.0.1",
            "--tcp", f"ssl:{secure}:interface=127.0.0.1:privateKey={pem}:certKey={pem}",
            "--flood-burst", "0", "--flood-rate", "0", "--max-per-ip", "0",
        ],
        [plain],
    )  # fmt: skip
    try:
        hello = client_hello()
        connected = time.monotonic()
        stalled = []
        for _ in range(args.stalled):
            sock = socket.create_connection(("127.0.0.1", secure), timeout=WAIT)
            sock.sendall(hello[: len(hello) // 2])
            stalled.append(sock)
        sender = chat_client(plain)
        time.sleep(0.5)  # let the daemon settle before the first reading
        before = daemon.rss_mib()
        line = b"x" * 1000 + b"\n"
        batch = line * 64
        for _ in range(args.mib * 1024 * 1024 // len(batch)):
            sender.sendall(batch)
        sender.sendall(b"/ping\n")
        read_until(sender, b"* pong")
        after = daemon.rss_mib()
        # The fix's deadline is 10 s from connect: wait a little past it.
        closed = sum(closed_within(sock, connected + 15.0) for sock in stalled)
        for sock in stalled:
            sock.close()
        sender.close()
        return {"rss_before_mib": before, "rss_after_mib": after,
                "rss_growth_mib": after - before, "stalled_closed": closed}  # fmt: skip
    finally:
        daemon.kill()


# -- reconnect ------------------------------------------------------------------


def bench_reconnect(args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    daemon = Daemon(args.twistd, ["--tcp", f"tcp:{port}:interface=127.0.0.1"], [port])
    try:
        observer = chat_client(port, source="127.0.0.2")
        stop = time.monotonic() + args.seconds
        counts = {"connects": 0, "refused": 0}
        lock = threading.Lock()
        payload = b"".join(b"flood %d\n" % n for n in range(args.burst))

        def loop() -> None:
            while time.monotonic() < stop:
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                    sock.sendall(payload)
                    first = sock.recv(4096)
                    sock.close()
                except OSError:
                    continue
                with lock:
                    counts["connects"] += 1
                    counts["refused"] += first.startswith(b"! too-many-connections")

        received = 0
        buffer = b""
        threads = [threading.Thread(target=loop) for _ in range(args.loops)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        observer.settimeout(0.2)
        while time.monotonic() < stop:
            try:
                data = observer.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            buffer += data
            *done, buffer = buffer.split(b"\r\n")
            received += sum(1 for line in done if b"> flood " in line)
        elapsed = time.monotonic() - start
        for thread in threads:
            thread.join(timeout=30)
        observer.close()
        return {
            "lines_per_s": received / elapsed,
            "connects_per_s": counts["connects"] / elapsed,
            "refused_per_s": counts["refused"] / elapsed,
        }
    finally:
        daemon.kill()


# -- paste ----------------------------------------------------------------------


def bench_paste(args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    daemon = Daemon(
        args.twistd,
        ["--tcp", f"tcp:{port}:interface=127.0.0.1", "--max-per-ip", "0"],
        [port],
    )
    try:
        paste = (args.text.encode() + b"\n") * args.lines
        clients = []
        for _ in range(args.clients):
            sock = chat_client(port)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            clients.append(sock)
        senders = [
            threading.Thread(target=sock.sendall, args=(paste,)) for sock in clients
        ]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(timeout=WAIT)
        time.sleep(1.0)  # every paste is in the daemon or its socket buffers
        cpu, wall = daemon.cpu_seconds(), time.monotonic()
        time.sleep(args.seconds)
        share = (daemon.cpu_seconds() - cpu) / (time.monotonic() - wall) * 100
        rss = daemon.rss_mib()
        for sock in clients:
            sock.close()
        return {"daemon_cpu_pct": share, "rss_mib": rss}
    finally:
        daemon.kill()


BENCHES: dict[str, Callable[[argparse.Namespace], dict[str, float]]] = {
    "tls": bench_tls,
    "reconnect": bench_reconnect,
    "paste": bench_paste,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bench", choices=sorted(BENCHES))
    parser.add_argument("--twistd", default=TWISTD, help="the twistd to run")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--stalled", type=int, default=4, help="tls: stalled clients")
    parser.add_argument("--mib", type=int, default=32, help="tls: MiB of room traffic")
    parser.add_argument("--loops", type=int, default=32, help="reconnect: threads")
    parser.add_argument("--burst", type=int, default=10, help="reconnect: lines each")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=240, help="paste: clients")
    parser.add_argument("--lines", type=int, default=32768, help="paste: lines each")
    parser.add_argument("--text", default=" ", help="paste: each line's text")
    args = parser.parse_args(argv)
    args.clients = min(args.clients, 1000)
    args.loops = min(args.loops, 64)
    args.seconds = min(args.seconds, 60.0)
    results = []
    for n in range(args.runs):
        result = BENCHES[args.bench](args)
        print(f"run {n + 1}: " + ", ".join(f"{k}={v:.1f}" for k, v in result.items()))
        results.append(result)
    if args.runs > 1:
        medians = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print("median: " + ", ".join(f"{k}={v:.1f}" for k, v in medians.items()))
    print(f"twistd={args.twistd} load={os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
