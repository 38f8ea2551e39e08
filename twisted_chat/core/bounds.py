"""
How much one person may make the chat core hold or send.

Each bound is a named constant, so that ``/help`` can quote it, the tests can
check it and a reader can find every one in one place.  The transports have
their own (line length, flood control, send queue, connections); these are
the core's.
"""

from __future__ import annotations

#: How many rooms one person may be in at once, so that nobody can make the
#: server hold an unbounded number of rooms.
MAX_ROOMS_PER_USER = 50
#: How many existing rooms the clients of one address group may have
#: created (the rooms they made that still exist), so that an address with
#: many connections cannot fill the room table; "" (UNIX sockets) is not
#: counted, and ``--max-per-ip 0`` (no per-address caps) turns it off.
MAX_ROOMS_PER_GROUP = 100
#: How many messages ``/history`` replays at most.
HISTORY_LIMIT = 200
#: What ``/history`` with no number replays when ``--history-on-join`` is 0.
HISTORY_DEFAULT = 20
#: Names per line in ``/who`` replies, so a big room does not make one
#: enormous line (a UDP datagram is cut at 1200 bytes).
WHO_NAMES_PER_LINE = 20
#: Names ``/who`` lists at most; a bigger room's list ends with a count.
WHO_NAMES_SHOWN = 200
#: Rooms ``/rooms`` lists at most, the busiest first; then a count of the
#: rest and how to search them.
ROOMS_SHOWN = 30
#: Characters of a ``/rooms PATTERN`` that are used (a room name has 33).
ROOMS_PATTERN_MAX = 33
#: Reply lines a command may draw without being charged; each line beyond
#: costs one token of the address group's reply budget.
FREE_REPLY_LINES = 5
#: The reply budget: this many charged lines at once, then ``REPLY_RATE``
#: lines a second.  A full ``/rooms`` costs 27 of them (plus one for every
#: ``LOOKED_AT_PER_LINE`` rooms it looks through), so an address can list
#: rooms a few times in a row and then about once every 1.3 seconds.
REPLY_BURST = 100
REPLY_RATE = 20.0
#: A listing that looks through this many rooms or members is charged one
#: more line: ``/rooms nosuchroom`` is one line back but a scan of every
#: room, and must not be free to repeat.
LOOKED_AT_PER_LINE = 200
#: A room with at least this many members hands out its join, part, quit
#: and nick-change notices at most every ``NOTICE_DELAY`` seconds (with its
#: next message, if one comes sooner), one write per member for all of
#: them: in a busy room every membership change would otherwise cost a
#: send to every member.
BUSY_ROOM = 50
NOTICE_DELAY = 0.1
