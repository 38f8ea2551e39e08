"""The C floor (``bench/c_floor.c``): it builds, and the bench's ``rooms`` and
``fanout`` workloads at a small size count every delivery exactly against it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "c_floor.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def c_floor() -> ModuleType:
    """The script, imported by path (``bench/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_c_floor", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def server(c_floor: ModuleType) -> Iterator[object]:
    with c_floor.CFloor() as running:
        yield running


def test_build_compiles_once_per_version_of_the_source(
    c_floor: ModuleType, tmp_path: Path
) -> None:
    source = tmp_path / "c_floor.c"
    source.write_bytes(c_floor.SOURCE.read_bytes())
    binary = c_floor.build(source, tmp_path / "cache")
    assert binary.exists()
    assert c_floor.build(source, tmp_path / "cache") == binary
    source.write_bytes(source.read_bytes() + b"\n/* edited */\n")
    rebuilt = c_floor.build(source, tmp_path / "cache")
    assert rebuilt != binary
    assert rebuilt.exists()


def _bench(port: int, pid: int, *options: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "twisted_chat.bench", "--port", str(port),
         "--server-pid", str(pid), "--json", "--no-progress", "--timeout", "30",
         *options],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    report: dict[str, object] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # 60 clients in 6 rooms of 10, every one sending 4: 4 * 9 per sender.
        (("--workload", "rooms", "--clients", "60", "--rooms", "6",
          "--messages", "4"), 60 * 4 * 9),
        # One room of 20, 3 senders of 50: 50 * 19 per sender.
        (("--workload", "fanout", "--clients", "20", "--senders", "3",
          "--messages", "50"), 3 * 50 * 19),
    ],
)  # fmt: skip
def test_the_bench_counts_every_delivery_exactly(
    server: object, options: tuple[str, ...], expected: int
) -> None:
    report = _bench(server.port, server.pid, *options)  # type: ignore[attr-defined]
    assert report["errors"] == []
    assert report["ok"] is True
    assert (report["expected"], report["received"]) == (expected, expected)
    assert report["unexpected"] == 0
