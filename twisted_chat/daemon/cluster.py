"""
``--cluster``: what the daemon builds for a node of a cluster, and when.

Imported only when ``--cluster`` is given, so that a daemon alone loads
nothing of Redis.  The order is forced by who needs whom: the shared
stores (history, accounts, registered rooms) need the Redis link before
the chat server exists, since the server is built on them; the node
(:class:`~twisted_chat.cluster.node.ClusterNode`) needs the server.  So
the link is made first with callbacks that reach the node once it exists
(:class:`~twisted_chat.cluster.node.LinkCalls`).

With ``--cluster`` history lives in Redis (a stream per room, trimmed to
``--history-max``: one shared store, replayed from any node) and the
accounts, server bans and registered rooms too (one source of truth); a
node keeps a copy of each in memory, so reads never wait for Redis.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import TYPE_CHECKING, Any

from attrs import define
from twisted.logger import Logger

from twisted_chat.accounts.passwords import Argon2Hasher
from twisted_chat.cluster.history import ClusterHistory
from twisted_chat.cluster.link import RedisLink
from twisted_chat.cluster.node import ClusterNode, LinkCalls, channels
from twisted_chat.cluster.shared_accounts import RedisAccountStore
from twisted_chat.cluster.shared_rooms import RedisRoomStore
from twisted_chat.cluster.url import ClusterUrl
from twisted_chat.core.account_ports import AccountServices
from twisted_chat.core.records import StoredTopic
from twisted_chat.daemon.startup import StartupError
from twisted_chat.history.memory import MemoryStore

if TYPE_CHECKING:
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.settings import Settings

__all__ = ["ClusterParts", "open_cluster"]

_log = Logger()


@define
class ClusterParts:
    """What is made before the chat server; :meth:`node` makes the rest."""

    url: ClusterUrl
    node_id: str
    link: RedisLink
    calls: LinkCalls
    history: ClusterHistory | None
    accounts: AccountServices

    def node(self, server: ChatServer, reactor: Any) -> ClusterNode:
        """The node, wired to ``server`` and to the shared stores."""
        history = self.history
        store: Any = self.accounts.store
        rooms: Any = self.accounts.rooms

        def changed(kind: str, key: str | None) -> None:
            if kind == "bans":
                server.operators.server_bans.reload()
            elif kind == "rooms" and key is not None:
                server.moderation.registry.refresh(key)

        store.on_change = changed
        rooms.on_change = changed

        def control(message: dict[str, Any]) -> None:
            kind = message.get("kind")
            if kind in ("accounts", "bans"):
                store.apply(message)
            elif kind == "rooms":
                rooms.apply(message)

        def up() -> None:
            loads = [store.load(), rooms.load()]
            if history is not None:
                loads.append(history.load())
            loads[0].addCallback(lambda _: server.operators.server_bans.reload())
            # Refresh, not load: after an outage the registered rooms are
            # live, with members, and must stay the same room objects.
            loads[1].addCallback(lambda _: refresh_rooms())

        def refresh_rooms() -> None:
            registry = server.moderation.registry
            for stored in rooms.all():
                registry.refresh(stored.key)

        def remote_topic(topic: StoredTopic) -> None:
            if history is not None:
                history.remote_topic(topic)

        node = ClusterNode(
            server,
            self.link,
            self.calls,
            reactor,
            self.node_id,
            remote_lines=history.remote_lines if history is not None else None,
            remote_topic=remote_topic,
            on_control=control,
            on_up=up,
        )
        node.before_stop += [store.settled, rooms.settled]
        if history is not None:
            node.before_stop.append(history.flush)
        node.setName("cluster")
        return node


def open_cluster(settings: Settings, reactor: Any) -> ClusterParts:
    """
    The link and the shared stores for ``settings.cluster``; nothing is
    connected yet (the node's service starts the link).

    :raises StartupError: for a URL that is not one.
    """
    try:
        url = ClusterUrl.parse(settings.cluster, settings.cluster_password or None)
    except ValueError as problem:
        raise StartupError(f"--cluster: {problem}") from None
    node_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    calls = LinkCalls()
    link = RedisLink(
        url, reactor, channels(node_id), calls.message, calls.up, calls.down
    )
    history = None
    if settings.history_db.strip().lower() not in ("", "off", "none"):
        memory = MemoryStore(
            max_per_room=settings.history_max, max_age_days=settings.history_days
        )
        history = ClusterHistory(link, memory, settings.history_max, reactor.seconds)
    accounts = AccountServices(
        RedisAccountStore(link, reactor),
        Argon2Hasher(reactor),
        RedisRoomStore(link, reactor),
    )
    _log.info("cluster: node {node} of {url}", node=node_id, url=url.redacted())
    return ClusterParts(url, node_id, link, calls, history, accounts)
