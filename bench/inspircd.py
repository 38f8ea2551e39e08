#!/usr/bin/env python3
"""InspIRCd for the load generator's IRC mode, beside ngircd (issue 15).

Usage (from the repository, its venv active)::

    python bench/inspircd.py --serve                 # just the server: port, pid
    python bench/inspircd.py -- --workload rooms     # one bench run against it
    python bench/ngircd.py --compare --twistd-irc --inspircd --runs 5

Debian's ``inspircd`` (3.15) started on a free 127.0.0.1 port with a
configuration written here into a temporary directory, as
``bench/ngircd.py`` does for ngircd.  What it changes from InspIRCd's
defaults, and why (inspircd.conf(5) of the 3.x series, the ``<connect>``
class keys in docs/conf/inspircd.conf.example):

- ``localmax``/``globalmax`` 0 ... no cap: the defaults (3 a host) stop the
  bench's hundreds of clients from one address; ``maxconnwarn`` off.
- ``commandrate`` high, ``fakelag`` off: InspIRCd's flood control holds a
  client at one command a second by default (as ngircd's penalties do), and
  we compare fan-out, not flood control; our daemon runs with
  ``--flood-burst 0 --flood-rate 0``.
- ``hardsendq`` 16 MiB, ``softsendq`` 1 MiB, ``recvq`` 64 KiB: a bench
  worker may fall a few hundred kilobytes behind in a burst; InspIRCd's
  default 256 KiB hard limit would drop it where ngircd's kernel-buffered
  writes and our 1 MiB ``--max-sendq`` would not.
- ``resolvehostnames`` no, and no ident module: no lookups per connection.
- ``--runasroot``: CI runs as root, which InspIRCd refuses without it.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ngircd import free_port, stop, wait_for_port

INSPIRCD = "/usr/sbin/inspircd"

CONFIG = """\
<server name="irc.bench" description="twisted-chat bench" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect name="bench" allow="*" timeout="60" pingfreq="120"
         localmax="0" globalmax="0" maxconnwarn="off" limit="1000000"
         maxchans="20" commandrate="1000000000" fakelag="off" threshold="1000000"
         hardsendq="16777216" softsendq="1048576" recvq="65536"
         resolvehostnames="no" useident="no">
<performance softlimit="60000" clonesonconnect="no" quietbursts="yes">
<channels users="100" opers="100">
<pid file="{directory}/inspircd.pid">
<files motd="{directory}/motd.txt">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default"
     target="{directory}/inspircd.log">
"""


class Inspircd:
    """An InspIRCd on a free loopback port with the bench's configuration.

    ``with Inspircd() as server:`` starts and stops it; ``port`` and ``pid``
    are set while it runs; the temporary directory goes on stop.
    """

    def __init__(self, *, port: int = 0) -> None:
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="bench-inspircd-"))
        self.config = self.directory / "inspircd.conf"
        self.config.write_text(CONFIG.format(port=self.port, directory=self.directory))
        (self.directory / "motd.txt").write_text("bench\n")
        self.log = self.directory / "stdout.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("inspircd is not running")
        return self.process.pid

    def start(self) -> None:
        if not Path(INSPIRCD).exists():
            raise SystemExit(f"{INSPIRCD} is missing: apt-get install inspircd")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed program, our config
                [INSPIRCD, "--nofork", "--runasroot", f"--config={self.config}"],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.process, "inspircd")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Inspircd:  # noqa: PYI034 - never subclassed
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help="run until Ctrl-C")
    parser.add_argument("--port", type=int, default=0, help="for --serve")
    args = parser.parse_args(argv)
    with Inspircd(port=args.port) as server:
        if args.serve:
            print(f"inspircd on 127.0.0.1:{server.port}, pid {server.pid}, "
                  f"config {server.config}", flush=True)  # fmt: skip
            with contextlib.suppress(KeyboardInterrupt):
                server.process.wait()  # type: ignore[union-attr]
            return 0
        done = subprocess.run(  # noqa: S603 - our own bench
            [sys.executable, "-m", "twisted_chat.bench", "--proto", "irc",
             "--port", str(server.port), "--server-pid", str(server.pid), *extra],
            check=False,
        )  # fmt: skip
        return done.returncode


if __name__ == "__main__":
    sys.exit(main())
