"""
Room moderation end to end (issue 14), judged from PROTOCOL.md alone.

A real ``twistd -n chat`` (the rig of ``test_accounts_e2e.py``: real argon2id,
real TCP and UDP sockets, each client bound to its own 127.x.y.z address so
that an address or a /24 ban hits one client and spares the next).  The
``*`` notice shapes PROTOCOL.md quotes (the kick lines) must match exactly;
the other notices must be ``*`` lines that name the operator, and refusals
must carry the promised ``! code:``.  The registered-room tests restart the
daemon on the same state directory; the settings, operators and topic tests
live in ``test_moderation_e2e_rooms.py``.
"""

from __future__ import annotations

import re
import time

import pytest
from test_accounts_e2e import Chat, Client, UdpClient
from test_accounts_e2e import chat as chat  # noqa: PLC0414 - the fixture

pytestmark = pytest.mark.slow

QUIET = 0.5


def join(client: Client, room: str, key: str = "") -> None:
    """``/join ROOM [KEY]``, which must succeed."""
    client.settle()
    client.say(f"/join {room} {key}".rstrip())
    line = client.expect(r"^(\* You joined |! )")
    assert line.startswith(f"* You joined {room}"), line


def refused(client: Client, command: str, code: str) -> str:
    """``command`` answered with ``! code: …`` (after the lines already in)."""
    client.settle()
    line = client.reply(command)
    assert line.startswith(f"! {code}: "), (command, line)
    return line


def notice(client: Client, command: str, *words: str) -> str:
    """An operator's ``command``; its own ``*`` notice names it and ``words``."""
    client.settle()
    line = client.reply(command)
    assert line.startswith("* "), (command, line)
    for word in words:
        assert word in line, (command, line, word)
    return line


def quiet(client: Client, seconds: float = QUIET) -> list[str]:
    """Every line that arrives within ``seconds`` (a check that none does)."""
    mark = len(client.lines)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            client.expect(r"(?!)", timeout=left)
        except AssertionError:
            break
    return client.lines[mark:]


def room_of(chat: Chat, room: str, *nicks: str, base: str = "127.0.5") -> list[Client]:
    """Clients ``nicks`` from ``base.1``, ``base.2``… in ``room``; the first made it."""
    clients = [chat.connect(nick, f"{base}.{n + 1}") for n, nick in enumerate(nicks)]
    for client in clients:
        join(client, room)
    for client in clients:
        client.settle()
    return clients


def who(client: Client, room: str) -> list[str]:
    """The names ``/who ROOM`` lists, with their ``@`` or ``+``."""
    lines = client.replies(f"/who {room}")
    assert lines, "no answer to /who"
    assert not lines[-1].startswith("! "), lines
    names = lines[-1].removeprefix("* ")
    return [name.strip() for name in names.split(",")]


# -- 1. kick, and bans on a guest: by nick (address), address, CIDR -----------


def test_creator_kicks_a_guest(chat: Chat) -> None:
    """The kick lines are exactly PROTOCOL.md's; the kicked may join again."""
    chat.start()
    alice, troll, carol = room_of(chat, "#r", "alice", "troll", "carol")
    kicked = "* troll was kicked from #r by alice (flooding the room)"
    assert alice.reply("/kick troll flooding the room") == kicked
    assert carol.expect(r"kicked") == kicked
    told = troll.expect(r"kicked")
    assert told == "* You were kicked from #r by alice (flooding the room)"
    assert "troll" not in who(alice, "#r")
    join(troll, "#r")  # a kick is no ban
    refused(alice, "/kick nobody", "no-such-nick")


def test_nick_ban_on_a_guest_bans_the_address(chat: Chat) -> None:
    """The guest and a new connection of the same address are refused; others not."""
    chat.start()
    alice, troll, carol = room_of(chat, "#r", "alice", "troll", "carol")
    notice(alice, "/ban troll spam", "alice", "banned")
    assert troll.expect(r"kicked").startswith("* You were kicked from #r by alice")
    assert carol.expect(r"kicked").startswith("* troll was kicked from #r by alice")
    refused(troll, "/join #r", "banned")
    again = chat.connect("another", troll.source)
    refused(again, "/join #r", "banned")
    join(chat.connect("fresh", "127.0.5.9"), "#r")
    assert "carol" in who(alice, "#r")
    # A room operator is no server operator: the guest's address stays hidden.
    alice.replies("/bans")
    for member in (alice, carol):
        assert not any(troll.source in line for line in member.settle() + member.lines)
    notice(alice, "/unban troll", "alice", "troll")
    join(again, "#r")


def test_ban_by_address_and_by_cidr(chat: Chat) -> None:
    """An address ban kicks that address; a /24 ban kicks the block; /unban lifts."""
    chat.start()
    alice, _bob = room_of(chat, "#r", "alice", "bob")
    one, two = room_of(chat, "#r", "one", "two", base="127.0.6")
    three = chat.connect("three", "127.0.7.1")
    join(three, "#r")
    notice(alice, "/ban 127.0.7.1", "alice", "127.0.7.1")
    assert three.expect(r"kicked").startswith("* You were kicked from #r by alice")
    refused(three, "/join #r", "banned")
    notice(alice, "/ban 127.0.6.0/24 1h a bad block", "alice", "127.0.6.0/24")
    for client in (one, two):
        client.expect(r"^\* You were kicked from #r by alice")
        refused(client, "/join #r", "banned")
    refused(chat.connect("four", "127.0.6.200"), "/join #r", "banned")
    join(chat.connect("five", "127.0.8.1"), "#r")
    assert "bob" in who(alice, "#r")  # 127.0.5.2 is in neither block
    notice(alice, "/unban 127.0.6.0/24", "alice")
    join(one, "#r")
    refused(three, "/join #r", "banned")  # the other ban stays


# -- 2. bans on a logged-in user: the account ------------------------------


def test_nick_ban_on_a_logged_in_user_bans_the_account(chat: Chat) -> None:
    """A new nick, another address, a new login: still banned; the address is not."""
    chat.start()
    (alice,) = room_of(chat, "#r", "alice")
    bob, secret = chat.register("bob", "127.0.9.2")
    join(bob, "#r")
    notice(alice, "/ban bob", "alice", "banned")
    bob.expect(r"^\* You were kicked from #r by alice")
    bob.nick("bobby")
    refused(bob, "/join #r", "banned")
    bob.say("/quit")
    bob.read_until_closed()
    elsewhere = chat.connect(None, "127.0.9.3")
    assert elsewhere.reply(f"/login bob {secret}").startswith("* ")
    refused(elsewhere, "/join #r", "banned")
    join(chat.connect("guestie", "127.0.9.2"), "#r")  # the address is free
    # account:NAME, for a member who is not even here.
    carol, _secret = chat.register("carol", "127.0.9.4")
    notice(alice, "/ban account:carol", "alice", "account:carol")
    refused(carol, "/join #r", "banned")
    listed = alice.replies("/bans")
    assert sum("account:" in line for line in listed) == 2, listed
    assert any("account:bob" in line for line in listed), listed
    notice(alice, "/unban account:bob", "alice")
    join(elsewhere, "#r")
    refused(carol, "/join #r", "banned")
    chat.check_secrets()


# -- 3. mutes ---------------------------------------------------------------


def test_timed_mute_lifts_itself_and_unmute_lifts_at_once(chat: Chat) -> None:
    """``/mute bob 2s``: ``! muted:``, unseen; then the line reaches the room."""
    chat.start()
    alice, bob, carol = room_of(chat, "#r", "alice", "bob", "carol")
    notice(alice, "/mute bob 2s", "alice", "bob")
    started = time.monotonic()
    refused(bob, "hush now", "muted")
    assert not any("hush now" in line for line in carol.settle() + alice.settle())
    # The lift is announced; wait for it with a deadline, then speak.
    carol.expect(r"^\* .*bob.*(no longer muted|unmuted)", timeout=10)
    assert 1.5 < time.monotonic() - started < 10
    bob.say("free again")
    assert carol.expect(r"^\[#r\]") == "[#r] <bob> free again"
    notice(alice, "/mute bob", "alice", "bob")  # until lifted
    refused(bob, "still here", "muted")
    notice(alice, "/unmute bob", "alice", "bob")
    bob.say("unmuted at once")
    assert carol.expect(r"^\[#r\]") == "[#r] <bob> unmuted at once"


# -- 10. every operator command refused to a non-operator --------------------

OPERATOR_COMMANDS = [
    "/op carol",
    "/deop alice",
    "/voice carol",
    "/devoice carol",
    "/kick carol",
    "/kick carol a reason",
    "/ban carol",
    "/ban 127.0.5.3",
    "/unban 127.0.5.9",
    "/bans",
    "/mute carol",
    "/mute carol 2s",
    "/unmute carol",
    "/invite dave",
    "/room moderated on",
    "/room invite-only on",
    "/room topic-lock on",
    "/room limit 5",
    "/room key secret1",
    "/room register",
]


@pytest.mark.parametrize("command", OPERATOR_COMMANDS)
def test_non_operator_is_refused(chat: Chat, command: str) -> None:
    """A logged-in member who is not an operator gets ``! not-operator:``."""
    chat.start()
    alice, carol = room_of(chat, "#r", "alice", "carol")
    bob, _secret = chat.register("bob", "127.0.5.2")
    join(bob, "#r")
    chat.connect("dave", "127.0.5.4")
    for client in (alice, carol):
        client.settle()
    refused(bob, command, "not-operator")
    after = alice.replies("/room")
    assert any("Operators here: @alice" in line for line in after), after
    assert sorted(who(bob, "#r")) == ["@alice", "bob", "carol"]
    assert not any(line.startswith("* bob ") for line in quiet(carol)), carol.lines


# -- 11. UDP users are moderated like TCP users ------------------------------


def udp_in(udp: UdpClient, room: str) -> None:
    udp.say(f"/join {room}")
    udp.expect(rf"^\* You joined {re.escape(room)}")


def test_udp_members_are_kicked_muted_and_banned(chat: Chat) -> None:
    """A UDP member is kicked, muted and address-banned; a UDP operator kicks."""
    chat.start("--flood-burst", "0")
    alice, carol = room_of(chat, "#r", "alice", "carol")
    uma = chat.udp("uma", "127.0.20.1")
    udp_in(uma, "#r")
    assert alice.reply("/kick uma off you go") == (
        "* uma was kicked from #r by alice (off you go)"
    )
    assert uma.expect(r"kicked") == "* You were kicked from #r by alice (off you go)"
    udp_in(uma, "#r")
    notice(alice, "/mute uma", "alice", "uma")
    uma.say("can you hear me")
    assert uma.expect(r"^! ").startswith("! muted: ")
    assert not any("can you hear me" in line for line in carol.settle())
    notice(alice, "/unmute uma", "alice")
    uma.say("now you can")
    assert carol.expect(r"^\[#r\]") == "[#r] <uma> now you can"
    notice(alice, "/ban uma", "alice", "banned")
    uma.expect(r"^\* You were kicked from #r by alice")
    uma.say("/join #r")
    assert uma.expect(r"^[!*] (?!\S+ (joined|left) )").startswith("! banned: ")
    # A UDP user who made a room is its operator, over a TCP member.
    ula = chat.udp("ula", "127.0.20.2")
    udp_in(ula, "#u")
    join(carol, "#u")
    ula.say("/kick carol bye")
    assert ula.expect(r"kicked") == "* carol was kicked from #u by ula (bye)"
    assert carol.expect(r"kicked") == "* You were kicked from #u by ula (bye)"
    ula.say("/who #u")
    assert ula.expect(r"@ula") == "* @ula"


# -- 12. server operators are operators everywhere ------------------------------


def test_server_operator_kicks_in_anyones_room(chat: Chat) -> None:
    """A server operator who did not make the room may /kick and /ban there."""
    secret = chat.secret()
    chat.operators(root=secret)
    chat.start()
    alice, bob, _carol = room_of(chat, "#r", "alice", "bob", "carol")
    root = chat.connect("root", "127.0.5.8")
    assert root.reply(f"/oper root {secret}").startswith("* ")
    join(root, "#r")
    refused(bob, "/kick carol", "not-operator")
    assert root.reply("/kick bob enough") == "* bob was kicked from #r by root (enough)"
    assert bob.expect(r"kicked") == "* You were kicked from #r by root (enough)"
    assert alice.expect(r"kicked") == "* bob was kicked from #r by root (enough)"
    notice(root, "/room moderated on", "root")
    chat.check_secrets()
