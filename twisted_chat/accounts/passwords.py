"""Password hashing with argon2id, off the reactor thread (issue 13).

`Argon2Hasher` hashes and verifies with argon2-cffi's ``PasswordHasher`` on
a few worker threads of its own and hands each result to the caller's
callback on the reactor thread (``callFromThread``); `FakeHasher` has the
same interface, answers at once and deterministically, for unit tests of
the rules. Both fulfil `PasswordHasher`.

The parameters (`TIME_COST`, `MEMORY_COST`, `PARALLELISM`): argon2id with
7 MiB of memory, 5 passes and 1 lane, one of the five settings OWASP's
password storage guide gives as equally strong (19 MiB/t=2, 12 MiB/t=3,
9 MiB/t=4, 7 MiB/t=5; RFC 9106 section 4 likewise trades memory for
passes). Of those, the smallest memory: the hash runs beside a reactor
that must answer within milliseconds, and a 7 MiB working set evicts less
of the reactor's cache than 19 MiB (a storm of 200 wrong logins: busy-room
p99 4.45 ms against 4.87 ms with 19 MiB, bench/login_storm.py; a verify
takes 27 ms here against 37). RFC 9106's second recommended option (64 MiB,
t=3, p=4) was measured and set aside: one p=4 hash keeps four threads busy
on a 2-core box for several times longer, which is what a login storm
turns into reactor latency. With p=1 one verification occupies one core,
and the workers run under ``SCHED_IDLE`` (`_yield_the_cpu`), so they take
only CPU time the chat does not want. A stored hash carries its own
parameters, so hashes made with other settings (an operator's, say) still
verify; `PasswordHasher.needs_rehash` tells the caller when to store a new
one.

Bounded work: at most `WORKERS` hashes run at once and at most
`MAX_PENDING` jobs (running or waiting) are accepted; past that `hash`
and `verify` return False at once and never call back, the "busy"
answer, so a storm of logins cannot queue unbounded work or memory.

A verification for an account that does not exist (``stored=None``) runs
against a dummy hash of the same parameters and always fails: a wrong
name and a wrong password cost the same time.

Nothing here logs a password or a hash: a failure inside argon2 is logged
with the operation and the exception's type only.
"""

from __future__ import annotations

import os
import queue
import secrets
import threading
from typing import TYPE_CHECKING, Final

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.logger import Logger

from twisted_chat.core.account_ports import PasswordHasher

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.interfaces import IReactorFromThreads

__all__ = [
    "MAX_PENDING",
    "MEMORY_COST",
    "MIN_PASSWORD_LENGTH",
    "PARALLELISM",
    "TIME_COST",
    "WORKERS",
    "Argon2Hasher",
    "FakeHasher",
    "PasswordHasher",
    "argon2_hasher",
]

#: argon2id passes (see the module docstring for the choice).
TIME_COST: Final = 5
#: argon2id memory, in KiB: 7 MiB.
MEMORY_COST: Final = 7 * 1024
#: argon2id lanes: one, so one job occupies one core.
PARALLELISM: Final = 1
#: Hashes running at once.
WORKERS: Final = 2
#: Jobs accepted at once (running plus waiting); more are refused.
MAX_PENDING: Final = 32
#: The shortest password accepted (``! weak-password``, the passwd tool).
MIN_PASSWORD_LENGTH: Final = 8

_log = Logger(namespace="twisted_chat.accounts.passwords")


def argon2_hasher() -> argon2.PasswordHasher:
    """argon2-cffi's hasher with this module's parameters (argon2id)."""
    return argon2.PasswordHasher(
        time_cost=TIME_COST,
        memory_cost=MEMORY_COST,
        parallelism=PARALLELISM,
        type=argon2.Type.ID,
    )


class Argon2Hasher:
    """`PasswordHasher` with argon2id on `WORKERS` daemon threads.

    Create it on the reactor thread (it makes the dummy hash, one hash's
    time, at once) and call it only from there; `stop` ends the threads.
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        *,
        workers: int = WORKERS,
        max_pending: int = MAX_PENDING,
        hasher: argon2.PasswordHasher | None = None,
    ) -> None:
        if workers < 1 or max_pending < 1:
            raise ValueError("workers and max_pending must be at least 1")
        self._reactor = reactor
        self._argon2 = hasher if hasher is not None else argon2_hasher()
        self._max_pending = max_pending
        self._pending = 0
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        # A random password nobody knows: verifying against this hash costs
        # what a real verification costs and never matches (the verdict is
        # forced to False in any case).
        self._dummy = self._argon2.hash(secrets.token_urlsafe(24))
        self._threads = [
            threading.Thread(target=self._work, name=f"argon2-{n}", daemon=True)
            for n in range(workers)
        ]
        self._started = False

    def start(self) -> None:
        """Start the worker threads, if the first job has not already.

        Not in ``__init__``: the daemon builds the hasher before twistd
        forks into the background, and threads do not survive a fork, so
        the threads start once the daemon runs (``startService``), or at
        the first job, whichever comes first.
        """
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()

    @property
    def pending(self) -> int:
        """Jobs accepted and not yet answered on the reactor thread."""
        return self._pending

    def hash(self, password: str, done: Callable[[str | None], None]) -> bool:
        """`PasswordHasher.hash`."""
        argon = self._argon2

        def job() -> None:
            result: str | None
            try:
                result = argon.hash(password)
            except Exception as e:
                _failed("hash", e)
                result = None
            self._answer(done, result)

        return self._submit(job)

    def verify(
        self, stored: str | None, password: str, done: Callable[[bool], None]
    ) -> bool:
        """`PasswordHasher.verify`."""
        argon = self._argon2
        exists = stored is not None
        against = stored if stored is not None else self._dummy

        def job() -> None:
            try:
                result = argon.verify(against, password) and exists
            except VerifyMismatchError:
                result = False
            except Exception as e:
                # InvalidHashError (a damaged stored hash), VerificationError,
                # or worse: logged without the values, answered as a failure.
                _failed("verify", e)
                result = False
            self._answer(done, result)

        return self._submit(job)

    def needs_rehash(self, stored: str) -> bool:
        """`PasswordHasher.needs_rehash`; True for a hash argon2 cannot read."""
        try:
            return self._argon2.check_needs_rehash(stored)
        except (InvalidHashError, VerificationError, ValueError):
            return True

    def stop(self) -> None:
        """End the worker threads after the jobs already queued."""
        if self._started:
            for _ in self._threads:
                self._jobs.put(None)

    def _submit(self, job: Callable[[], None]) -> bool:
        if self._pending >= self._max_pending:
            return False
        if not self._started:
            self.start()
        self._pending += 1
        self._jobs.put(job)
        return True

    def _answer(self, done: Callable[..., None], result: object) -> None:
        """On a worker: deliver ``result`` to ``done`` on the reactor thread."""
        self._reactor.callFromThread(self._deliver, done, result)

    def _deliver(self, done: Callable[..., None], result: object) -> None:
        """On the reactor thread: count the job answered, then call back."""
        self._pending -= 1
        try:
            done(result)
        except Exception:
            _log.failure("in a password callback")

    def _work(self) -> None:
        _yield_the_cpu()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                # _answer itself failed (the reactor is gone): nothing to do.
                _log.failure("in a password worker")


def _yield_the_cpu() -> None:
    """
    Make the calling worker thread run only when the chat has no use for a CPU.

    argon2 takes a core for tens of milliseconds per password, and on a
    small machine that core is the one the reactor, or the system's network
    work, wanted: a storm of 200 wrong passwords raised a busy room's p99
    latency from 2.6 to 7 ms (bench/login_storm.py). ``SCHED_IDLE`` lets
    the thread run only on a CPU nothing else wants; logins then wait a
    little longer under load, the chat does not. Where the policy cannot
    be set (another OS, a sandbox whose syscall filter denies it), nice 19
    is the fallback, and failing that the thread runs as it is.
    """
    thread = threading.get_native_id()
    try:
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.setpriority(os.PRIO_PROCESS, thread, 19)
        except (AttributeError, OSError) as e:
            # As the history writer: said once (per worker), not hidden.
            _log.info(
                "password workers keep their priority: the system refuses "
                "SCHED_IDLE and nice ({error})",
                error=type(e).__name__,
            )


def _failed(operation: str, error: Exception) -> None:
    """Log a failure of argon2 itself, naming no argument (no password)."""
    _log.error(
        "argon2 {operation} failed: {error_type}",
        operation=operation,
        error_type=type(error).__name__,
    )


class FakeHasher:
    """`PasswordHasher` for unit tests: instant, deterministic, not secure.

    ``fake$`` plus the password reversed is its "hash". Callbacks are
    queued and run by `run_pending` (like a reactor turn), or at once with
    ``immediate=True``; ``max_pending`` makes it busy like the real one.
    """

    PREFIX: Final = "fake$"

    def __init__(
        self, *, max_pending: int = MAX_PENDING, immediate: bool = False
    ) -> None:
        self._max_pending = max_pending
        self._immediate = immediate
        self._queued: list[Callable[[], None]] = []
        #: How many verifications ran against the dummy (no such account).
        self.dummy_verifications = 0

    @property
    def pending(self) -> int:
        """Answers not yet delivered."""
        return len(self._queued)

    def hash(self, password: str, done: Callable[[str | None], None]) -> bool:
        """`PasswordHasher.hash`."""
        result = self.PREFIX + password[::-1]
        return self._submit(lambda: done(result))

    def verify(
        self, stored: str | None, password: str, done: Callable[[bool], None]
    ) -> bool:
        """`PasswordHasher.verify`."""
        result = stored is not None and stored == self.PREFIX + password[::-1]
        accepted = self._submit(lambda: done(result))
        if accepted and stored is None:
            self.dummy_verifications += 1
        return accepted

    def needs_rehash(self, stored: str) -> bool:
        """`PasswordHasher.needs_rehash`: anything not made by this fake."""
        return not stored.startswith(self.PREFIX)

    def run_pending(self) -> int:
        """Deliver every queued answer, in order; how many were delivered."""
        count = 0
        while self._queued:
            self._queued.pop(0)()
            count += 1
        return count

    def _submit(self, answer: Callable[[], None]) -> bool:
        if len(self._queued) >= self._max_pending:
            return False
        if self._immediate:
            answer()
        else:
            self._queued.append(answer)
        return True
