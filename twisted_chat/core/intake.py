"""
What a stream connection has sent but the core has not seen yet.

Sans-IO framing and flood verdicts for one TCP (or TLS, or UNIX) connection:
bytes come in through :meth:`LineIntake.feed`, and :meth:`LineIntake.lines`
hands out the lines flood control lets through now.  The adapter
(:mod:`twisted_chat.transports.tcp`) stops reading while a verdict says wait, so a
paste stays here, whole, until the rate lets it through.

A held paste may be tens of thousands of lines; each wake-up lets a few
through.  So the unprocessed input is one ``bytes`` with a read offset: a
line let through costs one ``find`` and one slice of that line, never a
pass over what is still waiting, and what waits takes no more memory than
the bytes that were read.  The buffer is compacted once everything complete
in it has been handed out, which copies only the unfinished tail (at most
``--max-line`` bytes).  When nothing will be held back (flood control is
off, or the bucket can pay for every line that came in) the input is split
in one go instead, at C speed: that is the path ordinary chat and the
fan-out benchmarks take.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from twisted_chat.core.cleaning import TelnetFilter
from twisted_chat.core.flood import TokenBucket

#: Flood control charges this many bytes of telnet negotiation as one line.
TELNET_BYTES_PER_LINE = 64

_NEWLINES = re.compile(b"\n+")
_BLANK_RUNS = re.compile(b"\n{2,}")
_EPSILON = 1e-9


class LineIntake:
    """
    Framing (LF, CRLF or CR), ``--max-line`` and flood control for one stream.

    Empty lines are skipped a whole run at a time by one regular-expression
    call, so a paste of blank lines costs what reading it costs and nothing
    per line; a line of blanks that is not empty is a line and takes a token.

    :ivar bucket: the connection's flood-control bucket; None when flood
        control is off.
    :ivar wait: after :meth:`lines`, the seconds until flood control lets
        the next line through (0.0 when nothing complete is held back).
    """

    __slots__ = ("_buffer", "_discarding", "_offset", "_telnet", "bucket", "wait")

    def __init__(self, bucket: TokenBucket | None) -> None:
        self.bucket = bucket
        self.wait = 0.0
        self._buffer = b""
        self._offset = 0
        self._discarding = False
        self._telnet = TelnetFilter()

    @property
    def held(self) -> int:
        """Bytes received and not handed out yet (for tests and stats)."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes, now: float) -> float:
        """
        Take bytes as read from the connection.

        :return: seconds to stop reading for, when the telnet negotiation in
            ``data`` spent the bucket (else 0.0).
        """
        received = len(data)
        data = self._telnet.feed(data)
        delay = 0.0
        if len(data) < received and self.bucket is not None:
            # A stream of telnet commands makes no lines, so the line bucket
            # alone would let it burn the server's CPU for ever.
            delay = self.bucket.spend(
                now, (received - len(data)) / TELNET_BYTES_PER_LINE
            )
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return delay
            self._discarding = False
            data = data[end + 1 :]
        if self._offset:
            self._buffer = self._buffer[self._offset :] + data
            self._offset = 0
        else:
            self._buffer += data
        return delay

    def lines(self, now: float, limit: int) -> Iterator[bytes | None]:
        """
        Hand out the complete lines flood control lets through at ``now``.

        Yields each line without its line ending, or None for a line longer
        than ``limit`` bytes, which is refused and discarded (it takes no
        token).  An unfinished line longer than ``limit`` is refused too, and
        the rest of it is discarded as it arrives.  Stops early, with
        :attr:`wait` set, when the bucket is empty; the caller may also stop
        iterating at any point (a ``/quit``), and nothing is lost.
        """
        buffer = self._buffer
        offset = self._offset
        bucket = self.bucket
        was_held, self.wait = self.wait, 0.0
        if bucket is None:
            yield from self.all_lines(limit)
            return
        if not offset and not was_held:
            # Fresh input that the bucket can pay for whole (the usual case:
            # a person typing) goes the fast way, split in one go.  Never
            # for input already held back: counting it again at every
            # wake-up would cost what the offset saves.
            count = buffer.count(b"\n")
            if count and count <= bucket.level(now) + _EPSILON:
                complete = self.all_lines(limit)
                bucket.spend(now, len(complete) - complete.count(None))
                yield from complete
                return
        find = buffer.find
        while True:
            end = find(b"\n", offset)
            if end < 0:
                break
            if end == offset:
                run = _NEWLINES.match(buffer, offset)
                offset = run.end() if run is not None else end + 1
                continue
            if end - offset > limit:
                offset = self._offset = end + 1
                yield None
                continue
            delay = bucket.take(now)
            if delay:
                self.wait = delay
                self._offset = offset
                return
            line = buffer[offset:end]
            offset = self._offset = end + 1
            yield line
        self._offset = 0
        tail = len(buffer) - offset
        if tail > limit:
            self._buffer = b""
            self._discarding = True
            yield None
        elif offset:
            self._buffer = buffer[offset:]

    def all_lines(self, limit: int) -> Sequence[bytes | None]:
        """
        :meth:`lines` without flood control: every complete line, at once.

        A list, not an iterator: this is the path the fan-out benchmarks
        take, and a list costs less per line.  The caller may stop early;
        the rest is dropped with the connection.
        """
        data = self._buffer[self._offset :] if self._offset else self._buffer
        self._offset = 0
        parts: list[bytes] = []
        if b"\n" in data:
            if b"\n\n" in data:
                data = _BLANK_RUNS.sub(b"\n", data)
            parts = data.split(b"\n")
            data = parts.pop()
            if b"" in parts:
                parts = [line for line in parts if line]
        out: Sequence[bytes | None] = parts
        if parts and max(map(len, parts)) > limit:
            out = [None if len(line) > limit else line for line in parts]
        if len(data) > limit:
            data = b""
            self._discarding = True
            out = [*out, None]
        self._buffer = data
        return out
