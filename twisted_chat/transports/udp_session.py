# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""
One UDP session as the core sees it, and the datagram wire format.

The wire format (PROTOCOL.md, "UDP"): a datagram holds one or more lines
(framed by :func:`twisted_chat.core.intake.frame_datagram`); every server line
goes back as a datagram of its own, ending in CRLF and at most
:data:`MAX_PAYLOAD` bytes (a longer line is cut with ``…`` on a character
boundary).  From an address that has no session yet only a ``/hello TOKEN``
line means anything (:func:`hello_token`).

A :class:`UdpSession` is one proven address (:mod:`twisted_chat.transports.udp` owns
the socket, the handshake and the session table).  It also keeps the reply
budget: the datagrams one received datagram may still draw back
(:data:`MAX_REPLY_DATAGRAMS`), so that a datagram forged with a session's
address cannot turn a few bytes into a flood at that address.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Protocol

from attrs import define
from zope.interface import implementer

from twisted_chat.core import commands, lines
from twisted_chat.core.errors import ChatError, SlowDown
from twisted_chat.core.flood import TokenBucket
from twisted_chat.core.intake import decode_line
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.transports.udp_handshake import Address

if TYPE_CHECKING:
    from twisted_chat.core.chat import Participant
    from twisted_chat.core.settings import Settings

#: The largest datagram payload the server sends (PROTOCOL.md): small enough
#: to cross any path without IP fragmentation.
MAX_PAYLOAD = 1200
#: The largest datagram read; a UDP payload cannot be larger, so nothing is
#: ever cut short by the kernel.  Anything bigger is dropped unread.
MAX_DATAGRAM = 65536
#: At most one ``! slow-down`` notice per session in this many seconds.
SLOW_DOWN_INTERVAL = 1.0
#: The reason others see when the daemon ends a session (shutdown).
CLOSED_REASON = "session closed"
#: The most datagrams one received datagram draws back, the line saying the
#: reply was cut included: a forged ``/rooms`` or ``/history 200`` must not
#: turn a few bytes into a flood at a victim's address.
MAX_REPLY_DATAGRAMS = 8
#: The errors a send to one address may meet that say nothing about the
#: others: full buffers, an oversized datagram, an ICMP error surfacing.
TRANSIENT_SEND_ERRORS = frozenset(
    {errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EMSGSIZE, errno.ECONNREFUSED}
)

#: The longest line that can still be the ``/hello TOKEN`` line; longer first
#: lines from unproven addresses are not even decoded.
_HELLO_MAX = 128

_ELLIPSIS = "…".encode()
_CRLF = lines.CRLF


def describe(address: Address) -> str:
    """The peer label for logs: ``udp 127.0.0.1:5555`` or ``udp [::1]:5555``."""
    host, port = address
    if host.startswith("::ffff:") and "." in host:
        # A dual-stack socket reports IPv4 clients as IPv4-mapped addresses;
        # people know them by their IPv4 spelling.
        host = host.removeprefix("::ffff:")
    if ":" in host:
        return f"udp [{host}]:{port}"
    return f"udp {host}:{port}"


def cut(line: bytes) -> bytes:
    """
    One server line as one datagram payload, at most :data:`MAX_PAYLOAD` bytes.

    :param line: a line without its line ending.
    :return: the line and CRLF; a longer line is cut on a UTF-8 character
        boundary and ends with ``…``.
    """
    if len(line) + len(_CRLF) <= MAX_PAYLOAD:
        return line + _CRLF
    keep = MAX_PAYLOAD - len(_CRLF) - len(_ELLIPSIS)
    # Back off over continuation bytes (10xxxxxx) to the start of a character.
    while keep > 0 and line[keep] & 0xC0 == 0x80:
        keep -= 1
    return line[:keep] + _ELLIPSIS + _CRLF


def datagrams(data: bytes) -> list[bytes]:
    """
    Split finished server lines (``IChatClient.send`` input) into payloads.

    The usual single short line is returned as it is, without copying: the
    same ``bytes`` go to every member of a room.
    """
    if len(data) <= MAX_PAYLOAD and data.find(_CRLF) == len(data) - len(_CRLF):
        return [data]
    parts = data.split(_CRLF)
    if parts and not parts[-1]:
        parts.pop()
    return [cut(part) for part in parts]


def hello_token(raw: bytes) -> str | None:
    """The token of a ``/hello TOKEN`` line from an unproven address, or None."""
    if len(raw) > _HELLO_MAX:
        return None
    try:
        command = commands.parse_line(decode_line(raw).strip())
    except ChatError:
        return None
    return command.token if isinstance(command, commands.Hello) else None


@define
class UdpStats:
    """Counters a test or an operator can read; no message content."""

    datagrams: int = 0
    oversized: int = 0
    challenges: int = 0
    silenced: int = 0
    bad_tokens: int = 0
    refused: int = 0
    #: ``/hello`` with a good token from a server-banned address.
    banned: int = 0
    sessions: int = 0
    expired: int = 0
    dropped_lines: int = 0
    send_failures: int = 0
    #: Datagram payloads read (oversized ones included) and sent, in bytes.
    bytes_received: int = 0
    bytes_sent: int = 0


class DatagramSender(Protocol):
    """What a :class:`UdpSession` needs of its listener."""

    def write_lines(self, data: bytes, address: Address) -> None: ...
    def send_payload(self, payload: bytes, address: Address) -> None: ...
    def end_session(self, session: UdpSession, reason: str) -> None: ...


@implementer(IChatClient)
class UdpSession:
    """
    One proven address, as the core sees it: an :class:`IChatClient`.

    Created by :class:`ChatDatagramProtocol` when ``/hello`` succeeds, and
    ended by it (``/quit``, idle expiry, :meth:`close`).
    """

    __slots__ = (
        "_protocol",
        "address",
        "bucket",
        "budget",
        "cut",
        "group",
        "held",
        "last_seen",
        "last_slow_down",
        "open",
        "participant",
        "peer",
    )

    def __init__(
        self,
        protocol: DatagramSender,
        address: Address,
        group: str,
        bucket: TokenBucket | None,
        now: float,
    ) -> None:
        self._protocol = protocol
        self.address = address
        self.peer = describe(address)
        self.group = group
        self.bucket = bucket
        self.last_seen = now
        self.last_slow_down = -SLOW_DOWN_INTERVAL
        self.open = True
        self.participant: Participant | None = None
        #: Datagrams the reply being sent may still use at once (the last
        #: one of the cap is :attr:`held`); -1 outside a reply.
        self.budget = -1
        #: The line that would be the last of the cap: sent when the reply
        #: ends there, replaced by the cut line when more lines follow.
        self.held: bytes | None = None
        #: Reply lines cut so far in this reply.
        self.cut = 0

    def in_chat(self) -> bool:
        """Whether what the session says still counts (not after ``/quit``)."""
        participant = self.participant
        return self.open and participant is not None and not participant.gone

    def send(self, data: bytes) -> None:
        """``IChatClient`` API: one datagram per line, failures only logged."""
        if self.open:
            if self.budget < 0:
                self._protocol.write_lines(data, self.address)
            else:
                self._reply(data)

    def _reply(self, data: bytes) -> None:
        for payload in datagrams(data):
            if self.budget > 0:
                self.budget -= 1
                self._protocol.send_payload(payload, self.address)
            elif self.held is None and not self.cut:
                self.held = payload
            else:
                if self.held is not None:
                    self.held = None
                    self.cut += 1
                self.cut += 1

    def slow_down(self, settings: Settings, now: float) -> None:
        """Over the flood rate: say so, at most once a `SLOW_DOWN_INTERVAL`."""
        if now - self.last_slow_down < SLOW_DOWN_INTERVAL:
            return
        self.last_slow_down = now
        self.send(
            lines.error(
                SlowDown(
                    f"Slow down: at most {settings.flood_burst} lines at once, then "
                    f"{settings.flood_rate:g} a second; the rest was dropped."
                )
            )
        )

    def open_reply(self) -> None:
        """A datagram from this session is being handled: count what it draws."""
        self.budget = MAX_REPLY_DATAGRAMS - 1
        self.held = None
        self.cut = 0

    def close_reply(self) -> None:
        """The datagram is handled: send its last line, or say it was cut."""
        self.budget = -1
        held, self.held = self.held, None
        cut, self.cut = self.cut, 0
        if held is not None:
            self.send(held)
        elif cut:
            self.send(
                lines.notice(
                    f"Reply cut: {cut} more lines not sent (one datagram gets "
                    f"at most {MAX_REPLY_DATAGRAMS} back over UDP). Use TCP for "
                    f"long replies, or ask for less: /rooms PATTERN, /history N."
                )
            )

    def close(self) -> None:
        """``IChatClient`` API: end the session (nothing is queued in UDP)."""
        self._protocol.end_session(self, CLOSED_REASON)
