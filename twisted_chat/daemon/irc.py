"""
The ``--irc`` front-end as the daemon builds it (issue 15): its listeners,
and the secret its host cloaks are made with.

The secret lives in the state directory (``irc-cloak.secret``, mode 0600),
made once with the system's random source, so a person's cloak stays the
same across restarts (bans and ``/whois`` by cloak stay meaningful) and no
one without the file can compute a cloak from an address.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from twisted_chat.daemon.config import default_state_dir
from twisted_chat.daemon.startup import StartupError
from twisted_chat.transports.irc_session import IrcSettings

if TYPE_CHECKING:
    from twisted_chat.core.settings import Settings

__all__ = ["SECRET_FILE", "cloak_secret", "irc_settings"]

#: The cloak secret's file in the state directory.
SECRET_FILE: Final = "irc-cloak.secret"  # noqa: S105 - a file name


def cloak_secret(state_dir: str) -> bytes:
    """The daemon's cloak secret, made on first use (32 random bytes, hex)."""
    path = Path(state_dir or default_state_dir(os.environ), SECRET_FILE)
    try:
        text = path.read_text("ascii").strip()
        if len(text) >= 32:
            return text.encode("ascii")
    except FileNotFoundError:
        pass
    except OSError as problem:
        raise StartupError(f"{path}: {problem.strerror}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    made = secrets.token_hex(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as out:
            out.write(made + "\n")
    except OSError as problem:
        raise StartupError(f"{path}: {problem.strerror}") from None
    return made.encode("ascii")


def irc_settings(settings: Settings) -> IrcSettings:
    """What every IRC connection of this daemon shares."""
    return IrcSettings(
        server_name=settings.irc_name or _server_name(),
        network="twisted-chat",
        secret=cloak_secret(settings.state_dir),
        created=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        motd=tuple(settings.motd),
    )


def _server_name() -> str:
    """This host's name as IRC shows the server (a name with a dot)."""
    name = socket.getfqdn() or socket.gethostname() or "localhost"
    return name if "." in name else f"{name}.local"
