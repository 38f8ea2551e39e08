# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""What the load generator writes and how it reads the server's stream cheaply.

The generator must not be the bottleneck, so nothing here does Python work
per received line.  A receiver reads big chunks into one reusable buffer and

* counts room messages with ``bytearray.count(b"\\n[#room] <")``: a message
  said in the client's room, and nothing else, starts its line so
  (PROTOCOL.md's ``[#room] <nick> text``; notices start with ``*``, errors
  with ``!``, private messages with ``[PM]``, actions with ``[#room] *``).
  The long mark is also what makes the count fast: the search skips ahead
  by up to its length, much faster than a search for ``b"\\n[#"``
  (BENCHMARKS.md, "The load generator's own ceiling");
* counts ``* pong`` replies the same way, and only while a ``/ping`` is
  unanswered.  Barriers are built on them: the server answers ``/ping``
  after everything it did before, whatever number of notice lines it chose
  to send;
* samples latency from at most two lines a chunk, the oldest and the newest
  complete line, whose tail carries the send time.

A pattern can straddle two reads; :class:`StreamCounter` keeps the last few
bytes of the stream and checks the seam separately, so each occurrence is
counted exactly once however the stream is split.

A message body is ``xxxx...x <sender> <send-ns>``: padding up to the requested
size, then the sender's client index and the sender's ``time.monotonic_ns()``
(CLOCK_MONOTONIC is one clock for all processes of a Linux machine, so
receivers in other worker processes can subtract it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from array import array
    from collections.abc import Callable

#: A room message at the start of a line, in any room.
MESSAGE_MARK = b"\n[#"
#: The answer to ``/ping`` (PROTOCOL.md), a whole line (server lines end in
#: CRLF, and a client cannot put a CR in a line).  Not "\n* pong\r\n": that
#: would overlap itself in "\n* pong\r\n* pong\r\n", and ``count`` skips
#: overlapping matches.  No mark may begin and end with the same bytes.
PONG_MARK = b"\n* pong\r"
PING = b"/ping\n"
#: The first line of the UDP challenge (PROTOCOL.md, "UDP").
HELLO_PREFIX = b"* Reply /hello "
#: Latencies outside this range are not ours (a stray number in a line's tail).
_MAX_LATENCY_NS = 3600 * 10**9


def encode_message(sender: int, sent_ns: int, size: int) -> bytes:
    """One client line of exactly ``size`` bytes (with its LF) when ``size`` allows.

    The sender and send time come last so that a receiver finds them in the
    line's tail, after whatever prefix the server adds.
    """
    tail = b" %d %d\n" % (sender, sent_ns)
    return b"x" * max(1, size - len(tail)) + tail


def message_mark(room: str) -> bytes:
    """What starts a line that carries a message said in ``room``.

    Like every mark here it begins with LF and holds no other LF, so its
    occurrences never overlap (``count`` would miss overlapping ones).
    """
    return b"\n[" + room.encode("utf-8") + b"] <"


def line_latency_ns(
    buf: bytes | bytearray, start: int, end: int, now_ns: int
) -> int | None:
    """Latency of the room message in ``buf[start:end]`` (``end`` at its LF), or
    ``None`` when that line is not one of ours."""
    if not buf.startswith(b"[#", start):
        return None
    return sent_latency_ns(buf, start, end, now_ns)


def sent_latency_ns(
    buf: bytes | bytearray, start: int, end: int, now_ns: int
) -> int | None:
    """Latency of a delivery whose line ends in the sender's monotonic ns
    (the bench's body, whatever the protocol around it)."""
    space = buf.rfind(b" ", start, end)
    if space < 0:
        return None
    try:
        sent = int(buf[space + 1 : end])  # int() ignores the trailing CR
    except ValueError:
        return None
    latency = now_ns - sent
    if 0 <= latency < _MAX_LATENCY_NS:
        return latency
    return None


class StreamCounter:
    """Counts room messages and pongs in one TCP stream, fed in arbitrary chunks.

    ``messages`` and ``pongs`` are running totals.  ``feed`` appends latency
    samples (nanoseconds) to the ``samples`` array it is given.

    :param mark: what starts a message line; :func:`message_mark` of the
        client's room, or any room's message by default.
    """

    __slots__ = ("keep", "mark", "messages", "pongs", "tail")

    def __init__(self, mark: bytes = MESSAGE_MARK) -> None:
        self.mark = mark
        # How much of the stream to remember: all of a mark but its last byte.
        self.keep = max(len(mark), len(PONG_MARK)) - 1
        self.messages = 0
        self.pongs = 0
        # The stream starts at the beginning of a line.
        self.tail = b"\n"

    def feed(
        self,
        buf: bytes | bytearray,
        n: int,
        now_ns: int,
        samples: array[int] | None,
        pongs_due: bool = True,
    ) -> tuple[int, int]:
        """Account for ``buf[:n]``; return how many messages and pongs it completed.

        :param pongs_due: whether a ``/ping`` is unanswered; if not, no pong
            can be in the chunk and the search for one is skipped.
        """
        if n <= 0:
            return 0, 0
        mark = self.mark
        keep = self.keep
        tail = self.tail
        head = bytes(buf[: min(n, keep)])
        # An occurrence that straddles the seam lies entirely in the window
        # of len(mark) - 1 bytes each side, and one that does not cannot fit
        # in it, so nothing is counted twice.
        m = len(mark) - 1
        messages = buf.count(mark, 0, n) + (tail[-m:] + head[:m]).count(mark)
        pongs = 0
        if pongs_due:
            p = len(PONG_MARK) - 1
            pongs = buf.count(PONG_MARK, 0, n) + (tail[-p:] + head[:p]).count(PONG_MARK)
        if messages and samples is not None:
            _sample(buf, n, tail.endswith(b"\n"), now_ns, samples)
        self.tail = (tail + head)[-keep:] if n < keep else bytes(buf[n - keep : n])
        self.messages += messages
        self.pongs += pongs
        return messages, pongs


def _sample(
    buf: bytes | bytearray,
    n: int,
    starts_line: bool,
    now_ns: int,
    samples: array[int],
    *,
    latency_of: Callable[[bytes | bytearray, int, int, int], int | None] = (
        line_latency_ns
    ),
) -> None:
    """Sample the oldest and the newest complete line of this chunk.

    All lines of a chunk arrive at once, so the oldest has the chunk's largest
    latency and the newest its smallest: the two bound the rest.
    ``latency_of`` reads one line (the IRC mode passes its own).
    """
    first_end = buf.find(b"\n", 0, n)
    if first_end < 0:
        return
    if starts_line:
        first_start = 0
    else:
        first_start = first_end + 1
        first_end = buf.find(b"\n", first_start, n)
        if first_end < 0:
            return
    latency = latency_of(buf, first_start, first_end, now_ns)
    if latency is not None:
        samples.append(latency)
    last_end = buf.rfind(b"\n", 0, n)
    if last_end == first_end:
        return
    last_start = buf.rfind(b"\n", 0, last_end) + 1
    latency = latency_of(buf, last_start, last_end, now_ns)
    if latency is not None:
        samples.append(latency)


def parse_hello_challenge(datagram: bytes | bytearray) -> bytes | None:
    """The token of a UDP challenge ``* Reply /hello TOKEN to chat over UDP.``,
    or ``None`` when ``datagram`` is something else."""
    if not datagram.startswith(HELLO_PREFIX):
        return None
    rest = bytes(datagram[len(HELLO_PREFIX) :]).split(None, 1)
    if not rest:
        return None
    return rest[0]


def hello_reply(token: bytes) -> bytes:
    """The datagram that proves we receive at our address and starts the session."""
    return b"/hello " + token + b"\n"


def setup_lines(room: str) -> bytes:
    """What a client sends once registered: join its room, leave the default one
    (so that thousands of bench clients do not all sit in ``#lobby`` telling
    each other who joined), then ``/ping`` as the barrier."""
    return b"/join " + room.encode("utf-8") + b"\n/part #lobby\n" + PING
