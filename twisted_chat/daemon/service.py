"""
Assembly: the only module that knows ports, endpoints and the reactor.

:func:`make_chat_service` builds one :class:`ChatService` (a ``MultiService``)
with named children, started in this order and stopped in reverse:

- ``accounts``: the accounts file and the password hasher
  (:mod:`twisted_chat.daemon.accounts`), closed last;
- ``history``: the message store, so it is stopped (and every queued message
  committed) only after the last client has gone;
- one :class:`~twisted_chat.daemon.startup.ListenerGroup` per front-end that
  has listeners (``tcp``, then ``udp``: the order of
  :data:`~twisted_chat.daemon.frontends.FRONT_ENDS`), so twistd exits
  non-zero with a clear message when a port is taken;
- ``systemd``: ``READY=1`` once everything above is bound, then ``STATUS=``
  and the watchdog.

Every front-end shares one :class:`~twisted_chat.core.chat.ChatServer`, so
TCP and UDP users meet in the same rooms.  The service reaches their clients
only through :class:`~twisted_chat.transports.listener.IChatListener`: to
close them at shutdown, abort the stragglers and hand them reloaded settings.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import attrs
from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger

from twisted_chat.core.admission import Admission
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.lines import counted
from twisted_chat.core.logs import LIMITER, WINDOW
from twisted_chat.core.settings import Settings
from twisted_chat.daemon.accounts import AccountsService, open_accounts
from twisted_chat.daemon.config import ConfigError, build_settings, default_state_dir
from twisted_chat.daemon.frontends import FRONT_ENDS, FrontEnd, Wiring
from twisted_chat.daemon.inherited_sockets import InheritedSockets
from twisted_chat.daemon.startup import (
    ListenerGroup,
    StartupError,
    adopt_inherited,
    freeze_startup_heap,
    unadopted_socket,
)
from twisted_chat.daemon.systemd import SystemdNotifyService, install_sighup
from twisted_chat.history.memory import HistoryStoreError, IHistoryStore, MemoryStore
from twisted_chat.history.sqlite import SqliteStore
from twisted_chat.transports.listener import IChatListener, TcpClients
from twisted_chat.transports.tcp import ChatServerFactory

__all__ = [
    "PRUNE_INTERVAL",
    "RESTART_ONLY",
    "SHUTDOWN_GRACE",
    "ChatService",
    "StartupError",
    "StoreService",
    "make_chat_service",
    "open_store",
    "raise_open_file_limit",
]

_log = Logger()

#: How long shutdown waits for clients to take their last lines before it
#: cuts them off; PROTOCOL.md promises an exit within 5 seconds.
SHUTDOWN_GRACE = 3.0
#: How often old history is pruned.
PRUNE_INTERVAL = 3600.0

#: Settings a SIGHUP cannot change besides every front-end's listeners:
#: they are bound sockets and open files.
RESTART_ONLY = ("state_dir", "history_db", "irc_name")


class ChatService(MultiService):
    """The daemon: the shared chat core, its listeners and housekeeping."""

    def __init__(
        self,
        server: ChatServer,
        admission: Admission,
        reactor: Any,
        given: Mapping[str, object],
        *,
        front_ends: Sequence[FrontEnd] = FRONT_ENDS,
    ) -> None:
        super().__init__()
        self.server = server
        self.admission = admission
        self.reactor = reactor
        self.given = dict(given)
        self.front_ends = tuple(front_ends)
        #: Each front-end's listeners, by front-end name.
        self.listeners: dict[str, Sequence[IChatListener]] = {}
        self.handle_sighup = False
        #: Move what start-up made out of the garbage collector's way (twistd).
        self.freeze_heap = False
        self._uninstall_sighup: Callable[[], None] | None = None
        #: The sockets systemd passed, adopted again on reload so a reload
        #: does not mistake adopted listeners for changed ones.
        self.inherited: InheritedSockets | None = None

    @property
    def settings(self) -> Settings:
        """The settings in force (they change on reload)."""
        return self.server.settings

    @property
    def tcp_factory(self) -> ChatServerFactory:
        """The TCP front-end's factory, for tests and tools that connect to it."""
        (clients,) = self.listeners["tcp"]
        return cast("ChatServerFactory", cast("TcpClients", clients).factory)

    def _all_listeners(self) -> list[IChatListener]:
        return [one for listeners in self.listeners.values() for one in listeners]

    def startService(self) -> None:
        if self.handle_sighup:
            # Before the children start: the systemd child's READY=1 lets
            # `systemctl reload` through, and an unhandled SIGHUP kills us.
            self._uninstall_sighup = install_sighup(self.reactor, self._on_sighup)
        super().startService()
        if self.freeze_heap:
            freeze_startup_heap()
        names = [front_end.name for front_end in self.front_ends]
        _log.info(
            "twisted-chat ready: " + " ".join(f"{name}={{{name}}}" for name in names),
            **{name: list(self.settings.listeners(name)) for name in names},
        )

    def stopService(self) -> Deferred[None]:
        """
        Tell everybody, let them go cleanly, then stop the listeners.

        Clients that do not read cannot hold the process: after
        :data:`SHUTDOWN_GRACE` seconds their connections are aborted.
        """
        if self._uninstall_sighup is not None:
            self._uninstall_sighup()
            self._uninstall_sighup = None
        _log.info("shutting down: {status}", status=self.server.status())
        self.server.shut_down("Server shutting down")
        listeners = self._all_listeners()
        for listener in listeners:
            listener.close_clients()
        closing = gatherResults([one.wait_until_empty() for one in listeners])
        timer = self.reactor.callLater(SHUTDOWN_GRACE, self._abort_stragglers)

        def stop_children(_: object) -> Deferred[Any]:
            if timer.active():
                timer.cancel()
            return maybeDeferred(MultiService.stopService, self)

        def flush_logs(result: object) -> object:
            # Counts of rate-limited log lines still in their window, even
            # when a child failed to stop.
            LIMITER.flush(everything=True)
            return result

        closing.addCallback(stop_children)
        closing.addBoth(flush_logs)
        return closing.addCallback(lambda _: None)

    def _abort_stragglers(self) -> None:
        listeners = self._all_listeners()
        stragglers = sum(listener.client_count() for listener in listeners)
        if stragglers:
            _log.warn(
                "aborting {connections} that did not close in time",
                connections=counted(stragglers, "connection", "connections"),
                count=stragglers,
            )
        for listener in listeners:
            listener.abort_clients()

    # -- reload ------------------------------------------------------------------

    def _on_sighup(self) -> None:
        if "systemd" in self.namedServices:
            notify = self.getServiceNamed("systemd")
            if isinstance(notify, SystemdNotifyService):
                notify.reload(self.reload)
                return
        self.reload()

    def reload(self) -> bool:
        """
        Re-read the config file and the MOTD and apply what can change live.

        A bad file keeps the old settings and logs why; listeners and the
        history file need a restart, which is logged too.

        :return: whether new settings were applied.
        """
        old = self.settings
        try:
            new = build_settings(self.given, old.config, front_ends=self.front_ends)
            if self.inherited is not None:
                new = adopt_inherited(
                    new, self.inherited, front_ends=self.front_ends, quiet=True
                )
        except ConfigError as problem:
            _log.error(
                "reload failed, keeping the old settings: {problem}",
                problem=str(problem),
            )
            return False
        names = [front_end.name for front_end in self.front_ends]
        changed = [n for n in names if new.listeners(n) != old.listeners(n)]
        changed += [n for n in RESTART_ONLY if getattr(new, n) != getattr(old, n)]
        for name in changed:
            _log.warn(
                "reload: {name} changed; it takes effect after a restart",
                name=name.replace("_", "-"),
            )
        live = attrs.evolve(
            new, **{name: getattr(old, name) for name in RESTART_ONLY}
        ).with_listeners({name: old.listeners(name) for name in names})
        self.server.settings = live
        self.admission.max_clients = live.max_clients
        self.admission.max_per_ip = live.max_per_ip
        for listener in self._all_listeners():
            listener.apply_settings(live)
        _log.info("reloaded settings from {config}", config=old.config or "(none)")
        return True


class StoreService(Service):
    """Starts the message store, and stops it after everything else."""

    def __init__(self, store: IHistoryStore) -> None:
        self.store = store

    def startService(self) -> None:
        super().startService()
        self.store.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.store.stop()


def raise_open_file_limit() -> None:
    """
    Lift the soft limit on open files to the hard limit.

    Every client is a file descriptor; the usual soft limit of 1024 would
    refuse clients long before ``--max-clients``.  A sandbox may refuse to
    say or to change the limit (the shipped unit's ``SystemCallFilter=``
    refuses ``@resources``; glibc reads and sets limits with ``prlimit64``):
    then the daemon logs it and starts with the limit it has.
    """
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except OSError as problem:
        _log.warn(
            "could not read the open file limit, leaving it as it is: {problem}",
            problem=str(problem),
        )
        return
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as problem:
            _log.warn(
                "could not raise the open file limit from {soft} to {hard}: {problem}",
                soft=soft,
                hard=hard,
                problem=str(problem),
            )
            return
        soft = hard
    _log.info("open file limit: {soft}", soft=soft)


def open_store(settings: Settings, reactor: Any) -> IHistoryStore | None:
    """
    The history store the settings ask for, checked before any port is bound.

    :raises StartupError: for a corrupt or unwritable database.
    """
    choice = settings.history_db.strip()
    if choice.lower() in ("", "off", "none"):
        return None
    if choice == ":memory:":
        return MemoryStore(
            max_per_room=settings.history_max, max_age_days=settings.history_days
        )
    state_dir = settings.state_dir or default_state_dir(os.environ)
    path = Path(state_dir, choice)
    try:
        return SqliteStore.open(
            str(path),
            reactor=reactor,
            writer="process",
            max_per_room=settings.history_max,
            max_age_days=settings.history_days,
        )
    except HistoryStoreError as problem:
        raise StartupError(str(problem)) from None


def make_chat_service(
    settings: Settings,
    reactor: Any,
    given: Mapping[str, object] | None = None,
    *,
    inherited: InheritedSockets | None = None,
    front_ends: Sequence[FrontEnd] = FRONT_ENDS,
) -> ChatService:
    """
    Build the whole daemon from its settings.

    :param reactor: the reactor to listen with; a ``MemoryReactor`` in tests.
    :param given: the command-line options, kept so SIGHUP can rebuild the
        settings with the command line still winning over the file.
    :param inherited: sockets passed by systemd; read from the process
        environment when not given.
    :param front_ends: the ways in; the settings hold their listeners.
    :raises StartupError: when a listener, the history or the accounts
        file cannot be set up.
    """
    if inherited is None:
        inherited = InheritedSockets.for_process()
    settings = adopt_inherited(settings, inherited, front_ends=front_ends)
    cluster = None
    if settings.cluster:  # imported only here: alone, nothing of Redis loads
        from twisted_chat.daemon.cluster import open_cluster

        cluster = open_cluster(settings, reactor)
    store = cluster.history if cluster else open_store(settings, reactor)
    accounts = cluster.accounts if cluster else open_accounts(settings, reactor)
    server = ChatServer(
        settings,
        reactor.seconds,
        store,
        defer=lambda f: reactor.callLater(0, f),
        call_later=reactor.callLater,
        accounts=accounts,
    )
    # One table of refusals for /stats: the caps' and the server bans'.
    admission = Admission(
        max_clients=settings.max_clients,
        max_per_ip=settings.max_per_ip,
        refusals=server.operators.stats.refusals,
    )
    service = ChatService(
        server, admission, reactor, given or {}, front_ends=front_ends
    )
    service.inherited = inherited
    accounts_service = AccountsService(accounts)
    accounts_service.setName("accounts")
    accounts_service.setServiceParent(service)
    # Client-caused log lines are rate-limited (twisted_chat.core.logs); write the
    # counts of those held back even when nothing else of their kind comes.
    flush_logs = TimerService(WINDOW, LIMITER.flush)
    flush_logs.clock = reactor
    flush_logs.setServiceParent(service)

    if store is not None:
        history = StoreService(store)
        history.setName("history")
        history.setServiceParent(service)
        prune = TimerService(PRUNE_INTERVAL, lambda: store.prune(reactor.seconds()))
        prune.clock = reactor
        prune.setServiceParent(service)

    if cluster is not None:
        cluster.node(server, reactor).setServiceParent(service)
    wiring = Wiring(settings, server, admission, reactor, inherited, service.listeners)
    for front_end in front_ends:
        values = settings.listeners(front_end.name)
        if not values:
            continue
        built = front_end.build(wiring, values)
        group = ListenerGroup(
            front_end.kind,
            front_end.option,
            unadopted_socket(front_end, settings, inherited),
        )
        group.setName(front_end.name)
        group.setServiceParent(service)
        for listener_service in built.services:
            listener_service.setServiceParent(group)
        service.listeners[front_end.name] = tuple(built.listeners)

    notify = SystemdNotifyService.from_environment(reactor, server.status)
    notify.setName("systemd")
    notify.setServiceParent(service)
    return service
