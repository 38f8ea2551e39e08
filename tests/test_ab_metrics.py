# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Tests for ``bench/ab_metrics.py`` (issue 17's cost target: the fan-out with
``--metrics`` on within 3% of off).

Fast: its options, the alternation of the two sides, the medians and ratios
of its report and its exit status (``one_run`` replaced by a fake), and the
scraper against a small HTTP server in this process that answers as
``prometheus_client`` does (OpenMetrics or text, gzip or not) or with a
404.  Slow: the script itself with ``--runs 1`` on a tiny load against real
daemons, ``--metrics`` scraped.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from attrs import define, field
from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app

SCRIPT = Path(__file__).parent.parent / "bench" / "ab_metrics.py"


def _script() -> Any:
    """The script, imported by path as the bench scripts load each other."""
    spec = importlib.util.spec_from_file_location("bench_ab_metrics", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ab_metrics"] = module
    spec.loader.exec_module(module)
    return module


ab = _script()


# Options.


def test_options_default_to_five_runs_of_both_loads_scraped_every_second() -> None:
    args, extra = ab.parse_args([])
    assert (args.runs, args.workloads, args.scrape_interval) == (5, "fanout,rooms", 1.0)
    assert args.on_args == "--metrics tcp:{port}:interface=127.0.0.1"
    assert args.scrape_path == "/metrics"
    assert extra == []


def test_options_after_a_double_dash_go_to_the_bench() -> None:
    args, extra = ab.parse_args(
        ["--runs", "2", "--on-args", "--web tcp:{port}", "--", "--messages", "5"]
    )
    assert args.runs == 2
    assert args.on_args == "--web tcp:{port}"
    assert extra == ["--messages", "5"]


@pytest.mark.parametrize("bad", [["--runs", "0"], ["--scrape-interval", "-1"]])
def test_options_refuse_nonsense(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        ab.parse_args(bad)
    assert exit_.value.code == 2


# The report, from fake runs.


def _report(rate: float, cpu_percent: float, ok: bool = True) -> dict[str, Any]:
    return {
        "ok": ok,
        "errors": [] if ok else ["missing 1 of 10 deliveries"],
        "deliveries_per_s": rate,
        "server": {"cpu_percent": cpu_percent},
        "latency_ms": {"p50_ms": 1.0, "p99_ms": 2.0},
        "received": 10,
        "expected": 10,
        "elapsed_s": 1.0,
    }


def _fake(
    cpu: dict[str, list[float]], order: list[tuple[str, str]], scrape_error: str = ""
) -> Any:
    """A ``one_run``: 1e6 deliveries/s, the next CPU % of ``cpu[side]``."""
    left = {side: iter(values) for side, values in cpu.items()}

    def one_run(args: Any, side: str, workload: str, extra: list[str]) -> Any:
        assert extra == ["--messages", "5"]
        order.append((workload, side))
        report = _report(1e6, next(left[side]))
        run = ab.Run(side, workload, report, scraped=side == "on")
        if side == "on":
            run.scrapes = [ab.Scrape(0.0, 0.002, 200, 7), ab.Scrape(1.0, 0.003, 200, 7)]
            if scrape_error:
                run.scrapes.append(ab.Scrape(2.0, 0.001, 404, 0, scrape_error))
            run.periodic, run.in_phase, run.scrape_cpu_ms = len(run.scrapes), 1, 1.5
        return run

    return one_run


def test_runs_alternate_and_the_ratio_is_of_the_medians(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    order: list[tuple[str, str]] = []
    # off: 10, 30, 20 % of a core at 1e6/s = 0.1, 0.3, 0.2 us (median 0.2);
    # on: 21, 100, 20.4 % (median 0.21, an outlier that a mean would show).
    cpu = {"off": [10.0, 30.0, 20.0], "on": [21.0, 100.0, 20.4]}
    monkeypatch.setattr(ab, "one_run", _fake(cpu, order))
    assert (
        ab.main(["--runs", "3", "--workloads", "fanout", "--", "--messages", "5"]) == 0
    )
    sides = [side for _, side in order]
    assert sides == ["off", "on", "on", "off", "off", "on"]
    out = capsys.readouterr().out
    assert "| fanout | off | 1,000,000 | 0.200 | 1.00 | 2.00 | - | - |" in out
    assert "| fanout | on | 1,000,000 | 0.210 | 1.00 | 2.00 | 1 | 1.50 |" in out
    assert "on/off server CPU per delivery 1.050x (OVER the 3% target)" in out
    assert "deliveries/s 1.000x" in out
    # Rounds: 21/10, 100/30, 20.4/20: each round's ratio, their median 2.1.
    assert "median of the rounds' own ratios 2.100x" in out
    assert "fanout on run 2: " in out
    assert "2 scrapes (1 in the measured phase) + 0 idle, 7 families" in out
    assert "medians of 3, alternating" in out
    assert "load average" in out


def test_each_workload_gets_its_own_rounds_and_verdict(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    order: list[tuple[str, str]] = []
    cpu = {"off": [10.0, 10.0, 100.0, 100.0], "on": [10.2, 10.2, 101.0, 101.0]}
    monkeypatch.setattr(ab, "one_run", _fake(cpu, order))
    argv = ["--runs", "2", "--workloads", "fanout,rooms", "--", "--messages", "5"]
    assert ab.main(argv) == 0
    assert order == [
        ("fanout", "off"), ("fanout", "on"), ("fanout", "on"), ("fanout", "off"),
        ("rooms", "off"), ("rooms", "on"), ("rooms", "on"), ("rooms", "off"),
    ]  # fmt: skip
    out = capsys.readouterr().out
    assert "fanout: on/off server CPU per delivery 1.020x (within the 3% target)" in out
    assert "rooms: on/off server CPU per delivery 1.010x (within the 3% target)" in out
    assert "| rooms | on | 1,000,000 | 1.010 |" in out


def test_runs_too_short_for_a_clock_tick_get_no_ratio(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    order: list[tuple[str, str]] = []
    monkeypatch.setattr(ab, "one_run", _fake({"off": [0.0], "on": [0.0]}, order))
    argv = ["--runs", "1", "--workloads", "fanout", "--", "--messages", "5"]
    assert ab.main(argv) == 0
    out = capsys.readouterr().out
    assert "fanout: on/off n/a (no server CPU measured" in out
    assert "within the 3% target" not in out


def test_a_failed_scrape_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    order: list[tuple[str, str]] = []
    cpu = {"off": [10.0], "on": [10.0]}
    monkeypatch.setattr(ab, "one_run", _fake(cpu, order, scrape_error="HTTP 404"))
    assert (
        ab.main(["--runs", "1", "--workloads", "fanout", "--", "--messages", "5"]) == 1
    )
    out = capsys.readouterr().out
    assert "SCRAPE FAILED: HTTP 404" in out
    assert "| fanout | on (1 runs with errors) |" in out


def test_a_lost_delivery_fails_the_run() -> None:
    run = ab.Run("off", "fanout", _report(1e6, 10.0, ok=False))
    assert not run.ok
    on = ab.Run("on", "fanout", _report(1e6, 10.0), scraped=True)
    assert not on.ok  # an "on" run that was never scraped proves nothing
    on.scrapes = [ab.Scrape(0.0, 0.001, 200, 3)]
    assert on.ok


# The scraper, against a stand-in exporter.


_REGISTRY = CollectorRegistry()
Counter("stand_in_requests", "Requests.", registry=_REGISTRY).inc(3)
_CLIENTS = Gauge("twisted_chat_clients", "Clients.", ["transport"], registry=_REGISTRY)
_CLIENTS.labels("tcp").set(7)
_CLIENTS.labels("udp").set(2)
_METRICS = make_wsgi_app(_REGISTRY)


@define
class _Exporter:
    """``/metrics`` as prometheus_client's WSGI app (MetricsResource's) answers
    it; 404 elsewhere; the request headers kept."""

    seen: list[dict[str, str]] = field(factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.seen.append(
            {k[5:]: str(v) for k, v in environ.items() if k.startswith("HTTP_")}
        )
        if environ["PATH_INFO"] != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such page"]
        return _METRICS(environ, start_response)


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[tuple[int, _Exporter]]:
    app = _Exporter()
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port, app
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_scrape_asks_as_prometheus_does_and_parses_the_answer(
    exporter: tuple[int, _Exporter],
) -> None:
    port, app = exporter
    scrape = ab.scrape_once(port, "/metrics")
    assert (scrape.status, scrape.error) == (200, "")
    assert scrape.families == 2  # stand_in_requests, twisted_chat_clients
    asked = app.seen[-1]
    assert asked["ACCEPT"].startswith("application/openmetrics-text;version=1.0.0")
    assert asked["ACCEPT_ENCODING"] == "gzip"


def test_a_scrape_reads_the_plain_text_format_too(
    exporter: tuple[int, _Exporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sys.modules["_scrape"], "PROMETHEUS_ACCEPT", "text/plain;version=0.0.4"
    )
    scrape = ab.scrape_once(exporter[0], "/metrics")
    # The text format gives the counter's _created sample a family of its own.
    assert (scrape.status, scrape.families, scrape.error) == (200, 3, "")


def test_a_scrape_reports_a_404_and_a_closed_port(
    exporter: tuple[int, _Exporter],
) -> None:
    assert ab.scrape_once(exporter[0], "/nothing").error == "HTTP 404"
    closed = ab.scrape_once(ab.free_port(), "/metrics")
    assert closed.status == 0
    assert "ConnectionRefusedError" in closed.error


def test_the_scraper_keeps_its_schedule_until_stopped(
    exporter: tuple[int, _Exporter],
) -> None:
    scraper = ab.Scraper(exporter[0], "/metrics", 0.05)
    scraper.start()
    deadline = ab.time.monotonic() + 20
    while len(scraper.scrapes) < 3 and ab.time.monotonic() < deadline:
        scraper._stop.wait(0.01)  # polling for the scrapes, bounded
    scraper.stop()
    got = list(scraper.scrapes)
    assert len(got) >= 3
    assert all(s.families == 2 for s in got)
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert all(gap >= 0.04 for gap in gaps)  # one a period, not flat out
    assert len(scraper.scrapes) == len(got)  # nothing after stop()


def test_the_clients_gauge_is_summed_over_transports(
    exporter: tuple[int, _Exporter],
) -> None:
    assert ab.connected(exporter[0], "/metrics") == 9


# The script against real daemons.


@pytest.mark.slow
def test_the_script_measures_a_daemon_with_metrics_on_and_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs: list[Any] = []
    real = ab.one_run

    def keep(*args: Any) -> Any:
        run = real(*args)
        runs.append(run)
        return run

    monkeypatch.setattr(ab, "one_run", keep)
    argv = ["--runs", "1", "--workloads", "fanout", "--scrape-interval", "0.2",
            "--cost-scrapes", "5",
            "--", "--clients", "20", "--senders", "4", "--messages", "300"]  # fmt: skip
    status = ab.main(argv)
    out = capsys.readouterr().out
    assert status == 0, out
    assert [run.side for run in runs] == ["off", "on"]
    off, on = runs
    assert off.report["received"] == off.report["expected"] == 20 * 4 * 300 - 4 * 300
    assert on.report["ok"]
    assert not off.scrapes
    assert on.periodic >= 1
    assert len(on.scrapes) == on.periodic + 5
    assert not on.failed_scrapes
    assert min(s.families for s in on.scrapes) >= 5  # ours and the process's
    assert "| fanout | on | " in out
    # A tiny load may use less server CPU than one 10 ms tick.
    assert "fanout: on/off server CPU per delivery" in out or "on/off n/a" in out


@pytest.mark.slow
def test_the_cost_of_a_scrape_with_clients_connected(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--cost-with-clients", "30", "--runs", "2", "--cost-scrapes", "10"]
    assert ab.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("30 clients: 10 scrapes in ") == 2
    assert "ms of server CPU a scrape with 30 clients" in out
