"""The daemon with ``--metrics`` and without, alternating, on the hot-path loads.

Usage::

    nice -n -10 .venv/bin/python bench/ab_metrics.py [--runs 5] \\
        [--workloads fanout,rooms] [--scrape-interval 1] \\
        [--on-args '--metrics tcp:{port}:interface=127.0.0.1'] [-- BENCH OPTIONS]

Issue 17's cost target: counting must not cost the hot path, so the
fan-out's median with ``--metrics`` on stays within 3% of off.  One build
(the ``twistd`` next to this Python) is run two ways: a fresh ``twistd -n
chat --tcp tcp:P:interface=127.0.0.1 --history-db off --flood-burst 0
--flood-rate 0 --max-per-ip 0`` a run (as ``bench/ab_hotpath.py`` starts
one), "off" as it is and "on" with ``--on-args`` added (``{port}`` becomes
a free port).  While an "on" daemon lives, a scraper thread GETs
``http://127.0.0.1:{port}/metrics`` every ``--scrape-interval`` seconds
(1 s: Prometheus's default is 15 s, so this is harsh), a new connection a
scrape, with Prometheus's own ``Accept`` (OpenMetrics first) and
``Accept-Encoding: gzip``; every answer must be a 200 that
``prometheus_client``'s parser reads.  After the load, the "on" daemon is
scraped ``--cost-scrapes`` times back to back, idle, for the server CPU
one scrape costs.  Each run is driven by ``python -m twisted_chat.bench
--workload W --server-pid PID --json`` (plus the BENCH OPTIONS), and the
runs alternate, the order flipping every round, so a machine growing
busier hurts both alike.  Prints every run, then per workload the medians
(deliveries per second, server CPU per delivery, latency) of each side and
the ratios on/off (of the medians, and the median of each round's own).
``--on-args ''`` runs the same daemon on both sides (the noise floor).
``--cost-with-clients N`` skips the A/B: it scrapes a daemon holding N idle
clients back to back, for a scrape's server CPU.  Exit status 1 when a run
lost or duplicated a delivery or a scrape failed.  The method and the
figures: docs/bench_metrics.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from attrs import define, field

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _loopback import TWISTD, cpu_seconds, daemon, free_port, wait_for_port
from _scrape import Scrape, Scraper, scrape_once
from ab_web import RUN_TIMEOUT, describe, numbers

#: The daemon's options on both sides: ab_hotpath.py's, abuse limits off.
BASE_OPTIONS = (
    "--history-db", "off", "--flood-burst", "0", "--flood-rate", "0",
    "--max-per-ip", "0",
)  # fmt: skip
DEFAULT_ON_ARGS = "--metrics tcp:{port}:interface=127.0.0.1"
SIDES = ("off", "on")
#: The issue's bound on on/off server CPU per delivery.
TARGET = 1.03

Report = dict[str, Any]


@define
class Run:
    """One bench run against one daemon, and the scrapes beside it."""

    side: str
    workload: str
    report: Report
    #: Every scrape: the periodic ones first, then the idle ones for the cost.
    scrapes: list[Scrape] = field(factory=list)
    periodic: int = 0
    #: Scrapes that started within the bench's measured phase (estimated as
    #: its last ``elapsed_s`` seconds before the bench process ended).
    in_phase: int = 0
    #: Server CPU ms of one scrape of the idle daemon after the load (0: off).
    scrape_cpu_ms: float = 0.0
    #: Whether this run had an endpoint to scrape (an "on" run whose
    #: ``--on-args`` name ``{port}``): then it must have been scraped.
    scraped: bool = False

    @property
    def failed_scrapes(self) -> list[Scrape]:
        return [s for s in self.scrapes if s.error]

    @property
    def ok(self) -> bool:
        unscraped = self.scraped and not self.scrapes
        return bool(self.report.get("ok")) and not unscraped and not self.failed_scrapes


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our options, and the BENCH OPTIONS after ``--``."""
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workloads", default="fanout,rooms")
    parser.add_argument("--twistd", default=TWISTD)
    parser.add_argument(
        "--on-args",
        default=DEFAULT_ON_ARGS,
        help="the daemon options the 'on' side adds ({port}: a free port that "
        "is scraped); default %(default)r",
    )
    parser.add_argument("--scrape-path", default="/metrics")
    parser.add_argument(
        "--scrape-interval", type=float, default=1.0, help="seconds (0: no scraper)"
    )
    parser.add_argument(
        "--cost-scrapes",
        type=int,
        default=50,
        help="back-to-back scrapes of the idle 'on' daemon after each run",
    )
    parser.add_argument(
        "--cost-with-clients",
        type=int,
        default=0,
        metavar="N",
        help="instead of the A/B: the server CPU of a scrape while N idle "
        "clients are connected (the bench's idle workload), 'on' daemon only",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.scrape_interval < 0:
        parser.error("--scrape-interval must not be negative")
    return args, extra


def one_run(
    args: argparse.Namespace, side: str, workload: str, extra: list[str]
) -> Run:
    """A fresh daemon (with ``--on-args`` when ``side`` is on) under one bench run."""
    port = free_port()
    options = list(BASE_OPTIONS)
    if side == "on":
        options += shlex.split(args.on_args.replace("{port}", str(port)))
    scrape = side == "on" and "{port}" in args.on_args
    with daemon(args.twistd, *options) as chat:
        scraper = None
        if scrape:
            wait_for_port(chat.proc, port, chat.log)
            if args.scrape_interval > 0:
                scraper = Scraper(port, args.scrape_path, args.scrape_interval)
                scraper.start()
        try:
            done = subprocess.run(  # noqa: S603 - our own bench, our arguments
                [sys.executable, "-m", "twisted_chat.bench", "--host", "127.0.0.1",
                 "--port", str(chat.port), "--workload", workload,
                 "--server-pid", str(chat.pid), "--json", "--no-progress", *extra],
                capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
            )  # fmt: skip
            ended = time.monotonic()
        finally:
            if scraper is not None:
                scraper.stop()
        if not done.stdout.strip():
            raise SystemExit(f"the bench printed nothing: {done.stderr.strip()}")
        report: Report = json.loads(done.stdout)
        asked = args.scrape_interval > 0 or args.cost_scrapes > 0
        run = Run(side, workload, report, scraped=scrape and asked)
        if scraper is not None:
            run.scrapes = scraper.scrapes
            run.periodic = len(scraper.scrapes)
            begin = ended - float(report.get("elapsed_s") or 0.0)
            run.in_phase = sum(1 for s in run.scrapes if begin <= s.at <= ended)
        if scrape and args.cost_scrapes > 0:
            before = cpu_seconds(chat.pid)
            costs = [
                scrape_once(port, args.scrape_path) for _ in range(args.cost_scrapes)
            ]
            run.scrape_cpu_ms = (cpu_seconds(chat.pid) - before) / len(costs) * 1e3
            run.scrapes += costs
        return run


def describe_run(run: Run) -> str:
    """One line: the bench's figures, and the scrapes of an "on" run."""
    text = describe(run.report)
    if run.side == "on" and run.scrapes:
        families = max(s.families for s in run.scrapes)
        slowest = max(s.seconds for s in run.scrapes) * 1e3
        text += (
            f"; {run.periodic} scrapes ({run.in_phase} in the measured phase) "
            f"+ {len(run.scrapes) - run.periodic} idle, "
            f"{families} families, slowest {slowest:.1f} ms, "
            f"{run.scrape_cpu_ms:.2f} ms server CPU a scrape"
        )
        for bad in run.failed_scrapes[:3]:
            text += f"; SCRAPE FAILED: {bad.error}"
    return text


def table(runs: list[Run], workloads: list[str]) -> list[str]:
    """The medians per workload and side, and the on/off ratios."""
    head = (
        "| workload | metrics | deliveries/s | server CPU µs/delivery "
        "| p50 ms | p99 ms | scrapes in phase | server CPU ms/scrape |"
    )
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    ratios = []
    for workload in workloads:
        medians: dict[str, list[float]] = {}
        for side in SIDES:
            mine = [r for r in runs if r.workload == workload and r.side == side]
            if not mine:
                continue
            columns = zip(*(numbers(r.report) for r in mine), strict=True)
            medians[side] = [statistics.median(c) for c in columns]
            rate, per, p50, p99 = medians[side]
            bad = sum(not r.ok for r in mine)
            flag = f" ({bad} runs with errors)" if bad else ""
            phase = cost = "-"
            if side == "on":
                phase = f"{statistics.median(r.in_phase for r in mine):g}"
                cost = f"{statistics.median(r.scrape_cpu_ms for r in mine):.2f}"
            lines.append(
                f"| {workload} | {side}{flag} | {rate:,.0f} | {per:.3f} "
                f"| {p50:.2f} | {p99:.2f} | {phase} | {cost} |"
            )
        if len(medians) < len(SIDES):
            continue
        if not (medians["off"][0] and medians["off"][1]):
            ratios.append(
                f"{workload}: on/off n/a (no server CPU measured: runs too short "
                "for /proc's 10 ms ticks)"
            )
            continue
        cpu = medians["on"][1] / medians["off"][1]
        rate = medians["on"][0] / medians["off"][0]
        verdict = "within" if cpu <= TARGET else "OVER"
        ratios.append(
            f"{workload}: on/off server CPU per delivery {cpu:.3f}x "
            f"({verdict} the 3% target), deliveries/s {rate:.3f}x; "
            f"median of the rounds' own ratios {paired(runs, workload):.3f}x"
        )
    return [*lines, "", *ratios]


def paired(runs: list[Run], workload: str) -> float:
    """The median of each round's on/off CPU per delivery (a round's two runs
    ran back to back, so a machine's drift cancels in their ratio)."""
    mine = [r for r in runs if r.workload == workload]
    on = [numbers(r.report)[1] for r in mine if r.side == "on"]
    off = [numbers(r.report)[1] for r in mine if r.side == "off"]
    ratios = [a / b for a, b in zip(on, off, strict=False) if b]
    return statistics.median(ratios) if ratios else float("nan")


def connected(port: int, path: str) -> float:
    """``twisted_chat_clients`` summed over transports, read from a scrape."""
    return scrape_once(port, path).clients


def scrape_cost(args: argparse.Namespace, clients: int, extra: list[str]) -> int:
    """``--cost-scrapes`` scrapes back to back with ``clients`` idle clients in,
    against the same wall time without scrapes: server CPU ms a scrape."""
    port = free_port()
    options = [*BASE_OPTIONS, *shlex.split(args.on_args.replace("{port}", str(port)))]
    with daemon(args.twistd, *options) as chat:
        wait_for_port(chat.proc, port, chat.log)
        bench = subprocess.Popen(  # noqa: S603 - our own bench, our arguments
            [sys.executable, "-m", "twisted_chat.bench", "--port", str(chat.port),
             "--workload", "idle", "--clients", str(clients), "--duration", "30",
             "--json", "--no-progress", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while connected(port, args.scrape_path) < clients:
                if bench.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{clients} idle clients never all connected")
                time.sleep(0.2)  # polling the clients gauge, bounded
            lines: list[float] = []
            for _ in range(args.runs):
                start, before = time.monotonic(), cpu_seconds(chat.pid)
                scrapes = [
                    scrape_once(port, args.scrape_path)
                    for _ in range(args.cost_scrapes)
                ]
                busy = cpu_seconds(chat.pid) - before
                wall = time.monotonic() - start
                before = cpu_seconds(chat.pid)
                time.sleep(wall)  # the same wall time, unscraped: the idle floor
                idle = cpu_seconds(chat.pid) - before
                failed = [s.error for s in scrapes if s.error]
                if failed:
                    raise SystemExit(f"a scrape failed: {failed[0]}")
                ms = (busy - idle) / len(scrapes) * 1e3
                lines.append(ms)
                families = max(s.families for s in scrapes)
                print(
                    f"{clients} clients: {len(scrapes)} scrapes in {wall:.2f} s, "
                    f"server CPU {busy * 1e3:.0f} ms (idle floor {idle * 1e3:.0f} ms): "
                    f"{ms:.2f} ms a scrape, {families} families",
                    flush=True,
                )
        finally:
            bench.kill()
            bench.wait()
    best = statistics.median(lines)
    print(
        f"median {best:.2f} ms of server CPU a scrape with {clients} clients: at one "
        f"scrape a second, {best / 10:.2f}% of a core; load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.cost_with_clients:
        return scrape_cost(args, args.cost_with_clients, extra)
    workloads = args.workloads.split(",")
    load = os.getloadavg()[0]
    runs: list[Run] = []
    for workload in workloads:
        for n in range(args.runs):
            for side in SIDES if n % 2 == 0 else SIDES[::-1]:
                run = one_run(args, side, workload, extra)
                runs.append(run)
                print(f"{workload} {side} run {n + 1}: {describe_run(run)}", flush=True)
    print()
    for line in table(runs, workloads):
        print(line)
    print(
        f"medians of {args.runs}, alternating; on = {args.on_args!r}, scraped every "
        f"{args.scrape_interval:g} s; bench options {extra or 'none'}; load average "
        f"{load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
