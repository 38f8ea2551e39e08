"""
twisted-chat: chat rooms for telnet, nc and nc -u users, served by Twisted.

The package is split the way the style guide asks: a sans-IO core
(:mod:`names`, :mod:`errors`, :mod:`lines`, :mod:`commands`, :mod:`chat`)
that knows nothing of sockets, thin transport adapters (:mod:`tcp`,
:mod:`udp`) and the assembly at the edge (:mod:`options`, :mod:`service`).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
