"""
The IRC registration machine's exchanges, message by message: NICK/USER,
CAP negotiation (302, values, multiline, NAK), SASL PLAIN (chunks, bounds,
abort, late answers), PASS, refusals, 451, QUIT and the deadline.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from twisted_chat.transports import irc_wire
from twisted_chat.transports.irc_caps import (
    CAP_LINE_BYTES,
    MAX_LOGIN_ATTEMPTS,
    MAX_REQ_TOKENS,
    MAX_SASL_BASE64,
    CapNegotiation,
)
from twisted_chat.transports.irc_message import IrcMessage
from twisted_chat.transports.irc_registration import (
    MAX_PREREG_ERRORS,
    REALNAME_LENGTH,
    USERLEN,
    Registration,
)

SERVER = "irc.test"
OFFERED: dict[str, str | None] = {
    "cap-notify": None,
    "echo-message": None,
    "message-tags": None,
    "multi-prefix": None,
    "sasl": "PLAIN",
    "server-time": None,
}
Done = Callable[[str | None], None]


class Checks:
    """The lead's answers: some nicks taken, some accounts, sync or later."""

    def __init__(self) -> None:
        self.taken = {"taken"}
        self.accounts = {"alice": "wonderland", "bob": "builder:x"}
        self.later = False
        self.pending: list[tuple[str | None, Done]] = []
        self.calls: list[tuple[str, str, str]] = []

    def nick_refusal(self, nick: str, account: str | None) -> tuple[str, str] | None:
        if nick in self.taken:
            return ("433", "Nickname is already in use")
        if not nick.isalnum():
            return ("432", "Erroneous nickname")
        if nick in self.accounts and account != nick:
            return ("433", "Nickname is registered to an account")
        return None

    def verify_plain(
        self, authzid: str, authcid: str, password: str, done: Done
    ) -> None:
        self.calls.append((authzid, authcid, password))
        ok = self.accounts.get(authcid) == password and authzid in ("", authcid)
        answer = authcid if ok else None
        if self.later:
            self.pending.append((answer, done))
        else:
            done(answer)

    def answer(self) -> None:
        answer, done = self.pending.pop(0)
        done(answer)


class Client:
    """A Registration and what was sent to it, later answers included."""

    def __init__(
        self,
        motd: list[str] | None = None,
        offered: dict[str, str | None] | None = None,
    ) -> None:
        self.checks = Checks()
        self.later: list[list[IrcMessage]] = []
        self.reg = Registration(
            SERVER,
            offered or OFFERED,
            lambda nick: [
                IrcMessage("005", (nick, "CHANTYPES=#", "are supported by this server"))
            ],
            ["Hello", "there"] if motd is None else motd,
            self.checks,
            network="TestNet",
            version="twisted-chat-1",
            created="Tue Dec 1 2026",
            host="cloak.test",
            started_at=100.0,
            send_later=self.later.append,
        )

    def send(self, command: str, *params: str) -> list[IrcMessage]:
        replies = self.reg.feed(IrcMessage(command, params))
        for reply in replies:  # every reply is a line the codec can send
            assert len(irc_wire.format(reply)) <= CAP_LINE_BYTES + 2
        return replies


def closing(client: Client) -> bool:
    """Read afresh (mypy would keep an earlier assert's narrowing)."""
    return client.reg.wants_close


def codes(replies: list[IrcMessage]) -> list[str]:
    return [reply.command for reply in replies]


def plain(authzid: str, authcid: str, password: str) -> str:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()


def sasl_ready(client: Client) -> None:
    client.send("CAP", "LS", "302")
    client.send("NICK", "alice")
    client.send("USER", "alice", "0", "*", "Alice A")
    assert codes(client.send("CAP", "REQ", "sasl")) == ["CAP"]
    assert client.send("AUTHENTICATE", "PLAIN") == [IrcMessage("AUTHENTICATE", ("+",))]


BURST = ["001", "002", "003", "004", "005", "375", "372", "372", "376"]


# -- plain registration -------------------------------------------------------


def test_nick_then_user_registers_with_the_welcome_burst() -> None:
    client = Client()
    assert client.send("NICK", "carol") == []
    replies = client.send("USER", "carol", "0", "*", "Carol C")
    assert codes(replies) == BURST
    assert replies[0] == IrcMessage(
        "001",
        ("carol", "Welcome to the TestNet Internet Relay Chat Network carol"),
        SERVER,
    )
    assert replies[1].params == (
        "carol",
        "Your host is irc.test, running version twisted-chat-1",
    )
    assert replies[2].params == ("carol", "This server was created Tue Dec 1 2026")
    assert replies[3].params == (
        "carol",
        SERVER,
        "twisted-chat-1",
        "o",
        "biklmnotv",
        "bklov",
    )
    assert replies[6].params == ("carol", "- Hello")
    result = client.reg.result
    assert result is not None
    assert (result.nick, result.user, result.realname, result.account) == (
        "carol",
        "carol",
        "Carol C",
        None,
    )
    assert client.reg.registered
    assert result.caps == frozenset()
    assert result.cap_version == 301


def test_user_then_nick_registers_too() -> None:
    client = Client()
    assert client.send("USER", "u", "0", "*", "R") == []
    assert codes(client.send("NICK", "carol")) == BURST


def test_no_motd_gives_422() -> None:
    client = Client(motd=[])
    client.send("NICK", "carol")
    replies = client.send("USER", "carol", "0", "*", "C")
    assert codes(replies)[-1] == "422"
    assert "375" not in codes(replies)


def test_nick_and_user_parameters() -> None:
    client = Client()
    assert client.send("NICK") == [
        IrcMessage("431", ("*", "No nickname given"), SERVER)
    ]
    assert codes(client.send("NICK", "x" * 65)) == ["432"]
    assert client.send("USER", "u", "0", "*") == [
        IrcMessage("461", ("*", "USER", "Not enough parameters"), SERVER)
    ]
    assert codes(client.send("USER", "u", "0", "*", "")) == ["461"]
    assert client.reg.nick is None
    assert client.reg.user is None


def test_username_is_cleaned_and_bounded_and_realname_bounded() -> None:
    client = Client()
    client.send("USER", "a@b!c" + "d" * 40, "0", "*", "R" * 500)
    assert client.reg.user == "abc" + "d" * (USERLEN - 3)
    assert client.reg.realname == "R" * REALNAME_LENGTH
    other = Client()
    other.send("USER", "@@@", "0", "*", "R")
    assert other.reg.user == "user"


def test_second_user_and_registration_commands_after_001_get_462() -> None:
    client = Client()
    client.send("USER", "u", "0", "*", "R")
    assert codes(client.send("USER", "v", "0", "*", "S")) == ["462"]
    assert client.reg.user == "u"
    client.send("NICK", "carol")
    for command in ("USER", "PASS", "AUTHENTICATE"):
        assert codes(client.send(command, "a", "0", "*", "R")) == ["462"]
    # what is not registration's is the lead's after 001
    assert client.send("NICK", "dave") == []
    assert client.send("PING", "x") == []
    assert client.send("QUIT", "bye") == []
    assert not client.reg.wants_close


# -- before registration ------------------------------------------------------


def test_other_commands_before_registration_get_451() -> None:
    client = Client()
    for command in ("JOIN", "PRIVMSG", "MODE", "WHO", "FOO"):
        assert client.send(command, "#a") == [
            IrcMessage("451", ("*", "You have not registered"), SERVER)
        ]
    client.send("NICK", "carol")
    assert client.send("JOIN", "#a")[0].params[0] == "carol"


def test_ping_before_registration_is_answered_and_pong_ignored() -> None:
    client = Client()
    assert client.send("PING", "tok 1") == [
        IrcMessage("PONG", (SERVER, "tok 1"), SERVER)
    ]
    assert codes(client.send("PING")) == ["461"]
    assert client.send("PONG", "x") == []


def test_too_many_errors_before_registration_close() -> None:
    client = Client()
    for _ in range(MAX_PREREG_ERRORS - 1):
        assert codes(client.send("JOIN", "#a")) == ["451"]
    assert not closing(client)
    replies = client.send("JOIN", "#a")
    assert codes(replies) == ["451", "ERROR"]
    assert replies[1].params == (
        "Closing Link: cloak.test (Too many errors before registration)",
    )
    assert client.reg.wants_close
    assert client.send("NICK", "carol") == []


def test_quit_during_registration() -> None:
    client = Client()
    client.send("NICK", "carol")
    assert client.send("QUIT", "bye now") == [
        IrcMessage("ERROR", ("Closing Link: cloak.test (Quit: bye now)",))
    ]
    assert client.reg.wants_close
    assert client.send("USER", "u", "0", "*", "R") == []
    assert not client.reg.registered
    other = Client()
    assert other.send("QUIT")[0].params == ("Closing Link: cloak.test (Client Quit)",)


def test_deadline() -> None:
    client = Client()
    assert not client.reg.expired(159.9)
    assert client.reg.expired(160.0)
    assert not client.reg.expired(150.0, deadline=60.0)
    assert client.reg.expired(111.0, deadline=10.0)
    assert client.reg.timeout_error() == IrcMessage(
        "ERROR", ("Closing Link: cloak.test (Registration timeout)",)
    )
    assert client.reg.wants_close
    done = Client()
    done.send("NICK", "carol")
    done.send("USER", "u", "0", "*", "R")
    assert not done.reg.expired(1000.0)


def test_nick_in_use_then_a_new_nick() -> None:
    client = Client()
    client.send("NICK", "taken")
    replies = client.send("USER", "u", "0", "*", "R")
    assert replies == [
        IrcMessage("433", ("*", "taken", "Nickname is already in use"), SERVER)
    ]
    assert not client.reg.registered
    assert client.reg.nick is None
    assert codes(client.send("NICK", "bad-nick")) == ["432"]
    replies = client.send("NICK", "other")
    assert codes(replies) == BURST
    assert client.reg.nick == "other"


def test_nick_checked_at_completion_after_cap_end() -> None:
    client = Client()
    client.send("CAP", "LS", "302")
    assert client.send("NICK", "taken") == []  # asked only when it would complete
    client.send("USER", "u", "0", "*", "R")
    assert codes(client.send("CAP", "END")) == ["433"]
    assert codes(client.send("NICK", "fine")) == BURST


# -- CAP ------------------------------------------------------------------------


def test_cap_ls_302_shows_values_and_holds_registration_until_end() -> None:
    client = Client()
    replies = client.send("CAP", "LS", "302")
    assert replies == [
        IrcMessage(
            "CAP",
            (
                "*",
                "LS",
                (
                    "cap-notify echo-message message-tags multi-prefix sasl=PLAIN "
                    "server-time"
                ),
            ),
            SERVER,
        )
    ]
    client.send("NICK", "carol")
    assert client.send("USER", "u", "0", "*", "R") == []
    assert client.send("CAP", "REQ", "multi-prefix server-time") == [
        IrcMessage("CAP", ("carol", "ACK", "multi-prefix server-time"), SERVER)
    ]
    assert not client.reg.registered
    assert codes(client.send("CAP", "END")) == BURST
    assert client.reg.caps == {"multi-prefix", "server-time", "cap-notify"}
    result = client.reg.result
    assert result is not None
    assert result.cap_version == 302


def test_cap_ls_without_version_has_no_values_and_no_cap_notify() -> None:
    client = Client()
    replies = client.send("CAP", "LS")
    assert replies[0].params[-1].split() == sorted(OFFERED)
    assert not client.reg.capabilities.cap_notify
    assert client.reg.caps == frozenset()
    assert codes(client.send("CAP", "LS", "banana")) == ["CAP"]
    assert client.reg.capabilities.version == 301


def test_cap_req_alone_holds_registration() -> None:
    client = Client()
    client.send("CAP", "REQ", "echo-message")
    client.send("NICK", "carol")
    assert client.send("USER", "u", "0", "*", "R") == []
    assert codes(client.send("CAP", "END")) == BURST


def test_cap_list_does_not_hold_registration() -> None:
    client = Client()
    assert client.send("CAP", "LIST") == [IrcMessage("CAP", ("*", "LIST", ""), SERVER)]
    client.send("NICK", "carol")
    assert codes(client.send("USER", "u", "0", "*", "R")) == BURST


def test_cap_req_is_all_or_nothing() -> None:
    client = Client()
    client.send("CAP", "LS", "302")
    assert client.send("CAP", "REQ", "multi-prefix bogus") == [
        IrcMessage("CAP", ("*", "NAK", "multi-prefix bogus"), SERVER)
    ]
    assert "multi-prefix" not in client.reg.caps
    assert codes(client.send("CAP", "REQ", "multi-prefix")) == ["CAP"]
    assert client.send("CAP", "REQ", "-multi-prefix -bogus")[0].params[1] == "NAK"
    assert "multi-prefix" in client.reg.caps
    assert client.send("CAP", "REQ", "-multi-prefix -echo-message")[0].params[1] == (
        "ACK"
    )
    assert "multi-prefix" not in client.reg.caps
    assert client.send("CAP", "REQ", "")[0].params[1] == "NAK"
    assert client.send("CAP", "REQ")[0].params[1] == "NAK"


def test_cap_notify_cannot_be_switched_off_after_302() -> None:
    client = Client()
    client.send("CAP", "LS", "302")
    assert client.send("CAP", "REQ", "-cap-notify")[0].params[1] == "NAK"
    assert client.send("CAP", "REQ", "cap-notify")[0].params[1] == "ACK"
    assert client.reg.capabilities.cap_notify
    old = Client()
    old.send("CAP", "LS")
    assert old.send("CAP", "REQ", "cap-notify")[0].params[1] == "ACK"
    assert old.reg.capabilities.cap_notify
    assert old.send("CAP", "REQ", "-cap-notify")[0].params[1] == "ACK"
    assert not old.reg.capabilities.cap_notify


def test_cap_req_bound_on_tokens_and_nak_line_length() -> None:
    client = Client()
    many = " ".join(["multi-prefix"] * (MAX_REQ_TOKENS + 1))
    assert client.send("CAP", "REQ", many)[0].params[1] == "NAK"
    assert client.reg.caps == frozenset()
    assert client.send("CAP", "REQ", " ".join(["multi-prefix"] * MAX_REQ_TOKENS))[
        0
    ].params[1] == ("ACK")
    junk = " ".join(f"junk{i:03}" for i in range(60))  # 479 bytes, fits a REQ line
    reply = client.send("CAP", "REQ", junk)[0]
    assert reply.params[1] == "NAK"
    assert len(irc_wire.format(reply)) <= CAP_LINE_BYTES + 2
    assert junk.startswith(reply.params[2])
    assert reply.params[2].split()[-1].startswith("junk")  # cut between words


def test_cap_errors() -> None:
    client = Client()
    assert client.send("CAP") == [
        IrcMessage("461", ("*", "CAP", "Not enough parameters"), SERVER)
    ]
    assert client.send("CAP", "FROB") == [
        IrcMessage("410", ("*", "FROB", "Invalid CAP command"), SERVER)
    ]


def test_cap_ls_and_list_split_at_the_line_limit_with_star() -> None:
    offered: dict[str, str | None] = {
        f"vendor.example/capability-{i:02}": "v" * 20 for i in range(40)
    }
    client = Client(offered=offered)
    replies = client.send("CAP", "LS", "302")
    assert len(replies) > 1
    for reply in replies[:-1]:
        assert reply.params[:3] == ("*", "LS", "*")
    assert replies[-1].params[:2] == ("*", "LS")
    assert len(replies[-1].params) == 3
    tokens = [token for reply in replies for token in reply.params[-1].split()]
    assert tokens == sorted(f"{name}=v{'v' * 19}" for name in offered)
    for reply in replies:
        assert len(irc_wire.format(reply)) <= CAP_LINE_BYTES + 2
    client.send("CAP", "REQ", " ".join(sorted(offered)[:20]))
    listing = client.send("CAP", "LIST")
    assert len(listing) == 2
    assert listing[0].params[2] == "*"
    assert [t for r in listing for t in r.params[-1].split()] == sorted(offered)[:20]


def test_offered_capabilities_are_checked() -> None:
    with pytest.raises(ValueError, match="cannot be offered"):
        CapNegotiation(SERVER, {"a b": None})
    with pytest.raises(ValueError, match="cannot be offered"):
        CapNegotiation(SERVER, {"x": "y" * 400})


def test_cap_after_registration_still_works_and_does_not_hold() -> None:
    client = Client()
    client.send("NICK", "carol")
    client.send("USER", "u", "0", "*", "R")
    assert client.reg.cap(IrcMessage("CAP", ("LS", "302")))[0].params[:2] == (
        "carol",
        "LS",
    )
    assert not client.reg.capabilities.negotiating
    assert client.send("CAP", "REQ", "echo-message")[0].params == (
        "carol",
        "ACK",
        "echo-message",
    )
    assert client.send("CAP", "LIST")[0].params[-1] == "cap-notify echo-message"
    assert client.send("CAP", "END") == []
    assert "echo-message" in client.reg.caps


def test_cap_new_and_del_only_with_cap_notify() -> None:
    client = Client()
    client.send("CAP", "LS", "302")
    caps = client.reg.capabilities
    assert caps.offer("away-notify", None, "carol") == [
        IrcMessage("CAP", ("carol", "NEW", "away-notify"), SERVER)
    ]
    assert caps.offer("sts", "port=6697", "carol")[0].params[-1] == "sts=port=6697"
    client.send("CAP", "REQ", "away-notify")
    assert caps.withdraw("away-notify", "carol") == [
        IrcMessage("CAP", ("carol", "DEL", "away-notify"), SERVER)
    ]
    assert "away-notify" not in client.reg.caps
    assert caps.withdraw("away-notify", "carol") == []
    old = Client()
    old.send("CAP", "LS")
    assert old.reg.capabilities.offer("away-notify", None, "x") == []
    assert old.reg.capabilities.withdraw("away-notify", "x") == []


# -- SASL -------------------------------------------------------------------------


def test_sasl_plain_success() -> None:
    client = Client()
    sasl_ready(client)
    replies = client.send("AUTHENTICATE", plain("", "alice", "wonderland"))
    assert replies == [
        IrcMessage(
            "900",
            (
                "alice",
                "alice!~alice@cloak.test",
                "alice",
                "You are now logged in as alice",
            ),
            SERVER,
        ),
        IrcMessage("903", ("alice", "SASL authentication successful"), SERVER),
    ]
    assert client.reg.account == "alice"
    assert codes(client.send("CAP", "END")) == BURST
    result = client.reg.result
    assert result is not None
    assert result.account == "alice"
    assert "sasl" in result.caps
    assert codes(client.send("AUTHENTICATE", "PLAIN")) == ["907"]


def test_sasl_then_again_before_cap_end_gets_907() -> None:
    client = Client()
    sasl_ready(client)
    client.send("AUTHENTICATE", plain("", "alice", "wonderland"))
    assert codes(client.send("AUTHENTICATE", "PLAIN")) == ["907"]


def test_sasl_failure_then_retry_then_bounded_attempts() -> None:
    client = Client()
    sasl_ready(client)
    assert client.send("AUTHENTICATE", plain("", "alice", "wrong")) == [
        IrcMessage("904", ("alice", "SASL authentication failed"), SERVER)
    ]
    assert client.reg.account is None
    for _ in range(MAX_LOGIN_ATTEMPTS - 1):
        assert codes(client.send("AUTHENTICATE", "PLAIN")) == ["AUTHENTICATE"]
        assert codes(client.send("AUTHENTICATE", plain("", "alice", "no"))) == ["904"]
    assert len(client.checks.calls) == MAX_LOGIN_ATTEMPTS
    replies = client.send("AUTHENTICATE", "PLAIN")
    assert codes(replies) == ["904"]
    assert "too many" in replies[0].params[-1]
    assert len(client.checks.calls) == MAX_LOGIN_ATTEMPTS
    assert codes(client.send("CAP", "END")) == ["433"]  # alice is registered
    assert codes(client.send("NICK", "guest7")) == BURST


def test_sasl_authzid_is_passed_to_the_lead() -> None:
    client = Client()
    sasl_ready(client)
    assert codes(client.send("AUTHENTICATE", plain("bob", "alice", "wonderland"))) == [
        "904"
    ]
    assert client.checks.calls == [("bob", "alice", "wonderland")]


def test_sasl_other_mechanism_gets_908_and_904() -> None:
    client = Client()
    sasl_ready(client)
    client.send("AUTHENTICATE", "*")
    assert client.send("AUTHENTICATE", "EXTERNAL") == [
        IrcMessage("908", ("alice", "PLAIN", "are available SASL mechanisms"), SERVER),
        IrcMessage("904", ("alice", "SASL authentication failed"), SERVER),
    ]


def test_sasl_needs_the_capability() -> None:
    client = Client()
    client.send("CAP", "LS", "302")
    assert codes(client.send("AUTHENTICATE", "PLAIN")) == ["904"]
    assert codes(client.send("AUTHENTICATE")) == ["461"]


def test_sasl_abort() -> None:
    client = Client()
    sasl_ready(client)
    assert client.send("AUTHENTICATE", "*") == [
        IrcMessage("906", ("alice", "SASL authentication aborted"), SERVER)
    ]
    assert codes(client.send("AUTHENTICATE", "PLAIN")) == ["AUTHENTICATE"]


def test_sasl_bad_payloads_get_904() -> None:
    client = Client()
    sasl_ready(client)
    assert codes(client.send("AUTHENTICATE", "not base64!")) == ["904"]
    client.send("AUTHENTICATE", "PLAIN")
    assert codes(client.send("AUTHENTICATE", "+")) == ["904"]  # empty response
    client.send("AUTHENTICATE", "PLAIN")
    bad = base64.b64encode(b"only\0two").decode()
    assert codes(client.send("AUTHENTICATE", bad)) == ["904"]
    assert client.checks.calls == []
    client.send("AUTHENTICATE", "PLAIN")
    invalid_utf8 = base64.b64encode(b"\0alice\0\xff").decode()
    assert codes(client.send("AUTHENTICATE", invalid_utf8)) == ["904"]


def test_sasl_chunk_over_400_bytes_gets_905() -> None:
    client = Client()
    sasl_ready(client)
    assert client.send("AUTHENTICATE", "A" * 401) == [
        IrcMessage("905", ("alice", "SASL message too long"), SERVER)
    ]
    assert codes(client.send("AUTHENTICATE", "PLAIN")) == ["AUTHENTICATE"]


def test_sasl_payload_in_400_byte_chunks_and_plus() -> None:
    password = "p" * (300 - len("\0alice\0"))  # exactly 300 bytes: 400 of base64
    client = Client()
    client.checks.accounts["alice"] = password
    sasl_ready(client)
    data = plain("", "alice", password)
    assert len(data) == 400
    assert client.send("AUTHENTICATE", data) == []  # more may follow
    assert codes(client.send("AUTHENTICATE", "+")) == ["900", "903"]

    longer = "q" * 500
    other = Client()
    other.checks.accounts["alice"] = longer
    sasl_ready(other)
    data = plain("", "alice", longer)
    chunks = [data[i : i + 400] for i in range(0, len(data), 400)]
    assert len(chunks[-1]) < 400
    for chunk in chunks[:-1]:
        assert other.send("AUTHENTICATE", chunk) == []
    assert codes(other.send("AUTHENTICATE", chunks[-1])) == ["900", "903"]


def test_sasl_total_payload_is_bounded() -> None:
    client = Client()
    sasl_ready(client)
    sent = 0
    while sent + 400 <= MAX_SASL_BASE64:
        assert client.send("AUTHENTICATE", "A" * 400) == []
        sent += 400
    assert codes(client.send("AUTHENTICATE", "A" * 400)) == ["905"]
    assert client.checks.calls == []
    assert codes(client.send("AUTHENTICATE", "PLAIN")) == ["AUTHENTICATE"]


def test_async_verify_arriving_after_cap_end() -> None:
    client = Client()
    client.checks.later = True
    sasl_ready(client)
    assert client.send("AUTHENTICATE", plain("", "alice", "wonderland")) == []
    assert client.send("CAP", "END") == []  # the payload is whole: wait for it
    assert client.send("PING", "t") == [IrcMessage("PONG", (SERVER, "t"), SERVER)]
    assert not client.reg.registered
    client.checks.answer()
    assert len(client.later) == 1
    assert codes(client.later[0]) == ["900", "903", *BURST]
    result = client.reg.result
    assert result is not None
    assert result.account == "alice"


def test_async_verify_failure_after_cap_end_registers_as_guest() -> None:
    client = Client()
    client.checks.later = True
    sasl_ready(client)
    client.send("NICK", "carol")
    client.send("AUTHENTICATE", plain("", "alice", "nope"))
    client.send("CAP", "END")
    client.checks.answer()
    assert codes(client.later[0]) == ["904", *BURST]
    assert client.reg.account is None


def test_commands_meanwhile_are_handled_and_nick_change_shows_in_900() -> None:
    client = Client()
    client.checks.later = True
    sasl_ready(client)
    client.send("AUTHENTICATE", plain("", "alice", "wonderland"))
    assert codes(client.send("JOIN", "#a")) == ["451"]
    client.send("NICK", "alice2")
    client.checks.answer()
    assert client.later[0][0].params[1] == "alice2!~alice@cloak.test"
    assert not client.reg.registered  # CAP END not yet sent
    assert codes(client.send("CAP", "END")) == BURST


def test_cap_end_while_gathering_sasl_data_aborts_and_registers() -> None:
    client = Client()
    sasl_ready(client)
    client.send("AUTHENTICATE", "A" * 400)
    replies = client.send("CAP", "END")
    assert codes(replies) == ["906", "433"]  # alice is an account's nick
    assert codes(client.send("NICK", "carol")) == BURST


def test_abort_while_verifying_drops_the_late_answer() -> None:
    client = Client()
    client.checks.later = True
    sasl_ready(client)
    client.send("AUTHENTICATE", plain("", "alice", "wonderland"))
    assert codes(client.send("AUTHENTICATE", "*")) == ["906"]
    client.checks.answer()
    assert client.later == []
    assert client.reg.account is None


def test_second_exchange_while_verifying_ends_both() -> None:
    client = Client()
    client.checks.later = True
    sasl_ready(client)
    client.send("AUTHENTICATE", plain("", "alice", "wonderland"))
    assert codes(client.send("AUTHENTICATE", "PLAIN")) == ["904"]
    client.checks.answer()
    assert client.later == []
    assert client.reg.account is None


def test_quit_while_verifying_drops_the_late_answer() -> None:
    client = Client()
    client.checks.later = True
    sasl_ready(client)
    client.send("AUTHENTICATE", plain("", "alice", "wonderland"))
    assert codes(client.send("QUIT", "gone")) == ["ERROR"]
    client.checks.answer()
    assert client.later == []
    assert client.reg.account is None
    assert not client.reg.registered


def test_timeout_while_verifying_drops_the_late_answer() -> None:
    client = Client()
    client.checks.later = True
    sasl_ready(client)
    client.send("AUTHENTICATE", plain("", "alice", "wonderland"))
    client.reg.timeout_error()
    client.checks.answer()
    assert client.later == []


def test_registered_nick_is_allowed_to_its_account() -> None:
    client = Client()
    client.send("NICK", "alice")
    assert codes(client.send("USER", "u", "0", "*", "R")) == ["433"]
    sasl = Client()
    sasl_ready(sasl)
    sasl.send("AUTHENTICATE", plain("", "alice", "wonderland"))
    assert codes(sasl.send("CAP", "END")) == BURST


# -- PASS -------------------------------------------------------------------------


def test_pass_account_colon_password_logs_in() -> None:
    client = Client()
    assert client.send("PASS", "bob:builder:x") == []
    client.send("NICK", "bob")
    replies = client.send("USER", "u", "0", "*", "R")
    assert codes(replies) == ["900", *BURST]
    assert client.checks.calls == [("", "bob", "builder:x")]
    assert client.reg.account == "bob"


def test_pass_alone_is_the_nicks_account() -> None:
    client = Client()
    client.send("PASS", "wonderland")
    client.send("NICK", "alice")
    assert codes(client.send("USER", "u", "0", "*", "R")) == ["900", *BURST]
    assert client.checks.calls == [("", "alice", "wonderland")]


def test_wrong_pass_gets_464_and_registration_goes_on() -> None:
    client = Client()
    client.send("PASS", "alice:nope")
    client.send("NICK", "carol")
    replies = client.send("USER", "u", "0", "*", "R")
    assert codes(replies) == ["464", *BURST]
    assert client.reg.account is None
    assert codes(Client().send("PASS")) == ["461"]


def test_pass_checked_later_and_not_after_sasl() -> None:
    client = Client()
    client.checks.later = True
    client.send("PASS", "alice:wonderland")
    client.send("NICK", "alice")
    assert client.send("USER", "u", "0", "*", "R") == []
    client.checks.answer()
    assert codes(client.later[0]) == ["900", *BURST]
    sasl = Client()
    sasl.send("PASS", "bob:builder:x")
    sasl_ready(sasl)
    sasl.send("AUTHENTICATE", plain("", "alice", "wonderland"))
    assert codes(sasl.send("CAP", "END")) == BURST
    assert sasl.checks.calls == [("", "alice", "wonderland")]


def test_pass_after_spent_attempts_gets_464_without_a_check() -> None:
    client = Client()
    sasl_ready(client)
    client.send("PASS", "alice:wonderland")
    for _ in range(MAX_LOGIN_ATTEMPTS):
        client.send("AUTHENTICATE", plain("", "alice", "no"))
        client.send("AUTHENTICATE", "PLAIN")
    client.send("AUTHENTICATE", "*")
    client.send("NICK", "carol")
    assert codes(client.send("CAP", "END")) == ["464", *BURST]
    assert len(client.checks.calls) == MAX_LOGIN_ATTEMPTS
