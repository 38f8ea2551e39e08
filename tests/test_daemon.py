"""The real ``twistd -n chat`` in a subprocess, as a user would run it."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from conftest import TIMEOUT, TWISTD, Daemon, LineClient, free_port


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


def test_port_in_use_makes_twistd_exit_nonzero(tmp_path: Path) -> None:
    """A taken port is a clear start-up failure, not a daemon without a listener."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [
                TWISTD,
                "--nodaemon",
                "--pidfile=",
                "chat",
                "--tcp",
                f"tcp:{port}:interface=127.0.0.1",
                "--history-db",
                "off",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    assert result.returncode != 0
    assert "Address already in use" in result.stdout + result.stderr


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
