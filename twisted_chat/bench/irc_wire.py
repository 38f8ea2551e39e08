# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""What the load generator writes and counts when it speaks IRC (``--proto irc``).

The line mode's rule holds here too (:mod:`twisted_chat.bench.wire`): no
Python work per received line.  An IRC client reads big chunks and

* counts deliveries with ``bytearray.count(b" PRIVMSG #room :")``.  Every
  delivery of a room message reaches a member as ``:nick!user@host PRIVMSG
  #room :text`` (RFC 2812 3.3.1; Modern IRC client protocol, "PRIVMSG"), the
  source's length varies, so the mark is what follows it.  ``#room``
  followed by `` :`` cannot be a prefix of another room's mark, the mark
  cannot overlap itself, and nothing else a server sends to a member
  carries it (JOIN, PART, QUIT, NOTICE and numerics do not);
* counts the answers to its own ``PING`` by their token (the server answers
  ``:server PONG server :token``, "PING message" / "PONG message"), and only
  while one is unanswered, as the line mode counts ``* pong``;
* answers the server's ``PING`` (an IRC server pings idle clients and drops
  them when they stay silent).  A search runs on every chunk; the rare hit
  is checked and parsed on the spot, and a ``PING`` line split over two
  reads is completed from the next one.  Until ``001`` names the server the
  search is for ``PING ``; after it, for the server's name at the end of a
  line (servers ping with their own name: ``PING :name``, as ngircd,
  InspIRCd and ours do), because ``bytes.find`` skips through a chunk in
  steps of the needle's length: a 5-byte needle cost about 60 ns a
  delivery, as much as the delivery count itself, a 15-byte one 20 ns.
  Reads under 16 KiB are searched for ``PING `` as well (an idle client's
  reads are small), so a server pinging with another token is answered
  too, unless its ping lands in a big read (a client flat out for longer
  than the server's ping interval).

A sender writes ``PRIVMSG #room :<body>`` with the line mode's body (its
padding, sender index and ``time.monotonic_ns()``), ended with CRLF as RFC
2812 2.3 asks.  An IRC server does not echo a message to its sender unless
the client negotiated ``echo-message`` (IRCv3), which the bench never asks
for, so the expected counts are the line mode's.

Registration and joining are not on the hot path and are parsed line by
line (:func:`parse_line`): ``NICK``/``USER``, ``001``, ``JOIN``, ``366``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen

from twisted_chat.bench.wire import _sample, sent_latency_ns

if TYPE_CHECKING:
    from array import array

#: What the bench's own pings say: a long token, so that counting the
#: answers (``:server PONG server :token``) is a fast search.
PING_TOKEN = b"twisted-chat-bench"
PING = b"PING :" + PING_TOKEN + b"\r\n"
#: The answer to our ``PING``: the token ending a line.
PONG_MARK = PING_TOKEN + b"\r\n"
#: A server's ``PING``, with or without a ``:server`` prefix.
PING_MARK = b"PING "
#: A server name shorter than this is not worth a needle of its own.
_MIN_NAME_NEEDLE = 8
#: Reads shorter than this are searched for any ``PING`` too: a server that
#: pings with another token than its name is still answered while its
#: client idles, and a big read (a client flat out) costs no second search.
SMALL_READ = 16384
#: RFC 2812 2.3: a line is at most 512 bytes with its CRLF.
MAX_LINE = 512
#: The longest ``--size`` in IRC mode: the server prefixes each delivery with
#: ``:nick!user@host`` (up to about 150 bytes), and the whole must stay
#: within ``MAX_LINE`` or servers cut it.
MAX_IRC_SIZE = 350
#: Bytes of the stream kept across reads: enough to see the whole of a line
#: that straddles two reads (a ``PING`` to check), and the last words of a
#: server that closes the connection.
KEEP = MAX_LINE


def nick_for(run_id: str, index: int) -> str:
    """``b``, three characters of the run id, the client index in decimal: at
    most 9 characters (RFC 2812's limit, ngircd's default) up to 100,000
    clients.  Decimal, not base 36: a server that refuses confusable names
    (ours, PROTOCOL.md "Names") takes ``b1a2l`` and ``b1a21`` for one name."""
    return f"b{run_id[:3]}{index}"


def registration(nick: str) -> bytes:
    """``NICK`` and ``USER`` (Modern IRC, "Connection registration"): no
    ``CAP``, so the server sends plain lines without tags or echoes."""
    data = f"NICK {nick}\r\nUSER {nick} 0 * :twisted-chat bench\r\n"
    return data.encode("ascii")


def join_lines(room: str) -> bytes:
    """Join the room, then ping: the ``PONG`` follows the ``366`` (end of
    ``NAMES``) of a successful join, or the error numeric of a failed one."""
    return b"JOIN " + room.encode("utf-8") + b"\r\n" + PING


def privmsg_prefix(room: str) -> bytes:
    """What a sender puts before the line mode's message body."""
    return b"PRIVMSG " + room.encode("utf-8") + b" :"


def irc_message(prefix: bytes, body: bytes) -> bytes:
    """One ``PRIVMSG`` line: ``prefix``, the body without its LF, CRLF."""
    return prefix + body[:-1] + b"\r\n"


def delivery_mark(room: str) -> bytes:
    """What a delivery of a message said in ``room`` carries, once per line."""
    return b" PRIVMSG " + room.encode("utf-8") + b" :"


def irc_latency_ns(
    buf: bytes | bytearray, start: int, end: int, now_ns: int
) -> int | None:
    """Latency of the delivery in ``buf[start:end]``, or ``None`` when that line
    is not a bench ``PRIVMSG``."""
    if buf.find(b" PRIVMSG ", start, end) < 0:
        return None
    return sent_latency_ns(buf, start, end, now_ns)


@frozen
class IrcLine:
    """One parsed server line (setup only): ``:source COMMAND params``."""

    command: str
    params: tuple[str, ...]
    source: str | None = None


def parse_line(raw: bytes) -> IrcLine | None:
    """Parse one line without its line ending (RFC 2812 2.3.1; tags, which we
    never ask for, are skipped); ``None`` for an empty line."""
    text = raw.decode("utf-8", "replace").strip("\r\n")
    if text.startswith("@"):
        _, _, text = text.partition(" ")
    source = None
    if text.startswith(":"):
        source, _, text = text[1:].partition(" ")
    head, sep, trailing = text.partition(" :")
    words = head.split()
    if not words:
        return None
    params = tuple(words[1:]) + ((trailing,) if sep else ())
    return IrcLine(command=words[0].upper(), params=params, source=source)


def pong_for(line: bytes) -> bytes | None:
    """The ``PONG`` that answers ``line`` when it is a server's ``PING``."""
    parsed = parse_line(line)
    if parsed is None or parsed.command != "PING":
        return None
    token = parsed.params[-1] if parsed.params else ""
    return b"PONG :" + token.encode("utf-8") + b"\r\n"


class IrcStreamCounter:
    """Counts deliveries and pongs in one IRC stream and finds the server's pings.

    ``messages`` and ``pongs`` are running totals; :meth:`feed` returns the
    ``PONG`` lines to send back for the server's pings it completed.

    :param mark: :func:`delivery_mark` of the client's room.
    """

    __slots__ = ("mark", "messages", "partial", "ping_needle", "pongs", "tail")

    def __init__(self, mark: bytes) -> None:
        self.mark = mark
        #: What a chunk holding a server's PING must contain (see the module).
        self.ping_needle = PING_MARK
        self.messages = 0
        self.pongs = 0
        # The stream starts at the beginning of a line.
        self.tail = b"\n"
        # A server PING whose line has not ended yet (bounded by MAX_LINE).
        self.partial: bytes | None = None

    def feed(
        self,
        buf: bytes | bytearray,
        n: int,
        now_ns: int,
        samples: array[int] | None,
        pongs_due: bool = True,
    ) -> tuple[int, int, list[bytes]]:
        """Account for ``buf[:n]``: deliveries and pongs it completed, and the
        replies owed to the server's pings."""
        if n <= 0:
            return 0, 0, []
        mark = self.mark
        tail = self.tail
        m = len(mark) - 1
        head = bytes(buf[: min(n, KEEP)])
        # As in wire.StreamCounter: an occurrence across the seam lies in
        # the len(mark) - 1 bytes each side of it, and only there.
        messages = buf.count(mark, 0, n) + (tail[-m:] + head[:m]).count(mark)
        pongs = 0
        if pongs_due:
            p = len(PONG_MARK) - 1
            pongs = buf.count(PONG_MARK, 0, n) + (tail[-p:] + head[:p]).count(PONG_MARK)
        replies: list[bytes] = []
        needle = self.ping_needle
        q = len(needle) - 1
        if (
            self.partial is not None
            or buf.find(needle, 0, n) >= 0
            or needle in tail[-q:] + head[:q]
            or (n < SMALL_READ and needle is not PING_MARK and self._any_ping(buf, n))
        ):
            replies = self._pings(bytes(buf[:n]))
        if messages and samples is not None:
            _sample(
                buf, n, tail.endswith(b"\n"), now_ns, samples, latency_of=irc_latency_ns
            )
        self.tail = (tail + head)[-KEEP:] if n < KEEP else bytes(buf[n - KEEP : n])
        self.messages += messages
        self.pongs += pongs
        return messages, pongs, replies

    def _any_ping(self, buf: bytes | bytearray, n: int) -> bool:
        """Whether ``buf[:n]`` (or the seam before it) holds ``PING ``."""
        q = len(PING_MARK) - 1
        seam = self.tail[-q:] + bytes(buf[: min(n, q)])
        return buf.find(PING_MARK, 0, n) >= 0 or PING_MARK in seam

    def server_named(self, name: str) -> None:
        """The server called itself ``name`` (``001``'s source): from now on
        look for its pings by the name ending their line."""
        needle = name.encode("utf-8") + b"\r\n"
        if len(needle) >= _MIN_NAME_NEEDLE and b" " not in needle:
            self.ping_needle = needle

    def _pings(self, data: bytes) -> list[bytes]:
        """Replies to the ``PING`` lines that end in ``data`` (rare: parsed)."""
        replies: list[bytes] = []
        tail = self.tail
        # Lines ending before this (window offsets) were answered already.
        done = len(tail)
        if self.partial is not None:
            end = data.find(b"\n")
            if end < 0:
                self.partial = (self.partial + data)[:MAX_LINE]
                return replies
            reply = pong_for(self.partial + data[:end])
            self.partial = None
            if reply is not None:
                replies.append(reply)
            done += end + 1
        # The tail is kept so that a line ending here is whole in the window
        # (the needle may have been the server's name, at the line's end).
        window = tail + data
        at = window.find(PING_MARK)
        while at >= 0:
            start = window.rfind(b"\n", 0, at) + 1
            end = window.find(b"\n", at)
            before = window[start:at]
            # A command starts its line, after at most a ":server " prefix.
            if (end < 0 or end >= done) and (
                before == b"" or (before.startswith(b":") and before.count(b" ") == 1)
            ):
                if end < 0:
                    self.partial = window[start:][:MAX_LINE]
                    break
                reply = pong_for(window[start:end])
                if reply is not None:
                    replies.append(reply)
            if end < 0:
                break
            at = window.find(PING_MARK, end)
        return replies

    def last_words(self) -> str:
        """The last line the server sent, to explain why it closed on us."""
        lines = [x for x in self.tail.decode("utf-8", "replace").splitlines() if x]
        return f" (server said: {lines[-1]})" if lines else ""
