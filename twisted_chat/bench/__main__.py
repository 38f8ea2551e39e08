# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""The command line of the load generator: ``python -m twisted_chat.bench``.

See the package docstring (``twisted_chat.bench``) for what it measures and
how to start the server for it.  Exit status: 0 when every delivery arrived
exactly once, 1 when the run found an error, 2 for bad options.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from twisted_chat.bench.irc_wire import MAX_IRC_SIZE
from twisted_chat.bench.report import format_table, stderr_progress, to_json
from twisted_chat.bench.runner import RunConfig, run
from twisted_chat.bench.workloads import (
    CLIENTS_PER_PROC,
    MAX_SOURCE_ADDRS,
    WORKLOADS,
    get_workload,
    worker_processes,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

EPILOG = """\
workloads:
{workloads}

protocols (--proto):
  line     PROTOCOL.md's lines (telnet/nc users): /join, text, /ping barriers
  irc      IRC clients: NICK/USER, wait for 001, JOIN and wait for 366, then
           PRIVMSG #room :<payload>; PING/PONG barriers; the server's PINGs
           are answered.  Deliveries are counted by " PRIVMSG #room :" (no
           echo-message is asked for, so a sender gets none of its own).
           --size at most 350 (IRC lines are 512 bytes with the sender's
           prefix the server adds); --window as for line.
           Against ngircd start it with bench/ngircd.py (no flood penalties,
           no per-IP cap, no DNS/ident); see docs/bench_irc.md.
  web      WebSocket clients of twistd chat --web: GET /ws (Origin: the
           page's own), wait for the hello frame, then a masked text frame
           per line (/join, /part #lobby, /ping, the payload); --port is the
           --web port.  Deliveries are counted by the head of a message
           frame, {{"type":"message","room":"#room","nick":", pongs by the
           notice frame {{"type":"notice","text":"pong"}}.  Plain ws:// only
           (no TLS); bench/ab_web.py compares it with TCP; see
           docs/bench_web.md.

server options for a benchmark (twistd -n chat ...):
  --flood-burst 0 --flood-rate 0   turn flood control off (else 5 lines/s per sender)
  --max-per-ip N                   connections per address (default 32), or use
                                   --source-addrs here to spread the clients
  --max-clients N                  clients in all (default 10,000)
  --max-sendq BYTES                unread output before a reader is dropped
                                   (default 1 MiB); keep --window x senders x
                                   ~130 bytes below it
e.g.  twistd -n chat --tcp 9000 --udp 9001 --flood-burst 0 --flood-rate 0 \\
          --max-per-ip 2000 --max-clients 20000
      python -m twisted_chat.bench --workload fanout --server-pid PID
      python bench/ngircd.py -- --workload fanout     (IRC, against ngircd)

exit status: 0 all deliveries arrived exactly once, 1 errors, 2 bad options
"""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _ports(text: str) -> tuple[int, ...]:
    ports = tuple(int(part) for part in text.split(","))
    if not all(0 < port < 65536 for port in ports):
        raise argparse.ArgumentTypeError("ports are 1 to 65535")
    return ports


def build_parser() -> argparse.ArgumentParser:
    """The option parser; its help is the tool's manual."""
    workloads = "\n".join(f"  {w.name:<8} {w.description}" for w in WORKLOADS.values())
    parser = argparse.ArgumentParser(
        prog="python -m twisted_chat.bench",
        description="Load generator for a twisted-chat server: connects clients, "
        "sends room messages, and counts and times every delivery.",
        epilog=EPILOG.format(workloads=workloads),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    add("--port", type=int, default=9000, help="server TCP port (default 9000)")
    add("--udp-port", type=int, help="server UDP port; enables UDP clients")
    add(
        "--udp-clients",
        type=_non_negative,
        help="how many clients (the last ones) use UDP (default: all, "
        "when --udp-port is given)",
    )
    add(
        "--proto",
        choices=("line", "irc", "web"),
        default="line",
        help="what the TCP clients speak: PROTOCOL.md's lines (default), IRC, "
        "or WebSocket frames (web)",
    )
    add("--workload", choices=sorted(WORKLOADS), default="fanout")
    add("--clients", type=_positive, help="connections in all")
    add("--rooms", type=_positive, help="rooms the clients are spread over")
    add("--senders", type=_non_negative, help="clients that send")
    add("--messages", type=_non_negative, help="messages per sender")
    add("--size", type=_positive, help="bytes per message line (default 100)")
    add("--rate", type=_seconds, help="messages per second per sender (0: flat out)")
    add(
        "--duration",
        type=_seconds,
        help="seconds to send at --rate; for idle, seconds to hold",
    )
    add(
        "--churn-rate",
        type=_seconds,
        metavar="N",
        help="connections a second a churn process opens, registers and closes "
        "for --duration (the churn workload: 1000)",
    )
    add(
        "--procs",
        type=_positive,
        help="worker processes for the clients (default: the workload's, 1 or "
        f"2, and at least one per {CLIENTS_PER_PROC:,} clients)",
    )
    add(
        "--source-addrs",
        type=_non_negative,
        metavar="N",
        help="bind clients to N loopback addresses (127.0.1.1 .. 127.0.1.254, "
        "127.0.2.1, ...), round-robin, so a per-IP cap does not interfere and "
        "no address runs out of ports (default: none up to 1,000 clients, "
        "else one address per 32 clients)",
    )
    add(
        "--window",
        type=_non_negative,
        metavar="N",
        default=200,
        help="flat-out senders keep at most N messages unanswered by the server "
        "(batches end with /ping, or PING for IRC); 0 pipelines everything "
        "(default 200)",
    )
    add(
        "--read-delay",
        type=_seconds,
        metavar="MS",
        help="pause this many ms after small reads while messages flow, so "
        "lines pile up and each recv carries many (default 2 when sending "
        "flat out, 0 with --rate); adds at most that much to latencies",
    )
    add(
        "--server-pid",
        type=_positive,
        action="append",
        help="report this process's CPU and RSS; repeated, the processes' sum "
        "(a cluster's nodes and its Redis)",
    )
    add(
        "--reader-ports",
        type=_ports,
        metavar="P,Q,...",
        help="spread the readers (the clients that do not send) of each room over "
        "these TCP ports of --host in turn, senders stay on --port: nodes of one "
        "cluster; a reader there is done once its pong and all its deliveries "
        "are in (they cross the cluster, and may come after the pong)",
    )
    add("--json", action="store_true", help="print the report as JSON")
    add(
        "--timeout",
        type=_seconds,
        default=10.0,
        help="give up after this many seconds without progress (default 10)",
    )
    add("--no-progress", action="store_true", help="no progress line on stderr")
    return parser


def parse_args(
    argv: Sequence[str] | None = None,
) -> tuple[RunConfig, argparse.Namespace]:
    """Parse and check the options; exits with status 2 and a message on errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    duration = args.duration
    base = WORKLOADS[args.workload]
    if (
        args.messages is not None
        and duration is None
        and not base.idle
        and (args.rate or base.rate)
    ):
        # An explicit message count beats a paced workload's duration.
        duration = 0.0
    try:
        workload = get_workload(
            args.workload,
            clients=args.clients,
            rooms=args.rooms,
            senders=args.senders,
            messages=args.messages,
            size=args.size,
            rate=args.rate,
            duration=duration,
            churn_rate=args.churn_rate,
        )
    except ValueError as e:
        parser.error(str(e))
    udp_clients = args.udp_clients
    if udp_clients is None:
        udp_clients = workload.clients if args.udp_port is not None else 0
    if udp_clients and args.udp_port is None:
        parser.error("--udp-clients needs --udp-port")
    if udp_clients > workload.clients:
        parser.error("--udp-clients must not exceed --clients")
    source_addrs = args.source_addrs
    if source_addrs is None:
        source_addrs = 0 if workload.clients <= 1000 else -(-workload.clients // 32)
    if source_addrs > MAX_SOURCE_ADDRS:
        parser.error(f"--source-addrs must be at most {MAX_SOURCE_ADDRS:,}")
    if args.procs is not None and args.procs > workload.clients:
        parser.error("--procs must not exceed --clients")
    if args.proto == "irc":
        if udp_clients:
            parser.error("--proto irc has no UDP clients (drop --udp-port)")
        if workload.size > MAX_IRC_SIZE:
            parser.error(f"--size must be at most {MAX_IRC_SIZE} bytes for IRC")
    if args.proto == "web" and udp_clients:
        parser.error("--proto web has no UDP clients (drop --udp-port)")
    if args.reader_ports and udp_clients:
        parser.error("--reader-ports are TCP ports (drop --udp-port)")
    pids = args.server_pid or [None]
    config = RunConfig(
        workload=workload,
        host=args.host,
        port=args.port,
        udp_port=args.udp_port,
        udp_clients=udp_clients,
        procs=worker_processes(workload, args.procs),
        source_addrs=source_addrs,
        server_pid=pids[0],
        more_pids=tuple(pids[1:]),
        reader_ports=args.reader_ports or (),
        timeout=args.timeout,
        window=args.window,
        read_delay=None if args.read_delay is None else args.read_delay / 1000,
        proto=args.proto,
    )
    return config, args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark the options describe and print its report."""
    config, args = parse_args(argv)
    show = None if args.no_progress else stderr_progress()
    report = run(config, show)
    sys.stdout.write(to_json(report) + "\n" if args.json else format_table(report))
    sys.stdout.flush()
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
