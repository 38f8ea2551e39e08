"""How fast is `SqliteStore.append_lines` on the calling (reactor) thread?

Usage: ``python bench/history_append.py [-n 100000] [--rooms 10] [--dir DIR]``

Appends N messages, one turn of one line each, to a fresh database and
reports appends per second as the caller sees them (a queue put: this is
what the chat core pays per room and reactor turn), then how long `stop`
took to commit the backlog (the writer thread's throughput). No reactor
runs: a stand-in's ``callFromThread`` queues the call for the main thread,
which runs it while it waits, so the numbers are free of reactor overhead.
"""

from __future__ import annotations

import argparse
import queue
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from twisted_chat.core.lines import room_message
from twisted_chat.history.sqlite import SqliteStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.interfaces import IReactorFromThreads


class _MainThreadCalls:
    """Just enough of IReactorFromThreads for `SqliteStore.stop`."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.calls.put(lambda: f(*args, **kw))

    def run_until(self, done: list[bool], timeout: float) -> None:
        """Run queued calls on this thread until ``done`` holds True."""
        deadline = time.monotonic() + timeout
        while not done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SystemExit(f"the writer did not finish within {timeout} s")
            try:
                self.calls.get(timeout=remaining)()
            except queue.Empty:
                continue


def run(n: int, rooms: int, directory: Path) -> None:
    """Append ``n`` messages spread over ``rooms`` rooms and print the rates."""
    reactor = _MainThreadCalls()
    store = SqliteStore.open(
        str(directory / "history.db"),
        reactor=cast("IReactorFromThreads", reactor),
    )
    store.start()
    turns = [
        (
            f"#room{i % rooms}",
            f"#Room{i % rooms}",
            float(i),
            room_message(f"#Room{i % rooms}", "bench", "x" * 60),
        )
        for i in range(n)
    ]
    for key in {turn[0] for turn in turns}:
        store.recent(key, 50)  # warm tails, as after people joined

    append_lines = store.append_lines
    started = time.perf_counter()
    for room_key, room, at, data in turns:
        append_lines(room_key, room, at, data)
    appended = time.perf_counter()

    done: list[bool] = []
    store.stop().addCallback(lambda _: done.append(True))
    reactor.run_until(done, timeout=600)
    committed = time.perf_counter()

    print(f"{n} appends over {rooms} rooms")
    print(f"append (caller):  {n / (appended - started):12,.0f} appends/s")
    print(f"stop (drain):     {committed - appended:12.3f} s after the last append")
    print(f"end to end:       {n / (committed - started):12,.0f} messages/s on disk")


def main() -> None:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="messages to append")
    parser.add_argument("--rooms", type=int, default=10, help="rooms to spread over")
    parser.add_argument("--dir", type=Path, help="where to put the database")
    args = parser.parse_args()
    if args.dir is not None:
        run(args.n, args.rooms, args.dir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(args.n, args.rooms, Path(tmp))


if __name__ == "__main__":
    main()
