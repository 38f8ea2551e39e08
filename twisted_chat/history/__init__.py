"""Room history: the stores behind `IMessageStore` (issue 6).

The chat core keeps the last messages of every room and each room's topic
here, so that a person who joins a room sees what was said before and so
that topics survive a restart. Two stores fulfil the same contract (one
test suite, ``tests/test_history_store.py``, runs against both):

- `MemoryStore`: dicts and deques; for unit tests and ``--history-db
  :memory:``. Nothing survives a restart.
- `SqliteStore`: the default; one SQLite file in the state directory, in WAL
  mode.

Every call is made from the reactor thread and none of them waits for
the disk to be written: `IMessageStore.append_lines` and
`IMessageStore.set_topic` hand the change to ONE writer, which commits in
batches, at least every ``flush_interval`` seconds (0.1 by default). The
store is handed its way to the writer, a link: a thread of the daemon
(``writer="thread"``) or a child process (``writer="process"``, the
daemon's choice), which keeps the writer's work off the reactor's GIL.
Reads (`IMessageStore.recent`) are answered from a small per-room tail
cache that is filled from SQLite on first use and then kept up to date by
``append_lines``, so a read never waits for a write either.

What the core hands over per reactor turn and room is the bytes its
members were sent, not a record per message: the fan-out made them
already, so history adds no work per message on the reactor thread. The
writer stores them as they are, a row per turn, and a read takes apart
the few turns it shows (`twisted_chat.core.lines.parse_room_lines`).

Crash bound: the writer commits what was queued at most ``flush_interval``
seconds (plus the time a commit takes) after it was queued. After ``kill
-9`` or a power cut, at most the messages of the last flush window are
missing; ``synchronous=NORMAL`` in WAL mode never corrupts the database, it
can only lose the last commits. With the writer process, ``kill -9`` of
the daemon alone loses even less: the child commits everything the daemon
had already written to its pipe (all but the current reactor turn). The
writer process runs at a lower CPU priority, so while every core is busy
it can fall behind; what it has not read by then is lost with the daemon
too (BENCHMARKS.md measures how far behind). A clean shutdown
(`IHistoryStore.stop`) loses nothing, unless the writer cannot finish
within ``STOP_TIMEOUT`` (stopped, or its file locked by another program);
then it is killed and what was lost is logged, so SIGTERM still ends the
daemon in time.

Bounds (issue 11): what waits for the writer is bounded in bytes
(``MAX_WAITING_BYTES``); past it, history rows are dropped, counted and
logged at most once a minute, and the chat goes on. Topics are read one at
a time when a room is made (`IMessageStore.topic`), never all at once; at
most ``MAX_TOPICS`` (the newest) are kept, and `prune` forgets the topic
of a room whose history is gone once it is older than the age limit.

Health: `IMessageStore.trouble` says why history is not being saved (the
writer could not start or died, it is behind and rows are dropped, a
commit failed, the file was removed); the daemon shows it in ``STATUS=``
and the store repeats it in the log once a minute while it lasts. A dead
writer process is started again after a back-off. A history file removed
or replaced while the daemon runs is noticed within seconds
(`twisted_chat.history.watch`): said loudly, and a new file is started at
the path, with the topics, so that history from then on is saved.

Start-up checks: `SqliteStore.open` creates the directory if it is missing
and fails with `HistoryStoreError` when the path cannot be written, the
file is not an SQLite database, is damaged, belongs to another program or
was written by a newer version. That error is meant to stop ``twistd`` at
start-up with a sentence a person can act on, instead of failing again and
again in the middle of a chat. An error while the daemon runs (disk full,
I/O error) is logged with `twisted.logger` and the chat goes on; the
messages of the failed batch are then missing from the file but not from
the in-memory tails. Backups are SQLite's own online backup of the live
file (README, "Backups").

The modules, in the order a line takes to the file:

- ``memory``: `IHistoryStore`, `MemoryStore`, and the per-room tails of
  `~twisted_chat.history.wire.Turn` records every store keeps;
- ``sqlite``: `SqliteStore`, the reactor side of the SQLite store;
  ``reader``: its tail caches and topic reads; ``side``: what waits for
  the writer (`~twisted_chat.history.side.Backlog`) and the interface of
  the link to it; ``health``: what is wrong with saving history now;
  ``files``: opening and checking the file at start-up;
- ``thread`` and ``process``: the two links to the writer;
- ``wire``: the ops, reports and frames between the store and its writer;
- the writer's side, standard library only: ``writer`` (the child
  process), ``writer_core`` (what every writer does with the ops),
  ``schema`` (tables, migrations, the SQL), ``rekey`` (room keys computed
  again) and ``watch`` (the file removed under the writer).

This package's ``__init__`` imports nothing, so that the writer child does
not load the daemon's side.
"""
