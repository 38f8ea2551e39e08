"""The daemon inside the shipped unit's syscall filter (issue 11, finding 1).

``deploy/twisted-chat.service`` says ``SystemCallFilter=~@privileged
@resources`` and ``SystemCallErrorNumber=EPERM``: every system call of those
groups fails with EPERM, except ``setpriority`` and ``sched_setscheduler``,
which it allows back (a process may lower its own priority). The history
writer used to die at start on ``os.nice`` (``setpriority``) and nothing
reached the file. These tests run
a real ``twistd -n chat`` under the same refusal, emulated with libseccomp:
a tiny launcher, run by Debian's ``/usr/bin/python3`` (``python3-seccomp``
is built for it, not for the venv's Python), installs a filter that allows
everything but the unit's groups, then ``execv``'s the venv's twistd; a
seccomp filter survives ``exec`` and is inherited by the writer process.

The groups are expanded with ``systemd-analyze syscall-filter``; without
systemd-analyze a copy of its output (systemd 252, Debian 12) is used.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _seccomp import SYSTEM_PYTHON, have_seccomp, needs_seccomp
from conftest import TIMEOUT, TWISTD, Daemon, LineClient, free_port

from twisted_chat.core.lines import parse_room_lines

pytestmark = pytest.mark.slow

#: The twistd to sandbox; set it to try another checkout (e.g. the code
#: before issue 11) with this very test.
SANDBOX_TWISTD = os.environ.get("TWISTED_CHAT_TWISTD", TWISTD)

#: The unit's refused groups, as in deploy/twisted-chat.service.
REFUSED_GROUPS = ("@privileged", "@resources")
UNIT = Path(__file__).resolve().parent.parent / "deploy" / "twisted-chat.service"


def allowed_again() -> set[str]:
    """The system calls the unit allows back after its deny line (read from it)."""
    names: set[str] = set()
    for line in UNIT.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "SystemCallFilter" and not value.startswith("~"):
            names.update(n for n in value.split() if not n.startswith("@"))
    return names


def refused_syscalls() -> str:
    """The unit's refusals, for the launcher: its groups less what it allows back."""
    again = allowed_again()
    return ",".join(n for n in expand_groups(REFUSED_GROUPS) if n not in again)


#: ``systemd-analyze syscall-filter @privileged @resources`` (systemd 252),
#: with the nested groups expanded; used only without systemd-analyze.
FALLBACK_SYSCALLS = [
    "chown",
    "chown32",
    "fchown",
    "fchown32",
    "fchownat",
    "lchown",
    "lchown32",
    "adjtimex",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_settime",
    "clock_settime64",
    "settimeofday",
    "delete_module",
    "finit_module",
    "init_module",
    "ioperm",
    "iopl",
    "pciconfig_iobase",
    "pciconfig_read",
    "pciconfig_write",
    "s390_pci_mmio_read",
    "s390_pci_mmio_write",
    "kexec_file_load",
    "kexec_load",
    "reboot",
    "swapoff",
    "swapon",
    "_sysctl",
    "acct",
    "bpf",
    "capset",
    "chroot",
    "fanotify_init",
    "fanotify_mark",
    "nfsservctl",
    "open_by_handle_at",
    "pivot_root",
    "quotactl",
    "quotactl_fd",
    "setdomainname",
    "setfsuid",
    "setfsuid32",
    "setgroups",
    "setgroups32",
    "sethostname",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setuid",
    "setuid32",
    "vhangup",
    "ioprio_set",
    "mbind",
    "migrate_pages",
    "move_pages",
    "nice",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "setpriority",
    "setrlimit",
]

LAUNCHER = '''
"""Install a seccomp filter (allow all, EPERM for the listed calls), exec."""
import errno
import os
import sys

import seccomp

names = sys.argv[1].split(",")
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
for name in names:
    try:
        f.add_rule(seccomp.ERRNO(errno.EPERM), name)
    except (RuntimeError, ValueError, OSError):
        pass  # not a system call of this architecture (e.g. setuid32)
f.load()
os.execv(sys.argv[2], sys.argv[2:])
'''


def expand_groups(groups: tuple[str, ...]) -> list[str]:
    """The system calls of ``groups``, nested groups expanded."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return FALLBACK_SYSCALLS
    listing = subprocess.run(
        [analyze, "syscall-filter"],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT,
    ).stdout
    members: dict[str, list[str]] = {}
    current: list[str] = []
    for line in listing.splitlines():
        if line.startswith("@"):
            current = members.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    found: list[str] = []
    todo = list(groups)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name.startswith("@"):
            todo.extend(members.get(name, []))
        else:
            found.append(name)
    return sorted(found)


class SandboxedDaemon(Daemon):
    """``twistd -n chat`` under the unit's syscall filter; the rest is `Daemon`'s."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        launcher = tmp_path / "seccomp_launch.py"
        launcher.write_text(LAUNCHER)
        self.log_path = tmp_path / "twistd.log"
        self.log_file = self.log_path.open("wb")
        refused = refused_syscalls()
        self.proc = subprocess.Popen(
            [
                SYSTEM_PYTHON,
                str(launcher),
                refused,
                SANDBOX_TWISTD,
                "--nodaemon",
                "--pidfile=",
                "chat",
                *args,
            ],
            cwd=tmp_path,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )


def start_as_alice(tmp_path: Path, state: Path) -> tuple[SandboxedDaemon, LineClient]:
    """A sandboxed daemon on loopback keeping ``state``, and a client named alice."""
    port = free_port()
    daemon = SandboxedDaemon(
        tmp_path,
        "--tcp",
        f"tcp:{port}:interface=127.0.0.1",
        "--udp",
        f"127.0.0.1:{free_port()}",
        "--state-dir",
        str(state),
    )
    try:
        daemon.wait_for_port(port)
        client = LineClient(port)
        client.expect(r"^\* You joined #lobby")
        client.say("/nick alice")
        client.expect(r"^\* You are now known as alice\.$")
    except BaseException:
        daemon.stop()
        raise
    return daemon, client


def stored_texts(path: Path) -> list[str]:
    """Every message text in a history file, read-only ([] if none yet)."""
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            turns = conn.execute("SELECT room, lines FROM turns").fetchall()
    except sqlite3.Error:
        return []
    return [
        text
        for room, said in turns
        for _, text, _ in parse_room_lines(room, said.encode())
    ]


def test_the_filter_refuses_setaffinity_and_allows_lowering_priority(
    tmp_path: Path,
) -> None:
    """
    The emulation works: under it ``sched_setaffinity`` (@resources) fails
    with EPERM, and ``os.nice``, which the unit allows back, works.
    """
    if not have_seccomp():
        pytest.skip("no libseccomp binding for /usr/bin/python3")
    launcher = tmp_path / "seccomp_launch.py"
    launcher.write_text(LAUNCHER)
    refused = refused_syscalls()
    assert {"setpriority", "sched_setscheduler"} <= allowed_again()
    assert "setpriority" not in refused.split(",")
    assert "sched_setaffinity" in refused.split(",")
    probe = (
        "import os\n"
        "try:\n    os.sched_setaffinity(0, os.sched_getaffinity(0))\n"
        "except PermissionError:\n    print('EPERM')\nelse:\n    print('allowed')\n"
        "os.nice(1)\nprint('nice')\n"
    )
    done = subprocess.run(
        [SYSTEM_PYTHON, str(launcher), refused, sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert done.stdout.split() == ["EPERM", "nice"]


@needs_seccomp
def test_history_reaches_the_file_inside_the_units_syscall_filter(
    tmp_path: Path,
) -> None:
    """Under ``~@privileged @resources`` the writer runs and rows reach disk."""
    state = tmp_path / "state"
    daemon, client = start_as_alice(tmp_path, state)
    try:
        client.say("saved inside the sandbox")
        client.say("/ping")
        client.expect(r"^\* pong$")
        database = state / "history.sqlite3"
        deadline = time.monotonic() + TIMEOUT
        while "saved inside the sandbox" not in stored_texts(database):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the message never reached {database}:\n{daemon.log}"
                )
            time.sleep(0.05)  # polling a condition, bounded by the deadline
        client.close()
    finally:
        code = daemon.stop()
    log = daemon.log
    assert code in (0, -signal.SIGTERM), log
    assert "history is not saved" not in log, log
    assert "Traceback" not in log, log
    # The unit lets the writer lower its priority.
    assert not re.search(r"history writer .*niceness", log), log
