"""
The one-line password prompt of a bare ``/login NAME`` (or ``/oper NAME``).

PROTOCOL.md: the server answers ``* Password:`` and takes the next line as
the password, shows it to nobody, and turns a telnet client's local echo off
for that line (IAC WILL ECHO, then IAC WONT ECHO).  Telnet on a port other
than 23 does not negotiate first, so the bytes go out without waiting for
the client to speak telnet; a telnet client answers IAC DO ECHO / IAC DONT
ECHO, which :class:`~twisted_chat.core.cleaning.TelnetFilter` swallows.

What each client sees.  The prompt is a whole line (``* Password:`` CRLF),
like every line the server sends, so a message that arrives while the
prompt waits is a line of its own, not glued to the prompt, and a line
reader (a bot, a script) is never left without its CRLF.

- telnet: echo goes off; the password is typed on the empty line under the
  prompt and shows nothing, Enter included, so the cursor is still at the
  start of that empty line when IAC WONT ECHO comes: the next line is
  written there, and no blank line is left.
- nc (no telnet): the three IAC bytes are no text.  0x01 is a C0 control
  that terminals do not draw; 0xFF and 0xFB are not UTF-8, and many UTF-8
  terminals draw U+FFFD for each.  So each IAC sequence is followed by
  ``CR`` and overwritten: before the prompt by the prompt itself, after the
  password by two spaces and another ``CR``.  The nc user's own terminal
  echoes what they type (the server cannot stop that), on their own screen
  only, and then sees the next line as usual.

A taken line comes back as a :class:`Secret`, whose repr never shows it, so
a log line, a notice or a traceback that formats it cannot leak it.  The
caller must not log the line, store it in history, or echo it.
"""

from __future__ import annotations

from typing import Final

from attrs import define, field, frozen

from .lines import CRLF

__all__ = [
    "IAC_WILL_ECHO",
    "IAC_WONT_ECHO",
    "Secret",
    "SecretPrompt",
    "Taken",
    "after_bytes",
    "prompt_bytes",
]

#: IAC WILL ECHO: "the server echoes", so the telnet client stops echoing.
IAC_WILL_ECHO: Final = bytes((255, 251, 1))
#: IAC WONT ECHO: the client echoes again.
IAC_WONT_ECHO: Final = bytes((255, 252, 1))
#: After an IAC sequence: back to column 0, over anything a terminal drew.
_HIDE_BEFORE_TEXT: Final = b"\r"
_HIDE_ALONE: Final = b"\r  \r"


@frozen(repr=False)
class Secret:
    """A password as typed; its repr and str never show it."""

    value: str

    def __repr__(self) -> str:
        return "Secret(<hidden>)"

    __str__ = __repr__


@frozen
class Taken:
    """The secret line, what it was asked for, and the bytes to send now."""

    for_what: str
    secret: Secret
    send: bytes


def prompt_bytes(text: str = "Password:", telnet: bool = True) -> bytes:
    """``* Password:`` as a line, after IAC WILL ECHO for a stream client."""
    line = b"* " + text.encode("utf-8", "replace") + CRLF
    return IAC_WILL_ECHO + _HIDE_BEFORE_TEXT + line if telnet else line


def after_bytes(telnet: bool = True) -> bytes:
    """What follows the secret line: IAC WONT ECHO, hidden (or nothing)."""
    return IAC_WONT_ECHO + _HIDE_ALONE if telnet else b""


@define
class SecretPrompt:
    """
    Whether one connection's next line is a secret, and for what.

    :param telnet: whether to send the echo control (stream transports);
        False for line clients (UDP, IRC, web), which get the prompt line
        only.
    """

    telnet: bool = True
    _for_what: str | None = field(default=None, init=False)

    @property
    def waiting(self) -> bool:
        """Whether the next line is taken as a secret."""
        return self._for_what is not None

    @property
    def for_what(self) -> str | None:
        """What the pending secret is for (``login alice``), or None."""
        return self._for_what

    def start(self, for_what: str, text: str = "Password:") -> bytes:
        """
        Take the next line as a secret for ``for_what``; the bytes to send.

        A second start before the line replaces the first (the echo is off
        already, so the control is not sent again).
        """
        again = self._for_what is not None
        self._for_what = for_what
        return prompt_bytes(text, self.telnet and not again)

    def take(self, line: str) -> Taken:
        """
        The line as the secret, and the bytes that turn the echo back on.

        :raises RuntimeError: no secret was asked for (check :attr:`waiting`).
        """
        for_what = self._for_what
        if for_what is None:
            raise RuntimeError("no secret was asked for")
        self._for_what = None
        return Taken(for_what, Secret(line), after_bytes(self.telnet))

    def cancel(self) -> bytes:
        """Stop waiting (the connection is closing, say); the bytes to send."""
        if self._for_what is None:
            return b""
        self._for_what = None
        return after_bytes(self.telnet)
