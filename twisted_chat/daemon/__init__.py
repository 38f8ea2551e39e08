"""
The daemon at the edge: configuration, twistd's options, service assembly.

Everything that knows the command line, the configuration file, the state
directory, systemd (sd_notify, the watchdog, socket activation) and
signals.  It wires :mod:`twisted_chat.core`, :mod:`twisted_chat.transports`
and :mod:`twisted_chat.history` together; nothing imports it but the twistd
dropin.
"""
