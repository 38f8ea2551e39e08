# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""A naive asyncio chat server, the baseline twisted-chat is measured against.

``python -m twisted_chat.bench.baseline_asyncio --port 9000``

This is the chat server of the classic asyncio tutorial: one coroutine per
connection reading with ``readline()``, and a broadcast that loops over the
room's writers.  It has no limits, no flood control, no backpressure and no
UDP.  It speaks just enough of PROTOCOL.md for the load generator to drive
it, with the same line shapes:

* on connect: ``* `` welcome notices, a guest nick, and ``#lobby``;
* a plain line goes to everyone else in your room as ``[#room] <nick> text``;
* ``/join ROOM`` moves you to that room (unlike the real server, a client is
  in one room at a time), ``/part``, ``/nick NAME``, ``/ping`` (``* pong``)
  and ``/quit [reason]``; others see ``* nick joined #room`` and so on.

With ``--port 0`` it listens on a free port; the first line it prints is
``listening on HOST:PORT`` either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
from typing import TYPE_CHECKING

from attrs import define, field

if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_ROOM = "#lobby"


@define(eq=False)
class Member:
    """One connected client: its nick, its one room, and its writer."""

    nick: str
    writer: asyncio.StreamWriter
    room: str | None = None
    quitting: bool = False


def _key(name: str) -> str:
    return name.casefold()


@define
class BaselineServer:
    """The rooms and the nicks; ``handle`` serves one connection."""

    rooms: dict[str, set[Member]] = field(factory=dict)
    names: dict[str, str] = field(factory=dict)  # room key -> display name
    nicks: dict[str, Member] = field(factory=dict)
    _guests: itertools.count[int] = field(factory=lambda: itertools.count(1))
    _server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` and return the port (useful with port 0)."""
        self._server = await asyncio.start_server(
            self.handle, host, port, limit=2**16, backlog=1024
        )
        sockname = self._server.sockets[0].getsockname()
        return int(sockname[1])

    async def serve_forever(self) -> None:
        if self._server is None:
            raise RuntimeError("start() first")
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop listening and drop every client."""
        if self._server is not None:
            self._server.close()
        for member in list(self.nicks.values()):
            member.writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    # Sending.
    def broadcast(self, room: str, data: bytes, exclude: Member | None) -> None:
        """Write ``data`` to everyone in ``room`` but ``exclude``: the naive fan-out."""
        for member in self.rooms.get(room, ()):
            if member is not exclude:
                member.writer.write(data)

    @staticmethod
    def tell(member: Member, text: str) -> None:
        member.writer.write(text.encode("utf-8") + b"\r\n")

    # Rooms.
    def join(self, member: Member, name: str) -> None:
        if not name.startswith("#"):
            name = "#" + name
        key = _key(name)
        display = self.names.setdefault(key, name)
        if member.room == key:
            self.tell(member, f"* You are already in {display}")
            return
        self.leave(member, "joined another room")
        self.broadcast(key, f"* {member.nick} joined {display}\r\n".encode(), None)
        self.rooms.setdefault(key, set()).add(member)
        member.room = key
        self.tell(member, f"* You joined {display}")

    def leave(self, member: Member, reason: str) -> None:
        if member.room is None:
            return
        key, member.room = member.room, None
        members = self.rooms[key]
        members.discard(member)
        if not members:
            del self.rooms[key]
            return
        text = f"* {member.nick} left {self.names[key]} ({reason})\r\n"
        self.broadcast(key, text.encode(), None)

    # Lines.
    def handle_line(self, member: Member, text: str) -> None:
        """Do what one client line asks."""
        if not text.strip():
            return
        if text.startswith("/") and not text.startswith("//"):
            command, _, arg = text[1:].partition(" ")
            self.command(member, command.lower(), arg.strip())
            return
        if text.startswith("//"):
            text = text[1:]
        if member.room is None:
            self.tell(member, "! You are in no room; /join one")
            return
        line = f"[{self.names[member.room]}] <{member.nick}> {text}\r\n"
        self.broadcast(member.room, line.encode("utf-8"), member)

    def command(self, member: Member, command: str, arg: str) -> None:
        if command == "ping":
            self.tell(member, "* pong")
        elif command == "join" and arg:
            self.join(member, arg.split(maxsplit=1)[0])
        elif command == "part":
            room = arg.split(maxsplit=1)[0] if arg else None
            if room is not None and not room.startswith("#"):
                room = "#" + room
            if member.room is None or (room and _key(room) != member.room):
                self.tell(member, f"! You are not in {room or 'a room'}")
            else:
                self.leave(member, "left")
                self.tell(member, "* You left the room")
        elif command == "nick" and arg:
            self.rename(member, arg.split(maxsplit=1)[0])
        elif command == "quit":
            member.quitting = True
            self.quit(member, arg or "quit")
        else:
            self.tell(member, f"! Unknown command /{command}; try /ping or /join")

    def rename(self, member: Member, nick: str) -> None:
        if _key(nick) in self.nicks:
            self.tell(member, f"! {nick} is taken")
            return
        old = member.nick
        del self.nicks[_key(old)]
        member.nick = nick
        self.nicks[_key(nick)] = member
        if member.room is not None:
            text = f"* {old} is now known as {nick}\r\n"
            self.broadcast(member.room, text.encode(), member)
        self.tell(member, f"* You are now known as {nick}")

    def quit(self, member: Member, reason: str) -> None:
        if self.nicks.get(_key(member.nick)) is not member:
            return
        del self.nicks[_key(member.nick)]
        if member.room is not None:
            key, member.room = member.room, None
            self.rooms[key].discard(member)
            if self.rooms[key]:
                text = f"* {member.nick} quit ({reason})\r\n"
                self.broadcast(key, text.encode(), None)
            else:
                del self.rooms[key]

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One connection, from the welcome to the quit."""
        nick = f"guest{next(self._guests)}"
        member = Member(nick=nick, writer=writer)
        self.nicks[_key(nick)] = member
        self.tell(member, "* Welcome to the asyncio baseline chat server.")
        self.tell(member, f"* You are {nick}.")
        self.join(member, DEFAULT_ROOM)
        try:
            while not member.quitting:
                try:
                    raw = await reader.readline()
                except (ValueError, ConnectionError):  # line too long, reset
                    break
                if not raw:
                    break
                text = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                self.handle_line(member, text)
        finally:
            self.quit(member, "connection lost")
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _serve(host: str, port: int) -> None:
    server = BaselineServer()
    bound = await server.start(host, port)
    sys.stdout.write(f"listening on {host}:{bound}\n")
    sys.stdout.flush()
    await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m twisted_chat.bench.baseline_asyncio",
        description="A naive asyncio chat server to compare twisted-chat against.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    # Imported here so that importing this module changes nothing.
    from twisted_chat.bench.worker import raise_fd_limit

    raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
