"""History off against on (SQLite, the default), alternating: fan-out and p99.

Usage::

    python bench/history_ab.py [--runs 5] [--workloads fanout,latency]
        [--python PYTHON] [-- BENCH OPTIONS]

Issue 18's "keep history free": with the default SQLite history on,
fan-out within 5 % and p99 latency within 15 % of history off, in the same
alternating run.  For each workload, ``--runs`` rounds each start a fresh
``twistd -n chat`` (the ``twistd`` next to ``--python``, default this
interpreter) with ``--history-db off`` and one with the default history
(SQLite in a fresh ``--state-dir``), in an order that flips every round,
both with flood control and the per-address cap off (as
``bench/ab_hotpath.py`` starts its daemons), and drives each with that
build's load generator (``python -m twisted_chat.bench --workload W``).
It prints every run, the medians of deliveries per second, p99 and server
CPU per delivery, and on/off ratios against the targets.  After each
history run it counts the messages the database holds (read after the
daemon has stopped, so everything the daemon handed its writer is in) and
says how many of those sent were NOT kept: past its bounded backlog
(``history.side.MAX_WAITING_BYTES``) the store drops turns rather than
slow the chat, so a fast enough fan-out is "free" only by losing history,
and a ratio is only worth quoting with every message kept.

``bench/history_fanout.py`` measures throughput alone, over long fan-out
runs; this is the shorter side-by-side the issue asks for, p99 included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import free_port, stop, wait_for_port
from ngircd import Report, bench, describe, numbers

#: (workload, column, most a ratio on/off may fall short or exceed by).
TARGETS = {("fanout", "deliveries/s"): 0.95, ("latency", "p99 ms"): 1.15}


def run_once(python: str, workload: str, history: bool, extra: list[str]) -> Report:
    """One bench run against a fresh daemon, history ``off`` or the default."""
    port = free_port()
    twistd = str(Path(python).absolute().with_name("twistd"))
    directory = Path(tempfile.mkdtemp(prefix="bench-history-ab-"))
    state = directory / "state"
    state.mkdir()
    history_args = ["--state-dir", str(state)]
    if not history:
        history_args += ["--history-db", "off"]
    daemon = subprocess.Popen(  # noqa: S603 - our own twistd, our arguments
        [twistd, "--nodaemon", "--pidfile=", "chat",
         "--tcp", f"tcp:{port}:interface=127.0.0.1", *history_args,
         "--flood-burst", "0", "--flood-rate", "0", "--max-per-ip", "0"],
        cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, daemon, twistd)
        report = bench(
            python, port, daemon.pid, "line", ["--workload", workload, *extra]
        )
    finally:
        stop(daemon)
    if history:
        report["history_rows"] = _rows(state)
    shutil.rmtree(directory, ignore_errors=True)
    return report


def _rows(state: Path) -> int:
    """Messages the history database holds (0 if there is none)."""
    total = 0
    for path in state.glob("*.sqlite3"):
        with sqlite3.connect(path) as db:
            tables = {row[0] for row in db.execute("select name from sqlite_master")}
            if "turns" in tables:
                query = "select coalesce(sum(count), 0) from turns"
                total += int(db.execute(query).fetchone()[0])
    return total


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workloads", default="fanout,latency")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    failed = False
    rows = []
    dropped: dict[str, int] = {}
    for workload in args.workloads.split(","):
        got: dict[str, list[tuple[float, float, float, float]]] = {"off": [], "on": []}
        for n in range(args.runs):
            order = ["off", "on"] if n % 2 == 0 else ["on", "off"]
            for name in order:
                report = run_once(args.python, workload, name == "on", extra)
                failed = failed or not report["ok"]
                got[name].append(numbers(report))
                rows_note = ""
                if name == "on":
                    kept, sent = report["history_rows"], int(report.get("sent", 0))
                    rows_note = f", {kept:,} history rows"
                    if kept < sent:
                        # The store dropped turns: its backlog bound was hit.
                        rows_note += f" ({sent - kept:,} of {sent:,} NOT kept)"
                        dropped[workload] = dropped.get(workload, 0) + 1
                print(
                    f"{workload} history {name} run {n + 1}: {describe(report)}"
                    f"{rows_note}",
                    flush=True,
                )
        medians = {
            name: [statistics.median(c) for c in zip(*runs, strict=True)]
            for name, runs in got.items()
        }
        rows.append((workload, medians))
    print()
    print("| workload | history | deliveries/s | p50 ms | p99 ms | us/delivery |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for workload, medians in rows:
        for name in ("off", "on"):
            rate, p50, p99, cpu = medians[name]
            print(
                f"| {workload} | {name} | {rate:,.0f} | {p50:.2f} | {p99:.2f} "
                f"| {cpu:.3f} |"
            )
    print()
    for workload, medians in rows:
        for column, index in (("deliveries/s", 0), ("p99 ms", 2), ("us/delivery", 3)):
            off, on = medians["off"][index], medians["on"][index]
            ratio = on / off if off else 0.0
            target = TARGETS.get((workload, column))
            if target is None:
                verdict = ""
            elif column == "deliveries/s":
                verdict = (
                    f" (target >= {target}: {'met' if ratio >= target else 'NOT met'})"
                )
            else:
                verdict = (
                    f" (target <= {target}: {'met' if ratio <= target else 'NOT met'})"
                )
            print(f"{workload} {column}: on / off = {ratio:.3f}{verdict}")
    for workload, runs in dropped.items():
        print(f"{workload}: {runs} history run(s) did not keep every message")
    print(f"median of {args.runs}; load average {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
