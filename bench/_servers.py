"""
The IRC servers the comparison starts (``bench/ngircd.py``,
``bench/inspircd.py``): each on a free loopback port, in a temporary
directory, stopped and removed at the end, whatever happens.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from _loopback import START_TIMEOUT, free_port

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["BenchServer", "free_port", "stop", "wait_for_port"]


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    """Return once 127.0.0.1:``port`` accepts; fail if ``process`` exits first."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start on port {port}") from None
            time.sleep(0.05)
        else:
            return


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 seconds; always reaped."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class BenchServer:
    """A server of the comparison on a free loopback port, in a temporary
    directory (its config, its log), removed when it stops.

    ``with Server() as server:`` starts and stops it; ``port`` and ``pid``
    are set while it runs.  A subclass writes its configuration and says
    how it is started (:meth:`command`).
    """

    name = "server"
    program = ""

    def __init__(self, *, port: int = 0, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self.log = log or self.directory / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> None:
        if not Path(self.program).exists():
            raise SystemExit(f"{self.program} is missing: apt-get install {self.name}")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed program, our config
                self.command(),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.process, self.name)

    def stop(self) -> None:
        """Stop the server and remove its directory (config, log)."""
        if self.process is not None:
            stop(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_or_bench(self, serve: bool, extra: list[str]) -> int:
        """Run until Ctrl-C (``serve``), or one ``--proto irc`` bench run
        with ``extra`` options against this server; the exit status."""
        with self:
            if serve:
                where = f"127.0.0.1:{self.port}, pid {self.pid}, log {self.log}"
                print(f"{self.name} on {where}", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    self.process.wait()  # type: ignore[union-attr]
                return 0
            done = subprocess.run(  # noqa: S603 - our own bench
                [sys.executable, "-m", "twisted_chat.bench", "--proto", "irc",
                 "--port", str(self.port), "--server-pid", str(self.pid), *extra],
                check=False,
            )  # fmt: skip
            return done.returncode
