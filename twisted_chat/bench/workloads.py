# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Named workloads, and the exact plan a run follows.

A :class:`Workload` says how many clients connect, how many rooms they are
spread over, how many of them send and how much.  :func:`make_plan` turns it
into one :class:`ClientPlan` per client: which room it joins, whether it sends,
whether it speaks TCP or UDP, which loopback source address it binds, and how
many room messages it must receive.  The expected counts are exact: the server
does not echo a message to its sender (PROTOCOL.md), so a message said in a
room of ``n`` members is delivered ``n - 1`` times.  A missing delivery is
therefore an error, never a rounding.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import frozen

#: Room names are ``#bench-<run id>-<k>``: fresh names keep other users (and
#: any history replayed on join) out of the counts.
ROOM_PREFIX = "#bench-"


@frozen
class Workload:
    """What a run does; every field can be overridden on the command line.

    :param rate: messages a second per sender; 0 sends as fast as the socket
        takes them (pipelined).
    :param duration: with ``rate``, seconds to send for (each sender sends
        ``rate * duration`` messages); for ``idle``, seconds to hold the
        connections open while the server's idle CPU is measured.
    :param idle: connect and register the clients, send nothing, and report
        the server's memory per connection.
    """

    name: str
    description: str
    clients: int
    rooms: int
    senders: int
    messages: int
    size: int = 100
    rate: float = 0.0
    duration: float = 0.0
    idle: bool = False

    @property
    def messages_per_sender(self) -> int:
        """How many messages each sender sends: ``rate * duration`` when paced."""
        if self.idle:
            return 0
        if self.rate > 0 and self.duration > 0:
            return round(self.rate * self.duration)
        return self.messages

    def check(self) -> None:
        """Raise ``ValueError`` with a sentence a person can act on."""
        if self.clients < 1:
            raise ValueError("--clients must be at least 1")
        if not 1 <= self.rooms <= self.clients:
            raise ValueError("--rooms must be between 1 and --clients")
        if not 0 <= self.senders <= self.clients:
            raise ValueError("--senders must be between 0 and --clients")
        if self.messages < 0:
            raise ValueError("--messages must not be negative")
        if self.rate < 0 or self.duration < 0:
            raise ValueError("--rate and --duration must not be negative")
        if self.size < MIN_SIZE:
            raise ValueError(f"--size must be at least {MIN_SIZE} bytes")
        if self.size > MAX_SIZE:
            raise ValueError(
                f"--size must be at most {MAX_SIZE} bytes (the server's line limit)"
            )

    def describe(self) -> str:
        """One line for the report: the shape of the run."""
        rooms = "1 room" if self.rooms == 1 else f"{self.rooms} rooms"
        head = f"{self.name}: {self.clients} clients in {rooms}"
        if self.idle:
            return f"{head}, idle"
        pace = f" at {self.rate:g} msg/s" if self.rate > 0 else ""
        return (
            f"{head}, {self.senders} senders x {self.messages_per_sender} "
            f"messages of {self.size} B{pace}"
        )


#: Smallest message: padding, sender id and a 19-digit nanosecond time fit.
MIN_SIZE = 32
#: PROTOCOL.md's default line limit, not counting the line ending.
MAX_SIZE = 1024

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            name="fanout",
            description="1 room, 100 clients, 10 senders x 2,000 messages of ~100 B",
            clients=100,
            rooms=1,
            senders=10,
            messages=2000,
        ),
        Workload(
            name="rooms",
            description="1,000 clients in 100 rooms of 10, each sends 20 messages",
            clients=1000,
            rooms=100,
            senders=1000,
            messages=20,
        ),
        Workload(
            name="latency",
            description="50 clients in 1 room, 10 senders at 200 msg/s each, 10 s",
            clients=50,
            rooms=1,
            senders=10,
            messages=0,
            rate=200.0,
            duration=10.0,
        ),
        Workload(
            name="idle",
            description="N registered idle connections (rooms of 10); "
            "server RSS per connection",
            clients=1000,
            rooms=100,
            senders=0,
            messages=0,
            duration=1.0,
            idle=True,
        ),
    )
}


def get_workload(name: str, **overrides: object) -> Workload:
    """The named workload with ``overrides`` (fields left ``None`` are kept).

    :raises KeyError: for an unknown name.
    :raises ValueError: when the result is inconsistent (see :meth:`Workload.check`).
    """
    base = WORKLOADS[name]
    changes: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    clients = changes.get("clients")
    if isinstance(clients, int):
        # Keep the workload's shape when only its size changes: rooms of the
        # same size, "everyone sends" stays everyone, and a fixed number of
        # senders is capped at the clients there are.
        changes.setdefault("rooms", max(1, round(base.rooms * clients / base.clients)))
        if base.senders == base.clients:
            changes.setdefault("senders", clients)
        else:
            changes.setdefault("senders", min(base.senders, clients))
    workload = attrs.evolve(base, **changes)
    if workload.idle:
        workload = attrs.evolve(workload, senders=0)
    workload.check()
    return workload


@frozen
class ClientPlan:
    """One client's part in a run.

    :param index: position in the run, 0-based; senders are the first ones.
    :param expected: room messages this client must receive.
    :param source: local address to bind before connecting, or ``None``.
    """

    index: int
    room: str
    sender: bool
    udp: bool
    source: str | None
    expected: int


@frozen
class Plan:
    """Everything every worker needs to agree on, computed once by the parent."""

    workload: Workload
    run_id: str
    clients: tuple[ClientPlan, ...]

    @property
    def expected_total(self) -> int:
        """Deliveries the whole run must see."""
        return sum(c.expected for c in self.clients)

    @property
    def messages_total(self) -> int:
        """Messages the senders send between them."""
        return sum(1 for c in self.clients if c.sender) * (
            self.workload.messages_per_sender
        )


def room_name(run_id: str, k: int) -> str:
    """The name of the run's room number ``k`` (at most 32 characters after ``#``)."""
    return f"{ROOM_PREFIX}{run_id}-{k}"


def source_address(index: int, count: int) -> str | None:
    """Spread clients over ``127.0.1.1`` .. ``127.0.1.<count>`` (Linux routes all of
    127/8 to the loopback device), so a server's per-IP cap counts each one
    separately."""
    if count <= 0:
        return None
    return f"127.0.1.{1 + index % count}"


def make_plan(
    workload: Workload,
    run_id: str,
    *,
    udp_clients: int = 0,
    source_addrs: int = 0,
) -> Plan:
    """Assign rooms round-robin (client ``i`` joins room ``i % rooms``), make the
    first ``senders`` clients send (so they spread over the rooms too), make the
    last ``udp_clients`` clients use UDP, and count what each must receive."""
    n = workload.clients
    m = workload.messages_per_sender
    rooms = [i % workload.rooms for i in range(n)]
    senders_in_room = [0] * workload.rooms
    for i in range(workload.senders):
        senders_in_room[rooms[i]] += 1
    clients = []
    for i in range(n):
        sender = i < workload.senders
        others = senders_in_room[rooms[i]] - (1 if sender else 0)
        clients.append(
            ClientPlan(
                index=i,
                room=room_name(run_id, rooms[i]),
                sender=sender,
                udp=i >= n - udp_clients,
                source=source_address(i, source_addrs),
                expected=others * m,
            )
        )
    return Plan(workload=workload, run_id=run_id, clients=tuple(clients))
