"""
Every error a user can see, each with a stable code.

Clients see both the code and the text (``! nick-in-use: ...``): the code is
for scripts and bots, the text tells a person what to do instead.
"""

from __future__ import annotations

from typing import ClassVar


class ChatError(Exception):
    """An error reply: the user did something the rules do not allow."""

    code: ClassVar[str] = "error"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"{self.code}: {self.text}"


class InvalidName(ChatError):
    """A nickname or room name that breaks the naming rules."""

    code = "invalid-name"


class NickInUse(ChatError):
    """Somebody already holds a nickname with the same normalised key."""

    code = "nick-in-use"


class NoSuchNick(ChatError):
    """A private message to somebody who is not connected."""

    code = "no-such-nick"


class NoSuchRoom(ChatError):
    """A question about a room that does not exist."""

    code = "no-such-room"


class NotInRoom(ChatError):
    """An action on a room the user has not joined."""

    code = "not-in-room"


class NoCurrentRoom(ChatError):
    """Plain text, /me or /topic with no current room."""

    code = "no-room"


class UnknownCommand(ChatError):
    """A ``/word`` that is not a command."""

    code = "unknown-command"


class BadUsage(ChatError):
    """A known command with missing or extra arguments."""

    code = "usage"


class TooManyRooms(ChatError):
    """A join past the per-person room limit, or a new room past the per-address one."""

    code = "too-many-rooms"


class LineTooLong(ChatError):
    """A client line over ``--max-line`` bytes."""

    code = "line-too-long"


class SlowDown(ChatError):
    """
    Too much, too fast: a UDP client over its flood-control rate, or a
    command whose reply would overdraw the address's reply budget.
    """

    code = "slow-down"


class ServerFull(ChatError):
    """A connection refused by ``--max-clients`` (per address: TooManyConnections)."""

    code = "server-full"


class TooManyConnections(ChatError):
    """A connection refused by ``--max-per-ip``."""

    code = "too-many-connections"
