"""Two or more builds of the daemon, alternating, on the connect + register rate.

Usage::

    python bench/connect_ab.py [--runs 6] [--steps 1000,10000,19000]
        [--procs 2] [--inflight 64] [--daemon-option=--history-db=history.sqlite3]
        NAME=PYTHON[:PYTHONPATH] ...

e.g. ``before=.venv/bin/python:/tmp/base after=.venv/bin/python`` (a
worktree of the older commit at ``/tmp/base``: ``PYTHONPATH`` wins over
the editable install).  Each run starts a fresh ``twistd -n chat`` of one
build (the ``twistd`` next to ``PYTHON``) as ``bench/connect_rate.py`` does
and drives it with that script's workers, from this interpreter, so every
build meets the same load generator.  History is off unless a
``--daemon-option`` turns it on (the daemons' own default).  Runs
alternate between the builds and the order flips every round: on a shared
machine whose speed moves by half within minutes, only figures taken side
by side compare.  Prints
every run, then per build and step the median clients a second and server
CPU µs per client (the steadier of the two).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_hotpath import parse_builds
from connect_rate import listening_daemon, one_run


def _run(
    python: str, pythonpath: str, options: argparse.Namespace
) -> list[dict[str, Any]]:
    """The steps of one run of one build, on a daemon of its own."""
    saved = os.environ.get("PYTHONPATH")
    if pythonpath:
        os.environ["PYTHONPATH"] = pythonpath
    else:
        os.environ.pop("PYTHONPATH", None)
    try:
        twistd = str(Path(python).absolute().with_name("twistd"))
        daemon_options = options.daemon_option
        with listening_daemon(twistd, options.backlog, daemon_options) as (port, pid):
            args = SimpleNamespace(
                steps=options.steps,
                procs=options.procs,
                inflight=options.inflight,
                churn=0.0,
                seconds=0.0,
            )
            return list(one_run(args, port, pid)["steps"])  # type: ignore[arg-type]
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--steps", default="1000,10000,19000")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument(
        "--daemon-option",
        action="append",
        default=[],
        help="passed to every daemon, after the script's own "
        "(--daemon-option=--history-db=history.sqlite3: history on)",
    )
    parser.add_argument("builds", nargs="+", help="NAME=PYTHON[:PYTHONPATH]")
    options = parser.parse_args(argv)
    builds = parse_builds(options.builds, parser)
    got: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in builds}
    names = list(builds)
    for n in range(max(1, min(options.runs, 20))):
        for name in names if n % 2 == 0 else names[::-1]:
            steps = _run(*builds[name], options)
            got[name].append(steps)
            said = ", ".join(
                f"{s['clients']:,}: {s['clients_per_s']:,.0f}/s "
                f"{s['cpu_us_per_client']:.0f} µs"
                for s in steps
            )
            print(
                f"run {n + 1} {name}: {said} (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    print(f"\nmedians of {options.runs} run(s):")
    print("| build | clients | clients/s | server CPU µs/client | failed |")
    print("|:--|--:|--:|--:|--:|")
    for name in names:
        for i, step in enumerate(options.steps.split(",")):
            rows = [run[i] for run in got[name] if len(run) > i]
            if not rows:
                print(f"| {name} | {step} | - | - | - |")
                continue
            rate = statistics.median(r["clients_per_s"] for r in rows)
            cpu = statistics.median(r["cpu_us_per_client"] for r in rows)
            failed = sum(r["failed"] for r in rows)
            print(f"| {name} | {int(step):,} | {rate:,.0f} | {cpu:.0f} | {failed} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
