"""Which listeners start (socket activation), and one line when one cannot."""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Pair
from twisted.application.service import Service
from twisted.internet.endpoints import _SystemdParser
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.systemd import ListenFDs

from twisted_chat.core.settings import Settings
from twisted_chat.daemon.frontends import FRONT_ENDS
from twisted_chat.daemon.inherited_sockets import InheritedSocketError, InheritedSockets
from twisted_chat.daemon.options import Options
from twisted_chat.daemon.service import ChatService, StartupError, make_chat_service
from twisted_chat.daemon.startup import (
    ListenerGroup,
    ListenFailure,
    _excepthook,
    adopt_inherited,
    explain_listen_failure,
)
from twisted_chat.transports.udp_listeners import SystemdUDPService

Passed = Callable[[dict[str, socket.socket]], InheritedSockets]


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions([*argv, "--history-db", "off"])
    return options


def settings(*argv: str) -> Settings:
    parsed = parse(*argv)["settings"]
    assert isinstance(parsed, Settings)
    return parsed


def daemon(inherited: InheritedSockets, *argv: str) -> ChatService:
    """The daemon as twistd would build it from this command line."""
    options = parse(*argv)
    return make_chat_service(
        options["settings"],
        MemoryReactorClock(),
        options["given"],
        inherited=inherited,
    )


@pytest.fixture
def passed(monkeypatch: pytest.MonkeyPatch) -> Callable[..., InheritedSockets]:
    """
    Pretend systemd passed these sockets under these names, to this process:
    Twisted's ``systemd:`` endpoint reads its own copy of the environment.
    """

    def pretend(names: dict[str, socket.socket]) -> InheritedSockets:
        fds = [sock.fileno() for sock in names.values()]
        inherited = InheritedSockets(ListenFDs(fds, tuple(names)))
        monkeypatch.setattr(_SystemdParser, "_sddaemon", inherited.listen_fds)
        return inherited

    return pretend


NOTHING = InheritedSockets(ListenFDs([], ()))


def adopt(configured: Settings, inherited: InheritedSockets) -> Settings:
    """The settings with what the daemon's front-ends adopt of ``inherited``."""
    return adopt_inherited(configured, inherited, front_ends=FRONT_ENDS)


# --- adopting the sockets of the shipped .socket units ----------------------


def test_defaults_give_way_to_both_passed_sockets(pair: Pair, passed: Passed) -> None:
    """Nothing configured and chat-tcp + chat-udp passed: both adopted, no 9000."""
    tcp, udp = pair
    adopted = adopt(settings(), passed({"chat-tcp": tcp, "chat-udp": udp}))
    assert adopted.tcp == ("systemd:name=chat-tcp",)
    assert adopted.udp == ("systemd:name=chat-udp",)
    assert not adopted.listeners_defaulted


def test_one_passed_socket_replaces_all_the_defaults(
    pair: Pair, passed: Passed
) -> None:
    """Only twisted-chat.socket running: TCP adopted, UDP 9001 not opened behind it."""
    tcp, _ = pair
    adopted = adopt(settings(), passed({"chat-tcp": tcp}))
    assert adopted.tcp == ("systemd:name=chat-tcp",)
    assert adopted.udp == ()


def test_without_passed_sockets_the_defaults_stay() -> None:
    """No socket activation, nothing configured: TCP 9000 and UDP 9001."""
    defaults = settings()
    assert adopt(defaults, NOTHING) is defaults
    assert len(defaults.tcp) == len(defaults.udp) == 1
    assert ":9000" in defaults.tcp[0] or defaults.tcp[0].startswith("tcp:9000")


def test_a_configured_kind_is_kept_and_the_other_kind_adopted(
    pair: Pair, passed: Passed
) -> None:
    """--tcp given: TCP is what was asked for; the unconfigured UDP adopts chat-udp."""
    tcp, udp = pair
    configured = settings("--tcp", "tcp:0:interface=127.0.0.1")
    adopted = adopt(configured, passed({"chat-tcp": tcp, "chat-udp": udp}))
    assert adopted.tcp == ("tcp:0:interface=127.0.0.1",)
    assert adopted.udp == ("systemd:name=chat-udp",)


def test_metrics_given_stays_when_the_chat_adopts_and_adopted_metrics_keeps_defaults(
    pair: Pair, passed: Passed
) -> None:
    """--metrics is never a default: an explicit one survives the chat's
    adoption, and an adopted chat-metrics leaves the chat's defaults alone."""
    tcp, metrics = pair
    given = settings("--metrics", "tcp:0:interface=127.0.0.1")
    adopted = adopt(given, passed({"chat-tcp": tcp}))
    assert adopted.listeners("tcp") == ("systemd:name=chat-tcp",)
    assert adopted.listeners("metrics") == ("tcp:0:interface=127.0.0.1",)
    defaults = settings()
    only_metrics = adopt(defaults, passed({"chat-metrics": metrics}))
    assert only_metrics.listeners("metrics") == ("systemd:name=chat-metrics",)
    assert only_metrics.listeners("tcp") == defaults.listeners("tcp")
    assert only_metrics.listeners("udp") == defaults.listeners("udp")


def test_unknown_names_are_not_adopted(pair: Pair, passed: Passed) -> None:
    """Only the table's names are adopted; another unit's socket stays alone."""
    tcp, _ = pair
    defaults = settings()
    assert adopt(defaults, passed({"other": tcp})) is defaults


def test_inherited_sockets_from_a_fake_environment_are_adopted(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, as systemd sets them, drive adoption."""
    tcp, _ = pair
    inherited = InheritedSockets.from_environment(
        {
            "LISTEN_PID": str(os.getpid()),
            "LISTEN_FDS": "1",
            "LISTEN_FDNAMES": "chat-tcp",
        },
        start=tcp.fileno(),
    )
    monkeypatch.setattr(_SystemdParser, "_sddaemon", inherited.listen_fds)
    service = daemon(inherited)
    assert service.settings.tcp == ("systemd:name=chat-tcp",)
    assert service.settings.udp == ()
    assert "udp" not in service.namedServices


def test_daemon_adopts_passed_sockets_and_reload_keeps_them(
    pair: Pair, passed: Passed
) -> None:
    """The service listens on what systemd passed; SIGHUP sees no listener change."""
    tcp, udp = pair
    service = daemon(passed({"chat-tcp": tcp, "chat-udp": udp}))
    (udp_listener,) = service.getServiceNamed("udp")
    assert isinstance(udp_listener, SystemdUDPService)
    assert udp_listener.socket_name == "chat-udp"
    assert service.settings.tcp == ("systemd:name=chat-tcp",)
    assert service.reload()
    assert service.settings.tcp == ("systemd:name=chat-tcp",)
    assert service.settings.udp == ("systemd:name=chat-udp",)


def test_reload_does_not_report_adopted_listeners_as_changed(
    pair: Pair, passed: Passed, log_events: list[dict[str, object]]
) -> None:
    """Adoption happens again on reload, so no 'takes effect after a restart'."""
    tcp, _ = pair
    service = daemon(passed({"chat-tcp": tcp}))
    assert service.reload()
    formats = [str(event.get("log_format")) for event in log_events]
    assert not [text for text in formats if "after a restart" in text]


def test_missing_udp_socket_is_a_startup_error() -> None:
    """--udp systemd:name=X that systemd did not pass fails in makeService."""
    with pytest.raises(StartupError, match="systemd passed no socket named 'chat-udp'"):
        daemon(NOTHING, "--udp", "systemd:name=chat-udp")


# --- one line when a listener cannot listen ---------------------------------


def cannot_listen(code: int, interface: str = "", port: int = 9000) -> Exception:
    return CannotListenError(interface, port, OSError(code, "ignored"))


@pytest.mark.parametrize(
    ("problem", "line"),
    [
        (
            cannot_listen(errno.EADDRINUSE),
            (
                "cannot listen on TCP port 9000: address already in use; stop "
                "whatever uses it or choose another with --tcp"
            ),
        ),
        (
            cannot_listen(errno.EADDRINUSE, "127.0.0.1", 9001),
            "cannot listen on TCP port 9001 on 127.0.0.1: address already in use",
        ),
        (cannot_listen(errno.EACCES, "", 80), "ports below 1024 need root"),
        (
            cannot_listen(errno.EADDRNOTAVAIL, "192.0.2.1"),
            "this host has no such address; choose one it has with --tcp",
        ),
        (InheritedSocketError("no such socket"), "--tcp: no such socket"),
        (
            CannotListenError(None, "/run/chat.sock", OSError(errno.EADDRINUSE, "")),
            "cannot listen on the socket /run/chat.sock: address already in use",
        ),
    ],
    ids=[
        "in-use",
        "in-use-on-address",
        "privileged",
        "no-address",
        "inherited",
        "unix",
    ],
)
def test_listen_failures_are_explained(problem: Exception, line: str) -> None:
    """Each reason names the port, the cause and what to do."""
    explained = explain_listen_failure("TCP", "--tcp", problem)
    assert line in explained


def test_a_taken_port_that_systemd_passed_says_how_to_adopt_it() -> None:
    """Config names 9000 while twisted-chat.socket holds it: say to drop the key."""
    line = explain_listen_failure(
        "TCP", "--tcp", cannot_listen(errno.EADDRINUSE), "chat-tcp"
    )
    assert "systemd passed a socket named chat-tcp" in line
    assert "leave tcp out of the configuration" in line


class Refusing(Service):
    def privilegedStartService(self) -> None:
        raise cannot_listen(errno.EADDRINUSE, "", 9001)


def test_listener_group_turns_a_bind_failure_into_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What twistd meets in privilegedStartService is a ListenFailure, printed short."""
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    group = ListenerGroup("UDP", "--udp")
    Refusing().setServiceParent(group)
    with pytest.raises(ListenFailure) as failure:
        group.privilegedStartService()
    assert str(failure.value) == (
        "cannot listen on UDP port 9001: address already in use; stop whatever "
        "uses it or choose another with --udp"
    )
    assert sys.excepthook is _excepthook
    _excepthook(ListenFailure, failure.value, failure.value.__traceback__)
    assert capsys.readouterr().err == f"twistd chat: {failure.value}\n"


def test_a_passed_socket_of_the_wrong_kind_says_which_line_to_write(
    pair: Pair, passed: Passed
) -> None:
    """chat-udp that is a stream socket: the unit needs ListenDatagram=."""
    tcp, _ = pair
    with pytest.raises(StartupError) as problem:
        daemon(passed({"chat-udp": tcp}))
    assert str(problem.value).endswith(
        "Inherited socket 'chat-udp' is SOCK_STREAM, not SOCK_DGRAM: its .socket "
        "unit needs ListenDatagram="
    )


def test_twistds_service_freezes_the_startup_heap_and_tests_do_not(
    tmp_path: Path,
) -> None:
    """Under twistd, start-up's objects leave the collector's walks; a
    service built elsewhere (tests, tools) leaves the collector alone."""
    import gc

    from twisted_chat.daemon.options import makeService
    from twisted_chat.daemon.startup import FULL_COLLECTION_EVERY, freeze_startup_heap

    nothing = InheritedSockets(ListenFDs([], ()))
    assert daemon(nothing, "--tcp", "tcp:0").freeze_heap is False
    options = Options()
    options.parseOptions(["--tcp", "tcp:0", "--state-dir", str(tmp_path / "s")])
    assert makeService(options).freeze_heap is True  # type: ignore[attr-defined]
    assert gc.get_freeze_count() == 0
    thresholds = gc.get_threshold()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        # Full collections ten times rarer; the young ones as before.
        assert gc.get_threshold() == (*thresholds[:2], FULL_COLLECTION_EVERY)
        assert 10 * thresholds[2] <= FULL_COLLECTION_EVERY
        garbage: list[object] = []
        garbage.append(garbage)  # a cycle made after the freeze is collected
        del garbage
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
