"""
What the account and operator unit tests share: a ``ChatServer`` with the
fake hasher and the memory account store on a ``Clock``, and its clients.

``test_accounts_core.World`` and ``test_operators_core.Rig`` build on it;
``settle_on_connect`` is the one difference in how they connect.
"""

from __future__ import annotations

from attrs import define, field
from twisted.internet.task import Clock

from twisted_chat.accounts.passwords import FakeHasher
from twisted_chat.accounts.store import MemoryAccountStore
from twisted_chat.core.admission import address_group
from twisted_chat.core.chat import ChatServer, Participant
from twisted_chat.testing import RecordingClient


@define(eq=False)
class AccountsRig:
    """A chat server with accounts, and the clients connected to it."""

    server: ChatServer
    clock: Clock
    hasher: FakeHasher
    store: MemoryAccountStore
    clients: list[RecordingClient] = field(factory=list)
    _hosts: int = 0
    #: End the reactor turn after connecting (the operator tests' habit).
    settle_on_connect: bool = False

    def new_client(
        self, host: str | None, transport: str
    ) -> tuple[RecordingClient, Participant]:
        """A new client from ``host`` (its own 192.0.2.x address unless given)."""
        if host is None:
            self._hosts += 1
            host = f"192.0.2.{self._hosts}"
        client = RecordingClient(peer=f"{transport} {host}:4000")
        participant = self.server.connect(
            client, address_group(host), host=host, transport=transport
        )
        self.clients.append(client)
        return client, participant

    def connect(
        self,
        nick: str | None = None,
        *,
        host: str | None = None,
        transport: str = "tcp",
    ) -> tuple[RecordingClient, Participant]:
        """A new client (its own address unless given), renamed, and cleared."""
        client, participant = self.new_client(host, transport)
        if nick is not None and not participant.gone:
            self.say(participant, f"/nick {nick}")
            assert participant.nick.display == nick, client.sent
        if self.settle_on_connect:
            self.run()
        client.clear()
        return client, participant

    def member(
        self, nick: str, *, host: str | None = None, room: str | None = "#dev"
    ) -> tuple[RecordingClient, Participant]:
        """A new TCP client named ``nick`` in ``room`` (its creator if first)."""
        client, participant = self.new_client(host, "tcp")
        self.say(participant, f"/nick {nick}")
        if room is not None:
            self.say(participant, f"/join {room}")
        self.clear_all()
        return client, participant

    def say(self, participant: Participant, line: str) -> None:
        self.server.receive(participant, line)

    def run(self) -> None:
        """End the reactor turn: the hasher's answers, the store's callbacks."""
        while self.hasher.run_pending():
            pass
        self.clock.advance(0)

    def clear_all(self) -> None:
        for client in self.clients:
            client.clear()
