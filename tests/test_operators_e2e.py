"""
Server operators end to end (issue 13), judged from PROTOCOL.md alone.

A real ``twistd -n chat`` with a ``--config`` file whose ``[operators]`` table
holds a hash made by ``python -m twisted_chat.passwd`` (the password on
standard input), real argon2id, and clients on real TCP and UDP sockets bound
to their own loopback addresses, so that one address (or a /24 of them) can
be banned while the others chat on.

The ban tests hold the server to its promise that a banned client gets
exactly one ``! banned:`` line and nothing else: the victim first proves it
has read everything before the ban (``/ping``), then everything it gets from
the ban on is compared byte for byte.  Over UDP, where there is no end of
stream, "nothing else" is a short quiet period.
"""

from __future__ import annotations

import re

import pytest
from test_accounts_e2e import Chat, Client, UdpClient, password, whois
from test_accounts_e2e import chat as chat  # noqa: PLC0414 - the fixture

pytestmark = pytest.mark.slow

BANNED_LINE = re.compile(rb"! banned: [^\r\n]*\r\n")


@pytest.fixture
def root_secret(chat: Chat) -> str:
    """The password of operator ``root`` in the config file."""
    secret = password()
    chat.operators(root=secret)
    return secret


def oper(chat: Chat, secret: str, source: str = "127.0.0.1") -> Client:
    """A TCP client named ``root`` that is a server operator."""
    root = chat.connect("root", source)
    line = root.reply(f"/oper root {secret}")
    assert line.startswith("* "), line
    return root


def assert_one_banned_line(data: bytes) -> None:
    assert BANNED_LINE.fullmatch(data), data


def assert_banned_on_connect(chat: Chat, source: str) -> None:
    """A new TCP connection from ``source`` gets one ``! banned:`` line, closed."""
    client = chat.raw(source)
    assert_one_banned_line(client.read_until_closed())


def assert_udp_banned_on_hello(chat: Chat, source: str) -> None:
    """A fresh UDP socket from ``source``: its ``/hello`` gets one ``! banned:``."""
    udp = UdpClient(chat.udp_port, source)
    chat.udp_clients.append(udp)
    udp.say("hi")
    first = udp.receive()
    assert first is not None
    if first.startswith("* Reply /hello "):
        udp.say(f"/hello {first.split()[3]}")
        line = udp.receive()
        assert line is not None
        assert line.startswith("! banned: "), line
    else:  # answered at once: the same one line
        assert first.startswith("! banned: "), first
    assert udp.quiet() == []


def test_oper_right_and_wrong(chat: Chat, root_secret: str) -> None:
    """A wrong password gets ``! oper-failed``; the right one makes an operator."""
    chat.start()
    client = chat.connect("root")
    line = client.reply("/kill nobody")
    assert line.startswith("! not-server-operator: "), line
    line = client.reply(f"/oper root {chat.secret()}")
    assert line.startswith("! oper-failed: "), line
    line = client.reply(f"/oper nobody {root_secret}")
    assert line.startswith("! oper-failed: "), line
    line = client.reply(f"/oper root {root_secret}")
    assert line.startswith("* "), line
    line = client.reply("/stats")
    assert line.startswith("* "), line
    chat.check_secrets()


def test_oper_is_throttled_as_logins_are(chat: Chat, root_secret: str) -> None:
    """After 5 wrong /oper from one address the right password is refused too."""
    chat.start()
    client = chat.connect("root", source="127.0.20.1")
    for n in range(5):
        line = client.reply(f"/oper root {chat.secret()}")
        assert line.startswith("! oper-failed: "), (n, line)
    line = client.reply(f"/oper root {root_secret}")
    assert line.startswith(("! login-throttled: ", "! oper-failed: ")), line
    line = client.reply("/stats")
    assert line.startswith("! not-server-operator: "), line
    chat.check_secrets()


def test_kill(chat: Chat, root_secret: str) -> None:
    """/kill disconnects; the rooms see ``* NICK quit (killed by OPER: reason)``."""
    chat.start()
    root = oper(chat, root_secret)
    carol = chat.connect("carol")
    bob = chat.connect("bob")
    for client in (bob, carol):
        client.say("/join #dev")
        client.expect(r"^\* You joined #dev")
    line = root.reply("/kill bob spamming the room")
    assert line.startswith("* "), line
    bob.read_until_closed()
    assert (
        carol.expect(r"^\* bob quit")
        == "* bob quit (killed by root: spamming the room)"
    )
    line = root.reply("/kill nobody")
    assert line.startswith("! no-such-nick: "), line
    udp = chat.udp("dave")
    line = root.reply("/kill dave")
    assert line.startswith("* "), line
    assert carol.expect(r"^\* dave quit").startswith("* dave quit (killed by root")
    del udp
    # A structured event names who did what to whom, and why.
    chat.stop()
    kills = [line for line in chat.log.splitlines() if "spamming the room" in line]
    assert any("root" in line and "bob" in line for line in kills), chat.log
    chat.check_secrets()


def test_wall_reaches_everyone(chat: Chat, root_secret: str) -> None:
    """/wall: every client, TCP and UDP, in any room or none, gets ``* [OPER] text``."""
    chat.start()
    root = oper(chat, root_secret)
    tcp = chat.connect("tcpuser")
    tcp.say("/part")
    tcp.settle()
    udp = chat.udp("udpuser")
    root.say("/wall maintenance at noon")
    for client in (tcp, root):
        assert client.expect(r"^\* \[") == "* [OPER] maintenance at noon"
    assert udp.expect(r"^\* \[") == "* [OPER] maintenance at noon"
    line = tcp.reply("/wall not allowed")
    assert line.startswith("! not-server-operator: "), line
    chat.check_secrets()


def test_serverban_an_address_over_tcp(chat: Chat, root_secret: str) -> None:
    """The banned client gets one ``! banned:`` line, closed; so does a reconnect."""
    chat.start()
    root = oper(chat, root_secret)
    victim = chat.connect("victim", source="127.0.21.5")
    neighbour = chat.connect("neighbour", source="127.0.21.6")
    victim.settle()
    line = root.reply("/serverban 127.0.21.5 go away")
    assert line.startswith("* "), line
    assert_one_banned_line(victim.read_until_closed())
    neighbour.expect(r"^\* victim quit")
    assert_banned_on_connect(chat, "127.0.21.5")
    chat.connect(source="127.0.21.6")  # the neighbour's address is fine
    listing = "\n".join(root.replies("/serverbans"))
    assert "127.0.21.5" in listing
    line = root.reply("/serverunban 127.0.21.5")
    assert line.startswith("* "), line
    back = chat.connect(source="127.0.21.5")
    back.say("I am back")
    assert neighbour.expect(r"^\[#lobby\]").endswith("> I am back")
    chat.check_secrets()


def test_serverban_a_cidr_block_over_tcp(chat: Chat, root_secret: str) -> None:
    """A /24 ban disconnects every client in it, and only those."""
    chat.start()
    root = oper(chat, root_secret)
    inside = [chat.connect(f"in{n}", source=f"127.0.22.{n}") for n in (1, 200)]
    outside = chat.connect("out", source="127.0.23.1")
    for client in inside:
        client.settle()
    line = root.reply("/serverban 127.0.22.0/24")
    assert line.startswith("* "), line
    for client in inside:
        assert_one_banned_line(client.read_until_closed())
    assert_banned_on_connect(chat, "127.0.22.77")
    assert_udp_banned_on_hello(chat, "127.0.22.78")
    outside.say("still here")
    root.expect(r"^\[#lobby\] <out> still here$")
    line = root.reply("/serverunban 127.0.22.0/24")
    assert line.startswith("* "), line
    chat.connect(source="127.0.22.77")
    chat.check_secrets()


def test_serverban_over_udp(chat: Chat, root_secret: str) -> None:
    """A UDP session at a banned address (or in a banned block) gets one line."""
    chat.start()
    root = oper(chat, root_secret)
    victim = chat.udp("udpvictim", source="127.0.24.7")
    block = chat.udp("udpblock", source="127.0.25.9")
    bystander = chat.udp("udpfine", source="127.0.26.1")
    for client, pattern in ((victim, "127.0.24.7"), (block, "127.0.25.0/24 udp")):
        client.settle()  # it has heard everything before its ban
        line = root.reply(f"/serverban {pattern}")
        assert line.startswith("* "), line
        got = client.receive()
        assert got is not None
        assert got.startswith("! banned: "), got
        assert client.quiet() == []
        # The session is over: its old token's /hello gets the same one line.
        client.say(f"/hello {client.token}")
        again = client.receive()
        assert again is not None
        assert again.startswith("! banned: "), again
        assert client.quiet() == []
    assert_udp_banned_on_hello(chat, "127.0.24.7")
    assert_udp_banned_on_hello(chat, "127.0.25.10")
    assert_banned_on_connect(chat, "127.0.24.7")  # TCP too
    bystander.say("/ping still")
    bystander.expect(r"^\* pong")
    chat.check_secrets()


def test_serverban_an_account_stops_its_login(chat: Chat, root_secret: str) -> None:
    """``account:NAME``: its logged-in client is disconnected, its logins refused."""
    chat.start()
    root = oper(chat, root_secret)
    mallory, secret = chat.register("mallory", source="127.0.27.1")
    mallory.settle()
    line = root.reply("/serverban account:mallory")
    assert line.startswith("* "), line
    assert_one_banned_line(mallory.read_until_closed())
    again = chat.connect(source="127.0.27.2")
    line = again.reply(f"/login mallory {secret}")
    assert line.startswith("! banned: "), line
    chat.check_secrets()


def test_operator_sees_addresses_in_whois(chat: Chat, root_secret: str) -> None:
    """/whois shows the address to a server operator, and to nobody else."""
    chat.start()
    root = oper(chat, root_secret)
    chat.connect("target", source="127.0.28.3")
    asker = chat.connect("asker")
    assert "127.0.28.3" not in whois(asker, "target")
    assert "127.0.28.3" in whois(root, "target")
    chat.check_secrets()


def test_stats_counts_clients_by_transport(chat: Chat, root_secret: str) -> None:
    """/stats names each transport with its number of clients."""
    chat.start()
    root = oper(chat, root_secret)
    chat.connect("second")  # 2 TCP clients with root
    for n in range(3):
        chat.udp(f"udp{n}")  # 3 UDP clients
    text = "\n".join(root.replies("/stats")).lower()
    assert re.search(r"tcp\D{0,20}2\b|\b2\D{0,20}tcp", text), text
    assert re.search(r"udp\D{0,20}3\b|\b3\D{0,20}udp", text), text
    line = chat.connect().reply("/stats")
    assert line.startswith("! not-server-operator: "), line
    chat.check_secrets()


def test_sighup_reloads_the_operator_table(chat: Chat, root_secret: str) -> None:
    """A new ``[operators]`` table is in force after SIGHUP; a removed name is not."""
    chat.start()
    still = oper(chat, root_secret)
    admin_secret = password()
    chat.operators(admin=admin_secret)  # root is gone from the file
    chat.reload()
    admin = chat.connect("admin", source="127.0.29.1")
    line = admin.reply(f"/oper admin {admin_secret}")
    assert line.startswith("* "), line
    late = chat.connect("root2", source="127.0.29.2")
    line = late.reply(f"/oper root {root_secret}")
    assert line.startswith("! oper-failed: "), line
    del still
    chat.check_secrets()


def test_serverban_by_nick_and_with_a_duration(chat: Chat, root_secret: str) -> None:
    """A nick bans its account when logged in, else its address; DURATION is taken."""
    chat.start()
    root = oper(chat, root_secret)
    guest = chat.connect("plainguest", source="127.0.31.1")
    alice, secret = chat.register("alice", source="127.0.31.2")
    for client in (guest, alice):
        client.settle()
    line = root.reply("/serverban plainguest 30m cool off")
    assert line.startswith("* "), line
    assert_one_banned_line(guest.read_until_closed())
    assert_banned_on_connect(chat, "127.0.31.1")
    alice.settle()
    line = root.reply("/serverban alice 7d")
    assert line.startswith("* "), line
    assert_one_banned_line(alice.read_until_closed())
    # Her account is banned, not her address: the address may connect, the
    # account may not log in from anywhere.
    again = chat.connect(source="127.0.31.2")
    line = again.reply(f"/login alice {secret}")
    assert line.startswith("! banned: "), line
    listing = "\n".join(root.replies("/serverbans"))
    assert "127.0.31.1" in listing
    assert "alice" in listing
    line = root.reply("/serverban 127.0.31.9 forever-ish")  # a reason, no duration
    assert line.startswith("* "), line
    chat.check_secrets()
