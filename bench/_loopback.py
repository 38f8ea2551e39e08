"""
What the loopback load scripts share (``bench/churn.py``, ``bench/rooms_amplify.py``).

A daemon started as a subprocess on 127.0.0.1 only and always killed at the
end, the process's CPU time from ``/proc``, source addresses spread over
127.0.0.0/8 (so per-address caps and rate limits see many clients), a
bystander that measures ``/ping`` round trips, percentiles, and the command
line and report around the runs (:func:`bench_parser`, :func:`add_run_options`,
:func:`run_and_report`).  Nothing here sleeps for luck: waits poll a
condition with a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from attrs import define, field

#: The twistd next to this Python (the checkout's venv).
TWISTD = str(Path(sys.executable).with_name("twistd"))
#: Seconds a daemon gets to open its port, or to exit after SIGTERM.
START_TIMEOUT = 30.0
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def source_address(n: int, block: int = 1) -> str:
    """
    The ``n``-th loopback source address of ``block`` (127.block.x.y).

    Linux routes all of 127.0.0.0/8 to ``lo``, so a client can ``bind()``
    to any of them; 65,534 addresses a block, never 127.0.0.1 itself.
    """
    n = n % 65_534 + 1
    return f"127.{block}.{n >> 8}.{n & 0xFF}"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of process ``pid`` in KiB (``VmHWM``: its peak RSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(values: list[float]) -> float:
    """The median, NaN for none."""
    return statistics.median(values) if values else float("nan")


@define
class Daemon:
    """A ``twistd -n chat`` listening on 127.0.0.1:``port``."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    state: Path

    @property
    def pid(self) -> int:
        """The daemon's process id (``twistd -n`` does not fork)."""
        return self.proc.pid

    def cpu(self) -> float:
        """CPU seconds the daemon used so far."""
        return cpu_seconds(self.pid)

    def log_text(self) -> str:
        """The daemon's log so far."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def daemon(twistd: str, *options: str) -> Iterator[Daemon]:
    """
    Start ``twistd -n chat --tcp tcp:PORT:interface=127.0.0.1 OPTIONS``.

    Loopback only, in a fresh state directory; SIGTERM at the end, SIGKILL
    if it does not exit within ``START_TIMEOUT``.
    """
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmp:
        state = Path(tmp)
        port = free_port()
        log = state / "twistd.log"
        command = [
            twistd,
            "-n",
            "--pidfile=",
            "chat",
            "--tcp",
            f"tcp:{port}:interface=127.0.0.1",
            "--state-dir",
            str(state),
            *options,
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=state, stdout=out, stderr=out)  # noqa: S603
        try:
            wait_for_port(proc, port, log)
            yield Daemon(proc=proc, port=port, log=log, state=state)
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server we started, SIGKILL if it is not gone in START_TIMEOUT."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Wait until ``proc`` accepts on 127.0.0.1:``port``; SystemExit if never."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"twistd exited early:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)  # polling a condition, bounded by the deadline
        else:
            return
    raise SystemExit(f"twistd never opened port {port}:\n{log.read_text()}")


@define
class LineClient:
    """A blocking line client bound to its own loopback source address."""

    sock: socket.socket
    buffer: bytes = b""
    closed: bool = False

    @classmethod
    def connect(cls, port: int, source: str, timeout: float = 10.0) -> LineClient:
        """Connect from ``source`` to the daemon."""
        sock = socket.socket()
        sock.bind((source, 0))
        # Small request lines must not wait for Nagle (a 200 ms stall that
        # would be the client's doing, not the daemon's).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        return cls(sock=sock)

    def say(self, text: str) -> None:
        """Send one line."""
        self.sock.sendall(text.encode() + b"\n")

    def expect(self, prefix: str, deadline: float) -> tuple[str, list[str]]:
        """
        Read lines until one starts with ``prefix``.

        :return: that line, and every line before it.
        :raises TimeoutError: at ``deadline`` (a ``time.monotonic`` value).
        """
        wanted = prefix.encode()
        skipped: list[str] = []
        while True:
            while b"\r\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\r\n", 1)
                if line.startswith(wanted):
                    return line.decode(errors="replace"), skipped
                skipped.append(line.decode(errors="replace"))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(prefix)
            self.sock.settimeout(left)
            data = self.sock.recv(1 << 20)
            if not data:
                self.closed = True
                raise ConnectionError(f"closed while waiting for {prefix!r}")
            self.buffer += data

    def close(self) -> None:
        """Hang up."""
        with contextlib.suppress(OSError):
            self.sock.close()


@define
class Pinger:
    """A bystander: ``/ping N`` every ``interval`` seconds, round trips kept."""

    client: LineClient
    interval: float = 0.1
    rtts: list[float] = field(factory=list)
    lost: int = 0

    def run(self, seconds: float, timeout: float = 30.0) -> None:
        """Ping for ``seconds``; a ping unanswered within ``timeout`` is lost."""
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            n += 1
            sent = time.monotonic()
            self.client.say(f"/ping {n}")
            try:
                self.client.expect(f"* pong {n}", sent + timeout)
            except (TimeoutError, ConnectionError):
                self.lost += 1
                return
            now = time.monotonic()
            self.rtts.append(now - sent)
            pause = sent + self.interval - now
            if pause > 0:
                time.sleep(pause)  # the ping schedule, not a wait for a result

    def summary(self) -> dict[str, float]:
        """Median, p99 and max round trip in ms."""
        ms = [rtt * 1000 for rtt in self.rtts]
        return {
            "ping_median_ms": median(ms),
            "ping_p99_ms": percentile(ms, 0.99),
            "ping_max_ms": max(ms) if ms else float("nan"),
            "pings": float(len(ms)),
            "pings_lost": float(self.lost),
        }


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The parser a script starts from: its first doc line, and ``--twistd``."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--twistd", default=TWISTD)
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--runs``, ``--daemon-option`` and ``--json``, after a script's own."""
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--daemon-option",
        action="append",
        default=[],
        help="an extra option for the daemon (repeatable), e.g. --history-db=off",
    )
    parser.add_argument("--json", action="store_true")


def run_and_report(
    args: argparse.Namespace,
    one_run: Callable[[argparse.Namespace], dict[str, float]],
    keys: tuple[str, ...],
    setup: str,
) -> int:
    """
    ``one_run`` ``--runs`` times, then a table of ``keys`` per run and their
    medians (or all of it as JSON with ``--json``); exit status 0.

    :param setup: what was measured, for the table's heading, e.g.
        ``"1000 members, 100 connects/s for 20 s"``.
    """
    runs = []
    for n in range(args.runs):
        print(f"run {n + 1}/{args.runs} ...", file=sys.stderr, flush=True)
        runs.append(one_run(args))
    medians = {key: median([run.get(key, math.nan) for run in runs]) for key in keys}
    if args.json:
        print(json.dumps({"twistd": args.twistd, "runs": runs, "medians": medians}))
        return 0
    print(f"twistd {args.twistd}: {setup}, load average {os.getloadavg()[0]:.2f}")
    print("| run | " + " | ".join(keys) + " |")
    print("|" + "---|" * (len(keys) + 1))
    for n, run in enumerate(runs, 1):
        cells = " | ".join(f"{run.get(key, float('nan')):.1f}" for key in keys)
        print(f"| {n} | {cells} |")
    cells = " | ".join(f"{medians[key]:.1f}" for key in keys)
    print(f"| median | {cells} |")
    return 0
