"""Redis's wire format (RESP2), fast, for the link's protocols (issue 19).

Why not txredisapi's own parsing: it reads a reply's header in line mode and
its data in raw mode, and each switch back to line mode with data left over
pauses the transport and goes through ``callLater(0)``: one reactor turn per
bulk string. The subscriber of a busy cluster receives thousands of messages
a second in a few reads; at one reply a turn it fell behind (2,200 messages
a second on this machine, against 5,300 published) and its PING timed out
behind the backlog. `ReplyReader` takes every complete reply out of the
bytes it is fed, in one go, and keeps its place inside an unfinished array
so a long reply arriving in many reads is not parsed again from its start.
`CommandProtocol.send` writes a command without the Deferred, timer and
argument checks txredisapi's ``execute_command`` spends on each. Together,
on this machine: 37,000-56,000 messages a second through the subscriber
(was 2,200), PUBLISH 49,000-70,000 (5,300), pipelined SET 23,000 (4,800).

Values are what txredisapi's protocol hands on with ``charset=None``:
bulk strings bytes, nil None, integers int, status replies str, errors
``txredisapi.ResponseError`` instances, arrays lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import txredisapi  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred

__all__ = ["CommandProtocol", "ReplyReader", "SubscriberProtocol", "encode"]

_INCOMPLETE = object()
_OPENED = object()


class ReplyReader:
    """Feed it bytes; it returns the replies they complete, in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0
        #: The arrays being filled: [elements still due, elements so far].
        self._open: list[tuple[list[int], list[Any]]] = []

    def feed(self, data: bytes) -> list[Any]:
        """The replies completed by ``data`` (possibly none)."""
        self._buffer += data
        replies: list[Any] = []
        while True:
            value = self._element()
            if value is _INCOMPLETE:
                break
            if value is _OPENED:
                continue
            while self._open:
                due, items = self._open[-1]
                items.append(value)
                due[0] -= 1
                if due[0]:
                    break
                self._open.pop()
                value = items
            else:
                replies.append(value)
        del self._buffer[: self._pos]
        self._pos = 0
        return replies

    def _element(self) -> Any:
        """One element from the buffer, or _INCOMPLETE, or _OPENED (an array)."""
        buffer, pos = self._buffer, self._pos
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            return _INCOMPLETE
        kind, line = buffer[pos], bytes(buffer[pos + 1 : end])
        if kind == ord("$"):
            size = int(line)
            if size < 0:
                self._pos = end + 2
                return None
            if len(buffer) < end + 4 + size:
                return _INCOMPLETE
            self._pos = end + 4 + size
            return bytes(buffer[end + 2 : end + 2 + size])
        self._pos = end + 2
        if kind == ord("*"):
            count = int(line)
            if count < 0:
                return None
            if count == 0:
                return []
            self._open.append(([count], []))
            return _OPENED
        if kind == ord(":"):
            return int(line)
        if kind == ord("+"):
            return line.decode("utf-8", "replace")
        if kind == ord("-"):
            return txredisapi.ResponseError(line.decode("utf-8", "replace"))
        raise ValueError(f"not a Redis reply: {bytes(buffer[pos:end])[:40]!r}")


def encode(args: Sequence[object]) -> bytes:
    """One command in RESP: str as UTF-8, bytes as they are, int and float."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            raise TypeError(
                f"a Redis argument must be str, bytes, int or float: {arg!r}"
            )
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read(proto: Any, data: bytes) -> None:
    """Both protocols' dataReceived: every complete reply, at once."""
    try:
        replies = proto.reader.feed(data)
    except ValueError as error:
        proto.factory.connectionError(f"bad reply: {error}")
        proto.transport.abortConnection()
        return
    for reply in replies:
        proto.replyReceived(reply)


def _raise_error(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


class CommandProtocol(txredisapi.BaseRedisProtocol):  # type: ignore[misc]
    """txredisapi's protocol (AUTH, SELECT, queue of replies), read faster."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.reader = ReplyReader()

    dataReceived = _read

    def send(self, args: Sequence[object]) -> Deferred[Any]:
        """Write one command; its reply (an error reply as an errback)."""
        if not self.connected:
            raise txredisapi.ConnectionError("Not connected")
        self.transport.write(encode(args))
        return self.replyQueue.get().addCallback(_raise_error)  # type: ignore[no-any-return]

    def send_quiet(self, args: Sequence[object]) -> None:
        """Write one command whose reply nobody waits for (PUBLISH)."""
        if self.connected:
            self.transport.write(encode(args))
            self.replyQueue.get()


class SubscriberProtocol(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    """txredisapi's subscriber, read faster; messages to ``on_message``."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.reader = ReplyReader()
        self.on_message: Callable[[bytes, bytes], None] = lambda _c, _d: None
        #: Reads so far: the link's sign of life while messages flow.
        self.heard = 0

    def dataReceived(self, data: bytes) -> None:
        self.heard += 1
        _read(self, data)

    def replyReceived(self, reply: Any) -> None:
        """A message straight to ``on_message``; the rest to txredisapi's."""
        if type(reply) is list and len(reply) == 3 and reply[0] == b"message":
            self.on_message(reply[1], reply[2])
        else:
            super().replyReceived(reply)
