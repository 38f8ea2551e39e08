"""
The server operators' commands and the server bans.

(Skeleton: the helper building issue 13's operators fills this in.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted_chat.core.errors import NotServerOperator

if TYPE_CHECKING:
    from twisted_chat.core.account_commands import OperatorCommand
    from twisted_chat.core.account_ports import AccountServices
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.room import Participant


class OperatorCommands:
    """The server operators' commands of one chat server, and its server bans."""

    def __init__(self, server: ChatServer, services: AccountServices | None) -> None:
        self._server = server
        self._services = services

    def dispatch(self, participant: Participant, command: OperatorCommand) -> None:
        """Act on one server operator's command."""
        raise NotServerOperator("Only server operators may do that; see /oper.")

    def refusal(self, host: str, account_key: str | None) -> bytes | None:
        """The one ``! banned:`` line for a client a server ban matches, or None."""
        return None
