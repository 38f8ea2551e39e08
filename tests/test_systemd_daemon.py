# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""
The systemd integration of the real ``twistd chat``, without systemd.

The test plays systemd's part: it binds the sockets a ``.socket`` unit would
and hands them over at descriptors 3 and 4 with ``LISTEN_*`` set, listens on
an ``AF_UNIX`` datagram socket as ``NOTIFY_SOCKET``, and sends SIGHUP as
``systemctl reload`` does.  Every wait is for a condition (a line, a
notification, a log entry), bounded by :data:`conftest.TIMEOUT`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TIMEOUT, TWISTD, Daemon, LineClient, free_port

CHALLENGE = re.compile(r"^\* Reply /hello ([a-z2-7]+) to chat over UDP\.$")

#: Put the descriptors given as ``argv[1:3]`` at 3 and 4, say they are ours
#: (``LISTEN_PID`` is this process, which ``execv`` keeps), and become twistd.
#: ``LISTEN_PID`` cannot be set by the test: it is only known after the fork.
LAUNCHER = """\
import fcntl, os, sys
passed = [int(fd) for fd in sys.argv[1:3]]
# Park both above 4 first, so placing one cannot clobber the other.
parked = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in passed]
for fd in passed:
    os.close(fd)
for target, fd in enumerate(parked, 3):
    os.dup2(fd, target)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[3], sys.argv[3:])
"""


class ActivatedDaemon(Daemon):
    """``twistd -n chat`` started the way systemd starts a socket-activated unit."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        sockets: dict[str, socket.socket],
        env: dict[str, str] | None = None,
    ) -> None:
        self.log_path = cwd / "twistd.log"
        self.log_file = self.log_path.open("wb")
        fds = [sock.fileno() for sock in sockets.values()]
        assert len(fds) == 2, "the launcher places exactly two descriptors"
        full_env = {
            **os.environ,
            **(env or {}),
            "LISTEN_FDS": str(len(fds)),
            "LISTEN_FDNAMES": ":".join(sockets),
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                LAUNCHER,
                *map(str, fds),
                TWISTD,
                "--nodaemon",
                "--pidfile=",
                "chat",
                *args,
            ],
            cwd=cwd,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            pass_fds=fds,
        )


class UdpClient:
    """An ``nc -u`` user: one socket, one server line per datagram."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(("127.0.0.1", port))
        self.lines: list[str] = []

    def say(self, text: str) -> None:
        self.sock.send(text.encode("utf-8") + b"\n")

    def expect(self, pattern: str | re.Pattern[str]) -> re.Match[str]:
        """Read datagrams until a line matches; fail after :data:`TIMEOUT`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no datagram matching {pattern!r}: {self.lines!r}"
                )
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            assert data.endswith(b"\r\n"), data
            line = data[:-2].decode("utf-8")
            self.lines.append(line)
            found = regex.search(line)
            if found:
                return found

    def hello(self) -> None:
        """Answer the challenge and wait for the welcome, as a person would."""
        self.say("hi")
        token = self.expect(CHALLENGE)[1]
        self.say(f"/hello {token}")
        self.expect(r"^\* Welcome to twisted-chat, guest\d+!")

    def close(self) -> None:
        self.sock.close()


class NotifyListener:
    """The receiving end of ``sd_notify``: each datagram as a dict of fields."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages: list[dict[str, str]] = []
        self._read = 0

    def expect(self, **fields: str) -> dict[str, str]:
        """
        The next unread message that has every given ``KEY=value``; messages
        skipped on the way are still in :attr:`messages`.
        """
        deadline = time.monotonic() + TIMEOUT
        while True:
            while self._read < len(self.messages):
                message = self.messages[self._read]
                self._read += 1
                if all(message.get(key) == value for key, value in fields.items()):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no notification {fields!r} in {self.messages!r}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            text = data.decode("utf-8")
            self.messages.append(dict(line.split("=", 1) for line in text.split("\n")))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def activated(tmp_path: Path) -> Iterator[Callable[..., ActivatedDaemon]]:
    """Start socket-activated daemons in ``tmp_path``; kill any left running."""
    started: list[ActivatedDaemon] = []

    def start(*args: str, **kwargs: Any) -> ActivatedDaemon:
        daemon = ActivatedDaemon(list(args), tmp_path, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    """A ``NOTIFY_SOCKET`` to listen on; a short path, as ``sun_path`` is 108 bytes."""
    directory = tmp_path
    if len(str(tmp_path / "notify")) > 100:
        directory = Path(tempfile.mkdtemp(prefix="chat-notify-"))
    listener = NotifyListener(str(directory / "notify"))
    yield listener
    listener.close()
    Path(listener.path).unlink(missing_ok=True)
    if directory != tmp_path:
        directory.rmdir()


def write_config(path: Path, **keys: object) -> Path:
    """A TOML config file; strings and lists of strings are enough here."""
    lines = []
    for key, value in keys.items():
        if isinstance(value, list):
            items = ", ".join(f'"{item}"' for item in value)
            lines.append(f"{key} = [{items}]")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value}")
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_socket_activated_daemon_serves_tcp_and_udp(
    activated: Callable[..., ActivatedDaemon], tmp_path: Path
) -> None:
    """Sockets passed as chat-tcp and chat-udp carry a TCP and a UDP user's chat."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagram.bind(("127.0.0.1", 0))
    tcp_port = listening.getsockname()[1]
    udp_port = datagram.getsockname()[1]
    config = write_config(
        tmp_path / "chat.toml",
        tcp=["systemd:name=chat-tcp"],
        udp=["systemd:name=chat-udp"],
        **{"history-db": "off"},
    )
    with listening, datagram:
        daemon = activated(
            "--config",
            str(config),
            sockets={"chat-tcp": listening, "chat-udp": datagram},
        )
    # The test's copies are closed: from here on only the daemon holds the
    # sockets.  Connecting needs no wait for the daemon, as with systemd: the
    # kernel queues the connection until the daemon accepts it.
    alice = LineClient(tcp_port)
    carol = UdpClient(udp_port)
    try:
        alice.expect(r"^\* Welcome to twisted-chat, guest\d+!")
        alice.say("/nick alice")
        alice.expect(r"^\* You are now known as alice\.")
        carol.hello()
        carol.expect(r"^\* You joined #lobby; 1 other person here")
        carol.say("/nick carol")
        carol.expect(r"^\* You are now known as carol\.")
        alice.expect(r"^\* guest\d+ is now known as carol$")

        carol.say("hello over udp")
        assert alice.expect(r"^\[#lobby\]") == "[#lobby] <carol> hello over udp"
        alice.say("hello over tcp")
        assert carol.expect(r"^\[#lobby\]").string == "[#lobby] <alice> hello over tcp"

        assert daemon.stop(signal.SIGTERM) == -signal.SIGTERM
        assert "* Server shutting down" in alice.read_until_closed()
        carol.expect(r"^\* Server shutting down$")
    finally:
        alice.close()
        carol.close()
    assert "Traceback" not in daemon.log


@pytest.mark.slow
def test_shipped_config_adopts_the_shipped_sockets(
    activated: Callable[..., ActivatedDaemon],
) -> None:
    """deploy/chat.toml as shipped, chat-tcp and chat-udp passed: both adopted."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagram.bind(("127.0.0.1", 0))
    tcp_port = listening.getsockname()[1]
    udp_port = datagram.getsockname()[1]
    shipped = Path(__file__).parent.parent / "deploy" / "chat.toml"
    with listening, datagram:
        daemon = activated(
            "--config",
            str(shipped),
            "--history-db",
            "off",
            sockets={"chat-tcp": listening, "chat-udp": datagram},
        )
    alice = LineClient(tcp_port)
    carol = UdpClient(udp_port)
    try:
        alice.expect(r"^\* Welcome to twisted-chat, guest\d+!")
        carol.hello()
        carol.say("/ping")
        carol.expect(r"^\* pong$")
        daemon.wait_for_log(r"twisted-chat ready")
        assert "adopting the socket systemd passed as chat-tcp" in daemon.log
        assert "adopting the socket systemd passed as chat-udp" in daemon.log
        # Nothing bound 9000/9001 itself (which fails under the real units).
        assert ":9000" not in daemon.log
        assert daemon.stop(signal.SIGTERM) == -signal.SIGTERM
    finally:
        alice.close()
        carol.close()
    assert "Traceback" not in daemon.log


def test_daemon_notifies_ready_status_watchdog_and_stopping(
    daemons: Callable[..., Daemon], notify: NotifyListener
) -> None:
    """READY=1 once the port accepts, then STATUS=, WATCHDOG=1 and STOPPING=1."""
    port = free_port()
    daemon = daemons(
        "--tcp",
        f"tcp:{port}:interface=127.0.0.1",
        "--history-db",
        "off",
        env={
            "NOTIFY_SOCKET": notify.path,
            # WATCHDOG=1 every half of it: about once a second.
            "WATCHDOG_USEC": "2000000",
            # Empty is unset for sd_watchdog_enabled(3): the watchdog is ours.
            "WATCHDOG_PID": "",
        },
    )
    ready = notify.expect(READY="1")
    # READY=1 promises a bound port; nothing may be left to wait for.
    socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    assert ready["STATUS"] == "0 clients in 0 rooms"

    alice = LineClient(port)
    try:
        alice.expect(r"^\* You joined #lobby")
        notify.expect(STATUS="1 client in 1 room")
        notify.expect(WATCHDOG="1")
        assert daemon.stop(signal.SIGTERM) == -signal.SIGTERM
    finally:
        alice.close()
    notify.expect(STOPPING="1")
    assert "Traceback" not in daemon.log


def test_sighup_reloads_the_config_and_survives_a_broken_one(
    daemons: Callable[..., Daemon], notify: NotifyListener, tmp_path: Path
) -> None:
    """SIGHUP applies a new MOTD and default room live and outlives a broken file."""
    port = free_port()
    motd = tmp_path / "motd.txt"
    motd.write_text("First MOTD\n", "utf-8")
    config = tmp_path / "chat.toml"
    settings: dict[str, object] = {
        "tcp": [f"tcp:{port}:interface=127.0.0.1"],
        "history-db": "off",
        "motd": str(motd),
        "flood-rate": 5,
    }
    write_config(config, **settings)
    daemon = daemons("--config", str(config), env={"NOTIFY_SOCKET": notify.path})
    notify.expect(READY="1")
    # The SIGHUP handler is installed after READY=1 (ChatService.startService);
    # this log line comes after it.
    daemon.wait_for_log(r"twisted-chat ready")

    def reload() -> None:
        daemon.proc.send_signal(signal.SIGHUP)
        notify.expect(RELOADING="1")
        notify.expect(READY="1")

    def newcomer_sees(*patterns: str) -> None:
        client = LineClient(port)
        try:
            for pattern in patterns:
                client.expect(pattern)
        finally:
            client.close()

    alice = LineClient(port)
    try:
        alice.expect(r"^\* First MOTD$")
        alice.expect(r"^\* You joined #lobby")

        # The same file, new words; and a setting that can change live.
        motd.write_text("Edited MOTD\n", "utf-8")
        settings["flood-rate"] = 2
        write_config(config, **settings)
        reload()
        daemon.wait_for_log(r"reloaded settings from")
        newcomer_sees(r"^\* Edited MOTD$")

        # Another file, another default room, and a port that needs a restart.
        second = tmp_path / "motd-2.txt"
        second.write_text("Second MOTD\n", "utf-8")
        settings["motd"] = str(second)
        settings["default-room"] = "#ops"
        settings["tcp"] = [f"tcp:{free_port()}:interface=127.0.0.1"]
        write_config(config, **settings)
        reload()
        daemon.wait_for_log(r"reload: tcp changed; it takes effect after a restart")
        newcomer_sees(r"^\* Second MOTD$", r"^\* You joined #ops")

        config.write_text('motd = "unterminated\n', "utf-8")
        reload()
        daemon.wait_for_log(
            r"reload failed, keeping the old settings: .*not valid TOML"
        )
        assert daemon.proc.poll() is None
        newcomer_sees(r"^\* Second MOTD$", r"^\* You joined #ops")

        alice.say("/ping")
        alice.expect(r"^\* pong$")
    finally:
        alice.close()
    assert daemon.log.count("reloaded settings from") == 2
    assert daemon.stop(signal.SIGTERM) == -signal.SIGTERM
    assert "Traceback" not in daemon.log


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "max-lines = 100\n",
            "unknown key 'max-lines'",
        ),
        (
            'max-line = "lots"\n',
            "key 'max-line': expected a whole number, not 'lots'",
        ),
        (
            'tcp = "systemd:name=chat-tcp"\n',
            "systemd passed no socket named 'chat-tcp'",
        ),
    ],
    ids=["unknown-key", "wrong-type", "socket-not-passed"],
)
def test_bad_config_file_stops_twistd_with_a_message(
    tmp_path: Path, content: str, message: str
) -> None:
    """A config mistake at start is a non-zero exit naming the key, not a traceback."""
    config = tmp_path / "chat.toml"
    config.write_text(content + 'history-db = "off"\n', "utf-8")
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LISTEN_", "NOTIFY_SOCKET"))
    }
    result = subprocess.run(
        [TWISTD, "--nodaemon", "--pidfile=", "chat", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=environ,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output
    assert "Traceback" not in output
