# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Remove what a hostile client could use against other people's terminals.

PROTOCOL.md promises that "no user can move another user's cursor, clear
their screen or ring their bell". Two layers keep that promise:

- :class:`TelnetFilter` works on the raw byte stream of one connection,
  *before* line framing. It removes telnet ``IAC`` command sequences (which
  ``telnet`` clients send on their own, and which may contain ``LF`` bytes
  that would otherwise split lines in odd places) and turns telnet's
  ``CR NUL`` into ``CR``. It keeps a few integers of state, so a command split
  across two TCP segments is still recognised, and never buffers data.
- :func:`clean_text` works on one decoded line. It removes ANSI/VT escape
  sequences whole (so ``ESC [31m`` does not leave a stray ``[31m``), then
  every remaining C0 control except TAB, DEL and every C1 control. What is
  left cannot start a terminal control sequence, whatever the input was.
  It also removes the invisible characters that change layout or direction
  (line and paragraph separators, bidi embeddings, overrides and isolates,
  zero-width characters, the BOM), so that no line can pass for two or
  show its text in another order than it was sent.

Both have a fast path for ordinary input that does one C-speed scan and
returns the argument itself, because they run on every chunk and every line.

Nothing here imports Twisted: the transports call these functions, and the
rules stay testable on plain values.
"""

from __future__ import annotations

import re
from typing import Final

from attrs import define, field

__all__ = [
    "MAX_SUBNEGOTIATION",
    "TelnetFilter",
    "clean_text",
]

# Telnet command bytes (RFC 854, RFC 855).
_SE: Final = 240
_SB: Final = 250
_WILL: Final = 251
_IAC: Final = 255
_CR: Final = 13
_NUL: Final = 0

_IAC_BYTE: Final = b"\xff"
_NUL_BYTE: Final = b"\x00"
_CR_NUL: Final = b"\r\x00"

#: The most bytes of one subnegotiation (counted after ``IAC SB``) the filter
#: will discard while waiting for ``IAC SE``. Real subnegotiations are tiny
#: (NAWS is 5 to 9 bytes, TTYPE and NEW-ENVIRON a few hundred at most), so a
#: longer one is a broken or hostile client; the filter then gives up on it
#: and treats what follows as ordinary data again. Without this limit one
#: unterminated ``IAC SB`` would make the server silently swallow everything
#: that client ever sends. The data after the limit then meets the ordinary
#: defences (line length limit, :func:`clean_text`).
MAX_SUBNEGOTIATION: Final = 1024

# One telnet command that needs no state, as the regex engine tokenises it
# left to right (so IAC DO IAC is an option, not an escape): IAC WILL, WONT,
# DO or DONT with its option; IAC x for every other x but SB, including IAC
# IAC (an escaped 0xFF data byte, which :func:`_unescape` keeps); and a whole
# subnegotiation that the state machine would also accept in full: no escaped
# IAC inside, and short enough that with its closing IAC it stays within
# MAX_SUBNEGOTIATION. Anything else is left to the state machine.
_COMMAND_PATTERN: Final = (
    rb"\xff(?:[\xfb-\xfe][\x00-\xff]|[\x00-\xf9\xff]|\xfa[^\xff]{0,%d}\xff\xf0)"
    % (MAX_SUBNEGOTIATION - 1)
)
_COMMAND_OR_ESCAPE: Final = re.compile(_COMMAND_PATTERN)
# The longest stretch of ordinary data and such commands. It stops before
# an IAC that needs the state machine: a long or odd subnegotiation, or a
# command cut off by the end of the chunk.
_STATELESS: Final = re.compile(rb"(?:[^\xff]+|%s)*" % _COMMAND_PATTERN)

# Filter states. Plain ints keep the per-connection state a few machine words.
_DATA: Final = 0  # ordinary data
_COMMAND: Final = 1  # just saw IAC; the next byte is a command
_OPTION: Final = 2  # saw IAC WILL/WONT/DO/DONT; the next byte is the option
_SUBNEG: Final = 3  # inside IAC SB ...; discarding
_SUBNEG_IAC: Final = 4  # inside a subnegotiation, just saw IAC


@define
class TelnetFilter:
    """Strip telnet protocol bytes from one connection's incoming stream.

    Feed every chunk the transport delivers, in order, and frame lines on
    the result. Feeding the stream in any chunking gives the same output as
    feeding it at once. Malformed input never raises: an ``IAC`` followed by
    a byte that is not a telnet command is dropped together with that byte.

    What is removed:

    - ``IAC cmd`` for cmd 240 to 249 (``SE``, ``NOP``, ``DM``, ``BRK``,
      ``IP``, ``AO``, ``AYT``, ``EC``, ``EL``, ``GA``), and ``IAC x`` for
      any x below 240;
    - ``IAC WILL|WONT|DO|DONT opt``;
    - ``IAC SB ... IAC SE``, discarded as it arrives (never buffered) and
      bounded by :data:`MAX_SUBNEGOTIATION`;
    - the ``NUL`` of ``CR NUL`` (telnet's way of sending a bare ``CR``).

    ``IAC IAC`` becomes one literal ``0xFF`` byte, which is not valid UTF-8
    and so later decodes to U+FFFD.

    This deliberately does not use ``twisted.conch.telnet``: that raises on
    an unknown byte after ``IAC``, and it negotiates options, which a chat
    server that also serves ``nc`` users has no need for.
    """

    _state: int = field(default=_DATA, init=False)
    # Whether the last data byte passed on was CR, so that a NUL at the start
    # of the next chunk is recognised as the second half of CR NUL.
    _after_cr: bool = field(default=False, init=False)
    # Bytes discarded so far in the current subnegotiation.
    _subneg_count: int = field(default=0, init=False)

    def feed(self, data: bytes) -> bytes:
        """Return ``data`` without telnet protocol bytes.

        :param data: the next chunk of the connection's byte stream.
        :return: the chunk's payload; ``data`` itself (not a copy) when it
            holds nothing to remove, which is the common case.
        """
        if (
            self._state == _DATA
            and _IAC_BYTE not in data
            # NUL rather than CR NUL: one byte is a memchr, and without any
            # NUL there is no CR NUL, even across the chunk boundary.
            and _NUL_BYTE not in data
        ):
            if data:
                self._after_cr = data[-1] == _CR
            return data
        return self._feed_slowly(data)

    def _feed_slowly(self, data: bytes) -> bytes:
        """Run the state machine over a chunk that has something to remove.

        Each step handles the current state at offset ``i`` and returns the
        next offset. Ordinary data with the commands that need no state is
        handled a whole stretch at a time (see ``_data``), and the content of
        a subnegotiation is skipped with ``bytes.find``, so the Python-level
        loop turns only at chunk edges and at unusual subnegotiations.
        """
        out: list[bytes] = []
        i = 0
        n = len(data)
        while i < n:
            state = self._state
            if state == _DATA:
                i = self._data(data, i, out)
            elif state == _COMMAND:
                i = self._command(data, i, out)
            elif state == _OPTION:
                self._state = _DATA
                i += 1
            elif state == _SUBNEG:
                i = self._subnegotiation(data, i)
            else:
                i = self._subnegotiation_iac(data, i)
        return b"".join(out)

    def _data(self, data: bytes, i: int, out: list[bytes]) -> int:
        """Pass on data up to the next IAC SB or cut-off command.

        The stretch is cleaned with C-speed regex and bytes methods, so a
        flood of ``IAC NOP`` or of commands between letters costs no loop
        turn per command. Commands are invisible to the CR NUL rule: CR,
        IAC NOP, NUL is CR, as if the command had never been sent.
        """
        stateless = _STATELESS.match(data, i)
        end = i if stateless is None else stateless.end()  # it matches b"" too
        if end > i:
            stretch = data[i:end]
            if b"\xff\xff" in stretch:  # maybe an escaped IAC: check each
                stretch = _COMMAND_OR_ESCAPE.sub(_unescape, stretch)
            elif _IAC_BYTE in stretch:  # commands only: a literal is faster
                stretch = _COMMAND_OR_ESCAPE.sub(b"", stretch)
            if stretch:
                # The CR NUL flag is about the stream before the collapse, so
                # take it first: CR NUL NUL keeps its second NUL.
                after_cr = stretch[-1] == _CR
                if self._after_cr and stretch[0] == _NUL:
                    stretch = stretch[1:]
                out.append(stretch.replace(_CR_NUL, b"\r"))
                self._after_cr = after_cr
        if end == len(data):
            return end
        self._state = _COMMAND  # data[end] is IAC
        return end + 1

    def _command(self, data: bytes, i: int, out: list[bytes]) -> int:
        """Act on the byte after IAC."""
        byte = data[i]
        if byte == _IAC:
            out.append(_IAC_BYTE)
            self._after_cr = False
            self._state = _DATA
        elif byte >= _WILL:  # WILL, WONT, DO, DONT: an option byte follows
            self._state = _OPTION
        elif byte == _SB:
            self._state = _SUBNEG
            self._subneg_count = 0
        else:  # SE, NOP, GA, ..., or not a command at all: drop the pair
            self._state = _DATA
        return i + 1

    def _subnegotiation(self, data: bytes, i: int) -> int:
        """Discard subnegotiation content up to the next IAC or the limit."""
        stop = min(len(data), i + MAX_SUBNEGOTIATION - self._subneg_count)
        end = data.find(_IAC_BYTE, i, stop)
        if end == -1:
            self._subneg_count += stop - i
            if self._subneg_count >= MAX_SUBNEGOTIATION:
                self._end_subnegotiation()
            return stop
        self._subneg_count += end - i + 1
        self._state = _SUBNEG_IAC
        return end + 1

    def _subnegotiation_iac(self, data: bytes, i: int) -> int:
        """Act on the byte after IAC inside a subnegotiation."""
        byte = data[i]
        if byte == _SE:
            self._end_subnegotiation()
            return i + 1
        if byte == _IAC:  # an escaped 0xFF inside the subnegotiation
            self._subneg_count += 1
            if self._subneg_count >= MAX_SUBNEGOTIATION:
                self._end_subnegotiation()
            else:
                self._state = _SUBNEG
            return i + 1
        # IAC followed by anything else cannot occur inside a well-formed
        # subnegotiation: take it as a missing IAC SE and read this byte,
        # unconsumed, as the command after IAC.
        self._end_subnegotiation()
        self._state = _COMMAND
        return i

    def _end_subnegotiation(self) -> None:
        """Go back to ordinary data after a subnegotiation, finished or not."""
        self._state = _DATA
        self._subneg_count = 0


def _unescape(match: re.Match[bytes]) -> bytes:
    """Replace one telnet command with nothing, or IAC IAC with 0xFF."""
    return _IAC_BYTE if match[0] == b"\xff\xff" else b""


# Escape sequences, as terminals parse them (ECMA-48, and the DEC/xterm
# practice described at vt100.net). Each alternative removes a sequence whole
# so that no parameter text is left behind. Exact agreement with any one
# terminal is not needed for safety: after this, every control character is
# removed anyway, and without ESC or a C1 control nothing can start a
# sequence. These patterns only decide how much of the surrounding junk goes.
_ESCAPE_SEQUENCE: Final = re.compile(
    # Control strings: OSC (ESC ] / U+009D, including OSC 52, which sets the
    # clipboard), DCS (ESC P / U+0090), SOS (ESC X / U+0098), PM (ESC ^ /
    # U+009E), APC (ESC _ / U+009F). They end at ST (ESC \ or U+009C) or BEL
    # (xterm's OSC terminator). Another ESC ends the string too, without
    # being consumed, as terminals abort a string there; an unterminated
    # string runs to the end of the line.
    "(?:\x1b[]PX^_]|[\x90\x98\x9d\x9e\x9f])"
    "[^\x07\x1b\x9c]*"
    "(?:\x07|\x9c|\x1b\\\\|(?=\x1b)|\\Z)"
    # CSI (ESC [ / U+009B): parameter bytes, intermediate bytes, final byte.
    # A missing final byte still removes the parameters.
    "|(?:\x1b\\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    # Other ESC sequences: ESC c (reset), ESC 7 / ESC 8 (save/restore
    # cursor), ESC ( B (character set), ESC # 8 (screen alignment), and a
    # lone ESC.
    "|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)

# C0 except TAB, DEL, C1: every escape sequence starts with ESC or a C1
# control, so without one of these there is no sequence to parse.
_CONTROL_CHARS: Final = "\x00-\x08\x0a-\x1f\x7f-\x9f"
_CONTROL: Final = re.compile(f"[{_CONTROL_CHARS}]")

# Invisible characters that change layout or direction, always removed:
# LINE SEPARATOR and PARAGRAPH SEPARATOR (a client that splits lines on them
# shows the rest as a new line, say a forged server notice); the bidi
# embeddings and overrides U+202A-U+202E and isolates U+2066-U+2069 (they
# reorder what follows, "Trojan Source" style); ZERO WIDTH SPACE, WORD
# JOINER and the invisible operators U+2060-U+2064, the deprecated format
# controls U+206A-U+206F, and the BOM / ZERO WIDTH NO-BREAK SPACE U+FEFF.
# The bidi *marks* (LRM, RLM, ALM) stay: they only settle the direction of
# neighbouring punctuation, which mixed Hebrew or Arabic text needs, and
# cannot reorder a run of text.
_INVISIBLE_CHARS: Final = (
    "\u2028\u2029\u202a-\u202e\u2066-\u2069\u200b\u2060-\u2064\u206a-\u206f\ufeff"
)
_JOINERS: Final = "\u200c\u200d"  # ZERO WIDTH NON-JOINER, ZERO WIDTH JOINER
_REMOVED: Final = re.compile(f"[{_CONTROL_CHARS}{_INVISIBLE_CHARS}]")

# The joiners are zero-width too, but they carry meaning in two places, and
# there they stay: between two letters of a script whose letters join or
# form conjuncts (ZWNJ is part of Persian spelling, ZWJ and ZWNJ choose
# Indic conjunct forms), and ZWJ between two emoji (a family, a profession,
# a flag: without it one picture falls apart into several). Anywhere else
# (between Latin letters, at either end, next to a space, doubled) a joiner
# does nothing visible but hide a word from a filter or a search, so it
# goes. The script list covers the scripts that use them in practice.
_JOINING_SCRIPTS: Final = (
    "\u0600-\u08ff"  # Arabic, Syriac, Thaana, NKo, Samaritan, Mandaic, ...
    "\u0900-\u0dff"  # Devanagari, Bengali, ..., Malayalam, Sinhala
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u18af"  # Khmer, Mongolian
    "\ua8e0-\ua8ff"  # Devanagari Extended
    "\ufb50-\ufdff\ufe70-\ufefe"  # Arabic presentation forms
)
_EMOJI: Final = (
    "\u2190-\u21ff\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff"
)
_STRAY_JOINER: Final = re.compile(
    # A joiner, unless a joining-script letter is on both sides of it ...
    f"[{_JOINERS}](?:(?<![{_JOINING_SCRIPTS}].)|(?![{_JOINING_SCRIPTS}]))"
    # ... or it is a ZWJ with an emoji (or emoji presentation) before it and
    # an emoji after it. Written so that the pattern starts with the joiner,
    # which lets the regex engine skip straight to the candidates.
    f"(?!(?<=[{_EMOJI}\ufe0f]\u200d)(?=[{_EMOJI}]))"
)


def clean_text(text: str) -> str:
    """Return one decoded line without terminal controls or layout tricks.

    Removes ANSI/VT escape sequences (7-bit and 8-bit forms), then every
    C0 control except TAB, DEL and every C1 control, then the invisible
    characters that change layout or direction (U+2028, U+2029, bidi
    embeddings, overrides and isolates, zero-width space, word joiner, BOM),
    and the zero-width joiners except where a script or an emoji sequence
    needs them (see ``_STRAY_JOINER``). Everything else, including emoji
    sequences, CJK, combining marks and U+FFFD, is kept exactly. The result
    contains no control character but TAB, and
    ``clean_text(clean_text(s)) == clean_text(s)``.

    :param text: one line, already decoded (invalid UTF-8 replaced).
    :return: the cleaned line; ``text`` itself when it has nothing to
        remove, which is the common case.
    """
    # str.isprintable is false for every character removed here (they are
    # all in categories Cc, Cf, Zl or Zp) and is twice as fast as a regex
    # scan, so most lines cost one C loop. Lines with a TAB, a non-ASCII
    # space or an emoji ZWJ sequence take the scans below and usually come
    # back unchanged from them.
    if text.isprintable():
        return text
    if text.isascii():
        # O(1) in CPython. ASCII holds no invisible character and no joiner,
        # so a TAB or a control costs what it did before they were removed.
        if _CONTROL.search(text) is None:
            return text
        return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))
    first = _REMOVED.search(text)
    if first is not None:
        if _CONTROL.search(text, first.start()) is not None:
            text = _ESCAPE_SEQUENCE.sub("", text)
        text = _REMOVED.sub("", text)
    if "\u200d" in text or "\u200c" in text:
        text = _STRAY_JOINER.sub("", text)
    return text
