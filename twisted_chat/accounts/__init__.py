"""Accounts and passwords: the storage layer of issue 13.

What it owns: hashing and checking passwords off the reactor thread
(`twisted_chat.accounts.passwords`), and the accounts themselves, kept in
memory and written to their own SQLite file by one writer thread
(`twisted_chat.accounts.store`, schema in `twisted_chat.accounts.schema`),
and the registered rooms of issue 14 (`twisted_chat.accounts.rooms`), in
the same file and through the same writer thread.

Like `twisted_chat.history`, it imports only `twisted_chat.core` and
libraries. Its API is made to be driven from the sans-IO core: every slow
result (a hash, a verdict, a committed write) comes back through a
callback the caller passes, run on the reactor thread, never as a
Deferred the core would have to hold.
"""
