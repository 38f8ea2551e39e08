# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""What a run's numbers add up to: the workers' results and the server's
``/proc`` samples, turned into one :class:`~twisted_chat.bench.report.Report`.

The runner (:mod:`twisted_chat.bench.runner`) collects; this module judges:
a delivery count off by one is an error here, throughput is measured up to
the last delivery rather than the drain, and CPU shares are taken over the
measured window only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from twisted_chat.bench.report import (
    BenchStats,
    Report,
    ServerStats,
    summarize_latency,
)

if TYPE_CHECKING:
    from typing import TypeAlias

    from twisted_chat.bench.churn import ChurnStats
    from twisted_chat.bench.report import ProcSample
    from twisted_chat.bench.runner import RunConfig
    from twisted_chat.bench.spec import WorkerResult
    from twisted_chat.bench.workloads import Plan

    #: The server's samples: before the clients connect, once they are all
    #: in their rooms, and at the end.
    Samples: TypeAlias = tuple[ProcSample | None, ProcSample | None, ProcSample | None]

#: Errors listed one by one before the rest are only counted.
MAX_ERRORS_SHOWN = 5


def _summarize_errors(errors: list[str]) -> list[str]:
    if len(errors) <= MAX_ERRORS_SHOWN:
        return errors
    more = len(errors) - MAX_ERRORS_SHOWN
    return [*errors[:MAX_ERRORS_SHOWN], f"... and {more} more errors like these"]


def build_report(
    config: RunConfig,
    plan: Plan,
    results: list[WorkerResult],
    *,
    complete: bool,
    t0: int,
    errors: list[str],
    setup_s: float,
    elapsed_s: float,
    cpu_window: float | None,
    samples: Samples,
    parent_cpu: float,
    churned: ChurnStats | str | None = None,
) -> Report:
    """The report of a run.

    :param results: the results of the workers that handed theirs in.
    :param complete: whether every worker did.
    :param t0: when sending began (``time.monotonic_ns()``), 0 if it never did.
    :param errors: what went wrong in the parent, first.
    :param churned: the churn process's stats, or why it has none.
    """
    errors = list(errors)
    connected = sum(r.connected for r in results)
    received = sum(r.received for r in results)
    sent = sum(r.sent for r in results)
    expected = plan.expected_total
    w = config.workload
    for r in results:
        errors.extend(e for e in r.errors if e not in errors)
    if results and complete:
        last_rx = max(r.last_rx_ns for r in results)
        if received and last_rx > t0 and not w.idle:
            # Throughput is measured up to the last delivery, not the drain.
            elapsed_s = (last_rx - t0) / 1e9
    if t0:
        # Only once sending began do the counts mean anything.
        errors.extend(_count_errors(results, expected, received))
    churn = None
    if isinstance(churned, str):
        errors.append(churned)
    elif churned is not None:
        churn = churned
        errors.extend(churned.errors)
        if churned.failed:
            errors.append(f"{churned.failed:,} churn connections failed")
    samples_ns: list[int] = []
    for r in results:
        samples_ns.extend(r.samples)
    bench = None
    if cpu_window:
        per_proc = [100 * r.cpu_s / cpu_window for r in results]
        bench = BenchStats(
            procs=config.procs,
            cpu_percent=round(sum(per_proc) + 100 * parent_cpu / cpu_window, 1),
            busiest_proc_percent=round(max(per_proc, default=0.0), 1),
            load_average=round(os.getloadavg()[0], 2),
            cpus=os.cpu_count() or 1,
        )
    return Report(
        workload=w,
        connections=connected,
        sent=sent,
        expected=expected,
        received=received,
        setup_s=setup_s,
        elapsed_s=elapsed_s,
        latency=summarize_latency(samples_ns),
        server=_server_stats(config.server_pid, len(plan.clients), samples, cpu_window),
        bench=bench,
        errors=tuple(_summarize_errors(errors)),
        measured=bool(t0),
        connect_per_s=_connect_rate(results, connected),
        churn=churn,
    )


def _connect_rate(results: list[WorkerResult], connected: int) -> float | None:
    """Clients registered a second, from the first ``connect`` of any worker
    to the last client registered (the workers start at about the same time,
    and the processes' start-up is left out)."""
    starts = [r.setup_start_ns for r in results if r.setup_start_ns]
    ends = [r.setup_end_ns for r in results if r.setup_end_ns]
    if not starts or not ends or max(ends) <= min(starts):
        return None
    return round(connected / ((max(ends) - min(starts)) / 1e9), 1)


def _count_errors(
    results: list[WorkerResult], expected: int, received: int
) -> list[str]:
    if received == expected:
        return []
    short = [s for r in results for s in r.short]
    detail = ", ".join(f"client {i} got {got} of {want}" for i, want, got in short[:3])
    if received < expected:
        head = f"missing {expected - received:,} of {expected:,} deliveries"
    else:
        head = f"{received - expected:,} unexpected deliveries beyond {expected:,}"
    return [f"{head} ({detail})" if detail else head]


def _server_stats(
    pid: int | None, clients: int, samples: Samples, cpu_window: float | None
) -> ServerStats | None:
    before, ready, end = samples
    if pid is None or before is None:
        return None
    ready = ready or before
    last = end or ready
    cpu = None
    if end is not None and cpu_window:
        cpu = round(100 * (end.cpu_s - ready.cpu_s) / cpu_window, 1)
    return ServerStats(
        pid=pid,
        cpu_percent=cpu,
        rss_before_kib=before.rss_kib,
        rss_ready_kib=ready.rss_kib,
        rss_end_kib=last.rss_kib,
        rss_peak_kib=last.peak_kib,
        rss_per_connection_bytes=round(
            1024 * (ready.rss_kib - before.rss_kib) / clients, 1
        ),
        setup_cpu_s=round(ready.cpu_s - before.cpu_s, 2),
    )
