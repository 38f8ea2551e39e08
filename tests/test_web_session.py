"""
The web front-end in memory (issue 16): the Site, the upgrade, a
WebSocket session as a chat participant, over a StringTransport with a
wsproto client on the other side, beside line users of the same core.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol, Opcode

from twisted_chat.core.admission import Admission
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.settings import Settings
from twisted_chat.testing import RecordingClient
from twisted_chat.transports.web import SECURITY_HEADERS, WebClients, WebFactory
from twisted_chat.transports.web_connection import unmask
from twisted_chat.transports.web_session import MAX_FRAME, WebSessionFactory

ORIGIN = "http://127.0.0.1:8080"
PAGE = (b"text/html; charset=utf-8", b"<!doctype html><title>chat</title>")


class Rig:
    """A core, its admission, and a web factory on a fake clock."""

    def __init__(self, settings: Settings | None = None, **caps: int) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.server = ChatServer(
            settings or Settings(),
            self.clock.seconds,
            defer=lambda f: self.clock.callLater(0, f),
        )
        self.admission = Admission(
            caps.get("max_clients", 100), caps.get("max_per_ip", 10)
        )
        self.sessions = WebSessionFactory(
            self.server, self.admission, self.clock, server_name="chat.test"
        )
        self.factory = WebFactory(
            self.sessions, files={b"/": PAGE, b"/index.html": PAGE}
        )
        self.port = 40000

    def http(self, host: str = "127.0.0.1") -> Http:
        self.port += 1
        return Http(self, host, self.port)

    def browser(self, origin: str | None = ORIGIN, host: str = "127.0.0.1") -> Browser:
        browser = Browser(self, host, self._next())
        browser.upgrade(origin)
        return browser

    def _next(self) -> int:
        self.port += 1
        return self.port

    def me(self, browser: Browser) -> Any:
        """The browser's participant."""
        return self.server.directory.find(browser.events[0]["nick"])

    def line_user(self, nick: str) -> tuple[RecordingClient, Any]:
        client = RecordingClient()
        participant = self.server.connect(client, "")
        self.server.receive(participant, f"/nick {nick}")
        client.clear()
        return client, participant


class Http:
    """A plain HTTP connection into the factory."""

    def __init__(self, rig: Rig, host: str, port: int) -> None:
        self.rig = rig
        self.transport = StringTransport(
            peerAddress=IPv4Address("TCP", host, port),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        )
        self.protocol = rig.factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)

    def get(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        self.transport.clear()
        self.protocol.dataReceived(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".encode()
        )
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        status, *fields = head.decode().split("\r\n")
        headers = {}
        for line in fields:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status.split()[1]), headers, body


class Browser(Http):
    """A WebSocket client (wsproto) over the same kind of connection."""

    def __init__(self, rig: Rig, host: str, port: int) -> None:
        super().__init__(rig, host, port)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.accepted = False
        self.rejected: int | None = None
        self.closed: int | None = None
        self.events: list[dict[str, Any]] = []

    def upgrade(self, origin: str | None) -> None:
        headers = [] if origin is None else [(b"origin", origin.encode())]
        self.protocol.dataReceived(
            self.ws.send(
                Request(host="127.0.0.1:8080", target="/ws", extra_headers=headers)
            )
        )
        self.read()

    def read(self) -> list[dict[str, Any]]:
        """The JSON objects received since the last read."""
        data = self.transport.value()
        self.transport.clear()
        if data:
            self.ws.receive_data(data)
        new = []
        text = ""
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, RejectConnection):
                self.rejected = event.status_code
            elif isinstance(event, RejectData):
                pass
            elif isinstance(event, TextMessage):
                text += event.data
                if event.message_finished:
                    new.append(json.loads(text))
                    text = ""
            elif isinstance(event, CloseConnection):
                self.closed = event.code
        self.events.extend(new)
        return new

    def say(self, text: str) -> list[dict[str, Any]]:
        self.protocol.dataReceived(self.ws.send(TextMessage(text)))
        return self.read()

    def types(self) -> list[str]:
        return [event["type"] for event in self.read()]


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


# -- the page ------------------------------------------------------------------------


def test_the_page_and_404_carry_the_security_headers() -> None:
    rig = Rig()
    for path, status in (("/", 200), ("/index.html", 200), ("/nope", 404),
                         ("/index.html/x", 404), ("/../etc/passwd", 404)):  # fmt: skip
        code, headers, body = rig.http().get(path)
        assert code == status, path
        for name, value in SECURITY_HEADERS:
            assert headers[name.decode().lower()] == value.decode(), (path, name)
    code, headers, body = rig.http().get("/")
    assert body == PAGE[1]
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "'unsafe-inline'" not in headers["content-security-policy"]


def test_only_get_and_head() -> None:
    rig = Rig()
    assert rig.http().get("/", "HEAD")[0] == 200
    code, headers, _ = rig.http().get("/", "DELETE")
    assert code == 405
    assert headers["allow"] == "GET, HEAD"


def test_a_request_body_is_refused_not_spooled() -> None:
    rig = Rig()
    http = rig.http()
    http.protocol.dataReceived(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 1000
    )
    assert http.transport.value().startswith(b"HTTP/1.1 413 ")
    assert http.transport.disconnecting


def test_the_shipped_page_is_read_once_from_the_package() -> None:
    from twisted_chat.transports.web import read_static

    files = read_static()
    if b"/index.html" in files:  # H3's page, once it is there
        assert files[b"/"] == files[b"/index.html"]
        assert files[b"/"][0] == b"text/html; charset=utf-8"
    for path, (kind, _) in files.items():
        assert path.startswith(b"/")
        assert kind


def test_the_page_s_module_scripts_are_all_shipped_as_javascript() -> None:
    # index.html loads chat.js as a module, which imports the others; a browser
    # runs a module only when it comes as JavaScript (under nosniff, a wrong or
    # missing type refuses it), and an import of a file that is not served, 404.
    import re

    from twisted_chat.transports.web import read_static

    rig = Rig()
    files = read_static()
    rig.factory = WebFactory(rig.sessions, files=files)
    page = files[b"/"][1].decode()
    assert re.findall(r"<script\b[^>]*>", page) == [
        '<script type="module" src="chat.js">'
    ]
    wanted, seen = ["chat.js"], set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        code, headers, body = rig.http().get("/" + name)
        assert code == 200, name
        assert headers["content-type"] == "text/javascript; charset=utf-8", name
        assert headers["x-content-type-options"] == "nosniff"
        assert body == files[b"/" + name.encode()][1]
        imports = r'^import [^;]*? from "\./([\w-]+\.js)";'
        wanted += re.findall(imports, body.decode(), re.MULTILINE)
    assert len(seen) > 1  # chat.js imports the modules it is made of
    shipped = {path.decode()[1:] for path in files if path.endswith(b".js")}
    assert shipped == seen  # and every shipped script is one of them


def test_an_idle_http_connection_times_out_an_upgraded_one_does_not() -> None:
    rig = Rig()
    idle = rig.http()
    browser = rig.browser()
    rig.clock.advance(31)
    assert idle.transport.disconnecting
    assert not browser.transport.disconnecting
    assert browser.say("/nick still_here")


def test_plain_http_connections_are_capped_per_address() -> None:
    rig = Rig(Settings(max_per_ip=2))
    first, second = rig.http(), rig.http()
    third = rig.http()
    assert third.transport.value().startswith(b"HTTP/1.1 503 ")
    assert third.transport.disconnecting
    assert not first.transport.disconnecting
    assert rig.http("10.0.0.9").get("/")[0] == 200  # another address
    second.transport.loseConnection()
    second.protocol.connectionLost(None)
    assert rig.http().get("/")[0] == 200


# -- the upgrade ---------------------------------------------------------------------


def test_a_wrong_origin_is_refused_before_the_upgrade() -> None:
    rig = Rig()
    for origin in ("http://evil.example", "null", "https://127.0.0.1:8080",
                   "http://127.0.0.1:8081"):  # fmt: skip
        browser = rig.browser(origin)
        assert browser.rejected == 403, origin
        assert not browser.accepted
    assert not rig.sessions.sessions


def test_a_plain_get_of_ws_is_a_quiet_400(log_events: list[Any]) -> None:
    rig = Rig()
    code, headers, body = rig.http().get("/ws")
    assert code == 400
    assert b"WebSocket" in body
    assert "content-security-policy" in headers
    assert not [event for event in log_events if event.get("log_level") is not None
                and event["log_level"].name in ("error", "critical")]  # fmt: skip


def test_the_default_origin_is_the_pages_own() -> None:
    rig = Rig()
    browser = rig.browser(ORIGIN)
    assert browser.accepted
    assert browser.events[0]["type"] == "hello"
    assert rig.browser(ORIGIN.upper()).accepted  # origins are case-blind
    assert rig.browser(None).accepted  # not a browser: nothing to forge


def test_configured_origins_replace_the_default() -> None:
    rig = Rig(Settings(web_origin=("https://chat.example.org",)))
    assert rig.browser("https://chat.example.org").accepted
    assert rig.browser(ORIGIN).rejected == 403


def test_hello_first_then_the_default_room() -> None:
    rig = Rig()
    browser = rig.browser()
    events = browser.events
    assert events[0] == {"type": "hello", "nick": "guest1", "server": "chat.test",
                         "max_line": 1024}  # fmt: skip
    join = of_type(events, "join")
    assert join == [{"type": "join", "room": "#lobby", "nick": "guest1",
                     "time": join[0]["time"]}]  # fmt: skip
    assert join[0]["time"].endswith("Z")
    assert of_type(events, "members") == [
        {"type": "members", "room": "#lobby",
         "members": [{"nick": "guest1", "op": True, "voice": False}]}
    ]  # fmt: skip
    welcome = of_type(events, "notice")[0]
    assert welcome["text"].startswith("Welcome to twisted-chat, guest1!")
    assert [event["type"] for event in events] == [
        "hello", "notice", "join", "members", "notice"
    ]  # fmt: skip
    assert events[-1]["text"].startswith("You joined #lobby")
    assert rig.me(browser).transport == "web"


def test_messages_both_ways_with_a_line_user() -> None:
    rig = Rig()
    nc, nc_p = rig.line_user("lina")
    browser = rig.browser()
    assert browser.say("/nick webby")[-1] == {"type": "you", "nick": "webby"}
    rig.server.receive(nc_p, "hi <img src=x onerror=alert(1)>")
    rig.server.flush()
    (message,) = browser.read()
    assert message == {"type": "message", "room": "#lobby", "nick": "lina",
                       "text": "hi <img src=x onerror=alert(1)>",
                       "time": message["time"]}  # fmt: skip
    nc.clear()
    assert browser.say("hello from a browser") == []  # no echo
    rig.server.flush()
    assert "[#lobby] <webby> hello from a browser" in nc.lines()
    rig.server.receive(nc_p, "/me waves")
    rig.server.receive(nc_p, "/msg webby psst")
    rig.server.flush()
    events = browser.read()
    assert {"type": "action", "room": "#lobby", "nick": "lina", "text": "waves",
            "time": events[0]["time"]} in events  # fmt: skip
    assert of_type(events, "private")[0]["text"] == "psst"


def test_two_browsers_get_the_same_frames_rendered_once() -> None:
    rig = Rig()
    one, two = rig.browser(), rig.browser()
    _, nc_p = rig.line_user("lina")
    rig.server.flush()
    one.read(), two.read()
    calls = []
    render_each = rig.sessions.wire_format.render_each

    def counting(room: Any, events: Any) -> list[bytes]:
        calls.append(len(events))
        return render_each(room, events)

    rig.sessions.wire_format.render_each = counting  # type: ignore[method-assign]
    rig.server.receive(nc_p, "one")
    rig.server.receive(nc_p, "two")
    rig.server.flush()
    assert one.transport.value() == two.transport.value() != b""
    assert calls == [2]


def test_own_changes_join_part_and_nick() -> None:
    rig = Rig()
    browser = rig.browser()
    events = browser.say("/join #dev")
    assert [e["type"] for e in events][:2] == ["join", "members"]
    assert events[0]["room"] == "#dev"
    _, nc_p = rig.line_user("lina")
    rig.server.receive(nc_p, "/join #dev")
    rig.server.receive(nc_p, "/topic a topic")
    rig.server.flush()
    browser.read()
    browser.say("/part #dev")
    events = browser.say("/join #dev")
    assert [e["type"] for e in events][:3] == ["join", "members", "topic"]
    assert events[2]["nick"] is None
    assert events[2]["text"] == "a topic"
    events = browser.say("/part #dev bye")
    assert of_type(events, "part")[0]["room"] == "#dev"
    events = browser.say("/nick zed")
    assert events[-2:] == [
        {"type": "nick", "old": "guest1", "new": "zed", "time": events[-2]["time"]},
        {"type": "you", "nick": "zed"},
    ]


def test_an_unknown_command_is_an_error_frame() -> None:
    rig = Rig()
    browser = rig.browser()
    (error,) = of_type(browser.say("/frobnicate"), "error")
    assert error["code"] == "unknown-command"


# -- limits ----------------------------------------------------------------------------


def test_a_line_over_max_line_is_refused_and_the_connection_kept() -> None:
    rig = Rig(Settings(max_line=32))
    nc, _ = rig.line_user("lina")
    browser = rig.browser()
    assert browser.events[0]["max_line"] == 32
    (error,) = browser.say("é" * 17)  # 34 bytes of UTF-8
    assert error["type"] == "error"
    assert error["code"] == "line-too-long"
    browser.say("é" * 16)
    rig.server.flush()
    assert nc.lines()[-1] == f"[#lobby] <guest2> {'é' * 16}"
    assert not browser.transport.disconnecting


def test_flood_control_stops_reading_and_loses_nothing() -> None:
    rig = Rig(Settings(flood_burst=2, flood_rate=1.0))
    nc, _ = rig.line_user("lina")
    browser = rig.browser()
    rig.server.flush()
    nc.clear()
    burst = b"".join(browser.ws.send(TextMessage(f"line {n}")) for n in range(6))
    browser.protocol.dataReceived(burst)
    rig.server.flush()
    assert nc.lines() == ["[#lobby] <guest2> line 0", "[#lobby] <guest2> line 1"]
    assert browser.transport.producerState == "paused"
    for _ in range(10):
        rig.clock.advance(1)
        rig.server.flush()
    assert nc.lines() == [f"[#lobby] <guest2> line {n}" for n in range(6)]
    assert browser.transport.producerState == "producing"


def test_a_browser_that_stops_reading_is_dropped_at_the_send_queue_cap() -> None:
    rig = Rig(Settings(max_sendq=65536))
    nc, nc_p = rig.line_user("lina")
    browser = rig.browser()
    producer: Any = browser.transport.producer
    producer.pauseProducing()  # the socket holds 64 KiB
    for n in range(400):
        rig.server.receive(nc_p, f"{n:04} " + "x" * 200)
        rig.server.flush()
        if browser.transport.disconnecting:
            break
    assert browser.transport.disconnecting
    assert n < 399
    browser.protocol.connectionLost(None)
    rig.server.flush()
    assert not rig.sessions.sessions
    assert "* guest2 quit (too slow to read, send queue full)" in nc.lines()
    assert rig.admission.total == 0


def _big_frame_bytes(size: int) -> bytes:
    """A masked text frame of ``size`` bytes, as a browser would send it."""
    client = FrameProtocol(client=True, extensions=[])
    return bytes(client._serialize_frame(Opcode.TEXT, b"a" * size, fin=True))


def test_an_oversized_message_is_closed_1009_from_its_header() -> None:
    rig = Rig()
    browser = rig.browser()
    browser.read()
    data = _big_frame_bytes(10 * 1024 * 1024)
    browser.protocol.dataReceived(data[:65536])
    assert browser.protocol.unfed == b""  # refused from the header, not held
    browser.read()
    assert browser.closed == 1009
    assert browser.transport.disconnecting
    browser.protocol.dataReceived(data[65536 : 2 * 65536])  # nothing more is held
    assert browser.protocol.unfed == b""
    assert rig.me(browser) is not None  # until the connection is lost


def test_a_fragmented_message_over_the_limit_is_closed_1009() -> None:
    rig = Rig()
    browser = rig.browser()
    client = FrameProtocol(client=True, extensions=[])
    piece = b"a" * 4096
    data = bytes(client._serialize_frame(Opcode.TEXT, piece, fin=False))
    for _ in range(3):
        data += bytes(client._serialize_frame(Opcode.CONTINUATION, piece, fin=False))
    data += bytes(client._serialize_frame(Opcode.CONTINUATION, b"a", fin=True))
    browser.protocol.dataReceived(data)
    browser.read()
    assert browser.closed == 1009


def test_a_fragmented_message_is_one_line() -> None:
    rig = Rig()
    nc, _ = rig.line_user("lina")
    browser = rig.browser()
    rig.server.flush()
    nc.clear()
    client = FrameProtocol(client=True, extensions=[])
    data = bytes(client._serialize_frame(Opcode.TEXT, "héllo ".encode()[:2], fin=False))
    ping = bytes(client._serialize_frame(Opcode.PING, b"are you there", fin=True))
    rest = bytes(
        client._serialize_frame(
            Opcode.CONTINUATION, "héllo ".encode()[2:] + b"all", fin=True
        )
    )
    for byte in range(len(data + ping + rest)):  # byte by byte, a ping between
        browser.protocol.dataReceived((data + ping + rest)[byte : byte + 1])
    rig.server.flush()
    assert nc.lines() == ["[#lobby] <guest2> héllo all"]
    assert b"\x8a\x0dare you there" in browser.transport.value()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x81\x05hello", 1002),  # not masked
        (b"\xc1\x80\x00\x00\x00\x00", 1002),  # RSV1 (no extension was agreed)
        (b"\x83\x80\x00\x00\x00\x00", 1002),  # a reserved opcode
        (b"\x80\x80\x00\x00\x00\x00", 1002),  # a continuation of nothing
        (b"\x09\x80\x00\x00\x00\x00", 1002),  # a fragmented ping
        (b"\x89\xfe\x00\x7e" + b"\x00" * 130, 1002),  # a ping of 126 bytes
        (b"\x81\x82\x00\x00\x00\x00\xc3\x28", 1007),  # bad UTF-8
    ],
)
def test_broken_framing_is_closed_with_its_code(frame: bytes, code: int) -> None:
    rig = Rig()
    browser = rig.browser()
    browser.protocol.dataReceived(frame)
    browser.read()
    assert browser.closed == code
    assert browser.transport.disconnecting


def test_the_browsers_close_is_answered() -> None:
    rig = Rig()
    browser = rig.browser()
    browser.read()
    browser.protocol.dataReceived(browser.ws.send(CloseConnection(1000, "bye")))
    browser.read()
    assert browser.closed == 1000
    assert browser.transport.disconnecting


def test_unmask_is_the_rfc_s_xor() -> None:
    mask = bytes((0x37, 0xFA, 0x21, 0x3D))
    assert unmask(bytes((0x7F, 0x9F, 0x4D, 0x51, 0x58)), mask) == b"Hello"
    assert unmask(b"", mask) == b""


def test_a_whole_message_just_over_the_limit_is_closed_1009() -> None:
    rig = Rig()
    browser = rig.browser()
    browser.protocol.dataReceived(browser.ws.send(TextMessage("b" * (MAX_FRAME + 1))))
    browser.read()
    assert browser.closed == 1009


def test_a_message_at_the_limit_is_a_long_line_not_a_close() -> None:
    rig = Rig()
    browser = rig.browser()
    events = browser.say("c" * MAX_FRAME)
    assert of_type(events, "error")[0]["code"] == "line-too-long"
    assert browser.closed is None
    many = b"".join(
        browser.ws.send(TextMessage("/nick n" + "x" * 10)) for _ in range(3000)
    )
    browser.protocol.dataReceived(many)  # pipelined small messages: fine
    assert browser.closed is None


def test_a_binary_message_closes_1003() -> None:
    rig = Rig()
    browser = rig.browser()
    browser.protocol.dataReceived(browser.ws.send(BytesMessage(b"\x00\x01")))
    browser.read()
    assert browser.closed == 1003


def test_web_sessions_count_in_the_per_address_cap() -> None:
    rig = Rig(max_per_ip=2)
    rig.admission.admit("127.0.0.1", rig.clock.seconds())  # a TCP user there
    assert rig.browser().accepted
    refused = rig.browser()
    assert refused.accepted
    (error,) = of_type(refused.events, "error")
    assert error["code"] == "too-many-connections"
    assert refused.closed == 1013
    assert len(rig.sessions.sessions) == 1
    assert rig.browser(host="10.1.1.1").events[0]["type"] == "hello"


def test_a_server_ban_is_one_error_frame_then_close() -> None:
    rig = Rig()

    def banned(host: str, account_key: str | None) -> bytes | None:
        return b"! banned: You are banned from this server.\r\n"

    rig.server.operators.refusal = banned  # type: ignore[method-assign]
    browser = rig.browser()
    assert [e["type"] for e in browser.events] == ["error"]
    assert browser.events[0]["code"] == "banned"
    assert browser.closed == 1008
    assert rig.admission.total == 0


def test_loss_releases_the_caps_and_quits() -> None:
    rig = Rig()
    nc, _ = rig.line_user("lina")
    browser = rig.browser()
    assert rig.admission.total == 1
    browser.protocol.connectionLost(None)
    rig.server.flush()
    assert rig.admission.total == 0
    assert not rig.sessions.sessions
    assert "* guest2 quit (connection lost)" in nc.lines()


def test_shutdown_sends_the_notice_and_closes_1001() -> None:
    rig = Rig()
    browser = rig.browser()
    browser.read()
    clients = WebClients(rig.factory)
    idle = rig.http()
    assert clients.client_count() == 1
    rig.server.shut_down("Server shutting down")
    clients.close_clients()
    assert browser.read() == [{"type": "notice", "text": "Server shutting down"}]
    assert browser.closed == 1001
    assert idle.transport.disconnecting
    waiting = clients.wait_until_empty()
    assert not waiting.called
    browser.protocol.connectionLost(None)
    assert waiting.called


def test_reload_retunes_the_flood_bucket() -> None:
    rig = Rig(Settings(flood_burst=2, flood_rate=1.0))
    rig.browser()
    (session,) = rig.sessions.sessions
    WebClients(rig.factory).apply_settings(Settings(flood_burst=0))
    assert session.bucket is None


@pytest.mark.parametrize("value", ["https://chat.example.org", "http://localhost:8080"])
def test_web_origin_option(value: str) -> None:
    from twisted_chat.daemon.options import Options

    options = Options()
    options.parseOptions(["--web-origin", value, "--web-origin", "http://a.b"])
    assert options["settings"].web_origin == (value, "http://a.b")


@pytest.mark.parametrize("value", ["chat.example.org", "ftp://x", "http://x/path", ""])
def test_a_bad_web_origin_is_refused(value: str) -> None:
    from twisted.python.usage import UsageError

    from twisted_chat.daemon.options import Options

    with pytest.raises(UsageError, match="--web-origin"):
        Options().parseOptions(["--web-origin", value])


def test_web_origin_in_the_config_file(tmp_path: Any) -> None:
    from twisted_chat.daemon.options import Options

    config = tmp_path / "chat.toml"
    config.write_text('web-origin = ["https://Chat.Example.org/"]\n', "utf-8")
    options = Options()
    options.parseOptions(["--config", str(config)])
    assert options["settings"].web_origin == ("https://chat.example.org",)


def test_the_origins_are_read_at_each_upgrade_so_a_reload_applies() -> None:
    import attrs

    rig = Rig()
    assert rig.browser(ORIGIN).accepted
    rig.server.settings = attrs.evolve(rig.server.settings, web_origin=("http://b.c",))
    assert rig.browser(ORIGIN).rejected == 403
    assert rig.browser("http://b.c").accepted


def test_a_bug_at_the_start_of_a_session_is_no_500(log_events: list[Any]) -> None:
    rig = Rig()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    rig.server.connect = broken  # type: ignore[method-assign]
    browser = rig.browser()
    assert browser.accepted
    assert browser.transport.disconnecting
    assert b"HTTP/1.1 500" not in browser.transport.value()
    browser.protocol.connectionLost(None)
    assert rig.admission.total == 0
    assert any("while starting a web session" in str(e.get("log_format"))
               for e in log_events)  # fmt: skip


def test_the_daemon_builds_the_web_front_end() -> None:
    from test_frontends import daemon
    from zope.interface.verify import verifyObject

    from twisted_chat.daemon.options import Options
    from twisted_chat.transports.listener import IChatListener

    service = daemon(Options, "--web", "tcp:0:interface=127.0.0.1")
    (clients,) = service.listeners["web"]
    assert isinstance(clients, WebClients)
    assert verifyObject(IChatListener, clients)
    assert clients.client_count() == 0
    assert service.settings.listeners("web") == ("tcp:0:interface=127.0.0.1",)


def test_systemd_s_chat_web_socket_is_adopted() -> None:
    import socket

    from test_frontends import parse
    from twisted.python.systemd import ListenFDs

    from twisted_chat.daemon.frontends import FRONT_ENDS
    from twisted_chat.daemon.inherited_sockets import InheritedSockets
    from twisted_chat.daemon.options import Options
    from twisted_chat.daemon.startup import adopt_inherited

    with socket.socket() as sock:
        passed = InheritedSockets(ListenFDs([sock.fileno()], ("chat-web",)))
        settings = parse(Options)["settings"]
        adopted = adopt_inherited(settings, passed, front_ends=FRONT_ENDS)
    assert adopted.listeners("web") == ("systemd:name=chat-web",)


def test_pings_cost_tokens_and_a_ping_flood_is_slowed() -> None:
    rig = Rig(Settings(flood_burst=3, flood_rate=1.0))
    browser = rig.browser()
    browser.read()
    client = FrameProtocol(client=True, extensions=[])
    ping = bytes(client._serialize_frame(Opcode.PING, b"p", fin=True))
    browser.protocol.dataReceived(ping * 10)
    # Three tokens; the fourth ping finds none: answered, then reading stops.
    assert browser.transport.value().count(b"\x8a\x01p") == 4
    assert browser.transport.producerState == "paused"
    assert len(browser.protocol.unfed) == len(ping) * 6  # held, not parsed
    for _ in range(10):
        rig.clock.advance(1)
    assert browser.transport.value().count(b"\x8a\x01p") == 10
    assert browser.transport.producerState == "producing"


def test_a_message_in_too_many_frames_is_closed_1009() -> None:
    from twisted_chat.transports.web_connection import MAX_FRAGMENTS

    rig = Rig()
    browser = rig.browser()
    client = FrameProtocol(client=True, extensions=[])
    data = bytes(client._serialize_frame(Opcode.TEXT, b"a", fin=False))
    data += bytes(client._serialize_frame(Opcode.CONTINUATION, b"a", fin=False)) * (
        MAX_FRAGMENTS + 1
    )
    browser.protocol.dataReceived(data)
    browser.read()
    assert browser.closed == 1009


# -- a read's messages judged together (web_intake) -----------------------------------


def _read_of(browser: Browser, *texts: str) -> None:
    """One read holding one text frame per text."""
    browser.protocol.dataReceived(
        b"".join(browser.ws.send(TextMessage(text)) for text in texts)
    )


def test_a_read_of_many_messages_is_judged_in_order() -> None:
    rig = Rig(Settings(max_line=32, flood_burst=10, flood_rate=1.0))
    nc, _ = rig.line_user("lina")
    browser = rig.browser()
    rig.server.flush()
    browser.read()
    nc.clear()
    bucket = rig.me(browser).client.bucket
    level = bucket.level(rig.clock.seconds())
    _read_of(browser, "a", "/nick zed", "b", "   ", "é" * 17, "c")
    rig.server.flush()
    assert [line for line in nc.lines() if "<" in line] == [
        "[#lobby] <guest2> a",
        "[#lobby] <zed> b",
        "[#lobby] <zed> c",
    ]
    events = browser.read()
    kinds = [event["type"] for event in events]
    assert kinds.index("you") < kinds.index("error")
    assert of_type(events, "error")[0]["code"] == "line-too-long"
    # One charge for the read: five tokens (the long line costs none).
    assert bucket.level(rig.clock.seconds()) == pytest.approx(level - 5)


def test_a_quit_in_a_read_ends_it() -> None:
    rig = Rig()
    nc, _ = rig.line_user("lina")
    browser = rig.browser()
    rig.server.flush()
    nc.clear()
    _read_of(browser, "a", "/quit bye", "b")
    rig.server.flush()
    said = [line for line in nc.lines() if "<" in line]
    assert said == ["[#lobby] <guest2> a"]
    assert browser.transport.disconnecting


def test_bad_utf8_after_good_messages_closes_1007_after_them() -> None:
    rig = Rig()
    nc, _ = rig.line_user("lina")
    browser = rig.browser()
    rig.server.flush()
    nc.clear()
    good = browser.ws.send(TextMessage("fine"))
    browser.protocol.dataReceived(good + b"\x81\x82\x00\x00\x00\x00\xc3\x28" + good)
    rig.server.flush()
    assert [line for line in nc.lines() if "<" in line] == ["[#lobby] <guest2> fine"]
    browser.read()
    assert browser.closed == 1007


def test_a_read_the_bucket_cannot_pay_for_is_taken_one_at_a_time() -> None:
    rig = Rig(Settings(flood_burst=3, flood_rate=1.0))
    nc, _ = rig.line_user("lina")
    browser = rig.browser()
    rig.server.flush()
    nc.clear()
    _read_of(browser, "x" * 2000, "a", "b", "c", "d")  # too long: no token
    rig.server.flush()
    assert nc.lines() == [f"[#lobby] <guest2> {t}" for t in "abc"]
    assert browser.transport.producerState == "paused"
    rig.clock.advance(1)
    rig.server.flush()
    assert nc.lines()[-1] == "[#lobby] <guest2> d"


def test_frames_of_every_size_are_unmasked_whole() -> None:
    # Both ways of unmasking: the key in one multiply (up to 1020 bytes),
    # and unmask() past the table; random masks (wsproto's).
    rig = Rig(Settings(max_line=4000, flood_burst=0, flood_rate=0))
    nc, _ = rig.line_user("lina")
    browser = rig.browser()
    rig.server.flush()
    nc.clear()
    sizes = [*range(1, 130), *range(1010, 1034), 2047, 3999]
    texts = ["".join(chr(97 + (n + i) % 26) for i in range(n)) for n in sizes]
    _read_of(browser, *texts)
    rig.server.flush()
    assert nc.lines() == [f"[#lobby] <guest2> {text}" for text in texts]
