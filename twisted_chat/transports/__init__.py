"""
The ways in: thin Twisted protocols that turn bytes into core calls.

One module per front-end (``tcp`` for line clients on TCP, TLS and UNIX
sockets; ``udp`` with its session table and handshake) and what they share.
They import :mod:`twisted_chat.core` and nothing of the daemon: which ports
to listen on, and when, is :mod:`twisted_chat.daemon`'s business.
"""
