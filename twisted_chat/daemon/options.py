"""
The ``twistd chat`` command line and the ``--config`` TOML file.

Both speak the same long option names (``max-line`` on the command line is
``max-line = 1024`` in the file) and go through the same converters, so a
value is checked the same way wherever it comes from.  The command line wins
over the file; the file wins over the defaults.  Everything is checked before
any port is bound, and a mistake is a :class:`usage.UsageError` a person can
act on.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from attrs import frozen
from twisted.application.service import IService
from twisted.internet.testing import MemoryReactor
from twisted.python import usage

from twisted_chat.core.cleaning import clean_text
from twisted_chat.core.errors import InvalidName
from twisted_chat.core.names import RoomName
from twisted_chat.core.settings import Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The listen backlog for a bare ``--tcp PORT``.
BACKLOG = 1024

#: How much of a MOTD file is shown: enough for a real message, not a novel.
MOTD_MAX_LINES = 50
MOTD_MAX_CHARS = 400


class ConfigError(usage.UsageError):
    """A bad value on the command line or in the config file."""


def _integer(low: int, high: int | None = None) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected a whole number, not {value!r}")
        if isinstance(value, str):
            value = value.strip()
        try:
            number: int = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise ValueError(f"expected a whole number, not {value!r}") from None
        if number < low or (high is not None and number > high):
            bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise ValueError(f"expected a number {bounds}, not {number}")
        return number

    return convert


def _number(low: float) -> Callable[[object], float]:
    def convert(value: object) -> float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, not {value!r}")
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, not {value!r}") from None
        if not number >= low or number == float("inf"):
            raise ValueError(f"expected a number of {low:g} or more, not {value!r}")
        return number

    return convert


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, not {value!r}")
    return value


def _room(value: object) -> str:
    text = _text(value).strip()
    if not text:
        return ""
    try:
        return RoomName.parse(text).display
    except InvalidName as problem:
        raise ValueError(problem.text) from None


def _listeners(convert: Callable[[str], str]) -> Callable[[object], tuple[str, ...]]:
    def convert_all(value: object) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError(f"expected a list of strings, not {value!r}")
        return tuple(convert(_text(item)) for item in items)

    return convert_all


_PORT = _integer(0, 65535)


def tcp_description(value: str) -> str:
    """
    Turn ``--tcp`` input into a Twisted endpoint description.

    A bare port listens on every address, IPv6 too where the host has it;
    anything else must be an endpoint description Twisted can parse.
    """
    value = value.strip()
    if value.isdigit():
        port = _PORT(value)
        # Twisted's default backlog of 50 makes a burst of connections (a
        # restart with many clients reconnecting) wait for retransmits.
        if _dual_stack():
            return f"tcp6:{port}:interface=\\:\\::backlog={BACKLOG}"
        return f"tcp:{port}:backlog={BACKLOG}"
    if ":" not in value:
        raise ValueError(
            f"{value!r} is neither a port number nor an endpoint description "
            f"such as tcp:9000:interface=127.0.0.1"
        )
    if value.startswith("systemd:"):
        # Checked when the service is built, against the sockets systemd
        # actually passed (see twisted_chat.daemon.inherited_sockets.InheritedSockets).
        return value
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(MemoryReactor(), value)
    except Exception as problem:
        raise ValueError(
            f"{value!r} is not a usable endpoint description: {problem}"
        ) from None
    return value


@frozen
class UdpAddress:
    """Where a UDP listener binds, or which inherited socket it adopts."""

    host: str
    port: int
    systemd_name: str = ""

    def describe(self) -> str:
        """The canonical spelling, as ``--udp`` accepts it back."""
        if self.systemd_name:
            return f"systemd:name={self.systemd_name}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


_UDP_FORMS = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]:|(?P<host>[^:\[\]]+):)?(?P<port>\d+)$"
)


def parse_udp(value: str) -> UdpAddress:
    """``PORT``, ``HOST:PORT``, ``[IPv6]:PORT`` or ``systemd:name=NAME``."""
    value = value.strip()
    if value.startswith("systemd:"):
        name = value.removeprefix("systemd:").removeprefix("name=")
        if not name:
            raise ValueError(
                "systemd: needs a socket name, as in systemd:name=chat-udp"
            )
        return UdpAddress(host="", port=0, systemd_name=name)
    match = _UDP_FORMS.match(value)
    if match is None:
        raise ValueError(
            f"{value!r} is not a UDP address; write PORT, HOST:PORT or [IPv6]:PORT"
        )
    port = _PORT(match["port"])
    host = match["v6"] or match["host"]
    if host is None:
        host = "::" if _dual_stack() else "0.0.0.0"
    return UdpAddress(host=host, port=port)


def _udp_description(value: str) -> str:
    return parse_udp(value).describe()


def _dual_stack() -> bool:
    """Whether an IPv6 socket on ``::`` here also takes IPv4 clients."""
    if not socket.has_ipv6:
        return False
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    with probe:
        try:
            return probe.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        except OSError:
            return False


@frozen
class _Option:
    name: str
    convert: Callable[[Any], object]
    help: str


_OPTIONS = [
    _Option("default-room", _room, "Room every client joins on connect ('' = none)."),
    _Option("max-line", _integer(16, 65536), "Longest client line, in bytes."),
    _Option("motd", _text, "Text file shown to every client on connect."),
    _Option("udp-idle", _number(1), "Seconds of silence that end a UDP session."),
    _Option("flood-burst", _integer(0), "Flood control: lines at once (0 = off)."),
    _Option("flood-rate", _number(0), "Flood control: lines a second (0 = off)."),
    _Option("max-sendq", _integer(65536), "Bytes of unread output before a drop."),
    _Option(
        "max-per-ip",
        _integer(0),
        "Connections per address or /64, at once and per 10 s (0 = any).",
    ),
    _Option("max-clients", _integer(0), "Clients in all, TCP and UDP (0 = any)."),
    _Option("state-dir", _text, "Data directory (default $STATE_DIRECTORY)."),
    _Option("history-db", _text, "History file in the state dir, :memory: or off."),
    _Option("history-on-join", _integer(0, 200), "Lines replayed on /join."),
    _Option("history-max", _integer(0), "Messages kept per room (0 = no cap)."),
    _Option("history-days", _number(0), "Days messages are kept (0 = forever)."),
]
_SCALARS = {option.name: option for option in _OPTIONS}
_LISTS: dict[str, Callable[[object], tuple[str, ...]]] = {
    "tcp": _listeners(tcp_description),
    "udp": _listeners(_udp_description),
}
_DEFAULTS = Settings()


def _default(name: str) -> object:
    attribute = "motd_path" if name == "motd" else name.replace("-", "_")
    return getattr(_DEFAULTS, attribute)


def read_config(path: str) -> dict[str, object]:
    """
    Read a TOML config file whose keys are the long option names.

    :raises ConfigError: naming the file, and the key where one is at fault.
    """
    try:
        with Path(path).open("rb") as file:
            data = tomllib.load(file)
    except OSError as problem:
        raise ConfigError(
            f"cannot read config file {path}: {problem.strerror}"
        ) from None
    except tomllib.TOMLDecodeError as problem:
        raise ConfigError(f"config file {path} is not valid TOML: {problem}") from None
    for key in data:
        if key not in _SCALARS and key not in _LISTS:
            raise ConfigError(
                f"config file {path}: unknown key {key!r}; the keys are the "
                f"long option names, such as max-line or default-room"
            )
    return data


def build_settings(given: Mapping[str, object], config: str = "") -> Settings:
    """
    Merge command line, config file and defaults into checked settings.

    Called at start and again on SIGHUP with the same command line, so a
    reload sees what a restart would.

    :param given: the options the command line set, by long name.
    :param config: the config file, if any.
    :raises ConfigError: saying which option or key is wrong and why.
    """
    from_file = read_config(config) if config else {}
    values: dict[str, object] = {}
    for name in [*_LISTS, *_SCALARS]:
        if given.get(name) not in (None, [], ()):
            raw, origin = given[name], f"--{name}"
        elif name in from_file:
            raw, origin = from_file[name], f"{config}: key {name!r}"
        else:
            continue
        convert = _LISTS[name] if name in _LISTS else _SCALARS[name].convert
        try:
            values[name.replace("-", "_")] = convert(raw)
        except ValueError as problem:
            raise ConfigError(f"{origin}: {problem}") from None
    if not values.get("tcp") and not values.get("udp"):
        values["tcp"] = (tcp_description("9000"),)
        values["udp"] = (_udp_description("9001"),)
        values["listeners_defaulted"] = True
    motd_path = str(values.get("motd", ""))
    values.pop("motd", None)
    return Settings(
        **values,  # type: ignore[arg-type]
        motd_path=motd_path,
        motd=read_motd(motd_path) if motd_path else (),
        config=config,
    )


def read_motd(path: str) -> tuple[str, ...]:
    """The MOTD's lines, cleaned like user text and bounded in size."""
    try:
        raw = Path(path).read_bytes()
    except OSError as problem:
        raise ConfigError(f"cannot read MOTD file {path}: {problem.strerror}") from None
    text = raw.decode("utf-8", "replace")
    shown = []
    for line in text.splitlines()[:MOTD_MAX_LINES]:
        cleaned = clean_text(line)[:MOTD_MAX_CHARS].rstrip()
        shown.append(cleaned)
    while shown and not shown[-1]:
        shown.pop()
    return tuple(shown)


class Options(usage.Options):
    """``twistd chat`` options; ``--tcp`` and ``--udp`` may be repeated."""

    synopsis = "[options]"
    longdesc = (
        "Chat rooms for telnet, nc and nc -u users. With no --tcp and no "
        "--udp, listens on TCP 9000 and UDP 9001 on every address."
    )
    optParameters: list[list[Any]] = [
        [option.name, None, None, f"{option.help} [default: {_default(option.name)!r}]"]
        for option in _OPTIONS
    ] + [["config", "c", None, "TOML file of options (long names as keys)."]]

    def __init__(self) -> None:
        super().__init__()
        self["tcp"] = []
        self["udp"] = []

    def opt_tcp(self, value: str) -> None:
        """Listen for TCP chat: PORT or an endpoint (tcp:, ssl:, systemd:...)."""
        self["tcp"].append(value)

    def opt_udp(self, value: str) -> None:
        """Listen for UDP chat: PORT, HOST:PORT, [IPv6]:PORT, systemd:name=N."""
        self["udp"].append(value)

    def opt_version(self) -> None:
        """Print twisted-chat's version (and Twisted's) and exit."""
        from twisted_chat.daemon.startup import version_line

        # usage.Options' own --version names only Twisted's.
        print(version_line())  # noqa: T201 - the command line, not the daemon
        sys.exit(0)

    def postOptions(self) -> None:
        given = {key: value for key, value in self.items() if key != "config"}
        config = self["config"] or ""
        self["given"] = given
        self["settings"] = build_settings(given, config)


def makeService(options: Options) -> IService:
    """The twistd entry point: build the daemon on the global reactor."""
    from twisted.internet import reactor

    from twisted_chat.daemon.service import (
        StartupError,
        make_chat_service,
        raise_open_file_limit,
    )

    raise_open_file_limit()
    try:
        service = make_chat_service(
            options["settings"], reactor, given=options["given"]
        )
    except StartupError as problem:
        # twistd would print a traceback; a person needs one clear line.
        raise SystemExit(f"twistd chat: {problem}") from None
    service.handle_sighup = True
    return service


def default_state_dir(environ: Mapping[str, str] = os.environ) -> str:
    """systemd's ``StateDirectory=`` when it set one, else ``./chat-state``."""
    state = environ.get("STATE_DIRECTORY", "")
    return state.split(":", 1)[0] if state else "chat-state"
