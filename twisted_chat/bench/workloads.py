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

The scale workloads (issue 18) add two things to that shape: clients held
idle in rooms of their own beside the few that take part (``active``: the
churn workload's bystander pair among 18,000), and a churn of short-lived
connections (``churn_rate``, run by :mod:`twisted_chat.bench.churn`).
Thousands of clients need many source addresses (:func:`source_address`)
and more than one worker process (``procs``).
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
    :param active: how many clients (the first ones) take part in the rooms
        and senders; the rest are held idle in rooms of
        :data:`IDLE_ROOM_SIZE` of their own.  0: every client takes part.
    :param churn_rate: with ``duration``, connections a second that a churn
        process opens, registers and closes while the senders send.
    :param procs: worker processes unless ``--procs`` says otherwise (and at
        least enough that none holds more than :data:`CLIENTS_PER_PROC`).
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
    active: int = 0
    churn_rate: float = 0.0
    procs: int = 1

    @property
    def taking_part(self) -> int:
        """Clients in the workload's rooms (the rest are held idle)."""
        return self.active or self.clients

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
        if not 0 <= self.active <= self.clients:
            raise ValueError(f"--clients must be at least {self.active} here")
        if not 1 <= self.rooms <= self.taking_part:
            raise ValueError("--rooms must be between 1 and --clients")
        if not 0 <= self.senders <= self.taking_part:
            raise ValueError("--senders must be between 0 and --clients")
        if self.churn_rate < 0:
            raise ValueError("--churn-rate must not be negative")
        if self.churn_rate > 0 and self.duration <= 0:
            raise ValueError("--churn-rate needs a --duration")
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
        head = f"{self.name}: {self.taking_part} clients in {rooms}"
        if self.active:
            head += f" (and {self.clients - self.active} idle)"
        if self.idle:
            return f"{head}, idle"
        pace = f" at {self.rate:g} msg/s" if self.rate > 0 else ""
        churn = (
            f", {self.churn_rate:g} connects + disconnects/s for {self.duration:g} s"
            if self.churn_rate
            else ""
        )
        return (
            f"{head}, {self.senders} senders x {self.messages_per_sender} "
            f"messages of {self.size} B{pace}{churn}"
        )


#: Smallest message: padding, sender id and a 19-digit nanosecond time fit.
MIN_SIZE = 32
#: PROTOCOL.md's default line limit, not counting the line ending.
MAX_SIZE = 1024
#: Members of each room the held-idle clients (``active``) are spread over.
IDLE_ROOM_SIZE = 10
#: The most clients one worker process holds: the descriptor limit here is
#: 20,000 a process, and a worker needs a few of its own.
CLIENTS_PER_PROC = 10_000

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
        Workload(
            name="idle-max",
            description="19,000 registered idle clients (rooms of 10), 2 procs; "
            "server RSS per client and the connect + register rate",
            clients=19_000,
            rooms=1_900,
            senders=0,
            messages=0,
            duration=1.0,
            idle=True,
            procs=2,
        ),
        Workload(
            name="room-10k",
            description="1 room of 10,000 members, 10 senders x 100 messages",
            clients=10_000,
            rooms=1,
            senders=10,
            messages=100,
            procs=2,
        ),
        Workload(
            name="churn",
            description="18,000 clients held; 1,000 connects + disconnects/s "
            "for 15 s while a bystander pair measures 100 msg/s",
            clients=18_000,
            rooms=1,
            senders=1,
            messages=0,
            rate=100.0,
            duration=15.0,
            active=2,
            churn_rate=1000.0,
            procs=2,
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
    if base.active and isinstance(clients, int):
        # The active clients are a fixed few; --clients sizes the idle crowd.
        changes.setdefault("rooms", base.rooms)
        changes.setdefault("senders", base.senders)
        changes.setdefault("active", base.active)
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
    :param port: the TCP port to connect to, 0 for the run's ``--port``: a
        reader on another node of a cluster (``--reader-ports``).
    """

    index: int
    room: str
    sender: bool
    udp: bool
    source: str | None
    expected: int
    port: int = 0


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
    """Spread clients over ``count`` loopback addresses, ``127.0.1.1`` ..
    ``127.0.1.254``, then ``127.0.2.1`` and on (Linux routes all of 127/8 to
    the loopback device), so that a server's per-IP cap counts each one
    separately and no address runs out of ephemeral ports."""
    if count <= 0:
        return None
    k = index % count
    return f"127.0.{1 + k // 254}.{1 + k % 254}"


#: The most source addresses :func:`source_address` spreads over.
MAX_SOURCE_ADDRS = 254 * 254


def make_plan(
    workload: Workload,
    run_id: str,
    *,
    udp_clients: int = 0,
    source_addrs: int = 0,
    reader_ports: tuple[int, ...] = (),
) -> Plan:
    """Assign rooms round-robin (client ``i`` joins room ``i % rooms``), make the
    first ``senders`` clients send (so they spread over the rooms too), make the
    last ``udp_clients`` clients use UDP, spread the readers (the others) of
    each room over ``reader_ports`` in turn, and count what each must receive.

    Past the ``active`` clients (if the workload has them), the rest are held
    idle in rooms of :data:`IDLE_ROOM_SIZE`, numbered after the workload's."""
    n = workload.clients
    active = workload.taking_part
    m = workload.messages_per_sender
    rooms = [i % workload.rooms for i in range(active)]
    rooms += [workload.rooms + j // IDLE_ROOM_SIZE for j in range(n - active)]
    senders_in_room = [0] * workload.rooms
    for i in range(workload.senders):
        senders_in_room[rooms[i]] += 1
    clients = []
    for i in range(n):
        sender = i < workload.senders
        others = senders_in_room[rooms[i]] - (1 if sender else 0) if i < active else 0
        spread = reader_ports and not sender
        port = reader_ports[i // workload.rooms % len(reader_ports)] if spread else 0
        clients.append(
            ClientPlan(
                index=i,
                room=room_name(run_id, rooms[i]),
                sender=sender,
                udp=i >= n - udp_clients,
                source=source_address(i, source_addrs),
                expected=others * m,
                port=port,
            )
        )
    return Plan(workload=workload, run_id=run_id, clients=tuple(clients))


def worker_processes(workload: Workload, requested: int | None) -> int:
    """How many worker processes to start: ``requested`` (or the workload's
    own number), raised so that none holds more than :data:`CLIENTS_PER_PROC`
    clients, and never more than there are clients."""
    wanted = workload.procs if requested is None else requested
    needed = -(-workload.clients // CLIENTS_PER_PROC)
    return max(1, min(workload.clients, max(wanted, needed)))
