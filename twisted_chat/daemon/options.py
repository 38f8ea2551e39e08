"""
The ``twistd chat`` command line: the options and ``makeService``.

The options are those of :mod:`twisted_chat.daemon.config` plus one
repeatable listener option per front-end of
:data:`~twisted_chat.daemon.frontends.FRONT_ENDS` (``--tcp``, ``--udp``);
what they mean, and how the ``--config`` file joins in, is the config
module's business.  twistd finds this module through the dropin in
``twisted/plugins/``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, ClassVar

from twisted.application.service import IService
from twisted.python import usage

from twisted_chat.daemon.addresses import dual_stack
from twisted_chat.daemon.config import OPTIONS, build_settings, default
from twisted_chat.daemon.frontends import FRONT_ENDS, FrontEnd

__all__ = ["Options", "makeService"]

#: Whether a bare port listens on IPv4 too (tests/test_udp_integration.py
#: asks here).
_dual_stack = dual_stack


def _listener_option(front_end: FrontEnd) -> Any:
    def add(self: Options, value: str) -> None:
        self[front_end.name].append(value)

    add.__doc__ = front_end.help
    return add


def _longdesc(front_ends: Sequence[FrontEnd]) -> str:
    options = " and no ".join(
        front_end.option for front_end in front_ends if front_end.chat
    )
    defaults = " and ".join(
        f"{front_end.kind} {front_end.default}"
        for front_end in front_ends
        if front_end.default
    )
    return (
        f"Chat rooms for telnet, nc and nc -u users. With no {options}, "
        f"listens on {defaults} on every address."
    )


class Options(usage.Options):
    """
    ``twistd chat`` options; each front-end's listener option may be repeated.

    A subclass with another ``front_ends`` gets their options (tests add a
    front-end this way).
    """

    #: The ways in whose listener options this command line has.
    front_ends: ClassVar[tuple[FrontEnd, ...]] = FRONT_ENDS

    synopsis = "[options]"
    longdesc = _longdesc(FRONT_ENDS)
    optParameters: ClassVar[list[list[Any]]] = [
        [option.name, None, None, f"{option.help} [default: {default(option.name)!r}]"]
        for option in OPTIONS
        if not option.repeated
    ] + [["config", "c", None, "TOML file of options (long names as keys)."]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _add_listener_options(cls)

    def __init__(self) -> None:
        super().__init__()
        for front_end in self.front_ends:
            self[front_end.name] = []
        for option in OPTIONS:
            if option.repeated:
                self[option.name] = []

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
        self["settings"] = build_settings(given, config, front_ends=self.front_ends)


def _repeated_option(name: str, text: str) -> Any:
    def add(self: Options, value: str) -> None:
        self[name].append(value)

    add.__doc__ = text
    return add


def _add_listener_options(cls: type[Options]) -> None:
    """Give ``cls`` an ``opt_NAME`` method per front-end, as usage.Options wants."""
    cls.longdesc = _longdesc(cls.front_ends)
    for front_end in cls.front_ends:
        setattr(cls, f"opt_{front_end.name}", _listener_option(front_end))
    for option in OPTIONS:
        if option.repeated:
            method = f"opt_{option.name.replace('-', '_')}"
            setattr(cls, method, _repeated_option(option.name, option.help))


_add_listener_options(Options)


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
            options["settings"],
            reactor,
            given=options["given"],
            front_ends=options.front_ends,
        )
    except StartupError as problem:
        # twistd would print a traceback; a person needs one clear line.
        raise SystemExit(f"twistd chat: {problem}") from None
    service.handle_sighup = True
    service.freeze_heap = True
    return service
