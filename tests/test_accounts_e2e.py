"""
Accounts end to end (issue 13), judged as an outsider would: from PROTOCOL.md.

Every test starts ``twistd -n chat`` as a subprocess on free 127.0.0.1 ports,
in a fresh state directory, with the real argon2id hasher, and talks to it
over real TCP and UDP sockets (and, for the password prompt, through a real
``/usr/bin/telnet`` in a pseudo-terminal).  Clients bind to their own
loopback source addresses (Linux routes all of 127.0.0.0/8 to ``lo``), so
per-address rules (throttling, bans) can hit one client and spare the next.

Each scenario ends with :meth:`Chat.check_secrets`: the daemon is stopped and
no password the test used may appear in any client's output (the typist's
own included: the server never echoes), in the daemon's log, or in any file
of the state directory (the history database, its WAL, the accounts store).

The helpers here (:class:`Chat`, :class:`Client`, :class:`UdpClient`) are
shared with ``test_operators_e2e.py``.  Nothing sleeps for luck: a client
proves the server has handled its earlier lines with ``/ping`` (answered in
order), and a wait for a line has a deadline.  The only timed waits are the
short quiet periods that check nothing *else* arrives (after a ban).
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import TIMEOUT, TWISTD, free_port

pytestmark = pytest.mark.slow

#: How long a "nothing more arrives" check listens (a negative needs a window).
QUIET = 0.5
CHALLENGE = re.compile(r"^\* Reply /hello (\S+) to chat over UDP\.$")
#: Room events a command's reply may be interleaved with.
ROOM_EVENT = re.compile(
    r"^(\[|\* \S+ (joined|left) #|\* \S+ quit \(|\* \S+ is now known as )"
)
IAC_WILL_ECHO = b"\xff\xfb\x01"
IAC_WONT_ECHO = b"\xff\xfc\x01"


def password() -> str:
    """A fresh password, easy to grep for and long enough to be accepted."""
    return "Pw" + secrets.token_hex(8)


# -- clients ------------------------------------------------------------------


class Client:
    """A blocking TCP line client, bound to its own loopback source address."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.source = source
        self.sock = socket.socket()
        self.sock.bind((source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.raw = b""  # every byte received, for the leak checks
        self.buffer = b""
        self.lines: list[str] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def say(self, text: str) -> None:
        self.send(text.encode("utf-8") + b"\n")

    def _fill(self, deadline: float) -> bool:
        """Read once; False when the server closed the connection."""
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.raw += data
        self.buffer += data
        return True

    def _take(self) -> str | None:
        if b"\r\n" not in self.buffer:
            return None
        raw, self.buffer = self.buffer.split(b"\r\n", 1)
        # Telnet commands (IAC WILL/WONT ECHO) are not part of the text, and a
        # bare CR returns to the start of the line: what a terminal shows.
        line = re.sub(rb"\xff[\xfb-\xfe].", b"", raw).decode("utf-8", "replace")
        line = line.rsplit("\r", 1)[-1]
        self.lines.append(line)
        return line

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> str:
        """The next line matching ``pattern``; the lines before it are kept."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            line = self._take()
            while line is not None:
                if regex.search(line):
                    return line
                line = self._take()
            if time.monotonic() > deadline:
                raise AssertionError(f"no line matching {pattern!r} in {self.lines!r}")
            try:
                alive = self._fill(deadline)
            except TimeoutError:
                continue
            if not alive:
                raise AssertionError(
                    f"closed before {pattern!r}; got {self.lines!r} {self.buffer!r}"
                )

    def settle(self) -> list[str]:
        """The lines that arrive before the answer to a ``/ping`` sent now."""
        mark = len(self.lines)
        token = secrets.token_hex(3)
        self.say(f"/ping {token}")
        self.expect(r"^\* pong\b")
        return self.lines[mark:-1]

    def reply(self, command: str) -> str:
        """Send ``command``; its first ``*`` or ``!`` line that is no room event."""
        self.say(command)
        return self.next_reply()

    def next_reply(self) -> str:
        """The next ``*`` or ``!`` line that is no room event (nor a pong)."""
        while True:
            line = self.expect(r"^[*!] ")
            if not ROOM_EVENT.search(line) and not line.startswith("* pong"):
                return line

    def replies(self, command: str) -> list[str]:
        """Every line of a synchronous command's answer (not for /login & co.)."""
        self.say(command)
        return self.settle()

    def nick(self, name: str) -> None:
        self.say(f"/nick {name}")
        self.expect(rf"^\* You are now known as {re.escape(name)}\.$")

    def read_until_closed(self, timeout: float = TIMEOUT) -> bytes:
        """Every byte from now until the server closes the connection."""
        mark = len(self.raw)
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not closed; got {self.raw[mark:]!r} after {self.lines!r}"
                )
            with contextlib.suppress(TimeoutError):
                self._fill(deadline)
        return self.raw[mark:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class UdpClient:
    """A UDP chat client from its own loopback address: one datagram a line."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.port = port
        self.source = source
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.datagrams: list[bytes] = []
        self.token = ""

    @property
    def lines(self) -> list[str]:
        return [
            d.decode("utf-8", "replace").removesuffix("\r\n") for d in self.datagrams
        ]

    def say(self, text: str) -> None:
        self.sock.sendto(text.encode("utf-8"), ("127.0.0.1", self.port))

    def receive(self, timeout: float = TIMEOUT) -> str | None:
        """The next datagram's line, or None after ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        self.datagrams.append(data)
        return data.decode("utf-8", "replace").removesuffix("\r\n")

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            line = self.receive(max(0.01, deadline - time.monotonic()))
            if line is not None and regex.search(line):
                return line
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no datagram matching {pattern!r}: {self.lines!r}"
                )

    def challenge(self) -> str:
        """Send a first datagram until the challenge comes; return the token."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            self.say("hi")
            line = self.receive(1.0)  # the listener may still be starting
            if line is not None:
                found = CHALLENGE.match(line)
                assert found, f"first datagram answered with {line!r}"
                self.token = found.group(1)
                return self.token
        raise AssertionError("no UDP challenge")

    def join(self) -> None:
        """The handshake: challenge, ``/hello TOKEN``, the welcome."""
        self.challenge()
        self.say(f"/hello {self.token}")
        self.expect(r"^\* You joined #lobby|^\* Welcome")

    def settle(self) -> list[str]:
        mark = len(self.datagrams)
        token = secrets.token_hex(3)
        self.say(f"/ping {token}")
        self.expect(r"^\* pong\b")
        return self.lines[mark:-1]

    def quiet(self, seconds: float = QUIET) -> list[str]:
        """Whatever arrives within ``seconds`` (a check that nothing does)."""
        got: list[str] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            line = self.receive(left)
            if line is not None:
                got.append(line)
        return got

    def close(self) -> None:
        self.sock.close()


# -- the daemon -----------------------------------------------------------------


def operator_hash(secret: str) -> str:
    """``python -m twisted_chat.passwd`` with the password on standard input."""
    done = subprocess.run(
        [sys.executable, "-m", "twisted_chat.passwd"],
        input=secret + "\n",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert secret not in done.stdout + done.stderr
    found = re.search(r"\$argon2id\$\S+", done.stdout)
    assert found, done.stdout
    return found.group(0)


class Chat:
    """
    ``twistd -n chat`` on free 127.0.0.1 TCP and UDP ports, restartable on the
    same state directory, and the clients and passwords of a scenario.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.config: Path | None = None
        self.secrets: list[str] = []
        self.clients: list[Client] = []
        self.udp_clients: list[UdpClient] = []
        self.logs: list[Path] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.udp_port = 0
        self.args: tuple[str, ...] = ()

    def secret(self) -> str:
        """A fresh password that must never leak."""
        value = password()
        self.secrets.append(value)
        return value

    def operators(self, **names: str) -> None:
        """Write a config file with an ``[operators]`` table for ``names``."""
        self.secrets.extend(names.values())
        self.config = self.tmp / "chat.toml"
        table = "".join(
            f'{name} = "{operator_hash(pw)}"\n' for name, pw in names.items()
        )
        self.config.write_text(f"[operators]\n{table}", "utf-8")

    def start(self, *args: str) -> Chat:
        """Start (or restart) the daemon with ``args``; wait until it accepts."""
        assert self.proc is None
        self.args = args or self.args
        self.port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        log = self.tmp / f"twistd-{len(self.logs)}.log"
        self.logs.append(log)
        config = ("--config", str(self.config)) if self.config else ()
        command = [
            TWISTD,
            "--nodaemon",
            "--pidfile=",
            "chat",
            "--tcp",
            f"tcp:{self.port}:interface=127.0.0.1",
            "--udp",
            f"127.0.0.1:{self.udp_port}",
            "--state-dir",
            str(self.state),
            *config,
            *self.args,
        ]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, cwd=self.tmp, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"twistd exited early:\n{log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"port never opened:\n{log.read_text()}"
                    ) from None
                time.sleep(0.05)  # polling a condition, bounded by the deadline
            else:
                return self

    def stop(self) -> None:
        """SIGTERM, and wait for the exit (a clean stop commits everything)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        for client in self.clients:
            client.close()

    def reload(self) -> None:
        """SIGHUP, and wait until the daemon logs that it re-read its settings."""
        assert self.proc is not None
        before = self.log.count("reloaded settings")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while self.log.count("reloaded settings") == before:
            assert time.monotonic() < deadline, f"no reload logged:\n{self.log}"
            time.sleep(0.05)  # polling a condition, bounded by the deadline

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @property
    def log(self) -> str:
        return "".join(log.read_text("utf-8", "replace") for log in self.logs)

    def connect(self, nick: str | None = None, source: str = "127.0.0.1") -> Client:
        """A TCP client past the welcome (and renamed to ``nick``)."""
        client = Client(self.port, source)
        self.clients.append(client)
        client.expect(r"^\* Welcome")
        client.settle()  # the default room and any history are in
        if nick is not None:
            client.nick(nick)
        return client

    def raw(self, source: str = "127.0.0.1") -> Client:
        """A TCP client that has read nothing yet."""
        client = Client(self.port, source)
        self.clients.append(client)
        return client

    def udp(self, nick: str | None = None, source: str = "127.0.0.1") -> UdpClient:
        """A UDP client past the handshake (and renamed to ``nick``)."""
        client = UdpClient(self.udp_port, source)
        self.udp_clients.append(client)
        client.join()
        client.settle()
        if nick is not None:
            client.say(f"/nick {nick}")
            client.expect(rf"^\* You are now known as {re.escape(nick)}\.$")
        return client

    def register(self, nick: str, source: str = "127.0.0.1") -> tuple[Client, str]:
        """A client that made ``nick`` an account; it stays connected."""
        secret = self.secret()
        client = self.connect(nick, source)
        line = client.reply(f"/register {secret}")
        assert line.startswith("* "), line
        return client, secret

    def check_secrets(self) -> None:
        """Stop the daemon; no password may be in any output, log or state file."""
        self.stop()
        seen = {
            "the daemon's log": self.log.encode("utf-8"),
            **{f"TCP client {c.source}": c.raw for c in self.clients},
            **{
                f"UDP client {c.source}": b"".join(c.datagrams)
                for c in self.udp_clients
            },
        }
        for path in sorted(self.state.rglob("*")):
            if path.is_file():
                seen[str(path)] = path.read_bytes()
        assert seen, "nothing to check"
        for secret in self.secrets:
            for where, data in seen.items():
                assert secret.encode() not in data, f"a password is in {where}"


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Chat]:
    """A :class:`Chat` (not started yet); killed at the end if still running."""
    world = Chat(tmp_path)
    yield world
    for client in world.clients:
        client.close()
    for udp in world.udp_clients:
        udp.close()
    world.kill()


def whois(client: Client, nick: str) -> str:
    """The ``/whois`` answer as one text."""
    lines = client.replies(f"/whois {nick}")
    assert lines, "no answer to /whois"
    assert not any(line.startswith("! ") for line in lines), lines
    return "\n".join(lines)


# -- register, log in, nickname protection ----------------------------------------


def test_register_on_one_connection_and_log_in_on_another(chat: Chat) -> None:
    """An account made on one connection logs in on another, both ways of /login."""
    chat.start()
    bystander = chat.connect("bystander")
    alice, secret = chat.register("alice")
    alice.say("/quit")
    alice.read_until_closed()
    bystander.expect(r"^\* alice quit")

    for command in ("/login", "/identify"):
        other = chat.connect()
        line = other.reply(f"{command} alice {secret}")
        assert line.startswith("* "), line
        other.say("said as alice")
        assert bystander.expect(r"^\[#lobby\]") == "[#lobby] <alice> said as alice"
        other.say("/quit")
        other.read_until_closed()
        bystander.expect(r"^\* alice quit")

    # The prompt: /login NAME, then the password alone on the next line.
    prompted = chat.connect()
    line = prompted.reply("/login alice")
    assert re.match(r"^\* Password: ?$", line), line
    prompted.say(secret)
    line = prompted.next_reply()
    assert line.startswith("* "), line
    prompted.say("said after the prompt")
    assert bystander.expect(r"^\[#lobby\]") == "[#lobby] <alice> said after the prompt"
    bystander.settle()
    assert not any(secret in line for line in bystander.lines)
    chat.check_secrets()


def test_login_over_udp(chat: Chat) -> None:
    """An account made over TCP logs in over UDP (accounts work on every transport)."""
    chat.start()
    alice, secret = chat.register("alice")
    alice.say("/quit")
    alice.read_until_closed()
    bystander = chat.connect("bystander")
    udp = chat.udp()
    udp.say(f"/login alice {secret}")
    line = udp.expect(r"^[*!] (?!\S+ (joined|left) #)")
    assert line.startswith("* "), line
    udp.say("over udp as alice")
    assert bystander.expect(r"^\[#lobby\]") == "[#lobby] <alice> over udp as alice"
    chat.check_secrets()


def test_udp_password_prompt(chat: Chat) -> None:
    """Over UDP the prompt is a plain ``* Password:`` datagram (no telnet bytes)."""
    chat.start()
    alice, secret = chat.register("alice")
    alice.say("/quit")
    alice.read_until_closed()
    udp = chat.udp()
    udp.say("/login alice")
    assert re.fullmatch(r"\* Password: ?", udp.expect(r"Password")), udp.datagrams
    assert udp.datagrams[-1].endswith(b"\r\n")
    assert b"\xff" not in udp.datagrams[-1]
    udp.say(secret)
    line = udp.expect(r"^[*!] (?!\S+ (joined|left) #)")
    assert line.startswith("* "), line
    assert not any(b"\xff" in datagram for datagram in udp.datagrams)
    udp.say("/nick alice2")
    udp.expect(r"^\* You are now known as alice2\.$")
    chat.check_secrets()


def test_nickname_protection(chat: Chat) -> None:
    """Someone else's account name is refused by /nick, in any case or width."""
    chat.start()
    alice, secret = chat.register("alice")
    mallory = chat.connect("mallory")
    for name in ("alice", "ALICE", "Ａｌｉｃｅ"):
        line = mallory.reply(f"/nick {name}")
        assert line.startswith("! nick-registered: "), line
        assert "/login" in line, line  # it says how to log in
    alice.say("/quit")
    alice.read_until_closed()
    # Free, but still its owner's.
    line = mallory.reply("/nick alice")
    assert line.startswith("! nick-registered: "), line
    owner = chat.connect()
    assert owner.reply(f"/login alice {secret}").startswith("* ")
    assert owner.reply("/logout").startswith("* ")  # it was logged in
    udp = chat.udp()
    udp.say("/nick Alice")
    assert udp.expect(r"^! ").startswith("! nick-registered: ")
    # A guest nick cannot be registered.
    guest = chat.connect()
    line = guest.reply(f"/register {chat.secret()}")
    assert line.startswith("! "), line
    chat.check_secrets()


def test_wrong_name_and_wrong_password_look_the_same(chat: Chat) -> None:
    """``! login-failed`` reads the same for an unknown name and a wrong password."""
    chat.start()
    _, _secret = chat.register("alice")
    other = chat.connect()
    wrong_password = other.reply(f"/login alice {chat.secret()}")
    wrong_name = other.reply(f"/login zoltan {chat.secret()}")
    assert wrong_password.startswith("! login-failed: "), wrong_password
    assert wrong_name.startswith("! login-failed: "), wrong_name
    assert wrong_password.replace("alice", "NAME") == wrong_name.replace(
        "zoltan", "NAME"
    )
    # The prompt fails the same way.
    other.reply("/login zoltan")
    other.say(chat.secret())
    prompted = other.expect(r"^! ")
    assert prompted.replace("zoltan", "NAME") == wrong_name.replace("zoltan", "NAME")
    chat.check_secrets()


def test_throttled_after_five_failures_per_account(chat: Chat) -> None:
    """5 failures for one account, from 5 addresses: the 6th try is refused."""
    chat.start()
    _, secret = chat.register("alice")
    for n in range(5):
        client = chat.connect(source=f"127.0.10.{n + 1}")
        line = client.reply(f"/login alice {chat.secret()}")
        assert line.startswith("! login-failed: "), (n, line)
    late = chat.connect(source="127.0.10.6")
    line = late.reply(f"/login alice {secret}")  # the right one, too late
    assert line.startswith("! login-throttled: "), line
    line = late.reply("/logout")
    assert line.startswith("! not-logged-in: "), line
    chat.check_secrets()


def test_throttled_after_five_failures_per_address(chat: Chat) -> None:
    """5 failures from one address, over several connections and names: refused."""
    chat.start()
    _, secret = chat.register("alice", source="127.0.11.9")
    for n in range(5):
        client = chat.connect(source="127.0.11.1")
        line = client.reply(f"/login nobody{n} {chat.secret()}")
        assert line.startswith("! login-failed: "), (n, line)
        client.close()
    client = chat.connect(source="127.0.11.1")
    line = client.reply(f"/login alice {secret}")
    assert line.startswith("! login-throttled: "), line
    # The account itself is not throttled: another address logs in.
    elsewhere = chat.connect(source="127.0.11.2")
    line = elsewhere.reply(f"/login alice {secret}")
    assert line.startswith("* "), line
    chat.check_secrets()


def test_logout_password_and_unregister(chat: Chat) -> None:
    """/logout leaves a guest; /password changes it; /unregister frees the name."""
    chat.start()
    bystander = chat.connect("bystander")
    alice, first = chat.register("alice", source="127.0.30.1")
    line = alice.reply("/logout")
    assert line.startswith("* "), line
    bystander.expect(r"^\* alice is now known as guest\d+$")
    line = alice.reply("/logout")
    assert line.startswith("! not-logged-in: "), line
    line = alice.reply("/nick alice")  # protected again, from its owner too
    assert line.startswith("! nick-registered: "), line

    line = alice.reply(f"/login alice {first}")
    assert line.startswith("* "), line
    second = chat.secret()
    line = alice.reply(f"/password {chat.secret()} {second}")  # wrong OLD
    assert line.startswith("! "), line
    line = alice.reply(f"/password {first} {second}")
    assert line.startswith("* "), line
    alice.reply("/logout")
    line = alice.reply(f"/login alice {first}")
    assert line.startswith("! login-failed: "), line
    line = alice.reply(f"/login alice {second}")
    assert line.startswith("* "), line
    line = alice.reply(f"/unregister {first}")  # the old one no longer counts
    assert line.startswith("! "), line
    line = alice.reply(f"/unregister {second}")
    assert line.startswith("* "), line

    other = chat.connect(source="127.0.30.2")
    line = other.reply(f"/login alice {second}")
    assert line.startswith("! login-failed: "), line
    alice.say("/quit")
    alice.read_until_closed()
    other.nick("alice")  # nobody's account any more
    chat.check_secrets()


def test_weak_password_and_already_registered(chat: Chat) -> None:
    """A short password is refused; a second /register of an account too."""
    chat.start()
    client = chat.connect("alice")
    short = "Ab3" + secrets.token_hex(2)  # 7 characters
    chat.secrets.append(short)
    line = client.reply(f"/register {short}")
    assert line.startswith("! weak-password: "), line
    secret = chat.secret()
    assert client.reply(f"/register {secret}").startswith("* ")
    line = client.reply(f"/register {chat.secret()}")
    assert line.startswith("! already-registered: "), line
    chat.check_secrets()


def test_mistyped_account_commands_never_show_the_password(chat: Chat) -> None:
    """Usage errors quote the usage, never the words typed; UDP is no exception."""
    chat.start()
    bystander = chat.connect("bystander")
    client = chat.connect("alice")
    for template in (
        "/login alice {0} {0}",
        "/identify alice {0} extra",
        "/register {0} {0} {0}",
        "/password {0}",
        "/password {0} {0} {0}",
        "/unregister {0} {0}",
        "/oper root {0} {0}",
        "/LOGIN alice {0} x",
    ):
        line = client.reply(template.format(chat.secret()))
        assert line.startswith("! "), (template, line)
    udp = chat.udp()
    for template in ("/register {0}", "/login alice {0} {0}", "/login nobody {0}"):
        udp.say(template.format(chat.secret()))
        udp.settle()
    bystander.settle()
    chat.check_secrets()


def test_whois_hides_the_address(chat: Chat) -> None:
    """/whois tells account, transport, rooms; never the address to a non-operator."""
    chat.start()
    alice, _ = chat.register("alice", source="127.0.12.34")
    alice.say("/join #dev")
    alice.expect(r"^\* You joined #dev")
    udp = chat.udp("carol", source="127.0.12.35")
    asker = chat.connect("asker", source="127.0.12.36")
    about_alice = whois(asker, "alice")
    assert "alice" in about_alice
    assert "tcp" in about_alice.lower()
    assert "#dev" in about_alice
    assert "127.0.12.34" not in about_alice
    about_carol = whois(asker, "carol")
    assert "udp" in about_carol.lower()
    assert "127.0.12.35" not in about_carol
    line = asker.reply("/whois nobody")
    assert line.startswith("! no-such-nick: "), line
    del udp
    chat.check_secrets()


def test_accounts_and_bans_survive_a_restart(chat: Chat) -> None:
    """After SIGTERM and a start on the same state dir: login, protection, bans."""
    chat.operators(root=password())
    root_secret = chat.secrets[-1]
    chat.start()
    alice, secret = chat.register("alice")
    root = chat.connect("root")
    assert root.reply(f"/oper root {root_secret}").startswith("* ")
    assert root.reply("/serverban 127.0.13.9 restart test").startswith("* ")
    chat.stop()

    chat.start()
    assert "Traceback" not in chat.log
    guest = chat.connect()
    line = guest.reply("/nick alice")
    assert line.startswith("! nick-registered: "), line
    line = guest.reply(f"/login alice {secret}")
    assert line.startswith("* "), line
    assert guest.reply("/logout").startswith("* ")  # it was logged in
    banned = chat.raw(source="127.0.13.9")
    data = banned.read_until_closed()
    assert re.fullmatch(rb"! banned: [^\r\n]*\r\n", data), data
    del alice
    chat.check_secrets()


def test_registration_closed(chat: Chat) -> None:
    """``--registration closed``: only an operator creates accounts."""
    chat.operators(root=password())
    root_secret = chat.secrets[-1]
    chat.start("--registration", "closed")
    dave = chat.connect("dave")
    line = dave.reply(f"/register {chat.secret()}")
    assert line.startswith("! registration-closed: "), line
    root = chat.connect("root")
    line = root.reply(f"/register erin {chat.secret()}")
    assert line.startswith("! "), line  # not an operator yet
    assert root.reply(f"/oper root {root_secret}").startswith("* ")
    secret = chat.secret()
    line = root.reply(f"/register erin {secret}")
    assert line.startswith("* "), line
    erin = chat.connect()
    line = erin.reply(f"/login erin {secret}")
    assert line.startswith("* "), line
    chat.check_secrets()


@pytest.mark.parametrize(
    "command",
    [
        "/register {0}",
        "/login alice {0}",
        "/login alice",
        "/identify alice {0}",
        "/logout",
        "/password {0} {0}",
        "/unregister {0}",
        "/whois alice",
    ],
)
def test_accounts_off(chat: Chat, command: str) -> None:
    """``--accounts off``: every account command answers ``! accounts-disabled``."""
    chat.start("--accounts", "off")
    client = chat.connect("alice")
    line = client.reply(command.format(chat.secret()))
    assert line.startswith("! accounts-disabled: "), line
    chat.check_secrets()


# -- the password prompt and telnet ---------------------------------------------------


def test_prompt_bytes_turn_echo_off_and_on(chat: Chat) -> None:
    """IAC WILL ECHO precedes ``* Password:``, IAC WONT ECHO follows the password."""
    chat.start()
    _, secret = chat.register("alice")
    client = chat.connect()
    mark = len(client.raw)
    client.say("/login alice")
    client.expect(r"^\* Password: ?$")
    before = client.raw[mark:]
    assert IAC_WILL_ECHO in before, before
    assert before.index(IAC_WILL_ECHO) < before.index(b"* Password:")
    assert IAC_WONT_ECHO not in before
    mark = len(client.raw)
    client.say(secret)
    line = client.next_reply()
    assert line.startswith("* "), line  # the login worked
    after = client.raw[mark:]
    assert IAC_WONT_ECHO in after, after
    # A failed login gives the echo back too: the telnet user is not left blind.
    other = chat.connect()
    other.reply("/login alice")
    mark = len(other.raw)
    other.say(chat.secret())
    assert other.next_reply().startswith("! login-failed: ")
    assert IAC_WONT_ECHO in other.raw[mark:], other.raw[mark:]
    chat.check_secrets()


def test_a_plain_nc_user_sees_the_prompt_as_a_whole_line(chat: Chat) -> None:
    """No telnet: the prompt is a ``* Password:`` line ending in CRLF."""
    chat.start()
    _, secret = chat.register("alice")
    client = chat.connect()
    mark = len(client.raw)
    client.say("/login alice")
    client.expect(r"^\* Password: ?$")
    # What nc shows: the IAC bytes, at most, then a carriage return back to the
    # line's start, and the prompt, on a line of its own.
    text = client.raw[mark:].replace(IAC_WILL_ECHO, b"")
    assert re.search(rb"(^|\r\n)\r?\* Password: ?\r\n", text), text
    client.say(secret)
    line = client.next_reply()
    assert line.startswith("* "), line
    chat.check_secrets()


class Terminal:
    """``/usr/bin/telnet 127.0.0.1 PORT`` in a pseudo-terminal: keys in, screen out."""

    def __init__(self, port: int) -> None:
        telnet = shutil.which("telnet") or "/usr/bin/telnet"
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: telnet on the terminal
            os.execv(telnet, [telnet, "127.0.0.1", str(port)])  # noqa: S606
        self.screen = b""

    def wait_for(self, text: bytes, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} never on the screen: {self.screen!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    self.screen += os.read(self.fd, 4096)
                except OSError:  # telnet exited
                    raise AssertionError(f"telnet ended: {self.screen!r}") from None

    def type(self, text: str, enter: bool = True) -> None:
        """Key by key, as a person types (character mode sends each one)."""
        for char in text.encode("utf-8") + (b"\r" if enter else b""):
            os.write(self.fd, bytes([char]))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def terminal(chat: Chat) -> Iterator[Callable[[], Terminal]]:
    opened: list[Terminal] = []

    def open_terminal() -> Terminal:
        opened.append(Terminal(chat.port))
        return opened[-1]

    yield open_terminal
    for term in opened:
        term.close()


@pytest.mark.skipif(not shutil.which("telnet"), reason="needs telnet (.ci/run)")
@pytest.mark.parametrize("mode", ["line", "character"])
def test_telnet_password_prompt(
    chat: Chat, terminal: Callable[[], Terminal], mode: str
) -> None:
    """In telnet (line or character mode) the password never shows on a screen."""
    chat.start()
    alice, secret = chat.register("alice")
    bystander = chat.connect("bystander")
    alice.say("/quit")  # alice's first session goes away
    bystander.expect(r"^\* alice quit")

    term = terminal()
    term.wait_for(b"* Welcome")
    term.wait_for(b"#lobby")
    if mode == "character":
        term.type("\x1d", enter=False)  # ^], telnet's escape
        term.wait_for(b"telnet>")
        term.type("mode character")
    term.type("/login alice")
    term.wait_for(b"* Password:")
    term.type(secret)
    bystander.expect(r"^\* guest\d+ is now known as alice$")
    term.type("typed after the login")
    assert bystander.expect(r"^\[#lobby\]") == "[#lobby] <alice> typed after the login"
    term.wait_for(b"typed after the login")  # local echo is back
    assert secret.encode() not in term.screen
    assert secret.encode()[:6] not in term.screen  # not even a part of it
    chat.check_secrets()
