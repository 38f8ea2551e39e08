"""The twistd dropin: ``twistd chat`` runs :mod:`twisted_chat.options`."""

from twisted.application.service import ServiceMaker

chat = ServiceMaker(
    "twisted-chat",
    "twisted_chat.options",
    "Chat rooms for telnet, nc and nc -u users, over TCP and UDP.",
    "chat",
)
