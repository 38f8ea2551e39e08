"""
What text becomes between IRC and the other front-ends, and how the server
describes itself to IRC clients.

Apart from the codec because these are chat rules seen from IRC, not wire
rules: IRC formatting codes must never reach line, UDP or web users
(PROTOCOL.md, "IRC clients"), ``/me`` is a CTCP ACTION there, a line or UDP
user needs a host that hides the address, and ``005`` must state the real
limits.  Pure functions, so each is tested on plain values.

``CASEMAPPING``: send ``CASEMAPPING=ascii`` and ``UTF8MAPPING=rfc8265``.

- The core compares names by NFKC, case folding and a TR39 skeleton
  (``core/names.py``); no registered casemapping says that.  Ergo, whose
  PRECIS mode is the closest thing (RFC 8265 UsernameCaseMapped: width
  mapping, lower case, NFC), advertises exactly this pair: ``ascii`` for
  the clients that know only the classic values, and ``UTF8MAPPING=rfc8265``
  (its ``precisUTF8MappingToken``) for the ones that know more.
- What clients do with ``CASEMAPPING``: irssi takes any value containing
  ``rfc1459`` as rfc1459 and everything else as ascii
  (``irc_server_init_isupport``); WeeChat keeps its default, rfc1459, for
  a value it does not know (``irc_server_search_casemapping`` returns -1)
  and reads ``UTF8MAPPING`` (``none``/``rfc8265``).  So ``CASEMAPPING=rfc8265``
  would mean ascii in irssi and rfc1459 in WeeChat: nothing gained.
- ``ascii`` is true as far as it goes: two names equal under ASCII case
  are equal for the core.  The converse fails only outside ASCII (``Ä`` and
  ``ä``), where a client may open two query windows for one person; the
  server still routes both to the same participant.  ``rfc1459`` would
  add ``[]\\~`` = ``{}|^``, characters our names cannot contain, so it
  is no worse, but not the truth either.  The skeleton rule is a refusal
  at ``NICK`` time (``433``), not an identity clients need to compute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from typing import Final

from twisted_chat.transports.irc_message import IrcMessage
from twisted_chat.transports.irc_wire import MAX_BODY_BYTES

__all__ = [
    "ISUPPORT_TRAILER",
    "MAX_ISUPPORT_TOKENS",
    "MIN_SECRET_BYTES",
    "cloak",
    "ctcp_action",
    "ctcp_parts",
    "is_ctcp",
    "isupport_tokens",
    "make_action",
    "rpl_isupport_lines",
    "strip_formatting",
    "user_mask",
]

#: "The maximum number of RPL_ISUPPORT tokens that can be advertised is 13"
#: (Modern, RPL_ISUPPORT): the nick, 13 tokens and the trailer make 15.
MAX_ISUPPORT_TOKENS: Final = 13
ISUPPORT_TRAILER: Final = "are supported by this server"
#: A shorter secret would let anyone hash all 2**32 IPv4 addresses.
MIN_SECRET_BYTES: Final = 16

# modern.ircdocs.horse/formatting: bold, colour (up to two digits, then an
# optional comma and up to two digits), hex colour (RRGGBB[,RRGGBB]),
# reset, monospace, reverse, italics, strikethrough, underline.  A comma
# not followed by a digit is text, and so is a third digit.
_FORMATTING = re.compile(
    "\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?"
    "|\x04(?:[0-9A-Fa-f]{6}(?:,[0-9A-Fa-f]{6})?)?"
    "|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)
_ANY_CODE = re.compile("[\x02-\x04\x0f\x11\x16\x1d-\x1f]")
_CTCP: Final = "\x01"
_CLOAK_CONTEXT: Final = b"twisted-chat irc cloak v1\x00"
_HOST_LABEL = re.compile(
    r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
)
_TOKEN = re.compile(r"[!-9;-~][!-~]*")  # printable ASCII, no space, no leading ":"


def strip_formatting(text: str) -> str:
    """
    ``text`` without IRC formatting codes, for line, UDP and web users.

    Run once per message an IRC user sends, before the core's
    ``clean_text`` removes the other controls; text without a code (most
    of it) is returned as it is after one scan.
    """
    if _ANY_CODE.search(text) is None:
        return text
    return _FORMATTING.sub("", text)


def ctcp_parts(text: str) -> tuple[str, str] | None:
    """
    ``(COMMAND, params)`` of a CTCP message, None for ordinary text.

    Lenient as clients are (modern.ircdocs.horse/ctcp): the final
    ``\\x01`` may be missing, the command is upper-cased, whatever follows
    the final ``\\x01`` is ignored.
    """
    if not text.startswith(_CTCP):
        return None
    body = text[1:].split(_CTCP, 1)[0]
    command, _, params = body.partition(" ")
    if not command:
        return None
    return command.upper(), params


def ctcp_action(text: str) -> str | None:
    """The text of ``\\x01ACTION text\\x01`` (``/me``), None for anything else."""
    parts = ctcp_parts(text)
    return parts[1] if parts is not None and parts[0] == "ACTION" else None


def is_ctcp(text: str) -> bool:
    """A CTCP request other than ACTION (VERSION, PING, ...): the lead
    answers or drops it, it is never shown to line users as text."""
    parts = ctcp_parts(text)
    return parts is not None and parts[0] != "ACTION"


def make_action(text: str) -> str:
    """A ``/me`` as IRC clients send it.  If the line is cut at 512 bytes
    the final ``\\x01`` may go; clients accept that."""
    return f"\x01ACTION {text}\x01"


def cloak(secret: bytes, value: str, suffix: str = "tc") -> str:
    """
    A host that stands for ``value`` (an address) and reveals nothing of it.

    HMAC-SHA256 keyed by the server secret, over a fixed context and the
    value; 120 bits of it in lower-case base32 as three groups of eight
    (``abcdefgh.ijklmnop.qrstuvwx.tc``).  The same value always gives the
    same cloak (bans and ``/whois`` stay stable); telling two apart by
    chance needs about 2**60 values.  Without the secret nobody can compute
    a cloak, so nobody can hash every IPv4 address to find one, and base32
    has no ``0``, ``1``, ``8`` or ``9``: no run of the address shows.

    :param suffix: the last label (e.g. the network's short name).
    :raises ValueError: for a secret under :data:`MIN_SECRET_BYTES` bytes,
        or a suffix that is not a host name.
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the cloak secret needs {MIN_SECRET_BYTES} bytes or more")
    if _HOST_LABEL.fullmatch(suffix) is None:
        raise ValueError(f"{suffix!r} is not a host name")
    digest = hmac.new(secret, _CLOAK_CONTEXT + value.encode(), hashlib.sha256)
    text = base64.b32encode(digest.digest()[:10]).decode("ascii").lower()
    return f"{text[:8]}.{text[8:]}.{suffix}"


def user_mask(nick: str, cloak: str) -> str:
    """How a line or UDP user appears to IRC users: ``nick!~nick@cloak``
    (``~``: the user name is not from ident, as servers mark it)."""
    return f"{nick}!~{nick}@{cloak}"


def isupport_tokens(
    *,
    network: str,
    nicklen: int,
    channellen: int,
    topiclen: int,
    kicklen: int,
    awaylen: int,
    chantypes: str = "#",
    prefix: str = "(ov)@+",
    chanmodes: str = "b,k,l,imt",
    casemapping: str = "ascii",
    utf8mapping: str | None = "rfc8265",
    chanlimit: int | None = None,
    maxlist: int | None = None,
    modes: int | None = None,
    maxtargets: int | None = None,
    targmax: str | None = None,
    statusmsg: str | None = None,
    linelen: int | None = None,
    utf8only: bool = False,
    extra: Iterable[str] = (),
) -> list[str]:
    """
    The ``005`` tokens, alphabetical as Ergo sends them.

    The ones clients act on: ``PREFIX`` and ``CHANMODES`` (irssi and
    WeeChat parse ``MODE`` and ``NAMES`` with them; without ``PREFIX``
    irssi assumes ``(ohv)@%+``), ``CHANTYPES``, ``CASEMAPPING``, ``NICKLEN``
    (WeeChat), ``MODES`` (irssi sends at most that many per ``MODE``, 3
    without it), ``TARGMAX``/``MAXTARGETS`` (irssi's targets per
    ``PRIVMSG``/``KICK``), ``NETWORK`` (both show it).  Ergo also sends
    ``CHANLIMIT=#:N``, ``MAXLIST=beI:N``, ``STATUSMSG``, ``UTF8ONLY``;
    ``LINELEN`` is a draft (512 when absent).  None leaves a token out.

    :raises ValueError: for a token that is not printable ASCII without
        spaces (Modern: parameters, so no space and no leading ``:``).
    """
    tokens = {
        "AWAYLEN": str(awaylen),
        "CASEMAPPING": casemapping,
        "CHANMODES": chanmodes,
        "CHANNELLEN": str(channellen),
        "CHANTYPES": chantypes,
        "KICKLEN": str(kicklen),
        "NETWORK": network,
        "NICKLEN": str(nicklen),
        "PREFIX": prefix,
        "TOPICLEN": str(topiclen),
    }
    optional = {
        "CHANLIMIT": None if chanlimit is None else f"{chantypes}:{chanlimit}",
        "LINELEN": None if linelen is None else str(linelen),
        "MAXLIST": None if maxlist is None else f"b:{maxlist}",
        "MAXTARGETS": None if maxtargets is None else str(maxtargets),
        "MODES": None if modes is None else str(modes),
        "STATUSMSG": statusmsg,
        "TARGMAX": targmax,
        "UTF8MAPPING": utf8mapping,
        "UTF8ONLY": "" if utf8only else None,
    }
    tokens.update({key: value for key, value in optional.items() if value is not None})
    out = [f"{key}={value}" if value else key for key, value in sorted(tokens.items())]
    out.extend(extra)
    for token in out:
        if _TOKEN.fullmatch(token) is None:
            raise ValueError(f"ISUPPORT token {token!r} cannot be sent")
    return out


def rpl_isupport_lines(
    server: str, nick: str, tokens: Sequence[str]
) -> list[IrcMessage]:
    """
    ``005`` messages carrying ``tokens``: at most 13 a message, and as
    many as fit in 512 bytes (Ergo keeps 400 bytes of tokens a line; we
    count the real head), each ending "are supported by this server".

    :raises ValueError: for a token that fits in no line.
    """
    fixed = len(f":{server} 005 {nick} :{ISUPPORT_TRAILER}".encode())
    budget = MAX_BODY_BYTES - fixed
    messages: list[IrcMessage] = []
    batch: list[str] = []
    used = 0
    for token in tokens:
        size = len(token.encode()) + 1
        if size > budget:
            raise ValueError(f"ISUPPORT token {token!r} fits in no line")
        if len(batch) == MAX_ISUPPORT_TOKENS or used + size > budget:
            messages.append(_isupport(server, nick, batch))
            batch, used = [], 0
        batch.append(token)
        used += size
    if batch:
        messages.append(_isupport(server, nick, batch))
    return messages


def _isupport(server: str, nick: str, batch: list[str]) -> IrcMessage:
    return IrcMessage("005", (nick, *batch, ISUPPORT_TRAILER), source=server)
