"""Room history end to end (issue 6): real sockets on 127.0.0.1, and twistd.

The first tests run the daemon in this process (``make_chat_service`` on the
test reactor) with TCP and UDP users on real sockets; the last ones start
``twistd -n chat`` as a subprocess, stop it (SIGTERM, SIGKILL) and start it
again on the same state directory, as an operator would.

Nothing waits blindly: a client proves the server has handled its earlier
lines by sending ``/ping`` and waiting for ``* pong`` (lines are handled in
order), and the SIGKILL test polls the database file, read-only, until the
rows are committed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from conftest import (
    TIMEOUT,
    TWISTD,
    AsyncClient,
    Daemon,
    LineClient,
    connect_client,
    free_port,
)
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol

from twisted_chat.core.chat import ChatServer
from twisted_chat.core.lines import parse_room_lines, room_action, room_message
from twisted_chat.core.records import StoredMessage
from twisted_chat.core.settings import Settings
from twisted_chat.daemon.service import ChatService, StoreService, make_chat_service
from twisted_chat.history.memory import IHistoryStore
from twisted_chat.history.sqlite import SqliteStore

#: The global reactor pytest-twisted runs, typed loosely (its stub type does
#: not list every reactor interface).
reactor: Any = _reactor

#: A replayed line: ``[#room HH:MM] ...``, with the date before the time when
#: the message is from another day (a run that straddles midnight).
HISTORY = re.compile(r"^\[(#[^ \]]+) (?:\d{4}-\d\d-\d\d )?\d\d:\d\d\] (.*)$")
CHALLENGE = re.compile(r"^\* Reply /hello ([a-z2-7]+) to chat over UDP\.$")


def replayed(lines: list[str]) -> list[str]:
    """The history lines among ``lines``, without their time stamps.

    ``[#lobby 14:03] <alice> hi`` becomes ``[#lobby] <alice> hi``, the shape
    of the live line, so a test can compare against what was said.
    """
    shown = []
    for line in lines:
        match = HISTORY.match(line)
        if match is not None:
            shown.append(f"[{match[1]}] {match[2]}")
    return shown


def since_last_pong(lines: list[str]) -> list[str]:
    """The lines between the last two ``* pong`` answers (or the start)."""
    pongs = [i for i, line in enumerate(lines) if line == "* pong"]
    start = pongs[-2] + 1 if len(pongs) > 1 else 0
    return lines[start : pongs[-1]]


async def settle(client: AsyncClient) -> list[str]:
    """The lines the server sent ``client`` since the last `settle`.

    It sends a ``/ping`` and waits for the pong: the server handles one
    connection's lines in order, so once the pong is in, everything the
    earlier lines caused has arrived too.
    """
    client.say("/ping")
    await client.expect(r"^\* pong$")
    return since_last_pong(client.lines)


class UdpUser(DatagramProtocol):
    """An ``nc -u`` user: one server line per datagram."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.payloads: list[bytes] = []
        self.lines: list[str] = []
        self._waiting: tuple[re.Pattern[str], Deferred[str]] | None = None
        self._seen = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: ARG002
        self.payloads.append(datagram)
        self.lines.append(datagram.decode("utf-8").removesuffix("\r\n"))
        self._check()

    def say(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(text.encode("utf-8") + b"\n", self.server)

    def expect(self, pattern: str) -> Deferred[str]:
        """The next unread line that matches ``pattern``."""
        waiter: Deferred[str] = Deferred()
        self._waiting = (re.compile(pattern), waiter)
        self._check()
        return waiter.addTimeout(TIMEOUT, reactor)

    def _check(self) -> None:
        while self._waiting is not None and self._seen < len(self.lines):
            line = self.lines[self._seen]
            self._seen += 1
            regex, waiter = self._waiting
            if regex.search(line):
                self._waiting = None
                waiter.callback(line)


class Chat:
    """The daemon in this process on 127.0.0.1, and its users; all cleaned up."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.state_dir = tmp_path / "state"
        self.settings = Settings(
            tcp=("tcp:0:interface=127.0.0.1",),
            udp=("127.0.0.1:0",),
            state_dir=str(self.state_dir),
            **settings,
        )
        self.service: ChatService = make_chat_service(self.settings, reactor)
        self.clients: list[AsyncClient] = []
        self.udp_ports: list[Any] = []
        self.tcp_port = 0
        self.udp_port = 0

    @property
    def server(self) -> ChatServer:
        return self.service.server

    @property
    def store(self) -> IHistoryStore:
        history = self.service.getServiceNamed("history")
        assert isinstance(history, StoreService)
        return history.store

    async def start(self) -> None:
        self.service.startService()
        (tcp,) = self.service.getServiceNamed("tcp")
        port = await tcp._waitingForPort
        self.tcp_port = port.getHost().port
        (udp,) = self.service.getServiceNamed("udp")
        self.udp_port = udp.chat_protocol.transport.getHost().port

    async def stop(self) -> None:
        """Stop the daemon (which commits the history), then our sockets."""
        await self.service.stopService()
        for client in self.clients:
            await client.lost
        for port in self.udp_ports:
            await port.stopListening()

    async def tcp(self, nick: str) -> AsyncClient:
        client = await connect_client(self.tcp_port)
        self.clients.append(client)
        client.say(f"/nick {nick}")
        await client.expect(rf"^\* You are now known as {nick}\.$")
        return client

    async def udp(self) -> UdpUser:
        """A UDP user through the ``/hello`` handshake, in ``#lobby``."""
        user = UdpUser(("127.0.0.1", self.udp_port))
        self.udp_ports.append(reactor.listenUDP(0, user, interface="127.0.0.1"))
        user.say("hi")
        match = CHALLENGE.match(await user.expect(CHALLENGE.pattern))
        assert match is not None
        user.say(f"/hello {match[1]}")
        return user


def stored_texts(path: Path) -> list[str]:
    """Every message text in a history file, read-only."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        turns = conn.execute("SELECT room, lines FROM turns ORDER BY first_id")
        return [
            text
            for room, said in turns
            for _, text, _ in parse_room_lines(room, said.encode())
        ]


# -- in this process: replay, /history, UDP, private messages ----------------


@pytest.mark.parametrize("history_db", ["history.sqlite3", ":memory:"])
@pytest_twisted.ensureDeferred
async def test_join_replays_room_messages_and_actions_over_tcp(
    tmp_path: Path, history_db: str
) -> None:
    """A newcomer gets earlier messages, actions and /msg #room lines, in order."""
    chat = Chat(tmp_path, history_db=history_db)
    await chat.start()
    try:
        alice = await chat.tcp("alice")
        alice.say("good morning")
        alice.say("/me waves")
        alice.say("/join #dev")
        alice.say("only in dev")
        alice.say("/msg #lobby sent from #dev")
        await settle(alice)

        bob = await chat.tcp("bob")
        seen = await settle(bob)
        assert replayed(seen) == [
            "[#lobby] <alice> good morning",
            "[#lobby] * alice waves",
            "[#lobby] <alice> sent from #dev",
        ]
        first = next(i for i, line in enumerate(seen) if HISTORY.match(line))
        joined = next(i for i, line in enumerate(seen) if "You joined #lobby" in line)
        assert joined < first
        assert re.fullmatch(r"\[#lobby \d\d:\d\d\] <alice> good morning", seen[first])
    finally:
        await chat.stop()


@pytest_twisted.ensureDeferred
async def test_replay_names_the_room_as_it_is_spelled_now(tmp_path: Path) -> None:
    """A room re-created as #DEV replays the lines said in #Dev as [#DEV ...]."""
    chat = Chat(tmp_path)
    await chat.start()
    try:
        alice = await chat.tcp("alice")
        alice.say("/join #Dev")
        alice.say("spelled the old way")
        alice.say("/part #Dev")
        await settle(alice)
        assert "#Dev" not in [room.name.display for room in chat.server.rooms.values()]

        bob = await chat.tcp("bob")
        bob.say("/join #DEV")
        seen = await settle(bob)
        assert replayed(seen) == ["[#DEV] <alice> spelled the old way"]
    finally:
        await chat.stop()


@pytest_twisted.ensureDeferred
async def test_history_command_replays_the_last_n_messages_over_tcp(
    tmp_path: Path,
) -> None:
    """/history N shows the last N lines, /history the default, or that none exist."""
    chat = Chat(tmp_path, history_on_join=0)
    await chat.start()
    try:
        alice = await chat.tcp("alice")
        for word in ("one", "two", "three"):
            alice.say(word)
        bob = await chat.tcp("bob")
        await settle(alice)
        assert replayed(await settle(bob)) == []

        bob.say("/history 2")
        assert replayed(await settle(bob)) == [
            "[#lobby] <alice> two",
            "[#lobby] <alice> three",
        ]
        bob.say("/history")
        assert replayed(await settle(bob)) == [
            "[#lobby] <alice> one",
            "[#lobby] <alice> two",
            "[#lobby] <alice> three",
        ]
        bob.say("/join #quiet")
        bob.say("/history")
        await bob.expect(r"^\* No history yet in #quiet\.$")
    finally:
        await chat.stop()


@pytest_twisted.ensureDeferred
async def test_udp_user_gets_replay_on_join_and_history(tmp_path: Path) -> None:
    """Over UDP the replay and /history come one line per datagram, same shapes."""
    chat = Chat(tmp_path)
    await chat.start()
    try:
        alice = await chat.tcp("alice")
        alice.say("before the udp user")
        alice.say("/me types fast")
        await settle(alice)

        uma = await chat.udp()
        await uma.expect(r"^\* You joined #lobby")
        uma.say("/ping")
        await uma.expect(r"^\* pong$")
        assert replayed(uma.lines) == [
            "[#lobby] <alice> before the udp user",
            "[#lobby] * alice types fast",
        ]
        uma.say("/history 1")
        uma.say("/ping")
        await uma.expect(r"^\* pong$")
        assert replayed(uma.lines)[-1] == "[#lobby] * alice types fast"
        assert len(replayed(uma.lines)) == 3
        assert all(p.endswith(b"\r\n") and p.count(b"\r\n") == 1 for p in uma.payloads)
    finally:
        await chat.stop()


@pytest_twisted.ensureDeferred
async def test_private_messages_are_never_stored(tmp_path: Path) -> None:
    """A /msg to a person reaches them but is neither replayed nor written to disk."""
    chat = Chat(tmp_path)
    await chat.start()
    try:
        alice = await chat.tcp("alice")
        bob = await chat.tcp("bob")
        alice.say("/msg bob the secret word")
        await bob.expect(r"^\[PM\] <alice> the secret word$")
        alice.say("a public word")
        await bob.expect(r"^\[#lobby\] <alice> a public word$")

        carol = await chat.tcp("carol")
        carol.say("/history 200")
        seen = replayed(await settle(carol))
        assert "[#lobby] <alice> a public word" in seen
        assert not [line for line in seen if "secret" in line]
        kept = chat.store.recent("#lobby", 200)
        assert [m.text for m in kept] == ["a public word"]
    finally:
        await chat.stop()
    texts = stored_texts(chat.state_dir / "history.sqlite3")
    assert texts == ["a public word"]


@pytest.mark.parametrize(
    ("on_join", "expected"),
    [
        (0, []),
        (2, ["[#lobby] <alice> m3", "[#lobby] <alice> m4"]),
        (20, [f"[#lobby] <alice> m{n}" for n in range(1, 5)]),
    ],
)
@pytest_twisted.ensureDeferred
async def test_history_on_join_sets_how_many_lines_are_replayed(
    tmp_path: Path, on_join: int, expected: list[str]
) -> None:
    """--history-on-join N replays the last N lines (0: none; /history works)."""
    chat = Chat(tmp_path, history_on_join=on_join)
    await chat.start()
    try:
        alice = await chat.tcp("alice")
        for n in range(1, 5):
            alice.say(f"m{n}")
        await settle(alice)
        bob = await chat.tcp("bob")
        assert replayed(await settle(bob)) == expected
        bob.say("/history 4")
        assert len(replayed(await settle(bob))) == 4
    finally:
        await chat.stop()


@pytest_twisted.ensureDeferred
async def test_history_off_keeps_nothing_and_says_so(tmp_path: Path) -> None:
    """With --history-db off nothing is replayed or written, and /history says so."""
    chat = Chat(tmp_path, history_db="off")
    assert "history" not in chat.service.namedServices
    await chat.start()
    try:
        alice = await chat.tcp("alice")
        alice.say("not kept")
        await settle(alice)
        bob = await chat.tcp("bob")
        bob.say("/history")
        await bob.expect(r"^\* History is turned off here\.$")
        assert replayed(bob.lines) == []
    finally:
        await chat.stop()
    # The accounts file (and its server bans) is kept whatever history does.
    kept = {path.name for path in chat.state_dir.iterdir()}
    assert kept == {"accounts.sqlite3"}


@pytest_twisted.ensureDeferred
async def test_a_large_batch_reaches_the_file_whole_and_in_order(
    tmp_path: Path,
) -> None:
    """300 messages queued at once all reach the file, in order."""
    path = tmp_path / "history.sqlite3"
    store = SqliteStore.open(str(path), reactor=reactor)
    store.start()
    for n in range(300):
        shape = room_action if n % 3 == 0 else room_message
        store.append_lines("#a", "#A", 1e9 + n, shape("#A", "al", f"m{n}"))
    await store.stop()
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT first_id, room, at, count, lines FROM turns ORDER BY first_id"
        ).fetchall()
    conn.close()
    assert [(first_id, room, at, count) for first_id, room, at, count, _ in rows] == [
        (n + 1, "#A", 1e9 + n, 1) for n in range(300)
    ]
    assert [parse_room_lines("#A", row[4].encode()) for row in rows] == [
        [("al", f"m{n}", n % 3 == 0)] for n in range(300)
    ]

    reopened = SqliteStore.open(str(path), reactor=reactor)
    try:
        tail = reopened.recent("#a", 200)
        assert tail[0] == StoredMessage("#a", "#A", "al", "m100", False, 1e9 + 100)
        assert [m.action for m in tail[:3]] == [False, False, True]
    finally:
        await reopened.stop()


# -- twistd in a subprocess: restarts and start-up errors --------------------


def start_daemon(
    daemons: Callable[..., Daemon], *args: str, env: dict[str, str] | None = None
) -> tuple[Daemon, int]:
    """``twistd -n chat`` on a fresh 127.0.0.1 port, ready for clients."""
    port = free_port()
    daemon = daemons("--tcp", f"tcp:{port}:interface=127.0.0.1", *args, env=env)
    daemon.wait_for_port(port)
    return daemon, port


def line_client(port: int, nick: str) -> LineClient:
    client = LineClient(port)
    client.expect(r"^\* You joined #lobby")
    client.say(f"/nick {nick}")
    client.expect(rf"^\* You are now known as {nick}\.$")
    return client


def blocking_settle(client: LineClient, since: int) -> list[str]:
    """`settle` for a blocking client: lines from ``client.lines[since]`` on."""
    client.say("/ping")
    client.expect(r"^\* pong$")
    return client.lines[since:-1]


def test_history_and_topics_survive_a_sigterm_restart(
    daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """History and topics outlive SIGTERM and a restart on the same --state-dir."""
    state = ["--state-dir", str(tmp_path / "state")]
    first, port = start_daemon(daemons, *state)
    alice = line_client(port, "alice")
    alice.say("said before the restart")
    alice.say("/me leaves a note")
    alice.say("/topic Lobby rules: be kind")
    alice.say("/join #dev")
    alice.say("/topic build is green")
    alice.say("only in dev")
    alice.say("/part #dev")
    blocking_settle(alice, 0)
    assert first.stop(signal.SIGTERM) == -signal.SIGTERM
    alice.close()
    assert "Traceback" not in first.log

    second, port = start_daemon(daemons, *state)
    bob = line_client(port, "bob")
    assert "* Topic of #lobby: Lobby rules: be kind" in bob.lines
    assert replayed(bob.lines) == [
        "[#lobby] <alice> said before the restart",
        "[#lobby] * alice leaves a note",
    ]
    mark = len(bob.lines)
    bob.say("/join #dev")
    seen = blocking_settle(bob, mark)
    assert "* Topic of #dev: build is green" in seen
    assert replayed(seen) == ["[#dev] <alice> only in dev"]
    bob.say("/topic")
    bob.expect(r"^\* Topic of #dev: build is green \(set by alice\)$")
    bob.close()
    assert second.stop(signal.SIGTERM) == -signal.SIGTERM
    assert "Traceback" not in second.log


def wait_for_rows(path: Path, texts: list[str]) -> None:
    """Poll the history file read-only until ``texts`` are committed (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    found: list[str] = []
    while time.monotonic() < deadline:
        if path.exists():
            try:
                found = stored_texts(path)
            except sqlite3.OperationalError:
                found = []  # the schema is not there yet, or the file is busy
            if all(text in found for text in texts):
                return
        time.sleep(0.05)  # polling a condition, bounded by the deadline
    raise AssertionError(f"{texts!r} never reached {path}; it holds {found!r}")


def test_committed_history_survives_kill_9(
    daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Messages the writer has committed are replayed after SIGKILL and a restart."""
    # No --state-dir: the daemon finds it in $STATE_DIRECTORY, as under systemd.
    env = {"STATE_DIRECTORY": str(tmp_path / "state")}
    first, port = start_daemon(daemons, env=env)
    alice = line_client(port, "alice")
    said = [f"kill -9 test {n}" for n in range(3)]
    for text in said:
        alice.say(text)
    blocking_settle(alice, 0)
    wait_for_rows(tmp_path / "state" / "history.sqlite3", said)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    alice.close()

    second, port = start_daemon(daemons, env=env)
    bob = line_client(port, "bob")
    assert replayed(bob.lines) == [f"[#lobby] <alice> {text}" for text in said]
    bob.close()
    assert second.stop(signal.SIGTERM) == -signal.SIGTERM
    assert "Traceback" not in second.log


def garbage(path: Path) -> None:
    """Not an SQLite file at all."""
    path.write_bytes(b"these are not the bytes you are looking for\n" * 200)


def damaged(path: Path) -> None:
    """A real SQLite database (in WAL mode) with pages overwritten in the middle."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE filler (x TEXT)")
        conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 200)
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    data[3 * page : 6 * page] = b"\xa5" * (3 * page)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("spoil", [garbage, damaged])
def test_corrupt_database_is_a_clear_startup_error(
    tmp_path: Path, spoil: Callable[[Path], None]
) -> None:
    """twistd exits non-zero with one line naming the file; the file is untouched."""
    state = tmp_path / "state"
    state.mkdir()
    db = state / "history.sqlite3"
    spoil(db)
    before = db.read_bytes()
    port = free_port()
    result = subprocess.run(
        [
            *(TWISTD, "--nodaemon", "--pidfile=", "chat"),
            *("--tcp", f"tcp:{port}:interface=127.0.0.1", "--state-dir", str(state)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"twistd chat: {db} is not a valid history database" in output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    assert db.read_bytes() == before


# -- issue 11: the writer stopped, killed, or its file removed -----------------


def writer_pid(daemon: Daemon) -> int:
    """The pid of the daemon's history writer child (bounded wait)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        kids = [
            int(pid)
            for task in Path(f"/proc/{daemon.proc.pid}/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]
        if kids:
            return kids[0]
        time.sleep(0.05)  # polling a condition, bounded by the deadline
    raise AssertionError(f"no writer process:\n{daemon.log}")


@pytest.mark.slow
def test_sigterm_exits_in_time_with_the_writer_stopped(
    daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """A SIGSTOPped writer cannot hold the daemon: SIGTERM ends it within 5 s."""
    first, port = start_daemon(daemons, "--state-dir", str(tmp_path / "state"))
    alice = line_client(port, "alice")
    writer = writer_pid(first)
    os.kill(writer, signal.SIGSTOP)
    try:
        for n in range(5):  # within flood control's burst
            alice.say(f"while the writer sleeps {n}")
        blocking_settle(alice, 0)
        began = time.monotonic()
        assert first.stop(signal.SIGTERM) == -signal.SIGTERM
        assert time.monotonic() - began < 5.0, first.log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(writer, signal.SIGCONT)
    alice.close()
    assert "did not finish within 1.5 s" in first.log


@pytest.mark.slow
def test_a_killed_writer_is_started_again_and_history_is_saved(
    daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """The OOM killer's SIGKILL of the writer is logged and the writer comes back."""
    state = tmp_path / "state"
    first, port = start_daemon(daemons, "--state-dir", str(state))
    alice = line_client(port, "alice")
    os.kill(writer_pid(first), signal.SIGKILL)
    first.wait_for_log(r"history writer for \S+ was killed \(signal 9\)")
    first.wait_for_log(r"starting the history writer for \S+ again")
    alice.say("after the restart")
    blocking_settle(alice, 0)
    wait_for_rows(state / "history.sqlite3", ["after the restart"])
    alice.close()
    assert first.stop(signal.SIGTERM) == -signal.SIGTERM
