"""A login storm against a busy room (issue 13): does argon2 stall the reactor?

Usage::

    python bench/login_storm.py [--runs 3] [--tcp HOST:PORT] [--twistd PATH]
        [--storm 200] [--accounts 40] [--unknown 40] [--window 24]
        [--delay 1.0] [--duration 10] [--json]

The issue's judgement: "A login storm (200 wrong passwords from many
connections) does not raise the p99 latency of a busy room above 5 ms:
measure it with the bench tool and quote it."  Each run:

1. starts ``twistd -n chat`` on 127.0.0.1 (a fresh state directory, accounts
   on, history off, flood control and the per-address cap off, as
   ``bench/ab_hotpath.py`` runs the latency workload; no default room, so
   the storm's connections are in no room), or uses ``--tcp HOST:PORT``;
2. registers ``--accounts`` fresh accounts (real argon2id on the server);
3. opens ``--storm`` connections, each from its own 127.x.y.z source address,
   and keeps them open in both modes;
4. runs the load generator's ``latency`` workload (``python -m
   twisted_chat.bench --workload latency``: 50 clients in one room, 10
   senders at 200 msg/s, 2,000 msg/s and 98,000 deliveries/s in all) and
   reads its delivery latency p50 and p99;
5. in ``storm`` mode, ``--delay`` seconds after the senders start, every storm
   connection sends one ``/login NAME WRONGPASSWORD``: the first ``--storm``
   minus ``--unknown`` against the accounts (round-robin, so each account
   gets at most 4 failures and stays under the 5-a-minute throttle), the last
   ``--unknown`` against names nobody registered.  ``--window`` logins are in
   flight at once (the server accepts a bounded queue of hashing jobs; a
   window below it makes every login cost a real argon2 verification, the
   worst case for the reactor); ``--window 0`` sends all at once (the
   server answers what its hashing queue cannot take at once with a
   refusal, and the storm is over in a second).

``quiet`` and ``storm`` runs alternate, the order flipping every round, so a
machine growing busier hurts both alike.  It prints each run and the
medians: p50/p99 without and with the storm, how many storm logins got which
answer (all ``login-failed`` means every one was really checked), and how
long the storm took against the run's sending time.  Loopback only; the
daemons it starts are stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import selectors
import statistics
import sys
import threading
import time
from collections import Counter
from typing import Any

from _loopback import TWISTD, LineClient, daemon, source_address

from twisted_chat.bench.__main__ import parse_args
from twisted_chat.bench.runner import run

#: The daemon's options for a latency run (as bench/ab_hotpath.py), with no
#: default room so the storm's connections hear nothing.
DAEMON_OPTIONS = (
    "--history-db",
    "off",
    "--flood-burst",
    "0",
    "--flood-rate",
    "0",
    "--max-per-ip",
    "0",
    "--default-room",
    "",
)
#: Seconds to wait for any one answer while setting up (argon2 included).
SETUP_TIMEOUT = 30.0
#: Seconds the whole storm may take before the stragglers are counted as lost.
STORM_TIMEOUT = 120.0


def is_reply(line: str) -> bool:
    """A ``*`` line that answers a command (not a join, a topic or history)."""
    return line.startswith("* ") and not any(
        part in line for part in (" joined #", "Topic of #", "You joined #")
    )


def register_accounts(port: int, names: list[str], password: str, block: int) -> None:
    """Make each of ``names`` an account, one connection (and address) each."""
    for n, name in enumerate(names):
        client = LineClient.connect(port, source_address(n, block), SETUP_TIMEOUT)
        deadline = time.monotonic() + SETUP_TIMEOUT
        client.expect("* Welcome", deadline)
        client.say(f"/nick {name}")
        client.expect("* You are now known as", deadline)
        client.say(f"/register {password}")
        line, _ = client.expect("", deadline)
        while not line.startswith("! ") and not is_reply(line):
            line, _ = client.expect("", deadline)
        if not line.startswith("* "):
            raise SystemExit(f"/register {name} was refused: {line}")
        client.say("/quit")
        client.close()


def open_storm(port: int, count: int, block: int) -> list[LineClient]:
    """``count`` connections past their welcome, each from its own address."""
    clients = []
    for n in range(count):
        client = LineClient.connect(port, source_address(n, block), SETUP_TIMEOUT)
        client.expect("* Welcome", time.monotonic() + SETUP_TIMEOUT)
        clients.append(client)
    return clients


def storm(clients: list[LineClient], logins: list[str], window: int) -> dict[str, Any]:
    """Send ``logins[i]`` on ``clients[i]``, ``window`` at a time; count answers."""
    answers: Counter[str] = Counter()
    selector = selectors.DefaultSelector()
    waiting: dict[int, float] = {}
    times: list[float] = []
    queue = list(range(len(clients)))
    start = time.monotonic()
    deadline = start + STORM_TIMEOUT
    buffers = [b""] * len(clients)

    def send_next() -> None:
        i = queue.pop(0)
        clients[i].say(logins[i])
        waiting[i] = time.monotonic()
        selector.register(clients[i].sock, selectors.EVENT_READ, i)

    limit = window if window > 0 else len(clients)
    while queue and len(waiting) < limit:
        send_next()
    while waiting and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            i = key.data
            data = clients[i].sock.recv(65536)
            if not data:
                answers["closed"] += 1
            buffers[i] += data
            answer = ""
            while b"\r\n" in buffers[i] and not answer:
                raw, buffers[i] = buffers[i].split(b"\r\n", 1)
                line = raw.decode(errors="replace")
                if line.startswith("! "):
                    answer = line[2:].split(":", 1)[0]
                elif is_reply(line):
                    answer = "accepted"  # a wrong password let in: a bug
            if data and not answer:
                continue
            answers[answer or "closed"] += 1
            times.append(time.monotonic() - waiting.pop(i))
            selector.unregister(clients[i].sock)
            if queue:
                send_next()
    answers["unanswered"] += len(waiting)
    elapsed = time.monotonic() - start
    return {
        "storm_s": elapsed,
        "answers": dict(answers),
        "login_median_ms": statistics.median(times) * 1000 if times else 0.0,
        "logins_per_s": len(times) / elapsed if elapsed else 0.0,
    }


def latency_run(
    host: str, port: int, server_pid: int | None, duration: float, fire: Any
) -> dict[str, Any]:
    """The ``latency`` workload; ``fire()`` is called once the senders send."""
    argv = ["--host", host, "--port", str(port), "--workload", "latency"]
    argv += ["--duration", str(duration)]
    if server_pid is not None:
        argv += ["--server-pid", str(server_pid)]
    config, _ = parse_args(argv)
    fired = threading.Event()

    def progress(text: str, final: bool) -> None:  # noqa: ARG001
        if " sending:" in text and not fired.is_set():
            fired.set()
            fire()

    report = run(config, progress)
    lat = report.latency
    return {
        "ok": report.ok,
        "errors": list(report.errors),
        "deliveries": report.received,
        "p50_ms": lat.p50_ms if lat else float("nan"),
        "p99_ms": lat.p99_ms if lat else float("nan"),
        "max_ms": lat.max_ms if lat else float("nan"),
        "send_s": report.elapsed_s,
        "server_cpu_percent": (report.server.cpu_percent if report.server else None),
    }


def one_run(args: argparse.Namespace, mode: str, n: int) -> dict[str, Any]:
    """One quiet or storm run, on a fresh daemon unless ``--tcp`` names one."""
    with contextlib.ExitStack() as stack:
        if args.tcp:
            host, _, port_text = args.tcp.rpartition(":")
            port, pid = int(port_text), None
            if host != "127.0.0.1":
                raise SystemExit("--tcp: only 127.0.0.1:PORT (loopback sources)")
        else:
            chat = stack.enter_context(
                daemon(args.twistd, *DAEMON_OPTIONS, *args.daemon_option)
            )
            host, port, pid = "127.0.0.1", chat.port, chat.pid
        tag = secrets.token_hex(2)
        names = [f"st{tag}a{k}" for k in range(args.accounts)]
        password = "Pw" + secrets.token_hex(8)
        # A block of source addresses per run: earlier runs' failures do not
        # throttle this one's (with --tcp, the daemon outlives the runs).
        block = 10 + 2 * (n % 100)
        register_accounts(port, names, password, block)
        clients = open_storm(port, args.storm, block + 1)
        for client in clients:
            stack.callback(client.close)
        known = args.storm - args.unknown
        logins = [
            f"/login {names[i % len(names)]} Wrong{secrets.token_hex(6)}"
            if i < known
            else f"/login st{tag}nobody{i} Wrong{secrets.token_hex(6)}"
            for i in range(args.storm)
        ]
        got: dict[str, Any] = {}
        worker: list[threading.Thread] = []

        def fire() -> None:
            if mode != "storm":
                return
            fired = time.monotonic()

            def go() -> None:
                time.sleep(args.delay)  # the schedule: into the sending window
                got["storm_offset_s"] = time.monotonic() - fired
                got.update(storm(clients, logins, args.window))

            worker.append(threading.Thread(target=go, daemon=True))
            worker[0].start()

        result = latency_run(host, port, pid, args.duration, fire)
        for thread in worker:
            thread.join(STORM_TIMEOUT)
        if "storm_s" in got:
            # How much of the sending window the storm covered (the progress
            # line that starts the clock comes up to 0.5 s after the senders).
            start = got["storm_offset_s"]
            end = min(result["send_s"], start + got["storm_s"])
            got["storm_cover"] = max(0.0, end - start) / result["send_s"]
        return {"mode": mode, **result, **got}


def describe(run: dict[str, Any]) -> str:
    text = f"p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms"
    text += f", max {run['max_ms']:.1f} ms, {run['deliveries']:,} deliveries"
    if run.get("server_cpu_percent") is not None:
        text += f", server CPU {run['server_cpu_percent']:.0f}%"
    if not run["ok"]:
        text += f", NOT OK: {run['errors']}"
    if "answers" in run:
        text += (
            f"; storm {run['storm_s']:.2f} s (covering {run['storm_cover']:.0%} of"
            f" {run['send_s']:.1f} s sending), {run['logins_per_s']:.0f} logins/s,"
            f" a login answered in {run['login_median_ms']:.0f} ms (median),"
            f" answers {run['answers']}"
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--twistd", default=TWISTD)
    parser.add_argument("--tcp", help="HOST:PORT of a running daemon (loopback)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--storm", type=int, default=200, help="wrong logins")
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--unknown", type=int, default=40, help="of unknown names")
    parser.add_argument("--window", type=int, default=24, help="logins in flight")
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--daemon-option", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 0 <= args.unknown <= args.storm or args.accounts < 1:
        parser.error("need --accounts >= 1 and 0 <= --unknown <= --storm")
    runs: list[dict[str, Any]] = []
    for n in range(args.runs):
        for mode in ("quiet", "storm") if n % 2 == 0 else ("storm", "quiet"):
            run_result = one_run(args, mode, len(runs))
            runs.append(run_result)
            if not args.json:
                print(f"run {n + 1} {mode}: {describe(run_result)}", flush=True)
    medians = {
        mode: {
            key: statistics.median(r[key] for r in runs if r["mode"] == mode)
            for key in ("p50_ms", "p99_ms", "max_ms")
        }
        for mode in ("quiet", "storm")
    }
    if args.json:
        print(json.dumps({"runs": runs, "medians": medians}))
        return 0
    for mode, values in medians.items():
        print(
            f"median {mode}: p50 {values['p50_ms']:.2f} ms,"
            f" p99 {values['p99_ms']:.2f} ms, max {values['max_ms']:.1f} ms"
            f" ({args.runs} runs)"
        )
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
