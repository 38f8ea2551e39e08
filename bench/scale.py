"""How cost grows with the clients a server holds and with the size of a room.

Usage::

    .venv/bin/python bench/scale.py [--runs 3] [--parts clients,rooms]
        [--clients 1000,10000,19000] [--room-sizes 10,100,1000,10000]
        [--deliveries 5000000] [--servers ours,c_floor]
        [--out docs/scale.json] [--png docs/scale.png] [--quick]
    .venv/bin/python bench/scale.py --plot-only [--out ...] [--png ...]

Two parts, each run ``--runs`` times per point and server, the servers
alternating (A, B, A, B) and every run against a fresh server, so that a
heap grown by one run hides nothing in the next:

``clients``
    At each size N of ``--clients``: the load generator's ``idle-max``
    workload (N registered idle clients in rooms of 10: server RSS per
    client, the connect + register rate from the first connect to the last
    registered, and the server's CPU per connect) and its ``rooms``
    workload at N clients (rooms of 10, everyone sends 20 messages: server
    CPU per delivery and deliveries a second while N clients are connected).
``rooms``
    At each room size S of ``--room-sizes``: the ``room-10k`` workload with
    ``--clients S`` (one room of S members, 10 senders; each sends enough
    messages for about ``--deliveries`` deliveries in all): deliveries a
    second and server CPU per delivery.

The servers are started as ``bench/compare.py`` starts them for its scale
cases: ``twistd -n chat`` with flood control, the per-address cap and the
client cap off, no history and a listen backlog of 4,096; the C floor
(``bench/c_floor.c``) as it is.  The bench spreads its clients over one
loopback source address per 32 clients and over one worker process per
10,000 (at least 2 for ``idle-max`` and ``room-10k``).

It prints Markdown tables of the medians (with the load average around each
part), writes every run's report and the medians to ``--out`` (JSON; the
other part's results already in that file are kept, so the parts can be run
one at a time) and draws ``--png`` with matplotlib, which is optional
(``pip install matplotlib``; without it the PNG is skipped, said so, and
``--plot-only`` draws it later from the JSON).  Exit status 0 when every run
of twisted-chat delivered everything exactly once, 1 otherwise, 2 for bad
options.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare
from compare import (
    C_FLOOR,
    OURS,
    Servers,
    ServerSpec,
    cpu_us_per_delivery,
    load_average,
    machine,
    raise_fd_limit,
    run_bench,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
SERVERS = {
    "ours": (OURS, ServerSpec("ours", scale=True)),
    "c_floor": (C_FLOOR, ServerSpec("c_floor")),
}
PARTS = ("clients", "rooms", "churn")
#: Senders in a room of the ``rooms`` part (fewer when the room is smaller).
ROOM_SENDERS = 10


def room_messages(size: int, deliveries: int) -> int:
    """Messages per sender so that a room of ``size`` sees about ``deliveries``."""
    senders = min(ROOM_SENDERS, size)
    return max(1, round(deliveries / (senders * max(1, size - 1))))


def points(args: argparse.Namespace) -> list[tuple[str, str, int, list[str]]]:
    """Every (part, workload, size, bench options) to measure, in order."""
    out: list[tuple[str, str, int, list[str]]] = []
    if "clients" in args.parts:
        for n in args.clients:
            out.append(("clients", "idle-max", n, ["--clients", str(n)]))
            messages = ["--messages", "5"] if args.quick else []
            out.append(("clients", "rooms", n, ["--clients", str(n), *messages]))
    if "rooms" in args.parts:
        for size in args.room_sizes:
            m = room_messages(size, args.deliveries)
            out.append(
                (
                    "rooms",
                    "room-10k",
                    size,
                    ["--clients", str(size), "--messages", str(m)],
                )
            )
    if "churn" in args.parts:
        for rate in args.churn_rates:
            options = ["--churn-rate", str(rate)]
            if args.quick:
                options += ["--clients", "100", "--duration", "1"]
            out.append(("churn", "churn", rate, options))
    if args.only:
        out = [p for p in out if p[1] in args.only]
    return out


def bench_command(workload: str, options: list[str], port: int, pid: int) -> list[str]:
    return [
        compare.PYTHON,
        "-m",
        "twisted_chat.bench",
        *("--workload", workload),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--server-pid", str(pid)),
        "--json",
        "--no-progress",
        "--timeout",
        "30",
        *options,
    ]


def head_commit() -> str:
    """The commit the server about to start runs (the worktree may move
    under a long measurement: each run records its own)."""
    return str(machine()["commit"])


def slab_kib() -> int:
    """The kernel's slab memory now (``/proc/meminfo``), machine-wide."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            return int(line.split()[1])
    return 0


class SlabWatch:
    """The largest slab growth while a run goes on, sampled every 50 ms.

    Sockets, their inodes, files and epoll entries live in slab caches, not
    in any process's RSS; on loopback each connection has both its ends in
    this kernel.  The figure is machine-wide, so other work moves it: it is
    an estimate, not an exact count.
    """

    def __init__(self) -> None:
        self.before = slab_kib()
        self.peak = self.before
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, slab_kib())

    def stop(self) -> int:
        """Stop watching; the peak growth in KiB."""
        self.done.set()
        self.thread.join()
        return self.peak - self.before


def run_point(
    point: tuple[str, str, int, list[str]],
    args: argparse.Namespace,
    servers: Servers,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Every run of one point, alternating the servers, each on a fresh one."""
    part, workload, size, options = point
    result: dict[str, Any] = {
        "part": part,
        "workload": workload,
        "size": size,
        "options": options,
        "load_before": load_average(),
        "servers": {SERVERS[k][0]: [] for k in args.servers},
    }
    order = list(args.servers)
    for n in range(args.runs):
        for key in order if n % 2 == 0 else reversed(order):
            label, spec = SERVERS[key]
            commit = head_commit()
            server = servers.start(spec)
            try:
                command = bench_command(workload, options, server.port, server.pid)
                watch = SlabWatch()
                try:
                    report = run_bench(command)
                finally:
                    report_slab = watch.stop()
            finally:
                servers.stop(server)
            report["slab_growth_kib"] = report_slab
            report["commit"] = commit
            report["command"] = command
            report["server_command"] = server.command
            result["servers"][label].append(report)
            run = f"run {n + 1}/{args.runs}"
            say(f"{workload} {size:,} / {label} {run}: {brief(report)}")
    result["load_after"] = load_average()
    result["medians"] = {
        label: medians(runs) for label, runs in result["servers"].items()
    }
    return result


def brief(report: dict[str, Any]) -> str:
    if not report.get("measured", False):
        return "FAILED: " + "; ".join(report.get("errors", []))
    m = medians([report])
    text = ", ".join(
        f"{k} {v:,.3g}" for k, v in m.items() if v is not None and k != "runs"
    )
    if not report.get("ok", False):
        text += "  ERRORS: " + "; ".join(report.get("errors", []))
    return text


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """The medians of the figures this script tables, over measured runs."""
    measured = [r for r in runs if r.get("measured", False)]

    def server(r: dict[str, Any], key: str) -> float | None:
        value = (r.get("server") or {}).get(key)
        return None if value is None else float(value)

    def slab(r: dict[str, Any]) -> float | None:
        grown = r.get("slab_growth_kib")
        n = r.get("connections") or 0
        # Both ends of each loopback connection are in this kernel.
        return None if grown is None or not n else grown / (2 * n)

    def per_connect(r: dict[str, Any]) -> float | None:
        cpu = server(r, "setup_cpu_s")
        n = r.get("connections") or 0
        return None if cpu is None or not n else 1e6 * cpu / n

    idle = bool(measured) and measured[0]["workload"]["name"].startswith("idle")
    rss = _median([server(r, "rss_per_connection_bytes") for r in measured])
    return {
        "runs": float(len(runs)),
        "ok_runs": float(sum(1 for r in runs if r.get("ok", False))),
        "kib_per_client": rss / 1024 if idle and rss is not None else None,
        "kernel_kib_per_socket": _median([slab(r) for r in measured]) if idle else None,
        "connect_per_s": _median([r.get("connect_per_s") for r in measured]),
        "cpu_us_per_connect": _median([per_connect(r) for r in measured]),
        "deliveries_per_s": None
        if idle
        else _median([float(r["deliveries_per_s"]) for r in measured]),
        "cpu_us_per_delivery": None
        if idle
        else _median([cpu_us_per_delivery(r) for r in measured]),
        "p99_ms": None
        if idle
        else _median([(r.get("latency_ms") or {}).get("p99_ms") for r in measured]),
        "setup_s": _median([r.get("setup_s") for r in measured]),
        **churn_medians(measured),
    }


def churn_medians(measured: list[dict[str, Any]]) -> dict[str, float | None]:
    """The churn part's figures: achieved rate, skips, the server's CPU per
    churn connection and share of a core, the bystander's latency."""
    runs = [r for r in measured if r.get("churn")]
    if not runs:
        return {}

    def per_churn(r: dict[str, Any]) -> float | None:
        cpu = (r.get("server") or {}).get("cpu_percent")
        done = r["churn"]["registered"]
        if cpu is None or not done:
            return None
        return float(cpu) / 100 * float(r["elapsed_s"]) / int(done) * 1e6

    def lat(r: dict[str, Any], key: str) -> float | None:
        value = (r.get("latency_ms") or {}).get(key)
        return None if value is None else float(value)

    return {
        "churn_per_s": _median([r["churn"]["achieved_per_s"] for r in runs]),
        "churn_skipped": _median([r["churn"]["skipped"] for r in runs]),
        "cpu_us_per_churn": _median([per_churn(r) for r in runs]),
        "server_cpu_percent": _median(
            [(r.get("server") or {}).get("cpu_percent") for r in runs]
        ),
        "bystander_p50_ms": _median([lat(r, "p50_ms") for r in runs]),
        "bystander_p99_ms": _median([lat(r, "p99_ms") for r in runs]),
    }


# Tables.


def _f(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _load(point: dict[str, Any]) -> str:
    return f"{point['load_before'][0]:.2f} → {point['load_after'][0]:.2f}"


def _ok(point: dict[str, Any]) -> str:
    return " / ".join(
        f"{m['ok_runs']:.0f}/{m['runs']:.0f}" for m in point["medians"].values()
    )


def commits(document: dict[str, Any]) -> list[str]:
    """The commits the runs of ``document`` ran at, in order of appearance."""
    seen: dict[str, None] = {}
    for p in document["points"]:
        for runs in p["servers"].values():
            for r in runs:
                seen.setdefault(str(r.get("commit", document["machine"]["commit"])))
    return list(seen)


def tables(document: dict[str, Any]) -> str:
    """The Markdown tables of the medians in ``document``."""
    labels = document["labels"]
    vs = " / ".join(labels)
    out: list[str] = []
    by = {(p["workload"], p["size"]): p for p in document["points"]}
    sizes = sorted({p["size"] for p in document["points"] if p["part"] == "clients"})
    if sizes:
        out += [
            f"Clients held ({vs}; medians of {document['runs']}):",
            "",
            (
                "| clients | server RSS KiB/client | kernel slab KiB/socket "
                "| connect + register /s | server CPU µs/connect "
                "| rooms of 10: deliveries/s | rooms of 10: server CPU µs/delivery "
                "| ok runs | load before → after |"
            ),
            "|--:|--:|--:|--:|--:|--:|--:|:--|:--|",
        ]
        for n in sizes:
            idle, rooms = by.get(("idle-max", n)), by.get(("rooms", n))

            def cell(p: dict[str, Any] | None, key: str, spec: str) -> str:
                if p is None:
                    return "–"
                return " / ".join(_f(p["medians"][lb].get(key), spec) for lb in labels)

            oks = " · ".join(_ok(p) for p in (idle, rooms) if p is not None)
            loads = " · ".join(_load(p) for p in (idle, rooms) if p is not None)
            out.append(
                f"| {n:,} | {cell(idle, 'kib_per_client', '.2f')} "
                f"| {cell(idle, 'kernel_kib_per_socket', '.2f')} "
                f"| {cell(idle, 'connect_per_s', ',.0f')} "
                f"| {cell(idle, 'cpu_us_per_connect', ',.0f')} "
                f"| {cell(rooms, 'deliveries_per_s', ',.0f')} "
                f"| {cell(rooms, 'cpu_us_per_delivery', '.3f')} "
                f"| {oks} | {loads} |"
            )
        out.append("")
    rooms = sorted(
        (p for p in document["points"] if p["part"] == "rooms"),
        key=lambda p: p["size"],
    )
    if rooms:
        out += [
            (
                f"One room of S members, {ROOM_SENDERS} senders ({vs}; "
                f"medians of {document['runs']}):"
            ),
            "",
            (
                "| room size | messages/sender | deliveries/s "
                "| server CPU µs/delivery | p99 ms | setup s | ok runs "
                "| load before → after |"
            ),
            "|--:|--:|--:|--:|--:|--:|:--|:--|",
        ]
        for p in rooms:
            m = p["medians"]

            def cells(key: str, spec: str, m: dict[str, Any] = m) -> str:
                return " / ".join(_f(m[lb].get(key), spec) for lb in labels)

            out.append(
                f"| {p['size']:,} | {p['options'][-1]} "
                f"| {cells('deliveries_per_s', ',.0f')} "
                f"| {cells('cpu_us_per_delivery', '.3f')} "
                f"| {cells('p99_ms', '.1f')} | {cells('setup_s', '.1f')} "
                f"| {_ok(p)} | {_load(p)} |"
            )
        out.append("")
    churn = sorted(
        (p for p in document["points"] if p["part"] == "churn"),
        key=lambda p: p["size"],
    )
    if churn:
        out += [
            f"Churn against held clients ({vs}; medians of {document['runs']}):",
            "",
            (
                "| churn asked /s | clients held | achieved /s | skipped "
                "| server CPU % | server CPU µs/churn | bystander p50 ms "
                "| bystander p99 ms | ok runs | load before → after |"
            ),
            "|--:|--:|--:|--:|--:|--:|--:|--:|:--|:--|",
        ]
        for p in churn:
            m = p["medians"]
            held = next(iter(p["servers"].values()))[0]["workload"]["clients"]

            def cells(key: str, spec: str, m: dict[str, Any] = m) -> str:
                return " / ".join(_f(m[lb].get(key), spec) for lb in labels)

            out.append(
                f"| {p['size']:,} | {held:,} | {cells('churn_per_s', ',.0f')} "
                f"| {cells('churn_skipped', ',.0f')} "
                f"| {cells('server_cpu_percent', '.0f')} "
                f"| {cells('cpu_us_per_churn', ',.0f')} "
                f"| {cells('bystander_p50_ms', '.2f')} "
                f"| {cells('bystander_p99_ms', '.2f')} | {_ok(p)} | {_load(p)} |"
            )
        out.append("")
    out.append(f"Commits run: {', '.join(commits(document))}.")
    return "\n".join(out)


# The plot.


def plot(document: dict[str, Any], png: Path) -> str:
    """Draw ``png`` from ``document``; what was done, for the log."""
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return (
            f"no plot: matplotlib is not installed (pip install matplotlib, then "
            f"bench/scale.py --plot-only --png {png})"
        )
    labels = document["labels"]
    pts = document["points"]
    held, room = "clients held", "members of the one room"
    panels = (
        ("idle-max", "kib_per_client", "server RSS per idle client (KiB)", held),
        (
            "rooms",
            "cpu_us_per_delivery",
            "server CPU µs per delivery, rooms of 10",
            held,
        ),
        ("room-10k", "cpu_us_per_delivery", "server CPU µs per delivery", room),
        ("room-10k", "deliveries_per_s", "deliveries a second", room),
    )
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (workload, key, title, xlabel) in zip(axes.flat, panels, strict=True):
        chosen = sorted(
            (p for p in pts if p["workload"] == workload), key=lambda p: p["size"]
        )
        for label in labels:
            xy = [(p["size"], p["medians"][label].get(key)) for p in chosen]
            xy = [(x, y) for x, y in xy if y is not None]
            if xy:
                ax.plot(*zip(*xy, strict=True), marker="o", label=label)
        ax.set_xscale("log")
        if key != "kib_per_client":
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(
        f"How cost grows (medians of {document['runs']} runs; "
        f"commit {document['machine']['commit']})",
        fontsize=11,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return f"wrote {png}"


# The command line.


def _sizes(text: str) -> list[int]:
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("comma-separated whole numbers") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError("comma-separated numbers, each at least 2")
    return values


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names or any(n not in allowed for n in names):
            raise argparse.ArgumentTypeError(
                f"comma-separated, from {','.join(allowed)}"
            )
        return names

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/scale.py", description=__doc__.split("\n", 1)[0]
    )
    add = parser.add_argument
    add("--runs", type=int, default=3, help="runs per point and server (default 3)")
    add("--parts", type=_choices(PARTS), default=list(PARTS))
    add("--clients", type=_sizes, default=[1000, 10_000, 19_000])
    add("--room-sizes", type=_sizes, default=[10, 100, 1000, 10_000])
    add(
        "--churn-rates",
        type=_sizes,
        default=[250, 500, 1000],
        help="churn connections a second, each against the churn workload's "
        "18,000 clients (default 250,500,1000)",
    )
    add(
        "--deliveries",
        type=int,
        default=5_000_000,
        help="deliveries a room-size run aims at (default 5,000,000)",
    )
    add("--servers", type=_choices(tuple(SERVERS)), default=list(SERVERS))
    add(
        "--only",
        type=_choices(("idle-max", "rooms", "room-10k", "churn")),
        help="measure only these workloads of the parts (the JSON keeps the "
        "other points of a part already in it)",
    )
    add("--out", type=Path, help="JSON file (default docs/scale.json)")
    add("--png", type=Path, help="plot (default docs/scale.png)")
    add("--plot-only", action="store_true", help="no runs: tables and PNG from --out")
    add(
        "--quick",
        action="store_true",
        help="tiny sizes (clients 100,300; rooms 10,50; 20,000 deliveries; "
        "churn 20,50 a second against 100 clients for 1 s), "
        "written under the temporary directory unless --out/--png say where",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.runs < 1:
        build_parser().error("--runs must be at least 1")
    if args.quick:
        args.clients, args.room_sizes, args.deliveries = [100, 300], [10, 50], 20_000
        args.churn_rates = [20, 50]
    # --quick never overwrites the documented results.
    where = Path(tempfile.gettempdir()) / "scale-quick" if args.quick else ROOT / "docs"
    args.out = args.out or where / "scale.json"
    args.png = args.png or where / "scale.png"
    return args


def merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new``, with the points of ``old`` (workload and size) that ``new`` did
    not measure (their medians computed again, so that a figure added since
    is there)."""
    if not old:
        return new
    measured = {(p["workload"], p["size"]) for p in new["points"]}
    kept = [
        p for p in old.get("points", []) if (p["workload"], p["size"]) not in measured
    ]
    for p in kept:
        p["medians"] = {lb: medians(runs) for lb, runs in p["servers"].items()}
    return {**new, "points": kept + new["points"]}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    old = json.loads(args.out.read_text()) if args.out.exists() else None
    if args.plot_only:
        if old is None:
            print(f"{args.out} does not exist", file=sys.stderr)
            return 2
        old = merge({"points": old["points"]}, {**old, "points": []})
        print(tables(old))
        print(plot(old, args.png))
        return 0

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    raise_fd_limit()
    signal.signal(signal.SIGTERM, compare._on_sigterm)
    document: dict[str, Any] = {
        "machine": machine(),
        "runs": args.runs,
        "quick": args.quick,
        "labels": [SERVERS[k][0] for k in args.servers],
        "points": [],
    }
    status = 0
    with tempfile.TemporaryDirectory(prefix="chat-scale-") as tmp:
        servers = Servers(Path(tmp))
        try:
            for point in points(args):
                document["points"].append(run_point(point, args, servers, say))
        except (KeyboardInterrupt, compare.Terminated):
            say("interrupted: stopping the servers")
            status = 130
        finally:
            servers.stop_all()
    if old is not None and old.get("labels") == document["labels"]:
        document = merge(old, document)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(tables(document))
    print(plot(document, args.png))
    ours_ok = all(
        r.get("ok", False)
        for p in document["points"]
        for r in p["servers"].get(OURS, [])
    )
    return status or (0 if ours_ok else 1)


if __name__ == "__main__":
    sys.exit(main())
