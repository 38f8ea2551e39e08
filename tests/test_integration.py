"""Several real TCP clients on 127.0.0.1 chatting through the assembled service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from conftest import TIMEOUT, AsyncClient, connect_client
from twisted.internet import reactor, ssl
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol

from twisted_chat.core.settings import Settings
from twisted_chat.daemon.service import ChatService, make_chat_service
from twisted_chat.testing_tls import self_signed_pem


def listening_port(service: ChatService, index: int = 0) -> int:
    """The port a ``tcp:0`` listener was given."""
    tcp = list(service.getServiceNamed("tcp"))[index]
    port: Any = tcp._waitingForPort.result
    return int(port.getHost().port)


async def running(settings: Settings) -> ChatService:
    service = make_chat_service(settings, reactor)
    service.startService()
    for tcp in service.getServiceNamed("tcp"):
        await tcp._waitingForPort
    return service


@pytest_twisted.async_yield_fixture
async def chat() -> AsyncIterator[ChatService]:
    """A daemon on a random loopback port, stopped (clients and all) afterwards."""
    service = await running(
        Settings(tcp=("tcp:0:interface=127.0.0.1",), history_db="off")
    )
    yield service
    await service.stopService()


async def hang_up(*clients: AsyncClient) -> None:
    for client in clients:
        assert client.transport is not None
        client.transport.loseConnection()
        await client.lost


@pytest_twisted.ensureDeferred
async def test_clients_chat_across_rooms(chat: ChatService) -> None:
    """Messages reach the members of the room they were sent to, and nobody else."""
    port = listening_port(chat)
    alice = await connect_client(port, "alice")
    bob = await connect_client(port, "bob")
    carol = await connect_client(port, "carol")
    alice.say("/join #dev")
    await alice.expect(r"^\* You joined #dev; nobody else")
    bob.say("/join dev")
    await alice.expect(r"^\* bob joined #dev$")
    bob.say("ship it")
    assert await alice.expect(r"^\[#dev\]") == "[#dev] <bob> ship it"
    carol.say("anyone in the lobby?")
    assert await bob.expect(r"^\[#lobby\]") == "[#lobby] <carol> anyone in the lobby?"
    assert await alice.expect(r"^\[#lobby\]") == "[#lobby] <carol> anyone in the lobby?"
    alice.say("/me waves")
    assert await bob.expect(r"^\[#dev\] \*") == "[#dev] * alice waves"
    carol.say("/who #dev")
    await carol.expect(r"^\* 2 people in #dev:$")
    assert await carol.expect(r"^\* ") == "* @alice, bob"  # alice made #dev
    assert not any(line.startswith("[#dev]") for line in carol.lines)
    assert not any("ship it" in line for line in bob.lines)  # no echo
    await hang_up(alice, bob, carol)


@pytest_twisted.ensureDeferred
async def test_dropped_connection_is_seen_as_quit(chat: ChatService) -> None:
    """A client that vanishes mid-room leaves it, and the others are told."""
    port = listening_port(chat)
    alice = await connect_client(port, "alice")
    bob = await connect_client(port, "bob")
    bob.transport.abortConnection()  # type: ignore[union-attr]
    assert await alice.expect(r"quit") == "* bob quit (connection lost)"
    alice.say("/who")
    await alice.expect(r"^\* 1 person in #lobby:$")
    await hang_up(alice)


@pytest_twisted.ensureDeferred
async def test_nick_taken_across_connections(chat: ChatService) -> None:
    """A nickname differing only in case or width is refused while held."""
    port = listening_port(chat)
    alice = await connect_client(port, "Alice")
    other = await connect_client(port)
    other.say("/nick ＡＬＩＣＥ")
    line = await other.expect(r"^! ")
    assert line.startswith("! nick-in-use: ")
    await hang_up(alice)
    other.say("/nick ＡＬＩＣＥ")
    await other.expect(r"^\* You are now known as ＡＬＩＣＥ\.")
    await hang_up(other)


@pytest_twisted.ensureDeferred
async def test_shutdown_tells_every_client(chat: ChatService) -> None:
    """Stopping the service sends the shutdown notice and closes connections."""
    port = listening_port(chat)
    clients = [await connect_client(port) for _ in range(5)]
    await chat.stopService()
    for client in clients:
        await client.lost
        assert "* Server shutting down" in client.lines
    chat.startService()  # the fixture stops it again


@pytest_twisted.ensureDeferred
async def test_chat_over_tls(tmp_path: Path) -> None:
    """An ssl: endpoint serves the same chat, verified against our certificate."""
    pem = tmp_path / "server.pem"
    pem.write_bytes(self_signed_pem())
    service = await running(
        Settings(
            tcp=(f"ssl:0:interface=127.0.0.1:privateKey={pem}:certKey={pem}",),
            history_db="off",
        )
    )
    try:
        port = listening_port(service)
        authority = ssl.Certificate.loadPEM(pem.read_bytes())
        options = ssl.optionsForClientTLS("localhost", trustRoot=authority)
        clients = []
        for nick in ("alice", "bob"):
            endpoint = SSL4ClientEndpoint(
                reactor, "127.0.0.1", port, options, timeout=TIMEOUT
            )
            client = await connectProtocol(endpoint, AsyncClient())
            await client.expect(r"^\* Welcome")
            client.say(f"/nick {nick}")
            await client.expect(r"^\* You are now known as")
            clients.append(client)
        alice, bob = clients
        alice.say("secret handshake 🤝")
        assert (
            await bob.expect(r"^\[#lobby\]") == "[#lobby] <alice> secret handshake 🤝"
        )
        await hang_up(alice, bob)
    finally:
        await service.stopService()


def test_service_has_named_children() -> None:
    """makeService's result holds tcp, udp, history and systemd children by name."""
    from twisted.internet.testing import MemoryReactorClock

    service = make_chat_service(
        Settings(tcp=("tcp:0",), udp=("127.0.0.1:0",), history_db=":memory:"),
        MemoryReactorClock(),
    )
    names = {child.name for child in service}
    assert {"tcp", "udp", "history", "systemd"} <= names
    with pytest.raises(KeyError):
        service.getServiceNamed("nope")


@pytest_twisted.ensureDeferred
async def test_chat_over_a_unix_socket(tmp_path: Path) -> None:
    """A unix: endpoint serves the same chat; its clients are not per-IP capped."""
    from twisted.internet.endpoints import UNIXClientEndpoint

    path = tmp_path / "chat.sock"
    service = await running(
        Settings(tcp=(f"unix:{path}",), history_db="off", max_per_ip=1)
    )
    try:
        clients = []
        for nick in ("alice", "bob"):
            endpoint = UNIXClientEndpoint(reactor, str(path), timeout=TIMEOUT)
            client = await connectProtocol(endpoint, AsyncClient())
            await client.expect(r"^\* Welcome")
            client.say(f"/nick {nick}")
            await client.expect(r"^\* You are now known as")
            clients.append(client)
        alice, bob = clients
        alice.say("over a unix socket")
        assert await bob.expect(r"^\[#lobby\]") == "[#lobby] <alice> over a unix socket"
        await hang_up(alice, bob)
    finally:
        await service.stopService()
