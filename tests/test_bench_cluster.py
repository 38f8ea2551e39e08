# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Tests for ``bench/cluster.py`` (issue 19's speed: two nodes through Redis
against one node alone) and what it needs of the load generator.

Fast: the script's options, the alternation of the setups, its table,
ratios and exit status (``one_run`` replaced by a fake); the bench's
``--reader-ports`` (the plan spreads each room's readers over the ports,
senders stay on ``--port``; a reader on its own port is done draining only
once all its deliveries are in) and repeated ``--server-pid`` (summed).
Slow: the script itself with ``--runs 1`` on a tiny load against a real
redis-server and real daemons, every process stopped afterwards.
"""

from __future__ import annotations

import importlib.util
import itertools
import multiprocessing
import shutil
import socket
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from twisted_chat.bench.__main__ import parse_args as bench_args
from twisted_chat.bench.client import Stage
from twisted_chat.bench.report import ProcSample, add_samples
from twisted_chat.bench.spec import WorkerSpec
from twisted_chat.bench.worker import Worker
from twisted_chat.bench.workloads import get_workload, make_plan

SCRIPT = Path(__file__).parent.parent / "bench" / "cluster.py"


def _script() -> Any:
    """The script, imported by path as the bench scripts load each other."""
    spec = importlib.util.spec_from_file_location("bench_cluster", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_cluster"] = module
    spec.loader.exec_module(module)
    return module


bc = _script()


# The script's options.


def test_options_default_to_three_runs_of_fanout_and_latency() -> None:
    args, extra = bc.parse_args([])
    assert (args.runs, args.workloads, args.readers) == (
        3,
        ["fanout", "latency"],
        "split",
    )
    assert args.twistd.endswith("twistd")
    assert args.daemon_option == []
    assert extra == []


def test_options_after_a_double_dash_go_to_the_bench() -> None:
    args, extra = bc.parse_args(
        ["--runs", "1", "--workloads", "fanout", "--daemon-option=--max-clients=50",
         "--", "--messages", "5"]
    )  # fmt: skip
    assert (args.runs, args.workloads) == (1, ["fanout"])
    assert args.daemon_option == ["--max-clients=50"]
    assert extra == ["--messages", "5"]


@pytest.mark.parametrize(
    "bad", [["--runs", "0"], ["--workloads", ","], ["--readers", "all"]]
)
def test_options_refuse_nonsense(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bc.parse_args(bad)
    assert exit_.value.code == 2


# The report, from fake runs.


def _report(
    rate: float, cpu_percent: float, p99: float = 2.0, ok: bool = True
) -> dict[str, Any]:
    return {
        "ok": ok,
        "errors": [] if ok else ["missing 1 of 10 deliveries"],
        "deliveries_per_s": rate,
        "received": 1_000_000,
        "expected": 1_000_000,
        "server": {"cpu_percent": cpu_percent},
        "latency_ms": {"p50_ms": p99 / 2, "p99_ms": p99},
    }


def test_a_run_gives_cpu_per_delivery_and_the_split_by_process() -> None:
    run = bc.Run("cluster", "fanout", _report(1e6, 50.0), {"A": 0.3, "B": 0.1})
    assert run.numbers() == (1e6, 0.5, 1.0, 2.0)
    assert run.split() == pytest.approx({"A": 0.3, "B": 0.1})
    assert "A 0.300 + B 0.100 us/delivery" in bc.describe(run)
    assert bc.describe(run).endswith(", ok")
    empty = bc.Run("single", "fanout", {"ok": False, "errors": ["timed out"]})
    assert empty.numbers() == (0.0, 0.0, 0.0, 0.0)
    assert empty.split() == {}
    assert bc.describe(empty).endswith("ERRORS: timed out")


def test_the_table_has_medians_per_setup_and_the_ratios() -> None:
    runs = [
        bc.Run("single", "fanout", _report(rate, 20.0, p99))
        for rate, p99 in ((1e6, 1.0), (3e6, 3.0), (2e6, 2.0))
    ] + [
        bc.Run("cluster", "fanout", _report(rate, 40.0, 8.0), {"A": a, "redis": 0.01})
        for rate, a in ((1e6, 0.2), (5e5, 0.4))
    ]
    runs[-1].report["ok"] = False
    lines = bc.table(runs, ["fanout"])
    assert "| fanout | single | 2,000,000 | 0.100 | 1.00 | 2.00 | 3/3 |" in lines
    assert "| fanout | cluster | 750,000 | 0.600 | 4.00 | 8.00 | 1/2 |" in lines
    assert (
        "fanout cluster CPU by process: A 0.300 + redis 0.010 us/delivery "
        "over the whole run" in lines
    )
    assert (
        "fanout cluster/single: deliveries/s 0.38x, server CPU per delivery "
        "6.00x, p50 4.00x, p99 4.00x" in lines
    )


def test_a_ratio_over_nothing_measured_is_not_a_number() -> None:
    assert bc.ratios([1.0, 0.0, 1.0, 1.0], [2.0, 1.0, 1.0, 3.0]) == (
        "deliveries/s 2.00x, server CPU per delivery n/a, p50 1.00x, p99 3.00x"
    )


def test_runs_alternate_and_a_lost_delivery_fails_the_script(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    order: list[tuple[str, str]] = []
    oks = itertools.cycle([True, True, True, False])

    def fake(args: Any, setup: str, workload: str, extra: list[str]) -> Any:
        assert extra == ["--messages", "9"]
        assert args.daemon_option == []
        order.append((workload, setup))
        return bc.Run(setup, workload, _report(1e6, 10.0, ok=next(oks)))

    monkeypatch.setattr(bc, "one_run", fake)
    status = bc.main(["--runs", "2", "--", "--messages", "9"])
    out = capsys.readouterr().out
    assert order == [
        ("fanout", "single"), ("fanout", "cluster"),
        ("fanout", "cluster"), ("fanout", "single"),
        ("latency", "single"), ("latency", "cluster"),
        ("latency", "cluster"), ("latency", "single"),
    ]  # fmt: skip
    assert status == 1
    assert "fanout single run 2: " in out
    assert "| latency | cluster | " in out
    assert "medians of 2, alternating" in out
    assert "load average" in out


# What the script needs of the bench.


def test_reader_ports_spread_each_rooms_readers_and_keep_senders_on_port() -> None:
    w = get_workload("fanout", clients=10, senders=2, messages=3)
    plan = make_plan(w, "r", reader_ports=(7001, 7002))
    assert [c.port for c in plan.clients] == [0, 0, *[7001, 7002] * 4]
    assert plan.expected_total == make_plan(w, "r").expected_total
    rooms = make_plan(get_workload("rooms", clients=8, rooms=2, senders=2), "r",
                      reader_ports=(1, 2))  # fmt: skip
    by_room: dict[str, list[int]] = {}
    for c in rooms.clients:
        if not c.sender:
            by_room.setdefault(c.room, []).append(c.port)
    # Every room has readers on both ports, not one room a port.
    assert sorted(map(sorted, by_room.values())) == [[1, 2, 2], [1, 2, 2]]


def test_a_client_connects_to_its_own_port_on_the_servers_host() -> None:
    w = get_workload("fanout", clients=3, senders=1, messages=1)
    sender, reader, _ = make_plan(w, "r", reader_ports=(7002,)).clients
    spec = WorkerSpec(0, socket.AF_INET, ("127.0.0.1", 7001), None, (), 1, 100, 0.0)
    assert spec.address_of(sender) == ("127.0.0.1", 7001)
    assert spec.address_of(reader) == ("127.0.0.1", 7002)
    v6 = WorkerSpec(0, socket.AF_INET6, ("::1", 7001, 0, 0), None, (), 1, 100, 0.0)
    assert v6.address_of(reader) == ("::1", 7002, 0, 0)


def test_the_bench_takes_reader_ports_and_several_server_pids() -> None:
    cfg, _ = bench_args(["--reader-ports", "7001,7002", "--server-pid", "5",
                         "--server-pid", "6", "--server-pid", "7"])  # fmt: skip
    assert cfg.reader_ports == (7001, 7002)
    assert (cfg.server_pid, cfg.more_pids) == (5, (6, 7))
    cfg, _ = bench_args([])
    assert (cfg.reader_ports, cfg.server_pid, cfg.more_pids) == ((), None, ())


@pytest.mark.parametrize(
    "bad",
    [
        ["--reader-ports", "7001,x"],
        ["--reader-ports", "0"],
        ["--reader-ports", "7001", "--udp-port", "7002"],
    ],
)
def test_the_bench_refuses_bad_reader_ports(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_args(bad)
    assert exit_.value.code == 2


def test_several_processes_are_sampled_as_one() -> None:
    total = add_samples([ProcSample(1.5, 100, 200), ProcSample(0.25, 10, 20)])
    assert total == ProcSample(1.75, 110, 220)


def _draining(port: int, expected: int, received: int) -> Any:
    plan = SimpleNamespace(port=port, expected=expected)
    return SimpleNamespace(
        plan=plan, stage=Stage.DRAINING, pings=1, pongs=1, received=received
    )


def test_a_reader_on_its_own_port_drains_once_its_deliveries_are_in() -> None:
    here, there = multiprocessing.Pipe()
    spec = WorkerSpec(0, socket.AF_INET, ("127.0.0.1", 1), None, (), 1, 100, 0.0)
    worker = Worker(spec, there)
    try:
        local, remote = _draining(0, 5, 3), _draining(7002, 5, 3)
        worker.drain_pending = 2
        worker.drained(local)  # its own node's pong: after every delivery
        assert local.stage == Stage.DONE
        worker.drained(remote)  # the pong of the other node came first
        assert remote.stage == Stage.DRAINING
        remote.received = 5
        worker.drained(remote)
        assert remote.stage == Stage.DONE
        assert worker.drain_pending == -1  # reported
        assert here.recv()[0] == "progress"
        assert here.recv()[0] == "done"
    finally:
        worker.selector.close()
        here.close()
        there.close()


# The script against a real redis-server and real daemons.


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
def test_the_script_measures_one_node_and_two_through_redis(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs: list[Any] = []
    pids: list[int] = []
    real_measured = bc.measured

    def keep(*args: Any) -> Any:
        pids.extend(args[3].values())
        run = real_measured(*args)
        runs.append(run)
        return run

    monkeypatch.setattr(bc, "measured", keep)
    argv = ["--runs", "1", "--",
            "--clients", "20", "--senders", "4", "--messages", "300"]  # fmt: skip
    status = bc.main(argv)
    out = capsys.readouterr().out
    assert status == 0, out
    assert [(r.workload, r.setup) for r in runs] == [
        ("fanout", "single"), ("fanout", "cluster"),
        ("latency", "single"), ("latency", "cluster"),
    ]  # fmt: skip
    every = 16 * 4 * 300 + 4 * 3 * 300  # readers from 4 senders, senders from 3
    for run in runs:
        assert run.report["received"] == run.report["expected"] == every
    assert set(runs[1].cpu_s) == {"A", "B", "redis"}
    assert "| fanout | cluster | " in out
    assert "latency cluster/single: deliveries/s " in out
    # Every node and redis-server the script started is gone.
    assert len(pids) == 8
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
