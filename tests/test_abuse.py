"""Hostile input and resource limits against the real daemon (PROTOCOL.md)."""

from __future__ import annotations

import random
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_twisted
from conftest import TIMEOUT, Daemon, LineClient, connect_client, free_port
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from twisted_chat.core.admission import CONNECT_BURST
from twisted_chat.core.settings import Settings
from twisted_chat.daemon.service import make_chat_service
from twisted_chat.testing_tls import client_hello, self_signed_pem
from twisted_chat.transports import tcp
from twisted_chat.transports.stream_output import unsent_bytes


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


class SourcedClient(LineClient):
    """A LineClient connecting from another loopback address (another group)."""

    def __init__(self, port: int, source: str) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0)
        )
        self.buffer = b""
        self.lines = []


def joined(port: int, nick: str, source: str = "") -> LineClient:
    client = SourcedClient(port, source) if source else LineClient(port)
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


def test_reconnect_loop_is_refused_with_one_line(
    daemons: Callable[..., Daemon],
) -> None:
    """One address connecting in a loop is refused past the rate, with one line."""
    daemon, port = start(daemons, "--max-per-ip", "3")
    observer = joined(port, "observer", source="127.0.0.2")
    # wait_for_port's probe was the first connection of this address.
    for _ in range(CONNECT_BURST - 1):
        client = LineClient(port)
        client.expect(r"^\* Welcome")
        client.close()
        observer.expect(r"^\* guest\d+ quit")  # so the cap of 3 is never reached
    refused = LineClient(port)
    lines = refused.read_until_closed()
    assert len(lines) == 2, lines
    assert lines[0].startswith("! too-many-connections: Too many new connections")
    assert "try again" in lines[0]
    assert lines[1] == ""
    daemon.wait_for_log(r"refused connection peer=tcp 127\.0\.0\.1:\d+ reason=too-many")
    joined(port, "other", source="127.0.0.3")  # another address is not slowed


# -- TLS clients that never finish their handshake --------------------------------


@pytest.fixture
def quick_handshake(monkeypatch: pytest.MonkeyPatch) -> float:
    """A short handshake deadline, so a real-socket test need not wait 10 s."""
    monkeypatch.setattr(tcp, "HANDSHAKE_TIMEOUT", 0.5)
    return 0.5


class Stalled(Protocol):
    """A TCP client that sends ``first`` and then nothing, and notes the close."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.received = b""
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.first)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object = None) -> None:  # noqa: ARG002
        self.lost.callback(None)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("sends", ["nothing", "half a ClientHello"])
async def test_stalled_tls_client_is_dropped_and_queues_nothing(
    tmp_path: Path, quick_handshake: float, sends: str
) -> None:
    """A TLS client that never finishes its handshake gets nothing, then is cut off."""
    pem = tmp_path / "server.pem"
    pem.write_bytes(self_signed_pem())
    service = make_chat_service(
        Settings(
            tcp=(
                "tcp:0:interface=127.0.0.1",
                f"ssl:0:interface=127.0.0.1:privateKey={pem}:certKey={pem}",
            ),
            history_db="off",
            flood_burst=0,
        ),
        reactor,
    )
    service.startService()
    try:
        plain, secure = [
            (await listener._waitingForPort).getHost().port
            for listener in service.getServiceNamed("tcp")
        ]
        hello = client_hello()
        first = b"" if sends == "nothing" else hello[: len(hello) // 2]
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", secure, timeout=TIMEOUT)
        stalled = await connectProtocol(endpoint, Stalled(first))
        started = reactor.seconds()
        alice = await connect_client(plain, "alice")
        for n in range(200):
            alice.say(f"{n} " + "x" * 1000)
        alice.say("/ping")
        await alice.expect(r"^\* pong$")
        (pending,) = [
            protocol
            for protocol in service.tcp_factory.protocols
            if protocol.participant is None
        ]
        assert unsent_bytes(pending.transport) == 0
        assert len(service.server.participants) == 1
        await stalled.lost.addTimeout(TIMEOUT, reactor)
        waited = reactor.seconds() - started
        assert quick_handshake - 0.1 <= waited < quick_handshake + TIMEOUT / 2
        assert stalled.received == b""
        assert service.admission.total == 1
        assert alice.transport is not None
        alice.transport.loseConnection()
        await alice.lost
    finally:
        await service.stopService()
