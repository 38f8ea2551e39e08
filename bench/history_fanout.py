"""Does keeping room history slow fan-out down? (issue 6: by at most 10 %)

Usage::

    python bench/history_fanout.py [--runs 5] [--clients 100] [--senders 10]
        [--messages 40000] [--modes off,sqlite] [--max-slowdown 10] [--json]

Starts ``twistd -n chat`` as a subprocess on 127.0.0.1, once per run, with
the abuse limits off (``--flood-burst 0 --flood-rate 0 --max-per-ip 0``, and
a large ``--max-sendq``) and either ``--history-db off`` or the default
SQLite history in a fresh state directory (``--modes off,memory,sqlite``
adds ``--history-db :memory:``). It then drives the daemon with the
project's load generator (``twisted_chat.bench``, workload ``fanout``: one
room, C clients, S of them sending M messages each flat out) and records
deliveries per second. Runs alternate between the settings, and the order
flips every round (off, on, on, off, ...), so that a machine growing busier
or quieter during the benchmark hurts both alike; each setting's median is
compared with the first setting's (``off``).

A fresh daemon per run keeps the runs alike: every run starts with an
empty database and an empty room, so no run pays for an earlier one's
history (and the bench's own rooms have fresh names anyway, so nothing is
replayed to its clients). After each SQLite run the script counts the rows
in the database, to prove that the history was really written.

Besides deliveries per second, the table shows the daemon's CPU time per
message sent, read from ``/proc`` for each thread: ``reactor`` is the
reactor thread (everything the chat does, history's share included), and
``writer`` the other threads and the child processes (the SQLite writer,
a thread or a process), read once the file holds every message. These
include connecting the clients, which costs the same in every setting.
``writer lag s`` is how long after the load generator finished the file
held every message: the writer runs at a lower priority than the daemon
(`twisted_chat.history.writer.NICENESS`) and catches up after a burst.

Why 40,000 messages per sender: shorter runs last too little for two
runs of the same setting to agree (BENCHMARKS.md, "Noise").

How to read it: the load generator runs on the same machine. When it is the
bottleneck (a busy or small machine), deliveries per second barely move
with history on, and the CPU columns show what history costs. When the
daemon's reactor thread is the bottleneck (a quiet machine), throughput
falls by about the reactor's extra CPU per message. Compare the reactor
columns to tell the two cases apart.

Exit status: 0 when every run delivered everything and each setting's
median is at most ``--max-slowdown`` percent below ``off``'s; 1 otherwise.
The machine's load average is printed too. Above the number of CPUs,
something else competed and the numbers are noisy: run again.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs
from attrs import frozen

from twisted_chat.bench import RunConfig, get_workload, run

TWISTD = str(Path(sys.executable).with_name("twistd"))
#: Seconds a daemon gets to open its port or to exit after SIGTERM.
START_TIMEOUT = 30.0
#: ``--history-db`` for each setting the script can compare.
HISTORY_DB = {"off": "off", "memory": ":memory:", "sqlite": "history.sqlite3"}
#: Unread output a reader may have before the server drops it: far above the
#: default (1 MiB), because the bench's own readers fall behind on a busy
#: machine and a dropped reader would end the run, not measure it.
MAX_SENDQ = str(256 * 1024 * 1024)
#: How many messages a history file holds (a row holds a turn's messages).
STORED_MESSAGES = "SELECT coalesce(sum(count), 0) FROM turns"
#: The daemon's count of history rows it dropped past its bound.
_NOT_SAVED = re.compile(r"(\d+) messages were not saved")


@frozen
class Result:
    """One run: which setting, how fast, and whether everything arrived."""

    mode: str
    deliveries_per_s: float
    sent: int
    received: int
    expected: int
    reactor_us_per_message: float
    other_us_per_message: float
    stored_rows: int | None
    catch_up_s: float | None
    errors: tuple[str, ...]
    #: Messages the daemon dropped past its bound, and said so in its log.
    dropped: int = 0


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Wait (bounded) until the daemon accepts connections."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"twistd exited early:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)  # polling a condition, bounded by the deadline
        else:
            return
    raise SystemExit(f"twistd never opened port {port}:\n{log.read_text()}")


def _stat_fields(stat: str) -> list[str]:
    """The fields of a ``/proc/.../stat`` line after ``pid (comm)``."""
    return stat.rsplit(")", 1)[1].split()


def _cpu_seconds(fields: list[str]) -> float:
    # After "pid (comm)": state is field 3, utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``, by thread id,
    and of each of its child processes, by process id.

    Read from ``/proc``; the reactor thread's id is the process id, any
    other thread or child process is the history writer (or a helper).
    """
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        times[int(task.name)] = _cpu_seconds(_stat_fields(stat))
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == pid:
            continue
        try:
            fields = _stat_fields((proc / "stat").read_text())
        except OSError:
            continue  # not ours to read, or it ended meanwhile
        if int(fields[1]) == pid:  # field 4, the parent's pid
            times[int(proc.name)] = _cpu_seconds(fields)
    return times


def counted_as_dropped(log: Path) -> int:
    """Messages the daemon says it did not save (past its bound), so far."""
    text = log.read_text("utf-8", "replace")
    return max(map(int, _NOT_SAVED.findall(text)), default=0)


def wait_for_rows(path: Path, wanted: int, log: Path) -> float | None:
    """Seconds until ``path`` holds ``wanted`` messages (None: not in time).

    The history writer runs at a lower priority than the daemon, so it may
    still be writing when the load generator is done; this is how far it
    is behind at the end of a flat-out run.  Messages the daemon counted as
    dropped (its log says so) are not waited for.
    """
    start = time.monotonic()
    deadline = start + START_TIMEOUT
    conn = sqlite3.connect(path, timeout=START_TIMEOUT)
    try:
        while time.monotonic() < deadline:
            (count,) = conn.execute(
                "SELECT coalesce(sum(count), 0) FROM turns"
            ).fetchone()
            if count >= wanted or count + counted_as_dropped(log) >= wanted:
                return time.monotonic() - start
            time.sleep(0.01)  # polling a condition, bounded by the deadline
    finally:
        conn.close()
    return None


def one_run(mode: str, args: argparse.Namespace, workdir: Path, n: int) -> Result:
    """Start a daemon with history ``mode``, run the fan-out bench, stop it."""
    state = workdir / f"run-{n}-{mode}"
    state.mkdir()
    history = HISTORY_DB[mode]
    port = free_port()
    log = state / "twistd.log"
    command = [
        TWISTD,
        "--nodaemon",
        "--pidfile=",
        "chat",
        *("--tcp", f"tcp:{port}:interface=127.0.0.1"),
        *("--flood-burst", "0", "--flood-rate", "0", "--max-per-ip", "0"),
        *("--max-sendq", MAX_SENDQ),
        *("--state-dir", str(state), "--history-db", history),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=state, stdout=out, stderr=out)  # noqa: S603
        try:
            wait_for_port(proc, port, log)
            workload = get_workload(
                "fanout",
                clients=args.clients,
                rooms=1,
                senders=args.senders,
                messages=args.messages,
            )
            before = thread_cpu(proc.pid)
            report = run(RunConfig(workload=workload, port=port, server_pid=proc.pid))
            catch_up = None
            if history.endswith(".sqlite3"):
                catch_up = wait_for_rows(state / history, report.sent, log)
            # After the writer caught up: its CPU includes all its work.
            after = thread_cpu(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    stored = None
    if history.endswith(".sqlite3"):
        with sqlite3.connect(state / history) as conn:
            (stored,) = conn.execute(
                "SELECT coalesce(sum(count), 0) FROM turns"
            ).fetchone()
        conn.close()
    errors = list(report.errors)
    text = log.read_text("utf-8", "replace")
    # Past the bound on what waits for the writer (history_side's
    # MAX_WAITING_BYTES) the daemon drops rows and counts them in its log:
    # a saturated machine may lose history that way, but never silently.
    counted = counted_as_dropped(log)
    if stored is not None and stored + counted < report.sent:
        errors.append(
            f"only {stored} of {report.sent} messages were stored, and only "
            f"{counted} were counted as dropped"
        )
    dropped = text.count("dropping slow reader")
    if dropped:
        errors.append(f"the server dropped {dropped} slow readers")
    # Includes connecting the clients, which costs the same in every mode.
    spent = {tid: cpu - before.get(tid, 0.0) for tid, cpu in after.items()}
    reactor_cpu = spent.pop(proc.pid, 0.0)
    per = 1e6 / max(report.sent, 1)
    return Result(
        mode=mode,
        deliveries_per_s=report.deliveries_per_s,
        sent=report.sent,
        received=report.received,
        expected=report.expected,
        reactor_us_per_message=reactor_cpu * per,
        other_us_per_message=sum(spent.values()) * per,
        stored_rows=stored,
        dropped=counted,
        catch_up_s=catch_up,
        errors=tuple(errors),
    )


def schedule(runs: int, modes: list[str]) -> list[str]:
    """off, sqlite, sqlite, off, off, sqlite, ...: alternate, order flipped."""
    order: list[str] = []
    for n in range(runs):
        order.extend(modes if n % 2 == 0 else reversed(modes))
    return order


def summary(results: list[Result], modes: list[str]) -> dict[str, float | None]:
    """Each setting's slowdown against the first (``off``), in percent."""
    rates = {
        mode: statistics.median(r.deliveries_per_s for r in results if r.mode == mode)
        for mode in modes
    }
    base = rates[modes[0]]
    return {
        mode: (base - rates[mode]) / base * 100 if base else None for mode in modes[1:]
    }


def table(results: list[Result], modes: list[str]) -> str:
    """The report a person reads."""
    head = (
        "history  run  deliveries/s  reactor us/msg  writer us/msg  stored msgs"
        "  dropped msgs  writer lag s"
    )
    rows = [head]
    for n, r in enumerate(results, 1):
        stored = f"{r.stored_rows:,}" if r.stored_rows is not None else "-"
        lag = f"{r.catch_up_s:.2f}" if r.catch_up_s is not None else "-"
        flag = "" if not r.errors else "  ERROR: " + "; ".join(r.errors)
        rows.append(
            f"{r.mode:<7} {n:>4}  {r.deliveries_per_s:>12,.0f}"
            f"  {r.reactor_us_per_message:>14.1f}  {r.other_us_per_message:>13.1f}"
            f"  {stored:>11}  {r.dropped:>12,}  {lag:>12}{flag}"
        )
    rows.append("")
    rows.append("median   deliveries/s  reactor us/msg  writer us/msg")
    for mode in modes:
        mine = [r for r in results if r.mode == mode]
        rate = statistics.median(r.deliveries_per_s for r in mine)
        reactor = statistics.median(r.reactor_us_per_message for r in mine)
        other = statistics.median(r.other_us_per_message for r in mine)
        rows.append(f"{mode:<7} {rate:>13,.0f}  {reactor:>14.1f}  {other:>13.1f}")
    rows.append("")
    for mode, slowdown in summary(results, modes).items():
        shown = f"{slowdown:+.1f} %" if slowdown is not None else "-"
        rows.append(f"fan-out slowdown, {mode} against {modes[0]}: {shown}")
    rows.append(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return "\n".join(rows) + "\n"


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in HISTORY_DB]
    if unknown or len(modes) < 2 or modes[0] != "off":
        raise argparse.ArgumentTypeError(
            "a comma-separated list that starts with off, from: "
            + ", ".join(HISTORY_DB)
        )
    return modes


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table; see the module docstring."""
    parser = argparse.ArgumentParser(
        description="Fan-out throughput with history off and on (SQLite)."
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per setting")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument(
        "--messages", type=int, default=40_000, help="per sender (default 40,000)"
    )
    parser.add_argument(
        "--modes",
        type=_modes,
        default=["off", "sqlite"],
        help="settings to compare, first is the baseline (default off,sqlite; "
        "off,memory,sqlite also shows the in-memory store)",
    )
    parser.add_argument(
        "--max-slowdown", type=float, default=10.0, help="percent (default 10)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead")
    args = parser.parse_args(argv)

    results = []
    with tempfile.TemporaryDirectory(prefix="history-fanout-") as tmp:
        for n, mode in enumerate(schedule(args.runs, args.modes), 1):
            result = one_run(mode, args, Path(tmp), n)
            sys.stderr.write(
                f"run {n} ({mode}): {result.deliveries_per_s:,.0f} deliveries/s\n"
            )
            results.append(result)
    slowdowns = summary(results, args.modes)
    ok = not any(r.errors for r in results) and all(
        s is not None and s <= args.max_slowdown for s in slowdowns.values()
    )
    if args.json:
        text = json.dumps(
            {
                "ok": ok,
                "slowdown_percent": slowdowns,
                "runs": [attrs.asdict(r) for r in results],
            },
            indent=2,
        )
        text += "\n"
    else:
        text = table(results, args.modes)
        text += "OK\n" if ok else "FAILED\n"
    sys.stdout.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
