"""The daemon's side of accounts: options, [operators], the accounts file.

``--accounts`` and ``--registration`` (command line and file), the
config file's ``[operators]`` table (checked, never echoed, reloaded on
SIGHUP), the accounts file opened before any port is bound and closed
after the clients, and the hasher's threads started only once the daemon
runs (twistd forks in between).
"""

from __future__ import annotations

import io
import sqlite3
import threading
import time
from pathlib import Path
from typing import cast

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, formatEvent
from twisted.python import usage

from twisted_chat import passwd
from twisted_chat.accounts.passwords import Argon2Hasher
from twisted_chat.accounts.sqlite import FILE_NAME, SqliteAccountStore
from twisted_chat.core.account_ports import AccountServices
from twisted_chat.core.settings import Settings
from twisted_chat.daemon.accounts import AccountsService
from twisted_chat.daemon.config import default
from twisted_chat.daemon.options import Options, makeService
from twisted_chat.daemon.service import ChatService, StartupError, make_chat_service

#: A well-formed argon2id hash (of nothing anyone knows).
HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0"
    "$SECRETSECRETSECRETSECRETSECRETSECRETSECRETQ"
)


def options(*argv: str) -> Options:
    parsed = Options()
    parsed.parseOptions([*argv, "--history-db", "off"])
    return parsed


def settings(*argv: str) -> Settings:
    value = options(*argv)["settings"]
    assert isinstance(value, Settings)
    return value


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "chat.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def refusal(*argv: str) -> str:
    with pytest.raises(usage.UsageError) as caught:
        settings(*argv)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- --accounts and --registration ---------------------------------------------------


def test_accounts_are_on_and_registration_open_by_default() -> None:
    parsed = settings()
    assert (parsed.accounts, parsed.registration_open) == (True, True)
    assert (default("accounts"), default("registration")) == ("on", "open")
    assert "[default: 'on']" in str(Options())
    assert "[default: 'open']" in str(Options())


def test_the_switches_on_the_command_line() -> None:
    parsed = settings("--accounts", "off", "--registration", "closed")
    assert (parsed.accounts, parsed.registration_open) == (False, False)
    parsed = settings("--accounts", "ON", "--registration", " Open ")
    assert (parsed.accounts, parsed.registration_open) == (True, True)


def test_the_switches_in_the_config_file_and_the_command_line_wins(
    tmp_path: Path,
) -> None:
    config = config_file(tmp_path, 'accounts = "off"\nregistration = "closed"\n')
    parsed = settings("--config", config)
    assert (parsed.accounts, parsed.registration_open) == (False, False)
    parsed = settings("--config", config, "--registration", "open")
    assert parsed.registration_open
    assert not settings(
        "--config", config_file(tmp_path, "accounts = false\n")
    ).accounts


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--accounts", "yes"], "--accounts: expected on or off, not 'yes'"),
        (["--registration", "invite"], "--registration: expected open or closed"),
    ],
)
def test_bad_switches_are_refused(argv: list[str], message: str) -> None:
    assert message in refusal(*argv)


def test_a_bad_switch_in_the_file_names_the_key(tmp_path: Path) -> None:
    config = config_file(tmp_path, "registration = 3\n")
    assert "key 'registration': expected open or closed" in refusal("--config", config)


# -- [operators] -----------------------------------------------------------------


def test_no_config_file_or_no_table_means_no_operators(tmp_path: Path) -> None:
    assert settings().operators == ()
    assert (
        settings("--config", config_file(tmp_path, "max-line = 512\n")).operators == ()
    )


def test_the_operators_table_is_read_in_order(tmp_path: Path) -> None:
    config = config_file(
        tmp_path, f'max-line = 512\n[operators]\n"Zoë" = "{HASH}"\nbob = "{HASH}2"\n'
    )
    parsed = settings("--config", config)
    assert parsed.operators == (("Zoë", HASH), ("bob", HASH + "2"))
    assert "SECRET" not in repr(parsed)


def test_an_empty_table_is_no_operators(tmp_path: Path) -> None:
    assert settings("--config", config_file(tmp_path, "[operators]\n")).operators == ()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (f'"no spaces" = "{HASH}"\n', "operator 'no spaces': "),
        (f'"1st" = "{HASH}"\n', "operator '1st': "),
        (
            'alice = "hunter2-SECRET"\n',
            "operator 'alice': the value is not an argon2id",
        ),
        ('alice = "$argon2i$v=19$m=1,t=1,p=1$SECRET$SECRET"\n', "not an argon2id"),
        ('alice = "$argon2id$SECRET"\n', "operator 'alice': the value is not"),
        ("alice = 5\n", "operator 'alice': the value is not an argon2id hash"),
        (f'alice = "{HASH}"\nALICE = "{HASH}"\n', "'alice' and 'ALICE' are the same"),
    ],
)
def test_a_bad_operator_is_named_and_its_value_never_shown(
    tmp_path: Path, table: str, message: str
) -> None:
    config = config_file(tmp_path, "[operators]\n" + table)
    text = refusal("--config", config)
    assert f"config file {config}: [operators]" in text
    assert message in text
    assert "SECRET" not in text
    assert "hunter2" not in text


def test_an_option_below_the_table_is_explained(tmp_path: Path) -> None:
    config = config_file(tmp_path, f'[operators]\nalice = "{HASH}"\nmax-line = 512\n')
    assert "'max-line' is an option" in refusal("--config", config)


def test_operators_must_be_a_table(tmp_path: Path) -> None:
    config = config_file(tmp_path, f'operators = "{HASH}"\n')
    text = refusal("--config", config)
    assert "[operators] must be a table" in text
    assert "SECRET" not in text


def test_what_the_passwd_tool_prints_is_accepted(tmp_path: Path) -> None:
    """``python -m twisted_chat.passwd`` (stdin, not a terminal) makes an entry."""
    out, err = io.StringIO(), io.StringIO()
    assert passwd.main([], io.StringIO("correct horse battery\n"), out, err) == 0
    assert err.getvalue() == ""
    made = out.getvalue().strip()
    assert made.startswith("$argon2id$")
    assert "correct horse" not in out.getvalue()
    config = config_file(tmp_path, f'[operators]\nalice = "{made}"\n')
    assert settings("--config", config).operators == (("alice", made),)


def test_sighup_reload_replaces_the_operators(tmp_path: Path) -> None:
    config = config_file(tmp_path, f'tcp = ["tcp:0"]\n[operators]\nalice = "{HASH}"\n')
    parsed = options("--config", config, "--state-dir", str(tmp_path / "state"))
    service = make_chat_service(
        parsed["settings"], MemoryReactorClock(), parsed["given"]
    )
    assert service.server.settings.operators == (("alice", HASH),)
    config_file(
        tmp_path,
        f'tcp = ["tcp:0"]\nregistration = "closed"\n[operators]\nbob = "{HASH}"\n',
    )
    assert service.reload()
    assert service.server.settings.operators == (("bob", HASH),)
    assert not service.server.settings.registration_open
    config_file(tmp_path, 'tcp = ["tcp:0"]\n[operators]\nbob = "plain text"\n')
    assert not service.reload()  # a bad table keeps the old one
    assert service.server.settings.operators == (("bob", HASH),)
    config_file(tmp_path, 'tcp = ["tcp:0"]\n')
    assert service.reload()
    assert not service.settings.operators


def test_a_failed_reload_does_not_log_the_hash(
    tmp_path: Path, log_events: list[LogEvent]
) -> None:
    config = config_file(tmp_path, 'tcp = ["tcp:0"]\n')
    parsed = options("--config", config, "--state-dir", str(tmp_path / "state"))
    service = make_chat_service(
        parsed["settings"], MemoryReactorClock(), parsed["given"]
    )
    config_file(tmp_path, '[operators]\n"bad name" = "$argon2id$SECRET"\n')
    assert not service.reload()
    logged = [formatEvent(event) or "" for event in log_events]
    assert any("operator 'bad name'" in text for text in logged)
    assert not any(
        "SECRET" in text or "SECRET" in repr(e)
        for text, e in zip(logged, log_events, strict=True)
    )


# -- the accounts file ------------------------------------------------------------


def service_in(state: Path, *argv: str, clock: object = None) -> ChatService:
    parsed = options("--tcp", "tcp:0", "--state-dir", str(state), *argv)
    return make_chat_service(
        parsed["settings"], clock or MemoryReactorClock(), parsed["given"]
    )


def accounts_of(service: ChatService) -> AccountServices:
    child = service.getServiceNamed("accounts")
    assert isinstance(child, AccountsService)
    return child.services


def test_the_accounts_file_is_in_the_state_directory_even_with_accounts_off(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    service = service_in(state, "--accounts", "off")
    services = accounts_of(service)
    assert isinstance(services.store, SqliteAccountStore)
    assert services.store.path == str(state / FILE_NAME)
    assert isinstance(services.hasher, Argon2Hasher)
    assert service.server.accounts._services is services
    # Opened first, so stopped last (after the listeners and the history).
    assert next(iter(service)) is service.getServiceNamed("accounts")
    services.store.close()


def damage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database at all\n" * 200)


def test_a_damaged_accounts_file_stops_the_daemon_with_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    damage(state / FILE_NAME)
    with pytest.raises(StartupError) as caught:
        service_in(state)
    message = str(caught.value)
    assert str(state / FILE_NAME) in message
    assert "not a usable accounts database" in message
    assert "\n" not in message


def test_makeService_refuses_a_damaged_file_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    damage(state / FILE_NAME)
    with pytest.raises(SystemExit) as exited:
        makeService(options("--tcp", "tcp:0", "--state-dir", str(state)))
    text = str(exited.value.code)
    assert text.startswith(f"twistd chat: {state / FILE_NAME} is not a usable")
    assert "\n" not in text


def test_a_foreign_database_stops_the_daemon(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / FILE_NAME) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    conn.close()
    with pytest.raises(StartupError, match="another program"):
        service_in(state)


def test_no_thread_starts_before_startService(tmp_path: Path) -> None:
    """twistd forks between makeService and startService: threads would die."""
    before = {thread.name for thread in threading.enumerate()}
    service = service_in(tmp_path / "state")
    services = accounts_of(service)
    started = {thread.name for thread in threading.enumerate()} - before
    assert not [name for name in started if "argon2" in name or "accounts" in name]
    child = service.getServiceNamed("accounts")
    child.startService()
    names = {thread.name for thread in threading.enumerate()}
    assert any(name.startswith("accounts-writer") for name in names)
    assert any(name.startswith("argon2-") for name in names)
    child.stopService()
    assert services.store.create("late", HASH, 1.0) is not None  # refused, no crash


def test_the_hasher_costs_little_at_start_up() -> None:
    """Its dummy hash is one argon2id hash: tens of milliseconds, not seconds."""
    begun = time.perf_counter()
    hasher = Argon2Hasher(cast("IReactorFromThreads", reactor))
    took = time.perf_counter() - begun
    hasher.stop()
    assert took < 0.5


@pytest_twisted.ensureDeferred
async def test_accounts_and_bans_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = service_in(state, clock=reactor)
    first.startService()
    store = accounts_of(first).store
    done: list[bool] = []
    store.create("Alice", HASH, 1.0, done.append)
    row: dict[str, str | float | None] = {
        "pattern": "203.0.113.7",
        "set_by": "alice",
        "reason": "spam",
        "set_at": 2.0,
        "expires_at": None,
    }
    store.save_server_bans([row], done.append)
    await first.stopService()  # closes the store after the clients
    second = service_in(state, clock=reactor)
    again = accounts_of(second).store
    try:
        alice = again.get("alice")
        assert alice is not None
        assert alice.name == "Alice"
        assert again.server_bans() == [row]
    finally:
        again.close()


# -- inside the shipped unit's syscall filter ------------------------------------


@pytest.mark.slow
def test_an_account_reaches_its_file_inside_the_units_syscall_filter(
    tmp_path: Path,
) -> None:
    """argon2's threads and the accounts writer run under ``~@privileged
    @resources``; the account is on disk when the daemon has stopped."""
    from _seccomp import have_seccomp
    from test_sandbox import start_as_alice

    if not have_seccomp():
        pytest.skip("no libseccomp binding for /usr/bin/python3")
    state = tmp_path / "state"
    daemon, client = start_as_alice(tmp_path, state)
    try:
        client.say("/register sandboxed-secret")
        line = client.expect(r"^[*!] ")
        assert line.startswith("* "), line
        client.close()
    finally:
        code = daemon.stop()
    log = daemon.log
    assert code in (0, -15), log
    assert "Traceback" not in log, log
    assert "sandboxed-secret" not in log
    # The unit lets the password workers lower their priority (SCHED_IDLE).
    assert "keep their priority" not in log, log
    with sqlite3.connect(f"file:{state / FILE_NAME}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT name, hash FROM accounts").fetchall()
    conn.close()
    assert [(name, stored[:10]) for name, stored in rows] == [("alice", "$argon2id$")]


def test_the_passwd_tool_on_a_terminal_asks_twice_without_echo(
    tmp_path: Path,
) -> None:
    """On a terminal: two prompts, no echo of the password, the hash printed."""
    import os
    import pty
    import select
    import subprocess
    import sys

    fd, terminal = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "twisted_chat.passwd"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,  # no /dev/tty: getpass uses the pty on stdin
    )
    os.close(terminal)
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 20
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child has exited
                    break
                if not chunk:
                    break
                seen += chunk

    try:
        read_until(b"Password: ")
        os.write(fd, b"terminal secret\n")
        read_until(b"Again: ")
        os.write(fd, b"terminal secret\n")
        read_until(b"the end, which never comes: read until the child exits")
    finally:
        status = child.wait(20)
        os.close(fd)
    assert status == 0, seen
    assert b"terminal secret" not in seen
    made = seen[seen.index(b"$argon2id$") :].split(b"\r")[0].decode()
    config = config_file(tmp_path, f'[operators]\nalice = "{made}"\n')
    assert settings("--config", config).operators == (("alice", made),)


def test_admission_refusals_reach_stats(tmp_path: Path) -> None:
    """The caps' refusals and the server bans' count in the one /stats table."""
    service = service_in(tmp_path / "state", "--max-clients", "1")
    assert service.admission.admit("192.0.2.1", 0.0) is None
    refusal = service.admission.admit("192.0.2.2", 0.0)
    assert refusal is not None
    assert service.server.operators.stats.refusals == {refusal.code: 1}


def test_a_store_that_cannot_reopen_is_said_loudly(
    tmp_path: Path, log_events: list[LogEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the fork the file is opened again; if that fails the log says so."""
    service = service_in(tmp_path / "state")
    child = service.getServiceNamed("accounts")
    assert isinstance(child, AccountsService)
    store = child.services.store
    assert isinstance(store, SqliteAccountStore)

    def gone() -> None:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(store, "start", gone)
    child.startService()
    try:
        said = [formatEvent(e) or "" for e in log_events]
        assert any(
            "ACCOUNTS NOT SAVED" in t and "unable to open database file" in t
            for t in said
        ), said
    finally:
        child.stopService()
