"""Command-line options and the --config file, and the twistd plugin."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage

from twisted_chat.core.settings import Settings
from twisted_chat.daemon import addresses
from twisted_chat.daemon.options import Options
from twisted_chat.transports.udp_listeners import parse_udp


def parse(*argv: str) -> Settings:
    config = Options()
    config.parseOptions(list(argv))
    settings = config["settings"]
    assert isinstance(settings, Settings)
    return settings


@pytest.fixture
def ipv4_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make bare ports spell out the same on hosts with and without IPv6."""
    monkeypatch.setattr(addresses, "dual_stack", lambda: False)


def test_defaults_listen_on_9000_and_9001(ipv4_only: None) -> None:
    """With no --tcp and no --udp, TCP 9000 and UDP 9001 on every address."""
    settings = parse()
    assert settings == Settings(
        tcp=("tcp:9000:backlog=4096",), udp=("0.0.0.0:9001",), listeners_defaulted=True
    )


def test_listeners_set_explicitly_are_not_defaulted(ipv4_only: None) -> None:
    """Socket activation may replace the defaults, never what was asked for."""
    assert not parse("--tcp", "9000").listeners_defaulted
    assert parse("--tcp", "9000").udp == ()
    assert not parse("--udp", "9001").listeners_defaulted


def test_bare_port_is_dual_stack_where_the_host_has_ipv6(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bare port listens on :: (IPv4 too) when IPv6 is there."""
    monkeypatch.setattr(addresses, "dual_stack", lambda: True)
    settings = parse("--tcp", "9000", "--udp", "9001")
    assert settings.tcp == ("tcp6:9000:interface=\\:\\::backlog=4096",)
    assert settings.udp == ("[::]:9001",)


def test_every_option_is_parsed(tmp_path: Path, ipv4_only: None) -> None:
    """Each long option lands in the settings, converted to its type."""
    motd = tmp_path / "motd.txt"
    motd.write_text("Hello\n\x1b[31mred\x1b[0m\n\n", encoding="utf-8")
    settings = parse(
        "--tcp", "tcp:7000:interface=127.0.0.1",
        "--tcp", "7001",
        "--udp", "127.0.0.1:7002",
        "--udp", "[::1]:7003",
        "--default-room", "dev",
        "--max-line", "2048",
        "--motd", str(motd),
        "--udp-idle", "60",
        "--flood-burst", "20",
        "--flood-rate", "2.5",
        "--max-sendq", "200000",
        "--max-per-ip", "4",
        "--max-clients", "100",
        "--state-dir", str(tmp_path),
        "--history-db", ":memory:",
        "--history-on-join", "5",
        "--history-max", "50",
        "--history-days", "7",
    )  # fmt: skip
    assert settings == Settings(
        tcp=("tcp:7000:interface=127.0.0.1", "tcp:7001:backlog=4096"),
        udp=("127.0.0.1:7002", "[::1]:7003"),
        default_room="#dev",
        max_line=2048,
        motd_path=str(motd),
        motd=("Hello", "red"),
        udp_idle=60.0,
        flood_burst=20,
        flood_rate=2.5,
        max_sendq=200000,
        max_per_ip=4,
        max_clients=100,
        state_dir=str(tmp_path),
        history_db=":memory:",
        history_on_join=5,
        history_max=50,
        history_days=7.0,
    )


def test_empty_default_room_means_none() -> None:
    """--default-room '' turns auto-join off."""
    assert parse("--default-room", "").default_room == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-line", "lots"], "--max-line: expected a whole number, not 'lots'"),
        (["--max-line", "3"], "--max-line: expected a number from 16 to 65536"),
        (["--flood-rate", "-1"], "--flood-rate: expected a number of 0 or more"),
        (["--tcp", "nope"], "--tcp: 'nope' is neither a port number"),
        (["--tcp", "70000"], "--tcp: expected a number from 0 to 65535"),
        (["--tcp", "bogus:1:2"], "--tcp: 'bogus:1:2' is not a usable endpoint"),
        (["--udp", "host:port"], "--udp: 'host:port' is not a UDP address"),
        (["--default-room", "#no spaces"], "--default-room: A room name holds"),
        (["--motd", "/nonexistent/motd"], "cannot read MOTD file /nonexistent/motd"),
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], message: str) -> None:
    """A wrong value is refused with a sentence naming the option."""
    with pytest.raises(usage.UsageError) as caught:
        parse(*argv)
    assert message in str(caught.value)


def test_udp_address_forms() -> None:
    """--udp takes PORT, HOST:PORT, [IPv6]:PORT and systemd:name=NAME."""
    assert parse_udp("127.0.0.1:9001").describe() == "127.0.0.1:9001"
    assert parse_udp("[::1]:9001").describe() == "[::1]:9001"
    assert parse_udp("localhost:9").host == "localhost"
    assert parse_udp("systemd:name=chat-udp").systemd_name == "chat-udp"


def test_config_file_sets_options_and_command_line_wins(
    tmp_path: Path, ipv4_only: None
) -> None:
    """Keys are long option names; the command line overrides the file."""
    config = tmp_path / "chat.toml"
    config.write_text(
        'tcp = ["tcp:7100:interface=127.0.0.1"]\n'
        "max-line = 512\n"
        'default-room = "#hall"\n'
        "flood-rate = 1\n",
        encoding="utf-8",
    )
    settings = parse("--config", str(config), "--max-line", "600")
    assert settings.tcp == ("tcp:7100:interface=127.0.0.1",)
    assert settings.udp == ()
    assert settings.max_line == 600
    assert settings.default_room == "#hall"
    assert settings.flood_rate == 1.0
    assert settings.config == str(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max-lines = 5\n", "unknown key 'max-lines'"),
        ('max-line = "big"\n', "key 'max-line': expected a whole number"),
        ("max-line = true\n", "key 'max-line': expected a whole number"),
        ("tcp = 9000\n", "key 'tcp': expected a list of strings"),
        ("this is not toml\n", "is not valid TOML"),
    ],
)
def test_bad_config_file_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    """A mistake in the config file is a usage error naming the key."""
    config = tmp_path / "chat.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(usage.UsageError) as caught:
        parse("--config", str(config))
    assert message in str(caught.value)


def test_missing_config_file() -> None:
    """A config path that does not exist is named in the error."""
    with pytest.raises(usage.UsageError, match="cannot read config file /no/such"):
        parse("--config", "/no/such/chat.toml")


def test_example_config_is_every_default(ipv4_only: None) -> None:
    """deploy/chat.toml parses to exactly the built-in defaults."""
    example = Path(__file__).parent.parent / "deploy" / "chat.toml"
    settings = parse("--config", str(example))
    assert settings == Settings(
        tcp=("tcp:9000:backlog=4096",),
        udp=("0.0.0.0:9001",),
        listeners_defaulted=True,
        config=str(example),
    )


def test_version_names_twisted_chat(capsys: pytest.CaptureFixture[str]) -> None:
    """``twistd chat --version`` is about us, not only about Twisted."""
    import twisted
    from twisted_chat import __version__

    with pytest.raises(SystemExit) as exited:
        Options().parseOptions(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(
        f"twisted-chat {__version__} (Twisted {twisted.__version__}"
    )


def test_twistd_finds_the_chat_plugin() -> None:
    """getPlugins finds a service maker with tapname 'chat'."""
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert "chat" in makers
    assert makers["chat"].options is Options


def test_wheel_ships_the_dropin(tmp_path: Path) -> None:
    """The built wheel carries twisted/plugins/twisted_chat.py, without __init__."""
    from hatchling.builders.wheel import WheelBuilder

    root = Path(__file__).parent.parent
    wheel = Path(next(WheelBuilder(str(root)).build(directory=str(tmp_path))))
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/twisted_chat.py" in names
    for shipped in (
        "twisted_chat/core/chat.py",
        "twisted_chat/core/data/confusables.txt",
        "twisted_chat/transports/tcp.py",
        "twisted_chat/history/writer.py",
        "twisted_chat/daemon/options.py",
    ):
        assert shipped in names
    assert not any(name.startswith("twisted/plugins/__init__") for name in names)
    assert "twisted/__init__.py" not in names
