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


class NickRegistered(ChatError):
    """``/nick`` to a name that is somebody else's account."""

    code = "nick-registered"


class AlreadyRegistered(ChatError):
    """``/register`` for a name that is an account already."""

    code = "already-registered"


class WeakPassword(ChatError):
    """A new password shorter than the accounts' minimum."""

    code = "weak-password"


class LoginFailed(ChatError):
    """A wrong name or password: the same error whether the account exists or not."""

    code = "login-failed"


class LoginThrottled(ChatError):
    """Too many failed logins (or ``/oper`` attempts) for an account or address."""

    code = "login-throttled"


class NotLoggedIn(ChatError):
    """An account command that needs a login, from a guest."""

    code = "not-logged-in"


class RegistrationClosed(ChatError):
    """``/register`` under ``--registration closed``, from a non-operator."""

    code = "registration-closed"


class AccountsDisabled(ChatError):
    """Any account command under ``--accounts off``."""

    code = "accounts-disabled"


class NotServerOperator(ChatError):
    """A server operator's command from somebody who is not one."""

    code = "not-server-operator"


class OperFailed(ChatError):
    """``/oper`` with a wrong name or password."""

    code = "oper-failed"


class Banned(ChatError):
    """A server ban (at connect, hello or login) or a room ban (at join)."""

    code = "banned"


class NotOperator(ChatError):
    """A room operator's command (or a locked topic) from somebody who is not one."""

    code = "not-operator"


class Muted(ChatError):
    """A line from somebody an operator muted in that room."""

    code = "muted"


class Moderated(ChatError):
    """A line in a moderated room from somebody neither operator nor voiced."""

    code = "moderated"


class InviteOnly(ChatError):
    """A join of an invite-only room without an invitation."""

    code = "invite-only"


class RoomFull(ChatError):
    """A join of a room at its member limit."""

    code = "room-full"


class BadKey(ChatError):
    """A join of a room with a key, without it or with a wrong one."""

    code = "bad-key"


class NotRegisteredRoom(ChatError):
    """A founder's command (``/room drop``) on a room that is not registered."""

    code = "not-registered-room"
