"""The C floor (``bench/c_floor.c``) for the load generator, and twistd against it.

Usage::

    python bench/c_floor.py [-- BENCH OPTIONS]              # one bench run
    python bench/c_floor.py --serve [--port N]              # just the server
    python bench/c_floor.py --compare [--runs 5] [--workloads rooms,fanout]
        [-- BENCH OPTIONS]

``bench/c_floor.c`` is a single-threaded epoll broadcaster: it reads lines,
appends each to the output of every other member of the sender's room and
gives every recipient one ``write()`` per ``epoll_wait`` batch.  It speaks
just enough of the line protocol (a guest nick, ``/join``, ``/part``,
``/nick``, ``/ping`` and ``[#room] <nick> text``) for ``python -m
twisted_chat.bench --proto line`` to run its workloads unchanged and count
every delivery, so it is the floor any server could reach on this machine
with this load generator: what the daemon is measured against (issue 18:
the ``rooms`` workload at 75 % of it).

:class:`CFloor` is a :class:`~_servers.BenchServer`: ``with CFloor() as
server:`` compiles the source with ``gcc -O2`` into a cache directory
(``$XDG_CACHE_HOME`` or ``~/.cache``, ``twisted-chat-bench/``, keyed by a
hash of the source, so an edit rebuilds it), starts it on a free 127.0.0.1
port and stops it (SIGTERM, then SIGKILL) at the end.

``--compare`` alternates, ``--runs`` times per workload and flipping the
order every round, a bench run against a fresh ``twistd -n chat --tcp ...``
(started as ``bench/ab_hotpath.py`` starts it: flood control and the
per-IP cap off, no history; ``bench/ngircd.py``'s ``run_twistd``) and one
against a fresh C floor, and prints every run, the medians side by side and
the ratio of the daemon's median deliveries per second to the floor's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import BenchServer
from ngircd import Report, bench, describe, numbers, run_twistd

SOURCE = Path(__file__).resolve().with_name("c_floor.c")
#: The issue's target: the daemon's rooms rate over the floor's.
TARGET_RATIO = 0.75


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "twisted-chat-bench"


def build(source: Path = SOURCE, directory: Path | None = None) -> Path:
    """Compile ``source`` with ``gcc -O2`` (once per version of it); the binary."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    directory = directory or cache_dir()
    binary = directory / f"c_floor-{digest}"
    if binary.exists():
        return binary
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("no C compiler: apt-get install gcc")
    directory.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
    subprocess.run(  # noqa: S603 - the system compiler, our source
        [gcc, "-O2", "-Wall", "-o", str(partial), str(source)], check=True
    )
    partial.replace(binary)  # atomic: a concurrent build never runs half a file
    return binary


class CFloor(BenchServer):
    """The C floor on a free loopback port (see the module)."""

    name = "c-floor"

    def __init__(self, *, port: int = 0, log: Path | None = None) -> None:
        super().__init__(port=port, log=log)
        self.program = str(build())

    def command(self) -> list[str]:
        return [self.program, str(self.port)]

    def serve_or_bench(self, serve: bool, extra: list[str]) -> int:
        """Like the IRC servers', but the bench speaks the line protocol."""
        if serve:
            return super().serve_or_bench(serve, extra)
        with self:
            done = subprocess.run(  # noqa: S603 - our own bench
                [sys.executable, "-m", "twisted_chat.bench", "--port",
                 str(self.port), "--server-pid", str(self.pid), *extra],
                check=False,
            )  # fmt: skip
            return done.returncode


def run_floor(python: str, workload: str, extra: list[str]) -> Report:
    """One ``--proto line`` run against a fresh C floor."""
    with CFloor() as server:
        return bench(
            python, server.port, server.pid, "line", ["--workload", workload, *extra]
        )


def compare(runs: int, workloads: list[str], extra: list[str]) -> int:
    """Alternate twistd and the C floor; print the runs, medians and ratios."""
    python = sys.executable
    failed = False
    rows: list[tuple[str, str, tuple[float, ...], int]] = []
    for workload in workloads:
        got: dict[str, list[tuple[float, float, float, float]]] = {}
        bad: dict[str, int] = {}
        order = ["twistd", "c-floor"]
        for n in range(runs):
            for name in order if n % 2 == 0 else order[::-1]:
                if name == "twistd":
                    report = run_twistd(python, workload, extra, "line")
                else:
                    report = run_floor(python, workload, extra)
                failed = failed or not report["ok"]
                bad[name] = bad.get(name, 0) + (not report["ok"])
                got.setdefault(name, []).append(numbers(report))
                print(f"{workload} {name} run {n + 1}: {describe(report)}", flush=True)
        for name in order:
            medians = tuple(statistics.median(c) for c in zip(*got[name], strict=True))
            rows.append((workload, name, medians, bad[name]))
    print()
    print("| workload | server | deliveries/s | p50 ms | p99 ms | us/delivery |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for workload, name, (rate, p50, p99, cpu), errors in rows:
        flag = f" ({errors} runs with errors)" if errors else ""
        print(
            f"| {workload} | {name}{flag} | {rate:,.0f} | {p50:.2f} | {p99:.2f} "
            f"| {cpu:.2f} |"
        )
    print()
    for workload in workloads:
        rates = {name: m[0] for w, name, m, _ in rows if w == workload}
        ratio = rates["twistd"] / rates["c-floor"] if rates["c-floor"] else 0.0
        target = f" (target {TARGET_RATIO})" if workload == "rooms" else ""
        print(f"{workload}: twistd / C floor = {ratio:.2f}{target}")
    print(f"median of {runs}; load average {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help="run until Ctrl-C")
    parser.add_argument("--port", type=int, default=0, help="for --serve")
    parser.add_argument(
        "--compare", action="store_true", help="twistd vs the C floor, alternating"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workloads", default="rooms,fanout")
    args = parser.parse_args(argv)
    if args.compare:
        return compare(args.runs, args.workloads.split(","), extra)
    return CFloor(port=args.port).serve_or_bench(args.serve, extra)


if __name__ == "__main__":
    sys.exit(main())
