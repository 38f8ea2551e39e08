"""
``/metrics`` for ``--cluster``: whether this node is joined to the others,
and how many of the users it mirrors are theirs.

Apart from :mod:`twisted_chat.daemon.metrics` (the core's counters) and
read by duck typing, so that a daemon alone imports nothing of the
cluster to say it has none: every gauge is exported, at 0, without
``--cluster``, for the dashboard and the alerts to name them always.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from twisted_chat.core.chat import ChatServer

__all__ = ["cluster_families"]


def cluster_families(server: ChatServer, prefix: str) -> Iterator[Metric]:
    """The cluster gauges of one scrape."""
    node: Any = server.cluster
    link = getattr(node, "link", None)
    mirror = getattr(node, "mirror", None)
    yield GaugeMetricFamily(
        prefix + "cluster_enabled",
        "1 when this daemon is a node of a cluster (--cluster).",
        value=int(node is not None),
    )
    yield GaugeMetricFamily(
        prefix + "cluster_link_up",
        "1 while the cluster's Redis answers; 0 alone or running alone.",
        value=int(bool(getattr(link, "up", False))),
    )
    yield GaugeMetricFamily(
        prefix + "cluster_remote_users",
        "Users of the other nodes, as this node sees them.",
        value=len(mirror.ghosts) if mirror is not None else 0,
    )
