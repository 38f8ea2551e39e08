# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""What the parent of a run and its workers hand each other over their pipe.

The parent (:mod:`twisted_chat.bench.runner`) gives each worker process a
:class:`WorkerSpec`, its share of the clients; the worker
(:mod:`twisted_chat.bench.worker`) answers with :class:`Progress` a few times
a second and one :class:`WorkerResult` at the end.  They are plain frozen
records because they cross a process boundary (pickled by
``multiprocessing``), and both sides read them by name.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

from attrs import frozen

if TYPE_CHECKING:
    from twisted_chat.bench.workloads import ClientPlan

#: Bytes a sender hands to ``send`` at once when not paced.
BATCH_BYTES = 64 * 1024


@frozen
class WorkerSpec:
    """A worker's share of the run.

    :param family: address family of ``address`` and ``udp_address``.
    :param address: the server's TCP socket address.
    :param udp_address: the server's UDP socket address, when some clients use UDP.
    :param rate: messages a second per sender; 0 for as fast as possible.
    :param window: with ``rate`` 0, the most messages a sender has sent that
        the server has not yet answered (each batch ends with ``/ping``, its
        pong is the answer); 0 for no limit.
    :param read_delay_ns: once messages flow, pause this long before the next
        poll whenever the last reads were small.  A server that writes each
        delivery separately (the asyncio baseline) would otherwise cost one
        ``recv`` and its Python overhead per line; the pause lets lines pile
        up in the kernel, at the price of up to this much added latency.
    :param proto: ``"line"`` (PROTOCOL.md's lines), ``"irc"`` (IRC clients,
        :mod:`twisted_chat.bench.irc_client`) or ``"web"`` (WebSocket
        clients, :mod:`twisted_chat.bench.web_client`), for the TCP clients.
    :param run_id: the run's id; IRC nicknames are made from it.
    """

    index: int
    family: int
    address: tuple[Any, ...]
    udp_address: tuple[Any, ...] | None
    clients: tuple[ClientPlan, ...]
    messages: int
    size: int
    rate: float
    window: int = 0
    read_delay_ns: int = 0
    proto: str = "line"
    run_id: str = ""

    def address_of(self, client: ClientPlan) -> tuple[Any, ...]:
        """Where ``client`` connects: ``address``, or its own port on that host."""
        if not client.port:
            return self.address
        return (self.address[0], client.port, *self.address[2:])

    @property
    def batch_size(self) -> int:
        """Messages per ``send`` of an unpaced sender: about 64 KiB, and at most
        half the window so that two batches are in flight."""
        batch = BATCH_BYTES // self.size
        if self.window > 0:
            batch = min(batch, self.window // 2)
        return max(1, batch)


@frozen
class Progress:
    """A worker's running totals, sent to the parent a few times a second."""

    ready: int
    sent: int
    received: int
    pongs: int


@frozen
class WorkerResult:
    """What a worker measured.

    :param short: ``(client index, expected, received)`` for some clients whose
        count is off, to help find the culprit.
    :param cpu_s: the worker's CPU time from ``go`` to its end.
    :param setup_start_ns: when the worker began its first connect
        (``time.monotonic_ns()``).
    :param setup_end_ns: when its last client was registered and in its room.
    """

    connected: int
    sent: int
    received: int
    samples: array[int]
    last_rx_ns: int
    cpu_s: float
    errors: tuple[str, ...]
    short: tuple[tuple[int, int, int], ...]
    setup_start_ns: int = 0
    setup_end_ns: int = 0
