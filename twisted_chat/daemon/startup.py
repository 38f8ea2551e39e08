"""
Start-up: which listeners the daemon opens, and one clear line when it cannot.

Two things a deployer meets before the first client:

- **Socket activation out of the box.**  With ``twisted-chat.socket`` and
  ``twisted-chat-udp.socket`` enabled, systemd holds ports 9000 and 9001 and
  passes them as ``chat-tcp`` and ``chat-udp`` (each front-end's
  ``activation_socket`` in :mod:`twisted_chat.daemon.frontends`).  When the
  configuration names no listener of that kind, :func:`adopt_inherited`
  adopts the passed socket instead of binding the same port again (which
  fails: address in use).  With nothing passed and nothing configured, the
  defaults stay (TCP 9000, UDP 9001).
- **The start-up heap out of the collector's way** (:func:`freeze_startup_heap`).
- **Ports that cannot be had.**  twistd binds ports after ``makeService``, in
  ``privilegedStartService``, and a taken port used to end in a page of
  traceback.  :class:`ListenerGroup` turns the failure into one line that
  names the port and what to do, as ``makeService`` does for bad options.
"""

from __future__ import annotations

import errno
import gc
import platform
import sys
from types import TracebackType
from typing import TYPE_CHECKING

import attrs
from twisted.application.service import MultiService, Service
from twisted.copyright import version as twisted_version
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from twisted_chat import __version__
from twisted_chat.core.settings import Settings
from twisted_chat.daemon.inherited_sockets import (
    InheritedSocketError,
    InheritedSockets,
    systemd_socket_name,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from twisted_chat.daemon.frontends import FrontEnd

__all__ = [
    "ListenFailure",
    "ListenerGroup",
    "StartupError",
    "adopt_inherited",
    "explain_listen_failure",
    "freeze_startup_heap",
    "unadopted_socket",
    "version_line",
]

_log = Logger()


class StartupError(Exception):
    """The daemon cannot start; the message says why and what to fix."""


def adopt_inherited(
    settings: Settings,
    inherited: InheritedSockets,
    *,
    front_ends: Sequence[FrontEnd],
    quiet: bool = False,
) -> Settings:
    """
    The settings with the sockets systemd passed filled in where the
    configuration names no listener of their kind.

    A front-end adopts the socket named by its ``activation_socket``
    (``chat-tcp``, ``chat-udp``).  Listeners the configuration names
    explicitly are kept as they are; the default listeners (nothing
    configured) give way to any socket adopted, as a configured listener
    would: what the deployer set up is all that opens.

    :param quiet: do not log the adoption (on reload, which repeats it).
    """
    passed = inherited.names()
    adopted: dict[str, tuple[str, ...]] = {}
    for front_end in front_ends:
        name, kind = front_end.activation_socket, front_end.name
        if not name or name not in passed:
            continue
        # Listeners named explicitly stay; the chat's defaults give way
        # (``--metrics`` is never a default: it stays when given).
        if settings.listeners(kind) and (
            not settings.listeners_defaulted or not front_end.chat
        ):
            continue
        adopted[kind] = (f"systemd:name={name}",)
        if not quiet:
            _log.info(
                "adopting the socket systemd passed as {name} for {kind}: the "
                "configuration names no {kind} listener",
                name=name,
                kind=kind,
            )
    if not adopted:
        return settings
    chat_adopted = any(f.chat and f.name in adopted for f in front_ends)
    if settings.listeners_defaulted and chat_adopted:
        for front_end in front_ends:
            if front_end.chat:
                adopted.setdefault(front_end.name, ())
        settings = attrs.evolve(settings, listeners_defaulted=False)
    return settings.with_listeners(adopted)


def unadopted_socket(
    front_end: FrontEnd, settings: Settings, inherited: InheritedSockets
) -> str:
    """
    The name of the socket systemd passed for ``front_end`` that the
    configuration overrode ("" if none): when binding then fails, it is the
    likely cause.
    """
    name = front_end.activation_socket
    if not name or name not in inherited.names():
        return ""
    used = {_socket_name(value) for value in settings.listeners(front_end.name)}
    return "" if name in used else name


def _socket_name(description: str) -> str | None:
    try:
        return systemd_socket_name(description)
    except InheritedSocketError:
        return None


def explain_listen_failure(
    kind: str, option: str, problem: Exception, passed: str = ""
) -> str:
    """
    One line saying which listener failed and what to do about it.

    :param kind: ``TCP`` or ``UDP``, as people say it.
    :param option: the option that configures it, such as ``--tcp``.
    :param passed: the name of a socket systemd passed for this kind and the
        configuration overrode (see :func:`unadopted_socket`).
    """
    if isinstance(problem, InheritedSocketError):
        return f"{option}: {problem}"
    if isinstance(problem, CannotListenError):
        if problem.interface is None:  # a UNIX socket: the port is its path
            path = problem.port
            if isinstance(path, bytes):
                path = path.decode("utf-8", "replace")
            where = f"the socket {path}"
        else:
            where = f"{kind} port {problem.port}"
            if problem.interface not in ("", "::", "0.0.0.0"):
                where += f" on {problem.interface}"
        cause = problem.socketError
    else:
        where = f"{kind} ({option})"
        cause = problem
    code = getattr(cause, "errno", None)
    if code == errno.EADDRINUSE:
        advice = (
            f"address already in use; stop whatever uses it or choose another "
            f"with {option}"
        )
        if passed:
            advice += (
                f" (systemd passed a socket named {passed}: leave "
                f"{option.removeprefix('--')} out of the configuration to "
                f"adopt it)"
            )
    elif code == errno.EACCES:
        advice = (
            "permission denied; ports below 1024 need root, or a systemd "
            ".socket unit that opens them (see deploy/README.md)"
        )
    elif code == errno.EADDRNOTAVAIL:
        advice = f"this host has no such address; choose one it has with {option}"
    else:
        reason = getattr(cause, "strerror", None) or str(cause)
        advice = f"{reason[:1].lower()}{reason[1:]}; check {option}"
    return f"cannot listen on {where}: {advice}"


class ListenFailure(Exception):
    """A listener cannot listen; the message is one line for a person."""


def _excepthook(
    kind: type[BaseException],
    value: BaseException,
    traceback: TracebackType | None,
) -> None:
    """Print a :class:`ListenFailure` as one line; anything else as Python does."""
    if isinstance(value, ListenFailure):
        sys.stderr.write(f"twistd chat: {value}\n")
        sys.stderr.flush()
        return
    sys.__excepthook__(kind, value, traceback)


class ListenerGroup(MultiService):
    """
    The listeners of one kind, started in order; a listener that cannot
    listen stops twistd with one line instead of a traceback.

    twistd binds in ``privilegedStartService``, which is where this looks;
    later failures (a listener started outside twistd) are the listener's
    own business.

    Why an exception and a ``sys.excepthook`` rather than ``SystemExit``:
    without ``--nodaemon`` twistd's parent process waits for its daemon child
    to report on a pipe, which it does only for an ``Exception`` (its parent
    never closes the pipe's other end, so a ``SystemExit`` would leave it
    waiting forever).  The hook keeps the traceback that twistd lets the
    exception end in down to the one line; the exit status is 1.
    """

    def __init__(self, kind: str, option: str, passed: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.option = option
        self.passed = passed

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        for listener in self:
            try:
                listener.privilegedStartService()
            except (CannotListenError, InheritedSocketError, OSError) as problem:
                line = explain_listen_failure(
                    self.kind, self.option, problem, self.passed
                )
                if sys.excepthook is sys.__excepthook__:
                    sys.excepthook = _excepthook
                raise ListenFailure(line) from None


def version_line() -> str:
    """What ``twistd chat --version`` prints: ours, then Twisted's and Python's."""
    return (
        f"twisted-chat {__version__} (Twisted {twisted_version}, "
        f"Python {platform.python_version()})"
    )


#: Young collections between two full ones (CPython's default is 10): a
#: full collection walks every client's objects, so the default made one
#: every few hundred connects during a connect storm, 8 of them (0.8 s of
#: CPU, the longest a 240 ms pause of the reactor) while 19,000 clients
#: connected (``bench/connect_rate.py``).  CPython still skips a full
#: collection until the long-lived objects grew by a quarter since the last.
FULL_COLLECTION_EVERY = 100


def freeze_startup_heap() -> None:
    """
    Exempt what start-up made (modules, classes, settings, stores) from
    every later garbage collection: it lives as long as the process; and
    make full collections rarer (:data:`FULL_COLLECTION_EVERY`).

    A full collection walks every tracked object, and the imports alone
    make ~90,000 of them that took 60 ms of CPU to walk here: a pause of
    the reactor, so of every client, each time clients' objects trigger
    one (``gc.freeze``, as its documentation suggests for long-lived
    processes; collected first, so no garbage is frozen).  Chat state made
    later (participants, rooms) is collected as before, by the young
    generations as often as before; what reaches the oldest generation is
    walked ten times less often.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
