"""
Real IRC clients (issue 15): irssi and WeeChat, the Debian packages, in
tmux, against a real ``twistd -n chat --irc``, beside an nc-style TCP user
(``lina``) and a UDP user (``ulla``), with what each screen shows checked.

Each client runs in its own private tmux server (:mod:`_tmux`) with a home
directory under ``tmp_path`` (no user configuration, no scripts, no
autoconnect to anywhere but the daemon), through a :class:`_tmux.WireLog`
proxy: a failing check prints what the client sent and what the server
answered beside what the screen shows.  Screens differ between clients, so
checks match the meaningful words of a line (:func:`line_with`), not a
layout.  The line users come from their own loopback addresses so that a
ban by address hits them and not the IRC user (127.0.0.1, the proxy).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _tmux import Terminal, WireLog
from conftest import free_port
from test_accounts_e2e import Chat, Client, UdpClient
from test_accounts_e2e import chat as chat  # noqa: PLC0414 - the fixture

pytestmark = pytest.mark.slow

WAIT = 10.0
#: A cloak (irc_text.cloak): two groups of eight base32 letters, then ``tc``.
CLOAK = r"[a-z2-7]{8}\.[a-z2-7]{8}\.tc"
NICKS = {"irssi": "bob", "weechat": "wendy"}


def line_with(*words: str) -> str:
    """A pattern for one screen line holding every one of ``words``."""
    looks = "".join(rf"(?=[^\n]*{re.escape(word)})" for word in words)
    return rf"^{looks}[^\n]*$"


def irssi_command(home: Path, port: int, nick: str) -> list[str]:
    """irssi with its own home, connecting to the daemon only."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config").write_text(
        "settings = {\n"
        f'  core = {{ real_name = "{nick} tester"; user_name = "{nick}";'
        f' nick = "{nick}"; settings_autosave = "no"; }};\n'
        # No client-side send queue: irssi waits 2.2 s between commands.
        '  "irc/core" = { cmd_queue_speed = "0"; cmds_max_at_once = "0"; };\n'
        "};\n",
        "utf-8",
    )
    return ["irssi", f"--home={home}", "-c", "127.0.0.1", "-p", str(port), "-n", nick]


def weechat_command(home: Path, port: int, nick: str) -> list[str]:
    """WeeChat with its own home, the IRC plugin only, no scripts."""
    run = (
        "/set irc.msgbuffer.whois current; "
        f"/server add t 127.0.0.1/{port} -notls -nicks={nick} -username={nick}"
        f" -realname={nick} -anti_flood_prio_high=0 -anti_flood_prio_low=0;"
        " /connect t"
    )
    return ["weechat", "-d", str(home), "-a", "-s", "-P", "irc", "-r", run]


COMMANDS = {"irssi": irssi_command, "weechat": weechat_command}


@dataclass
class Session:
    """One real IRC client in its terminal, its wire, and the chat."""

    chat: Chat
    term: Terminal
    wire: WireLog
    nick: str
    client: str

    def type(self, text: str) -> None:
        self.term.type(text)

    def see(self, *words: str, count: int = 1) -> str:
        """The (``count``-th) screen line that holds every one of ``words``."""
        try:
            return self.term.wait_for(line_with(*words), WAIT, count).group(0)
        except AssertionError as problem:
            raise AssertionError(f"{problem}\n{self.evidence()}") from None

    def evidence(self) -> str:
        """What the client sent and was answered, and what its screen shows."""
        shown = [line.rstrip() for line in self.term.screen(0).splitlines()]
        screen = "\n".join(line for line in shown if line.strip(" │"))
        return f"-- wire:\n{self.wire.tail()}\n-- screen:\n{screen}"

    def sent(self, pattern: str) -> str:
        return self.wire.wait_sent(pattern, WAIT)

    def join(self, room: str) -> None:
        self.type(f"/join {room}")
        self.sent(rf"^JOIN {room}\b")
        self.see(self.nick, "joined", room)


@pytest.fixture(params=["irssi", "weechat"])
def session(
    chat: Chat, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Session]:
    name: str = request.param
    # Installed by .ci/run (Debian's packages); never skipped.
    assert shutil.which(name), f"{name} is not installed: apt-get install {name}"
    irc_port = free_port()
    chat.start("--irc", f"tcp:{irc_port}:interface=127.0.0.1")
    wire = WireLog(irc_port)
    term = Terminal(tmp_path / name)
    try:
        nick = NICKS[name]
        term.start(COMMANDS[name](tmp_path / name, wire.port, nick))
        here = Session(chat, term, wire, nick, name)
        here.see("Welcome to the twisted-chat")
        yield here
    finally:
        term.close()
        wire.close()


def nc_user(chat: Chat, nick: str, room: str = "#dev") -> Client:
    client = chat.connect(nick, source="127.0.0.2")
    client.say(f"/join {room}")
    client.expect(rf"^\* (You joined {room}|{room} is now)")
    return client


def udp_user(chat: Chat, nick: str, room: str = "#dev") -> UdpClient:
    client = chat.udp(nick, source="127.0.0.3")
    client.say(f"/join {room}")
    client.expect(rf"^\* You joined {room}")
    return client


def test_talk_actions_and_topic_with_nc_and_udp_users(session: Session) -> None:
    me = session.nick
    session.join("#dev")
    lina = nc_user(session.chat, "lina")
    session.see("lina", "joined", "#dev")
    ulla = udp_user(session.chat, "ulla")
    session.see("ulla", "joined", "#dev")

    session.type("hello from irc")
    session.sent(r"^PRIVMSG #dev :hello from irc$")
    lina.expect(rf"^\[#dev\] <{me}> hello from irc$")
    ulla.expect(rf"^\[#dev\] <{me}> hello from irc$")
    lina.say("hi from nc")
    session.see("lina", "hi from nc")
    ulla.say("hi from udp")
    session.see("ulla", "hi from udp")

    session.type("/me dances")
    session.sent(r"^PRIVMSG #dev :\x01ACTION dances\x01$")
    lina.expect(rf"^\[#dev\] \* {me} dances$")
    ulla.expect(rf"^\[#dev\] \* {me} dances$")
    lina.say("/me waves back")
    assert "*" in session.see("lina waves back")

    session.type("/topic release on friday")
    session.sent(r"^TOPIC #dev :release on friday$")
    lina.expect(rf"{me}.*topic.*release on friday")
    lina.say("/topic moved to monday")
    session.see("lina", "topic", "moved to monday")


def test_names_and_whois_show_the_operator_and_a_cloak(session: Session) -> None:
    me = session.nick
    session.join("#dev")
    lina = nc_user(session.chat, "lina")
    session.see("lina", "joined", "#dev")
    session.type("/names")  # irssi shows its own list, WeeChat asks NAMES
    session.see(f"@{me}", "lina")
    session.type("/whois lina")
    session.sent(r"^WHOIS lina\b")
    if session.client == "irssi":
        session.type("/window 1")  # irssi answers WHOIS in its status window
    session.see("End of", "WHOIS")
    # lina's user@host: in the WHOIS answer (and, in WeeChat's one window,
    # on the join line before it).
    again = 1 if session.client == "irssi" else 2
    shown = session.term.screen()
    user = list(re.finditer(rf"\blina\b[^\n]*~lina@{CLOAK}", shown))
    assert len(user) >= again, session.evidence()
    end = shown.index("End of", user[again - 1].start())
    answer = shown[user[again - 1].start() : end]
    assert "#dev" in answer, answer
    assert "127.0.0." not in answer, answer
    leaks = session.wire.sent(r"127\.0\.0\.", "<<")  # nothing the server said
    assert not leaks, leaks
    del lina


def test_the_irc_operator_kicks_the_nc_user(session: Session) -> None:
    me = session.nick
    session.join("#dev")  # the IRC user made #dev: its operator
    lina = nc_user(session.chat, "lina")
    session.see("lina", "joined", "#dev")
    session.type("/kick lina enough now")
    session.sent(r"^KICK #dev lina :enough now$")
    lina.expect(rf"^\* You were kicked from #dev by {me} \(enough now\)$")
    session.see("lina", "kicked", "enough now")
    lina.say("/join #dev")
    lina.expect(r"^\* You joined #dev")
    session.see("lina", "joined", "#dev", count=2)


def test_the_irc_operator_bans_the_nc_user(session: Session) -> None:
    """
    ``/ban lina`` in both clients is ``MODE #dev +b MASK`` with a mask made
    from lina's cloak (irssi ``*!*lina@*.B.C.tc``, WeeChat ``*!*@A.B.C.tc``):
    the ban must hold against lina's address, as ``+b lina`` would.
    """
    session.join("#dev")
    lina = nc_user(session.chat, "lina")
    session.see("lina", "joined", "#dev")
    session.type("/ban lina")
    mask = session.sent(r"^MODE #dev \+b \S+").split()[-1]
    # The server's answer: the ban announced, or an error numeric.
    answer = session.wire.answer(r"^MODE #dev \+b ", r" MODE #dev \+b | [45]\d\d ")
    assert " MODE #dev +b " in answer, f"+b {mask}: {answer}\n{session.evidence()}"
    lina.expect(r"^\* You were kicked from #dev", WAIT)  # a ban kicks
    session.see("+b")
    lina.say("/join #dev")
    line = lina.expect(r"^! banned: |^\* You joined #dev")
    assert line.startswith("! banned: "), f"{line}\n{session.evidence()}"


def test_the_nc_operator_kicks_the_irc_user(session: Session) -> None:
    lina = nc_user(session.chat, "lina", "#den")  # lina made #den
    session.join("#den")
    lina.expect(rf"^\* {session.nick} joined #den$")
    lina.say("/kick " + session.nick + " off you go")
    session.see("lina", "kicked", "off you go")


def test_mode_plus_b_with_a_nick_bans_the_nc_user(session: Session) -> None:
    """The ban as the server takes it today (``+b NICK``), typed as a mode."""
    session.join("#dev")
    lina = nc_user(session.chat, "lina")
    session.see("lina", "joined", "#dev")
    session.type("/mode #dev +b lina")
    session.sent(r"^MODE #dev \+b lina$")
    lina.expect(r"^\* You were kicked from #dev", WAIT)
    shown = session.see("+b", "lina")  # the ban's mode line
    assert "127.0.0." not in shown, shown
    lina.say("/join #dev")
    line = lina.expect(r"^! banned: |^\* You joined #dev", WAIT)
    assert line.startswith("! banned: "), f"{line}\n{session.evidence()}"


def test_a_ban_is_announced_as_it_is_listed(session: Session) -> None:
    """
    The mask in the ``MODE +b`` a client sees is the one ``MODE #dev b``
    lists: clients keep their ban list from both, and unban what they show.
    """
    session.join("#dev")
    lina = nc_user(session.chat, "lina")
    session.see("lina", "joined", "#dev")
    session.type("/mode #dev +b lina")
    lina.expect(r"^\* You were kicked from #dev", WAIT)
    session.type("/mode #dev +b")  # no mask: the list
    session.sent(r"^MODE #dev \+?b$")
    session.see("End of", "ban list")
    with session.wire.lock:
        answers = [line[3:] for line in session.wire.lines if line[:2] == "<<"]
    announced = [line.split()[-1] for line in answers if " MODE #dev +b " in line]
    listed = [line.split()[4] for line in answers if " 367 " in line]
    assert announced, session.evidence()
    assert announced == listed, f"{announced} != {listed}\n{session.evidence()}"
