"""The twistd dropin: ``twistd chat`` runs :mod:`twisted_chat.daemon.options`."""

from twisted.application.service import ServiceMaker

chat = ServiceMaker(
    "twisted-chat",
    "twisted_chat.daemon.options",
    "Chat rooms for telnet, nc and nc -u users, over TCP and UDP.",
    "chat",
)
