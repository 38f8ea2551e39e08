"""
Saying things: a message or an action to a room, a private message.

The fan-out's first steps, apart from :mod:`twisted_chat.core.chat` (which
is about dispatch): the moderation test (one attribute unless the room is
moderated or has a mute), the idle clock for ``/whois``, the line made
once, and, only for a room with members of another wire format, the event
they get instead (:mod:`twisted_chat.core.events`).  A room of line users
builds no event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted_chat.core import lines
from twisted_chat.core.errors import NotInRoom
from twisted_chat.core.events import Acted, Said
from twisted_chat.core.foreign import wire_format_of
from twisted_chat.core.names import RoomName

if TYPE_CHECKING:
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.room import Participant, Room

__all__ = ["Speech"]


class Speech:
    """What ``ChatServer`` does with plain text, ``/me`` and ``/msg``."""

    def __init__(self, server: ChatServer) -> None:
        self._server = server
        # Bound once: called for every line said.
        self._say_in = server.outbox.say_in
        self._seconds = server.seconds

    def say(
        self, participant: Participant, room: Room, text: str, notice: bool = False
    ) -> None:
        """
        A message to ``room``, which ``participant`` is in; ``notice``: an
        IRC ``NOTICE`` (a message to line users, a NOTICE to IRC's).
        """
        rules = room.rules
        if rules is not None and rules.speech_restricted:
            self._server.moderation.check_speech(participant, rules)
        participant.last_active = self._seconds()
        participant.said += 1
        nick = participant.nick.display
        data = lines.room_message(room.name.display, nick, text)
        if room.foreign is None:
            self._say_in(room, data, participant)
        else:
            event = Said(participant, nick, text, notice)
            self._say_in(room, data, participant, event=event)

    def act(self, participant: Participant, room: Room, text: str) -> None:
        """
        ``/me text`` in ``room``: :meth:`say`'s steps with the action's
        shapes, written out again because ``say`` is the hot path and must
        not pay a shared helper's extra call per message.
        """
        rules = room.rules
        if rules is not None and rules.speech_restricted:
            self._server.moderation.check_speech(participant, rules)
        participant.last_active = self._seconds()
        participant.said += 1
        nick = participant.nick.display
        data = lines.room_action(room.name.display, nick, text)
        if room.foreign is None:
            self._say_in(room, data, participant)
        else:
            self._say_in(room, data, participant, event=Acted(participant, nick, text))

    def message(self, participant: Participant, target: str, text: str) -> None:
        """``/msg NICK text``, or ``/msg #room text`` to a room one is in."""
        server = self._server
        if target.startswith("#"):
            name = RoomName.parse(target)
            room = participant.rooms.get(name.key)
            if room is None:
                raise NotInRoom(
                    f"You are not in {name.display}; /join {name.display} first."
                )
            self.say(participant, room, text)
            return
        recipient = server.directory.find(target)
        participant.last_active = self._seconds()
        participant.said += 1
        if server.outbox.busy:
            server.outbox.catch_up(recipient)
        fmt = wire_format_of(recipient)
        if fmt is None:
            recipient.client.send(lines.private_message(participant.nick.display, text))
        else:
            recipient.client.send_wire(  # type: ignore[attr-defined]
                fmt.render_private(participant, recipient, text)
            )
