"""Password hashing (issue 13): real argon2id off the reactor, the bound, the fake.

The real hasher's answers come through a fake reactor whose
``callFromThread`` fills a queue; the test thread takes them with a
timeout (never a blind sleep) and checks that they arrive there and not
on a worker thread. A gate (a slow fake argon2) holds the workers so that
the bound on pending jobs can be filled on purpose.
"""

from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, Literal

import argon2
import pytest
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import LogEvent, formatEvent
from zope.interface import implementer

from twisted_chat import passwd
from twisted_chat.accounts import passwords
from twisted_chat.accounts.passwords import (
    MEMORY_COST,
    PARALLELISM,
    TIME_COST,
    Argon2Hasher,
    FakeHasher,
    argon2_hasher,
)

SECRET = "correct horse battery"  # noqa: S105


@implementer(IReactorFromThreads)
class ThreadReactor:
    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[object, ...]]] = (
            queue.SimpleQueue()
        )
        self.threads: list[threading.Thread] = []

    def callFromThread(
        self,
        callable: Callable[..., Any],  # noqa: A002
        *args: object,
        **kwargs: object,
    ) -> None:
        assert not kwargs
        self.threads.append(threading.current_thread())
        self.calls.put((callable, args))

    def run_one(self, timeout: float = 20.0) -> None:
        f, args = self.calls.get(timeout=timeout)
        f(*args)


@pytest.fixture(scope="module")
def stored() -> str:
    return argon2_hasher().hash(SECRET)


@pytest.fixture
def real() -> Any:
    reactor = ThreadReactor()
    hasher = Argon2Hasher(reactor)
    yield reactor, hasher
    hasher.stop()


def test_hashes_are_argon2id_with_the_chosen_parameters(real: Any) -> None:
    reactor, hasher = real
    got: list[str | None] = []
    assert hasher.hash(SECRET, got.append)
    assert got == []  # not on the caller's stack
    reactor.run_one()
    (value,) = got
    assert value is not None
    assert value.startswith(
        f"$argon2id$v=19$m={MEMORY_COST},t={TIME_COST},p={PARALLELISM}$"
    )
    assert SECRET not in value
    assert not hasher.needs_rehash(value)
    assert hasher.pending == 0
    assert threading.current_thread() not in reactor.threads


def test_verify_right_wrong_and_missing_account(real: Any, stored: str) -> None:
    reactor, hasher = real
    got: list[bool] = []
    assert hasher.verify(stored, SECRET, got.append)
    assert hasher.verify(stored, "wrong password", got.append)
    assert hasher.verify(None, SECRET, got.append)
    for _ in range(3):
        reactor.run_one()
    assert sorted(got) == [False, False, True]
    assert hasher.pending == 0


def test_rfc9106_hashes_verify_and_need_a_rehash(real: Any) -> None:
    reactor, hasher = real
    other = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    old = other.hash(SECRET)
    got: list[bool] = []
    hasher.verify(old, SECRET, got.append)
    reactor.run_one()
    assert got == [True]
    assert hasher.needs_rehash(old)
    assert hasher.needs_rehash("not a hash")


def test_a_damaged_hash_fails_and_is_logged_without_values(
    real: Any, log_events: list[LogEvent]
) -> None:
    reactor, hasher = real
    got: list[bool] = []
    hasher.verify("$argon2id$v=19$garbage-HASHVALUE", SECRET, got.append)
    reactor.run_one()
    assert got == [False]
    texts = [repr(e) + (formatEvent(e) or "") for e in log_events]
    assert any("argon2 verify failed" in t for t in texts)
    for text in texts:
        assert SECRET not in text
        assert "HASHVALUE" not in text


class GatedArgon2(argon2.PasswordHasher):
    """argon2 whose hash and verify wait for a gate (after the dummy hash)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.gate = threading.Event()
        self.started = threading.Semaphore(0)
        self.armed = False

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        if self.armed:
            self.started.release()
            assert self.gate.wait(20)
        return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:  # noqa: A002
        self.started.release()
        assert self.gate.wait(20)
        return super().verify(hash, password)


def test_at_most_max_pending_jobs_then_busy_at_once(stored: str) -> None:
    reactor = ThreadReactor()
    gated = GatedArgon2()
    hasher = Argon2Hasher(reactor, workers=2, max_pending=5, hasher=gated)
    gated.armed = True
    got: list[bool] = []
    try:
        accepted = [hasher.verify(stored, SECRET, got.append) for _ in range(5)]
        assert accepted == [True] * 5
        assert hasher.pending == 5
        # Both workers are inside argon2, no more: the others wait.
        assert gated.started.acquire(timeout=20)
        assert gated.started.acquire(timeout=20)
        assert not gated.started.acquire(timeout=0.05)
        assert not hasher.verify(stored, SECRET, got.append)
        assert not hasher.hash(SECRET, lambda _h: None)
        gated.gate.set()
        for _ in range(5):
            reactor.run_one()
        assert len(got) == 5
        assert hasher.pending == 0
        assert hasher.verify(stored, SECRET, got.append)  # room again
        reactor.run_one()
    finally:
        gated.gate.set()
        hasher.stop()


def test_the_fake_hasher_is_deterministic_and_bounded() -> None:
    fake = FakeHasher(max_pending=2)
    hashes: list[str | None] = []
    verdicts: list[bool] = []
    assert fake.hash("password1", hashes.append)
    assert fake.verify("fake$1drowssap", "password1", verdicts.append)
    assert not fake.verify(None, "password1", verdicts.append)  # busy
    assert hashes == []
    assert fake.run_pending() == 2
    assert hashes == ["fake$1drowssap"]
    assert verdicts == [True]
    fake.verify(None, "password1", verdicts.append)
    fake.verify("fake$1drowssap", "wrong", verdicts.append)
    fake.run_pending()
    assert verdicts == [True, False, False]
    assert fake.dummy_verifications == 1
    assert fake.needs_rehash("$argon2id$...")
    assert not fake.needs_rehash("fake$x")


# -- python -m twisted_chat.passwd -------------------------------------------------


def run_passwd(text: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = passwd.main([], io.StringIO(text), out, err)
    return status, out.getvalue(), err.getvalue()


def test_passwd_prints_a_hash_that_verifies() -> None:
    status, out, err = run_passwd(SECRET + "\n")
    assert (status, err) == (0, "")
    assert out.count("\n") == 1
    assert argon2_hasher().verify(out.strip(), SECRET)
    assert SECRET not in out


@pytest.mark.parametrize("text", ["", "\n", "short\n", "1234567\n"])
def test_passwd_refuses_short_passwords(text: str) -> None:
    status, out, err = run_passwd(text)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "at least 8" in err


def test_passwd_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "twisted_chat.passwd"],
        input="a longer password\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("$argon2id$")
    assert "a longer password" not in done.stdout + done.stderr


def test_the_workers_hash_on_idle_cpu_time_only(real: Any) -> None:
    """A worker thread runs under SCHED_IDLE: argon2 never competes with the chat."""
    reactor, hasher = real
    policies: list[int] = []

    def job() -> None:
        policies.append(os.sched_getscheduler(0))
        hasher._answer(lambda _: None, None)

    assert hasher._submit(job)
    reactor.run_one()
    assert policies == [os.SCHED_IDLE]
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the caller's thread is not


def refuse(*args: object) -> None:
    raise PermissionError("refused by the sandbox")


def test_a_refused_sched_idle_falls_back_to_nice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    niced: list[tuple[int, int, int]] = []
    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    monkeypatch.setattr(
        os,
        "setpriority",
        lambda *args: niced.append(args),
    )
    passwords._yield_the_cpu()
    assert niced == [(os.PRIO_PROCESS, threading.get_native_id(), 19)]


def test_a_refused_priority_is_said_once_and_the_worker_goes_on(
    monkeypatch: pytest.MonkeyPatch, log_events: list[LogEvent]
) -> None:
    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    monkeypatch.setattr(os, "setpriority", refuse)
    passwords._yield_the_cpu()
    said = [formatEvent(e) or "" for e in log_events]
    assert [t for t in said if "keep their priority" in t] == [
        (
            "password workers keep their priority: the system refuses SCHED_IDLE "
            "and nice (PermissionError)"
        )
    ]
