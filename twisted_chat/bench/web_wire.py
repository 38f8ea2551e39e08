# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""What the load generator writes and counts when it speaks WebSocket (``--proto web``).

The line mode's rule holds here too (:mod:`twisted_chat.bench.wire`): no
Python work per received frame.  A web client reads big chunks of the raw
TCP stream, frame headers and all, and

* counts deliveries with ``bytearray.count`` of :func:`delivery_mark`,
  ``{"type":"message","room":"#room","nick":"``: the head of the JSON object
  every delivery of a message said in the client's room carries, once, as
  the server's WebFormat renders it (``json.dumps`` with ``separators=(",",
  ":")``, keys in the order ``type``, ``room``, ``nick``, ``text``,
  ``time``).  The room's closing quote keeps ``#bench-x-1`` from matching
  ``#bench-x-10``; JSON escapes every ``"`` inside a string, so no text or
  nick can hold the mark; ``history`` frames hold ``{"type":"message",
  "nick":...}`` without a ``room`` and do not match; the mark's only ``{``
  is its first byte, so it cannot overlap itself, and it is plain ASCII, so
  it cannot run into a frame header (whose first byte, ``0x81``, is not).
  The mark is about 50 bytes: ``count`` skips through a chunk in steps of
  up to its length, so a long mark is also a fast one;
* counts the answers to its own ``/ping`` by :data:`PONG_MARK`, the
  ``notice`` frame the server turns ``* pong`` into, and only while one is
  unanswered, as the line mode counts ``* pong``;
* samples latency from the first and the last delivery of a chunk: the
  body's last word is the sender's ``time.monotonic_ns()``, just before
  the quote that ends the ``text`` string.

A sender writes one masked text frame per message (RFC 6455 5.3: every
client frame is masked), the payload the line mode's body without its LF.
A batch repeats one frame, masked once: the masking key is random per
batch, not per frame, which the server cannot tell (it only unmasks).

The handshake (RFC 6455 4.1) and setup are not on the hot path: the
upgrade response is read whole and checked (``101``,
``Sec-WebSocket-Accept``), and setup frames are split one by one
(:class:`FrameReader`) and read as JSON.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from array import array

#: RFC 6455 1.3: what the server appends to our key before hashing it.
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The WebSocket's path on a twisted-chat ``--web`` listener.
WS_PATH = "/ws"
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
#: What the server makes of ``* pong``, the answer to ``/ping``: its own
#: frame, so the count is exact (the mark cannot overlap itself: its only
#: ``{`` is its first byte).
PONG_MARK = b'{"type":"notice","text":"pong"}'
#: Bytes of the stream kept across reads: all of the longest mark a room
#: name allows, and the last words of a server that closes on us.
KEEP = 512
#: The most an HTTP upgrade response may take before its blank line.
MAX_RESPONSE_HEAD = 8192
#: Payload bytes of one setup frame kept for reading (``hello``, ``join``,
#: ``error`` and the pong are far shorter); the rest of a bigger frame (the
#: ``members`` of a room of thousands) is skipped, never held.
MAX_SETUP_FRAME = 4096
#: Latencies outside this range are not ours.
_MAX_LATENCY_NS = 3600 * 10**9
_TEXT_KEY = b'"text":"'


def new_key() -> bytes:
    """A ``Sec-WebSocket-Key``: 16 random bytes, base64 (RFC 6455 4.1)."""
    return base64.b64encode(os.urandom(16))


def accept_for(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def host_header(address: tuple[object, ...]) -> str:
    """``host:port`` of a socket address, IPv6 in brackets (RFC 7230 5.4)."""
    host, port = str(address[0]), int(str(address[1]))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def handshake_request(host: str, key: bytes) -> bytes:
    """The upgrade request.  ``Origin`` is the page's own (``http://`` and the
    ``Host``), which the server accepts by default; no extension is
    offered, so frames arrive uncompressed and countable."""
    return (
        f"GET {WS_PATH} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode('ascii')}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"Origin: http://{host}\r\n"
        "\r\n"
    ).encode("ascii")


def check_response(head: bytes, key: bytes) -> str | None:
    """Why the upgrade response ``head`` (up to its blank line) is not a
    WebSocket for ``key``, or ``None`` when it is."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].strip()
    parts = status.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or parts[1] != "101":
        return f"server refused the upgrade: {status or 'no status line'}"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        return "server answered 101 without Upgrade: websocket"
    if headers.get("sec-websocket-accept", "").encode("latin-1") != accept_for(key):
        return "server answered with a wrong Sec-WebSocket-Accept"
    if headers.get("sec-websocket-extensions"):
        return (
            "server chose an extension nobody offered: "
            + (headers["sec-websocket-extensions"])
        )
    return None


def mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``key`` repeated (RFC 6455 5.3), in one
    big-integer operation rather than a loop over bytes."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")
    return value.to_bytes(n, "big")


def client_frame(
    payload: bytes, opcode: int = OP_TEXT, key: bytes | None = None
) -> bytes:
    """One final, masked client frame (RFC 6455 5.2)."""
    key = os.urandom(4) if key is None else key
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + key + mask(payload, key)


def text_frame(line: bytes) -> bytes:
    """The frame carrying one protocol line (its LF, if any, dropped)."""
    return client_frame(line[:-1] if line.endswith(b"\n") else line)


#: Our ``/ping``, masked with a fixed key: it is sent often and never secret.
PING = client_frame(b"/ping", key=b"\x6b\x1e\x2a\x53")


def close_frame(code: int = 1000) -> bytes:
    """A close frame with ``code`` (RFC 6455 5.5.1)."""
    return client_frame(code.to_bytes(2, "big"), OP_CLOSE)


def delivery_mark(room: str) -> bytes:
    """What a delivery of a message said in ``room`` carries, once per frame."""
    return b'{"type":"message","room":"' + room.encode("utf-8") + b'","nick":"'


def web_latency_ns(buf: bytes | bytearray, at: int, n: int, now_ns: int) -> int | None:
    """Latency of the delivery whose mark starts at ``buf[at]``, or ``None``
    when its ``text`` does not end within ``buf[:n]`` with a send time."""
    start = buf.find(_TEXT_KEY, at, n)
    if start < 0:
        return None
    start += len(_TEXT_KEY)
    # Bench text has no quote or backslash: the next quote ends the string.
    end = buf.find(b'"', start, n)
    if end < 0:
        return None
    space = buf.rfind(b" ", start, end)
    if space < 0:
        return None
    try:
        sent = int(buf[space + 1 : end])
    except ValueError:
        return None
    latency = now_ns - sent
    if 0 <= latency < _MAX_LATENCY_NS:
        return latency
    return None


class WebStreamCounter:
    """Counts deliveries and pongs in one server-to-client WebSocket stream,
    fed in arbitrary chunks; ``messages`` and ``pongs`` are running totals.

    :param mark: :func:`delivery_mark` of the client's room.
    """

    __slots__ = ("mark", "messages", "pongs", "tail")

    def __init__(self, mark: bytes) -> None:
        if len(mark) > KEEP:
            raise ValueError("room name too long for the kept tail")
        self.mark = mark
        self.messages = 0
        self.pongs = 0
        self.tail = b""

    def feed(
        self,
        buf: bytes | bytearray,
        n: int,
        now_ns: int,
        samples: array[int] | None,
        pongs_due: bool = True,
    ) -> tuple[int, int]:
        """Account for ``buf[:n]``; return the deliveries and pongs it completed.

        :param pongs_due: whether a ``/ping`` is unanswered; if not, the
            search for a pong is skipped.
        """
        if n <= 0:
            return 0, 0
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
        if messages and samples is not None:
            self._sample(buf, n, now_ns, samples)
        self.tail = (tail + head)[-KEEP:] if n < KEEP else bytes(buf[n - KEEP : n])
        self.messages += messages
        self.pongs += pongs
        return messages, pongs

    def _sample(
        self, buf: bytes | bytearray, n: int, now_ns: int, samples: array[int]
    ) -> None:
        """The first and the last delivery that begin in this chunk: all of a
        chunk arrives at once, so the two bound the latencies of the rest."""
        mark = self.mark
        first = buf.find(mark, 0, n)
        if first < 0:
            return
        latency = web_latency_ns(buf, first, n, now_ns)
        if latency is not None:
            samples.append(latency)
        last = buf.rfind(mark, 0, n)
        if last != first:
            latency = web_latency_ns(buf, last, n, now_ns)
            if latency is not None:
                samples.append(latency)

    def last_words(self) -> str:
        """The last JSON frame the server sent, to explain why it closed on us."""
        tail = self.tail
        at = tail.rfind(b'{"type":')
        if at < 0:
            return ""
        end = tail.find(b"}", at)
        said = tail[at : end + 1 if end >= 0 else len(tail)]
        return f" (server said: {said.decode('utf-8', 'replace')})"


class FrameReader:
    """Splits the server's frames during setup, holding at most
    ``MAX_SETUP_FRAME`` payload bytes of one frame and its header.

    :meth:`next_frame` gives ``(opcode, payload)`` for each frame whose
    first ``MAX_SETUP_FRAME`` bytes (or all) have arrived, in order; the
    rest of a longer frame is dropped as it comes.  :meth:`rest` hands over
    what follows the last frame taken, at a frame boundary.
    """

    __slots__ = ("pending", "skip")

    def __init__(self) -> None:
        self.pending = bytearray()
        # Bytes still to drop of a frame too long to keep.
        self.skip = 0

    def feed(self, data: bytes | bytearray) -> None:
        if self.skip:
            dropped = min(self.skip, len(data))
            self.skip -= dropped
            data = data[dropped:]
        self.pending += data

    def next_frame(self) -> tuple[int, bytes] | None:
        """The next frame, or ``None`` until more has arrived.

        :raises ValueError: for a masked server frame (RFC 6455 5.1 forbids it).
        """
        pending = self.pending
        if self.skip or len(pending) < 2:
            return None
        opcode = pending[0] & 0x0F
        if pending[1] & 0x80:
            raise ValueError("the server sent a masked frame")
        size = pending[1] & 0x7F
        at = 2
        if size == 126:
            at = 4
        elif size == 127:
            at = 10
        if len(pending) < at:
            return None
        if at > 2:
            size = int.from_bytes(pending[2:at], "big")
        kept = min(size, MAX_SETUP_FRAME)
        if len(pending) < at + kept:
            return None
        payload = bytes(pending[at : at + kept])
        whole = at + size
        if len(pending) >= whole:
            del pending[:whole]
        else:
            self.skip = whole - len(pending)
            pending.clear()
        return opcode, payload

    def rest(self) -> bytes:
        """What has arrived after the frames taken (the stream from here on)."""
        rest = bytes(self.pending)
        self.pending = bytearray()
        return rest
