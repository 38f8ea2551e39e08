"""
The store interface the chat core calls: what it hands over, what it reads.

The core knows history only through this interface, so that it stays
sans-IO: the stores themselves (memory, SQLite, and the writer they
feed) live in :mod:`twisted_chat.history`, which adds how a store is
started, flushed, stopped and pruned (``IHistoryStore``).  Every method is
called from the reactor thread and none of them waits for the disk.
"""

from __future__ import annotations

from typing import Final

from zope.interface import Interface

from twisted_chat.core.records import StoredMessage, StoredTopic

#: The most messages one `IMessageStore.recent` call returns.
MAX_RECENT: Final = 200


class IMessageStore(Interface):
    """Where the core keeps room history and topics.

    Every method is called from the reactor thread. None of them waits for
    a disk write, and `append_lines`/`set_topic` never raise.
    """

    # zope.interface methods are declared without ``self``.
    def append_lines(room_key: str, room: str, at: float, data: bytes) -> None:
        """
        Queue what was said in a room in one reactor turn; never raises.

        ``data`` is the room's lines exactly as its members were sent them
        (`twisted_chat.core.lines.room_message` and ``room_action``, one after
        the other), all said at ``at``. The chat core already made these
        bytes for the fan-out, so history costs it one call per room and
        turn and nothing per message; the lines are taken apart into
        sender and text only where they are read back.
        """

    def recent(room_key: str, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages of a room, oldest first.

        Messages still queued are included. ``limit`` is clamped to
        `MAX_RECENT`, and to ``max_per_room`` when that is set.
        """

    def set_topic(topic: StoredTopic) -> None:
        """Queue a room's topic, replacing the stored one; never raises."""

    def topic(room_key: str) -> StoredTopic | None:
        """The stored topic of a room, or None; read when a room is made.

        Never raises (a failed read is logged and gives None). Only
        `MAX_TOPICS` topics are kept, the newest; a topic older than
        ``max_age_days`` goes with its room's history (`prune`).
        """

    def backlog() -> int:
        """Messages handed over and not yet written down, for ``/stats``.

        Cheap (no disk), never raises; 0 for a store that writes nothing.
        """

    def trouble() -> str | None:
        """Why history is not (all) being saved right now, or None.

        A short reason for people, e.g. ``history writer ended (exit code
        1); history is not saved; restarting it in 2 s``; the daemon shows
        it in ``STATUS=``.
        """
