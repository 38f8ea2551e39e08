"""SIGHUP's reload, and the MOTD file's bounds, without a subprocess."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from twisted_chat.daemon.config import MOTD_MAX_CHARS, MOTD_MAX_LINES, read_motd
from twisted_chat.daemon.options import Options
from twisted_chat.daemon.service import ChatService, make_chat_service
from twisted_chat.transports.tcp import ChatLineProtocol


def daemon(config: Path) -> ChatService:
    options = Options()
    options.parseOptions(["--config", str(config)])
    return make_chat_service(
        options["settings"], MemoryReactorClock(), options["given"]
    )


def connect(service: ChatService) -> ChatLineProtocol:
    address = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = cast("ChatLineProtocol", service.tcp_factory.buildProtocol(address))
    protocol.makeConnection(StringTransport(peerAddress=address))
    return protocol


def test_reload_applies_live_settings_to_existing_connections(tmp_path: Path) -> None:
    """Flood control, caps and the MOTD change live; listeners wait for a restart."""
    motd = tmp_path / "motd.txt"
    motd.write_text("old news\n", encoding="utf-8")
    config = tmp_path / "chat.toml"
    config.write_text(
        f'tcp = ["tcp:0"]\nhistory-db = "off"\nmotd = "{motd}"\nflood-rate = 5\n',
        encoding="utf-8",
    )
    service = daemon(config)
    client = connect(service)
    motd.write_text("new news\n", encoding="utf-8")
    config.write_text(
        f'tcp = ["tcp:1"]\nhistory-db = "off"\nmotd = "{motd}"\n'
        "flood-rate = 2\nflood-burst = 3\nmax-per-ip = 7\n",
        encoding="utf-8",
    )
    assert service.reload()
    assert service.settings.motd == ("new news",)
    assert service.settings.tcp == ("tcp:0",)  # needs a restart
    assert service.admission.max_per_ip == 7
    assert client._bucket is not None
    assert (client._bucket.burst, client._bucket.rate) == (3, 2.0)

    config.write_text('tcp = ["tcp:0"]\nhistory-db = "off"\nflood-rate = 0\n')
    assert service.reload()
    assert client._bucket is None


def test_reload_with_a_broken_file_keeps_the_old_settings(tmp_path: Path) -> None:
    """A config file that does not parse changes nothing."""
    config = tmp_path / "chat.toml"
    config.write_text('tcp = ["tcp:0"]\nhistory-db = "off"\nmax-line = 512\n')
    service = daemon(config)
    before = service.settings
    config.write_text("max-line = = 3\n")
    assert not service.reload()
    assert service.settings is before


def test_motd_is_cleaned_and_bounded(tmp_path: Path) -> None:
    """A MOTD file loses escapes, long lines and trailing blank lines."""
    motd = tmp_path / "motd.txt"
    lines = ["\x1b[2Jhello", "x" * (MOTD_MAX_CHARS + 50)]
    lines += [f"line {n}" for n in range(MOTD_MAX_LINES + 10)]
    motd.write_text("\n".join(lines), encoding="utf-8")
    shown = read_motd(str(motd))
    assert shown[0] == "hello"
    assert shown[1] == "x" * MOTD_MAX_CHARS
    assert len(shown) == MOTD_MAX_LINES
    motd.write_text("hi\n\n\n", encoding="utf-8")
    assert read_motd(str(motd)) == ("hi",)
