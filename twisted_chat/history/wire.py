"""The wire format between the store and its writer: ops, reports, frames.

Both ends of the link speak it: the reactor side
(`twisted_chat.history.sqlite.SqliteStore`) sends ops and reads reports,
the writer (`twisted_chat.history.writer_core.WriterCore`, on a thread or
in the child process of `twisted_chat.history.writer`) does the opposite.
Every op and report is a record (a named tuple) that says its ``kind``
(the ``OP_*`` and ``REPORT_*`` constants). A thread link hands the records
over as they are; the process link sends them in frames as plain tuples
whose first item is the kind (`encode_ops`, `encode_report`,
`FrameDecoder`), because `marshal` takes only plain tuples, and both ends
rebuild the records (`decode_ops`, `decode_report`). The format is private
to this package and both ends ship together.

Daemon to writer, the ops:

- `Turn` (`OP_LINES`): what was said in a room in one reactor turn,
  ``data`` holding the lines exactly as the room's members were sent them
  (`twisted_chat.core.lines`), numbered from ``first_id`` on, all said at
  ``at``; the writer stores them as they are, one row a turn. The same
  record is what the stores keep in their tails and backlog, so that
  handing a turn over costs the reactor no second record;
- `Topic`: a topic; its ``id`` is taken from the message ids, so that its
  acknowledgement lets the daemon count it off what waits for the writer;
- `Prune`: apply retention as of ``now``;
- `Marker` `OP_FLUSH`: commit everything before it now, then acknowledge
  ``seq``; `OP_STOP`: the same, then close the database (and the child
  exits); `OP_REOPEN`: the daemon has closed its reader of a lost file
  (see `FILE_LOST`), make the new one now.

Writer to daemon, the reports:

- `Committed`: everything up to message ``last_id`` (`NO_ID`: no message
  in the batch) is finished with, committed or failed, and so is every
  marker up to ``seq`` (`NO_SEQ`: none);
- `Failed`: a commit failed; ``problem`` is the sentence to log,
  ``details`` the writer's traceback (at most one a minute);
- `FileChanged`: the history file was removed or replaced (`FILE_LOST`:
  the writer closed it; the daemon closes its reader and answers
  `OP_REOPEN`), a new one is ready (`FILE_READY`: the daemon opens its
  reader again), or it cannot be made (`FILE_FAILED`).

A frame, in both directions, is a 4-byte big-endian length and a
`marshal` blob: from the daemon a list of ops (a few milliseconds of
changes, so that the reactor pays one pipe write for many turns), from the
writer one report. End of file on the child's stdin means the same as
`OP_STOP`.

Standard library only: the writer child imports it.
"""

from __future__ import annotations

import marshal
import struct
from typing import Any, Final, NamedTuple

from twisted_chat.history.schema import TopicRow

__all__ = [
    "FILE_FAILED",
    "FILE_LOST",
    "FILE_READY",
    "MARKER_OPS",
    "NO_ID",
    "NO_SEQ",
    "OP_FLUSH",
    "OP_LINES",
    "OP_PRUNE",
    "OP_REOPEN",
    "OP_STOP",
    "OP_TOPIC",
    "REPORT_COMMITTED",
    "REPORT_ERROR",
    "REPORT_FILE",
    "URGENT_OPS",
    "Committed",
    "Failed",
    "FileChanged",
    "FrameDecoder",
    "Marker",
    "Op",
    "Prune",
    "Report",
    "Topic",
    "Turn",
    "decode_ops",
    "decode_report",
    "encode_frame",
    "encode_ops",
    "encode_report",
]

OP_LINES: Final = "l"
OP_TOPIC: Final = "t"
OP_PRUNE: Final = "p"
OP_FLUSH: Final = "f"
OP_STOP: Final = "s"
OP_REOPEN: Final = "r"
REPORT_COMMITTED: Final = "c"
REPORT_ERROR: Final = "e"
REPORT_FILE: Final = "w"

#: The step a `FileChanged` report says.
FILE_FAILED: Final = 0
FILE_LOST: Final = 1
FILE_READY: Final = 2

#: Ops that carry a ``seq`` to acknowledge.
MARKER_OPS: Final = (OP_FLUSH, OP_STOP)
#: Ops the writer acts on at once, without waiting for the rest of a batch.
URGENT_OPS: Final = (OP_FLUSH, OP_STOP, OP_REOPEN)

#: ``seq`` of a marker that asks for no acknowledgement (`OP_REOPEN`), and
#: of a `Committed` that acknowledges no marker.
NO_SEQ: Final = -1
#: ``last_id`` of a `Committed` whose batch held no message; ``id`` of a
#: `Topic` that counts nothing off the backlog.
NO_ID: Final = -1


class Turn(NamedTuple):
    """`OP_LINES`: what a room said in one reactor turn.

    ``data`` is as `IMessageStore.append_lines` takes it; its
    ``line_count`` lines are the messages ``first_id``, ``first_id + 1``,
    ... (the memory store numbers nothing: 0).
    """

    first_id: int
    room_key: str
    room: str
    at: float
    data: bytes
    line_count: int

    @property
    def kind(self) -> str:
        """`OP_LINES`, as the other ops say their kind."""
        return OP_LINES


class Topic(NamedTuple):
    """`OP_TOPIC`: a topic to store; ``id`` counts it off the backlog."""

    kind: str
    row: TopicRow
    id: int = NO_ID


class Prune(NamedTuple):
    """`OP_PRUNE`: apply retention as of ``now``."""

    kind: str
    now: float


class Marker(NamedTuple):
    """`OP_FLUSH`, `OP_STOP` or `OP_REOPEN`, acknowledged up to ``seq``."""

    kind: str
    seq: int = NO_SEQ


Op = Turn | Topic | Prune | Marker


class Committed(NamedTuple):
    """`REPORT_COMMITTED`: done with messages to ``last_id``, markers to ``seq``."""

    kind: str
    last_id: int
    seq: int


class Failed(NamedTuple):
    """`REPORT_ERROR`: a commit failed."""

    kind: str
    problem: str
    details: str


class FileChanged(NamedTuple):
    """`REPORT_FILE`: the file went away, or its successor is ready or failed."""

    kind: str
    text: str
    step: int


Report = Committed | Failed | FileChanged

_OPS: Final[dict[str, Any]] = {
    OP_PRUNE: Prune,
    OP_FLUSH: Marker,
    OP_STOP: Marker,
    OP_REOPEN: Marker,
}
_REPORTS: Final[dict[str, Any]] = {
    REPORT_COMMITTED: Committed,
    REPORT_ERROR: Failed,
    REPORT_FILE: FileChanged,
}

_LENGTH: Final = struct.Struct(">I")


def encode_frame(value: Any) -> bytes:
    """One frame: the length, then the `marshal` blob of ``value``."""
    blob = marshal.dumps(value)
    return _LENGTH.pack(len(blob)) + blob


def encode_ops(ops: list[Op]) -> bytes:
    """The frame of ``ops``, as the plain tuples `marshal` takes."""
    return encode_frame([_plain(op) for op in ops])


def _plain(op: Op) -> tuple[Any, ...]:
    if isinstance(op, Turn):
        return (OP_LINES, *op[:5])  # the writer counts the lines again
    if isinstance(op, Topic):
        return (OP_TOPIC, tuple(op.row), op.id)
    return tuple(op)


def encode_report(report: Report) -> bytes:
    """The frame of one report, as the plain tuple `marshal` takes."""
    return encode_frame(tuple(report))


def decode_ops(values: list[tuple[Any, ...]]) -> list[Op]:
    """The ops of one decoded frame, as records again."""
    ops: list[Op] = []
    for value in values:
        if value[0] == OP_LINES:
            _, first_id, room_key, room, at, data = value
            ops.append(Turn(first_id, room_key, room, at, data, data.count(b"\n")))
        elif value[0] == OP_TOPIC:
            ops.append(Topic(value[0], TopicRow._make(value[1]), *value[2:]))
        else:
            ops.append(_OPS[value[0]]._make(value))
    return ops


def decode_report(value: tuple[Any, ...]) -> Report:
    """A decoded report frame as its record; KeyError for an unknown kind."""
    record: Report = _REPORTS[value[0]]._make(value)
    return record


class FrameDecoder:
    """Split a byte stream into the values of its frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return the values of the frames it completed."""
        buffer = self._buffer
        buffer += data
        values: list[Any] = []
        start = 0
        size = _LENGTH.size
        while len(buffer) - start >= size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            end = start + size + length
            if end > len(buffer):
                break
            # Only our own end of the pipe writes these frames.
            values.append(marshal.loads(buffer[start + size : end]))  # noqa: S302
            start = end
        if start:
            del buffer[:start]
        return values
