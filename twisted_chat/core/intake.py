"""
The one way a client's bytes become lines the core acts on, for every transport.

Each transport hands its input here and acts only on what comes back: one
:data:`Verdict` per line, reached in one order whatever the transport
(``docs/protocol.md``, "Flood control"), in :func:`judge`:

1. framing: LF, CRLF or CR end a line, telnet bytes are removed, and empty
   lines are skipped for free;
2. ``--max-line``: a longer line is refused (:data:`REFUSE`) and costs no
   token, so a refused line never eats the credit of the good ones;
3. flood control: each line costs a token; with none left the verdict is a
   :class:`Wait` for that line and everything after it;
4. decoding (bad UTF-8 becomes U+FFFD) and cleaning
   (:func:`~twisted_chat.core.cleaning.clean_text`): the verdict is "go",
   the clean text itself; a line that is blank once clean has paid its
   token and gives no verdict.

What a verdict leads to is the transport's: TCP stops reading until a wait
is over, and the held lines stay here, whole; UDP drops the rest of the
datagram with ``! slow-down``.

There are two framings.  :class:`LineIntake` is a stream's: a line may
arrive in pieces, telnet state carries over from one read to the next, and
telnet negotiation is charged to the bucket (a stream of it makes no lines,
and reading must still pause).  :func:`frame_datagram` is a datagram's: each
datagram stands alone, with its own telnet state and no partial line
carried into the next, and its last line needs no line ending.  Its telnet
bytes are not charged: a datagram is read and framed whole whatever it
holds, so a charge would save no work.

:func:`reloaded_bucket` is how a SIGHUP reaches the bucket of a connection
or a session that already exists, for every transport alike.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final, TypeAlias

from attrs import frozen

from twisted_chat.core.cleaning import TelnetFilter, clean_text
from twisted_chat.core.errors import LineTooLong
from twisted_chat.core.flood import TokenBucket

if TYPE_CHECKING:
    from twisted_chat.core.settings import Settings

__all__ = [
    "REFUSE",
    "TELNET_BYTES_PER_LINE",
    "LineIntake",
    "Refuse",
    "Verdict",
    "Wait",
    "datagram_verdicts",
    "decode_line",
    "frame_datagram",
    "judge",
    "line_too_long",
    "reloaded_bucket",
]

#: Flood control charges this many bytes of telnet negotiation as one line.
TELNET_BYTES_PER_LINE = 64

_NEWLINES = re.compile(b"\n+")
_BLANK_RUNS = re.compile(b"\n{2,}")
#: Printable ASCII and LF: a read made only of these holds plain lines.
_PLAIN_BYTES: Final = bytes(range(0x20, 0x7F)) + b"\n"
_EPSILON = 1e-9


class Refuse(enum.Enum):
    """The verdict on a line over ``--max-line``: refused whole, no token spent."""

    REFUSE = "refuse"


#: The one "refuse" verdict.
REFUSE: Final = Refuse.REFUSE


@frozen
class Wait:
    """The verdict when the bucket is empty: this line and the rest must wait."""

    #: Seconds until the bucket has a token for the line again.
    delay: float


#: "Go" is the clean text itself (a ``str``), so the verdict on an ordinary
#: line costs no object beyond the text the core needs anyway.
Verdict: TypeAlias = str | Wait | Refuse


def decode_line(line: bytes) -> str:
    """A raw line (no line ending) as the clean text the core is given."""
    return clean_text(line.decode("utf-8", "replace"))


def judge(
    line: bytes, bucket: TokenBucket | None, now: float, limit: int
) -> Verdict | None:
    """
    The verdict on one framed, non-empty line: the order every transport keeps.

    :param bucket: the client's flood-control bucket, None when it is off.
    :return: None for a line that is blank once cleaned (it has paid).
    """
    if len(line) > limit:
        return REFUSE
    if bucket is not None:
        delay = bucket.take(now)
        if delay:
            return Wait(delay)
    text = decode_line(line)
    return text if text and not text.isspace() else None


def line_too_long(limit: int) -> LineTooLong:
    """The error a :data:`REFUSE` verdict is answered with, on every transport."""
    return LineTooLong(f"Lines are at most {limit} bytes; that one was not sent.")


def reloaded_bucket(
    bucket: TokenBucket | None, settings: Settings
) -> TokenBucket | None:
    """
    A client's bucket under reloaded settings, keeping the tokens it holds.

    The same bucket, retuned, when it stays on (a reload must not hand out
    a fresh burst); a full one when flood control has just been turned on;
    None when it is now off.
    """
    if not settings.flood_control:
        return None
    if bucket is None:
        return TokenBucket(settings.flood_burst, settings.flood_rate)
    bucket.burst = settings.flood_burst
    bucket.rate = settings.flood_rate
    return bucket


# -- a datagram ---------------------------------------------------------------


def frame_datagram(datagram: bytes) -> list[bytes]:
    """
    The lines of one datagram, without line endings (some may be empty).

    A fresh :class:`TelnetFilter` each time: no telnet command spans two
    datagrams, and the last piece is a line whether or not it has an ending.
    """
    data = TelnetFilter().feed(datagram)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data.split(b"\n")


def datagram_verdicts(
    framed: Iterable[bytes], bucket: TokenBucket | None, now: float, limit: int
) -> Iterator[Verdict]:
    """
    The verdicts on a datagram's lines (:func:`frame_datagram`), in order.

    Lazy: a line is judged (and its token taken) only when asked for, so a
    caller that stops after a ``/quit`` pays nothing for what follows.  A
    :class:`Wait` is the last verdict: the rest of the datagram is not judged.
    """
    for line in framed:
        if not line:
            continue
        verdict = judge(line, bucket, now, limit)
        if verdict is not None:
            yield verdict
            if isinstance(verdict, Wait):
                return


# -- a stream -----------------------------------------------------------------


class LineIntake:
    """
    What a stream connection has sent and the core has not seen yet.

    Bytes come in through :meth:`feed`, verdicts go out through
    :meth:`verdicts`; while a :class:`Wait` holds, the transport stops
    reading, so a paste stays here, whole, until the rate lets it through.

    A held paste may be tens of thousands of lines; each wake-up lets a few
    through.  So the unprocessed input is one ``bytes`` with a read offset:
    a line let through costs one ``find`` and one slice of that line, never
    a pass over what is still waiting, and what waits takes no more memory
    than the bytes that were read.  The buffer is compacted once everything
    complete in it has been handed out, which copies only the unfinished
    tail (at most ``--max-line`` bytes).  When nothing will be held back
    (flood control is off, or the bucket can pay for every line that came
    in) the input is split and judged in one go instead, at C speed: that
    is the path ordinary chat and the fan-out benchmarks take.

    Empty lines are skipped a whole run at a time by one regular-expression
    call, so a paste of blank lines costs what reading it costs and nothing
    per line; a line of blanks that is not empty is a line and takes a token.

    :ivar bucket: the connection's flood-control bucket; None when flood
        control is off.
    """

    __slots__ = ("_buffer", "_discarding", "_held", "_offset", "_telnet", "bucket")

    def __init__(self, bucket: TokenBucket | None) -> None:
        self.bucket = bucket
        self._held = False
        self._buffer = b""
        self._offset = 0
        self._discarding = False
        self._telnet = TelnetFilter()

    @property
    def held(self) -> int:
        """Bytes received and not handed out yet (for tests and stats)."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes, now: float) -> Wait | None:
        """
        Take bytes as read from the connection.

        :return: a :class:`Wait` when the telnet negotiation in ``data``
            spent the bucket, else None.
        """
        received = len(data)
        data = self._telnet.feed(data)
        wait = None
        if len(data) < received and self.bucket is not None:
            # A stream of telnet commands makes no lines, so the line bucket
            # alone would let it burn the server's CPU for ever.
            delay = self.bucket.spend(
                now, (received - len(data)) / TELNET_BYTES_PER_LINE
            )
            if delay:
                wait = Wait(delay)
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return wait
            self._discarding = False
            data = data[end + 1 :]
        if self._offset:
            self._buffer = self._buffer[self._offset :] + data
            self._offset = 0
        else:
            self._buffer += data
        return wait

    def verdicts(self, now: float, limit: int) -> Iterable[Verdict]:
        """
        The verdicts on the complete lines that came in, as :func:`judge` gives.

        An unfinished line longer than ``limit`` is refused too, and the
        rest of it is discarded as it arrives.  A :class:`Wait` is the last
        verdict; the lines from there on stay held for the next call.  The
        caller may stop early (a ``/quit``); the rest goes with the
        connection.
        """
        bucket = self.bucket
        was_held, self._held = self._held, False
        if bucket is None:
            return self._all(limit)[0]
        if not self._offset and not was_held:
            # Fresh input the bucket can pay for whole (the usual case: a
            # person typing) goes the fast way, judged in one go: the same
            # verdicts as one at a time, since no line can find the bucket
            # empty.  Never for input already held back: counting it again
            # at every wake-up would cost what the offset saves.
            count = self._buffer.count(b"\n")
            if count and count <= bucket.level(now) + _EPSILON:
                complete, paid = self._all(limit)
                bucket.spend(now, paid)
                return complete
        return self._one_at_a_time(bucket, now, limit)

    def _one_at_a_time(
        self, bucket: TokenBucket, now: float, limit: int
    ) -> Iterator[Verdict]:
        buffer = self._buffer
        offset = self._offset
        find = buffer.find
        while True:
            end = find(b"\n", offset)
            if end < 0:
                break
            if end == offset:
                run = _NEWLINES.match(buffer, offset)
                offset = run.end() if run is not None else end + 1
                continue
            verdict = judge(buffer[offset:end], bucket, now, limit)
            if isinstance(verdict, Wait):
                self._offset = offset
                self._held = True
                yield verdict
                return
            offset = self._offset = end + 1
            if verdict is not None:
                yield verdict
        self._offset = 0
        tail = len(buffer) - offset
        if tail > limit:
            self._buffer = b""
            self._discarding = True
            yield REFUSE
        elif offset:
            self._buffer = buffer[offset:]

    def _all(self, limit: int) -> tuple[list[Verdict], int]:
        """
        Every complete line judged at once, and the tokens they cost.

        A list, not an iterator, and the usual line judged inline: this is
        the path the fan-out benchmarks take, and it costs less per line.
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
        paid = len(parts)
        plain = _plain_lines(parts, limit) if paid > 1 else None
        if plain is not None:
            out: list[Verdict] = plain  # type: ignore[assignment]
            parts = []
        else:
            out = []
        append = out.append
        for line in parts:
            if len(line) > limit:
                append(REFUSE)
                paid -= 1
            elif (text := clean_text(line.decode("utf-8", "replace"))) and (
                not text.isspace()
            ):
                append(text)
        if len(data) > limit:
            data = b""
            self._discarding = True
            out.append(REFUSE)
        self._buffer = data
        return out, paid


def _plain_lines(parts: list[bytes], limit: int) -> list[str] | None:
    """
    ``parts`` as text when every line is printable ASCII, not blank and
    within ``limit`` (the usual chat read: what the line-by-line judging
    would give, each line its own clean text), checked by a few C loops
    over the whole read; None when any line needs judging one by one.
    """
    if b"\n".join(parts).translate(None, _PLAIN_BYTES):
        return None  # a byte that is not printable ASCII
    if max(map(len, parts)) > limit or any(map(bytes.isspace, parts)):
        return None
    return list(map(bytes.decode, parts))
