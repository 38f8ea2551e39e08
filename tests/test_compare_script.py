"""Smoke tests of ``bench/compare.py``'s options and summaries, without servers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "compare.py"


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    """The script, imported by path (``bench/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_compare", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # attrs resolves the classes' annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _report(name: str, deliveries: float, *, missing: int = 0) -> dict[str, Any]:
    return {
        "ok": missing == 0,
        "measured": True,
        "errors": [],
        "workload": {"name": name, "clients": 100},
        "received": 1000,
        "missing": missing,
        "unexpected": 0,
        "elapsed_s": 0.5,
        "deliveries_per_s": deliveries,
        "latency_ms": {"p50_ms": 0.5, "p99_ms": 1.5},
        "server": {"cpu_percent": 50.0, "rss_per_connection_bytes": 0.0},
        "bench": {"cpu_percent": 40.0},
    }


def test_defaults(compare: ModuleType) -> None:
    """Without options: 3 runs of every workload, 10,000 idle connections for both."""
    args = compare.parse_args([])
    assert args.runs == 3
    assert args.workloads == list(compare.CASE_NAMES)
    assert args.idle_clients == args.baseline_idle_clients == 10_000
    assert not args.quick
    assert args.out is None


def test_workloads_are_checked(compare: ModuleType) -> None:
    """An unknown workload name is a usage error (exit status 2)."""
    assert compare.parse_args(["--workloads", "rooms,fanout"]).workloads == [
        "rooms",
        "fanout",
    ]
    with pytest.raises(SystemExit) as exc:
        compare.parse_args(["--workloads", "fanout,nosuch"])
    assert exc.value.code == 2


def test_quick_sizes_are_tiny(compare: ModuleType) -> None:
    """--quick gives every case a small --clients; full size keeps the defaults."""
    quick = compare.make_cases(True, 10_000, 10_000)
    for case in quick.values():
        for variant in case.variants:
            args = [*case.bench_args, *variant.args]
            assert "--clients" in args, case.name
            assert int(args[args.index("--clients") + 1]) <= 200
    full = compare.make_cases(False, 10_000, 5_000)
    assert full["fanout"].bench_args == ()
    assert [v.args for v in full["idle"].variants] == [
        ("--clients", "10000"),
        ("--clients", "5000"),
    ]
    assert [v.udp for v in full["udp"].variants] == [False, True]
    assert full["udp-fanout"].variants[1].args == ("--udp-clients", "90")


def test_table_and_targets(compare: ModuleType) -> None:
    """Medians land in the table, and a slow or lossy fanout misses its targets."""
    case = {
        "name": "fanout",
        "workload": "fanout",
        "load_before": [0.5, 0.5, 0.5],
        "load_after": [0.7, 0.5, 0.5],
        "variants": {
            compare.OURS: {
                "runs": [
                    _report("fanout", 1_000_000.0),
                    _report("fanout", 1_500_000.0, missing=3),
                    _report("fanout", 9_000_000.0),
                ]
            }
        },
    }
    table = compare.markdown_table([case])
    assert "| fanout | twisted-chat | 2/3 | 1,500,000 |" in table
    goals = compare.targets([case], False)
    assert any(g.startswith("fanout") and "**not met**" in g for g in goals)
    assert any(g.startswith("no delivery lost: 3 missing") for g in goals)
