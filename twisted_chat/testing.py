# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""
Public fakes for testing code that uses the chat core without a network.

:class:`RecordingClient` is an :class:`~twisted_chat.core.interfaces.IChatClient`
that keeps every ``bytes`` object the core hands it, so a test can read the
lines a person would see and also check that a room message was encoded once
(the same object reached every member).  :func:`make_chat` builds a
:class:`~twisted_chat.core.chat.ChatServer` on a :class:`~twisted.internet.task.Clock`
and returns a :class:`ChatHarness` that connects such clients.

Example::

    chat = make_chat(Settings(default_room="#lobby"))
    alice, _ = chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    chat.server.receive(bob_p, "hello")
    assert alice.lines() == ["[#lobby] <Bob> hello"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import define, field
from twisted.internet.task import Clock
from zope.interface import implementer

from twisted_chat.core.chat import ChatServer, Participant
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.lines import CRLF
from twisted_chat.core.settings import Settings

if TYPE_CHECKING:
    from twisted_chat.core.store import IMessageStore

__all__ = ["ChatHarness", "RecordingClient", "make_chat"]


@implementer(IChatClient)
@define(eq=False)
class RecordingClient:
    """
    An ``IChatClient`` that records what the core sends it.

    ``sent`` holds the very ``bytes`` objects passed to :meth:`send`, in
    order, so tests can compare them by identity as well as by value.
    """

    peer: str = "test 127.0.0.1:0"
    sent: list[bytes] = field(factory=list)
    closed: bool = False

    def send(self, data: bytes) -> None:
        """``IChatClient`` API: remember ``data`` as it was handed over."""
        self.sent.append(data)

    def close(self) -> None:
        """``IChatClient`` API: note that the core ended the session."""
        self.closed = True

    def lines(self) -> list[str]:
        """
        Every line received so far, decoded, without its CRLF.

        :raises ValueError: if something was sent that breaks the
            ``IChatClient.send`` contract (not whole CRLF-terminated lines, or
            not UTF-8), so a test cannot pass on malformed output.
        """
        result: list[str] = []
        for data in self.sent:
            if not data.endswith(CRLF):
                raise ValueError(f"sent data does not end in CRLF: {data!r}")
            text = data.decode("utf-8")
            result.extend(text[: -len(CRLF)].split("\r\n"))
        for line in result:
            if "\r" in line or "\n" in line:
                raise ValueError(f"bare CR or LF inside a line: {line!r}")
        return result

    def clear(self) -> None:
        """Forget what was received, so the next assertion sees only new lines."""
        self.sent.clear()


@define(eq=False)
class ChatHarness:
    """A :class:`ChatServer` on a fake clock, and the clients connected to it."""

    server: ChatServer
    clock: Clock
    clients: list[RecordingClient] = field(factory=list)

    def connect(
        self,
        nick: str | None = None,
        peer: str = "test 127.0.0.1:0",
        group: str = "",
    ) -> tuple[RecordingClient, Participant]:
        """
        Connect a new :class:`RecordingClient`, optionally rename it.

        The new client's own lines (welcome, join, rename) are cleared, so a
        test starts from silence; what others received is left alone.

        :param nick: the nickname to take with ``/nick``; the guest name is
            kept when it is None.
        :param group: the client's address group, what per-address caps and
            the reply budget count by ("" for none).
        :raises AssertionError: if ``nick`` could not be taken.
        """
        client = RecordingClient(peer=peer)
        participant = self.server.connect(client, group)
        if nick is not None:
            self.server.receive(participant, f"/nick {nick}")
            if participant.nick.display != nick:
                raise AssertionError(f"could not take {nick!r}: {client.lines()!r}")
        client.clear()
        self.clients.append(client)
        return client, participant

    def clear_all(self) -> None:
        """Forget every client's lines."""
        for client in self.clients:
            client.clear()


def make_chat(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    store: IMessageStore | None = None,
) -> ChatHarness:
    """
    Build a chat server for a test.

    :param settings: the settings; PROTOCOL.md's defaults when None.
    :param clock: the time source; a new :class:`Clock` at 0 when None.
    :param store: a message store, or None for no history.
    """
    clock = Clock() if clock is None else clock
    server = ChatServer(
        Settings() if settings is None else settings, clock.seconds, store
    )
    return ChatHarness(server=server, clock=clock)
