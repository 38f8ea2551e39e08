"""The real ``twistd -n chat`` in a subprocess, as a user would run it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TIMEOUT, TWISTD, Daemon, LineClient, free_port

from twisted_chat import __version__


def test_twistd_chat_serves_clients_and_exits_on_sigterm(
    daemons: Callable[..., Daemon],
) -> None:
    """Two telnet-style clients chat through twistd; SIGTERM tells them and exits 0."""
    port = free_port()
    daemon = daemons("--tcp", f"tcp:{port}:interface=127.0.0.1", "--history-db", "off")
    daemon.wait_for_port(port)
    alice = LineClient(port)
    alice.expect(r"^\* Welcome to twisted-chat, guest\d+!")
    alice.expect(r"^\* You joined #lobby")
    alice.say("/nick alice")
    alice.expect(r"^\* You are now known as alice\.")
    bob = LineClient(port)
    bob.expect(r"^\* You joined #lobby; 1 other person here")
    alice.expect(r"^\* guest\d+ joined #lobby$")
    bob.say("/nick bob")
    alice.expect(r"^\* guest\d+ is now known as bob$")
    bob.say("hello from bob ✓")
    assert alice.expect(r"^\[#lobby\]") == "[#lobby] <bob> hello from bob ✓"
    alice.say("/msg bob psst")
    assert bob.expect(r"^\[PM\]") == "[PM] <alice> psst"

    # twistd re-raises the signal that stopped it, as a daemon should.
    assert daemon.stop(signal.SIGTERM) == -signal.SIGTERM
    assert "Server Shut Down." in daemon.log
    assert "* Server shutting down" in alice.read_until_closed()
    assert "* Server shutting down" in bob.read_until_closed()
    assert "Traceback" not in daemon.log


def test_bad_option_is_a_usage_error_before_binding(tmp_path: Path) -> None:
    """A wrong value stops twistd with a message naming the option."""
    result = subprocess.run(
        [TWISTD, "--nodaemon", "--pidfile=", "chat", "--max-line", "lots"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "--max-line: expected a whole number, not 'lots'" in output
    assert "Traceback" not in output


def run_twistd(
    tmp_path: Path, *args: str, nodaemon: bool = True
) -> subprocess.CompletedProcess[str]:
    """``twistd chat ARGS`` to its end, without inherited sockets or systemd."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LISTEN_", "NOTIFY_SOCKET"))
    }
    mode = ["--nodaemon"] if nodaemon else ["--logfile", str(tmp_path / "daemon.log")]
    return subprocess.run(
        [TWISTD, *mode, "--pidfile=", "chat", *args, "--history-db", "off"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=environ,
    )


def assert_one_line_failure(
    result: subprocess.CompletedProcess[str], line: str, log: str = ""
) -> None:
    """A non-zero exit, the line (after twistd's prefix), and no traceback."""
    output = result.stdout + result.stderr + log
    assert result.returncode != 0, output
    assert f"twistd chat: {line}" in output
    assert "Traceback" not in output
    assert len(output.splitlines()) <= 12, output


@pytest.mark.slow
def test_port_in_use_is_one_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    """A TCP port another process holds: one line saying what to do."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_twistd(tmp_path, "--tcp", f"tcp:{port}:interface=127.0.0.1")
    assert_one_line_failure(
        result,
        f"cannot listen on TCP port {port} on 127.0.0.1: address already in use; "
        "stop whatever uses it or choose another with --tcp",
    )


@pytest.mark.slow
def test_same_port_twice_is_one_line(tmp_path: Path) -> None:
    """--tcp PORT twice: the second listener fails, with the same one line."""
    listen = f"tcp:{free_port()}:interface=127.0.0.1"
    result = run_twistd(tmp_path, "--tcp", listen, "--tcp", listen)
    assert_one_line_failure(result, "cannot listen on TCP port")


@pytest.mark.slow
def test_udp_port_in_use_is_one_line(tmp_path: Path) -> None:
    """A UDP port another process holds: one line naming --udp."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        result = run_twistd(tmp_path, "--udp", f"127.0.0.1:{port}")
    assert_one_line_failure(
        result,
        f"cannot listen on UDP port {port} on 127.0.0.1: address already in use; "
        "stop whatever uses it or choose another with --udp",
    )


@pytest.mark.slow
def test_missing_systemd_udp_socket_is_one_line(tmp_path: Path) -> None:
    """--udp systemd:name=chat-udp without socket activation: one line, exit 1."""
    result = run_twistd(tmp_path, "--udp", "systemd:name=chat-udp")
    assert_one_line_failure(
        result, "--udp systemd:name=chat-udp: systemd passed no socket named"
    )


@pytest.mark.slow
def test_port_in_use_without_nodaemon_ends_the_parent_too(tmp_path: Path) -> None:
    """Daemonizing, the parent reports the failure and exits instead of waiting."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_twistd(
            tmp_path, "--tcp", f"tcp:{port}:interface=127.0.0.1", nodaemon=False
        )
    # The parent exits on the child's report; the child logs a moment later.
    log_path = tmp_path / "daemon.log"
    deadline = time.monotonic() + TIMEOUT
    while "twistd chat:" not in log_path.read_text("utf-8"):
        assert time.monotonic() < deadline, log_path.read_text("utf-8")
        time.sleep(0.05)  # polling a condition, bounded by the deadline
    log = log_path.read_text("utf-8")
    assert_one_line_failure(result, "cannot listen on TCP port", log)
    assert "An error has occurred" in result.stderr


def test_version_is_twisted_chats(tmp_path: Path) -> None:
    """``twistd chat --version`` names twisted-chat's version, then Twisted's."""
    result = subprocess.run(
        [TWISTD, "chat", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith(f"twisted-chat {__version__} (Twisted ")


def test_sigint_also_shuts_down_cleanly(daemons: Callable[..., Daemon]) -> None:
    """Ctrl-C (SIGINT) behaves like SIGTERM: clients are told, exit is prompt."""
    port = free_port()
    daemon = daemons("--tcp", f"tcp:{port}:interface=127.0.0.1", "--history-db", "off")
    daemon.wait_for_port(port)
    client = LineClient(port)
    client.expect(r"^\* You joined #lobby")
    started = time.monotonic()
    assert daemon.stop(signal.SIGINT) == -signal.SIGINT
    assert time.monotonic() - started < TIMEOUT
    assert "* Server shutting down" in client.read_until_closed()
