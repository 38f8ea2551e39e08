"""Two ``twistd chat`` nodes through Redis against one node alone (issue 19's speed).

Usage::

    nice -n -5 .venv/bin/python bench/cluster.py [--runs 3] \\
        [--workloads fanout,latency] [--readers split|remote] [--twistd PATH] \\
        [--redis-server PATH] [--daemon-option OPT ...] [-- BENCH OPTIONS]

Issue 19 judges the cluster by "speed with the bench tool, two nodes on this
machine, senders on one, readers split across both: deliveries/s, and p99
latency at 2,000 msg/s, quoted beside the single node's".  Every run starts
fresh processes on 127.0.0.1 only, and stops them whatever happens:

- ``single``: one ``twistd -n chat --tcp tcp:P:interface=127.0.0.1
  --history-db off --flood-burst 0 --flood-rate 0 --max-per-ip 0`` (as
  ``bench/ab_hotpath.py`` starts one), no ``--cluster``;
- ``cluster``: a ``redis-server --port R --bind 127.0.0.1 --save ''
  --appendonly no`` (persistence off, a temporary ``--dir``), and two such
  daemons (the same ``twistd``) with ``--cluster redis://127.0.0.1:R/0``,
  measured once a probe user on each is listed by ``/who`` on both (each
  node's link to Redis is up and the other hears it).

The load is the bench's own (``python -m twisted_chat.bench --workload W
--json``): ``fanout`` (1 room of 100, 10 senders x 2,000 messages flat out)
for deliveries/s, ``latency`` (1 room of 50, 10 senders at 200 msg/s each:
2,000 msg/s, for 10 s) for p50/p99.  Against the cluster the senders
connect to node A and the readers of the room alternate between A and B
(``--reader-ports A,B``; ``--readers remote``: all on B, so that every
delivery crosses Redis); a reader on B is done once its pong and all its
deliveries are in, since B's deliveries cross Redis and may come after B's
own pong.  Server CPU per delivery is the bench's (``--server-pid``,
repeated: the node, or both nodes and Redis summed, over the measured
phase); the cluster's split by process is the script's own ``/proc``
reading around the whole bench run (setup included).  Runs alternate
single/cluster, the order flipping every round, so a machine growing busier
hurts both alike.  Prints every run, then per workload the medians of each
setup and the cluster/single ratios, and the load average.  Exit status 1
when a run lost or duplicated a delivery.  The figures:
docs/bench_cluster.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attrs import define, field

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _loopback import (
    START_TIMEOUT,
    TWISTD,
    LineClient,
    cpu_seconds,
    daemon,
    free_port,
    stop,
)

#: Every daemon's options: ab_hotpath.py's, abuse limits and history off.
BASE_OPTIONS = (
    "--history-db", "off", "--flood-burst", "0", "--flood-rate", "0",
    "--max-per-ip", "0",
)  # fmt: skip
SETUPS = ("single", "cluster")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
#: Seconds a bench run may take.
RUN_TIMEOUT = 900.0
#: Seconds the nodes get to see each other through Redis.
FORM_TIMEOUT = 30.0

Report = dict[str, Any]


@define
class Run:
    """One bench run against one setup."""

    setup: str
    workload: str
    report: Report
    #: CPU seconds of each server process over the whole bench run.
    cpu_s: dict[str, float] = field(factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.report.get("ok"))

    def numbers(self) -> tuple[float, float, float, float]:
        """(deliveries/s, server CPU µs per delivery, p50 ms, p99 ms)."""
        report = self.report
        rate = float(report.get("deliveries_per_s") or 0.0)
        cpu = float((report.get("server") or {}).get("cpu_percent") or 0.0)
        per = cpu / 100 / rate * 1e6 if rate else 0.0
        latency = report.get("latency_ms") or {}
        return (
            rate,
            per,
            float(latency.get("p50_ms", 0.0)),
            float(latency.get("p99_ms", 0.0)),
        )

    def split(self) -> dict[str, float]:
        """Each process's CPU µs per delivery over the whole bench run."""
        received = int(self.report.get("received") or 0)
        if not received:
            return {}
        return {name: s / received * 1e6 for name, s in self.cpu_s.items()}


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our options, and the BENCH OPTIONS after ``--``."""
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workloads", default="fanout,latency")
    parser.add_argument("--twistd", default=TWISTD)
    parser.add_argument("--redis-server", default=REDIS_SERVER)
    parser.add_argument(
        "--readers",
        choices=("split", "remote"),
        default="split",
        help="where the cluster's readers connect: alternately to A and B "
        "(split, the issue's), or all to B (remote: every delivery crosses Redis)",
    )
    parser.add_argument(
        "--daemon-option",
        action="append",
        default=[],
        help="one more option for every daemon (repeatable), e.g. "
        "--daemon-option=--history-db=:memory:",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.workloads = [w for w in args.workloads.split(",") if w]
    if not args.workloads:
        parser.error("--workloads names none")
    return args, extra


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(program: str) -> Iterator[tuple[int, int]]:
    """A redis-server on a free loopback port, persistence off: (port, pid)."""
    if not Path(program).exists():
        raise SystemExit(f"{program} is missing: apt-get install redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        proc = subprocess.Popen(  # noqa: S603 - a fixed program, our arguments
            [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp, "--daemonize", "no",
             "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _answers_ping(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"redis-server did not start on port {port}")
                time.sleep(0.05)  # polling a condition, bounded by the deadline
            yield port, proc.pid
        finally:
            stop(proc)


def _lists(probe: LineClient, room: str, people: int, deadline: float) -> bool:
    """Whether ``/who room`` on the probe's node counts ``people``."""
    tag = secrets.token_hex(4)
    probe.say(f"/who {room}")
    probe.say(f"/ping {tag}")
    _, lines = probe.expect(f"* pong {tag}", deadline)
    return f"* {people} people in {room}:" in lines


def wait_formed(ports: list[int], timeout: float = FORM_TIMEOUT) -> None:
    """Until a probe user on each node is listed by ``/who`` on every node."""
    room = f"#cluster-ready-{secrets.token_hex(3)}"
    deadline = time.monotonic() + timeout
    probes = [LineClient.connect(port, "127.0.0.1") for port in ports]
    try:
        for probe in probes:
            probe.say(f"/join {room}")
        for probe, port in zip(probes, ports, strict=True):
            while not _lists(probe, room, len(ports), deadline):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the node on port {port} never saw the others")
                time.sleep(0.1)  # polling a condition, bounded by the deadline
    finally:
        for probe in probes:
            with contextlib.suppress(OSError):
                probe.say("/quit")
            probe.close()


def bench(
    port: int, workload: str, pids: list[int], extra: list[str]
) -> subprocess.CompletedProcess[str]:
    """One run of the load generator; ``extra`` after ours."""
    command = [
        sys.executable, "-m", "twisted_chat.bench", "--host", "127.0.0.1",
        "--port", str(port), "--workload", workload, "--json", "--no-progress",
    ]  # fmt: skip
    for pid in pids:
        command += ["--server-pid", str(pid)]
    return subprocess.run(  # noqa: S603 - our own bench, our arguments
        [*command, *extra],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip


def measured(
    setup: str,
    workload: str,
    port: int,
    pids: dict[str, int],
    extra: list[str],
) -> Run:
    """The bench against ``port``, every process of ``pids`` measured."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    done = bench(port, workload, list(pids.values()), extra)
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    if not done.stdout.strip():
        raise SystemExit(f"the bench printed nothing: {done.stderr.strip()}")
    report: Report = json.loads(done.stdout)
    cpu = {name: after[name] - before[name] for name in pids}
    return Run(setup, workload, report, cpu)


def one_run(
    args: argparse.Namespace, setup: str, workload: str, extra: list[str]
) -> Run:
    """Fresh servers for ``setup``, one bench run, everything stopped."""
    options = [*BASE_OPTIONS, *args.daemon_option]
    if setup == "single":
        with daemon(args.twistd, *options) as node:
            return measured(setup, workload, node.port, {"node": node.pid}, extra)
    with contextlib.ExitStack() as stack:
        redis_port, redis_pid = stack.enter_context(redis_server(args.redis_server))
        url = f"redis://127.0.0.1:{redis_port}/0"
        a = stack.enter_context(daemon(args.twistd, *options, "--cluster", url))
        b = stack.enter_context(daemon(args.twistd, *options, "--cluster", url))
        wait_formed([a.port, b.port])
        ports = f"{a.port},{b.port}" if args.readers == "split" else f"{b.port}"
        spread = ["--reader-ports", ports, *extra]
        pids = {"A": a.pid, "B": b.pid, "redis": redis_pid}
        return measured(setup, workload, a.port, pids, spread)


def describe(run: Run) -> str:
    """One line of figures for a run."""
    rate, per, p50, p99 = run.numbers()
    report = run.report
    ok = "ok" if run.ok else "ERRORS: " + "; ".join(report.get("errors") or [])
    text = (
        f"{rate:,.0f} deliveries/s, server CPU {per:.3f} us/delivery, "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"{report.get('received', 0):,}/{report.get('expected', 0):,} received"
    )
    if run.setup == "cluster":
        text += " (" + split_text(run.split()) + ")"
    return f"{text}, {ok}"


def split_text(split: dict[str, float]) -> str:
    """``A 0.20 + B 0.10 + redis 0.05 us/delivery`` (whole run)."""
    if not split:
        return "no deliveries"
    parts = " + ".join(f"{name} {us:.3f}" for name, us in split.items())
    return f"{parts} us/delivery over the whole run"


def table(runs: list[Run], workloads: list[str]) -> list[str]:
    """The medians per workload and setup, and the cluster/single ratios."""
    head = (
        "| workload | setup | deliveries/s | server CPU µs/delivery | p50 ms "
        "| p99 ms | ok runs |"
    )
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    notes: list[str] = []
    for workload in workloads:
        medians: dict[str, list[float]] = {}
        for setup in SETUPS:
            mine = [r for r in runs if r.workload == workload and r.setup == setup]
            if not mine:
                continue
            columns = zip(*(r.numbers() for r in mine), strict=True)
            medians[setup] = [statistics.median(c) for c in columns]
            rate, per, p50, p99 = medians[setup]
            good = sum(r.ok for r in mine)
            lines.append(
                f"| {workload} | {setup} | {rate:,.0f} | {per:.3f} | {p50:.2f} "
                f"| {p99:.2f} | {good}/{len(mine)} |"
            )
            if setup == "cluster":
                names = list(mine[0].cpu_s)
                split = {
                    name: statistics.median(r.split().get(name, 0.0) for r in mine)
                    for name in names
                }
                notes.append(f"{workload} cluster CPU by process: {split_text(split)}")
        if len(medians) == len(SETUPS):
            notes.append(f"{workload} cluster/single: {ratios(*medians.values())}")
    return [*lines, "", *notes]


def ratios(single: list[float], cluster: list[float]) -> str:
    """The cluster's medians over the single node's, as text."""

    def over(k: int) -> str:
        return f"{cluster[k] / single[k]:.2f}x" if single[k] else "n/a"

    return (
        f"deliveries/s {over(0)}, server CPU per delivery {over(1)}, "
        f"p50 {over(2)}, p99 {over(3)}"
    )


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(list(sys.argv[1:] if argv is None else argv))
    load = os.getloadavg()
    runs: list[Run] = []
    for workload in args.workloads:
        for n in range(args.runs):
            for setup in SETUPS if n % 2 == 0 else SETUPS[::-1]:
                run = one_run(args, setup, workload, extra)
                runs.append(run)
                print(f"{workload} {setup} run {n + 1}: {describe(run)}", flush=True)
    print()
    for line in table(runs, args.workloads):
        print(line)
    end = os.getloadavg()
    print(
        f"medians of {args.runs}, alternating; cluster readers {args.readers}; "
        f"twistd {args.twistd}; bench options "
        f"{extra or 'none'}; daemon options {args.daemon_option or 'none'}; load "
        f"average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start, "
        f"{end[0]:.2f} {end[1]:.2f} {end[2]:.2f} at the end ({os.cpu_count()} CPUs)"
    )
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
