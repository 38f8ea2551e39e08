"""
``/topic``: show the current room's topic, or set it and tell the room.

Apart from :mod:`twisted_chat.core.chat` to keep that module about
dispatch; room moderation (topic-lock) adds its check here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted_chat.core import lines
from twisted_chat.core.events import TopicSet
from twisted_chat.core.membership import current_room
from twisted_chat.core.records import StoredTopic

if TYPE_CHECKING:
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.room import Participant


def show_or_set(server: ChatServer, participant: Participant, text: str | None) -> None:
    """``/topic`` (None: show it) or ``/topic TEXT``."""
    room = current_room(participant)
    send = participant.client.send
    if text is None:
        if room.topic:
            send(
                lines.notice(
                    f"Topic of {room.name.display}: {room.topic} "
                    f"(set by {room.topic_by})"
                )
            )
        else:
            send(
                lines.notice(
                    f"{room.name.display} has no topic; set one with /topic TEXT."
                )
            )
        return
    server.moderation.topic_check(participant, room)
    room.topic = text
    room.topic_by = participant.nick.display
    room.topic_at = server.seconds()
    server.outbox.say_in(
        room,
        lines.notice(
            f"{room.topic_by} set the topic of {room.name.display} to: {text}"
        ),
        None,
        notice=True,
        event=TopicSet(participant, room.topic_by, text),
    )
    if server.store is not None:
        topic = StoredTopic(
            room_key=room.name.key,
            room=room.name.display,
            text=text,
            set_by=room.topic_by,
            set_at=room.topic_at,
        )
        server.store.set_topic(topic)
