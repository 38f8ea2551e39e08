"""``python -m twisted_chat.passwd``: an argon2id hash for ``[operators]``.

Reads one password from standard input (without echo, and twice, when
that is a terminal; otherwise the first line of the pipe) and prints its
argon2id hash, made with the parameters of
`twisted_chat.accounts.passwords`, for the configuration file::

    [operators]
    alice = "$argon2id$v=19$m=7168,t=5,p=1$..."

A password shorter than `MIN_PASSWORD_LENGTH` characters is refused with
one line on stderr and exit status 2; nothing ever prints the password.
"""

from __future__ import annotations

import getpass
import sys
from typing import TextIO

from twisted_chat.accounts.passwords import MIN_PASSWORD_LENGTH, argon2_hasher

__all__ = ["main", "read_password"]


def read_password(stdin: TextIO) -> str | None:
    """The password from ``stdin``; None if two terminal entries differ."""
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        again = getpass.getpass("Again: ")
        return first if first == again else None
    return stdin.readline().rstrip("\r\n")


def main(
    argv: list[str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Entry point; returns the exit status."""
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    if argv:
        stderr.write(
            "usage: python -m twisted_chat.passwd < password-file"
            " (the password is read from standard input)\n"
        )
        return 2
    try:
        password = read_password(stdin)
    except (EOFError, KeyboardInterrupt):
        password = ""
    if password is None:
        stderr.write("the two passwords differ; nothing printed\n")
        return 2
    if len(password) < MIN_PASSWORD_LENGTH:
        stderr.write(
            f"refused: a password needs at least {MIN_PASSWORD_LENGTH} characters\n"
        )
        return 2
    stdout.write(argon2_hasher().hash(password) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
