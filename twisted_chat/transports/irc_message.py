"""
One IRC message as a value: what the IRC front-end's modules pass between
them (issue 15).

Parsing and formatting are :mod:`twisted_chat.transports.irc_wire`'s; this
module only fixes the shape, so the codec, registration and the command
translation can be written and tested apart.  Sans-IO: nothing here knows a
socket.
"""

from __future__ import annotations

from attrs import frozen

__all__ = ["IrcMessage"]


@frozen
class IrcMessage:
    """
    ``@tags :source COMMAND params...`` as the Modern IRC client protocol
    document describes it.

    :ivar command: the verb upper-cased (``PRIVMSG``) or a three-digit
        numeric (``"001"``).
    :ivar params: the parameters, the trailing one included as the last,
        without its ``:``; only the last may be empty or contain spaces.
    :ivar source: the prefix without its ``:`` (``nick!user@host`` or the
        server's name), None when absent.
    :ivar tags: the IRCv3 message tags, unescaped, in the order received;
        a tag without a value has the value "".
    """

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def tag(self, name: str) -> str | None:
        """The value of tag ``name`` (None: the message does not carry it)."""
        for key, value in self.tags:
            if key == name:
                return value
        return None
