# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Tests for the load generator ``twisted_chat.bench`` and its asyncio baseline server.

The runs use tiny sizes against servers on 127.0.0.1 port 0: the baseline in
a thread of this process (its own asyncio loop), deliberately broken variants
of it, and once as a subprocess through both command lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from array import array
from typing import TYPE_CHECKING, Any

import pytest
from _loop_thread import LoopThread
from attrs import define, field

from twisted_chat.bench import RunConfig, get_workload, run
from twisted_chat.bench import udp_client as client_module
from twisted_chat.bench.__main__ import main, parse_args
from twisted_chat.bench.baseline_asyncio import BaselineServer, Member
from twisted_chat.bench.report import (
    ProcSample,
    Report,
    format_table,
    percentile,
    read_proc,
    summarize_latency,
    to_json,
)
from twisted_chat.bench.wire import (
    MESSAGE_MARK,
    StreamCounter,
    encode_message,
    line_latency_ns,
    message_mark,
    parse_hello_challenge,
    setup_lines,
)
from twisted_chat.bench.workloads import WORKLOADS, make_plan

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def serve(lt: LoopThread, server: BaselineServer) -> int:
    """Start ``server`` on a free port in ``lt`` and return the port."""
    port: int = lt.call(server.start("127.0.0.1", 0))
    return port


@pytest.fixture
def baseline(loop_thread: LoopThread) -> Iterator[int]:
    server = BaselineServer()
    yield serve(loop_thread, server)
    loop_thread.call(server.close())


def config(port: int, workload: str = "fanout", **overrides: Any) -> RunConfig:
    options = {k: overrides.pop(k) for k in list(overrides) if k in _RUN_OPTIONS}
    options.setdefault("timeout", 5.0)
    return RunConfig(workload=get_workload(workload, **overrides), port=port, **options)


_RUN_OPTIONS = {
    "read_delay",
    "window",
    "procs",
    "server_pid",
    "timeout",
    "udp_port",
    "udp_clients",
    "source_addrs",
}


# Options.


def test_parse_args_defaults_to_the_full_fanout_workload() -> None:
    """With no options the run is the issue's fanout workload against port 9000."""
    cfg, args = parse_args([])
    w = cfg.workload
    assert (w.name, w.clients, w.rooms, w.senders, w.messages, w.size) == (
        "fanout",
        100,
        1,
        10,
        2000,
        100,
    )
    assert (cfg.host, cfg.port, cfg.procs, cfg.udp_clients) == ("127.0.0.1", 9000, 1, 0)
    assert not args.json


def test_parse_args_overrides_the_named_workload() -> None:
    """Each override replaces one number of the chosen workload."""
    cfg, args = parse_args(
        [
            "--workload=rooms",
            "--clients=40",
            "--rooms=4",
            "--senders=8",
            "--messages=3",
            "--size=64",
            "--procs=2",
            "--source-addrs=8",
            "--server-pid=1",
            "--json",
            "--no-progress",
            "--timeout=3",
            "--window=50",
            "--read-delay=5",
        ]
    )
    w = cfg.workload
    assert (w.name, w.clients, w.rooms, w.senders, w.messages, w.size) == (
        "rooms",
        40,
        4,
        8,
        3,
        64,
    )
    assert (cfg.procs, cfg.source_addrs, cfg.server_pid, cfg.timeout) == (2, 8, 1, 3.0)
    assert (cfg.window, cfg.read_delay) == (50, 0.005)
    assert args.json
    assert args.no_progress


def test_parse_args_paced_workload_sends_rate_times_duration() -> None:
    """The latency workload sends rate x duration messages, unless --messages says."""
    cfg, _ = parse_args(["--workload=latency"])
    assert cfg.workload.messages_per_sender == 2000
    cfg, _ = parse_args(["--workload=latency", "--duration=0.5"])
    assert cfg.workload.messages_per_sender == 100
    cfg, _ = parse_args(["--workload=latency", "--messages=7"])
    assert cfg.workload.messages_per_sender == 7


def test_parse_args_udp_port_alone_makes_every_client_udp() -> None:
    """--udp-port without --udp-clients moves every client to UDP."""
    cfg, _ = parse_args(["--udp-port=9001", "--clients=5"])
    assert (cfg.udp_port, cfg.udp_clients) == (9001, 5)


@pytest.mark.parametrize(
    "argv",
    [
        ["--senders=11", "--clients=10"],
        ["--rooms=5", "--clients=4"],
        ["--udp-clients=2"],
        ["--size=10"],
        ["--workload=nope"],
        ["--clients=0"],
        ["--source-addrs=70000"],
    ],
)
def test_parse_args_refuses_inconsistent_options(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Options that cannot describe a run exit with status 2 and a message."""
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_help_documents_the_server_options_for_benchmarks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--help names the server options that turn flood control off and raise caps."""
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    for option in (
        "--flood-burst 0",
        "--flood-rate 0",
        "--max-per-ip",
        "--max-clients",
    ):
        assert option in out


# Planning.


def test_plan_counts_each_message_once_per_other_room_member() -> None:
    """A message in a room of n members is expected n - 1 times, senders included."""
    w = get_workload("rooms", clients=7, rooms=3, senders=4, messages=2)
    plan = make_plan(w, "abc123")
    # Rooms: 0 <- clients 0,3,6 (senders 0,3); 1 <- 1,4 (1); 2 <- 2,5 (2).
    assert [c.expected for c in plan.clients] == [2, 0, 0, 2, 2, 2, 4]
    assert plan.expected_total == 12
    assert plan.messages_total == 8
    assert plan.clients[3].room == plan.clients[6].room == "#bench-abc123-0"


def test_plan_binds_loopback_sources_and_puts_udp_clients_last() -> None:
    """Source addresses cycle over 127.0.1.1..N and the last clients use UDP."""
    plan = make_plan(
        get_workload("fanout", clients=5, senders=1, messages=1),
        "r",
        udp_clients=2,
        source_addrs=2,
    )
    assert [c.source for c in plan.clients] == [
        "127.0.1.1",
        "127.0.1.2",
        "127.0.1.1",
        "127.0.1.2",
        "127.0.1.1",
    ]
    assert [c.udp for c in plan.clients] == [False, False, False, True, True]


def test_idle_workload_has_no_senders() -> None:
    """The idle workload never sends, whatever --senders says."""
    w = get_workload("idle", clients=5, rooms=1, senders=3)
    assert (w.senders, w.messages_per_sender) == (0, 0)


# The wire.


ROOM_MARK = message_mark("#bench-1")


def _stream() -> bytes:
    lines = [
        b"* Welcome",
        b"[#bench-1] <guest1> xx 0 100",
        b"* guest2 joined #bench-1",
        b"[#bench-1] <guest1> a [#b] * pong",
        b"* pong",
        b"[PM] <guest3> [#not-a-room-message]",
        b"[#other] <guest3> not in our room",
        b"[#bench-1] * guest3 waves",
        b"! Slow down",
        b"[#bench-1] <guest2> yy 1 200",
        b"* pong",
        b"* pong",
        b"[#bench-1] <guest2> zz 1 300",
        b"[#bench-1] <guest2> zz 1 300",
        b"* pong",
    ]
    return b"".join(line + b"\r\n" for line in lines)


def test_stream_counter_counts_room_messages_and_pongs_only() -> None:
    """Only lines starting with [#room] < are our room's messages, [# any room's,
    and only a whole * pong line is a pong."""
    data = _stream()
    assert StreamCounter(ROOM_MARK).feed(data, len(data), 0, None) == (5, 4)
    assert StreamCounter().feed(data, len(data), 0, None) == (7, 4)


@pytest.mark.parametrize("mark", [ROOM_MARK, MESSAGE_MARK])
def test_stream_counter_counts_the_same_however_the_stream_is_split(
    mark: bytes,
) -> None:
    """A mark split across reads is counted exactly once, for every split point."""
    data = _stream()
    want = StreamCounter(mark).feed(data, len(data), 0, None)
    for cut in range(len(data) + 1):
        counter = StreamCounter(mark)
        counter.feed(data[:cut], cut, 0, None)
        counter.feed(data[cut:], len(data) - cut, 0, None)
        assert (counter.messages, counter.pongs) == want, cut
    counter = StreamCounter(mark)
    for i in range(len(data)):
        counter.feed(data[i : i + 1], 1, 0, None)
    assert (counter.messages, counter.pongs) == want


def test_stream_counter_skips_pongs_when_none_is_due() -> None:
    """With no ping unanswered the pong search is skipped; messages still count."""
    data = _stream()
    assert StreamCounter(ROOM_MARK).feed(data, len(data), 0, None, False) == (5, 0)


def test_stream_counter_reads_only_the_first_n_bytes_of_its_buffer() -> None:
    """Bytes past n in the reused buffer (an earlier, longer read) are ignored."""
    buf = bytearray(b"[#r] <a> x 1 5\r\n" + b"[#r] <a> stale 1 5\r\n* pong\r\n")
    counter = StreamCounter()
    assert counter.feed(buf, 16, 0, None) == (1, 0)


def test_stream_counter_samples_the_oldest_and_newest_line_of_a_read() -> None:
    """Latency samples come from the first and last complete message line of a read."""
    data = b"[#r] <a> x 1 100\r\n[#r] <a> x 1 150\r\n[#r] <a> x 1 170\r\n[#r] <a> x"
    samples: array[int] = array("q")
    StreamCounter().feed(data, len(data), 1000, samples)
    assert list(samples) == [900, 830]


def test_line_latency_ignores_lines_that_are_not_bench_messages() -> None:
    """Notices and messages without a numeric tail give no sample."""
    assert line_latency_ns(b"* pong", 0, 6, 10) is None
    assert line_latency_ns(b"[#r] <a> hello", 0, 14, 10) is None
    assert line_latency_ns(b"[#r] <a> x 1 20", 0, 15, 10) is None  # from the future


def test_encode_message_fills_the_size_and_ends_with_sender_and_time() -> None:
    """A message line is exactly --size bytes with its sender and send time last."""
    line = encode_message(7, 123456789, 100)
    assert len(line) == 100
    assert line.endswith(b" 7 123456789\n")
    assert b"/" not in line


def test_setup_lines_join_part_lobby_and_ping() -> None:
    """Setup joins the room, leaves #lobby, and ends with the ping barrier."""
    assert setup_lines("#bench-x-1") == b"/join #bench-x-1\n/part #lobby\n/ping\n"


def test_parse_hello_challenge_takes_the_token() -> None:
    """The UDP challenge's token is the word after /hello."""
    assert parse_hello_challenge(b"* Reply /hello 3fA9-x to chat over UDP.\r\n") == (
        b"3fA9-x"
    )


@pytest.mark.parametrize(
    "datagram", [b"* Welcome\r\n", b"* Reply /hello \r\n", b"[#r] <a> * Reply /hello x"]
)
def test_parse_hello_challenge_ignores_other_lines(datagram: bytes) -> None:
    """Anything but a challenge yields no token."""
    assert parse_hello_challenge(datagram) is None


# Reports.


def test_read_proc_parses_cpu_and_memory(tmp_path: Path) -> None:
    """CPU ticks come from stat fields 14 and 15, memory from VmRSS and VmHWM."""
    pid_dir = tmp_path / "42"
    pid_dir.mkdir()
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 30
    (pid_dir / "stat").write_text("42 (twistd) (x) " + " ".join(fields) + "\n")
    (pid_dir / "status").write_text(
        "Name:\ttwistd\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t1\n"
    )
    sample = read_proc(42, tmp_path)
    assert sample == ProcSample(
        cpu_s=300 / os.sysconf("SC_CLK_TCK"), rss_kib=1024, peak_kib=2048
    )


def test_read_proc_reads_a_live_process() -> None:
    """This process's own /proc entry parses."""
    sample = read_proc(os.getpid())
    assert sample.rss_kib > 0
    assert sample.peak_kib >= sample.rss_kib


def test_percentile_uses_nearest_rank() -> None:
    """p50 of 1..10 is 5, p90 is 9, p100 is 10."""
    values = list(range(1, 11))
    assert [percentile(values, q) for q in (50, 90, 99, 100)] == [5, 9, 10, 10]
    latency = summarize_latency([3_000_000, 1_000_000, 2_000_000])
    assert latency is not None
    assert (latency.p50_ms, latency.max_ms, latency.samples) == (2.0, 3.0, 3)
    assert summarize_latency([]) is None


def test_report_shows_missing_deliveries_as_an_error() -> None:
    """The table and the JSON both show a shortfall and a failed verdict."""
    report = Report(
        workload=get_workload("fanout", clients=3, senders=1, messages=2),
        connections=3,
        sent=2,
        expected=4,
        received=3,
        setup_s=0.1,
        elapsed_s=0.5,
        latency=None,
        server=None,
        bench=None,
        errors=("missing 1 of 4 deliveries",),
    )
    table = format_table(report)
    assert "1 missing" in table
    assert "ERROR" in table
    data = json.loads(to_json(report))
    assert (data["ok"], data["missing"], data["deliveries_per_s"]) == (False, 1, 6.0)


# Runs against servers.


@pytest.mark.parametrize("window", [0, 2, 200])
def test_run_against_baseline_counts_exact_deliveries(
    baseline: int, window: int
) -> None:
    """Every message reaches every other member of its room exactly once, whether
    senders pipeline everything, one message per ping, or batches."""
    report = run(
        config(
            baseline,
            clients=6,
            senders=2,
            messages=5,
            server_pid=os.getpid(),
            window=window,
            read_delay=0.001,
        )
    )
    assert report.errors == ()
    assert (report.expected, report.received, report.sent) == (50, 50, 10)
    assert report.connections == 6
    assert report.latency is not None
    assert report.server is not None
    assert report.server.pid == os.getpid()
    assert report.bench is not None


def test_run_with_several_worker_processes(baseline: int) -> None:
    """Clients of one room spread over two workers still count exactly."""
    report = run(config(baseline, clients=7, senders=3, messages=4, procs=2))
    assert report.errors == ()
    assert (report.expected, report.received) == (72, 72)


@define
class PeerRecorder(BaselineServer):
    """Remembers the address each client connected from."""

    peers: list[str] = field(factory=list)

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.peers.append(writer.get_extra_info("peername")[0])
        await super().handle(reader, writer)


def test_run_binds_clients_to_several_loopback_addresses(
    loop_thread: LoopThread,
) -> None:
    """--source-addrs spreads the connections over 127.0.1.1 .. 127.0.1.N."""
    server = PeerRecorder()
    port = serve(loop_thread, server)
    report = run(config(port, clients=5, senders=1, messages=1, source_addrs=2))
    loop_thread.call(server.close())
    assert report.errors == ()
    assert sorted(server.peers) == ["127.0.1.1"] * 3 + ["127.0.1.2"] * 2


@define
class LossyServer(BaselineServer):
    """Drops one room message to one recipient."""

    dropped: list[bytes] = field(factory=list)

    def broadcast(self, room: str, data: bytes, exclude: Member | None) -> None:
        if not self.dropped and data.startswith(b"[#"):
            self.dropped.append(data)
            members = [m for m in self.rooms.get(room, ()) if m is not exclude]
            for m in members[1:]:
                m.writer.write(data)
            return
        super().broadcast(room, data, exclude)


def test_run_reports_a_missing_delivery_as_an_error(loop_thread: LoopThread) -> None:
    """One lost line fails the run with a 'missing 1' error, without waiting for
    the timeout."""
    server = LossyServer()
    port = serve(loop_thread, server)
    report = run(config(port, clients=4, senders=2, messages=3, timeout=30.0))
    loop_thread.call(server.close())
    assert len(server.dropped) == 1
    assert (report.expected, report.received, report.missing) == (18, 17, 1)
    assert not report.ok
    assert any(e.startswith("missing 1 of 18 deliveries") for e in report.errors)


@define
class EchoServer(BaselineServer):
    """Also sends each room message back to its sender, as PROTOCOL.md forbids."""

    def broadcast(
        self,
        room: str,
        data: bytes,
        exclude: Member | None,  # noqa: ARG002
    ) -> None:
        super().broadcast(room, data, None)


def test_run_reports_echoed_messages_as_unexpected(loop_thread: LoopThread) -> None:
    """Deliveries beyond the expected count are an error too."""
    server = EchoServer()
    port = serve(loop_thread, server)
    report = run(config(port, clients=3, senders=1, messages=2))
    loop_thread.call(server.close())
    assert (report.expected, report.received, report.unexpected) == (4, 6, 2)
    assert not report.ok


@pytest.mark.parametrize(
    ("workload", "overrides"),
    [
        ("fanout", {"clients": 6, "senders": 2, "messages": 5}),
        ("rooms", {"clients": 12, "rooms": 3, "senders": 12, "messages": 5}),
        ("latency", {"clients": 6, "senders": 2, "rate": 100.0, "duration": 0.05}),
        ("idle", {"clients": 5, "rooms": 2, "duration": 0.0}),
    ],
)
def test_each_workload_runs_at_a_tiny_size(
    baseline: int, workload: str, overrides: dict[str, Any]
) -> None:
    """Every named workload completes against the baseline with exact counts."""
    report = run(config(baseline, workload, server_pid=os.getpid(), **overrides))
    assert report.errors == ()
    assert report.received == report.expected
    assert report.connections == overrides["clients"]
    assert report.server is not None
    if workload == "idle":
        assert report.expected == 0
    else:
        assert report.expected > 0


def test_run_reports_a_server_that_refuses_connections() -> None:
    """Nothing listening: the report names the refused connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connects are refused
        report = run(config(port, clients=2, senders=1, messages=1))
    assert not report.ok
    assert any("could not register" in e for e in report.errors)
    assert any("cannot connect" in e for e in report.errors)


def test_run_times_out_when_the_server_never_answers() -> None:
    """A server that accepts but never pongs ends the run after --timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        report = run(
            config(s.getsockname()[1], clients=2, senders=1, messages=1, timeout=0.3)
        )
    assert not report.ok
    assert report.errors[0].startswith("timed out: no progress for 0.3 s")


@define
class UdpChat(asyncio.DatagramProtocol):
    """A fake of PROTOCOL.md's UDP side: challenge, /hello, /join, /ping."""

    transport: Any = None
    sessions: dict[Any, bytes] = field(factory=dict)  # address -> room

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def send(self, line: bytes, addr: Any) -> None:
        assert self.transport is not None
        self.transport.sendto(line + b"\r\n", addr)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        token = b"tok%d" % addr[1]
        for line in data.decode().splitlines():
            raw = line.encode()
            if addr not in self.sessions:
                if raw == b"/hello " + token:
                    self.sessions[addr] = b"#lobby"
                    self.send(b"* Welcome over UDP", addr)
                else:
                    self.send(b"* Reply /hello " + token + b" to chat over UDP.", addr)
                    return
            elif raw == b"/ping":
                self.send(b"* pong", addr)
            elif raw.startswith(b"/join "):
                self.sessions[addr] = raw.split()[1]
            elif not raw.startswith(b"/"):
                room = self.sessions[addr]
                for other, where in self.sessions.items():
                    if other != addr and where == room:
                        self.send(b"[" + room + b"] <u> " + raw, other)


def run_udp_bench(loop_thread: LoopThread, chat: UdpChat) -> Report:
    """Four UDP clients, two senders of three messages, against ``chat``."""

    async def listen() -> tuple[asyncio.DatagramTransport, int]:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: chat, local_addr=("127.0.0.1", 0)
        )
        return transport, transport.get_extra_info("sockname")[1]

    transport, udp_port = loop_thread.call(listen())
    try:
        return run(
            config(
                1,
                clients=4,
                senders=2,
                messages=3,
                udp_port=udp_port,
                udp_clients=4,
            )
        )
    finally:
        loop_thread.loop.call_soon_threadsafe(transport.close)


def test_run_over_udp_does_the_hello_handshake(loop_thread: LoopThread) -> None:
    """UDP clients answer the challenge, then count datagram deliveries exactly."""
    chat = UdpChat()
    report = run_udp_bench(loop_thread, chat)
    assert report.errors == ()
    assert (report.expected, report.received) == (18, 18)
    assert len(chat.sessions) == 4


@define
class SilentAtFirst(UdpChat):
    """A UDP server that ignores the first address of every client host:port."""

    ignored: set[Any] = field(factory=set)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if addr not in self.sessions and len(self.ignored) < 2:
            self.ignored.add(addr)
        if addr in self.ignored:
            return  # as the server does past its challenge rate limits
        super().datagram_received(data, addr)


def test_udp_client_asks_again_from_a_new_port(loop_thread: LoopThread) -> None:
    """A UDP client whose challenge never comes retries from another port."""
    # The workers run in processes of their own: this takes HELLO_RETRY_NS.
    assert client_module.HELLO_RETRY_NS <= 2_000_000_000
    chat = SilentAtFirst()
    report = run_udp_bench(loop_thread, chat)
    assert report.errors == ()
    assert (report.expected, report.received) == (18, 18)
    assert len(chat.ignored) == 2
    assert len(chat.sessions) == 4


def test_command_line_against_the_baseline_subprocess() -> None:
    """Both command lines work end to end: the bench prints JSON and exits 0."""
    server = subprocess.Popen(
        [sys.executable, "-m", "twisted_chat.bench.baseline_asyncio", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("listening on 127.0.0.1:")
        port = first.rsplit(":", 1)[1].strip()
        bench = subprocess.run(
            [
                sys.executable,
                "-m",
                "twisted_chat.bench",
                "--port",
                port,
                "--clients=4",
                "--senders=2",
                "--messages=3",
                f"--server-pid={server.pid}",
                "--json",
                "--timeout=5",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
    assert bench.returncode == 0, bench.stderr
    data = json.loads(bench.stdout)
    assert (data["ok"], data["expected"], data["received"]) == (True, 18, 18)
    assert data["server"]["pid"] == server.pid
    assert "fanout" in bench.stderr  # the progress line


def test_main_returns_one_when_deliveries_are_missing(
    loop_thread: LoopThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exit status of a run with a lost delivery is 1, and the table says why."""
    server = LossyServer()
    port = serve(loop_thread, server)
    status = main(
        [
            f"--port={port}",
            "--clients=3",
            "--senders=1",
            "--messages=2",
            "--no-progress",
        ]
    )
    loop_thread.call(server.close())
    assert status == 1
    assert "missing 1 of 4 deliveries" in capsys.readouterr().out


def test_every_workload_is_documented_in_the_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--help lists each named workload with its description."""
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    for w in WORKLOADS.values():
        assert w.name in out
        assert w.description in out
