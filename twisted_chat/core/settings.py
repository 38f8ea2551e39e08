"""
The daemon's settings as one immutable value.

:mod:`twisted_chat.daemon.options` builds it from the command line and the config
file; SIGHUP builds a new one and the parts that can change live are swapped
in whole, so no reader ever sees half of an old and half of a new setting.
"""

from __future__ import annotations

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
    udp_idle: float = 300.0
    flood_burst: int = 10
    flood_rate: float = 5.0
    max_sendq: int = 1024 * 1024
    max_per_ip: int = 32
    max_clients: int = 10_000
    config: str = ""
    state_dir: str = ""
    history_db: str = "history.sqlite3"
    history_on_join: int = 20
    history_max: int = 10_000
    history_days: float = 30.0
    #: True when no listener was configured and ``tcp``/``udp`` hold the
    #: defaults (TCP 9000, UDP 9001): sockets passed by systemd replace them
    #: (see :func:`twisted_chat.daemon.startup.adopt_inherited`).
    listeners_defaulted: bool = False

    @property
    def flood_control(self) -> bool:
        """Flood control is off when either number is 0 (PROTOCOL.md)."""
        return self.flood_burst > 0 and self.flood_rate > 0
