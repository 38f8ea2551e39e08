"""
The chat page in a real browser (issue 16): Debian's headless Chromium,
driven by Playwright, on a real ``twistd -n chat --tcp ... --web ...``,
beside an nc-style TCP user, in the same rooms.

What a person with only a browser relies on (PROTOCOL.md, "Web clients"):
they chat with the others, privately too, see history and times, the page
shows every text as text, comes back by itself after the server restarts,
fits a phone and works with the keyboard alone.
"""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _browser import ChatPage, chromium
from conftest import Daemon, LineClient, free_port
from playwright.sync_api import Browser, expect

pytestmark = pytest.mark.slow

XSS = "<img src=x onerror=alert(1)>"


class WebChat:
    """``twistd -n chat`` with TCP and web listeners, restartable on the same ports."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.tmp = tmp
        self.args = args
        self.tcp_port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.web_port = free_port()
        self.daemon: Daemon | None = None
        self.runs = 0
        self.clients: list[LineClient] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/"

    def start(self) -> None:
        run = self.tmp / f"run{self.runs}"
        run.mkdir()
        self.runs += 1
        self.daemon = Daemon(
            [
                "--tcp",
                f"tcp:{self.tcp_port}:interface=127.0.0.1",
                "--udp",
                f"127.0.0.1:{self.udp_port}",
                "--web",
                f"tcp:{self.web_port}:interface=127.0.0.1",
                "--state-dir",
                str(self.tmp / "state"),
                *self.args,
            ],
            run,
        )
        self.daemon.wait_for_port(self.tcp_port)
        self.daemon.wait_for_port(self.web_port)

    def stop(self) -> None:
        assert self.daemon is not None
        assert self.daemon.stop() == -signal.SIGTERM, self.daemon.log
        self.daemon = None

    def nc(self, nick: str, room: str | None = None) -> LineClient:
        """A TCP user past the welcome, called ``nick``, in ``room``."""
        client = LineClient(self.tcp_port)
        self.clients.append(client)
        client.expect(r"^\* Welcome")
        client.say(f"/nick {nick}")
        client.expect(rf"^\* You are now known as {nick}\.")
        if room is not None:
            client.say(f"/join {room}")
            client.expect(rf"^\* You joined {room}")
        return client


@contextmanager
def running(tmp_path: Path, *args: str) -> Iterator[WebChat]:
    world = WebChat(tmp_path, *args)
    world.start()
    try:
        yield world
    finally:
        for client in world.clients:
            client.close()
        if world.daemon is not None:
            world.daemon.kill()


@pytest.fixture
def web_chat(tmp_path: Path) -> Iterator[WebChat]:
    with running(tmp_path) as world:
        yield world


@pytest.fixture
def unflooded_chat(tmp_path: Path) -> Iterator[WebChat]:
    """Flood control off, for a test that needs many lines quickly."""
    with running(tmp_path, "--flood-burst", "0", "--flood-rate", "0") as world:
        yield world


@pytest.fixture(scope="module")
def launched() -> Iterator[Browser]:
    """One Chromium for the module (starting one takes a second or two)."""
    with chromium() as running_browser:
        yield running_browser


@pytest.fixture
def browser(launched: Browser) -> Iterator[Browser]:
    """The module's Chromium; the tabs a test opened are closed after it."""
    yield launched
    for context in launched.contexts:
        context.close()


def open_page(
    browser: Browser,
    web_chat: WebChat,
    nick: str,
    room: str | None = "#dev",
    *,
    width: int = 1100,
    height: int = 720,
) -> ChatPage:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = ChatPage(context.new_page()).open(web_chat.url, nick)
    if room is not None:
        page.say(f"/join {room}")
        expect(page.page.locator("#view-title")).to_have_text(room)
    return page


def test_two_pages_and_an_nc_user_chat_in_a_room(
    browser: Browser, web_chat: WebChat
) -> None:
    lina = web_chat.nc("lina", "#dev")
    alice = open_page(browser, web_chat, "alice")
    lina.expect(r"^\* alice joined #dev$")
    bob = open_page(browser, web_chat, "bob")
    lina.expect(r"^\* bob joined #dev$")
    alice.expect_line("bob joined #dev", "event")

    alice.say("hello from alice")
    alice.expect_line("hello from alice", "mine")  # shown as sent (no echo)
    assert lina.expect(r"^\[#dev\] <alice>") == "[#dev] <alice> hello from alice"
    said = bob.expect_line("hello from alice", "message")
    expect(said.locator(".nick")).to_have_text("alice")
    time = said.locator("time")
    expect(time).to_have_text(re.compile(r"^\d\d:\d\d$"))
    assert time.get_attribute("title")  # the full time on hover
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.*Z", time.get_attribute("datetime") or ""
    )

    bob.say("bob here")
    assert lina.expect(r"^\[#dev\] <bob>") == "[#dev] <bob> bob here"
    alice.expect_line("bob here", "message")
    lina.say("and lina by nc")
    alice.expect_line("and lina by nc", "message")
    bob.expect_line("and lina by nc", "message")

    # The member list: lina made #dev, so she is its operator.
    expect(alice.page.locator("#members li")).to_have_count(3)
    assert sorted(alice.members()) == ["@lina", "alice", "bob"]

    # Unread counts: alice is in #lobby too (the default room).
    lina.say("/join #lobby")
    lina.say("in the lobby")
    lobby = alice.conversation("#lobby")
    expect(lobby.locator(".unread")).to_have_text("1")
    alice.switch("#lobby")
    alice.expect_line("in the lobby", "message")
    expect(lobby.locator(".unread")).to_be_hidden()
    lina.say("/part #lobby")
    alice.expect_line("lina left #lobby", "event")
    alice.assert_clean()
    bob.assert_clean()


def test_private_messages_and_actions(browser: Browser, web_chat: WebChat) -> None:
    lina = web_chat.nc("lina", "#dev")
    alice = open_page(browser, web_chat, "alice")
    bob = open_page(browser, web_chat, "bob")
    lina.expect(r"^\* bob joined #dev$")

    # A private message: its own conversation, apart from the room.
    alice.say("/msg bob just between us")
    expect(alice.conversation("bob")).to_be_visible()
    bob_side = bob.conversation("alice")
    expect(bob_side.locator(".unread")).to_have_text("1")
    expect(bob.line("just between us")).to_have_count(0)  # not in #dev
    bob.switch("alice")
    bob.expect_line("just between us", "message")
    bob.say("got it")  # typed in the conversation: a private reply
    alice.switch("bob")
    alice.expect_line("just between us", "mine")
    alice.expect_line("got it", "message")
    lina.say("/msg alice from the terminal")
    expect(alice.conversation("lina").locator(".unread")).to_have_text("1")
    alice.switch("lina")
    alice.expect_line("from the terminal", "message")
    alice.say("hello terminal")
    assert lina.expect(r"^\[PM\]") == "[PM] <alice> hello terminal"

    # /me both ways.
    alice.switch("#dev")
    alice.say("/me waves")
    assert lina.expect(r"^\[#dev\] \* alice") == "[#dev] * alice waves"
    bob.switch("#dev")
    expect(bob.line("waves", "action").locator(".nick")).to_have_text("alice")
    alice.expect_line("waves", "action")
    lina.say("/me nods")
    alice.expect_line("nods", "action")
    bob.expect_line("nods", "action")
    alice.assert_clean()
    bob.assert_clean()


def test_history_on_join(browser: Browser, web_chat: WebChat) -> None:
    lina = web_chat.nc("lina", "#old")
    lina.say("said before you came")
    lina.say("/me was here first")
    lina.say("/ping")
    lina.expect(r"^\* pong")  # the messages are in
    alice = open_page(browser, web_chat, "alice", "#old")
    earlier = alice.log.locator("li.earlier")
    expect(earlier.filter(has_text="said before you came")).to_have_count(1)
    expect(earlier.filter(has_text="was here first")).to_have_class(
        re.compile("action")
    )
    expect(alice.log.locator("li.history-mark")).to_have_count(1)
    lina.say("said after")
    line = alice.expect_line("said after", "message")
    expect(line).not_to_have_class(re.compile("earlier"))
    alice.assert_clean()


def test_markup_from_anyone_shows_as_text(browser: Browser, web_chat: WebChat) -> None:
    lina = web_chat.nc("lina", "#dev")
    alice = open_page(browser, web_chat, "alice")
    bob = open_page(browser, web_chat, "bob")
    lina.expect(r"^\* bob joined #dev$")

    lina.say(f"room {XSS}")
    lina.say(f"/topic topic {XSS}")
    lina.say(f"/me acts {XSS}")
    lina.say(f"/msg alice private {XSS}")
    alice.say(f"page {XSS}")
    alice.say(f"/nick {XSS}")  # refused: the error quotes it, as text
    alice.say(f"/join #{XSS}")
    for page in (alice, bob):
        expect(page.page.locator("#topic")).to_have_text(f"topic {XSS}")
        expect(page.line(f"room {XSS}", "message").locator(".text")).to_have_text(
            f"room {XSS}"
        )
        page.expect_line(f"acts {XSS}", "action")
    bob.expect_line(f"page {XSS}", "message")
    expect(alice.log.locator("li.error")).to_have_count(2)
    alice.switch("lina")
    alice.expect_line(f"private {XSS}", "message")
    assert lina.expect(r"^\[#dev\] <alice>") == f"[#dev] <alice> page {XSS}"

    # A page that opens afterwards gets it all again as history and topic.
    carol = open_page(browser, web_chat, "carol")
    expect(carol.log.locator("li.earlier", has_text=f"room {XSS}")).to_have_count(1)
    expect(carol.page.locator("#topic")).to_have_text(f"topic {XSS}")
    for page in (alice, bob, carol):
        assert page.page.locator("img").count() == 0
        assert page.page.evaluate("document.querySelectorAll('[onerror]').length") == 0
        page.assert_clean()


def test_reconnects_after_the_daemon_restarts(
    browser: Browser, web_chat: WebChat
) -> None:
    alice = open_page(browser, web_chat, "alice")
    early = web_chat.nc("early", "#dev")
    early.say("before the restart")
    alice.expect_line("before the restart", "message")
    alice.say("mine before the restart")
    early.expect(r"^\[#dev\] <alice> mine before")
    frames: list[str] = []
    alice.page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda frame: frames.append(str(frame))),
    )
    web_chat.stop()
    alice.expect_status("reconnecting in")
    expect(alice.page.locator("#retry")).to_be_visible()
    alice.expect_line("Disconnected from the server", "notice")
    web_chat.start()
    alice.expect_status("Connected as alice", timeout=40_000)  # nick reclaimed
    expect(alice.page.locator("#view-title")).to_have_text("#dev")
    expect(alice.page.locator("#members li", has_text="alice")).to_have_count(1)
    # What was on screen is not shown again from the replayed history.
    expect(alice.line("before the restart")).to_have_count(2)
    expect(alice.log.locator("li.earlier")).to_have_count(0)
    replayed = [f for f in frames if '"history"' in f and "before the restart" in f]
    assert replayed, frames  # it was replayed, and not shown twice
    lina = web_chat.nc("lina", "#dev")
    alice.expect_line("lina joined #dev", "event")
    lina.say("welcome back")
    alice.expect_line("welcome back", "message")
    alice.say("thanks")
    assert lina.expect(r"^\[#dev\] <alice>") == "[#dev] <alice> thanks"
    alice.assert_clean()


def test_a_phone_sized_screen(browser: Browser, web_chat: WebChat) -> None:
    lina = web_chat.nc("lina", "#dev")
    alice = open_page(browser, web_chat, "alice", width=390, height=844)
    lina.say("a rather long line " * 12 + "unbroken" * 20)
    alice.expect_line("unbroken", "message")
    page = alice.page
    for part in ("#input", "#send", "ol.log:not([hidden])"):
        expect(page.locator(part)).to_be_in_viewport()
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], widths  # no horizontal scroll
    members = page.locator("#members-panel")
    toggle = page.locator("#members-toggle")
    expect(members).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(members).to_be_visible()
    expect(members.locator("li", has_text="lina")).to_have_count(1)
    alice.assert_clean()


def test_keyboard_alone(browser: Browser, web_chat: WebChat) -> None:
    lina = web_chat.nc("lina", "#dev")
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    alice = ChatPage(context.new_page()).open(web_chat.url)
    page = alice.page
    expect(page.locator("[role=log][aria-live=polite]:not([hidden])")).to_have_count(1)
    expect(page.locator("label[for=input]")).not_to_be_empty()
    page.locator("body").focus()
    for _ in range(40):  # Tab through the page until the text box has focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "input":
            break
    else:
        raise AssertionError("Tab never reached the text box")
    outline = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()"
    )
    assert outline[0] != "none", outline  # focus is visible
    assert outline[1] >= 2, outline
    page.keyboard.type("/nick alice")
    page.keyboard.press("Enter")
    alice.expect_status("Connected as alice")
    page.keyboard.type("/join #dev")
    page.keyboard.press("Enter")
    lina.expect(r"^\* alice joined #dev$")
    page.keyboard.type("typed, not clicked")
    page.keyboard.press("Enter")
    assert lina.expect(r"^\[#dev\] <alice>") == "[#dev] <alice> typed, not clicked"
    # Alt+ArrowUp and Alt+ArrowDown move between conversations, focus stays.
    title = page.locator("#view-title")
    expect(title).to_have_text("#dev")
    page.keyboard.press("Alt+ArrowDown")
    expect(title).to_have_text("#lobby")
    page.keyboard.press("Alt+ArrowUp")
    expect(title).to_have_text("#dev")
    assert page.evaluate("document.activeElement.id") == "input"
    # A room's button, reached with Tab, opens it with Enter.
    for _ in range(20):  # Shift+Tab back from the text box to #lobby's button
        page.keyboard.press("Shift+Tab")
        if "#lobby" in page.evaluate("document.activeElement.textContent"):
            break
    else:
        raise AssertionError("Shift+Tab never reached #lobby's button")
    page.keyboard.press("Enter")
    expect(title).to_have_text("#lobby")
    assert page.evaluate("document.activeElement.id") == "input"
    alice.assert_clean()


def test_voices_nick_changes_kicks_and_quits_update_the_members(
    browser: Browser, web_chat: WebChat
) -> None:
    lina = web_chat.nc("lina", "#dev")
    alice = open_page(browser, web_chat, "alice")
    bob = open_page(browser, web_chat, "bob")
    lina.expect(r"^\* bob joined #dev$")
    expect(alice.page.locator("#members li")).to_have_count(3)

    lina.say("/voice bob")
    expect(alice.page.locator("#members li", has_text="bob")).to_have_text("+bob")
    assert alice.members()[:2] == ["@lina", "+bob"]  # operators, voices, others
    bob.say("/nick robert")
    alice.expect_line("bob is now known as robert", "event")
    expect(alice.page.locator("#members li", has_text="robert")).to_have_text("+robert")
    bob.expect_status("Connected as robert")
    lina.say("/topic a new topic")
    alice.expect_line("lina set the topic: a new topic", "event")
    expect(alice.page.locator("#topic")).to_have_text("a new topic")

    lina.say("/kick robert enough")
    alice.expect_line("robert was removed from #dev by lina (enough)", "event")
    expect(alice.page.locator("#members li")).to_have_count(2)
    bob.expect_line("You were removed from #dev by lina (enough)", "error")
    expect(bob.page.locator("#view-title")).to_have_text("#dev (not joined)")

    lina.say("/quit gone fishing")
    alice.expect_line("lina quit (gone fishing)", "event")
    expect(alice.page.locator("#members li")).to_have_count(1)

    # The buttons: leave the room; join one (the box is filled in to finish).
    alice.page.locator("#leave-button").click()
    expect(alice.conversation("#dev")).to_have_count(0)
    expect(alice.page.locator("#view-title")).to_have_text("#lobby")
    alice.page.locator("#join-button").click()
    expect(alice.page.locator("#input")).to_have_value("/join #")
    expect(alice.page.locator("#input")).to_be_focused()
    alice.page.keyboard.type("rust")
    alice.page.keyboard.press("Enter")
    expect(alice.page.locator("#view-title")).to_have_text("#rust")
    alice.page.locator("#nick-button").click()
    alice.page.keyboard.type("alicia")
    alice.page.keyboard.press("Enter")
    alice.expect_status("Connected as alicia")
    alice.assert_clean()
    bob.assert_clean()


def test_a_conversation_keeps_its_last_500_lines(
    browser: Browser, unflooded_chat: WebChat
) -> None:
    lina = unflooded_chat.nc("lina", "#dev")
    alice = open_page(browser, unflooded_chat, "alice")
    lina.sock.sendall(b"".join(b"line %d\n" % n for n in range(600)))
    alice.expect_line("line 599", "message")
    lines = alice.log.locator("li")
    expect(lines).to_have_count(500)  # the page's bound (MAX_LINES in state.js)
    expect(lines.first).to_have_text(re.compile(r"line 100$"))
    alice.assert_clean()


def test_back_off_doubles_and_retry_now_does_not_wait(
    browser: Browser, web_chat: WebChat
) -> None:
    alice = open_page(browser, web_chat, "alice")
    web_chat.stop()
    # Each failed attempt doubles the wait: 1 s, 2 s, 4 s, 8 s (at most 30 s).
    for seconds in (1, 2, 4, 8):
        alice.expect_status(f"reconnecting in {seconds} s")
    # Retry now tries at once: it fails (still down), and the next wait is 16 s.
    retry = alice.page.locator("#retry")
    retry.click()
    alice.expect_status("reconnecting in 16 s", timeout=3_000)
    web_chat.start()
    retry.click()
    alice.expect_status("Connected as alice", timeout=5_000)
    expect(retry).to_be_hidden()
    expect(alice.page.locator("#view-title")).to_have_text("#dev")
    alice.assert_clean()
