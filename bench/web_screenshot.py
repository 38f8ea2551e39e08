"""
The README's picture of the web page (issue 16): ``python bench/web_screenshot.py
OUT.png`` starts its own ``twistd -n chat`` on free loopback ports, lets two
browser users and a terminal user chat in a room, and saves what one of the
browser users sees.

A script rather than a hand-made image, so the picture can be remade
whenever the page changes; it runs Debian's ``/usr/bin/chromium`` headless
through Playwright, as the page's tests do.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

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
TWISTD = str(Path(sys.executable).with_name("twistd"))
TIMEOUT = 20.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("twistd exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)  # polling a condition, bounded by the deadline
        else:
            return
    raise SystemExit(f"port {port} never opened")


class Terminal:
    """An nc user: lines out, lines read until one matches."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def say(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def expect(self, start: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            while b"\r\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\r\n", 1)
                if raw.decode("utf-8", "replace").startswith(start):
                    return
            data = self.sock.recv(65536)
            if not data:
                break
            self.buffer += data
        raise SystemExit(f"the terminal user never saw {start!r}")


def say(page: Page, line: str) -> None:
    box = page.locator("#input")
    box.fill(line)
    box.press("Enter")
    expect(box).to_have_value("")


def nick(page: Page, url: str, name: str) -> None:
    page.goto(url)
    expect(page.locator("#status")).to_contain_text("Connected as")
    say(page, f"/nick {name}")
    expect(page.locator("#status")).to_contain_text(f"Connected as {name}")


def scene(out: Path, tcp_port: int, web_port: int) -> None:
    url = f"http://127.0.0.1:{web_port}/"
    lina = Terminal(tcp_port)
    lina.expect("* Welcome")
    lina.say("/nick lina")
    lina.say("/join #dev")
    lina.expect("* You joined #dev")
    lina.say("/topic Release 0.4 on Friday: reviews in #dev, please")
    lina.say("morning! the web client is up on the test box")
    lina.say("/me puts the kettle on")
    lina.say("/ping")
    lina.expect("* pong")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        alice = browser.new_page(viewport={"width": 1100, "height": 680})
        bob = browser.new_page(viewport={"width": 1100, "height": 680})
        nick(alice, url, "alice")
        nick(bob, url, "bob")
        say(alice, "/join #dev")
        lina.expect("* alice joined #dev")
        say(bob, "/join #dev")
        lina.expect("* bob joined #dev")
        lina.say("/voice bob")
        say(alice, "hi all, trying it from a browser")
        lina.expect("[#dev] <alice>")
        say(bob, "same here, on my phone later")
        lina.expect("[#dev] <bob>")
        lina.say("nice: history, times and the member list are all there")
        say(bob, "/msg alice can you look at my patch after lunch?")
        lina.say("/msg #lobby is anyone around for the 14:00 deploy?")
        say(alice, "/me looks at the release notes")
        lina.expect("[#dev] * alice")
        expect(alice.locator("#members li")).to_have_count(3)
        expect(
            alice.locator("button.conversation .unread:not([hidden])")
        ).to_have_count(2)
        alice.locator("#input").fill("sounds good, ")
        alice.locator("#input").focus()
        alice.screenshot(path=str(out))
        browser.close()
    lina.say("/quit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args()
    tcp_port = free_port()
    web_port = free_port()
    udp_port = free_port(socket.SOCK_DGRAM)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "twistd.log"
        with log.open("wb") as output:
            proc = subprocess.Popen(  # noqa: S603 - our own twistd, fixed arguments
                [
                    TWISTD,
                    "--nodaemon",
                    "--pidfile=",
                    "chat",
                    "--tcp",
                    f"tcp:{tcp_port}:interface=127.0.0.1",
                    "--udp",
                    f"127.0.0.1:{udp_port}",
                    "--web",
                    f"tcp:{web_port}:interface=127.0.0.1",
                    "--state-dir",
                    tmp,
                ],
                cwd=tmp,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_for_port(tcp_port, proc)
                wait_for_port(web_port, proc)
                scene(args.out, tcp_port, web_port)
            except BaseException:
                print(log.read_text("utf-8", "replace"), file=sys.stderr)
                raise
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=TIMEOUT)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
