"""
The daemon's settings as one immutable value.

:mod:`twisted_chat.daemon.config` builds it from the command line and the config
file; SIGHUP builds a new one and the parts that can change live are swapped
in whole, so no reader ever sees half of an old and half of a new setting.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from attrs import field, frozen


@frozen
class Settings:
    """Everything an operator can set, with PROTOCOL.md's defaults."""

    tcp: tuple[str, ...] = ()
    udp: tuple[str, ...] = ()
    default_room: str = "#lobby"
    max_line: int = 1024
    motd_path: str = ""
    motd: tuple[str, ...] = field(default=(), repr=False)
    #: The IRC front-end's server name ("" = the host's), as IRC shows it.
    irc_name: str = ""
    #: ``--web-origin``: the page origins (``https://chat.example.org``)
    #: whose WebSockets are accepted; empty: only the page's own.
    web_origin: tuple[str, ...] = ()
    udp_idle: float = 300.0
    flood_burst: int = 10
    flood_rate: float = 5.0
    max_sendq: int = 1024 * 1024
    max_per_ip: int = 32
    max_clients: int = 10_000
    config: str = ""
    state_dir: str = ""
    #: ``--cluster redis://HOST:PORT/DB``: the Redis that makes several
    #: daemons one server ("" = this daemon alone).  Not in the repr: the
    #: URL may hold the password.
    cluster: str = field(default="", repr=False)
    #: The Redis password when the URL has none (``cluster-password`` in
    #: the config file, so it stays out of the process list).
    cluster_password: str = field(default="", repr=False)
    history_db: str = "history.sqlite3"
    history_on_join: int = 20
    history_max: int = 10_000
    history_days: float = 30.0
    #: ``--accounts on|off``: off answers every account command with
    #: ``! accounts-disabled``.
    accounts: bool = True
    #: ``--registration open|closed``: closed lets only server operators
    #: create accounts.
    registration_open: bool = True
    #: The config file's ``[operators]`` table: ``(name, argon2id hash)``
    #: pairs, reloaded on SIGHUP.  Not in the repr, as hashes are secrets.
    operators: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    #: True when no listener was configured and the listeners are the
    #: defaults (TCP 9000, UDP 9001): sockets passed by systemd replace them
    #: (see :func:`twisted_chat.daemon.startup.adopt_inherited`).
    listeners_defaulted: bool = False
    #: The listener values of front-ends without a field of their own here
    #: (``tcp`` and ``udp`` have one), as ``(option name, values)`` pairs;
    #: read and set them with :meth:`listeners` and :meth:`with_listeners`.
    more_listeners: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def flood_control(self) -> bool:
        """Flood control is off when either number is 0 (PROTOCOL.md)."""
        return self.flood_burst > 0 and self.flood_rate > 0

    def listeners(self, name: str) -> tuple[str, ...]:
        """The values of the listener option ``name`` (``tcp``, ``udp``, ...)."""
        if name in _FIELDS:
            values: tuple[str, ...] = getattr(self, name)
            return values
        return dict(self.more_listeners).get(name, ())

    def with_listeners(self, values: Mapping[str, tuple[str, ...]]) -> Settings:
        """These settings with the listener values of some front-ends replaced."""
        own: dict[str, tuple[str, ...]] = {}
        more = dict(self.more_listeners)
        for name, value in values.items():
            if name in _FIELDS:
                own[name] = value
            elif value:
                more[name] = value
            else:
                more.pop(name, None)
        return attrs.evolve(
            self,
            **own,  # type: ignore[arg-type]
            more_listeners=tuple(sorted(more.items())),
        )


#: The front-ends whose listener values have a field of their own.
_FIELDS = frozenset({"tcp", "udp"})
