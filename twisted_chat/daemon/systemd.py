# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""
Talking to systemd as the service manager: readiness, status, the watchdog,
reloads and shutdown.

Twisted knows nothing of ``Type=notify`` units; this module owns what the
daemon tells systemd, as building blocks that ``service.py`` wires together:

- :class:`Notifier` speaks the ``sd_notify`` protocol: one ``AF_UNIX``
  datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET``.
- :class:`SystemdNotifyService` says ``READY=1`` once the listeners are bound,
  keeps ``STATUS=`` current, pings the watchdog from the event loop (so a
  wedged loop gets the daemon restarted), and reports reloads and shutdown.
- :func:`install_sighup` makes SIGHUP mean "reload", as ``systemctl reload``
  expects; twistd leaves SIGHUP at its default action, which kills the process.

The sockets systemd passes in (socket activation) are
:mod:`twisted_chat.daemon.inherited_sockets`'s business.

Nothing here imports the reactor; callers pass it in.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import TYPE_CHECKING

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import FrameType

    from twisted.internet.interfaces import IReactorFromThreads, IReactorTime

__all__ = [
    "Notifier",
    "SystemdNotifyService",
    "install_sighup",
    "monotonic_usec",
    "watchdog_usec_from_environment",
]

_log = Logger()


def monotonic_usec() -> int:
    """
    Return ``CLOCK_MONOTONIC`` in microseconds, the clock systemd expects in
    ``MONOTONIC_USEC=`` (it matches a reload notification to the reload job).
    """
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _encode_address(notify_socket: str) -> str | None:
    """
    Turn ``$NOTIFY_SOCKET`` into an address for ``sendto``, or ``None`` when
    it is unusable.  ``@name`` is Linux's abstract namespace (a leading NUL
    byte), as in ``sd_notify(3)``.
    """
    if notify_socket.startswith("@"):
        return "\0" + notify_socket[1:]
    if notify_socket.startswith("/"):
        return notify_socket
    # systemd 254+ may hand out vsock:CID:PORT for VMs; relative paths are
    # invalid for sd_notify too.  Neither applies to a service on a host.
    _log.warn(
        "Ignoring NOTIFY_SOCKET={address!r}: only absolute paths and "
        "@abstract names are supported",
        address=notify_socket,
    )
    return None


@frozen
class Notifier:
    """
    Sends ``sd_notify`` messages to systemd, or does nothing when the process
    was not started by systemd with ``Type=notify`` (``NOTIFY_SOCKET`` unset).

    ``NOTIFY_SOCKET`` stays in the environment (``sd_notify``'s
    ``unset_environment`` is not imitated): twistd starts no child processes
    that could inherit it, ``NotifyAccess=main`` makes systemd ignore any
    other process anyway, and leaving it means :meth:`from_environment` gives
    the same answer however often it is called.

    :ivar address: the ``sendto`` address (an abstract one starts with NUL),
        or ``None`` when disabled.
    """

    address: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """
        Build a notifier from ``$NOTIFY_SOCKET``.

        :param environ: the environment to read; ``os.environ`` by default.
        """
        if environ is None:
            environ = os.environ
        notify_socket = environ.get("NOTIFY_SOCKET", "")
        if not notify_socket:
            return cls(None)
        return cls(_encode_address(notify_socket))

    @property
    def enabled(self) -> bool:
        """Whether messages go anywhere; callers skip periodic work otherwise."""
        return self.address is not None

    def notify(self, message: bytes = b"", /, **fields: str | int) -> bool:
        """
        Send one datagram made of ``message`` followed by ``KEY=value`` lines.

        ``notify(READY=1, STATUS="3 clients")`` and
        ``notify(b"READY=1\\nSTATUS=3 clients")`` send the same bytes.  A
        newline inside a value would start a new field, so it becomes a space.

        Never raises: systemd being unreachable must not take the chat down.

        :return: whether a datagram was sent.
        """
        if self.address is None:
            return False
        lines = [message] if message else []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")
            lines.append(f"{key}={text}".encode())
        data = b"\n".join(lines)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # systemd reads its notification socket promptly; if it
                # cannot, dropping one message beats blocking the reactor.
                sock.setblocking(False)
                sock.sendto(data, self.address)
        except OSError as e:
            _log.warn(
                "Could not notify systemd at {address!r}: {error}",
                address=self.address,
                error=e,
            )
            return False
        return True


def watchdog_usec_from_environment(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> int | None:
    """
    Return the watchdog interval systemd asks for (``WatchdogSec=``), in
    microseconds, or ``None`` when there is no watchdog for this process.

    Like ``sd_watchdog_enabled(3)``: ``WATCHDOG_USEC`` gives the interval, and
    a ``WATCHDOG_PID`` naming another process means the watchdog is not ours.

    :param environ: the environment to read; ``os.environ`` by default.
    :param pid: this process's id; ``os.getpid()`` by default.
    """
    if environ is None:
        environ = os.environ
    value = environ.get("WATCHDOG_USEC", "")
    if not value:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    if watchdog_pid and watchdog_pid != str(os.getpid() if pid is None else pid):
        return None
    try:
        usec = int(value)
    except ValueError:
        _log.warn("Ignoring WATCHDOG_USEC={value!r}: not a number", value=value)
        return None
    return usec if usec > 0 else None


class SystemdNotifyService(Service):
    """
    Tells systemd how the daemon is doing, for ``Type=notify`` units.

    Add it as the *last* child of the daemon's ``MultiService``: children
    start in order, so ``READY=1`` goes out after every listener is bound
    (and systemd holds back units ordered after us until then); they stop in
    reverse, so ``STOPPING=1`` goes out before the listeners close.

    The watchdog is pinged by a timer on the reactor, not a thread: if the
    event loop stops turning, the pings stop, and systemd restarts us.

    When ``NOTIFY_SOCKET`` is unset no timers run at all.
    """

    _log = Logger()

    def __init__(
        self,
        notifier: Notifier,
        reactor: IReactorTime,
        status: Callable[[], str],
        watchdog_usec: int | None = None,
        *,
        status_interval: float = 1.0,
        clock_usec: Callable[[], int] = monotonic_usec,
    ) -> None:
        """
        :param notifier: where messages go.
        :param reactor: schedules the status and watchdog timers.
        :param status: returns the one-line ``STATUS=`` text, e.g.
            ``"12 clients in 3 rooms"``; called every ``status_interval``
            seconds, and sent only when it changed.
        :param watchdog_usec: ``WATCHDOG_USEC`` (see
            :func:`watchdog_usec_from_environment`); ``WATCHDOG=1`` is sent
            every half of it.  ``None`` disables the watchdog pings.
        :param status_interval: seconds between looks at ``status``.
        :param clock_usec: ``CLOCK_MONOTONIC`` in microseconds, for
            ``MONOTONIC_USEC=``; replaceable in tests.
        """
        self._notifier = notifier
        self._reactor = reactor
        self._status = status
        self._watchdog_usec = watchdog_usec
        self._status_interval = status_interval
        self._clock_usec = clock_usec
        self._last_status: str | None = None
        self._loops: list[LoopingCall] = []

    @classmethod
    def from_environment(
        cls,
        reactor: IReactorTime,
        status: Callable[[], str],
        environ: Mapping[str, str] | None = None,
    ) -> SystemdNotifyService:
        """
        Build the service from ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and
        ``WATCHDOG_PID``; see :class:`SystemdNotifyService` for the rest.
        """
        return cls(
            Notifier.from_environment(environ),
            reactor,
            status,
            watchdog_usec_from_environment(environ),
        )

    def startService(self) -> None:
        """
        ``IService`` API: say ``READY=1`` with the current status, then start
        the status and watchdog timers.
        """
        super().startService()
        if not self._notifier.enabled:
            return
        self._notify_ready()
        self._start_loop(self._update_status, self._status_interval)
        if self._watchdog_usec is not None:
            self._start_loop(self._ping_watchdog, self._watchdog_usec / 2 / 1e6)

    def stopService(self) -> None:
        """``IService`` API: stop the timers and say ``STOPPING=1``."""
        super().stopService()
        for loop in self._loops:
            loop.stop()
        self._loops.clear()
        self._notifier.notify(STOPPING=1)

    def reloading(self) -> None:
        """
        Say ``RELOADING=1`` before re-reading the configuration; systemd shows
        the unit as reloading until :meth:`reloaded` says ``READY=1``.
        """
        self._notifier.notify(RELOADING=1, MONOTONIC_USEC=self._clock_usec())

    def reloaded(self) -> None:
        """Say ``READY=1`` (with the current status) after a reload."""
        self._notify_ready()

    def reload(self, apply: Callable[[], object]) -> None:
        """
        Run ``apply`` between :meth:`reloading` and :meth:`reloaded`.

        ``READY=1`` is sent even when ``apply`` raises (the failure is
        logged, and the daemon keeps its previous settings), so a bad
        configuration file never leaves the unit stuck in "reloading".
        """
        self.reloading()
        try:
            apply()
        except Exception:
            self._log.failure("Reload failed; keeping the previous configuration")
        finally:
            self.reloaded()

    def _start_loop(self, function: Callable[[], None], interval: float) -> None:
        loop = LoopingCall(function)
        loop.clock = self._reactor
        # Both functions catch their own errors, so the loop never dies.
        loop.start(interval, now=False)
        self._loops.append(loop)

    def _current_status(self) -> str | None:
        try:
            return self._status()
        except Exception:
            self._log.failure("While computing the systemd status line")
            return None

    def _notify_ready(self) -> None:
        status = self._current_status()
        if status is None:
            self._notifier.notify(READY=1)
        else:
            self._last_status = status
            self._notifier.notify(READY=1, STATUS=status)

    def _update_status(self) -> None:
        status = self._current_status()
        if status is not None and status != self._last_status:
            self._last_status = status
            self._notifier.notify(STATUS=status)

    def _ping_watchdog(self) -> None:
        self._notifier.notify(WATCHDOG=1)


def install_sighup(
    reactor: IReactorFromThreads, callback: Callable[[], object]
) -> Callable[[], None]:
    """
    Make SIGHUP run ``callback`` in the reactor thread; return a function
    that restores the previous handler.

    ``systemctl reload`` sends SIGHUP (``ExecReload=kill -HUP $MAINPID``),
    but twistd only handles SIGINT and SIGTERM (and SIGUSR1 when logging to
    a file), so an unhandled SIGHUP would kill the daemon.  Signal handlers
    may interrupt the reactor anywhere, so the handler only queues
    ``callback`` with ``callFromThread``, as Twisted's own handlers do.

    Call it from the main thread (a rule of :func:`signal.signal`).
    """

    def handler(_signum: int, _frame: FrameType | None) -> None:
        reactor.callFromThread(callback)

    previous = signal.signal(signal.SIGHUP, handler)

    def uninstall() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_DFL if previous is None else previous)

    return uninstall
