"""
twisted-chat: chat rooms for telnet, nc and nc -u users, served by Twisted.

One package per layer, each importing only those below it
(``docs/architecture.md`` is the floor plan): :mod:`twisted_chat.core`,
the sans-IO chat that knows nothing of sockets; :mod:`twisted_chat.transports`
and :mod:`twisted_chat.history`, the ways in and the stores, on top of it;
:mod:`twisted_chat.daemon`, the assembly at the edge; and
:mod:`twisted_chat.bench`, the load generator, which speaks the protocol
from outside.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
