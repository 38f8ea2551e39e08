"""
Web clients end to end (issue 16), from PROTOCOL.md's "Web clients": a real
``twistd -n chat --web``, a raw WebSocket client (wsproto over a plain
socket) beside nc-style TCP users, in the same rooms.
"""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from test_accounts_e2e import Chat, Client
from test_accounts_e2e import chat as chat  # noqa: PLC0414 - the fixture
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol, Opcode

pytestmark = pytest.mark.slow

TIMEOUT = 10.0
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
#: Every type of the dialect and its fields (docs/web.md, PROTOCOL.md).
FIELDS = {
    "hello": {"nick", "server", "max_line"},
    "you": {"nick"},
    "message": {"room", "nick", "text", "time"},
    "action": {"room", "nick", "text", "time"},
    "private": {"nick", "text", "time"},
    "error": {"code", "text"},
    "join": {"room", "nick", "time"},
    "part": {"room", "nick", "reason", "time"},
    "kick": {"room", "nick", "by", "reason", "time"},
    "quit": {"nick", "reason", "time"},
    "nick": {"old", "new", "time"},
    "topic": {"room", "nick", "text", "time"},
    "members": {"room", "members"},
    "history": {"room", "messages"},
}


class Ws:
    """A blocking WebSocket client: wsproto over a plain socket."""

    def __init__(
        self,
        port: int,
        origin: str | None = "",
        source: str = "127.0.0.1",
        rcvbuf: int = 0,
    ) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((source, 0))
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.ws = WSConnection(ConnectionType.CLIENT)
        origin = f"http://127.0.0.1:{port}" if origin == "" else origin
        headers = [] if origin is None else [(b"origin", origin.encode())]
        self.sock.sendall(
            self.ws.send(Request(f"127.0.0.1:{port}", "/ws", extra_headers=headers))
        )
        self.accepted = False
        self.status: int | None = None
        self.close_code: int | None = None
        self.eof = False
        self.events: list[dict[str, Any]] = []
        self.seen = 0
        self._text = ""

    def _fill(self, deadline: float) -> bool:
        """Read once; False at the end of the stream."""
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, RejectConnection):
                self.status = event.status_code
            elif isinstance(event, TextMessage):
                self._text += event.data
                if event.message_finished:
                    self.events.append(json.loads(self._text))
                    self._text = ""
            elif isinstance(event, Ping):
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection) and self.close_code is None:
                # The first: wsproto adds its own 1006 at the end of the stream.
                self.close_code = event.code
        return not self.eof

    def wait(self, done: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline or not self._fill(deadline):
                if done():
                    return
                raise AssertionError(f"gave up waiting: {self.events[-10:]!r}")

    def expect(self, kind: str, **fields: Any) -> dict[str, Any]:
        """The next event of ``kind`` with these fields (those before are passed)."""

        def found() -> bool:
            while self.seen < len(self.events):
                event = self.events[self.seen]
                self.seen += 1
                if event["type"] == kind and all(
                    event.get(k) == v for k, v in fields.items()
                ):
                    return True
            return False

        self.wait(found)
        event = self.events[self.seen - 1]
        assert set(event) == FIELDS.get(kind, {"text"}) | {"type"} or (
            kind == "notice"
            and set(event) in ({"type", "text"}, {"type", "text", "room"})
        ), event
        if "time" in event:
            assert TIME.match(event["time"]), event
        return event

    def say(self, text: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(text)))

    def closed(self) -> int | None:
        """Wait for the end of the connection; the close code the server sent."""
        self.wait(lambda: self.eof)
        return self.close_code

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def web(chat: Chat) -> Chat:
    chat.web_port = free_port()  # type: ignore[attr-defined]
    return chat


def start(chat: Chat, *args: str) -> Chat:
    port = chat.web_port  # type: ignore[attr-defined]
    chat.start("--web", f"tcp:{port}:interface=127.0.0.1", *args)
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            assert time.monotonic() < deadline, f"no web port:\n{chat.log}"
            time.sleep(0.05)  # polling a condition, bounded by the deadline
        else:
            return chat


def browser(chat: Chat, **kwargs: Any) -> Ws:
    client = Ws(chat.web_port, **kwargs)  # type: ignore[attr-defined]
    client.wait(lambda: client.accepted or client.status is not None)
    return client


def vm_rss(pid: int) -> int:
    """The daemon's resident memory, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text("ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_the_json_shapes_beside_a_line_user(web: Chat) -> None:
    start(web)
    nc = web.connect("lina")
    ws = browser(web)
    hello = ws.expect("hello")
    assert hello["max_line"] == 1024
    assert ws.expect("notice")["text"].startswith("Welcome to twisted-chat")
    assert ws.expect("join", room="#lobby")["nick"] == hello["nick"]
    members = ws.expect("members", room="#lobby")["members"]
    assert "lina" in [member["nick"] for member in members]
    assert all(set(member) == {"nick", "op", "voice"} for member in members)
    assert ws.expect("notice")["text"].startswith("You joined #lobby")
    ws.say("/nick webby")
    ws.expect("you", nick="webby")
    nc.expect(r"^\* \S+ is now known as webby")
    nc.say("hi <img src=x onerror=alert(1)>")
    message = ws.expect("message", nick="lina")
    assert message["text"] == "hi <img src=x onerror=alert(1)>"
    assert message["room"] == "#lobby"
    ws.say("hello nc")
    nc.expect(r"^\[#lobby\] <webby> hello nc$")
    nc.say("/me waves")
    assert ws.expect("action", nick="lina")["text"] == "waves"
    nc.say("/msg webby psst")
    assert ws.expect("private", nick="lina")["text"] == "psst"
    ws.say("/msg lina back")
    nc.expect(r"^\[PM\] <webby> back$")
    ws.say("/frobnicate")
    assert ws.expect("error")["code"] == "unknown-command"
    # A room of the browser's own: history, topic, operators, a kick.
    nc.say("/join #dev")
    nc.say("said before you came")
    nc.say("/topic the topic")
    nc.expect(r"(?i)topic")
    ws.say("/join #dev")
    ws.expect("join", room="#dev", nick="webby")
    members = ws.expect("members", room="#dev")["members"]
    assert {"nick": "lina", "op": True, "voice": False} in members
    assert ws.expect("topic", room="#dev")["text"] == "the topic"
    history = ws.expect("history", room="#dev")["messages"]
    first = history[0]
    assert set(first) == {"type", "nick", "text", "time"}
    assert (first["type"], first["nick"]) == ("message", "lina")
    assert first["text"] == "said before you came"
    assert TIME.match(first["time"])
    nc.say("/op webby")  # nc's current room is #dev
    ws.expect("members", room="#dev")
    nc.say("/topic new topic")
    assert ws.expect("topic", room="#dev", nick="lina")["text"] == "new topic"
    nc.say("/nick lina2")
    assert ws.expect("nick", old="lina")["new"] == "lina2"
    ws.say("/kick lina2 out")  # the browser's current room is #dev
    nc.expect(r"kicked")
    assert ws.expect("kick", room="#dev", nick="lina2")["by"] == "webby"
    nc.say("/part #lobby bye")
    assert ws.expect("part", room="#lobby", nick="lina2")["reason"] == "bye"
    bob = web.connect("bob")
    ws.expect("nick", new="bob")
    bob.say("/quit gone")
    ws.expect("quit", nick="bob")
    ws.say("/part #dev")
    ws.expect("part", room="#dev", nick="webby")


def test_the_page_and_a_wrong_origin(web: Chat) -> None:
    start(web)
    connection = http.client.HTTPConnection("127.0.0.1", web.web_port, timeout=TIMEOUT)  # type: ignore[attr-defined]
    connection.request("GET", "/nothing-here")
    response = connection.getresponse()
    response.read()
    assert response.status == 404
    policy = response.getheader("Content-Security-Policy") or ""
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    connection.close()
    evil = browser(web, origin="http://evil.example")
    assert evil.status == 403
    assert not evil.accepted
    assert browser(web).accepted  # the page's own origin


def test_an_oversized_frame_is_closed_cleanly(web: Chat) -> None:
    start(web)
    nc = web.connect("lina")
    ws = browser(web)
    ws.expect("hello")
    frame = FrameProtocol(client=True, extensions=[])
    data = bytes(frame._serialize_frame(Opcode.TEXT, b"x" * (4 << 20)))
    sent = 0
    while sent < len(data) and ws.close_code is None:
        ws.sock.sendall(data[sent : sent + 16384])
        sent += 16384
        while ws.close_code is None and select.select([ws.sock], [], [], 0.01)[0]:
            ws._fill(time.monotonic() + 1)
    assert ws.close_code == 1009
    assert sent < 256 << 10  # told long before the 4 MiB were sent
    ws.sock.sendall(ws.ws.send(CloseConnection(1009)))  # as a browser answers
    assert ws.closed() == 1009  # and the daemon ends the connection
    nc.expect(r"quit \(connection lost\)")
    assert browser(web).accepted  # the daemon is fine


def test_a_browser_that_stops_reading_is_dropped_memory_bounded(web: Chat) -> None:
    start(web, "--max-sendq", "65536", "--flood-burst", "0")
    nc = web.connect("lina")
    stuck = browser(web, rcvbuf=4096)
    stuck.expect("hello")
    stuck.expect("members")
    assert web.proc is not None
    before = vm_rss(web.proc.pid)
    line = b"x" * 1000 + b"\n"
    total = 0
    dropped = False
    while total < 40 << 20:
        nc.send(line * 64)
        total += len(line) * 64
        while select.select([nc.sock], [], [], 0)[0]:
            if not nc._fill(time.monotonic() + 1):
                break
        dropped = dropped or b"too slow to read, send queue full" in nc.raw
    assert dropped, "the non-reading browser was never dropped"
    assert vm_rss(web.proc.pid) - before < 24 << 20, "the daemon held the output"
    assert "dropping slow reader peer=web" in web.log


def test_web_sessions_count_in_the_per_address_cap(web: Chat) -> None:
    start(web, "--max-per-ip", "2")
    tcp = Client(web.port, "127.0.0.7")
    tcp.expect(r"^\* Welcome")
    first = browser(web, source="127.0.0.7")
    first.expect("hello")
    second = browser(web, source="127.0.0.7")
    assert second.expect("error")["code"] == "too-many-connections"
    assert second.closed() == 1013
    other = browser(web, source="127.0.0.8")
    other.expect("hello")
    tcp.close()


def test_sigterm_sends_the_shutdown_notice_and_closes_1001(web: Chat) -> None:
    start(web)
    ws = browser(web)
    ws.expect("hello")
    ws.expect("members")
    web.stop()
    assert ws.expect("notice", text="Server shutting down")
    assert ws.closed() == 1001
