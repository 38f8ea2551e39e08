"""
Real terminal clients for the end-to-end tests: a program in its own tmux
server, and a logging TCP proxy to see what it really sends.

Each :class:`Terminal` is a tmux server on a private socket (``tmux -L
NAME -f /dev/null``: no user configuration, no other session touched)
with one fixed-size window, so that what a client draws is what a person
would see and is the same on every run.  Screens are read with
``capture-pane`` and waited for with a deadline: a screen is polled, never
slept on blindly.  :class:`WireLog` sits between a client and the daemon
and keeps every line both ways, so that a failing check can say what the
client sent and what the server answered (the evidence a bug report needs).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["TMUX", "Terminal", "WireLog"]

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
#: How often a screen is read while waiting for it.
POLL = 0.05


def text(line: bytes) -> str:
    """A line off the wire as text, without its CR."""
    return line.rstrip(b"\r").decode("utf-8", "replace")


class Terminal:
    """A program in a private tmux server with a ``width`` x ``height`` window."""

    def __init__(self, home: Path, width: int = 200, height: int = 50) -> None:
        self.socket = f"tc-{secrets.token_hex(6)}"
        self.home = home
        self.width = width
        self.height = height
        self.env = {
            "HOME": str(home),
            "PATH": "/usr/bin:/bin",
            "TERM": "screen-256color",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TZ": "UTC",
        }
        self.started = False
        self.path: Path | None = None

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            [TMUX, "-L", self.socket, "-f", "/dev/null", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"tmux {args!r}: {done.stderr.strip()}")
        return done.stdout

    def start(self, command: Sequence[str]) -> None:
        """Run ``command`` (no shell) as the window's program."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.started = True  # from here on, close() kills the tmux server
        # One tmux command: a program that dies at once still leaves its last
        # screen (remain-on-exit) for the failure message.
        self.tmux(
            "start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
            "new-session", "-d", "-s", "t", "-x", str(self.width),
            "-y", str(self.height), "-c", str(self.home), "--", *command,
        )  # fmt: skip
        self.path = Path(self.tmux("display-message", "-p", "#{socket_path}").strip())

    def type(self, text: str) -> None:
        """Type ``text`` (literally) and press Enter."""
        self.tmux("send-keys", "-t", "t", "-l", text)
        self.tmux("send-keys", "-t", "t", "Enter")

    def screen(self, history: int = 300) -> str:
        """The window as shown, with ``history`` lines of scrollback above it."""
        return self.tmux("capture-pane", "-p", "-J", "-t", "t", "-S", f"-{history}")

    def wait_for(
        self, pattern: str, timeout: float = 10.0, count: int = 1
    ) -> re.Match[str]:
        """
        The ``count``-th match of ``pattern`` (multiline) on the screen, in
        time (``count`` 2: the same event again).
        """
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            shot = self.screen()
            found = list(regex.finditer(shot))
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} on the screen")
            time.sleep(POLL)  # polling the screen, bounded by the deadline

    def close(self) -> None:
        if self.started:
            self.started = False
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self.tmux("kill-server")
        if self.path is not None:  # tmux leaves its socket file behind
            self.path.unlink(missing_ok=True)
            self.path = None


class WireLog:
    """
    A TCP proxy on 127.0.0.1 in front of ``port`` that keeps every line:
    ``>> LINE`` what the client sent, ``<< LINE`` what the server answered.
    """

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = [self.listener]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets += [client, server]
            for source, sink, mark in ((client, server, ">>"), (server, client, "<<")):
                threading.Thread(
                    target=self._pump, args=(source, sink, mark), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, mark: str) -> None:
        buffer = b""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            buffer += data
            *done, buffer = buffer.split(b"\n")
            with self.lock:
                self.lines.extend(f"{mark} {text(line)}" for line in done)
            with contextlib.suppress(OSError):
                sink.sendall(data)

    def sent(self, pattern: str, mark: str = ">>") -> list[str]:
        """The lines the client sent (``mark`` "<<": received) matching ``pattern``."""
        regex = re.compile(pattern)
        with self.lock:
            return [
                line[3:]
                for line in self.lines
                if line[:2] == mark and regex.search(line[3:])
            ]

    def wait_sent(self, pattern: str, timeout: float = 10.0, mark: str = ">>") -> str:
        """The first line the client sent (or received) matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while not (found := self.sent(pattern, mark)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {mark} {pattern!r}:\n{self.tail()}")
            time.sleep(POLL)  # polling the log, bounded by the deadline
        return found[0]

    def answer(self, sent: str, pattern: str, timeout: float = 10.0) -> str:
        """The first received line matching ``pattern`` after the client's
        first line matching ``sent``: the server's answer to it."""
        first, answer = re.compile(sent), re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                after = None
                for index, line in enumerate(self.lines):
                    if after is None and line[:2] == ">>" and first.search(line[3:]):
                        after = index
                    elif (
                        after is not None
                        and line[:2] == "<<"
                        and answer.search(line[3:])
                    ):
                        return line[3:]
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer {pattern!r} to {sent!r}")
            time.sleep(POLL)  # polling the log, bounded by the deadline

    def tail(self, count: int = 40) -> str:
        with self.lock:
            return "\n".join(self.lines[-count:])

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
