"""Hostile input and resource limits against the real daemon (PROTOCOL.md)."""

from __future__ import annotations

import random
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from conftest import TIMEOUT, Daemon, LineClient, free_port


def rss_kib(pid: int) -> int:
    """The resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def start(daemons: Callable[..., Daemon], *extra: str) -> tuple[Daemon, int]:
    port = free_port()
    daemon = daemons(
        "--tcp", f"tcp:{port}:interface=127.0.0.1", "--history-db", "off", *extra
    )
    daemon.wait_for_port(port)
    return daemon, port


def joined(port: int, nick: str) -> LineClient:
    client = LineClient(port)
    client.expect(r"^\* You joined #lobby")
    client.say(f"/nick {nick}")
    client.expect(rf"^\* You are now known as {nick}\.")
    return client


def test_overlong_line_then_a_normal_line(daemons: Callable[..., Daemon]) -> None:
    """An overlong line is refused with an error; the connection and next line work."""
    _, port = start(daemons, "--max-line", "100")
    alice, bob = joined(port, "alice"), joined(port, "bob")
    alice.sock.sendall(b"a" * 101 + b"\nafter\n")
    alice.expect(r"^! line-too-long: Lines are at most 100 bytes")
    assert bob.expect(r"^\[#lobby\]") == "[#lobby] <alice> after"


def test_unterminated_8_mib_line_does_not_grow_memory(
    daemons: Callable[..., Daemon],
) -> None:
    """8 MiB with no newline is discarded as it arrives, not buffered."""
    daemon, port = start(daemons)
    client = joined(port, "flooder")
    client.say("/ping")
    client.expect(r"^\* pong$")
    before = rss_kib(daemon.proc.pid)
    chunk = b"x" * 65536
    for _ in range(128):
        client.sock.sendall(chunk)
    client.sock.sendall(b"\n/ping\n")
    client.expect(r"^! line-too-long:")
    client.expect(r"^\* pong$")
    grown = rss_kib(daemon.proc.pid) - before
    assert grown < 2048, f"RSS grew by {grown} KiB while discarding 8 MiB"


def test_pasted_block_arrives_whole_and_in_order(
    daemons: Callable[..., Daemon],
) -> None:
    """Under flood control a 50-line paste is delayed, never dropped or reordered."""
    _, port = start(daemons, "--flood-burst", "10", "--flood-rate", "25")
    paster, reader = joined(port, "paster"), joined(port, "reader")
    paster.sock.sendall(b"".join(b"line %02d\n" % n for n in range(50)))
    got = [reader.expect(r"^\[#lobby\] <paster> ") for _ in range(50)]
    assert got == [f"[#lobby] <paster> line {n:02d}" for n in range(50)]
    paster.say("/ping")
    paster.expect(r"^\* pong$")
    assert not any(line.startswith("!") for line in paster.lines)


def test_slow_reader_is_dropped_and_the_room_goes_on(
    daemons: Callable[..., Daemon],
) -> None:
    """A client that never reads is cut off at --max-sendq; the others chat on."""
    daemon, port = start(
        daemons, "--max-sendq", "262144", "--flood-burst", "0", "--max-line", "4096"
    )
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", port))
    slow.sendall(b"/nick slow\n")
    sender, reader = joined(port, "sender"), joined(port, "reader")
    body = "y" * 3000
    messages = 1500  # about 4.5 MiB: far past what the kernel buffers hold
    for start_at in range(0, messages, 100):
        sender.sock.sendall(
            b"".join(f"{n} {body}\n".encode() for n in range(start_at, start_at + 100))
        )
        # Read as we go, as a healthy client does.
        reader.expect(rf"^\[#lobby\] <sender> {start_at + 99} ")
    quit_notice = "* slow quit (too slow to read, send queue full)"
    if quit_notice not in reader.lines:
        reader.expect(r"^\* slow quit ")
    assert quit_notice in reader.lines
    daemon.wait_for_log(r"dropping slow reader peer=tcp 127\.0\.0\.1:\d+ unsent=\d+")
    sender.say("still here")
    assert reader.expect(r"still here") == "[#lobby] <sender> still here"
    slow.close()


def test_per_ip_cap_refuses_with_one_line(daemons: Callable[..., Daemon]) -> None:
    """Past --max-per-ip a connection gets one ! line, then is closed."""
    daemon, port = start(daemons, "--max-per-ip", "3")
    kept = [joined(port, f"user{n}") for n in range(3)]
    refused = LineClient(port)
    lines = refused.read_until_closed()
    assert lines[0].startswith("! too-many-connections: ")
    assert lines[1:] == [""]
    daemon.wait_for_log(r"refused connection peer=tcp 127\.0\.0\.1:\d+ reason=too-many")
    kept[0].close()
    kept[1].expect(r"^\* user0 quit")
    joined(port, "user3")


def test_random_bytes_never_crash_the_server(daemons: Callable[..., Daemon]) -> None:
    """Fuzz over TCP and UDP: the server keeps answering /ping, no traceback."""
    port = free_port()
    udp_port = free_port(socket.SOCK_DGRAM)
    daemon = daemons(
        "--tcp", f"tcp:{port}:interface=127.0.0.1",
        "--udp", f"127.0.0.1:{udp_port}",
        "--history-db", "off",
        "--flood-burst", "0",
    )  # fmt: skip
    daemon.wait_for_port(port)
    fuzz = random.Random(20261128)
    observer = joined(port, "observer")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for round_number in range(20):
            client = LineClient(port)
            for _ in range(20):
                size = fuzz.choice([1, 7, 64, 1000, 5000])
                client.sock.sendall(fuzz.randbytes(size))
                udp.sendto(fuzz.randbytes(min(size, 1400)), ("127.0.0.1", udp_port))
            client.sock.sendall(b"\n/ping fuzz%d\n" % round_number)
            client.expect(rf"^\* pong fuzz{round_number}$")
            client.close()
    observer.say("/ping alive")
    observer.expect(r"^\* pong alive$")
    for line in observer.lines:
        assert "\x1b" not in line
        assert not any(ord(char) < 32 and char != "\t" for char in line)
    assert "Traceback" not in daemon.log
    assert daemon.proc.poll() is None


def test_sigterm_with_200_clients_tells_each_and_exits_promptly(
    daemons: Callable[..., Daemon],
) -> None:
    """Every one of 200 clients gets the shutdown notice; exit within 5 seconds."""
    daemon, port = start(daemons, "--max-per-ip", "0", "--default-room", "")
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    for client in clients:
        client.sendall(b"/ping ready\n")
    for client in clients:
        reader = LineClient.__new__(LineClient)
        reader.sock, reader.buffer, reader.lines = client, b"", []
        reader.expect(r"^\* pong ready$")
    # One more that never reads: it must not hold the shutdown up.
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", port))
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.proc.wait(timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    told = 0
    for client in clients:
        client.settimeout(TIMEOUT)
        data = b""
        while chunk := client.recv(65536):
            data += chunk
        told += b"* Server shutting down\r\n" in data
        client.close()
    stuck.close()
    assert told == 200
    assert elapsed < 5.0, f"took {elapsed:.1f} s to exit"
