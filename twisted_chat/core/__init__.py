"""
The chat itself, sans-IO: rooms, names, commands, the lines people see.

Nothing here knows of sockets, the reactor or the disk: time comes in as a
``seconds`` callable, clients are :class:`~twisted_chat.core.interfaces.IChatClient`
objects, and history is whatever implements
:class:`~twisted_chat.core.store.IMessageStore`.  Every front-end
(:mod:`twisted_chat.transports`) and the daemon (:mod:`twisted_chat.daemon`)
builds on this package; it imports none of them.
"""
