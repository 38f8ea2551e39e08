"""The ``--cluster`` URL: where Redis is, and how to log in (issue 19).

Why a parsed value and not a string: the daemon checks the URL when it
starts, so a typo is a clear error on the command line rather than a node
that keeps reconnecting to nowhere; and the password must stay out of the
logs, so everything that logs the address uses `ClusterUrl.redacted`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from attrs import field, frozen

__all__ = ["DEFAULT_PORT", "ClusterUrl"]

#: Redis's own port, when the URL names none.
DEFAULT_PORT = 6379
_SCHEMES = {"redis": False, "rediss": True}
_USERINFO = re.compile(r"//[^/?#]*@")
_FORM = "redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://..."


@frozen
class ClusterUrl:
    """A Redis server's address, database number, password and TLS flag."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    #: Kept out of repr(): a logged ClusterUrl must not show it.
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def parse(cls, text: str, password: str | None = None) -> ClusterUrl:
        """Parse ``text``; ``password`` is used when the URL carries none.

        Raises ValueError saying what is wrong and what the form is.
        """
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError as error:
            raise _bad(text, str(error)) from None
        if parts.scheme not in _SCHEMES:
            raise _bad(text, "the scheme must be redis or rediss")
        if not parts.hostname:
            raise _bad(text, "no host")
        if parts.query or parts.fragment:
            raise _bad(text, "no ?query or #fragment is allowed")
        if parts.username:
            raise _bad(text, "a user name is not supported")
        db = _database(text, parts.path)
        in_url = unquote(parts.password) if parts.password else None
        if in_url is not None and password is not None and in_url != password:
            raise ValueError(
                "two different cluster passwords: one in the URL, one apart"
            )
        if port == 0:
            raise _bad(text, "port 0")
        return cls(
            host=parts.hostname,
            port=port or DEFAULT_PORT,
            db=db,
            password=in_url if in_url is not None else password,
            tls=_SCHEMES[parts.scheme],
        )

    def redacted(self) -> str:
        """The URL for logs and messages: the password replaced by ``***``."""
        scheme = "rediss" if self.tls else "redis"
        auth = ":***@" if self.password is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{auth}{host}:{self.port}/{self.db}"


def _database(text: str, path: str) -> int:
    """The database number of the URL's path: ``""``, ``/`` and ``/0`` are 0."""
    name = path.removeprefix("/")
    if not name:
        return 0
    if not name.isdigit() or not name.isascii():
        raise _bad(text, f"the database must be a number, not {name!r}")
    return int(name)


def _bad(text: str, why: str) -> ValueError:
    """The error for a URL that cannot be used: what is wrong, and the form.

    The URL is quoted with its user information masked: the error reaches
    the terminal and the logs, the password must not.
    """
    shown = _USERINFO.sub("//***@", text.strip())
    return ValueError(f"bad cluster URL {shown!r}: {why}; use {_FORM}")
