# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Tests for issue 18's scale workloads (``idle-max``, ``room-10k``, ``churn``)
in the load generator, ``bench/compare.py``'s scale cases and ``bench/scale.py``.

The plans, options and reports are tested without servers; the slow tests run
each workload at a tiny size against a real ``twistd -n chat``.
"""

from __future__ import annotations

import importlib.util
import math
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

from twisted_chat.bench import RunConfig, get_workload, run
from twisted_chat.bench.__main__ import parse_args
from twisted_chat.bench.churn import Churner, ChurnSpec, ChurnStats, churn_source
from twisted_chat.bench.report import Latency, Report, format_table
from twisted_chat.bench.spec import WorkerResult
from twisted_chat.bench.tally import build_report
from twisted_chat.bench.workloads import (
    IDLE_ROOM_SIZE,
    make_plan,
    source_address,
    worker_processes,
)

BENCH = Path(__file__).resolve().parent.parent / "bench"
TWISTD = str(Path(sys.executable).with_name("twistd"))


def _script(name: str) -> ModuleType:
    """A ``bench/`` script, imported by path (``bench/`` is not a package)."""
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # attrs resolves the classes' annotations through sys.modules.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    return _script("compare")


@pytest.fixture(scope="module")
def scale(compare: ModuleType) -> ModuleType:
    return _script("scale")


# The workloads and their plans.


def test_idle_max_holds_19000_idle_clients_over_two_processes() -> None:
    """idle-max: 19,000 clients in rooms of 10, nobody sends, 2 workers."""
    w = get_workload("idle-max")
    assert (w.clients, w.rooms, w.senders, w.idle) == (19_000, 1_900, 0, True)
    plan = make_plan(w, "r")
    assert plan.expected_total == 0
    assert plan.messages_total == 0
    assert len({c.room for c in plan.clients}) == 1_900
    assert worker_processes(w, None) == 2
    small = get_workload("idle-max", clients=1000)
    assert (small.clients, small.rooms) == (1000, 100)


def test_room_10k_plan_counts_every_other_member_exactly() -> None:
    """One room of 10,000: a sender hears the 9 other senders, a reader all 10."""
    w = get_workload("room-10k")
    assert (w.clients, w.rooms, w.senders, w.messages) == (10_000, 1, 10, 100)
    plan = make_plan(w, "r")
    assert {c.room for c in plan.clients} == {"#bench-r-0"}
    assert [c.expected for c in plan.clients[:11]] == [900] * 10 + [1000]
    assert plan.expected_total == 10 * 100 * 9_999
    assert plan.messages_total == 1000
    sized = get_workload("room-10k", clients=100, messages=7)
    assert make_plan(sized, "r").expected_total == 10 * 7 * 99


def test_churn_plan_keeps_the_bystander_pair_alone_in_its_room() -> None:
    """churn: clients 0 and 1 share a room; the other 17,998 are held idle in
    rooms of 10 of their own and expect nothing."""
    w = get_workload("churn")
    assert (w.clients, w.active, w.senders, w.churn_rate) == (18_000, 2, 1, 1000.0)
    plan = make_plan(w, "r")
    sender, reader, *idle = plan.clients
    assert sender.sender
    assert not reader.sender
    assert sender.room == reader.room == "#bench-r-0"
    assert (sender.expected, reader.expected) == (0, 1500)
    assert plan.expected_total == 1500 == plan.messages_total
    assert all(c.expected == 0 and not c.sender for c in idle)
    members: dict[str, int] = {}
    for c in idle:
        members[c.room] = members.get(c.room, 0) + 1
    assert sender.room not in members
    assert sorted(set(members.values())) == [8, IDLE_ROOM_SIZE]
    assert sum(members.values()) == 17_998


def test_churn_clients_size_only_the_idle_crowd() -> None:
    """--clients 1000 keeps the pair, its one sender and its room."""
    w = get_workload("churn", clients=1000)
    assert (w.clients, w.active, w.rooms, w.senders) == (1000, 2, 1, 1)
    assert make_plan(w, "r").expected_total == 1500


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"workload": "churn", "clients": 1}, "--clients must be at least 2"),
        ({"workload": "fanout", "churn_rate": 5.0}, "--churn-rate needs a --duration"),
        ({"workload": "churn", "churn_rate": -1.0}, "must not be negative"),
    ],
)
def test_inconsistent_scale_workloads_are_refused(
    overrides: dict[str, Any], message: str
) -> None:
    name = overrides.pop("workload")
    with pytest.raises(ValueError, match=message):
        get_workload(name, **overrides)


def test_source_addresses_go_past_one_octet_and_stay_distinct() -> None:
    """More than 254 sources continue at 127.0.2.1; each index below the
    count gets its own address, and the old addresses are unchanged."""
    assert source_address(0, 600) == "127.0.1.1"
    assert source_address(253, 600) == "127.0.1.254"
    assert source_address(254, 600) == "127.0.2.1"
    assert source_address(600, 600) == "127.0.1.1"
    assert len({source_address(i, 600) for i in range(600)}) == 600
    assert source_address(5, 0) is None


def test_worker_processes_respect_the_descriptor_limit() -> None:
    """A worker holds at most 10,000 clients, whatever --procs asks."""
    assert worker_processes(get_workload("fanout"), None) == 1
    assert worker_processes(get_workload("idle-max"), 1) == 2
    assert worker_processes(get_workload("idle-max", clients=25_000), None) == 3
    assert worker_processes(get_workload("idle-max", clients=3), 8) == 3


def test_parse_args_for_the_scale_workloads() -> None:
    """The command line picks the workloads' processes and source addresses."""
    cfg, _ = parse_args(["--workload", "idle-max"])
    assert (cfg.procs, cfg.source_addrs) == (2, math.ceil(19_000 / 32))
    cfg, _ = parse_args(["--workload", "churn", "--churn-rate", "500"])
    assert cfg.workload.churn_rate == 500.0
    assert cfg.workload.duration == 15.0
    cfg, _ = parse_args(["--workload", "rooms"])
    assert (cfg.procs, cfg.source_addrs) == (1, 0)
    cfg, _ = parse_args(["--workload", "room-10k", "--clients", "50", "--procs", "1"])
    assert (cfg.workload.clients, cfg.procs) == (50, 1)


# Reports.


def _result(start: int, end: int, connected: int) -> WorkerResult:
    return WorkerResult(
        connected=connected, sent=0, received=0, samples=array("q"),
        last_rx_ns=0, cpu_s=0.0, errors=(), short=(),
        setup_start_ns=start, setup_end_ns=end,
    )  # fmt: skip


def _churn(failed: int = 0) -> ChurnStats:
    return ChurnStats(
        rate=1000.0, duration=15.0, opened=15_000, skipped=0,
        registered=15_000 - failed, failed=failed, window_s=15.0, cpu_s=1.0,
        setup=Latency(samples=10, p50_ms=1.0, p90_ms=2.0, p99_ms=3.0, max_ms=4.0),
        errors=(),
    )  # fmt: skip


def _report(churned: ChurnStats | str | None, *results: WorkerResult) -> Report:
    w = get_workload("churn", clients=200)
    return build_report(
        RunConfig(workload=w),
        make_plan(w, "r"),
        list(results),
        complete=True,
        t0=0,
        errors=[],
        setup_s=3.0,
        elapsed_s=15.0,
        cpu_window=None,
        samples=(None, None, None),
        parent_cpu=0.0,
        churned=churned,
    )


def test_connect_rate_runs_from_the_first_connect_to_the_last_registered() -> None:
    """Two workers: 200 clients from 1.0 s to 3.0 s is 100 a second."""
    report = _report(
        None, _result(10**9, 2 * 10**9, 120), _result(11 * 10**8, 3 * 10**9, 80)
    )
    assert report.connect_per_s == 100.0
    assert report.as_dict()["connect_per_s"] == 100.0
    assert "(100/s from first connect to last registered)" in format_table(report)


def test_churn_stats_are_reported_and_failures_are_errors() -> None:
    """The churn line and JSON carry the achieved rate; a failed churn
    connection makes the run fail, a missing result too."""
    ok = _report(_churn(), _result(1, 2, 200))
    assert ok.errors == ()
    assert ok.as_dict()["churn"]["achieved_per_s"] == 1000.0
    table = format_table(ok)
    assert (
        "15,000 of 15,000 connections registered and closed in 15.00 s: 1,000/s"
        in table
    )
    assert "p99 3.00 ms" in table
    bad = _report(_churn(failed=3), _result(1, 2, 200))
    assert "3 churn connections failed" in bad.errors
    gone = _report("the churn process died (exit code 1)", _result(1, 2, 200))
    assert gone.errors == ("the churn process died (exit code 1)",)


def test_churn_sources_are_their_own_block() -> None:
    """Churn connections come from 127.3/16, apart from the workers' 127.0/16."""
    assert churn_source(0) == "127.3.0.1"
    assert churn_source(254) == "127.3.1.1"
    assert len({churn_source(k) for k in range(4000)}) == 4000


def test_churner_counts_a_refused_connection_as_failed() -> None:
    """Nothing listening: each churn connection fails, and the stats say so."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    churner = Churner(ChurnSpec(socket.AF_INET, ("127.0.0.1", port), 50.0, 0.1))
    churner.run(time.monotonic_ns())
    stats = churner.stats(0.0)
    assert stats.opened >= 1
    assert stats.registered == 0
    assert stats.failed == stats.opened
    assert "cannot connect" in stats.errors[0]


# bench/compare.py's scale cases.


def test_compare_has_the_scale_cases_against_the_c_floor(compare: ModuleType) -> None:
    cases = compare.make_cases(False, 10_000, 10_000, 5_000)
    for name in compare.SCALE_CASE_NAMES:
        labels = [v.label for v in cases[name].variants]
        assert labels == [compare.OURS, compare.C_FLOOR], name
        assert cases[name].variants[0].server.scale
    assert cases["idle-max"].bench_args == ("--clients", "5000")
    assert cases["idle-max"].fresh
    assert cases["churn"].fresh
    quick = compare.make_cases(True, 10_000, 10_000)
    assert quick["churn"].bench_args[:2] == ("--clients", "100")
    args = compare.parse_args(["--workloads", "idle-max,churn"])
    assert args.workloads == ["idle-max", "churn"]
    assert "idle-max" not in compare.parse_args([]).workloads


def _scale_report(name: str, **extra: Any) -> dict[str, Any]:
    report = {
        "ok": True, "measured": True, "errors": [],
        "workload": {"name": name, "clients": 19_000}, "received": 0,
        "missing": 0, "unexpected": 0, "elapsed_s": 1.0, "deliveries_per_s": 0.0,
        "latency_ms": None, "server": {"cpu_percent": 5.0,
                                       "rss_per_connection_bytes": 2048.0},
        "bench": {"cpu_percent": 5.0},
    }  # fmt: skip
    report.update(extra)
    return report


def test_compare_scale_targets(compare: ModuleType) -> None:
    """RSS, connect rate and churn are judged against the issue's numbers."""

    def case(name: str, *runs: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name, "workload": name, "load_before": [1.0] * 3,
            "load_after": [1.0] * 3, "variants": {compare.OURS: {"runs": list(runs)}},
        }  # fmt: skip

    lat = {"p50_ms": 1.0, "p99_ms": 12.0}
    cases = [
        case("idle-max", _scale_report("idle-max", connect_per_s=6000.0)),
        case(
            "churn",
            _scale_report("churn", latency_ms=lat, churn={"achieved_per_s": 990.0}),
        ),
    ]
    goals = compare.scale_targets(cases)
    assert goals[0].startswith("idle-max ≤ 2.5 KiB")
    assert "2.00 KiB — **met**" in goals[0]
    assert "6,000/s — **met**" in goals[1]
    assert "990/s, p99 12.00 ms — **not met**" in goals[2]
    table = compare.markdown_table(cases)
    assert "| idle-max (19,000 conns) | twisted-chat | 1/1 |" in table
    assert table.splitlines()[2].endswith("| 6,000 | – |")
    assert table.splitlines()[3].endswith("| – | 990 |")


# bench/scale.py.


def test_scale_room_messages_aim_at_the_deliveries(scale: ModuleType) -> None:
    assert scale.room_messages(10, 5_000_000) == 55_556
    assert scale.room_messages(10_000, 5_000_000) == 50
    assert scale.room_messages(2, 10) == 5
    args = scale.parse_args(["--parts", "rooms", "--room-sizes", "10,10000"])
    assert scale.points(args) == [
        ("rooms", "room-10k", 10, ["--clients", "10", "--messages", "55556"]),
        ("rooms", "room-10k", 10_000, ["--clients", "10000", "--messages", "50"]),
    ]
    args = scale.parse_args(["--parts", "clients", "--clients", "1000"])
    assert [p[1] for p in scale.points(args)] == ["idle-max", "rooms"]
    args = scale.parse_args(["--clients", "1000,2000", "--only", "idle-max"])
    assert [(p[1], p[2]) for p in scale.points(args)] == [
        ("idle-max", 1000),
        ("idle-max", 2000),
    ]


def test_scale_quick_never_writes_the_docs(scale: ModuleType) -> None:
    args = scale.parse_args(["--quick"])
    assert "docs" not in args.out.parts
    assert scale.parse_args([]).png == scale.ROOT / "docs" / "scale.png"


def _point(scale: ModuleType, workload: str, size: int) -> dict[str, Any]:
    idle = workload == "idle-max"
    part = "rooms" if workload == "room-10k" else "clients"
    report = _scale_report(
        workload,
        connections=size,
        connect_per_s=4000.0,
        received=1_000_000,
        deliveries_per_s=2_000_000.0,
        elapsed_s=0.5,
        server={"cpu_percent": 90.0, "rss_per_connection_bytes": 2560.0,
                "setup_cpu_s": size / 2000},
    )  # fmt: skip
    if idle:
        report["workload"] = {"name": "idle-max", "clients": size}
        report["slab_growth_kib"] = 6 * size
    medians = {label: scale.medians([report]) for label in ("A", "B")}
    return {
        "part": part, "workload": workload, "size": size,
        "options": ["--clients", str(size), "--messages", "7"],
        "load_before": [1.0] * 3, "load_after": [1.5] * 3,
        "servers": {"A": [report], "B": [report]}, "medians": medians,
    }  # fmt: skip


def test_scale_medians_tables_and_merge(scale: ModuleType) -> None:
    idle = _point(scale, "idle-max", 1000)
    m = idle["medians"]["A"]
    assert m["kib_per_client"] == 2.5
    assert m["cpu_us_per_connect"] == 500.0
    assert m["kernel_kib_per_socket"] == 3.0
    assert m["deliveries_per_s"] is None
    rooms = _point(scale, "rooms", 1000)["medians"]["A"]
    assert rooms["cpu_us_per_delivery"] == pytest.approx(0.45)
    document = {
        "labels": ["A", "B"], "runs": 1, "machine": {"commit": "abc"},
        "points": [idle, _point(scale, "rooms", 1000), _point(scale, "room-10k", 10)],
    }  # fmt: skip
    text = scale.tables(document)
    assert "| 1,000 | 2.50 / 2.50 | 3.00 / 3.00 | 4,000 / 4,000 | 500 / 500 |" in text
    assert "| 10 | 7 | 2,000,000 / 2,000,000 | 0.450 / 0.450 |" in text
    newer = {**document, "points": [_point(scale, "room-10k", 100)]}
    merged = scale.merge(document, newer)
    assert [(p["workload"], p["size"]) for p in merged["points"]] == [
        ("idle-max", 1000),
        ("rooms", 1000),
        ("room-10k", 10),
        ("room-10k", 100),
    ]
    again = scale.merge(merged, {**document, "points": [_point(scale, "rooms", 1000)]})
    assert [(p["workload"], p["size"]) for p in again["points"]][-1] == ("rooms", 1000)
    assert len(again["points"]) == 4


def test_scale_plot_writes_a_png_or_says_why_not(
    scale: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = {
        "labels": ["A", "B"], "runs": 1, "machine": {"commit": "abc"},
        "points": [_point(scale, "idle-max", 1000), _point(scale, "room-10k", 10),
                   _point(scale, "room-10k", 100)],
    }  # fmt: skip
    png = tmp_path / "scale.png"
    assert scale.plot(document, png) == f"wrote {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    said = scale.plot(document, tmp_path / "other.png")
    assert said.startswith("no plot: matplotlib is not installed")
    assert not (tmp_path / "other.png").exists()


# Against a real twistd.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            assert daemon.poll() is None, "twistd exited"
            assert time.monotonic() < deadline, "twistd did not open its port"
            time.sleep(0.05)  # polling a condition, bounded by the deadline
        else:
            return


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workload", "overrides", "procs"),
    [
        ("idle-max", {"clients": 60, "duration": 0.0}, 2),
        ("room-10k", {"clients": 40, "messages": 20}, 2),
        ("churn", {"clients": 30, "churn_rate": 40.0, "duration": 1.0}, 2),
    ],
)
def test_scale_workloads_against_twistd(
    workload: str, overrides: dict[str, Any], procs: int
) -> None:
    """Each scale workload, tiny, against a real daemon with its default
    per-address cap: every delivery once, every client (and every churn
    connection) registered, from many source addresses."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as directory:
        daemon = subprocess.Popen(
            [TWISTD, "--nodaemon", "--pidfile=", "chat",
             "--tcp", f"tcp:{port}:interface=127.0.0.1:backlog=1024",
             "--history-db", "off", "--flood-burst", "0", "--flood-rate", "0",
             "--max-per-ip", "4"],
            cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for_port(port, daemon)
            w = get_workload(workload, **overrides)
            config = RunConfig(
                workload=w, port=port, server_pid=daemon.pid, procs=procs,
                source_addrs=w.clients // 3, timeout=20.0,
            )  # fmt: skip
            report = run(config)
        finally:
            daemon.kill()
            daemon.wait(timeout=30)
    assert report.errors == ()
    assert report.connections == w.clients
    assert report.received == report.expected
    assert report.connect_per_s is not None
    assert report.server is not None
    assert report.server.setup_cpu_s is not None
    if workload == "churn":
        assert report.churn is not None
        assert report.churn.registered == report.churn.opened == 40
        assert report.churn.failed == 0
        assert report.expected == 100
        assert report.latency is not None
    elif workload == "room-10k":
        assert report.expected == 10 * 20 * 39
    else:
        assert report.expected == 0
    assert attrs.has(type(report))


def test_scale_churn_part_tables_the_rate_and_the_bystander(
    scale: ModuleType,
) -> None:
    """The churn part: one point per rate; the server CPU per churned
    connection is its CPU share over the window, per connection registered."""
    args = scale.parse_args(["--parts", "churn", "--churn-rates", "250,1000"])
    assert scale.points(args) == [
        ("churn", "churn", 250, ["--churn-rate", "250"]),
        ("churn", "churn", 1000, ["--churn-rate", "1000"]),
    ]
    report = _scale_report(
        "churn",
        elapsed_s=15.0,
        latency_ms={"p50_ms": 0.5, "p99_ms": 4.0},
        churn={"achieved_per_s": 1000.0, "skipped": 0, "registered": 15_000},
        server={"cpu_percent": 50.0},
    )
    report["workload"] = {"name": "churn", "clients": 18_000}
    m = scale.medians([report])
    assert m["cpu_us_per_churn"] == 500.0
    assert (m["bystander_p50_ms"], m["bystander_p99_ms"]) == (0.5, 4.0)
    point = {
        "part": "churn", "workload": "churn", "size": 1000,
        "options": ["--churn-rate", "1000"], "load_before": [1.0] * 3,
        "load_after": [1.0] * 3, "servers": {"A": [report]}, "medians": {"A": m},
    }  # fmt: skip
    text = scale.tables(
        {"labels": ["A"], "runs": 1, "machine": {"commit": "c0"}, "points": [point]}
    )
    assert "| 1,000 | 18,000 | 1,000 | 0 | 50 | 500 | 0.50 | 4.00 | 1/1 |" in text
    assert text.endswith("Commits run: c0.")
