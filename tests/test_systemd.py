# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Tests for `daemon.systemd`, `daemon.inherited_sockets` and `deploy/`.

sd_notify is tested against real ``AF_UNIX`` datagram sockets, read back
without blocking (a datagram is in the receiver's queue once ``sendto``
returns).  Timers run on a `Clock`.  Inherited sockets are real sockets whose
descriptor numbers go into a fake ``LISTEN_*`` environment.  The unit files
are checked by ``systemd-analyze``; socket activation under a real systemd
is covered by the end-to-end daemon tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest
import pytest_twisted
from conftest import Pair
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import _SystemdParser
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.systemd import ListenFDs

from twisted_chat.daemon.inherited_sockets import (
    InheritedSocketError,
    InheritedSockets,
    adopt_udp,
    systemd_socket_name,
)
from twisted_chat.daemon.systemd import (
    Notifier,
    SystemdNotifyService,
    install_sighup,
    monotonic_usec,
    watchdog_usec_from_environment,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from twisted.internet.interfaces import IReactorFromThreads, IReactorSocket


_F = TypeVar("_F", bound="Callable[..., Any]")


def _typed(decorator: Any) -> Callable[[_F], _F]:
    """Give pytest_twisted's (untyped) decorator a type mypy --strict accepts."""
    return cast("Callable[[_F], _F]", decorator)


ensure_deferred = _typed(pytest_twisted.ensureDeferred)
socket_reactor = cast("IReactorSocket", reactor)
thread_reactor = cast("IReactorFromThreads", reactor)

Listener = tuple[str, socket.socket]

DEPLOY = Path(__file__).parent.parent / "deploy"
UNITS = [
    "twisted-chat.socket",
    "twisted-chat-udp.socket",
    "twisted-chat-irc.socket",
    "twisted-chat-web.socket",
    "twisted-chat-metrics.socket",
    "twisted-chat.service",
]
TWISTD = "/opt/twisted-chat/bin/twistd"


# --- sd_notify --------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[Listener]:
    """An abstract-namespace datagram socket standing in for systemd's."""
    name = f"@twisted-chat-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.setblocking(False)
    with sock:
        yield name, sock


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sock``."""
    messages = []
    with contextlib.suppress(BlockingIOError):
        while True:
            messages.append(sock.recv(4096))
    return messages


def test_notifier_sends_to_a_socket_path() -> None:
    """A ``NOTIFY_SOCKET`` path gets the fields as ``KEY=value`` lines."""
    # A short directory: AF_UNIX paths are limited to 107 bytes.
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
        tempfile.TemporaryDirectory(prefix="tc-") as directory,
    ):
        path = f"{directory}/notify"
        sock.bind(path)
        sock.setblocking(False)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
        assert notifier.notify(READY=1, STATUS="2 clients in 1 room")
        assert received(sock) == [b"READY=1\nSTATUS=2 clients in 1 room"]


def test_notifier_sends_to_an_abstract_socket(listener: Listener) -> None:
    """``@name`` means the abstract namespace, and raw bytes go out as given."""
    name, sock = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": name})
    assert notifier.address == "\0" + name[1:]
    notifier.notify(b"READY=1", STATUS="up")
    assert received(sock) == [b"READY=1\nSTATUS=up"]


def test_notifier_keeps_one_field_per_line(listener: Listener) -> None:
    """A newline inside a value cannot smuggle in another field."""
    name, sock = listener
    Notifier.from_environment({"NOTIFY_SOCKET": name}).notify(STATUS="a\nREADY=1")
    assert received(sock) == [b"STATUS=a READY=1"]


@pytest.mark.parametrize("value", [None, "", "relative/path", "vsock:2:1234"])
def test_notifier_is_a_noop_without_a_usable_socket(value: str | None) -> None:
    """Without a usable ``NOTIFY_SOCKET`` nothing is sent and nothing fails."""
    environ = {} if value is None else {"NOTIFY_SOCKET": value}
    notifier = Notifier.from_environment(environ)
    assert not notifier.enabled
    assert notifier.notify(READY=1) is False


def test_notifier_logs_instead_of_raising() -> None:
    """A socket nobody listens on is logged, not raised."""
    notifier = Notifier(f"\0twisted-chat-nobody-{uuid.uuid4().hex}")
    with capturedLogs() as events:
        assert notifier.notify(READY=1) is False
    assert any("Could not notify systemd" in e["log_format"] for e in events)


def test_notifier_leaves_the_environment_alone() -> None:
    """Reading ``NOTIFY_SOCKET`` does not remove it."""
    environ = {"NOTIFY_SOCKET": "@x"}
    Notifier.from_environment(environ)
    assert environ == {"NOTIFY_SOCKET": "@x"}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30_000_000),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30_000_000),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_follows_sd_watchdog_enabled(
    environ: dict[str, str], expected: int | None
) -> None:
    """``WATCHDOG_USEC`` applies unless ``WATCHDOG_PID`` names another process."""
    assert watchdog_usec_from_environment(environ, pid=4242) == expected


class Status:
    """A status line the test can change."""

    def __init__(self) -> None:
        self.text = "0 clients in 0 rooms"

    def __call__(self) -> str:
        return self.text


def make_service(
    listener: Listener, watchdog_usec: int | None = None
) -> tuple[SystemdNotifyService, Clock, Status]:
    clock = Clock()
    status = Status()
    service = SystemdNotifyService(
        Notifier.from_environment({"NOTIFY_SOCKET": listener[0]}),
        clock,
        status,
        watchdog_usec,
        clock_usec=lambda: 123456789,
    )
    return service, clock, status


def test_service_says_ready_with_status_on_start(listener: Listener) -> None:
    """Starting the service sends ``READY=1`` and the current status together."""
    service, _, _ = make_service(listener)
    service.startService()
    assert received(listener[1]) == [b"READY=1\nSTATUS=0 clients in 0 rooms"]
    service.stopService()


def test_service_sends_status_only_when_it_changes(listener: Listener) -> None:
    """The status is checked every second and sent only when it changed."""
    service, clock, status = make_service(listener)
    service.startService()
    received(listener[1])
    clock.advance(1)
    assert received(listener[1]) == []
    status.text = "1 client in 1 room"
    clock.advance(1)
    assert received(listener[1]) == [b"STATUS=1 client in 1 room"]
    clock.advance(1)
    assert received(listener[1]) == []
    service.stopService()


def test_service_survives_a_failing_status(listener: Listener) -> None:
    """A status callable that raises is logged, and the checks go on."""
    service, clock, status = make_service(listener)
    service.startService()
    received(listener[1])

    def broken() -> str:
        raise RuntimeError("boom")

    service._status = broken
    with capturedLogs() as events:
        clock.advance(1)
    assert received(listener[1]) == []
    assert any(e.get("log_failure") for e in events)
    service._status = status
    status.text = "back"
    clock.advance(1)
    assert received(listener[1]) == [b"STATUS=back"]
    service.stopService()


def test_service_pings_the_watchdog_at_half_the_interval(listener: Listener) -> None:
    """With ``WATCHDOG_USEC`` of 10 s, ``WATCHDOG=1`` goes out every 5 s."""
    service, clock, _ = make_service(listener, watchdog_usec=10_000_000)
    service.startService()
    received(listener[1])
    clock.pump([1, 1, 1, 1])
    assert received(listener[1]) == []
    clock.advance(1)
    assert received(listener[1]) == [b"WATCHDOG=1"]
    clock.pump([1, 1, 1, 1, 1])
    assert received(listener[1]) == [b"WATCHDOG=1"]
    service.stopService()


def test_service_says_stopping_and_stops_its_timers(listener: Listener) -> None:
    """Stopping sends ``STOPPING=1`` and leaves nothing scheduled."""
    service, clock, _ = make_service(listener, watchdog_usec=10_000_000)
    service.startService()
    received(listener[1])
    service.stopService()
    assert received(listener[1]) == [b"STOPPING=1"]
    assert clock.getDelayedCalls() == []


def test_service_reports_a_reload(listener: Listener) -> None:
    """A reload is bracketed by ``RELOADING=1`` with the time and ``READY=1``."""
    service, _, status = make_service(listener)
    service.startService()
    received(listener[1])

    def apply() -> None:
        status.text = "reloaded"

    service.reload(apply)
    assert received(listener[1]) == [
        b"RELOADING=1\nMONOTONIC_USEC=123456789",
        b"READY=1\nSTATUS=reloaded",
    ]
    service.stopService()


def test_service_is_ready_again_after_a_failed_reload(listener: Listener) -> None:
    """A reload that raises is logged, and ``READY=1`` still follows."""
    service, _, _ = make_service(listener)
    service.startService()
    received(listener[1])

    def apply() -> None:
        raise ValueError("bad config")

    with capturedLogs() as events:
        service.reload(apply)
    assert received(listener[1])[-1].startswith(b"READY=1\n")
    assert any(e.get("log_failure") for e in events)
    service.stopService()


def test_service_does_nothing_without_notify_socket() -> None:
    """Outside systemd no timers are scheduled."""
    clock = Clock()
    service = SystemdNotifyService.from_environment(
        clock, lambda: "x", {"WATCHDOG_USEC": "1000000"}
    )
    service.startService()
    assert clock.getDelayedCalls() == []
    service.stopService()


def test_monotonic_usec_is_clock_monotonic() -> None:
    """``MONOTONIC_USEC`` uses the clock systemd compares it with."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    now = monotonic_usec()
    assert before <= now <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


# --- inherited sockets ---------------------------------------------------


def systemd_environ(names: list[str], pid: int | None = None) -> dict[str, str]:
    return {
        "LISTEN_PID": str(os.getpid() if pid is None else pid),
        "LISTEN_FDS": str(len(names)),
        "LISTEN_FDNAMES": ":".join(names),
    }


def sockets_for(*socks: socket.socket, names: list[str]) -> InheritedSockets:
    """Pretend systemd passed ``socks`` under ``names``."""
    return InheritedSockets(ListenFDs([s.fileno() for s in socks], names))


def test_inherited_sockets_are_found_by_name(pair: Pair) -> None:
    """Each name maps to its descriptor, checked to be of the kind asked for."""
    tcp, udp = pair
    sockets = sockets_for(tcp, udp, names=["chat-tcp", "chat-udp"])
    assert sockets.names() == {"chat-tcp": tcp.fileno(), "chat-udp": udp.fileno()}
    assert sockets.stream_fd("chat-tcp") == tcp.fileno()
    assert sockets.datagram_fd("chat-udp") == udp.fileno()


def test_inherited_sockets_are_parsed_from_the_environment() -> None:
    """``LISTEN_FDNAMES`` names the descriptors from 3 up, as systemd passes them."""
    sockets = InheritedSockets.from_environment(systemd_environ(["a", "b"]))
    assert sockets.names() == {"a": 3, "b": 4}


def test_inherited_sockets_ignore_another_process() -> None:
    """``LISTEN_PID`` of another process means nothing was inherited."""
    sockets = InheritedSockets.from_environment(systemd_environ(["a"], pid=1))
    assert sockets.names() == {}


def test_reading_inherited_sockets_leaves_the_environment_alone() -> None:
    """Parsing a given environment does not consume it (Twisted's would)."""
    environ = systemd_environ(["a"])
    InheritedSockets.from_environment(environ)
    assert environ == systemd_environ(["a"])


def test_process_sockets_are_the_ones_twisted_reads() -> None:
    """The daemon shares the one reading Twisted's ``systemd:`` endpoint uses."""
    assert InheritedSockets.for_process().listen_fds is _SystemdParser._sddaemon


def test_missing_name_says_what_was_inherited(pair: Pair) -> None:
    """Asking for a name systemd did not pass lists the names it did pass."""
    sockets = sockets_for(*pair, names=["chat-tcp", "chat-udp"])
    with pytest.raises(InheritedSocketError, match="chat-tcp, chat-udp") as info:
        sockets.datagram_fd("chat-dgram")
    assert "FileDescriptorName=chat-dgram" in str(info.value)


def test_wrong_socket_type_is_refused(pair: Pair) -> None:
    """A stream socket is not taken for UDP, nor a datagram socket for TCP."""
    sockets = sockets_for(*pair, names=["chat-tcp", "chat-udp"])
    with pytest.raises(InheritedSocketError, match="ListenDatagram="):
        sockets.datagram_fd("chat-tcp")
    with pytest.raises(InheritedSocketError, match="ListenStream="):
        sockets.stream_fd("chat-udp")


def test_wrong_socket_type_names_the_unit_line_once(pair: Pair) -> None:
    """The error names ListenDatagram= or ListenStream= whole, not ListenListen...==."""
    sockets = sockets_for(*pair, names=["chat-tcp", "chat-udp"])
    with pytest.raises(InheritedSocketError) as datagram:
        sockets.datagram_fd("chat-tcp")
    assert str(datagram.value) == (
        "Inherited socket 'chat-tcp' is SOCK_STREAM, not SOCK_DGRAM: its .socket "
        "unit needs ListenDatagram="
    )
    with pytest.raises(InheritedSocketError) as stream:
        sockets.stream_fd("chat-udp")
    assert str(stream.value) == (
        "Inherited socket 'chat-udp' is SOCK_DGRAM, not SOCK_STREAM: its .socket "
        "unit needs ListenStream="
    )


def test_non_socket_descriptor_is_refused() -> None:
    """A name whose descriptor is no socket gives a clear error."""
    read, write = os.pipe()
    try:
        sockets = InheritedSockets(ListenFDs([read], ["x"]))
        with pytest.raises(InheritedSocketError, match="not a socket"):
            sockets.stream_fd("x")
    finally:
        os.close(read)
        os.close(write)


@pytest.mark.parametrize(
    ("description", "name"),
    [
        ("systemd:name=chat-udp", "chat-udp"),
        ("systemd:domain=INET6:name=chat-tcp", "chat-tcp"),
        ("tcp:9000", None),
        ("9001", None),
    ],
)
def test_systemd_socket_name(description: str, name: str | None) -> None:
    """``systemd:...name=NAME`` yields NAME; other descriptions yield None."""
    assert systemd_socket_name(description) == name


def test_systemd_description_needs_a_name() -> None:
    """``systemd:`` by index is refused, since the order of fds is fragile."""
    with pytest.raises(InheritedSocketError, match="systemd:name=NAME"):
        systemd_socket_name("systemd:domain=INET:index=0")


def test_stream_description_adds_the_socket_family(pair: Pair) -> None:
    """``systemd:name=chat-tcp`` gets the ``domain=`` Twisted requires."""
    sockets = sockets_for(*pair, names=["chat-tcp", "chat-udp"])
    assert (
        sockets.stream_description("systemd:name=chat-tcp")
        == "systemd:name=chat-tcp:domain=INET"
    )
    assert (
        sockets.stream_description("systemd:domain=INET:name=chat-tcp")
        == "systemd:domain=INET:name=chat-tcp"
    )
    assert sockets.stream_description("tcp:9000") == "tcp:9000"


def test_stream_description_refuses_the_wrong_family(pair: Pair) -> None:
    """A ``domain=`` that does not match the inherited socket is refused."""
    sockets = sockets_for(*pair, names=["chat-tcp", "chat-udp"])
    with pytest.raises(InheritedSocketError, match="domain=INET"):
        sockets.stream_description("systemd:domain=INET6:name=chat-tcp")


class Receiver(DatagramProtocol):
    """Fires ``arrived`` with the first datagram."""

    def __init__(self) -> None:
        self.arrived: Deferred[bytes] = Deferred()

    def datagramReceived(self, datagram: bytes, _addr: object) -> None:
        if not self.arrived.called:
            self.arrived.callback(datagram)


@ensure_deferred
async def test_adopted_udp_socket_receives_datagrams(pair: Pair) -> None:
    """An inherited UDP socket adopted by name delivers datagrams to the protocol."""
    tcp, udp = pair
    sockets = sockets_for(tcp, udp, names=["chat-tcp", "chat-udp"])
    protocol = Receiver()
    port = adopt_udp(socket_reactor, "chat-udp", protocol, sockets=sockets)
    try:
        # Checked before any traffic: a blocking socket would hang the reactor.
        assert not os.get_blocking(udp.fileno())
        assert port.getHost() == IPv4Address("UDP", *udp.getsockname())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"/hello", udp.getsockname())
        assert await protocol.arrived == b"/hello"
    finally:
        await maybeDeferred(port.stopListening)
    # Twisted worked on a duplicate; the inherited descriptor is still open.
    assert udp.getsockname()[0] == "127.0.0.1"


def test_adopting_a_unix_datagram_socket_is_refused() -> None:
    """Chat over UDP needs an IP socket; an AF_UNIX one gets a clear error."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sockets = InheritedSockets.from_environment(
            systemd_environ(["chat-udp"]), start=sock.fileno()
        )
        with pytest.raises(InheritedSocketError, match="IPv4 or IPv6"):
            adopt_udp(socket_reactor, "chat-udp", DatagramProtocol(), sockets=sockets)


# --- SIGHUP ----------------------------------------------------------------


@ensure_deferred
async def test_sighup_runs_the_callback_in_the_reactor() -> None:
    """SIGHUP queues the callback on the reactor instead of killing the process."""
    reloaded: Deferred[None] = Deferred()
    previous = signal.getsignal(signal.SIGHUP)
    uninstall = install_sighup(thread_reactor, lambda: reloaded.callback(None))
    try:
        signal.raise_signal(signal.SIGHUP)
        # The handler only queued the callback; the reactor runs it.
        assert not reloaded.called
        await reloaded
    finally:
        uninstall()
    assert signal.getsignal(signal.SIGHUP) == previous


# --- deploy/ ---------------------------------------------------------------


def unit_settings(name: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file (all sections), values in order."""
    settings: dict[str, list[str]] = {}
    for line in (DEPLOY / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_service_unit_is_a_notifying_hardened_service() -> None:
    """The service unit has what the daemon relies on, and a locked-down sandbox."""
    unit = unit_settings("twisted-chat.service")
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    assert unit["ExecStart"] == [
        f"{TWISTD} --nodaemon --pidfile= chat --config /etc/twisted-chat/chat.toml"
    ]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert int(unit["WatchdogSec"][0]) > 0
    assert unit["StateDirectory"] == ["twisted-chat"]
    assert unit["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert "@system-service" in unit["SystemCallFilter"]


def test_socket_units_name_their_descriptors() -> None:
    """One socket per unit, since ``FileDescriptorName=`` names all of a unit's."""
    tcp = unit_settings("twisted-chat.socket")
    udp = unit_settings("twisted-chat-udp.socket")
    assert tcp["ListenStream"] == ["9000"]
    assert tcp["FileDescriptorName"] == ["chat-tcp"]
    assert "ListenDatagram" not in tcp
    assert udp["ListenDatagram"] == ["9001"]
    assert udp["FileDescriptorName"] == ["chat-udp"]
    assert "ListenStream" not in udp
    assert tcp["Service"] == udp["Service"] == ["twisted-chat.service"]
    irc = unit_settings("twisted-chat-irc.socket")
    assert irc["ListenStream"] == ["6667"]
    assert irc["FileDescriptorName"] == ["chat-irc"]
    assert irc["Service"] == ["twisted-chat.service"]
    web = unit_settings("twisted-chat-web.socket")
    assert web["ListenStream"] == ["8080"]
    assert web["FileDescriptorName"] == ["chat-web"]
    assert web["Service"] == ["twisted-chat.service"]


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The unit files, with ExecStart pointing at a stand-in twistd.

    ``systemd-analyze verify`` insists that ExecStart exists; ``--root`` would
    also need sysinit.target and friends inside the root, so only the path of
    the binary is swapped.
    """
    twistd = tmp_path / "twistd"
    twistd.write_text("#!/bin/sh\n")
    twistd.chmod(0o755)
    for name in UNITS:
        text = (DEPLOY / name).read_text()
        (tmp_path / name).write_text(text.replace(TWISTD, str(twistd)))
    return tmp_path


def systemd_analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run(
        [tool, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )


def test_units_pass_systemd_analyze_verify(units: Path) -> None:
    """systemd accepts the units without a warning about them."""
    result = systemd_analyze("verify", "--man=no", *UNITS, cwd=units)
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "twisted-chat" in line
    ]
    assert (result.returncode, ours) == (0, [])


def test_service_unit_exposure_is_low(units: Path) -> None:
    """``systemd-analyze security`` rates the sandbox at most 2.0 ("OK")."""
    result = systemd_analyze(
        "security",
        "--offline=true",
        "--threshold=20",
        "twisted-chat.service",
        cwd=units,
    )
    assert result.returncode == 0, result.stdout[-2000:]


DEFAULTS = {
    "default-room": "#lobby",
    "max-line": 1024,
    "motd": "",
    "udp-idle": 300,
    "flood-burst": 10,
    "flood-rate": 5,
    "max-sendq": 1048576,
    "max-per-ip": 32,
    "max-clients": 10000,
    "state-dir": "",
    "history-db": "history.sqlite3",
    "history-on-join": 20,
    "history-max": 10000,
    "history-days": 30,
    "cluster": "",
    "cluster-password": "",
    "accounts": "on",
    "registration": "open",
}


def test_example_config_lists_every_option_at_its_default() -> None:
    """deploy/chat.toml is valid TOML and sets every option to its default."""
    with (DEPLOY / "chat.toml").open("rb") as file:
        assert tomllib.load(file) == DEFAULTS


def test_example_config_leaves_the_listeners_to_socket_activation() -> None:
    """tcp and udp are commented out, at their defaults, so shipped sockets adopt."""
    text = (DEPLOY / "chat.toml").read_text("utf-8")
    lines = text.splitlines()
    assert '# tcp = ["9000"]' in lines
    assert '# udp = ["9001"]' in lines
    assert not [line for line in lines if line.startswith(("tcp ", "udp "))]
