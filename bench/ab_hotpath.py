"""Two or more builds of the daemon, alternating, on the hot-path loads.

Usage::

    python bench/ab_hotpath.py [--runs 3] [--workloads fanout,rooms] \\
        NAME=PYTHON[:PYTHONPATH] NAME=PYTHON[:PYTHONPATH] ...

e.g. ``before=/work/baseline/.venv/bin/python after=.venv/bin/python``.  Each
build is the ``twistd`` next to ``PYTHON`` (with ``PYTHONPATH`` set, if given,
so a checkout can be measured without installing it), started fresh for
every run on 127.0.0.1 with the abuse limits off (``--flood-burst 0
--flood-rate 0 --max-per-ip 0 --history-db off``), and driven by that
build's own load generator (``python -m twisted_chat.bench --workload W``).
Runs alternate between the builds and the order flips every round, so a
machine growing busier hurts all alike.  Prints every run and, per build,
the median deliveries per second and the median server CPU time per
delivery: on a shared machine the second moves much less than the first.
The ``latency`` workload (a fixed message rate) also gets the median p50
and p99 delivery latency.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Seconds a daemon gets to open its port, and a load run to finish.
START_TIMEOUT = 30.0
RUN_TIMEOUT = 900.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def one_run(
    python: str, pythonpath: str, workload: str, client: str = ""
) -> tuple[float, float, float, float]:
    """(deliveries/s, server CPU µs per delivery, p50 ms, p99 ms) of one daemon."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    else:
        env.pop("PYTHONPATH", None)
    port = free_port()
    twistd = str(Path(python).absolute().with_name("twistd"))
    daemon = subprocess.Popen(  # noqa: S603 - our own twistd, our arguments
        [twistd, "--nodaemon", "--pidfile=", "chat",
         "--tcp", f"tcp:{port}:interface=127.0.0.1", "--history-db", "off",
         "--flood-burst", "0", "--flood-rate", "0", "--max-per-ip", "0"],
        cwd=tempfile.mkdtemp(prefix="ab-hotpath-"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise SystemExit(f"{twistd} did not start") from None
                time.sleep(0.05)
        client_env = env
        if client:  # one load generator for every build: only the daemons differ
            client_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        done = subprocess.run(  # noqa: S603
            [client or python, "-m", "twisted_chat.bench", "--host", "127.0.0.1",
             "--port", str(port), "--workload", workload,
             "--server-pid", str(daemon.pid), "--json", "--no-progress"],
            capture_output=True, text=True, env=client_env, timeout=RUN_TIMEOUT,
            check=True,
        )  # fmt: skip
        report = json.loads(done.stdout)
        rate = float(report["deliveries_per_s"])
        cpu = float(report["server"]["cpu_percent"]) / 100 / rate * 1e6
        latency = report.get("latency_ms") or {}
        return (
            rate,
            cpu,
            float(latency.get("p50_ms", 0)),
            float(latency.get("p99_ms", 0)),
        )
    finally:
        daemon.kill()
        daemon.wait(timeout=30)


def _describe(rate: float, cpu: float, p50: float, p99: float) -> str:
    text = f"{rate:,.0f} deliveries/s, server CPU {cpu:.3f} us/delivery"
    if p99:
        text += f", latency p50 {p50:.2f} ms p99 {p99:.2f} ms"
    return text


def parse_builds(
    specs: list[str], parser: argparse.ArgumentParser
) -> dict[str, tuple[str, str]]:
    """``NAME=PYTHON[:PYTHONPATH]`` arguments as {name: (python, pythonpath)}."""
    builds: dict[str, tuple[str, str]] = {}
    for spec in specs:
        name, _, where = spec.partition("=")
        python, _, pythonpath = where.partition(":")
        if not name or not python:
            parser.error(f"{spec!r}: expected NAME=PYTHON[:PYTHONPATH]")
        builds[name] = (python, pythonpath)
    return builds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workloads", default="fanout,rooms")
    parser.add_argument(
        "--client",
        default="",
        metavar="PYTHON",
        help="run this Python's load generator against every build "
        "(default: each build's own)",
    )
    parser.add_argument("builds", nargs="+", help="NAME=PYTHON[:PYTHONPATH]")
    args = parser.parse_args(argv)
    builds = parse_builds(args.builds, parser)
    for workload in args.workloads.split(","):
        got: dict[str, list[tuple[float, float, float, float]]] = {
            name: [] for name in builds
        }
        names = list(builds)
        for n in range(min(args.runs, 20)):
            for name in names if n % 2 == 0 else names[::-1]:
                run = one_run(*builds[name], workload, args.client)
                got[name].append(run)
                print(f"{workload} {name} run {n + 1}: {_describe(*run)}", flush=True)
        for name in names:
            medians = [
                statistics.median(column) for column in zip(*got[name], strict=True)
            ]
            print(f"median {workload} {name}: {_describe(*medians)}")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
