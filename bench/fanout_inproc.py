"""The bench's fan-out in one process, for instruction counts (issue 16).

Usage::

    python bench/fanout_inproc.py PROTO [ROUNDS] [--members 100] [--senders 10]
        [--messages 50] [--no-ping]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/fanout_inproc.py web 3

``PROTO`` is ``web``, ``line`` or ``irc``.  One ``ChatServer`` on a
``MemoryReactorClock``, ``--members`` clients of that front-end on
transports that drop what they are sent, all in one room; then ROUNDS
turns in which each of ``--senders`` members sends ``--messages`` messages
of 99 characters and one ping (web: masked text frames through the real
``WebConnection`` and ``WebSession``; line: ``text\\n`` and ``/ping``
through ``ChatLineProtocol``; IRC: ``PRIVMSG #r :text`` and ``PING``
through ``IrcProtocol``), as ``python -m twisted_chat.bench --workload
fanout`` does with its ``/ping`` barriers, and the end-of-turn flush after
each turn.

Why: the machine is shared and noisy, and time cannot tell two builds
apart; callgrind's instruction count can, and is the same from one run to
the next (run with ``PYTHONHASHSEED=0``).  Setup costs as much in every
run, so the count of ROUNDS=3 minus that of ROUNDS=1, divided by the
messages of two rounds, is the instructions a message said costs the
server, all of its deliveries included.  It prints the messages said and
deliveries made, so a harness that stopped delivering shows.
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from twisted_chat.core.admission import Admission
from twisted_chat.core.chat import ChatServer
from twisted_chat.core.settings import Settings

ROOM = "#r"
TEXT = "x" * 89 + " 123456789"
MASK = b"\x12\x34\x56\x78"


class Sink(StringTransport):
    """A transport that keeps nothing and counts what it was given."""

    written = 0

    def write(self, data: bytes) -> None:
        Sink.written += len(data)

    def writeSequence(self, data: Any) -> None:
        for piece in data:
            self.write(piece)


def masked_text(text: str) -> bytes:
    """One masked client text frame (RFC 6455, 5.2), as a browser sends it."""
    payload = text.encode()
    size = len(payload)
    head = (
        bytes((0x81, 0x80 | size))
        if size < 126
        else bytes((0x81, 0xFE)) + size.to_bytes(2, "big")
    )
    key = (MASK * (size // 4 + 1))[:size]
    masked = (
        int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    ).to_bytes(size, "little")
    return head + MASK + masked


def peer(n: int) -> IPv4Address:
    return IPv4Address("TCP", f"127.0.{n // 250}.{n % 250 + 1}", 1024 + n)


def web_clients(
    server: ChatServer, admission: Admission, reactor: MemoryReactorClock, members: int
) -> tuple[list[Any], bytes, bytes]:
    from twisted_chat.transports.web import WebFactory
    from twisted_chat.transports.web_session import WebSessionFactory

    sessions = WebSessionFactory(server, admission, reactor, server_name="chat.test")
    page = (b"text/html; charset=utf-8", b"<!doctype html>")
    factory = WebFactory(sessions, files={b"/": page})
    key = base64.b64encode(b"0123456789abcdef").decode()
    upgrade = (
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:8080\r\n\r\n"
    ).encode()
    clients = []
    for n in range(members):
        address = peer(n)
        protocol: Any = factory.buildProtocol(address)
        protocol.makeConnection(
            Sink(peerAddress=address, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        )
        protocol.dataReceived(upgrade)
        protocol.dataReceived(masked_text(f"/nick u{n}") + masked_text(f"/join {ROOM}"))
        clients.append(protocol)
    return clients, masked_text(TEXT), masked_text("/ping")


def line_clients(
    server: ChatServer, admission: Admission, reactor: MemoryReactorClock, members: int
) -> tuple[list[Any], bytes, bytes]:
    from twisted_chat.transports.tcp import ChatServerFactory

    factory = ChatServerFactory(server, admission, reactor)
    clients = []
    for n in range(members):
        address = peer(n)
        protocol: Any = factory.buildProtocol(address)
        protocol.makeConnection(Sink(peerAddress=address))
        protocol.dataReceived(f"/nick u{n}\n/join {ROOM}\n".encode())
        clients.append(protocol)
    return clients, TEXT.encode() + b"\n", b"/ping\n"


def irc_clients(
    server: ChatServer, admission: Admission, reactor: MemoryReactorClock, members: int
) -> tuple[list[Any], bytes, bytes]:
    from twisted_chat.transports.irc import IrcFactory
    from twisted_chat.transports.irc_session import IrcSettings

    settings = IrcSettings("irc.test", "TestNet", b"k" * 32, "today")
    factory = IrcFactory(server, admission, reactor, settings)
    clients = []
    for n in range(members):
        address = peer(n)
        protocol: Any = factory.buildProtocol(address)
        protocol.makeConnection(Sink(peerAddress=address))
        protocol.dataReceived(
            f"NICK u{n}\r\nUSER u{n} 0 * :bench\r\nJOIN {ROOM}\r\n".encode()
        )
        clients.append(protocol)
    body = f"PRIVMSG {ROOM} :{TEXT}\r\n".encode()
    return clients, body, b"PING :twisted-chat-bench\r\n"


BUILDERS: dict[str, Callable[..., tuple[list[Any], bytes, bytes]]] = {
    "web": web_clients,
    "line": line_clients,
    "irc": irc_clients,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("proto", choices=sorted(BUILDERS))
    parser.add_argument("rounds", type=int, nargs="?", default=1)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--no-ping", action="store_true")
    parser.add_argument(
        "--timed",
        action="store_true",
        help="time each turn's fan-out, as --metrics makes the daemon do",
    )
    args = parser.parse_args(argv)
    reactor = MemoryReactorClock()
    reactor.advance(1_800_000_000)
    settings = attrs.evolve(
        Settings(), flood_burst=0, flood_rate=0, max_per_ip=0, max_clients=0
    )
    later: list[Callable[[], None]] = []
    server = ChatServer(
        settings,
        reactor.seconds,
        None,
        defer=later.append,
        call_later=reactor.callLater,
    )
    admission = Admission(max_clients=0, max_per_ip=0)
    if args.timed:
        server.outbox.clock = time.time

    def end_of_turn() -> None:
        while later:
            later.pop(0)()
        reactor.advance(0)

    clients, body, ping = BUILDERS[args.proto](server, admission, reactor, args.members)
    end_of_turn()
    reactor.advance(1)
    end_of_turn()
    room = next(r for r in server.rooms.values() if r.name.display == ROOM)
    if len(room.members) != args.members:
        raise SystemExit(f"{len(room.members)} members in {ROOM}, not {args.members}")
    batch = body * args.messages + (b"" if args.no_ping else ping)
    senders = clients[: args.senders]
    gc.collect()
    before = server.outbox.deliveries
    Sink.written = 0
    for _ in range(args.rounds):
        for sender in senders:
            sender.dataReceived(batch)
        end_of_turn()
    said = args.rounds * args.senders * args.messages
    print(
        f"{args.proto}: {said} messages said, "
        f"{server.outbox.deliveries - before} deliveries counted, "
        f"{Sink.written} bytes written in them, "
        f"hash seed {os.environ.get('PYTHONHASHSEED')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
