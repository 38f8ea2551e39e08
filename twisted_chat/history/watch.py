"""Notice the history file going away under the writer (issue 11, finding 14).

A writer keeps its SQLite file open: if somebody removes (or replaces) the
file while the daemon runs, every commit still succeeds, into an inode that
has no name any more, and at the next start the history is gone. Nothing
in SQLite says so. `FileWatch` compares, every `CHECK_INTERVAL` seconds,
the identity (``st_dev``, ``st_ino``) of what is at the path with that of
the file the writer opened; on a difference the writer says so loudly and
starts a fresh database at the path (the schema, and the topics it still
has), so that history from then on is saved.

Standard library only: it runs in the writer child.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Final

from twisted_chat.history.schema import (
    TopicRow,
    checkpoint_and_close,
    commit,
    prepare,
)

__all__ = ["CHECK_INTERVAL", "FileWatch"]

#: How often the writer looks at its file, in seconds: one ``stat`` call.
CHECK_INTERVAL: Final = 2.0

#: SQLite's companions of a WAL database: they belong to one main file.
_SIDECARS: Final = ("-wal", "-shm")

_Identity = tuple[int, int]


def _identity(path: str) -> _Identity | None:
    """``(st_dev, st_ino)`` of what is at ``path``; None if nothing is."""
    try:
        found = Path(path).stat()
    except FileNotFoundError:
        return None
    return (found.st_dev, found.st_ino)


class FileWatch:
    """The identity of the history file the writer has open.

    :param path: the history file, as the writer opened it.
    :param next_check: when to look first (a ``time.monotonic`` value).
    """

    def __init__(self, path: str, next_check: float) -> None:
        self.path = path
        self.next_check = next_check
        self._opened = _identity(path)
        #: The WAL and shared-memory files seen with our main file; only
        #: these are removed before a fresh file is made.
        self._sidecars: dict[str, _Identity] = {}

    def due(self, now: float) -> bool:
        """Whether it is time to look again (a compare, for every loop)."""
        return now >= self.next_check

    def problem(self, now: float) -> str | None:
        """What happened to the file (a phrase), or None if it is still there."""
        self.next_check = now + CHECK_INTERVAL
        try:
            there = _identity(self.path)
        except OSError:
            return None  # cannot look (a permission problem): assume it is fine
        if there is None:
            return "was removed"
        if there != self._opened:
            return "was replaced by another file"
        for suffix in _SIDECARS:
            with contextlib.suppress(OSError):
                seen = _identity(self.path + suffix)
                if seen is not None:
                    self._sidecars[suffix] = seen
        return None

    def release(self, old: sqlite3.Connection | None) -> list[TopicRow]:
        """Read the topics ``old`` still has, checkpoint it and close it."""
        topics: list[TopicRow] = []
        if old is not None:
            with contextlib.suppress(sqlite3.Error):
                topics = old.execute(
                    "SELECT room_key, room, text, set_by, set_at FROM topics"
                ).fetchall()
            with contextlib.suppress(sqlite3.Error):
                checkpoint_and_close(old)
        return topics

    def reopen(self, topics: list[TopicRow]) -> sqlite3.Connection:
        """Open (or create) the database at the path again, with ``topics``.

        The old WAL and shared-memory files are removed first, if they are
        still the ones seen with the old file: a new main file next to an
        old WAL would have the old file's pages replayed into it.

        :raises sqlite3.Error: or ValueError or OSError, when the path cannot
            hold a database now.
        """
        for suffix, seen in self._sidecars.items():
            with contextlib.suppress(OSError):
                if _identity(self.path + suffix) == seen:
                    Path(self.path + suffix).unlink()
        self._sidecars.clear()
        Path(self.path).absolute().parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path)
        try:
            prepare(conn)
            commit(conn, [], topics)
        except BaseException:
            conn.close()
            raise
        self._opened = _identity(self.path)
        return conn
