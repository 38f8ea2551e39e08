"""
The ``--web`` front-end as the daemon builds it (issue 16): one factory
for all of its listeners, one :class:`~twisted_chat.transports.web_format.
WebFormat` for all of its sessions (so a room's turn is framed once for
every browser), and the name the ``hello`` frame gives the server.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from twisted_chat.transports.web import WebFactory
from twisted_chat.transports.web_session import WebSessionFactory

if TYPE_CHECKING:
    from twisted_chat.core.admission import Admission
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.settings import Settings

__all__ = ["web_factory", "web_server_name"]


def web_server_name(settings: Settings) -> str:
    """What the ``hello`` frame calls the server: IRC's name, or this host's."""
    return settings.irc_name or socket.getfqdn() or socket.gethostname() or "localhost"


def web_factory(
    settings: Settings, server: ChatServer, admission: Admission, reactor: Any
) -> WebFactory:
    """The listening factory every ``--web`` endpoint shares."""
    sessions = WebSessionFactory(
        server, admission, reactor, server_name=web_server_name(settings)
    )
    return WebFactory(sessions)
