"""Can a client flood the daemon's log? (issue 11, finding 11)

Usage::

    python bench/log_flood.py [--twistd PATH] [--seconds 30] [--runs 3]
        [--mode refused|accepted] [--json]

Starts ``twistd -n -l FILE chat`` on 127.0.0.1 with history off, then for
``--seconds`` one client connects in a loop from 127.0.0.1, as fast as the
daemon answers:

- ``refused`` (the default): the daemon runs with ``--max-per-ip 1`` and
  the script holds one connection open, so every further connection is
  refused (one ``!`` line, then closed by the daemon).  Each refusal used to
  be a ``refused connection`` warning in the log.
- ``accepted``: ``--max-per-ip 0``; each connection waits for its welcome
  and hangs up, which used to be a ``connected`` and a ``quit`` line.

Each connection ends with a reset from the client (``SO_LINGER`` 0), so
no ``TIME_WAIT`` piles up and the loop can go on for minutes.  The loop
stops after ``--seconds`` or ``--max-connects`` connections, whichever comes
first; then the daemon gets SIGTERM (its shutdown writes the counts of log
lines held back) and the script reports the log file's size, its lines, the
connections made, and log bytes per connection.  With ``--runs N`` the
medians are printed too.  Compare two daemons with ``--twistd`` (e.g.
``/work/baseline/.venv/bin/twistd``).  Everything is loopback only, bounded
in count and time, and the daemon is killed at the end if SIGTERM did not
end it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _loopback import START_TIMEOUT, TWISTD, free_port

#: Seconds a connection may take to be answered before the run is abandoned.
ANSWER_TIMEOUT = 10.0
_SUPPRESSED = re.compile(r"suppressed (\d+) similar events")


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT)
    # Close with a reset: no TIME_WAIT on either side.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bool:
    """Read until ``marker`` is seen or the daemon closes; True if seen."""
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        data += chunk
    return True


def log_files(log: Path) -> list[Path]:
    """The log and its rotated parts: twistd starts a new file every 1 MB."""
    return [log, *log.parent.glob(log.name + ".*")]


def log_size(log: Path) -> int:
    return sum(part.stat().st_size for part in log_files(log))


def log_text(log: Path) -> str:
    return "".join(part.read_text("utf-8", "replace") for part in log_files(log))


def first_client(proc: subprocess.Popen[bytes], port: int, log: Path) -> socket.socket:
    """
    The first connection, once the daemon has taken it in; it stays open, so
    with ``--max-per-ip 1`` every later one is refused.
    """
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited early:\n{log_text(log)}")
        try:
            held = connect(port)
        except OSError:
            time.sleep(0.05)  # polling a condition, bounded by the deadline
            continue
        if read_until(held, b"You joined"):
            return held
        held.close()
    raise SystemExit(f"port {port} never opened")


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="log-flood-") as directory:
        log = Path(directory, "twistd.log")
        max_per_ip = "1" if args.mode == "refused" else "0"
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("LISTEN_", "NOTIFY_SOCKET"))
        }
        proc = subprocess.Popen(  # noqa: S603 - the twistd the user named
            [
                args.twistd,
                "--nodaemon",
                "--pidfile=",
                "--logfile",
                str(log),
                "chat",
                "--tcp",
                f"tcp:{port}:interface=127.0.0.1",
                "--history-db",
                "off",
                "--max-per-ip",
                max_per_ip,
            ],
            cwd=directory,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            held = first_client(proc, port, log)
            before = log_size(log)
            connects = 0
            started = time.monotonic()
            marker = b"\r\n" if args.mode == "refused" else b"You joined"
            while (
                time.monotonic() - started < args.seconds
                and connects < args.max_connects
            ):
                with connect(port) as sock:
                    read_until(sock, marker)
                connects += 1
            elapsed = time.monotonic() - started
            held.close()
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        text = log_text(log)
        size = log_size(log)
    lines = text.splitlines()
    return {
        "connects": connects,
        "seconds": round(elapsed, 1),
        "log_bytes": size - before,
        "log_lines": len(lines),
        "refused_lines": sum("refused connection" in line for line in lines),
        "held_back": sum(int(m[1]) for m in _SUPPRESSED.finditer(text)),
        "bytes_per_connect": round((size - before) / max(1, connects), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--twistd", default=TWISTD)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-connects", type=int, default=300_000)
    parser.add_argument("--mode", choices=["refused", "accepted"], default="refused")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.seconds = min(args.seconds, 300.0)
    results = []
    for run in range(args.runs):
        result = run_once(args)
        results.append(result)
        if not args.json:
            print(f"run {run + 1}: {result}", flush=True)
    keys = results[0].keys()
    medians = {key: statistics.median(r[key] for r in results) for key in keys}
    if args.json:
        print(
            json.dumps(
                {
                    "twistd": args.twistd,
                    "mode": args.mode,
                    "runs": results,
                    "median": medians,
                }
            )
        )
    else:
        print(f"twistd {args.twistd}, mode {args.mode}, {args.runs} runs, medians:")
        print(
            f"  {medians['connects']:.0f} connections in {medians['seconds']} s -> "
            f"{medians['log_bytes'] / 1e6:.3f} MB of log "
            f"({medians['log_lines']:.0f} lines, {medians['refused_lines']:.0f} "
            f"'refused connection', {medians['held_back']:.0f} held back), "
            f"{medians['bytes_per_connect']} bytes per connection"
        )


if __name__ == "__main__":
    main()
