"""What a history writer that falls behind costs the daemon (issue 11, finding 4).

Usage::

    python bench/history_backlog.py [--twistd PATH] [--runs 3] [--seconds 8]
        [--senders 4] [--scenarios stopped,locked,slow-reader] [--json]

Every run starts ``twistd -n chat`` (``--twistd``, e.g. the checkout before
issue 11: ``/work/baseline/.venv/bin/twistd``) on 127.0.0.1 with a fresh
state directory, flood control and the per-address limits off, and stops
it at the end. Scenarios:

- ``stopped``: the history writer process is SIGSTOPped, then S senders
  talk flat out in one room (one reader drains it) for ``--seconds``.
  Reported: the daemon's RSS growth (peak ``VmHWM`` minus RSS before the
  load), how many messages never reached the file (sent minus stored,
  counted after SIGCONT and a clean exit), and the SIGTERM-to-exit time,
  with the writer still stopped when SIGTERM is sent.
- ``locked``: as ``stopped``, but the writer runs and another process
  holds ``BEGIN EXCLUSIVE`` on the history file during the load and the
  SIGTERM.
- ``slow-reader``: a busy room (S senders flat out, one draining reader)
  and one member that never reads; the server drops it once its send
  queue is full. Reported: the daemon's RSS growth, with history on (the
  default SQLite file) and off (``--history-db off``).

Medians of ``--runs`` runs. Every load goes to 127.0.0.1 only, is bounded
in time, and every daemon is killed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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

from _loopback import START_TIMEOUT, TWISTD, free_port, rss_kib, wait_for_port

#: How long SIGTERM may take before the bench gives up and kills (a bound).
EXIT_TIMEOUT = 60.0
LINE = b"x" * 90 + b"\n"
#: Lines a sender writes per sendall.
CHUNK = LINE * 64


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(p) for p in text)
    return found


class Daemon:
    """One twistd on a fresh port and state directory."""

    def __init__(self, twistd: str, state: Path, *extra: str) -> None:
        self.port = free_port()
        self.state = state
        self.log = state / "twistd.log"
        state.mkdir(parents=True, exist_ok=True)
        args = [
            twistd,
            "--nodaemon",
            "--pidfile=",
            "chat",
            "--tcp",
            f"tcp:{self.port}:interface=127.0.0.1",
            "--udp",
            f"127.0.0.1:{free_port()}",
            "--state-dir",
            str(state),
            "--flood-burst",
            "0",
            "--flood-rate",
            "0",
            "--max-per-ip",
            "0",
            *extra,
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own twistd
                args, cwd=state, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(self.proc, self.port, self.log)
        except SystemExit:
            self.kill()
            raise

    def writer_pid(self) -> int | None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            kids = children(self.proc.pid)
            if kids:
                return kids[0]
            time.sleep(0.05)  # polling a condition, bounded by the deadline
        return None

    def terminate(self) -> float:
        """SIGTERM; the seconds until the process exited."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - began

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def connect(port: int, nick: str, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"/nick {nick}\n/join #busy\n/ping\n".encode())
    if rcvbuf is None:
        buffer = b""
        sock.settimeout(START_TIMEOUT)
        while b"* pong" not in buffer:
            data = sock.recv(65536)
            if not data:
                raise SystemExit(f"{nick} was disconnected at start")
            buffer += data
    return sock


def load(port: int, senders: int, seconds: float, slow: bool) -> int:
    """Senders flat out into #busy for ``seconds``; the lines sent."""
    reader = connect(port, "reader")
    slowpoke = connect(port, "slowpoke", rcvbuf=4096) if slow else None
    socks = [connect(port, f"sender{n}") for n in range(senders)]
    stop = threading.Event()
    sent = [0] * senders

    def drain(sock: socket.socket) -> None:
        sock.settimeout(0.5)
        while not stop.is_set():
            try:
                if not sock.recv(1 << 20):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def send(n: int, sock: socket.socket) -> None:
        sock.settimeout(1.0)
        while not stop.is_set():
            try:
                sock.sendall(CHUNK)
            except TimeoutError:
                continue  # the server's flow control: it reads as it can
            except OSError:
                return
            sent[n] += CHUNK.count(b"\n")

    threads = [threading.Thread(target=drain, args=(s,)) for s in [reader, *socks]]
    threads += [threading.Thread(target=send, args=(n, s)) for n, s in enumerate(socks)]
    for t in threads:
        t.start()
    time.sleep(seconds)  # the load runs for a fixed, bounded time
    stop.set()
    for t in threads:
        t.join(timeout=10)
    for sock in [reader, *socks] + ([slowpoke] if slowpoke else []):
        sock.close()
    return sum(sent)


def stored(state: Path) -> int:
    path = state / "history.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        (count,) = conn.execute("SELECT coalesce(sum(count), 0) FROM turns").fetchone()
    return int(count)


def run_behind(
    twistd: str, senders: int, seconds: float, locked: bool
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        daemon = Daemon(twistd, state, "--max-sendq", str(64 << 20))
        lock: sqlite3.Connection | None = None
        try:
            writer = daemon.writer_pid()
            time.sleep(0.5)  # let the writer open the file
            if locked:
                lock = sqlite3.connect(state / "history.sqlite3", isolation_level=None)
                lock.execute("BEGIN EXCLUSIVE")
            elif writer is not None:
                os.kill(writer, signal.SIGSTOP)
            before = rss_kib(daemon.proc.pid)
            sent = load(daemon.port, senders, seconds, slow=False)
            # Let the daemon finish what it read.
            time.sleep(1.0)
            peak = rss_kib(daemon.proc.pid, "VmHWM")
            exit_s = daemon.terminate()
            if writer is not None and not locked:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(writer, signal.SIGCONT)
        finally:
            if lock is not None:
                lock.close()
            daemon.kill()
        if writer is not None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(writer, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)  # the writer commits what it read, then exits
        kept = stored(state)
        return {
            "sent": sent,
            "lost": sent - kept,
            "rss_growth_mib": (peak - before) / 1024,
            "sigterm_s": exit_s,
        }


def run_slow_reader(twistd: str, senders: int, seconds: float, history: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        extra = [] if history else ["--history-db", "off"]
        daemon = Daemon(twistd, Path(tmp), *extra)
        try:
            time.sleep(0.5)
            before = rss_kib(daemon.proc.pid)
            load(daemon.port, senders, seconds, slow=True)
            time.sleep(1.0)
            peak = rss_kib(daemon.proc.pid, "VmHWM")
        finally:
            daemon.kill()
        return (peak - before) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--twistd", default=TWISTD)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--scenarios", default="stopped,locked,slow-reader")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for scenario in args.scenarios.split(","):
        runs: list[dict[str, float]] = []
        for _ in range(args.runs):
            if scenario == "slow-reader":
                runs.append(
                    {
                        "history_on_mib": run_slow_reader(
                            args.twistd, args.senders, args.seconds, True
                        ),
                        "history_off_mib": run_slow_reader(
                            args.twistd, args.senders, args.seconds, False
                        ),
                    }
                )
            else:
                runs.append(
                    run_behind(
                        args.twistd, args.senders, args.seconds, scenario == "locked"
                    )
                )
        results[scenario] = {
            key: statistics.median(run[key] for run in runs) for key in runs[0]
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"twistd: {args.twistd}  runs: {args.runs}  seconds: {args.seconds}")
    for scenario, values in results.items():
        shown = "  ".join(f"{k}={v:,.1f}" for k, v in values.items())
        print(f"{scenario:12} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
