"""
The daemon's start-up inside a sandbox that refuses resource calls.

The shipped unit refuses ``@privileged @resources`` with EPERM.  Its
``setrlimit`` does not cover what glibc really calls (``prlimit64``, which
both reads and sets limits), so a filter on the name alone proves nothing;
these tests refuse ``prlimit64`` too, once only when it would set a limit
(what ``setrlimit`` means) and once altogether (reading the limit fails as
well), with the soft limit lowered so that the daemon does try to raise it.
Either way the daemon must log it and serve.  The history writer's part
(``setpriority``) is covered in ``test_sandbox.py``; history is off here.

The filter is installed by a launcher run with Debian's ``/usr/bin/python3``
(``python3-seccomp`` is built for it), which then ``execv``'s twistd.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _seccomp import SYSTEM_PYTHON, needs_seccomp
from conftest import TIMEOUT, TWISTD, LineClient, free_port

pytestmark = pytest.mark.slow

#: argv: ``set-only`` or ``all`` (which prlimit64 calls fail), then the
#: command to exec.  Besides prlimit64, the unit's resource calls are refused.
LAUNCHER = """
import errno, os, sys
import seccomp

f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
refuse = seccomp.ERRNO(errno.EPERM)
for name in ["setrlimit", "setpriority", "nice", "sched_setaffinity",
             "sched_setscheduler", "ioprio_set"]:
    f.add_rule(refuse, name)
if sys.argv[1] == "all":
    f.add_rule(refuse, "prlimit64")
else:
    # prlimit64(pid, resource, new_limit, old_limit): a non-NULL new_limit sets.
    f.add_rule(refuse, "prlimit64", seccomp.Arg(2, seccomp.NE, 0))
f.load()
os.execv(sys.argv[2], sys.argv[2:])
"""


def lower_soft_limit() -> None:
    """In the child: a soft limit below the hard one, so the daemon tries."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512), hard))


@needs_seccomp
@pytest.mark.parametrize(
    ("refused", "logged"),
    [
        ("set-only", "could not raise the open file limit from 512"),
        ("all", "could not read the open file limit, leaving it as it is"),
    ],
)
def test_daemon_starts_when_the_sandbox_refuses_resource_limits(
    tmp_path: Path, refused: str, logged: str
) -> None:
    """The refusal is one warning; the daemon is ready and answers /ping."""
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    port = free_port()
    log_path = tmp_path / "twistd.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                SYSTEM_PYTHON,
                str(launcher),
                refused,
                TWISTD,
                "--nodaemon",
                "--pidfile=",
                "chat",
                "--tcp",
                f"tcp:{port}:interface=127.0.0.1",
                "--history-db",
                "off",
            ],
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=lower_soft_limit,  # noqa: PLW1509 - before exec, no threads
        )
        try:
            client = _connect(port, proc, log_path)
            client.expect(r"^\* You joined #lobby")
            client.say("/ping")
            client.expect(r"^\* pong$")
            client.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=TIMEOUT)
    log = log_path.read_text("utf-8", "replace")
    assert logged in log
    assert "twisted-chat ready" in log
    assert "Traceback" not in log


def _connect(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> LineClient:
    """A client once the daemon accepts; fail with its log if it died."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return LineClient(port)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(log_path.read_text("utf-8", "replace")) from None
            time.sleep(0.05)  # polling a condition, bounded by the deadline
