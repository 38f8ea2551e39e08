"""
The account commands' rules (twisted_chat.core.accounts) against a
``ChatServer`` with the fake hasher and the memory store on a ``Clock``.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest
from _accounts_rig import AccountsRig
from attrs import define
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent

from twisted_chat.accounts import passwords
from twisted_chat.accounts.passwords import FakeHasher
from twisted_chat.accounts.store import MemoryAccountStore
from twisted_chat.core import account_rules
from twisted_chat.core.account_ports import AccountServices
from twisted_chat.core.chat import ChatServer, Participant
from twisted_chat.core.names import Nick
from twisted_chat.core.secret_prompt import IAC_WILL_ECHO, IAC_WONT_ECHO
from twisted_chat.core.settings import Settings
from twisted_chat.testing import RecordingClient

PASSWORD = "correct-horse-9"  # noqa: S105 - a test password
OTHER = "battery-staple-7"
BUSY = "! slow-down: The server is busy checking passwords; try again in a few seconds."
FAILED = "! login-failed: Wrong account name or password."


@define(eq=False)
class World(AccountsRig):
    """A chat server with accounts, and helpers to drive it."""

    def registered(self, nick: str, password: str = PASSWORD) -> Participant:
        """A connection that registered ``nick`` (and is logged in to it)."""
        client, participant = self.connect(nick)
        self.say(participant, f"/register {password}")
        self.run()
        assert participant.account is not None, text(client)
        client.clear()
        return participant


#: The server operators the tests make by setting ``participant.oper``.
OPERATORS = (("root", "$argon2id$unused"), ("alice", "$argon2id$unused"))


def make_world(
    settings: Settings | None = None,
    *,
    max_pending: int = 32,
    services: bool = True,
    defer: Callable[[Callable[[], None]], object] | None = None,
) -> World:
    clock = Clock()
    clock.advance(1000)
    store = MemoryAccountStore(clock)
    hasher = FakeHasher(max_pending=max_pending)
    settings = settings if settings is not None else Settings()
    # The operators the tests name (``participant.oper = "root"``): rights
    # are checked against the live table.
    settings = attrs.evolve(settings, operators=settings.operators or OPERATORS)
    server = ChatServer(
        settings,
        clock.seconds,
        defer=defer,
        accounts=AccountServices(store, hasher) if services else None,
    )
    return World(server, clock, hasher, store)


def text(client: RecordingClient) -> list[str]:
    """The lines ``client`` got, with the prompt's echo control taken out."""
    data = b"".join(client.sent)
    data = data.replace(IAC_WILL_ECHO + b"\r", b"")
    data = data.replace(IAC_WONT_ECHO + b"\r  \r", b"")
    assert b"\xff" not in data
    lines = data.decode("utf-8").split("\r\n")
    assert lines[-1] == ""
    return lines[:-1]


@pytest.fixture
def world() -> World:
    return make_world()


# -- /register ------------------------------------------------------------------------


def test_register_makes_the_nick_an_account_and_logs_in(world: World) -> None:
    client, alice = world.connect("Alice")
    world.say(alice, f"/register {PASSWORD}")
    working = alice.checking
    assert working
    assert text(client) == []
    world.run()
    assert text(client) == [
        "* The account Alice is registered; you are logged in as Alice."
    ]
    account = world.store.get("alice")
    assert account is not None
    assert account.name == "Alice"
    assert alice.account == account.key
    assert not alice.checking
    assert account.last_login == world.clock.seconds()


@pytest.mark.parametrize("nick", [None, "GUEST12", "guestl", "guestO7"])
def test_guest_nicks_cannot_be_registered(world: World, nick: str | None) -> None:
    client, guest = world.connect(nick)
    world.say(guest, f"/register {PASSWORD}")
    (line,) = text(client)
    assert line.startswith("! invalid-name: A guest nickname cannot be an account")
    assert "/nick NAME" in line
    assert len(world.store) == 0
    assert world.hasher.pending == 0


def test_guest_names_are_decided_on_the_key() -> None:
    assert account_rules.is_guest_name(Nick.parse("guest1"))
    assert account_rules.is_guest_name(Nick.parse("Guest0042"))
    assert not account_rules.is_guest_name(Nick.parse("guest"))
    assert not account_rules.is_guest_name(Nick.parse("guests"))
    assert not account_rules.is_guest_name(Nick.parse("guest1x"))


def test_weak_and_overlong_passwords_are_refused(world: World) -> None:
    client, alice = world.connect("Alice")
    world.say(alice, "/register short7x")
    world.say(alice, "/register " + "p" * 129)
    world.say(alice, "/register " + "p" * 128)
    world.run()
    first, second, third = text(client)
    assert first.startswith("! weak-password: A password needs at least 8 characters")
    assert second.startswith("! usage: A password is at most 128 characters")
    assert third.startswith("* The account Alice is registered")
    assert "short7x" not in first
    assert "ppp" not in second


def test_the_core_keeps_the_accounts_minimum() -> None:
    assert account_rules.MIN_PASSWORD_LENGTH == passwords.MIN_PASSWORD_LENGTH


def test_already_registered(world: World) -> None:
    alice = world.registered("Alice")
    client = world.clients[0]
    world.say(alice, f"/register {OTHER}")
    assert text(client) == [
        "! already-registered: You are logged in to an account already; /logout first."
    ]
    # An operator registered Bob while a guest held the nick.
    bob_client, bob = world.connect("Bob")
    oper_client, oper = world.connect("Root")
    oper.oper = "root"
    world.say(oper, f"/register Bob {OTHER}")
    world.run()
    assert text(oper_client) == ["* The account Bob is registered."]
    assert oper.account is None
    world.say(bob, f"/register {PASSWORD}")
    assert text(bob_client)[-1] == (
        "! already-registered: Bob is a registered account already; "
        "/login Bob if it is yours."
    )


def test_registered_meanwhile_is_already_registered(world: World) -> None:
    client, alice = world.connect("Alice")
    world.say(alice, f"/register {PASSWORD}")
    world.store.create("alice", "fake$x", 0.0)
    world.run()
    assert text(client) == [
        "! already-registered: Alice is a registered account already."
    ]
    assert alice.account is None


def test_registration_closed_lets_operators_register_others() -> None:
    world = make_world(Settings(registration_open=False))
    client, alice = world.connect("Alice")
    world.say(alice, f"/register {PASSWORD}")
    world.say(alice, f"/register Carol {PASSWORD}")
    closed, usage = text(client)
    assert closed == (
        "! registration-closed: Only server operators create accounts on this server."
    )
    assert usage.startswith("! usage: /register PASSWORD makes your nickname")
    assert PASSWORD not in usage
    oper_client, oper = world.connect("Root")
    oper.oper = "root"
    world.say(oper, f"/register Carol {PASSWORD}")
    world.say(oper, f"/register guest7 {PASSWORD}")
    world.run()
    guest, registered = text(oper_client)
    assert registered == "* The account Carol is registered."
    assert guest.startswith("! invalid-name:")
    assert world.store.get("carol") is not None


def test_an_operator_dropped_from_the_table_loses_the_rights_at_once() -> None:
    """SIGHUP replaces the table: /register NAME and /whois addresses stop."""
    world = make_world(Settings(registration_open=False))
    oper_client, oper = world.connect("Root")
    oper.oper = "root"
    world.connect("Bob")
    world.server.settings = attrs.evolve(world.server.settings, operators=())
    world.say(oper, f"/register Carol {PASSWORD}")
    world.say(oper, "/whois Bob")
    world.run()
    usage, *whois = [line for line in text(oper_client) if line[:8] != "* guest2"]
    assert usage.startswith("! usage: /register PASSWORD makes your nickname")
    assert not any("192.0.2" in line for line in whois)
    assert world.store.get("carol") is None
    assert not world.server.operators.is_operator(oper)


def test_a_full_store_closes_registration() -> None:
    world = make_world()
    world.store.max_accounts = 0
    client, alice = world.connect("Alice")
    world.say(alice, f"/register {PASSWORD}")
    world.run()
    assert text(client) == [
        "! registration-closed: No new accounts can be made on this server right now."
    ]
    assert alice.account is None


def test_register_then_rename_keeps_the_registered_nick(world: World) -> None:
    """The nick typed is registered; the login gives it back."""
    client, alice = world.connect("Alice")
    world.say(alice, f"/register {PASSWORD}")
    world.say(alice, "/nick Zed")
    world.run()
    assert alice.nick.display == "Alice"
    assert alice.account == world.store.get("Alice").key  # type: ignore[union-attr]
    assert text(client)[-1].startswith("* The account Alice is registered")


# -- accounts off -------------------------------------------------------------------


@pytest.mark.parametrize("off", ["setting", "no services"])
def test_accounts_off_refuses_every_account_command(off: str) -> None:
    world = (
        make_world(Settings(accounts=False))
        if off == "setting"
        else make_world(services=False)
    )
    client, alice = world.connect("Alice")
    for line in (
        f"/register {PASSWORD}",
        f"/login Alice {PASSWORD}",
        "/login Alice",
        "/identify Alice",
        "/logout",
        f"/password {PASSWORD} {OTHER}",
        f"/unregister {PASSWORD}",
        "/whois Alice",
    ):
        world.say(alice, line)
    lines = text(client)
    assert lines == ["! accounts-disabled: Accounts are turned off on this server."] * 8
    assert alice.prompt is None


# -- /login ----------------------------------------------------------------------


def test_login_takes_the_account_name_and_tells_the_rooms(world: World) -> None:
    world.registered("Alice")
    world.say(world.server.participants["alice"], "/logout")
    watcher, _ = world.connect("Watcher")
    client, other = world.connect()
    old = other.nick.display
    world.say(other, f"/login ALICE {PASSWORD}")
    world.run()
    assert text(client) == ["* You are logged in as Alice."]
    assert other.nick.display == "Alice"
    assert world.server.participants["alice"] is other
    assert f"* {old} is now known as Alice" in text(watcher)


def test_login_alias_identify(world: World) -> None:
    world.registered("Alice")
    client, other = world.connect()
    world.say(other, f"/identify alice {PASSWORD}")
    world.run()
    assert text(client)[-1] == "* You are logged in as Alice."


def test_wrong_name_and_wrong_password_read_the_same(world: World) -> None:
    world.registered("Alice")
    client, other = world.connect()
    world.say(other, f"/login Alice {OTHER}")
    world.run()
    world.say(other, f"/login Nobody {PASSWORD}")
    world.run()
    world.say(other, f"/login 9lives {PASSWORD}")
    world.run()
    assert text(client) == [FAILED, FAILED, FAILED]
    assert world.hasher.dummy_verifications == 1
    assert other.account is None


def test_login_to_the_same_account_twice_is_a_notice(world: World) -> None:
    alice = world.registered("Alice")
    world.say(alice, f"/login alice {PASSWORD}")
    assert text(world.clients[0]) == ["* You are logged in as Alice already."]
    assert world.hasher.pending == 0


def test_login_switches_accounts(world: World) -> None:
    world.registered("Bob", OTHER)
    alice = world.registered("Alice")
    world.say(alice, f"/login bob {OTHER}")
    world.run()
    assert alice.account == "bob"
    assert alice.nick.display == "Bob"


def test_login_takes_the_nick_from_a_guest_holder(world: World) -> None:
    holder_client, holder = world.connect("Alice")
    _oper_client, oper = world.connect("Root")
    oper.oper = "root"
    world.say(oper, f"/register Alice {PASSWORD}")
    world.run()
    watcher, _ = world.connect("Watcher")
    _client, owner = world.connect()
    world.say(owner, f"/login alice {PASSWORD}")
    world.run()
    assert owner.nick.display == "Alice"
    guest = holder.nick.display
    assert guest.startswith("guest")
    assert holder.account is None
    assert (
        "* Alice is a registered account and its owner logged in; "
        f"you are now known as {guest}."
    ) in text(holder_client)
    seen = text(watcher)
    assert f"* Alice is now known as {guest}" in seen
    assert seen[-1].endswith("is now known as Alice")


def test_a_ghost_of_the_account_keeps_its_login_under_a_guest_nick(
    world: World,
) -> None:
    ghost = world.registered("Alice")
    _client, again = world.connect()
    world.say(again, f"/login Alice {PASSWORD}")
    world.run()
    assert again.nick.display == "Alice"
    assert ghost.nick.display.startswith("guest")
    assert ghost.account == again.account == "alice"


def test_gone_before_the_answer(world: World) -> None:
    world.registered("Alice")
    client, other = world.connect()
    world.say(other, f"/login Alice {PASSWORD}")
    world.server.disconnect(other, "connection lost")
    client.clear()
    world.run()
    assert client.sent == []
    assert other.account is None
    assert "alice" in world.server.participants  # the first connection
    # A registration from a connection that left is not made.
    client, carol = world.connect("Carol")
    world.say(carol, f"/register {PASSWORD}")
    world.server.disconnect(carol, "connection lost")
    world.run()
    assert world.store.get("carol") is None


def test_a_busy_hasher_is_slow_down() -> None:
    world = make_world(max_pending=0)
    client, alice = world.connect("Alice")
    world.say(alice, f"/register {PASSWORD}")
    world.say(alice, f"/login Alice {PASSWORD}")
    assert text(client) == [BUSY, BUSY]
    assert not alice.checking


def test_a_busy_answer_leaves_no_attempt_under_way() -> None:
    """The throttle is told about every attempt it let through."""
    world = make_world(max_pending=0)
    client, alice = world.connect()
    world.say(alice, f"/login Alice {PASSWORD}")
    assert text(client) == [BUSY]
    throttle = world.server.accounts.throttle
    for table in (throttle._accounts, throttle._groups):
        assert all(record.pending == 0 for record in table.records.values())


def test_one_password_job_at_a_time(world: World) -> None:
    world.registered("Alice")
    client, other = world.connect()
    world.say(other, f"/login Alice {OTHER}")
    world.say(other, f"/login Alice {PASSWORD}")
    world.say(other, "/login Alice")
    assert (
        text(client)
        == ["! slow-down: Your last password is still being checked; wait a moment."]
        * 2
    )
    assert other.prompt is None
    world.run()
    assert text(client)[-1] == FAILED


def test_a_server_banned_account_gets_one_line_and_is_closed(world: World) -> None:
    world.registered("Alice")
    banned = b"! banned: You are banned from this server.\r\n"
    world.server.operators.refusal = (  # type: ignore[method-assign]
        lambda host, account_key: banned if account_key == "alice" else None  # noqa: ARG005
    )
    client, other = world.connect()
    world.say(other, f"/login alice {PASSWORD}")
    world.run()
    assert client.sent == [banned]
    assert client.closed
    assert other.gone
    assert other.account is None


def test_an_old_hash_is_replaced_after_a_login(world: World) -> None:
    world.store.create("Alice", "$argon2id$old-parameters", 0.0)
    world.hasher.verify = (  # type: ignore[method-assign]
        lambda stored, password, done: world.hasher._submit(  # noqa: ARG005
            lambda: done(password == PASSWORD)
        )
    )
    client, other = world.connect()
    world.say(other, f"/login alice {PASSWORD}")
    world.run()
    assert text(client) == ["* You are logged in as Alice."]
    account = world.store.get("alice")
    assert account is not None
    assert account.password_hash == FakeHasher.PREFIX + PASSWORD[::-1]


def test_a_reply_from_an_answer_follows_the_room_lines_before_it() -> None:
    turns: list[Callable[[], None]] = []
    world = make_world(defer=turns.append)
    world.store.create("Alice", FakeHasher.PREFIX + PASSWORD[::-1], 0.0)
    client, alice = world.connect()
    _, bob = world.connect("Bob")
    world.server.flush()
    world.clear_all()
    world.say(alice, f"/login Alice {PASSWORD}")
    world.say(bob, "hello")
    world.hasher.run_pending()
    assert text(client) == ["[#lobby] <Bob> hello", "* You are logged in as Alice."]


def test_a_hash_that_failed_is_an_internal_error(world: World) -> None:
    hasher = world.hasher
    hasher.hash = (  # type: ignore[method-assign]
        lambda password, done: hasher._submit(lambda: done(None))  # noqa: ARG005
    )
    client, alice = world.connect("Alice")
    world.say(alice, f"/register {PASSWORD}")
    world.run()
    (line,) = text(client)
    assert line.startswith("! internal-error:")
    assert world.store.get("alice") is None
    assert not alice.checking


# -- the prompt -----------------------------------------------------------------------


def test_the_prompt_over_tcp_hides_the_password(world: World) -> None:
    world.registered("Alice")
    room_client, _ = world.connect("Roomie")
    client, other = world.connect()
    world.say(other, "/login Alice")
    assert client.sent == [IAC_WILL_ECHO + b"\r* Password:\r\n"]
    waiting = other.prompt is not None
    assert waiting
    client.clear()
    world.say(other, PASSWORD)
    assert client.sent[0] == IAC_WONT_ECHO + b"\r  \r"
    assert other.prompt is None
    world.run()
    assert text(client)[-1] == "* You are logged in as Alice."
    for seen in world.clients:
        assert PASSWORD.encode() not in b"".join(seen.sent)
    assert all("<" not in line for line in text(room_client))


def test_the_prompt_over_udp_has_no_telnet_bytes(world: World) -> None:
    world.registered("Alice")
    client, other = world.connect(transport="udp")
    world.say(other, "/login Alice")
    assert client.sent == [b"* Password:\r\n"]
    world.say(other, OTHER)
    world.run()
    assert b"\xff" not in b"".join(client.sent)
    assert text(client) == ["* Password:", FAILED]


def test_the_prompted_line_is_the_password_even_if_it_looks_like_a_command(
    world: World,
) -> None:
    world.registered("Alice")
    client, other = world.connect()
    world.say(other, "/login Alice")
    world.say(other, "/quit")
    world.run()
    assert not other.gone
    assert text(client)[-1] == FAILED


def test_forget_drops_the_prompt(world: World) -> None:
    _client, other = world.connect()
    world.say(other, "/login Alice")
    world.server.disconnect(other, "connection lost")
    assert other.prompt is None


def test_a_prompted_oper_goes_to_the_operators(world: World) -> None:
    calls: list[tuple[Participant, str, str]] = []
    world.server.operators.oper = (  # type: ignore[method-assign]
        lambda participant, name, password: calls.append(
            (participant, name, password.value)
        )
    )
    _client, other = world.connect()
    world.server.accounts.ask_secret(other, "oper root")
    world.say(other, "operator-secret")
    assert calls == [(other, "root", "operator-secret")]


# -- throttling ------------------------------------------------------------------------


def test_five_failures_for_an_account_throttle_it_for_a_minute(world: World) -> None:
    world.registered("Alice")
    for n in range(5):
        _, guesser = world.connect()  # a new address each time
        world.say(guesser, f"/login Alice wrong-{n}-password")
        world.run()
    client, owner = world.connect()
    world.say(owner, f"/login Alice {PASSWORD}")
    (line,) = text(client)
    assert line.startswith("! login-throttled: Too many failed logins for that account")
    assert world.hasher.pending == 0
    world.clock.advance(61)
    world.say(owner, f"/login Alice {PASSWORD}")
    world.run()
    assert text(client)[-1] == "* You are logged in as Alice."


def test_five_failures_from_an_address_throttle_it(world: World) -> None:
    client, guesser = world.connect(host="198.51.100.9")
    for n in range(5):
        world.say(guesser, f"/login name{n} {PASSWORD}")
        world.run()
    world.say(guesser, f"/login fresh {PASSWORD}")
    assert text(client)[-1].startswith(
        "! login-throttled: Too many failed logins from your address"
    )
    # Another address is not throttled.
    other_client, other = world.connect()
    world.say(other, f"/login fresh {PASSWORD}")
    world.run()
    assert text(other_client) == [FAILED]


def test_password_and_unregister_failures_count_too(world: World) -> None:
    alice = world.registered("Alice")
    client = world.clients[0]
    for _ in range(3):
        world.say(alice, f"/password {OTHER} {OTHER}")
        world.run()
    for _ in range(2):
        world.say(alice, f"/unregister {OTHER}")
        world.run()
    world.say(alice, f"/unregister {PASSWORD}")
    lines = text(client)
    assert lines[:5] == [FAILED] * 5
    assert lines[5].startswith("! login-throttled:")
    assert world.store.get("alice") is not None


# -- nick protection ------------------------------------------------------------------


def test_nick_to_an_account_is_refused(world: World) -> None:
    alice = world.registered("Alice")
    world.say(alice, "/logout")
    client, other = world.connect()
    world.say(other, "/nick ALICE")
    assert text(client) == [
        "! nick-registered: Alice is a registered account; /login Alice to use it."
    ]
    assert "alice" not in world.server.participants


def test_the_owner_may_take_their_nick_back(world: World) -> None:
    alice = world.registered("Alice")
    client = world.clients[0]
    world.say(alice, "/nick Other")
    world.say(alice, "/nick alice")
    assert alice.nick.display == "alice"
    assert text(client)[-1] == "* You are now known as alice."


def test_no_protection_with_accounts_off() -> None:
    world = make_world(Settings(accounts=False))
    world.store.create("Alice", "fake$x", 0.0)
    _, other = world.connect("Alice")
    assert other.nick.display == "Alice"


def test_guests_are_not_given_an_account_name(world: World) -> None:
    world.store.create("guest1", "fake$x", 0.0)
    _, first = world.connect()
    assert first.nick.display == "guest2"


# -- /logout, /password, /unregister ------------------------------------------------


def test_logout(world: World) -> None:
    client, guest = world.connect()
    world.say(guest, "/logout")
    assert text(client) == [
        "! not-logged-in: You are not logged in; /login NAME logs in."
    ]
    alice = world.registered("Alice")
    alice_client = world.clients[-1]
    world.say(alice, "/logout")
    assert alice.account is None
    assert alice.nick.display.startswith("guest")
    assert text(alice_client) == [
        f"* You are logged out; you are now {alice.nick.display}."
    ]


def test_change_password(world: World) -> None:
    client, guest = world.connect()
    world.say(guest, f"/password {PASSWORD} {OTHER}")
    assert text(client)[0].startswith("! not-logged-in:")
    alice = world.registered("Alice")
    alice_client = world.clients[-1]
    world.say(alice, f"/password {PASSWORD} short")
    world.say(alice, f"/password wrong-password {OTHER}")
    world.run()
    world.say(alice, f"/password {PASSWORD} {OTHER}")
    world.run()
    weak, failed, changed = text(alice_client)
    assert weak.startswith("! weak-password:")
    assert failed == FAILED
    assert changed == "* Your password is changed."
    _, other = world.connect()
    world.say(other, f"/login alice {OTHER}")
    world.run()
    assert other.account == "alice"


def test_unregister_logs_out_every_connection(world: World) -> None:
    first = world.registered("Alice")
    first_client = world.clients[-1]
    second_client, second = world.connect()
    world.say(second, f"/login alice {PASSWORD}")
    world.run()
    second_client.clear()
    world.say(second, f"/unregister {PASSWORD}")
    world.run()
    assert world.store.get("alice") is None
    assert first.account is None
    assert second.account is None
    assert second.nick.display == "Alice"  # kept, now unprotected
    assert text(second_client) == [
        "* The account Alice is deleted; you are logged out."
    ]
    assert text(first_client)[-1] == (
        "* The account Alice was deleted on another connection; you are logged out."
    )
    world.say(second, f"/password {PASSWORD} {OTHER}")
    assert text(second_client)[-1].startswith("! not-logged-in:")


# -- /whois ---------------------------------------------------------------------------


def test_whois_of_someone_connected(world: World) -> None:
    alice = world.registered("Alice")
    client, asker = world.connect("Asker")
    world.say(asker, "/whois alice")
    assert text(client) == [
        "* Alice is logged in as Alice",
        "* Alice is connected over tcp",
        "* Alice is in #lobby",
        "* Alice has said nothing yet",
    ]
    client.clear()
    world.say(alice, "hello")
    client.clear()
    world.clock.advance(125)
    alice.oper = "alice"
    asker.oper = "root"
    world.say(asker, "/whois Alice")
    assert text(client) == [
        "* Alice is logged in as Alice",
        f"* Alice is connected over tcp from {alice.host}",
        "* Alice is in #lobby",
        "* Alice has been idle for 2m 5s",
        "* Alice is a server operator",
    ]


def test_whois_never_shows_the_address_to_others(world: World) -> None:
    _, bob = world.connect("Bob", transport="udp")
    client, asker = world.connect("Asker")
    world.say(asker, "/whois bob")
    lines = text(client)
    assert lines[0] == "* Bob is not logged in"
    assert lines[1] == "* Bob is connected over udp"
    assert bob.host not in "".join(lines)


def test_whois_rooms_are_bounded(world: World) -> None:
    _, bob = world.connect("Bob")
    for n in range(30):
        world.say(bob, f"/join #r{n}")
    client, asker = world.connect("Asker")
    world.say(asker, "/whois Bob")
    (rooms,) = [line for line in text(client) if " is in " in line]
    assert rooms.endswith("and 11 more")
    assert rooms.count("#") == account_rules.WHOIS_ROOMS_SHOWN


def test_whois_of_an_account_not_online(world: World) -> None:
    alice = world.registered("Alice")
    world.server.disconnect(alice, "bye")
    world.clock.advance(3 * 3600 + 60)
    world.store.create("Carol", "fake$x", 0.0)
    client, asker = world.connect()
    world.say(asker, "/whois alice")
    world.say(asker, "/whois carol")
    world.say(asker, "/whois nobody")
    assert text(client) == [
        "* Alice is a registered account, not online (last logged in 3h 1m ago)",
        "* Carol is a registered account, not online (never logged in)",
        "! no-such-nick: Nobody called nobody is here, and there is no such account.",
    ]


def test_whois_is_charged_to_the_reply_budget(world: World) -> None:
    _client, asker = world.connect(host="203.0.113.5")
    spent: list[int] = []
    world.server.budgets.charge = (  # type: ignore[method-assign]
        lambda participant, count, work=0: spent.append(count)  # noqa: ARG005
    )
    world.say(asker, "/whois " + asker.nick.display)
    assert spent == [4]


def test_durations() -> None:
    assert account_rules.duration(0) == "0s"
    assert account_rules.duration(59.9) == "59s"
    assert account_rules.duration(3600) == "1h 0m"
    assert account_rules.duration(86400 * 3 + 7200) == "3d 2h"


# -- no secret anywhere ---------------------------------------------------------------


def test_no_password_in_any_output_or_log(log_events: list[LogEvent]) -> None:
    secret = "Sup3rSecret-Value"  # noqa: S105 - a test password
    world = make_world()
    _client, alice = world.connect("Alice")
    udp_client, udp = world.connect("Udpy", transport="udp")
    _, watcher = world.connect("Watcher")
    flows = [
        (alice, f"/register {secret}"),
        (alice, f"/password {secret} {secret}x"),
        (alice, f"/password {secret}x {secret}"),
        (alice, "/logout"),
        (alice, f"/login Alice {secret}x"),
        (alice, f"/login Alice {secret} extra"),
        (alice, f"/login a b {secret}"),
        (alice, f"/login {secret}"),
        (alice, "not-the-password"),
        (alice, "/login Alice"),
        (alice, secret),
        (alice, "/logout"),
        (alice, f"/identify {secret} {secret}"),
        (alice, f"/register {secret} {secret} {secret}"),
        (alice, f"/register Other {secret}"),
        (udp, f"/register {secret}"),
        (udp, f"/register {secret} and more"),
        (udp, f"/login Alice {secret}"),
        (udp, f"/unregister {secret} x"),
        (udp, f"/unregister {secret}x"),
        (udp, f"/unregister {secret}"),
        (watcher, f"/whois {secret}"[:7] + " Alice"),
    ]
    for participant, line in flows:
        world.say(participant, line)
        world.run()
    seen = b"".join(b"".join(c.sent) for c in world.clients)
    assert secret.encode() not in seen
    assert seen.count(b"! login-failed") >= 2
    logged = "\n".join(formatEvent(event) for event in log_events)
    assert "unregistered account Alice" in logged
    assert "login ok: Alice" in logged
    assert "login failed (login): Alice" in logged
    assert "registered account Alice" in logged
    assert secret not in logged
    for event in log_events:
        assert secret not in repr(event)
    assert secret not in repr(alice)
    assert text(udp_client)
    assert "fake$" not in seen.decode("utf-8", "replace") + logged


def test_a_name_that_is_no_account_is_not_logged(
    world: World, log_events: list[LogEvent]
) -> None:
    _client, other = world.connect()
    world.say(other, "/login Hunter2isMyPass pw123456")
    world.run()
    logged = "\n".join(formatEvent(event) for event in log_events)
    assert "(no such account)" in logged
    assert "Hunter2isMyPass" not in logged
