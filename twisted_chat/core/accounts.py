"""
The account commands' rules: register, log in and out, passwords, whois.

(Skeleton: the helper building issue 13's accounts fills this in.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted_chat.core.errors import AccountsDisabled

if TYPE_CHECKING:
    from twisted_chat.core.account_commands import AccountCommand
    from twisted_chat.core.account_ports import AccountServices
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.room import Participant


class AccountCommands:
    """The account commands of one chat server."""

    def __init__(self, server: ChatServer, services: AccountServices | None) -> None:
        self._server = server
        self._services = services

    def dispatch(self, participant: Participant, command: AccountCommand) -> None:
        """Act on one account command."""
        raise AccountsDisabled("Accounts are turned off on this server.")

    def take_secret(self, participant: Participant, text: str) -> None:
        """``participant.prompt`` is waiting: ``text`` is the password."""
        participant.prompt = None

    def forget(self, participant: Participant) -> None:
        """``participant`` is gone: drop what waits for them."""
        participant.prompt = None
