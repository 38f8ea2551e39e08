"""
The IRC wire format, sans-IO: a stream framer, the parser and the formatter.

An IRC connection reads through :class:`IrcLineBuffer` then :func:`parse`,
and writes through :func:`format`, or :func:`privmsg_bytes` for the one
message the room fan-out renders once per turn for all IRC members: apart
from the protocol object so that every limit is tested on plain bytes and
the hot path is one function that can be measured alone.

- Modern IRC client protocol, "Message format": ``[@tags] [:source]
  COMMAND params``; the command letters or three digits; one or more
  spaces between parameters; the trailing one after `` :``; at most 15,
  and (RFC 2812 §2.3.1, solanum alike; Ergo keeps them all) the 15th is
  the rest of the line.  A client's source is parsed; servers ignore it.
- 512 bytes with CRLF for all but the tags; IRCv3 message-tags: 4094 bytes
  of tag data from a client, 8191 bytes of tags in all.  A line over
  either is refused whole and the connection stays, as Ergo does and
  irctest expects (``417 ERR_INPUTTOOLONG``, nothing relayed); solanum cuts
  to 510 bytes instead, which can change what a command means.
- Tag values unescaped as IRCv3 says (an unknown escape stands for its
  character, a trailing lone backslash is dropped); for a repeated key the
  last value wins.  NUL is refused, as Ergo does (InspIRCd makes it a
  space).
- UTF-8 decoded with U+FFFD for invalid bytes, as on every front-end here
  (PROTOCOL.md, "Lines"); Ergo refuses invalid UTF-8 by default, solanum
  and InspIRCd pass bytes through.
- Framing: LF, CRLF or a bare CR end a line, as RFC 2812 ("CR and LF, as
  message separators"), solanum, ngircd and this server's line front-end
  have it (Ergo splits at LF and refuses a CR inside; InspIRCd drops CRs):
  so no CR travels inside a parameter to a client that would split there.
  Empty lines are skipped.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from typing import Final

from twisted_chat.transports.irc_message import IrcMessage

__all__ = [
    "BAD_CHARACTER",
    "BAD_COMMAND",
    "CLIENT_TAG_BYTES",
    "EMPTY",
    "INPUT_TOO_LONG",
    "MAX_BODY_BYTES",
    "MAX_LINE_BYTES",
    "MAX_PARAMS",
    "MAX_TAGS_BYTES",
    "NO_COMMAND",
    "TAGS_TOO_LONG",
    "TOO_LONG",
    "IrcLineBuffer",
    "IrcParseError",
    "TooLong",
    "cut_utf8",
    "escape_tag_value",
    "format",
    "format_tags",
    "parse",
    "privmsg_bytes",
    "unescape_tag_value",
]

#: The most bytes of a line without its tags, CRLF not counted (512 with it).
MAX_BODY_BYTES: Final = 510
#: The most bytes of tag data (between ``@`` and the space) a client may send.
CLIENT_TAG_BYTES: Final = 4094
#: The most bytes of a whole tags section, ``@`` and the space included.
MAX_TAGS_BYTES: Final = 8191
#: The framer's bound on one line, its line ending not counted.
MAX_LINE_BYTES: Final = MAX_TAGS_BYTES + MAX_BODY_BYTES
MAX_PARAMS: Final = 15

# IrcParseError.reason values.
EMPTY: Final = "empty"
INPUT_TOO_LONG: Final = "input-too-long"
TAGS_TOO_LONG: Final = "tags-too-long"
NO_COMMAND: Final = "no-command"
BAD_COMMAND: Final = "bad-command"
BAD_CHARACTER: Final = "bad-character"

_COMMAND = re.compile(r"[A-Za-z]+|[0-9]{3}", re.ASCII)
_FORBIDDEN = re.compile("[\x00\r\n]")
_TAG_ESCAPE = re.compile(r"\\(.?)", re.DOTALL)
_UNESCAPES: Final = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPES: Final = str.maketrans(
    {"\\": "\\\\", ";": "\\:", " ": "\\s", "\r": "\\r", "\n": "\\n"}
)
_BAD_TAG_KEY = re.compile("[\x00\r\n ;=]")
_NEWLINES = re.compile(b"\n+")
#: A refused line's place in the buffer: no real line is a lone CR.
_REFUSED_MARK: Final = b"\r"


class IrcParseError(ValueError):
    """
    A client line that is not a message; :attr:`reason` says why.

    The caller, as mainstream servers do: ignores :data:`EMPTY` and
    :data:`NO_COMMAND` (RFC 2812; Ergo calls both empty); answers ``417``
    to :data:`INPUT_TOO_LONG` and :data:`TAGS_TOO_LONG` (Ergo), ``421``
    naming :attr:`detail` to :data:`BAD_COMMAND` (solanum); drops
    :data:`BAD_CHARACTER` (Ergo disconnects).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def unescape_tag_value(value: str) -> str:
    """An IRCv3 tag value as sent (escaped) made plain again."""
    if "\\" not in value:
        return value
    return _TAG_ESCAPE.sub(lambda m: _UNESCAPES.get(m[1], m[1]), value)


def escape_tag_value(value: str) -> str:
    """A plain tag value in its wire form."""
    return value.translate(_ESCAPES)


def _parse_tags(raw: str) -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    for item in raw.split(";"):
        key, _, value = item.partition("=")
        if key:
            found.pop(key, None)  # the last occurrence wins, in its place
            found[key] = unescape_tag_value(value)
    return tuple(found.items())


def parse(line: bytes, *, tag_limit: int = CLIENT_TAG_BYTES) -> IrcMessage:
    """
    One line a client sent (without its line ending) as a message.

    :param tag_limit: the most bytes of tag data accepted; a client's
        is 4094, 8189 would be a server's.
    :raises IrcParseError: when the line is not a message, or is too long.
    """
    if not line or line.isspace():
        raise IrcParseError(EMPTY)
    if b"\x00" in line or b"\r" in line or b"\n" in line:
        raise IrcParseError(BAD_CHARACTER)
    tags: tuple[tuple[str, str], ...] = ()
    body = line
    if line[0] == 0x40:  # "@"
        space = line.find(b" ")
        size = (space if space >= 0 else len(line)) - 1
        if size > tag_limit:
            raise IrcParseError(TAGS_TOO_LONG)
        if space < 0:
            raise IrcParseError(NO_COMMAND)
        tags = _parse_tags(line[1:space].decode("utf-8", "replace"))
        body = line[space + 1 :]
    if len(body) > MAX_BODY_BYTES:
        raise IrcParseError(INPUT_TOO_LONG)
    text = body.decode("utf-8", "replace").lstrip(" ")
    source = None
    if text[:1] == ":":
        end = text.find(" ")
        if end < 0:
            raise IrcParseError(NO_COMMAND)
        source = text[1:end]
        text = text[end + 1 :].lstrip(" ")
    if not text:
        raise IrcParseError(NO_COMMAND)
    command, _, text = text.partition(" ")
    if _COMMAND.fullmatch(command) is None:
        raise IrcParseError(BAD_COMMAND, command)
    params: list[str] = []
    while text := text.lstrip(" "):
        if text[0] == ":":
            params.append(text[1:])
            break
        if len(params) == MAX_PARAMS - 1:
            params.append(text)  # RFC 2812: the 15th is the rest of the line
            break
        param, _, text = text.partition(" ")
        params.append(param)
    return IrcMessage(command.upper(), tuple(params), source, tags)


def format_tags(tags: Iterable[tuple[str, str]]) -> str:
    """
    Tags in their wire form, without the ``@`` and the space.

    For :func:`privmsg_bytes`, so that a turn's tags are escaped once for
    all the members who get them.

    :raises ValueError: for a key that could not be parsed back.
    """
    out = []
    for key, value in tags:
        if not key or _BAD_TAG_KEY.search(key) or "\x00" in value:
            raise ValueError(f"tag {key!r} cannot be sent")
        out.append(f"{key}={escape_tag_value(value)}" if value else key)
    return ";".join(out)


def cut_utf8(data: bytes, limit: int) -> bytes:
    """The longest prefix of UTF-8 ``data`` within ``limit`` bytes, never
    ending inside a character."""
    if len(data) <= limit:
        return data
    end = limit
    while end > 0 and data[end] & 0xC0 == 0x80:
        end -= 1
    return data[:end]


def _check_word(what: str, value: str) -> None:
    if not value or " " in value or value[0] == ":" or _FORBIDDEN.search(value):
        raise ValueError(f"{what} {value!r} cannot be sent")


def format(message: IrcMessage) -> bytes:  # noqa: A001
    """
    A message as the bytes of one line, CRLF included.

    The last parameter gets its ``:`` when it needs one (empty, a space,
    a leading ``:``), and is cut on a character boundary so that the line
    without its tags is at most 512 bytes; the others must be words.

    :raises ValueError: for what would not parse back the same (a
        non-last parameter empty, with a space or a leading ``:``; CR, LF
        or NUL; a bad command or source), or a head alone over the limit.
    """
    command = message.command
    if _COMMAND.fullmatch(command) is None:
        raise ValueError(f"command {command!r} cannot be sent")
    head = command
    if message.source is not None:
        _check_word("source", message.source)
        head = f":{message.source} {command}"
    last = b""
    colon = False
    if message.params:
        *middle, trailing = message.params
        for param in middle:
            _check_word("parameter", param)
        if _FORBIDDEN.search(trailing):
            raise ValueError(f"parameter {trailing!r} cannot be sent")
        colon = not trailing or " " in trailing or trailing[0] == ":"
        head = "".join(
            (head, *(f" {param}" for param in middle), " :" if colon else " ")
        )
        last = trailing.encode()
    encoded = head.encode()
    room = MAX_BODY_BYTES - len(encoded)
    if len(last) > room:
        if not colon:  # cut to nothing, the parameter must still be there
            encoded += b":"
            room -= 1
        if room < 0:
            raise ValueError("the message is too long before its last parameter")
        last = cut_utf8(last, room)
    line = b"".join((encoded, last, b"\r\n"))
    if message.tags:
        tags = format_tags(message.tags).encode()
        if len(tags) + 2 > MAX_TAGS_BYTES:
            raise ValueError("the tags are over 8191 bytes")
        line = b"".join((b"@", tags, b" ", line))
    return line


def privmsg_bytes(source: str, target: str, text: str, tags: str = "") -> bytes:
    """
    ``@tags :source PRIVMSG target :text`` CRLF, cut as :func:`format`
    cuts (512 bytes without the tags, in the text, on a character boundary).

    The hot path: one f-string, one encode, one length test, no checks.
    ``source`` and ``target`` are words, ``text`` has no CR, LF or NUL (the
    core's clean text and :func:`parse`'s parameters never have), ``tags``
    comes from :func:`format_tags` ("" for none).
    """
    line = f":{source} PRIVMSG {target} :{text}\r\n".encode()
    if len(line) > MAX_BODY_BYTES + 2:
        head = len(f":{source} PRIVMSG {target} :".encode())
        if head > MAX_BODY_BYTES:
            raise ValueError("the message is too long before its text")
        line = cut_utf8(line[:-2], MAX_BODY_BYTES) + b"\r\n"
    if tags:
        return b"".join((b"@", tags.encode(), b" ", line))
    return line


class TooLong(enum.Enum):
    """The framer's verdict on a line over its bound: refused, not kept."""

    TOO_LONG = "too-long"


#: The one "too long" verdict (answer it with ``417 ERR_INPUTTOOLONG``).
TOO_LONG: Final = TooLong.TOO_LONG


class IrcLineBuffer:
    """
    What an IRC connection has read and not yet handed on, as lines.

    The unfinished tail never passes :attr:`limit`: a line that grows past
    it is dropped as it arrives (one :data:`TOO_LONG` in its place, the
    rest discarded up to its line ending), so a mebibyte without a newline
    costs ``limit`` bytes.  Complete lines wait only while the caller does
    not take them (flood control: the transport stops reading meanwhile).

    ``LineIntake``'s shape (one ``bytes`` and an offset: a line costs a
    ``find`` and a slice, compaction copies only the tail) but not
    ``LineIntake``: that one filters telnet, cleans and decodes each line
    and judges one length, where IRC needs the raw bytes (``\\x01``,
    formatting codes) and two limits, which :func:`parse` applies.
    """

    __slots__ = ("_buffer", "_discarding", "_offset", "_tail", "limit")

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self.limit = limit
        self._buffer = b""
        self._offset = 0
        self._tail = 0
        self._discarding = False

    @property
    def held(self) -> int:
        """Bytes read and not handed on yet (for tests and stats)."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes) -> None:
        """Take bytes as read from the connection."""
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1 :]
        last = data.rfind(b"\n")
        self._tail = self._tail + len(data) if last < 0 else len(data) - last - 1
        if self._offset:
            self._buffer = self._buffer[self._offset :] + data
            self._offset = 0
        else:
            self._buffer += data
        if self._tail > self.limit:
            self._buffer = self._buffer[: len(self._buffer) - self._tail]
            self._buffer += _REFUSED_MARK + b"\n"
            self._tail = 0
            self._discarding = True

    def next_line(self) -> bytes | TooLong | None:
        """The next complete line (no line ending), :data:`TOO_LONG`, or
        None when no complete line is left."""
        buffer = self._buffer
        offset = self._offset
        while True:
            end = buffer.find(b"\n", offset)
            if end < 0:
                self._buffer = buffer[offset:]
                self._offset = 0
                return None
            if end == offset:
                run = _NEWLINES.match(buffer, offset)
                offset = run.end() if run is not None else end + 1
                continue
            self._offset = end + 1
            line = buffer[offset:end]
            if line == _REFUSED_MARK or len(line) > self.limit:
                return TOO_LONG
            return line

    def lines(self) -> Iterator[bytes | TooLong]:
        """Every complete line, lazily: a caller that stops (a flood-control
        wait, a ``QUIT``) leaves the rest here for later."""
        while (line := self.next_line()) is not None:
            yield line

    def drain(self) -> list[bytes | TooLong]:
        """Every complete line at once, split at C speed: the path for a
        caller that takes them all (flood control off or not reached)."""
        data = self._buffer[self._offset :] if self._offset else self._buffer
        self._offset = 0
        if b"\n" not in data:
            self._buffer = data
            return []
        parts = data.split(b"\n")
        self._buffer = parts.pop()
        limit = self.limit
        return [
            TOO_LONG if part == _REFUSED_MARK or len(part) > limit else part
            for part in parts
            if part
        ]
