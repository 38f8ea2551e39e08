"""What the re-key of an old history file costs at start-up (issue 11).

Usage::

    python bench/history_rekey.py [--python PATH] [--turns 500000]
        [--rooms 2000] [--runs 5]

Builds a history file as the release before the TR39 room keys wrote it
(schema version 2, keys NFKC + case folding only): ``--turns`` turns over
``--rooms`` rooms, one in three with a look-alike letter (``#games3``,
whose key changed), and a topic per room. Then, ``--runs`` times, copies it
and times ``SqliteStore.open`` twice in a fresh interpreter of ``--python``
(its checkout is the one imported: ``/work/baseline/.venv/bin/python`` for
the code before issue 11): the first open (upgrade and re-key) and the
second (nothing to do). Prints the medians in milliseconds. Nothing listens
on any port; the files are in a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

# Run by --python, with its checkout's twisted_chat: one open, timed.
_OPEN = """
import sys, time
from twisted.internet import reactor
from twisted_chat.history.sqlite import SqliteStore
start = time.perf_counter()
SqliteStore.open(sys.argv[1], reactor=reactor)
print((time.perf_counter() - start) * 1000)
"""


def old_key(name: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def build(path: Path, turns: int, rooms: int) -> None:
    names = [f"#games{n}" if n % 3 == 0 else f"#lobby_{n}" for n in range(rooms)]
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(
        """
        CREATE TABLE turns (first_id INTEGER PRIMARY KEY, room_key TEXT NOT NULL,
            room TEXT NOT NULL, at REAL NOT NULL, count INTEGER NOT NULL,
            lines TEXT NOT NULL);
        CREATE INDEX turns_room ON turns (room_key, first_id);
        CREATE TABLE topics (room_key TEXT PRIMARY KEY, room TEXT NOT NULL,
            text TEXT NOT NULL, set_by TEXT NOT NULL, set_at REAL NOT NULL);
        CREATE INDEX topics_set_at ON topics (set_at);
        """
    )
    with conn:
        conn.executemany(
            "INSERT INTO turns VALUES (?, ?, ?, ?, 1, ?)",
            (
                (n, old_key(room), room, 1e9 + n, f"[{room}] <al> message {n}\r\n")
                for n in range(1, turns + 1)
                for room in (names[n % rooms],)
            ),
        )
        conn.executemany(
            "INSERT INTO topics VALUES (?, ?, 'a topic', 'al', ?)",
            ((old_key(room), room, 1e9 + i) for i, room in enumerate(names)),
        )
    conn.execute("PRAGMA user_version = 2")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def time_open(python: str, path: Path) -> float:
    checkout = Path(python).absolute().parent.parent.parent  # <tree>/.venv/bin
    out = subprocess.run(  # noqa: S603 - our own interpreter, our arguments
        [python, "-c", _OPEN, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=checkout,
        timeout=600,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--turns", type=int, default=500_000)
    parser.add_argument("--rooms", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pristine = Path(tmp) / "pristine.db"
        build(pristine, args.turns, args.rooms)
        first: list[float] = []
        second: list[float] = []
        for run in range(args.runs):
            path = Path(tmp) / f"run{run}.db"
            shutil.copyfile(pristine, path)
            first.append(time_open(args.python, path))
            second.append(time_open(args.python, path))
        size = pristine.stat().st_size / 2**20
        print(f"python: {args.python}")
        print(f"file: {args.turns} turns, {args.rooms} rooms, {size:.1f} MiB")
        print(f"first open (upgrade): median {statistics.median(first):.0f} ms")
        print(f"second open: median {statistics.median(second):.0f} ms")


if __name__ == "__main__":
    main()
