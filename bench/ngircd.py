"""ngircd for the load generator's IRC mode, and the IRC-against-line comparison.

Usage::

    python bench/ngircd.py [--stock] [-- BENCH OPTIONS]     # one bench run
    python bench/ngircd.py --serve [--port N]               # just the server
    python bench/ngircd.py --compare [--runs 3] [--workloads fanout,rooms,latency]
        [--twistd-irc] [-- BENCH OPTIONS]

It writes an ngircd.conf(5) into a fresh temporary directory for a free
loopback port, starts ``/usr/sbin/ngircd -n -f CONFIG`` (``-n``: stay in the
foreground, log to stderr), waits until the port answers, and stops the
server (SIGTERM, then SIGKILL) when done.  The first form runs
``python -m twisted_chat.bench --proto irc --port PORT --server-pid PID``
with the options after ``--``.  ``--compare`` alternates, ``--runs`` times
per workload, a bench run with ``--proto irc`` against a fresh ngircd and
one with ``--proto line`` against a fresh ``twistd -n chat --tcp ...``
(started as ``bench/ab_hotpath.py`` starts it: flood control and the per-IP
cap off, no history), and prints each run and the medians side by side;
``--twistd-irc`` adds ``--proto irc`` against ``twistd chat --irc`` (the
same daemon with ``--irc`` on a second port).

The configuration, and why (ngircd.conf(5), ngircd 26.1's ``conn.c``):

``MaxConnectionsIP = 0``, ``MaxConnections = 0``
    no per-address cap (ngircd's default is 5 connections per IP address);
    ngircd has no connection-rate throttle for clients (``ConnectRetry`` is
    the retry interval of its *outgoing* server links, not a client limit).
``MaxJoins = 0``
    no cap on the channels a user joins (the bench joins one).
``DNS = no``, ``Ident = no``, ``PAM = no``
    no resolver/ident sub-process per connection, which would hold each
    registration back (ngircd ignores a socket until its lookup ends).
``MaxPenaltyTime = 0``
    no penalty time.  By default ngircd stops reading a client for a second
    whenever it sent 256 bytes or more within a second, or left unhandled
    lines after a pass of the loop: a flat-out sender would get about two
    messages a second through.
``DefaultUserModes = F``
    user mode ``F`` ("relaxed flood protection", normally settable only by
    operators) on every client: ngircd then handles 10 lines of a client
    per pass of its loop instead of 3 and never throttles it.
    ``--stock`` leaves both flood settings at their defaults.

What no setting changes: ngircd handles at most 10 lines (3 without
``F``) of one client per pass of its loop, and since version 26 it stops
reading a client while more than 513 bytes of its input wait (NEWS, 26~rc1),
so a pipelining sender is slowed, never dropped (its 2,048-byte read buffer
cannot overflow).  It drops a reader whose unsent output passes 32 KiB
("Write buffer space exhausted"); the kernel's socket buffers come first, so
only a bench worker megabytes behind (a CPU-starved machine) sees it, as a
closed connection and missing deliveries.  The bench runs ngircd with the
line mode's default ``--window`` (200): the same load for both servers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import BenchServer, free_port, stop, wait_for_port

#: A bench --json report.
Report = dict[str, Any]

NGIRCD = "/usr/sbin/ngircd"
#: Seconds a bench run gets to finish.
RUN_TIMEOUT = 900.0
#: The bench's numbers quoted in the comparison, from its --json report.
COLUMNS = ("deliveries_per_s", "p50_ms", "p99_ms", "cpu_us")

CONFIG = """\
# Written by bench/ngircd.py for the load generator (see its docstring).
[Global]
Name = irc.bench
Info = twisted-chat bench
AdminInfo1 = bench
AdminInfo2 = bench
AdminEMail = bench@localhost
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = bench
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
PingTimeout = 120
PongTimeout = 20
{penalty}
[Options]
DNS = no
Ident = no
PAM = no
IncludeDir = {directory}
{modes}
"""


def write_config(directory: Path, port: int, *, stock: bool = False) -> Path:
    """Write the bench's ngircd.conf into ``directory`` and return its path."""
    text = CONFIG.format(
        port=port,
        directory=directory,
        penalty="" if stock else "MaxPenaltyTime = 0",
        modes="" if stock else "DefaultUserModes = F",
    )
    path = directory / "ngircd.conf"
    path.write_text(text)
    return path


class Ngircd(BenchServer):
    """An ngircd with the bench's configuration (see the module)."""

    name = "ngircd"
    program = NGIRCD

    def __init__(
        self, *, port: int = 0, stock: bool = False, log: Path | None = None
    ) -> None:
        super().__init__(port=port, log=log)
        self.stock = stock
        self.config = write_config(self.directory, self.port, stock=stock)

    def command(self) -> list[str]:
        return [NGIRCD, "-n", "-f", str(self.config)]


def bench(python: str, port: int, pid: int, proto: str, extra: list[str]) -> Report:
    """One bench run's --json report (the run's own errors are in it)."""
    done = subprocess.run(  # noqa: S603 - our own bench
        [python, "-m", "twisted_chat.bench", "--proto", proto, "--port", str(port),
         "--server-pid", str(pid), "--json", "--no-progress", *extra],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    if not done.stdout.strip():
        raise SystemExit(f"the bench printed nothing: {done.stderr.strip()}")
    report: Report = json.loads(done.stdout)
    return report


def numbers(report: Report) -> tuple[float, float, float, float]:
    """(deliveries/s, p50 ms, p99 ms, server CPU µs per delivery)."""
    rate = float(report["deliveries_per_s"])
    latency = report.get("latency_ms") or {}
    cpu = (report.get("server") or {}).get("cpu_percent") or 0.0
    per = float(cpu) / 100 / rate * 1e6 if rate else 0.0
    return rate, float(latency.get("p50_ms", 0)), float(latency.get("p99_ms", 0)), per


def run_twistd(python: str, workload: str, extra: list[str], proto: str) -> Report:
    """One run against a fresh twistd, started as bench/ab_hotpath.py starts
    it; ``proto`` ``"irc"`` adds ``--irc`` and drives that port."""
    port, irc_port = free_port(), free_port()
    twistd = str(Path(python).absolute().with_name("twistd"))
    irc = ["--irc", f"tcp:{irc_port}:interface=127.0.0.1"] if proto == "irc" else []
    directory = tempfile.mkdtemp(prefix="bench-twistd-")
    daemon = subprocess.Popen(  # noqa: S603 - our own twistd, our arguments
        [twistd, "--nodaemon", "--pidfile=", "chat",
         "--tcp", f"tcp:{port}:interface=127.0.0.1", *irc, "--history-db", "off",
         "--flood-burst", "0", "--flood-rate", "0", "--max-per-ip", "0"],
        cwd=directory,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    target = irc_port if irc else port
    try:
        wait_for_port(target, daemon, twistd)
        options = ["--workload", workload, *extra]
        return bench(python, target, daemon.pid, proto, options)
    finally:
        stop(daemon)
        shutil.rmtree(directory, ignore_errors=True)


def run_ngircd(python: str, workload: str, extra: list[str], stock: bool) -> Report:
    """One ``--proto irc`` run against a fresh ngircd."""
    with Ngircd(stock=stock) as server:
        return bench(
            python, server.port, server.pid, "irc", ["--workload", workload, *extra]
        )


def run_inspircd(python: str, workload: str, extra: list[str]) -> Report:
    """One ``--proto irc`` run against a fresh InspIRCd (bench/inspircd.py)."""
    from inspircd import Inspircd

    with Inspircd() as server:
        return bench(
            python, server.port, server.pid, "irc", ["--workload", workload, *extra]
        )


def describe(report: Report) -> str:
    rate, p50, p99, cpu = numbers(report)
    ok = "ok" if report["ok"] else "ERRORS: " + "; ".join(report["errors"])
    server = report.get("server") or {}
    if report["workload"]["name"] == "idle":
        per = server.get("rss_per_connection_bytes", 0) / 1024
        return f"{per:.1f} KiB of server RSS per connection, {ok}"
    return (
        f"{rate:,.0f} deliveries/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"server CPU {cpu:.2f} us/delivery, {report['received']:,}/"
        f"{report['expected']:,} received, {ok}"
    )


def compare(args: argparse.Namespace, extra: list[str]) -> int:
    """Alternate irc-vs-ngircd and line-vs-twistd runs; print medians."""
    python = sys.executable
    rows: list[tuple[str, str, float, float, float, float, int]] = []
    failed = False
    for workload in args.workloads.split(","):
        got: dict[str, list[tuple[float, float, float, float]]] = {}
        bad: dict[str, int] = {}
        for n in range(args.runs):
            order = ["irc/ngircd", "line/twistd"]
            if args.twistd_irc:
                order.append("irc/twistd")
            if args.inspircd:
                order.append("irc/inspircd")
            for name in order if n % 2 == 0 else order[::-1]:
                if name == "irc/ngircd":
                    report = run_ngircd(python, workload, extra, args.stock)
                elif name == "irc/inspircd":
                    report = run_inspircd(python, workload, extra)
                else:
                    proto = name.split("/")[0]
                    report = run_twistd(python, workload, extra, proto)
                failed = failed or not report["ok"]
                bad[name] = bad.get(name, 0) + (not report["ok"])
                got.setdefault(name, []).append(numbers(report))
                print(f"{workload} {name} run {n + 1}: {describe(report)}", flush=True)
        for name, runs in got.items():
            medians = [statistics.median(c) for c in zip(*runs, strict=True)]
            rate, p50, p99, cpu = medians
            rows.append((workload, name, rate, p50, p99, cpu, bad[name]))
    print()
    print("| workload | proto/server | deliveries/s | p50 ms | p99 ms | us/delivery |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for workload, name, rate, p50, p99, cpu, errors in rows:
        # A run with errors (a lost delivery, a dropped client) is flagged.
        flag = (
            f" ({errors} run{'s' if errors > 1 else ''} with errors)" if errors else ""
        )
        print(
            f"| {workload} | {name}{flag} | {rate:,.0f} | {p50:.2f} | {p99:.2f} "
            f"| {cpu:.2f} |"
        )
    print(f"\nmedian of {args.runs}; load average {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--stock",
        action="store_true",
        help="keep ngircd's flood penalties (MaxPenaltyTime, no +F)",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="start ngircd, print its port and pid, run until Ctrl-C",
    )
    parser.add_argument("--port", type=int, default=0, help="for --serve")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="irc vs ngircd and line vs twistd, alternating",
    )
    parser.add_argument(
        "--twistd-irc",
        action="store_true",
        help="with --compare, also --proto irc against twistd chat --irc",
    )
    parser.add_argument(
        "--inspircd",
        action="store_true",
        help="with --compare, also --proto irc against InspIRCd (bench/inspircd.py)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workloads", default="fanout,rooms,latency")
    args = parser.parse_args(argv)  # fmt: skip
    if args.compare:
        return compare(args, extra)
    return Ngircd(port=args.port, stock=args.stock).serve_or_bench(args.serve, extra)


if __name__ == "__main__":
    sys.exit(main())
