"""
Headless Chromium for the web page's tests (issue 16): how it is launched,
and a tab on the chat page with the few verbs the tests speak in (type a
line, find a shown line, switch conversation).

Debian's ``/usr/bin/chromium``, driven by Playwright, never a browser
Playwright would download (there is none to download here, nor in CI).
A tab fails its test on any dialog (an ``alert`` from injected script) or
script error, whatever the test checks besides.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    expect,
    sync_playwright,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
expect.set_options(timeout=TIMEOUT_MS)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, closed at the end."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def guard(page: Page) -> list[str]:
    """
    Keep any dialog (an ``alert`` from injected script, dismissed), script
    error and Content-Security-Policy violation (an inline script or
    style), so a test can assert there were none.
    """
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(f"csp: {message.text}")

    def on_dialog(dialog: Any) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    page.on("console", on_console)
    return problems


class ChatPage:
    """One browser tab on the chat page: type lines, find what it shows."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems = guard(page)
        self.requests: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))

    def open(self, url: str, nick: str | None = None) -> ChatPage:
        self.origin = url.split("/", 3)[2]
        self.page.goto(url)
        self.expect_status("Connected as")
        if nick is not None:
            self.say(f"/nick {nick}")
            self.expect_status(f"Connected as {nick}")
        return self

    def say(self, line: str) -> None:
        """Type ``line`` into the text box and press Enter."""
        box = self.page.locator("#input")
        box.fill(line)
        box.press("Enter")
        expect(box).to_have_value("")

    def expect_status(self, text: str, timeout: float = TIMEOUT_MS) -> None:
        expect(self.page.locator("#status")).to_contain_text(text, timeout=timeout)

    @property
    def log(self) -> Locator:
        """The conversation on screen."""
        return self.page.locator("ol.log:not([hidden])")

    def line(self, text: str, kind: str = "") -> Locator:
        """Shown lines of ``kind`` (a class: message, action...) with ``text``."""
        return self.log.locator(f"li.line{'.' + kind if kind else ''}", has_text=text)

    def expect_line(self, text: str, kind: str = "") -> Locator:
        found = self.line(text, kind).last
        expect(found).to_be_visible()
        return found

    def conversation(self, name: str) -> Locator:
        """The button of room or private conversation ``name``."""
        return self.page.locator("button.conversation").filter(
            has=self.page.locator(
                "span.name", has_text=re.compile(f"^{re.escape(name)}$")
            )
        )

    def switch(self, name: str) -> None:
        self.conversation(name).click()
        expect(self.page.locator("#view-title")).to_have_text(name)

    def members(self) -> list[str]:
        """The member list as shown: prefix and nick (``@lina``)."""
        items = self.page.locator("#members li")
        return [
            items.nth(i).inner_text().replace("\n", "").strip()
            for i in range(items.count())
        ]

    def assert_clean(self) -> None:
        """
        No dialog opened, no error in the page's script, no CSP violation,
        and nothing asked of another host (the page ships all it needs).
        """
        assert self.problems == [], self.problems
        elsewhere = [
            url for url in self.requests if url.split("/", 3)[2] != self.origin
        ]
        assert elsewhere == [], elsewhere
