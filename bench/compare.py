"""twisted-chat against a naive asyncio chat server, workload by workload.

Usage::

    .venv/bin/python bench/compare.py [--runs 3] [--workloads fanout,rooms,...]
        [--idle-clients 10000] [--out results.json] [--quick]

For each workload it starts the servers it compares on 127.0.0.1, drives
them with the project's load generator (``python -m twisted_chat.bench
--json --server-pid PID --no-progress``) ``--runs`` times each, and prints
a Markdown table of the medians, the issue's targets with met / not met,
and the machine's load average before and after every workload.

The servers:

* ``twisted-chat``: ``twistd -n --pidfile= chat --tcp tcp:PORT:interface=127.0.0.1
  --udp 127.0.0.1:UDPPORT --history-db off --flood-burst 0 --flood-rate 0
  --max-per-ip 0``.  Flood control is off (else each sender is held to 5
  lines a second) and so is the per-address cap (every bench client comes
  from 127.0.0.1); every other limit keeps its default: the 1,024-byte line
  limit, the 1 MiB send queue, the 10,000-client cap.  History is off for
  the pure fan-out numbers; ``fanout-history`` repeats fanout with the
  default SQLite history in a fresh state directory.
* ``asyncio baseline``: ``python -m twisted_chat.bench.baseline_asyncio
  --host 127.0.0.1 --port 0``: one coroutine per connection and a broadcast
  loop over the room's writers, no limits at all.
* ``C floor`` (the scale cases only): ``bench/c_floor.c``, a single-threaded
  epoll broadcaster in C (built by ``bench/c_floor.py``), what any server
  could reach on this machine with this load generator.

The scale cases of issue 18 (``idle-max``, ``room-10k``, ``churn``; not in
the default list, ``--workloads idle-max,room-10k,churn``) hold up to 19,000
clients, so twisted-chat gets ``--max-clients 0`` and a listen backlog of
4,096 (``tcp:PORT:interface=127.0.0.1:backlog=4096``; Twisted's default is
50, and the C floor listens with 4,096) on top of the flags above; the bench
spreads its clients over one loopback address per 32 and two worker
processes (the descriptor limit is 20,000 a process).  ``--scale-clients``
sizes ``idle-max`` and ``churn``.  They report the connect + register rate
(first connect to last registered), server RSS per idle client, and the
churn rate achieved with the bystander's latency.

Runs of the servers being compared are interleaved (A, B, A, B, ...), so a
machine that grows busier or quieter hurts both alike.  Each (workload,
server) pair shares one server process over its runs, except ``idle``: it
measures the server's RSS growth per connection, and memory an earlier run
grew and freed is reused and hides the cost, so every idle run gets a fresh
server; so does every run of the UDP cases (``udp``, ``udp-fanout``): the
server sends at most 100 UDP challenges a second in all and one per source
address every 10 s, and the bench does not resend an unanswered hello, so a
UDP run right after another may stall while connecting.  Every server is
stopped at the end, also on Ctrl-C, SIGTERM or an error.

Exit status: 0 when every run of twisted-chat delivered everything exactly
once, 1 otherwise (the baseline's losses are reported, not judged), 2 for
bad options.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import define, field, frozen

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TWISTD = str(Path(sys.executable).with_name("twistd"))
#: Seconds a server gets to start listening, or to exit after SIGTERM.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
#: Seconds one bench run may take in all (its own stall timeout is 10 s).
RUN_TIMEOUT = 900.0
#: Open files kept aside for everything but the clients (pipes, logs, epoll).
FD_MARGIN = 100
#: The abuse limits a benchmark must turn off; everything else stays default.
OURS_FLAGS = ("--flood-burst", "0", "--flood-rate", "0", "--max-per-ip", "0")

#: The listen backlog of the scale cases' twistd (the C floor's own).
SCALE_BACKLOG = 4096
#: What the scale cases add: up to 19,000 clients.
SCALE_FLAGS = ("--max-clients", "0")

OURS = "twisted-chat"
BASELINE = "asyncio baseline"
C_FLOOR = "C floor"


# What to run.


@frozen
class ServerSpec:
    """How to start one server.

    :param kind: ``"ours"`` (twistd), ``"baseline"`` (the asyncio server) or
        ``"c_floor"`` (``bench/c_floor.c``).
    :param history: give twisted-chat its default SQLite history instead of
        ``--history-db off``.
    :param scale: for the scale cases: no client cap and a listen backlog of
        :data:`SCALE_BACKLOG`.
    """

    kind: str
    history: bool = False
    scale: bool = False


@frozen
class Variant:
    """One column of a comparison: a server, and bench options for it.

    :param udp: make every bench client speak UDP (``--udp-port``).
    :param args: bench options for this variant only.
    """

    label: str
    server: ServerSpec
    udp: bool = False
    args: tuple[str, ...] = ()


@frozen
class Case:
    """One row group of the table: a bench workload run against each variant.

    :param fresh: a new server process for every run: for ``idle``, whose
        memory figure a reused heap would hide, and for the UDP cases, because
        the server answers at most 100 UDP hellos a second in all and one per
        source address every 10 s (its anti-amplification rule), and the bench
        does not resend a hello that got no challenge: a UDP run soon after
        another would stall while connecting.
    """

    name: str
    workload: str
    bench_args: tuple[str, ...]
    variants: tuple[Variant, ...]
    fresh: bool = False
    note: str = ""


CASE_NAMES = (
    "fanout",
    "fanout-history",
    "rooms",
    "rooms-200",
    "latency",
    "udp",
    "udp-fanout",
    "idle",
)
#: Issue 18's cases, run only when asked for.
SCALE_CASE_NAMES = ("idle-max", "room-10k", "churn")


def make_cases(
    quick: bool, idle_clients: int, baseline_idle: int, scale_clients: int | None = None
) -> dict[str, Case]:
    """Every case the script knows, at full or at ``--quick`` sizes."""
    ours = Variant(OURS, ServerSpec("ours"))
    base = Variant(BASELINE, ServerSpec("baseline"))
    scale = (
        Variant(OURS, ServerSpec("ours", scale=True)),
        Variant(C_FLOOR, ServerSpec("c_floor")),
    )
    sized = () if scale_clients is None else ("--clients", str(scale_clients))
    tiny_fanout = ("--clients", "10", "--senders", "3", "--messages", "50")
    tiny_rooms = ("--clients", "40", "--messages", "5")
    tiny_latency = ("--clients", "10", "--senders", "3", "--duration", "1")
    fanout = tiny_fanout if quick else ()
    latency = tiny_latency if quick else ()
    idle = str(200 if quick else idle_clients)
    idle_base = str(min(200, baseline_idle) if quick else baseline_idle)
    cases = (
        Case("fanout", "fanout", fanout, (ours, base)),
        Case(
            "fanout-history",
            "fanout",
            fanout,
            (Variant(f"{OURS} + SQLite history", ServerSpec("ours", history=True)),),
            note="the default --history-db (SQLite), no baseline equivalent",
        ),
        Case("rooms", "rooms", tiny_rooms if quick else (), (ours, base)),
        Case(
            "rooms-200",
            "rooms",
            ("--clients", "40", "--messages", "20") if quick else ("--messages", "200"),
            (ours, base),
            note="rooms with --messages 200: a longer, steadier run",
        ),
        Case("latency", "latency", latency, (ours, base)),
        Case(
            "udp",
            "latency",
            latency,
            (
                Variant(f"{OURS} TCP", ours.server),
                Variant(f"{OURS} UDP", ours.server, udp=True),
            ),
            fresh=True,
            note="latency workload, all clients on TCP against all on UDP",
        ),
        Case(
            "udp-fanout",
            "fanout",
            fanout,
            (
                Variant(f"{OURS} TCP", ours.server),
                Variant(
                    f"{OURS} UDP readers",
                    ours.server,
                    udp=True,
                    args=("--udp-clients", "7" if quick else "90"),
                ),
            ),
            fresh=True,
            note="fanout flat out, every reader on TCP against every reader on "
            "UDP (the senders stay on TCP: a lost /ping datagram would stall them)",
        ),
        Case(
            "idle",
            "idle",
            (),
            (
                Variant(OURS, ours.server, args=("--clients", idle)),
                Variant(BASELINE, base.server, args=("--clients", idle_base)),
            ),
            fresh=True,
            note=f"{idle} connections (baseline {idle_base}), fresh server each run",
        ),
        Case(
            "idle-max",
            "idle-max",
            ("--clients", "200") if quick else sized,
            scale,
            fresh=True,
            note="registered idle clients, fresh server each run: RSS per client "
            "and the connect + register rate",
        ),
        Case(
            "room-10k",
            "room-10k",
            ("--clients", "50", "--messages", "20") if quick else (),
            scale,
            note="one room of 10,000 members, 10 senders x 100 messages",
        ),
        Case(
            "churn",
            "churn",
            ("--clients", "100", "--churn-rate", "50", "--duration", "1")
            if quick
            else sized,
            scale,
            fresh=True,
            note="clients held while 1,000 a second connect, register and leave; "
            "the bystander pair's latency",
        ),
    )
    return {c.name: c for c in cases}


def bench_command(case: Case, variant: Variant, server: Server) -> list[str]:
    """The load generator's command line for one run."""
    command = [
        PYTHON,
        "-m",
        "twisted_chat.bench",
        *("--workload", case.workload),
        *("--host", "127.0.0.1", "--port", str(server.port)),
        *("--server-pid", str(server.pid)),
        "--json",
        "--no-progress",
        *case.bench_args,
    ]
    command += variant.args
    if variant.udp:
        if server.udp_port is None:
            raise RuntimeError(f"{variant.label}: the server has no UDP port")
        command += ["--udp-port", str(server.udp_port)]
    return command


# Servers.


def c_floor_binary() -> str:
    """``bench/c_floor.c``, compiled once per version (``bench/c_floor.py``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from c_floor import build

    return str(build())


def free_port(kind: int) -> int:
    """A port that was free on 127.0.0.1 a moment ago (TCP or UDP)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@define
class Server:
    """A server process this script started, in its own session so that a
    Ctrl-C in the terminal reaches only this script, which then stops it."""

    spec: ServerSpec
    workdir: Path
    command: list[str] = field(factory=list)
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    udp_port: int | None = None
    log: Path | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("not started")
        return self.process.pid

    def start(self) -> None:
        """Start the server and wait (bounded) until it says it is listening."""
        for _attempt in range(3):
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.log = self.workdir / "server.log"
            if self.spec.kind == "ours":
                self.port = free_port(socket.SOCK_STREAM)
                self.udp_port = free_port(socket.SOCK_DGRAM)
                history = (
                    ("--history-db", "history.sqlite3")
                    if self.spec.history
                    else (
                        "--history-db",
                        "off",
                    )
                )
                tcp = f"tcp:{self.port}:interface=127.0.0.1"
                if self.spec.scale:
                    tcp += f":backlog={SCALE_BACKLOG}"
                self.command = [
                    TWISTD,
                    "-n",
                    "--pidfile=",
                    "chat",
                    *("--tcp", tcp),
                    *("--udp", f"127.0.0.1:{self.udp_port}"),
                    *("--state-dir", str(self.workdir)),
                    *history,
                    *OURS_FLAGS,
                    *(SCALE_FLAGS if self.spec.scale else ()),
                ]
                ready = re.compile(r"twisted-chat ready")
            elif self.spec.kind == "c_floor":
                self.command = [c_floor_binary(), "0"]
                ready = re.compile(r"port (\d+)")
            else:
                self.command = [
                    PYTHON,
                    "-m",
                    "twisted_chat.bench.baseline_asyncio",
                    *("--host", "127.0.0.1", "--port", "0"),
                ]
                ready = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
            with self.log.open("wb") as out:
                self.process = subprocess.Popen(  # noqa: S603
                    self.command,
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            match = self._wait_for(ready)
            if match is not None:
                if self.spec.kind != "ours":
                    self.port = int(match.group(1))
                return
            # Most likely a port taken between free_port() and the bind: retry.
            self.stop()
        raise RuntimeError(f"the server would not start:\n{self.log_text()[-2000:]}")

    def _wait_for(self, ready: re.Pattern[str]) -> re.Match[str] | None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = ready.search(self.log_text())
            if match is not None:
                return match
            if self.process is None or self.process.poll() is not None:
                return None
            time.sleep(0.05)  # polling the log, bounded by the deadline
        return None

    def log_text(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text("utf-8", "replace")

    def complaints(self) -> int:
        """Slow readers dropped and UDP sends failed so far, from the log."""
        text = self.log_text()
        return text.count("dropping slow reader") + text.count("could not send")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``; idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@define
class Servers:
    """Every server started, so that one ``finally`` can stop them all."""

    root: Path
    live: list[Server] = field(factory=list)
    count: int = 0

    def start(self, spec: ServerSpec) -> Server:
        self.count += 1
        server = Server(spec, self.root / f"server-{self.count}-{spec.kind}")
        self.live.append(server)
        server.start()
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        with contextlib.suppress(ValueError):
            self.live.remove(server)

    def stop_all(self) -> None:
        while self.live:
            self.stop(self.live[-1])


# Runs.


def run_bench(command: list[str]) -> dict[str, Any]:
    """Run the load generator once and return its JSON report.

    It runs in its own session; if this script is interrupted, the bench
    gets SIGINT (it then stops its workers and reports) and SIGKILL if it
    lingers.  A bench that prints no JSON yields a report with an error.
    """
    process = subprocess.Popen(  # noqa: S603
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    except BaseException:
        _end_group(process)
        raise
    try:
        report: dict[str, Any] = json.loads(out)
    except ValueError:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
        return {
            "ok": False,
            "measured": False,
            "errors": [f"bench exited {process.returncode}: " + " | ".join(tail)],
        }
    return report


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a bench run and its worker processes (its own process group)."""
    for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_case(
    case: Case,
    runs: int,
    servers: Servers,
    say: Callable[[str], None],
    results: list[dict[str, Any]],
) -> None:
    """Every run of one case, interleaved over its variants, appended to
    ``results`` as they finish (an interrupted case keeps its finished runs)."""
    result: dict[str, Any] = {
        "name": case.name,
        "workload": case.workload,
        "note": case.note,
        "load_before": load_average(),
        "variants": {
            v.label: {"server": v.server.kind, "udp": v.udp, "runs": []}
            for v in case.variants
        },
    }
    results.append(result)
    shared: dict[str, Server] = {}
    try:
        for n in range(1, runs + 1):
            for variant in case.variants:
                server = shared.get(variant.label)
                if server is None:
                    server = servers.start(variant.server)
                    if not case.fresh:
                        shared[variant.label] = server
                command = bench_command(case, variant, server)
                complaints = server.complaints()
                report = run_bench(command)
                dropped = server.complaints() - complaints
                if dropped:
                    report.setdefault("errors", []).append(
                        f"the server logged {dropped} dropped readers or failed sends"
                    )
                    report["ok"] = False
                report["command"] = command
                report["server_command"] = server.command
                result["variants"][variant.label]["runs"].append(report)
                say(f"{case.name} / {variant.label} run {n}/{runs}: {_brief(report)}")
                if case.fresh:
                    servers.stop(server)
    finally:
        for server in shared.values():
            servers.stop(server)
        result["load_after"] = load_average()


def _brief(report: dict[str, Any]) -> str:
    if not report.get("measured", False):
        return "FAILED: " + "; ".join(report.get("errors", []))
    name = report["workload"]["name"]
    if name in ("idle", "idle-max"):
        text = f"{report['server']['rss_per_connection_bytes'] / 1024:.2f} KiB/conn"
        if report.get("connect_per_s"):
            text += f", {report['connect_per_s']:,.0f} connects/s"
    elif name == "churn" and report.get("churn"):
        lat = report.get("latency_ms") or {}
        text = (
            f"churn {report['churn']['achieved_per_s']:,.0f}/s, bystander p50 "
            f"{lat.get('p50_ms', float('nan')):.2f} / p99 "
            f"{lat.get('p99_ms', float('nan')):.2f} ms"
        )
    else:
        lat = report.get("latency_ms") or {}
        text = (
            f"{report['deliveries_per_s']:,.0f} deliveries/s, "
            f"p99 {lat.get('p99_ms', float('nan')):.2f} ms"
        )
    if not report.get("ok", False):
        text += "  ERRORS: " + "; ".join(report.get("errors", []))
    return text


# Summaries.


@frozen
class Summary:
    """The medians of one variant's runs (``None``: not measured)."""

    runs: int
    ok_runs: int
    deliveries_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    server_cpu_percent: float | None
    server_cpu_us_per_delivery: float | None
    bench_cpu_percent: float | None
    rss_per_connection_kib: float | None
    clients: int | None
    missing_worst: int
    unexpected_worst: int
    connect_per_s: float | None = None
    churn_per_s: float | None = None


def _median(values: Iterator[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def cpu_us_per_delivery(report: dict[str, Any]) -> float | None:
    """Server CPU microseconds per delivery.

    The bench gives the server's CPU share over go-to-drained and the time
    from go to the last delivery; their product slightly undercounts (the
    drain's final ping round trip is left out), the same way for every
    server and transport.
    """
    server = report.get("server") or {}
    cpu = server.get("cpu_percent")
    received = report.get("received", 0)
    if not cpu or not received:
        # 0 % means under one clock tick (10 ms) of CPU: too short to divide.
        return None
    return float(cpu) / 100 * float(report["elapsed_s"]) / float(received) * 1e6


def summarize(runs: list[dict[str, Any]]) -> Summary:
    measured = [r for r in runs if r.get("measured", False)]

    def lat(r: dict[str, Any], key: str) -> float | None:
        latency = r.get("latency_ms")
        return None if not latency else float(latency[key])

    def server(r: dict[str, Any], key: str) -> float | None:
        stats = r.get("server")
        value = None if not stats else stats.get(key)
        return None if value is None else float(value)

    idle = bool(measured) and measured[0]["workload"]["name"] in ("idle", "idle-max")

    def churn(r: dict[str, Any]) -> float | None:
        stats = r.get("churn")
        return None if not stats else float(stats["achieved_per_s"])

    rss = _median(server(r, "rss_per_connection_bytes") for r in measured)
    return Summary(
        runs=len(runs),
        ok_runs=sum(1 for r in runs if r.get("ok", False)),
        deliveries_per_s=None
        if idle
        else _median(float(r["deliveries_per_s"]) for r in measured),
        p50_ms=_median(lat(r, "p50_ms") for r in measured),
        p99_ms=_median(lat(r, "p99_ms") for r in measured),
        server_cpu_percent=_median(server(r, "cpu_percent") for r in measured),
        server_cpu_us_per_delivery=_median(cpu_us_per_delivery(r) for r in measured),
        bench_cpu_percent=_median(
            float(r["bench"]["cpu_percent"]) if r.get("bench") else None
            for r in measured
        ),
        rss_per_connection_kib=rss / 1024 if idle and rss is not None else None,
        clients=measured[0]["workload"]["clients"] if measured else None,
        missing_worst=max((int(r.get("missing", 0)) for r in measured), default=0),
        unexpected_worst=max(
            (int(r.get("unexpected", 0)) for r in measured), default=0
        ),
        connect_per_s=_median(r.get("connect_per_s") for r in measured),
        churn_per_s=_median(churn(r) for r in measured),
    )


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


COLUMNS = (
    "workload",
    "server",
    "ok runs",
    "deliveries/s",
    "p50 ms",
    "p99 ms",
    "server CPU %",
    "server CPU µs/delivery",
    "bench CPU %",
    "RSS/conn KiB",
    "missing (worst run)",
    "load 1 min before → after",
    "connect + register /s",
    "churn /s",
)


def markdown_table(cases: list[dict[str, Any]]) -> str:
    """One row per (workload, server): the medians of its runs."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(":--" if i < 2 else "--:" for i in range(len(COLUMNS))) + "|",
    ]
    for case in cases:
        load = f"{case['load_before'][0]:.2f} → {case['load_after'][0]:.2f}"
        for label, data in case["variants"].items():
            s = summarize(data["runs"])
            name = case["name"]
            if case["workload"] in ("idle", "idle-max") and s.clients is not None:
                name = f"{case['name']} ({s.clients:,} conns)"
            missing = "–" if s.deliveries_per_s is None else f"{s.missing_worst:,}"
            if s.unexpected_worst:
                missing += f" (+{s.unexpected_worst:,} unexpected)"
            cells = (
                name,
                label,
                f"{s.ok_runs}/{s.runs}",
                _fmt(s.deliveries_per_s, ",.0f"),
                _fmt(s.p50_ms, ".2f"),
                _fmt(s.p99_ms, ".2f"),
                _fmt(s.server_cpu_percent, ".0f"),
                _fmt(s.server_cpu_us_per_delivery, ".3f"),
                _fmt(s.bench_cpu_percent, ".0f"),
                _fmt(s.rss_per_connection_kib, ".2f"),
                missing,
                load,
                _fmt(s.connect_per_s, ",.0f"),
                _fmt(s.churn_per_s, ",.0f"),
            )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _find(cases: list[dict[str, Any]], name: str, label: str) -> Summary | None:
    for case in cases:
        if case["name"] == name and label in case["variants"]:
            return summarize(case["variants"][label]["runs"])
    return None


def targets(cases: list[dict[str, Any]], quick: bool) -> list[str]:
    """The issue's targets, each met or not, from the medians."""
    out: list[str] = []

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    fanout = _find(cases, "fanout", OURS)
    if fanout and fanout.deliveries_per_s is not None:
        d = fanout.deliveries_per_s
        stretch = "stretch met" if d >= 3_000_000 else "stretch not met"
        out.append(
            f"fanout ≥ 2,000,000 deliveries/s (stretch ≥ 3,000,000): "
            f"{d:,.0f} — {verdict(d >= 2_000_000)} ({stretch})"
        )
    rooms = _find(cases, "rooms", OURS)
    if rooms and rooms.deliveries_per_s is not None:
        d = rooms.deliveries_per_s
        out.append(
            f"rooms ≥ 1,000,000 deliveries/s: {d:,.0f} — {verdict(d >= 1_000_000)}"
        )
    rooms200 = _find(cases, "rooms-200", OURS)
    if rooms200 and rooms200.deliveries_per_s is not None:
        d = rooms200.deliveries_per_s
        out.append(
            f"rooms with --messages 200 ≥ 1,000,000 deliveries/s: {d:,.0f} — "
            f"{verdict(d >= 1_000_000)}"
        )
    latency = _find(cases, "latency", OURS)
    if latency and latency.p99_ms is not None:
        p99 = latency.p99_ms
        out.append(
            f"latency p99 ≤ 2 ms at 2,000 msg/s into a 50-client room: "
            f"{p99:.2f} ms — {verdict(p99 <= 2.0)}"
        )
    idle = _find(cases, "idle", OURS)
    if idle and idle.rss_per_connection_kib is not None:
        kib = idle.rss_per_connection_kib
        out.append(
            f"idle ≤ 3 KiB server RSS per connection at 10,000 connections "
            f"({idle.clients:,} measured): {kib:.2f} KiB — {verdict(kib <= 3.0)}"
        )
    out.extend(scale_targets(cases))
    ours_runs = [
        r
        for case in cases
        for label, data in case["variants"].items()
        if label.startswith(OURS)
        for r in data["runs"]
    ]
    if ours_runs:
        # A run that never got to send has nothing to count, only its error.
        measured = [r for r in ours_runs if r.get("measured", False)]
        lost = sum(int(r.get("missing", 0)) for r in measured)
        extra = sum(int(r.get("unexpected", 0)) for r in measured)
        failed = sum(1 for r in ours_runs if not r.get("ok", False))
        out.append(
            f"no delivery lost: {lost:,} missing and {extra:,} unexpected over "
            f"{len(ours_runs)} twisted-chat runs, {failed} with errors — "
            f"{verdict(lost == 0 and extra == 0 and failed == 0)}"
        )
    for name, label, how in (
        ("udp", f"{OURS} UDP", "latency workload, paced"),
        ("udp-fanout", f"{OURS} UDP readers", "fanout workload, flat out"),
    ):
        tcp = _find(cases, name, f"{OURS} TCP")
        udp = _find(cases, name, label)
        if (
            tcp
            and udp
            and tcp.server_cpu_us_per_delivery
            and udp.server_cpu_us_per_delivery is not None
        ):
            ratio = udp.server_cpu_us_per_delivery / tcp.server_cpu_us_per_delivery
            out.append(
                f"UDP fan-out within 2× TCP's server CPU per delivery ({how}): "
                f"{udp.server_cpu_us_per_delivery:.3f} against "
                f"{tcp.server_cpu_us_per_delivery:.3f} µs, {ratio:.2f}× — "
                f"{verdict(ratio <= 2.0)}"
            )
    if quick:
        out = [f"{t} (quick sizes: not the issue's workloads)" for t in out]
    return out


def scale_targets(cases: list[dict[str, Any]]) -> list[str]:
    """Issue 18's targets for the scale cases, each met or not."""
    out: list[str] = []

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    idle = _find(cases, "idle-max", OURS)
    if idle and idle.rss_per_connection_kib is not None:
        kib = idle.rss_per_connection_kib
        out.append(
            f"idle-max ≤ 2.5 KiB server RSS per client ({idle.clients:,} clients): "
            f"{kib:.2f} KiB — {verdict(kib <= 2.5)}"
        )
    if idle and idle.connect_per_s is not None:
        rate = idle.connect_per_s
        out.append(
            f"connect + register ≥ 5,000 clients/s ({idle.clients:,} clients): "
            f"{rate:,.0f}/s — {verdict(rate >= 5000)}"
        )
    churn = _find(cases, "churn", OURS)
    if churn and churn.churn_per_s is not None and churn.p99_ms is not None:
        ok = churn.churn_per_s >= 950 and churn.p99_ms < 10.0
        out.append(
            f"churn 1,000 connects + disconnects/s against {churn.clients:,} "
            f"clients, bystander p99 < 10 ms: {churn.churn_per_s:,.0f}/s, p99 "
            f"{churn.p99_ms:.2f} ms — {verdict(ok)}"
        )
    return out


# The machine.


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    try:
        import twisted

        twisted_version = str(twisted.__version__)
    except ImportError:
        twisted_version = "?"
    commit = "?"
    git = shutil.which("git")
    if git is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            commit = subprocess.run(  # noqa: S603
                [git, "-C", str(ROOT), "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
    return {
        "commit": commit,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "twisted": twisted_version,
        "open_files": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one (the servers and the
    bench inherit it) and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# The command line.


def _workloads(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = CASE_NAMES + SCALE_CASE_NAMES
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"a comma-separated list from: {', '.join(known)}"
        )
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/compare.py",
        description="Benchmark twisted-chat against the naive asyncio baseline "
        "and print a Markdown table of medians.",
    )
    add = parser.add_argument
    add("--runs", type=_positive, default=3, help="runs per server (default 3)")
    add(
        "--workloads",
        type=_workloads,
        default=list(CASE_NAMES),
        help=f"comma-separated, from {','.join(CASE_NAMES)} (default: all "
        f"of those) and the scale cases {','.join(SCALE_CASE_NAMES)}",
    )
    add(
        "--idle-clients",
        type=_positive,
        default=10_000,
        help="connections for the idle workload (default 10,000)",
    )
    add(
        "--baseline-idle-clients",
        type=_positive,
        help="connections for the baseline's idle runs (default: as many)",
    )
    add(
        "--scale-clients",
        type=_positive,
        help="clients for idle-max and churn (default 19,000 and 18,000)",
    )
    add("--quick", action="store_true", help="tiny sizes, for a smoke test")
    add("--out", type=Path, help="write every run's JSON report to this file")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.baseline_idle_clients is None:
        args.baseline_idle_clients = args.idle_clients
    return args


class Terminated(Exception):
    """SIGTERM arrived: unwind, so that the servers are stopped."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; see the module docstring."""
    args = parse_args(argv)
    say: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    limit = raise_fd_limit()
    notes: list[str] = []
    for attr in ("idle_clients", "baseline_idle_clients"):
        wanted = getattr(args, attr)
        if wanted > limit - FD_MARGIN:
            setattr(args, attr, limit - FD_MARGIN)
            notes.append(
                f"--{attr.replace('_', '-')} lowered from {wanted:,} to "
                f"{limit - FD_MARGIN:,}: the open-files limit is {limit:,}"
            )
    for note in notes:
        say(note)
    all_cases = make_cases(
        args.quick, args.idle_clients, args.baseline_idle_clients, args.scale_clients
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    info = machine()
    started = load_average()
    results: list[dict[str, Any]] = []
    status = 0
    with tempfile.TemporaryDirectory(prefix="chat-compare-") as tmp:
        servers = Servers(Path(tmp))
        try:
            for name in args.workloads:
                run_case(all_cases[name], args.runs, servers, say, results)
        except (KeyboardInterrupt, Terminated):
            say("interrupted: stopping the servers")
            status = 130
        finally:
            servers.stop_all()
    finished = load_average()
    text = [
        (
            f"Machine: {info['cpus']} CPUs ({info['cpu_model']}), Linux "
            f"{info['kernel']}, Python {info['python']}, Twisted {info['twisted']}, "
            f"commit {info['commit']}."
        ),
        f"Load average (1, 5, 15 min): before {started}, after {finished}.",
        f"Medians of {args.runs} run(s) per server"
        + (" at --quick sizes." if args.quick else "."),
        "",
        markdown_table(results),
    ]
    goals = targets(results, args.quick)
    if goals:
        text.append("Targets:\n")
        text.extend(f"- {g}" for g in goals)
        text.append("")
    text.extend(f"Note: {n}" for n in notes)
    print("\n".join(text))
    if args.out is not None:
        document = {
            "machine": info,
            "load_before": started,
            "load_after": finished,
            "runs_per_server": args.runs,
            "quick": args.quick,
            "notes": notes,
            "cases": results,
        }
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    ours_ok = all(
        r.get("ok", False)
        for case in results
        for label, data in case["variants"].items()
        if label.startswith(OURS)
        for r in data["runs"]
    )
    if status:
        return status
    return 0 if ours_ok and results else 1


if __name__ == "__main__":
    sys.exit(main())
