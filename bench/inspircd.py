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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import BenchServer

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


class Inspircd(BenchServer):
    """An InspIRCd with the bench's configuration (see the module)."""

    name = "inspircd"
    program = INSPIRCD

    def __init__(self, *, port: int = 0) -> None:
        super().__init__(port=port)
        self.config = self.directory / "inspircd.conf"
        self.config.write_text(CONFIG.format(port=self.port, directory=self.directory))
        (self.directory / "motd.txt").write_text("bench\n")

    def command(self) -> list[str]:
        return [INSPIRCD, "--nofork", "--runasroot", f"--config={self.config}"]


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
    return Inspircd(port=args.port).serve_or_bench(args.serve, extra)


if __name__ == "__main__":
    sys.exit(main())
