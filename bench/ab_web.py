"""Web fan-out against TCP fan-out, side by side (issue 16's cost target).

Usage::

    python bench/ab_web.py [--runs 5] [--workloads fanout] [-- BENCH OPTIONS]

Each run starts a fresh daemon,
``twistd -n chat --tcp tcp:P:interface=127.0.0.1 --web tcp:W:interface=127.0.0.1
--history-db off --flood-burst 0 --flood-rate 0 --max-per-ip 0`` (as
``bench/ab_hotpath.py`` starts one, plus ``--web``), the same daemon for
both sides so that only what the clients speak differs, and drives it with
``python -m twisted_chat.bench --proto line --port P`` or ``--proto web
--port W`` (``--json``, ``--server-pid``).  Runs alternate between the two
and the order flips every round, so a machine growing busier hurts both
alike.  It prints every run, then per workload the median deliveries per
second and the median server CPU time per delivery of each, and their
ratios: the target is web's CPU per delivery within 2x TCP's.  Exit status
1 when any run lost or duplicated a delivery.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Seconds a daemon gets to open its ports, and a bench run to finish.
START_TIMEOUT = 30.0
RUN_TIMEOUT = 900.0
PROTOS = ("line", "web")

Report = dict[str, Any]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"twistd did not open port {port}") from None
            time.sleep(0.05)
        else:
            return


def stop(daemon: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 seconds; always reaped."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def one_run(python: str, proto: str, workload: str, extra: list[str]) -> Report:
    """One bench run's ``--json`` report against a fresh daemon."""
    tcp, web = free_port(), free_port()
    twistd = str(Path(python).absolute().with_name("twistd"))
    directory = tempfile.mkdtemp(prefix="ab-web-")
    daemon = subprocess.Popen(  # noqa: S603 - our own twistd, our arguments
        [twistd, "--nodaemon", "--pidfile=", "chat",
         "--tcp", f"tcp:{tcp}:interface=127.0.0.1",
         "--web", f"tcp:{web}:interface=127.0.0.1", "--history-db", "off",
         "--flood-burst", "0", "--flood-rate", "0", "--max-per-ip", "0"],
        cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    port = web if proto == "web" else tcp
    try:
        wait_for_port(tcp, daemon)
        wait_for_port(web, daemon)
        done = subprocess.run(  # noqa: S603 - our own bench
            [python, "-m", "twisted_chat.bench", "--proto", proto,
             "--port", str(port), "--workload", workload,
             "--server-pid", str(daemon.pid), "--json", "--no-progress", *extra],
            capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
        )  # fmt: skip
        if not done.stdout.strip():
            raise SystemExit(f"the bench printed nothing: {done.stderr.strip()}")
        report: Report = json.loads(done.stdout)
        return report
    finally:
        stop(daemon)
        shutil.rmtree(directory, ignore_errors=True)


def numbers(report: Report) -> tuple[float, float, float, float]:
    """(deliveries/s, server CPU µs per delivery, p50 ms, p99 ms)."""
    rate = float(report["deliveries_per_s"])
    cpu = float((report.get("server") or {}).get("cpu_percent") or 0.0)
    per = cpu / 100 / rate * 1e6 if rate else 0.0
    latency = report.get("latency_ms") or {}
    return rate, per, float(latency.get("p50_ms", 0)), float(latency.get("p99_ms", 0))


def describe(report: Report) -> str:
    rate, per, p50, p99 = numbers(report)
    ok = "ok" if report["ok"] else "ERRORS: " + "; ".join(report["errors"])
    server = report.get("server") or {}
    if not report["expected"] and "rss_per_connection_bytes" in server:
        kib = float(server["rss_per_connection_bytes"]) / 1024
        return f"idle: {kib:.1f} KiB of server RSS per connection, {ok}"
    return (
        f"{rate:,.0f} deliveries/s, server CPU {per:.3f} us/delivery, "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"{report['received']:,}/{report['expected']:,} received, {ok}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workloads", default="fanout")
    args = parser.parse_args(argv)
    python = sys.executable
    failed = False
    rows = []
    for workload in args.workloads.split(","):
        got: dict[str, list[tuple[float, float, float, float]]] = {
            p: [] for p in PROTOS
        }
        bad = dict.fromkeys(PROTOS, 0)
        for n in range(args.runs):
            for proto in PROTOS if n % 2 == 0 else PROTOS[::-1]:
                report = one_run(python, proto, workload, extra)
                bad[proto] += not report["ok"]
                failed = failed or not report["ok"]
                got[proto].append(numbers(report))
                print(f"{workload} {proto} run {n + 1}: {describe(report)}", flush=True)
        medians = {
            p: [statistics.median(c) for c in zip(*got[p], strict=True)] for p in PROTOS
        }
        rows.append((workload, medians, bad))
    print()
    print(
        "| workload | proto | deliveries/s | server CPU µs/delivery | p50 ms | p99 ms |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for workload, medians, bad in rows:
        for proto in PROTOS:
            rate, per, p50, p99 = medians[proto]
            flag = f" ({bad[proto]} runs with errors)" if bad[proto] else ""
            print(
                f"| {workload} | {proto}{flag} | {rate:,.0f} | {per:.3f} "
                f"| {p50:.2f} | {p99:.2f} |"
            )
    for workload, medians, _ in rows:
        line_rate, line_cpu = medians["line"][:2]
        web_rate, web_cpu = medians["web"][:2]
        if not (line_cpu and web_rate):
            continue  # idle: no deliveries (its runs above give RSS)
        cpu_ratio = web_cpu / line_cpu
        rate_ratio = line_rate / web_rate
        print(
            f"{workload}: web/TCP server CPU per delivery {cpu_ratio:.2f}x, "
            f"TCP/web deliveries per second {rate_ratio:.2f}x"
        )
    print(f"median of {args.runs}, alternating; load average {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
