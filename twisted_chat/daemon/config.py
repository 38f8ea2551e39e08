"""
Configuration: the option converters, the ``--config`` TOML file and the MOTD.

The command line and the file speak the same long option names
(``max-line`` on the command line is ``max-line = 1024`` in the file) and go
through the same converters, so a value is checked the same way wherever it
comes from.  The command line wins over the file; the file wins over the
defaults.  Everything is checked before any port is bound, and a mistake is
a :class:`ConfigError` a person can act on.

The listener options (``--tcp``, ``--udp``) are not listed here: each
front-end in :mod:`twisted_chat.daemon.frontends` brings its own, and
:func:`build_settings` reads them with the rest.

The file also holds the one thing the command line cannot: the
``[operators]`` table of server operators and their argon2id hashes
(:func:`read_operators`), so that no hash is ever in ``ps`` output or a
shell history.  A mistake in it names the operator, never the value.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import argon2
from attrs import frozen
from twisted.python import usage

from twisted_chat.core.cleaning import clean_text
from twisted_chat.core.errors import ChatError, InvalidName
from twisted_chat.core.names import Nick, RoomName
from twisted_chat.core.settings import Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from twisted_chat.daemon.frontends import FrontEnd

__all__ = [
    "MOTD_MAX_CHARS",
    "MOTD_MAX_LINES",
    "OPERATORS",
    "OPTIONS",
    "ConfigError",
    "build_settings",
    "default",
    "default_state_dir",
    "integer",
    "read_config",
    "read_motd",
    "read_operators",
]

#: How much of a MOTD file is shown: enough for a real message, not a novel.
MOTD_MAX_LINES = 50
MOTD_MAX_CHARS = 400
#: The config file's table of server operators (``name = "$argon2id$..."``).
OPERATORS = "operators"


class ConfigError(usage.UsageError):
    """A bad value on the command line or in the config file."""


def integer(low: int, high: int | None = None) -> Callable[[object], int]:
    """A converter to a whole number from ``low`` to ``high`` (or more)."""

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


def _switch(on: str, off: str) -> Callable[[object], bool]:
    """A converter from ``on`` or ``off`` (or a TOML boolean) to a bool."""

    def convert(value: object) -> bool:
        if isinstance(value, bool):
            return value
        word = value.strip().lower() if isinstance(value, str) else None
        if word in (on, off):
            return word == on
        raise ValueError(f"expected {on} or {off}, not {value!r}")

    return convert


def _listeners(convert: Callable[[str], str]) -> Callable[[object], tuple[str, ...]]:
    def convert_all(value: object) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError(f"expected a list of strings, not {value!r}")
        return tuple(convert(_text(item)) for item in items)

    return convert_all


def _origin(value: object) -> str:
    """A page origin as browsers send it: ``scheme://host[:port]``, lower case."""
    text = _text(value).strip().lower().rstrip("/")
    scheme, sep, rest = text.partition("://")
    if (
        not sep
        or scheme not in ("http", "https")
        or not rest
        or any(char in rest for char in "/?#@ ")
    ):
        raise ValueError(
            f"expected an origin such as https://chat.example.org or "
            f"http://localhost:8080, not {value!r}"
        )
    return text


def _origins(value: object) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"expected a list of origins, not {value!r}")
    return tuple(_origin(item) for item in items)


@frozen
class Option:
    """
    One option: its long name, converter, help; a ``repeated`` one may be
    given more than once on the command line (a list in the file).
    """

    name: str
    convert: Callable[[Any], object]
    help: str
    repeated: bool = False


#: Every option but ``--config`` and the front-ends' listener options.
OPTIONS = [
    Option("default-room", _room, "Room every client joins on connect ('' = none)."),
    Option("max-line", integer(16, 65536), "Longest client line, in bytes."),
    Option("motd", _text, "Text file shown to every client on connect."),
    Option("udp-idle", _number(1), "Seconds of silence that end a UDP session."),
    Option("flood-burst", integer(0), "Flood control: lines at once (0 = off)."),
    Option("flood-rate", _number(0), "Flood control: lines a second (0 = off)."),
    Option("max-sendq", integer(65536), "Bytes of unread output before a drop."),
    Option(
        "max-per-ip",
        integer(0),
        "Connections per address or /64, at once and per 10 s (0 = any).",
    ),
    Option("max-clients", integer(0), "Clients in all, TCP and UDP (0 = any)."),
    Option("state-dir", _text, "Data directory (default $STATE_DIRECTORY)."),
    Option("history-db", _text, "History file in the state dir, :memory: or off."),
    Option("history-on-join", integer(0, 200), "Lines replayed on /join."),
    Option("history-max", integer(0), "Messages kept per room (0 = no cap)."),
    Option("history-days", _number(0), "Days messages are kept (0 = forever)."),
    Option("accounts", _switch("on", "off"), "Accounts, nick protection: on, off."),
    Option("cluster", _text, "redis://HOST:PORT/DB: be one node of a cluster."),
    Option("cluster-password", _text, "The cluster's Redis password, if not in URL."),
    Option("irc-name", _text, "The IRC server's name ('' = this host's name)."),
    Option(
        "web-origin",
        _origins,
        "A page origin whose WebSockets --web accepts, repeatable "
        "(default: the page's own).",
        repeated=True,
    ),
    Option(
        "registration",
        _switch("open", "closed"),
        "Who makes accounts: open (anyone), closed (server operators).",
    ),
]
_SCALARS = {option.name: option for option in OPTIONS}
_DEFAULTS = Settings()
#: Options whose ``Settings`` attribute is not their name with underscores.
_ATTRIBUTES = {"motd": "motd_path", "registration": "registration_open"}
#: How ``--help`` spells the defaults of the on/off options.
_SHOWN = {"accounts": {True: "on", False: "off"}}
_SHOWN["registration"] = {True: "open", False: "closed"}


def default(name: str) -> object:
    """The built-in default of the option ``name``, for ``--help``."""
    value = getattr(_DEFAULTS, _ATTRIBUTES.get(name, name.replace("-", "_")))
    return _SHOWN[name][value] if name in _SHOWN else value


def read_config(path: str, front_ends: Sequence[FrontEnd]) -> dict[str, object]:
    """
    Read a TOML config file whose keys are the long option names.

    :param front_ends: whose listener options are keys too.
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
    listeners = {front_end.name for front_end in front_ends}
    for key in data:
        if key not in _SCALARS and key not in listeners and key != OPERATORS:
            raise ConfigError(
                f"config file {path}: unknown key {key!r}; the keys are the "
                f"long option names, such as max-line or default-room"
            )
    return data


def build_settings(
    given: Mapping[str, object],
    config: str = "",
    *,
    front_ends: Sequence[FrontEnd],
) -> Settings:
    """
    Merge command line, config file and defaults into checked settings.

    Called at start and again on SIGHUP with the same command line, so a
    reload sees what a restart would.  With no chat listener configured
    (``--metrics`` is none), every front-end that has a default listens there.

    :param given: the options the command line set, by long name.
    :param config: the config file, if any.
    :param front_ends: the ways in, whose listener options are read first.
    :raises ConfigError: saying which option or key is wrong and why.
    """
    from_file = read_config(config, front_ends) if config else {}
    converters: dict[str, Callable[[Any], object]] = {
        front_end.name: _listeners(front_end.parse) for front_end in front_ends
    }
    converters.update({name: option.convert for name, option in _SCALARS.items()})
    values: dict[str, Any] = {}
    for name, convert in converters.items():
        if given.get(name) not in (None, [], ()):
            raw, origin = given[name], f"--{name}"
        elif name in from_file:
            raw, origin = from_file[name], f"{config}: key {name!r}"
        else:
            continue
        try:
            values[name] = convert(raw)
        except ValueError as problem:
            raise ConfigError(f"{origin}: {problem}") from None
    listeners = {fe.name: values.pop(fe.name, ()) for fe in front_ends}
    # --metrics lets no chat client in: alone, the chat's defaults listen.
    defaulted = not any(listeners[fe.name] for fe in front_ends if fe.chat)
    if defaulted:
        listeners = {
            fe.name: (fe.parse(fe.default),) if fe.default else listeners[fe.name]
            for fe in front_ends
        }
    motd_path = str(values.pop("motd", ""))
    settings = Settings(
        **{
            _ATTRIBUTES.get(name, name.replace("-", "_")): value
            for name, value in values.items()
        },
        motd_path=motd_path,
        motd=read_motd(motd_path) if motd_path else (),
        config=config,
        listeners_defaulted=defaulted,
        operators=read_operators(from_file.get(OPERATORS), config),
    )
    return settings.with_listeners(listeners)


def read_operators(table: object, path: str) -> tuple[tuple[str, str], ...]:
    """
    The ``[operators]`` table as ``(name, hash)`` pairs, in the file's order.

    Each name must be a valid nickname (an operator logs in with it), no two
    the same name, and each value an argon2id hash as
    ``python -m twisted_chat.passwd`` prints it.  None (no table): none.

    :raises ConfigError: naming the file and the operator, never the value.
    """
    if table is None:
        return ()
    where = f"config file {path}: [{OPERATORS}]"
    if not isinstance(table, dict):
        raise ConfigError(
            f'{where} must be a table of name = "argon2id hash" lines, not a value'
        )
    operators: dict[str, tuple[str, str]] = {}
    for name, value in table.items():
        shown = repr(name[:40])
        if name in _SCALARS:
            raise ConfigError(
                f"{where}: {shown} is an option; in TOML a key after a"
                f" [table] belongs to it, so put {name} above [{OPERATORS}]"
            )
        try:
            nick = Nick.parse(name)
        except ChatError as problem:
            raise ConfigError(f"{where}: operator {shown}: {problem.text}") from None
        if not _is_argon2id(value):
            raise ConfigError(
                f"{where}: operator {shown}: the value is not an argon2id hash;"
                " make one with python -m twisted_chat.passwd"
            )
        if nick.key in operators:
            first = operators[nick.key][0]
            raise ConfigError(
                f"{where}: operators {first!r} and {shown} are the same name"
            )
        operators[nick.key] = (nick.display, value)
    return tuple(operators.values())


def _is_argon2id(value: object) -> bool:
    """Whether ``value`` reads as an argon2id hash (its parameters parse)."""
    if not isinstance(value, str) or not value.startswith("$argon2id$"):
        return False
    try:
        argon2.extract_parameters(value)
    except (argon2.exceptions.InvalidHashError, ValueError):
        return False
    return True


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


def default_state_dir(environ: Mapping[str, str] = os.environ) -> str:
    """systemd's ``StateDirectory=`` when it set one, else ``./chat-state``."""
    state = environ.get("STATE_DIRECTORY", "")
    return state.split(":", 1)[0] if state else "chat-state"
