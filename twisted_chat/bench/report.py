# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""The numbers a run produces, how they are measured, and how they are shown
(the report's table and JSON, and the progress line while it runs).

The server's CPU and memory come from Linux's ``/proc/PID/stat`` (``utime``
and ``stime``, in clock ticks) and ``/proc/PID/status`` (``VmRSS``, and
``VmHWM`` for the peak).  Latency percentiles use the nearest-rank method on
the sampled latencies.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from attrs import frozen

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from twisted_chat.bench.churn import ChurnStats
    from twisted_chat.bench.workloads import Workload

PROC = Path("/proc")


@frozen
class ProcSample:
    """A process's CPU time so far and its memory, at one moment.

    :param cpu_s: user plus system CPU seconds since the process started.
    :param rss_kib: resident set size now.
    :param peak_kib: the largest resident set size so far (``VmHWM``).
    """

    cpu_s: float
    rss_kib: int
    peak_kib: int


def read_proc(pid: int, proc: Path = PROC) -> ProcSample:
    """Sample process ``pid`` from ``/proc``.

    :raises OSError: when the process does not exist (or ``/proc`` is missing).
    :raises ValueError: when the files do not look like Linux's.
    """
    stat = (proc / str(pid) / "stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces or
    # parentheses itself; the fields after the last ")" are plain numbers,
    # starting with field 3 (state), so utime (14) and stime (15) are 11, 12.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    rss = peak = 0
    for line in (proc / str(pid) / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "VmRSS":
            rss = int(value.split()[0])
        elif key == "VmHWM":
            peak = int(value.split()[0])
    return ProcSample(
        cpu_s=ticks / os.sysconf("SC_CLK_TCK"), rss_kib=rss, peak_kib=peak
    )


def add_samples(samples: Sequence[ProcSample]) -> ProcSample:
    """Several processes (a cluster's nodes and Redis) as one."""
    return ProcSample(
        cpu_s=sum(s.cpu_s for s in samples),
        rss_kib=sum(s.rss_kib for s in samples),
        peak_kib=sum(s.peak_kib for s in samples),
    )


def percentile(ordered: Sequence[int], q: float) -> int:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of sorted values."""
    if not ordered:
        raise ValueError("no values")
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats drifting
    return ordered[min(len(ordered), int(rank)) - 1]


@frozen
class Latency:
    """Latency percentiles in milliseconds, and how many samples they come from."""

    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def summarize_latency(samples_ns: Sequence[int]) -> Latency | None:
    """Percentiles of nanosecond samples, or ``None`` without samples."""
    if not samples_ns:
        return None
    ordered = sorted(samples_ns)

    def ms(q: float) -> float:
        return round(percentile(ordered, q) / 1e6, 3)

    return Latency(
        samples=len(ordered),
        p50_ms=ms(50),
        p90_ms=ms(90),
        p99_ms=ms(99),
        max_ms=round(ordered[-1] / 1e6, 3),
    )


@frozen
class ServerStats:
    """What ``--server-pid`` revealed about the server during the run.

    :param cpu_percent: server CPU over the measured phase, in percent of one
        core (the send-and-drain phase; the hold time for ``idle``).
    :param rss_before_kib: before any bench client connected.
    :param rss_ready_kib: once every client was registered and in its room.
    :param rss_per_connection_bytes: (ready - before) / clients.
    :param setup_cpu_s: server CPU seconds from before any client connected
        to all registered and in their rooms.
    """

    pid: int
    cpu_percent: float | None
    rss_before_kib: int
    rss_ready_kib: int
    rss_end_kib: int
    rss_peak_kib: int
    rss_per_connection_bytes: float
    setup_cpu_s: float | None = None


@frozen
class BenchStats:
    """The generator's own CPU use over the measured phase, in percent of one core.

    A process near 100% means the generator, not the server, may be the limit:
    run more ``--procs``.  ``load_average`` (one minute, at the end) above
    ``cpus`` means something else competed for the CPU and the numbers are
    low and noisy.
    """

    procs: int
    cpu_percent: float
    busiest_proc_percent: float
    load_average: float
    cpus: int


@frozen
class Report:
    """The result of one run.  ``ok`` is false when anything went wrong.

    :param measured: whether the run got as far as sending (or, for ``idle``,
        holding); if not, the counts and rates mean nothing.
    :param connect_per_s: clients registered a second, from the first
        ``connect`` to the last client in its room.
    :param churn: the churn workload's connections (``churn_rate``).
    """

    workload: Workload
    connections: int
    sent: int
    expected: int
    received: int
    setup_s: float
    elapsed_s: float
    latency: Latency | None
    server: ServerStats | None
    bench: BenchStats | None
    errors: tuple[str, ...]
    measured: bool = True
    connect_per_s: float | None = None
    churn: ChurnStats | None = None

    @property
    def missing(self) -> int:
        """Deliveries that never arrived."""
        return max(0, self.expected - self.received)

    @property
    def unexpected(self) -> int:
        """Deliveries beyond the expected count (an echo, or a leak between rooms)."""
        return max(0, self.received - self.expected)

    @property
    def ok(self) -> bool:
        """True when every delivery arrived exactly once and nothing failed."""
        return not self.errors

    @property
    def deliveries_per_s(self) -> float:
        """Received deliveries over the time from `go` to the last delivery."""
        return self.received / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        """Messages sent over the same time."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``; the keys are a stable interface for scripts."""
        w = self.workload
        return {
            "ok": self.ok,
            "errors": list(self.errors),
            "measured": self.measured,
            "workload": {
                "name": w.name,
                "clients": w.clients,
                "rooms": w.rooms,
                "senders": w.senders,
                "messages_per_sender": w.messages_per_sender,
                "size": w.size,
                "rate": w.rate,
                "duration": w.duration,
                "active": w.taking_part,
                "churn_rate": w.churn_rate,
            },
            "connections": self.connections,
            "sent": self.sent,
            "expected": self.expected,
            "received": self.received,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "setup_s": round(self.setup_s, 3),
            "connect_per_s": self.connect_per_s,
            "elapsed_s": round(self.elapsed_s, 3),
            "deliveries_per_s": round(self.deliveries_per_s, 1),
            "messages_per_s": round(self.messages_per_s, 1),
            "latency_ms": attrs.asdict(self.latency) if self.latency else None,
            "server": attrs.asdict(self.server) if self.server else None,
            "bench": attrs.asdict(self.bench) if self.bench else None,
            "churn": _churn_dict(self.churn),
        }


def _churn_dict(churn: ChurnStats | None) -> dict[str, Any] | None:
    if churn is None:
        return None
    return {**attrs.asdict(churn), "achieved_per_s": round(churn.achieved_per_s, 1)}


def to_json(report: Report) -> str:
    """The report as one JSON document."""
    return json.dumps(report.as_dict(), indent=2)


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def format_table(report: Report) -> str:
    """The report for a person, one aligned line per subject."""
    w = report.workload
    rows: list[tuple[str, str]] = [("workload", w.describe())]
    rate = (
        f" ({report.connect_per_s:,.0f}/s from first connect to last registered)"
        if report.connect_per_s
        else ""
    )
    rows.append(
        (
            "connections",
            f"{report.connections:,} registered in {report.setup_s:.2f} s{rate}",
        )
    )
    if report.measured and not w.idle:
        verdict = "OK" if report.missing == 0 and report.unexpected == 0 else "ERROR"
        rows.append(
            (
                "deliveries",
                (
                    f"{report.expected:,} expected, {report.received:,} received, "
                    f"{report.missing:,} missing, {report.unexpected:,} unexpected"
                    f"  {verdict}"
                ),
            )
        )
        rows.append(
            (
                "throughput",
                (
                    f"{report.deliveries_per_s:,.0f} deliveries/s "
                    f"({report.messages_per_s:,.0f} messages/s sent) "
                    f"over {report.elapsed_s:.2f} s"
                ),
            )
        )
        lat = report.latency
        rows.append(
            (
                "latency",
                f"p50 {lat.p50_ms:.2f} ms  p90 {lat.p90_ms:.2f} ms  "
                f"p99 {lat.p99_ms:.2f} ms  max {lat.max_ms:.2f} ms "
                f"({lat.samples:,} samples)"
                if lat
                else "no samples",
            )
        )
    c = report.churn
    if c is not None:
        setup = (
            f", connect to pong p50 {c.setup.p50_ms:.2f} / p99 {c.setup.p99_ms:.2f} ms"
            if c.setup
            else ""
        )
        rows.append(
            (
                "churn",
                f"{c.registered:,} of {c.opened:,} connections registered and "
                f"closed in {c.window_s:.2f} s: {c.achieved_per_s:,.0f}/s "
                f"(asked {c.rate:g}/s, {c.skipped:,} skipped, {c.failed:,} failed)"
                + setup,
            )
        )
    s = report.server
    if s is not None:
        cpu = "n/a" if s.cpu_percent is None else f"{s.cpu_percent:.0f}% of a core"
        rows.append(
            (
                "server",
                (
                    f"pid {s.pid}: CPU {cpu}, RSS {_mib(s.rss_end_kib)} "
                    f"(before {_mib(s.rss_before_kib)}, peak {_mib(s.rss_peak_kib)})"
                ),
            )
        )
        if w.idle:
            rows.append(
                (
                    "per connection",
                    f"{s.rss_per_connection_bytes / 1024:.2f} KiB of server RSS"
                    + (
                        f", {1e6 * s.setup_cpu_s / report.connections:.0f} µs of "
                        "server CPU to connect and register"
                        if s.setup_cpu_s is not None and report.connections
                        else ""
                    ),
                )
            )
    b = report.bench
    if b is not None:
        rows.append(
            (
                "bench",
                (
                    f"{b.procs} proc{'s' if b.procs != 1 else ''}, CPU "
                    f"{b.cpu_percent:.0f}% of a core (busiest proc "
                    f"{b.busiest_proc_percent:.0f}%); machine load "
                    f"{b.load_average:.2f} on {b.cpus} CPUs"
                ),
            )
        )
    rows.extend(("error", e) for e in report.errors)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows) + "\n"


def stderr_progress() -> Callable[[str, bool], None]:
    """A progress callback: one rewritten line on a terminal, a line every few
    seconds otherwise (so logs stay short), and always the final state."""
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(text: str, final: bool) -> None:
        if tty:
            sys.stderr.write(f"\r\x1b[K{text}" + ("\n" if final else ""))
        else:
            now = time.monotonic()
            if now - last[0] < 2.0 and not final:
                return
            last[0] = now
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    return show
