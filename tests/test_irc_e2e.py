"""
IRC clients end to end (issue 15), from PROTOCOL.md's "IRC clients": a real
``twistd -n chat --irc``, raw IRC over real sockets beside nc-style TCP and
UDP users, in the same rooms.
"""

from __future__ import annotations

import base64
import re
import socket
import time

import pytest
from conftest import free_port
from test_accounts_e2e import Chat, Client, UdpClient
from test_accounts_e2e import chat as chat  # noqa: PLC0414 - the fixture

pytestmark = pytest.mark.slow

TIMEOUT = 10.0


class Irc:
    """A raw IRC client: lines in, the lines received kept."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0)
        )
        self.buffer = b""
        self.lines: list[str] = []
        self.seen = 0

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> str:
        """The next line (after those already taken) matching ``pattern``."""
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        while True:
            while self.seen < len(self.lines):
                line = self.lines[self.seen]
                self.seen += 1
                if compiled.search(line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in {self.lines[-20:]!r}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise AssertionError(f"closed before {pattern!r}: {self.lines[-20:]!r}")
            self.buffer += data
            *done, self.buffer = self.buffer.split(b"\r\n")
            self.lines.extend(line.decode("utf-8", "replace") for line in done)

    def register(self, nick: str, *caps: str) -> None:
        if caps:
            self.send("CAP LS 302")
        self.send(f"NICK {nick}", f"USER {nick} 0 * :{nick} the tester")
        if caps:
            self.send(f"CAP REQ :{' '.join(caps)}")
            self.expect(r" CAP \S+ ACK ")
            self.send("CAP END")
        self.expect(r" 001 ")
        self.expect(r" (376|422) ")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def irc_chat(chat: Chat) -> Chat:
    chat.irc_port = free_port()  # type: ignore[attr-defined]
    chat.start("--irc", f"tcp:{chat.irc_port}:interface=127.0.0.1")  # type: ignore[attr-defined]
    return chat


def irc(chat: Chat, nick: str, *caps: str, source: str = "127.0.0.1") -> Irc:
    client = Irc(chat.irc_port, source)  # type: ignore[attr-defined]
    client.register(nick, *caps)
    return client


def line_user(chat: Chat, nick: str, room: str = "#dev") -> Client:
    client = chat.connect(nick)
    client.say(f"/join {room}")
    client.expect(rf"^\* (You joined {room}|{room} is now)")
    return client


def test_registration_and_isupport(irc_chat: Chat) -> None:
    client = Irc(irc_chat.irc_port)  # type: ignore[attr-defined]
    client.send("CAP LS 302", "NICK alice", "USER alice 0 * :Alice A")
    caps = client.expect(r" CAP \* LS ")
    for cap in ("server-time", "message-tags", "echo-message", "multi-prefix",
                "cap-notify", "sasl=PLAIN"):  # fmt: skip
        assert cap in caps
    client.send("CAP END")
    assert client.expect(r" 001 ").split()[2] == "alice"
    for numeric in ("002", "003", "004"):
        client.expect(rf" {numeric} alice ")
    isupport = client.expect(r" 005 alice ")
    for token in ("CHANTYPES=#", "PREFIX=(ov)@+", "NICKLEN=24", "CASEMAPPING="):
        assert token in " ".join(client.lines), token
    assert isupport.endswith(":are supported by this server")
    client.expect(r" (376|422) ")
    client.send("PING :abc")
    assert client.expect(r"PONG").endswith(":abc")


def test_irc_and_line_users_chat_in_one_room(irc_chat: Chat) -> None:
    nc = line_user(irc_chat, "lina")
    bob = irc(irc_chat, "bob")
    bob.send("JOIN #dev")
    join = bob.expect(r" JOIN #dev$")
    assert join.startswith(":bob!~bob@")
    names = bob.expect(r" 353 bob = #dev :")
    assert names.endswith(":@lina bob")
    bob.expect(r" 366 bob #dev ")
    nc.expect(r"^\* bob joined #dev$")
    nc.say("hello irc")
    said = bob.expect(r"PRIVMSG #dev :hello irc$")
    assert said.startswith(":lina!~lina@")
    assert "127.0.0" not in said  # a cloak, never the address
    nc.say("/me waves")
    assert bob.expect(r"PRIVMSG #dev :\x01ACTION waves\x01$")
    bob.send("PRIVMSG #dev :hi \x02there\x02 \x0304red\x03")
    assert nc.expect(r"^\[#dev\] <bob>") == "[#dev] <bob> hi there red"
    bob.send("PRIVMSG #dev :\x01ACTION dances\x01")
    assert nc.expect(r"^\[#dev\] \* bob") == "[#dev] * bob dances"
    bob.send("PRIVMSG lina :just you")
    assert nc.expect(r"^\[PM\]") == "[PM] <bob> just you"
    nc.say("/msg bob back to you")
    assert bob.expect(r"PRIVMSG bob :").endswith("PRIVMSG bob :back to you")


def test_a_udp_user_and_an_irc_user(irc_chat: Chat) -> None:
    bob = irc(irc_chat, "bob")
    bob.send("JOIN #lobby")
    bob.expect(r" 366 bob #lobby ")
    udp = UdpClient(irc_chat.udp_port, "127.0.0.9")
    irc_chat.udp_clients.append(udp)
    udp.join()
    udp.say("/nick ulla")
    udp.expect(r"You are now known as ulla")
    udp.say("from udp")
    assert bob.expect(r"PRIVMSG #lobby :from udp$").startswith(":ulla!~ulla@")
    bob.send("PRIVMSG #lobby :to udp")
    udp.expect(r"^\[#lobby\] <bob> to udp$")


def test_topic_nick_part_quit_both_ways(irc_chat: Chat) -> None:
    nc = line_user(irc_chat, "lina")
    bob = irc(irc_chat, "bob")
    bob.send("JOIN #dev")
    bob.expect(r" 366 bob #dev ")
    nc.say("/topic friday release")
    assert bob.expect(r" TOPIC #dev :").endswith("TOPIC #dev :friday release")
    bob.send("TOPIC #dev")
    assert bob.expect(r" 332 bob #dev :").endswith(":friday release")
    bob.send("NICK robert")
    assert bob.expect(r" NICK robert$").startswith(":bob!")
    nc.expect(r"^\* bob is now known as robert$")
    nc.say("/nick lena")
    assert bob.expect(r" NICK lena$").startswith(":lina!")
    bob.send("PART #dev :lunch")
    assert bob.expect(r" PART #dev").endswith("PART #dev :lunch")
    nc.expect(r"^\* robert left #dev \(lunch\)$")
    bob.send("JOIN #dev", "QUIT :bye now")
    nc.expect(r"^\* robert joined #dev$")
    bob.expect(r"^ERROR ")
    nc.expect(r"^\* robert quit \(Quit: bye now\)$")


def test_whois_who_list_and_no_address(irc_chat: Chat) -> None:
    nc = line_user(irc_chat, "lina")
    bob = irc(irc_chat, "bob", "multi-prefix")
    bob.send("JOIN #dev", "WHO #dev", "WHOIS lina", "LIST", "ISON lina nobody")
    who = bob.expect(r" 352 bob #dev \S+ \S+ \S+ lina ")
    assert " H@ " in who
    bob.expect(r" 315 bob #dev ")
    assert bob.expect(r" 311 bob lina ").split()[4] == "~lina"
    assert "#dev" in bob.expect(r" 319 bob lina ")
    bob.expect(r" 318 bob lina ")
    assert bob.expect(r" 322 bob #dev ").split()[4] == "2"
    bob.expect(r" 323 bob ")
    assert bob.expect(r" 303 bob ").split()[-1].lstrip(":") == "lina"
    assert not any("127.0.0" in line for line in bob.lines if " ERROR " not in line)
    del nc


def test_kick_ban_and_modes_are_room_moderation(irc_chat: Chat) -> None:
    bob = irc(irc_chat, "bob")
    bob.send("JOIN #ops")
    bob.expect(r" 366 bob #ops ")  # bob made #ops: its operator
    nc = line_user(irc_chat, "lina", "#ops")
    bob.expect(r" JOIN #ops$")
    bob.send("MODE #ops +m")
    nc.expect(r"^\* bob turned moderated on in #ops$")
    nc.say("can I talk?")
    nc.expect(r"^! moderated: ")
    assert bob.expect(r" MODE #ops ").endswith("MODE #ops +m")
    bob.send("MODE #ops +v lina")
    nc.expect(r"^\* bob gave lina a voice in #ops$")
    assert bob.expect(r" MODE #ops ").endswith("MODE #ops +v lina")
    bob.send("KICK #ops lina :enough")
    nc.expect(r"^\* You were kicked from #ops by bob \(enough\)$")
    assert bob.expect(r" KICK #ops lina").endswith(":enough")
    bob.send("MODE #ops +b lina")
    nc.say("/join #ops")
    nc.expect(r"^! banned: ")
    bob.send("MODE #ops b")
    ban = bob.expect(r" 367 bob #ops ")
    assert ban.split()[4] == "lina!*@*"  # never the address
    assert "127.0.0" not in ban
    bob.expect(r" 368 bob #ops ")


def test_a_line_user_kicks_an_irc_user(irc_chat: Chat) -> None:
    nc = line_user(irc_chat, "lina", "#den")
    bob = irc(irc_chat, "bob")
    bob.send("JOIN #den")
    bob.expect(r" 366 bob #den ")
    nc.say("/op bob")
    assert bob.expect(r" MODE #den ").startswith(":lina!")
    nc.say("/deop bob")
    assert bob.expect(r" MODE #den ").endswith("MODE #den -o bob")
    nc.say("/kick bob off you go")
    assert bob.expect(r" KICK #den bob").endswith(":off you go")
    bob.send("PRIVMSG #den :still here?")
    bob.expect(r" 404 bob #den ")


def test_sasl_plain_with_an_account_made_by_a_line_user(irc_chat: Chat) -> None:
    nc = irc_chat.connect("carol")
    secret = irc_chat.secret()
    assert nc.reply(f"/register {secret}").startswith("* The account carol")
    nc.say("/quit")
    client = Irc(irc_chat.irc_port)  # type: ignore[attr-defined]
    client.send("CAP LS 302", "NICK carol", "USER carol 0 * :Carol", "CAP REQ :sasl")
    client.expect(r" CAP \S+ ACK :?sasl")
    client.send("AUTHENTICATE PLAIN")
    client.expect(r"^AUTHENTICATE \+")
    token = base64.b64encode(f"carol\0carol\0{secret}".encode()).decode()
    client.send(f"AUTHENTICATE {token}")
    client.expect(r" 900 ")
    client.expect(r" 903 ")
    client.send("CAP END")
    assert client.expect(r" 001 ").split()[2] == "carol"
    wrong = Irc(irc_chat.irc_port)  # type: ignore[attr-defined]
    wrong.send("CAP LS 302", "NICK carol2", "USER c 0 * :C", "CAP REQ :sasl")
    wrong.expect(r" CAP \S+ ACK :?sasl")
    wrong.send("AUTHENTICATE PLAIN")
    wrong.expect(r"^AUTHENTICATE \+")
    bad = base64.b64encode(b"carol\0carol\0not-the-password").decode()
    wrong.send(f"AUTHENTICATE {bad}")
    wrong.expect(r" 904 ")
    irc_chat.check_secrets()


def test_a_registered_nick_is_refused_without_sasl(irc_chat: Chat) -> None:
    nc = irc_chat.connect("dora")
    assert nc.reply(f"/register {irc_chat.secret()}").startswith("* The account")
    client = Irc(irc_chat.irc_port)  # type: ignore[attr-defined]
    client.send("NICK dora", "USER d 0 * :D")
    assert " 433 " in client.expect(r" 433 ")
    client.send("NICK dora_")
    client.expect(r" 001 dora_ ")


def test_an_overlong_line_gets_417_and_the_connection_stays(irc_chat: Chat) -> None:
    bob = irc(irc_chat, "bob")
    bob.send("PRIVMSG #x :" + "y" * 600)
    bob.expect(r" 417 ")
    bob.send("PING :still")
    bob.expect(r"PONG .*still")


def test_history_replay_on_join_with_and_without_server_time(irc_chat: Chat) -> None:
    nc = line_user(irc_chat, "lina")
    nc.say("first words")
    nc.say("/me thinks")
    nc.say("/ping sync")  # both are said (and stored) before anyone joins
    nc.expect(r"^\* pong sync$")
    tagged = irc(irc_chat, "tina", "server-time")
    tagged.send("JOIN #dev")
    tagged.expect(r" JOIN #dev$")
    tagged.expect(r" 366 tina #dev ")
    line = tagged.expect(r"PRIVMSG #dev :first words$")
    assert line.startswith("@time=20")
    assert ":lina!~lina@history PRIVMSG" in line
    assert "\x01ACTION thinks\x01" in tagged.expect(r"ACTION thinks")
    plain = irc(irc_chat, "pat")
    plain.send("JOIN #dev")
    plain.expect(r" 366 pat #dev ")
    replayed = plain.expect(r"first words$")
    assert re.search(r"PRIVMSG #dev :\[\d\d:\d\d\] first words$", replayed)


def test_echo_message_gives_the_sender_its_own_lines(irc_chat: Chat) -> None:
    nc = line_user(irc_chat, "lina")
    eve = irc(irc_chat, "eve", "echo-message")
    eve.send("JOIN #dev")
    eve.expect(r" 366 eve #dev ")
    eve.send("PRIVMSG #dev :echoed", "PRIVMSG lina :to lina")
    assert eve.expect(r"PRIVMSG #dev :echoed$").startswith(":eve!")
    assert eve.expect(r"PRIVMSG lina :to lina$").startswith(":eve!")
    nc.expect(r"^\[#dev\] <eve> echoed$")
    nc.expect(r"^\[PM\] <eve> to lina$")


def test_motd_lusers_and_away(irc_chat: Chat) -> None:
    bob = irc(irc_chat, "bob")
    bob.send("MOTD", "LUSERS", "AWAY :lunch")
    bob.expect(r" (376|422) bob ")
    bob.expect(r" 251 bob ")
    bob.expect(r" 306 bob ")
    amy = irc(irc_chat, "amy")
    amy.send("PRIVMSG bob :there?")
    assert amy.expect(r" 301 amy bob").endswith("lunch")


def test_irc_ban_masks_as_clients_send_them(irc_chat: Chat) -> None:
    """irssi's /ban sends *!*@HOST with the host it saw: the cloak."""
    bob = irc(irc_chat, "bob")
    bob.send("JOIN #mask")
    bob.expect(r" 366 bob #mask ")
    nc = irc_chat.connect("lina", "127.0.0.44")  # a cloak of its own
    nc.say("/join #mask")
    nc.expect(r"^\* You joined #mask")
    bob.send("WHO lina")
    cloak = bob.expect(r" 352 bob ").split()[5]
    bob.send(f"MODE #mask +b *!*@{cloak}")
    seen = bob.expect(r" MODE #mask \+b ")
    assert "127.0.0" not in seen
    nc.expect(r"^\* lina was kicked from #mask by bob|^\* You were kicked")
    nc.say("/join #mask")
    nc.expect(r"^! banned: ")
    bob.send("MODE #mask -b lina!*@*")
    bob.expect(r" MODE #mask -b ")
    nc.say("/join #mask")
    nc.expect(r"^\* You joined #mask")
    bob.send("MODE #mask +b *!*lina@*" + cloak[cloak.index(".") :])  # irssi's mask
    bob.expect(r" MODE #mask \+b lina")
    nc.expect(r"^\* You were kicked from #mask")
    bob.send("MODE #mask +b *!*@*.example.net")
    bob.expect(r" 696 bob #mask b ")


def test_who_with_a_mask(irc_chat: Chat) -> None:
    line_user(irc_chat, "lina")
    bob = irc(irc_chat, "bob")
    bob.send("WHO li*")
    assert bob.expect(r" 352 bob ").split()[7] == "lina"
    assert bob.expect(r" 315 bob ").split()[3] == "li*"
    bob.send("WHO *")
    nicks = {bob.expect(r" 352 bob ").split()[7] for _ in range(2)}
    assert nicks == {"lina", "bob"}
    bob.expect(r" 315 bob \* ")


def test_a_notice_to_a_channel(irc_chat: Chat) -> None:
    nc = line_user(irc_chat, "lina")
    bob, amy = irc(irc_chat, "bob"), irc(irc_chat, "amy")
    for client, nick in ((bob, "bob"), (amy, "amy")):
        client.send("JOIN #dev")
        client.expect(rf" 366 {nick} #dev ")
    bob.send("NOTICE #dev :heads up")
    assert amy.expect(r" #dev :heads up$").split()[1] == "NOTICE"
    nc.expect(r"^\[#dev\] <bob> heads up$")
