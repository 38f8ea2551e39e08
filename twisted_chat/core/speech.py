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
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.names import RoomName

if TYPE_CHECKING:
    from twisted_chat.core.chat import ChatServer
    from twisted_chat.core.room import Participant, Room

__all__ = ["Speech"]

_log = RateLimitedLogger()


class Speech:
    """What ``ChatServer`` does with plain text, ``/me`` and ``/msg``."""

    def __init__(self, server: ChatServer) -> None:
        self._server = server
        # Bound once: called for every line said.
        self._say_in = server.outbox.say_in
        self._say_run_in = server.outbox.say_run_in
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

    def run(self, participant: Participant, texts: list[str]) -> None:
        """
        ``ChatServer.receive`` for several plain lines in a row (none starts
        with ``/``), as one read brings them: one room line for all of them
        (:meth:`say_run`) when nothing needs them one by one (a password
        prompt, speech rules, members of another wire format).
        """
        room = participant.current
        rules = room.rules if room is not None else None
        if (
            room is None
            or participant.gone
            or participant.prompt is not None
            or room.foreign is not None
            or (rules is not None and rules.speech_restricted)
        ):
            receive = self._server.receive
            for text in texts:
                receive(participant, text)
            return
        try:
            self.say_run(participant, room, texts)
        except Exception:
            _log.failure(
                "while handling lines from {nick}", nick=participant.nick.display
            )
            participant.client.send(lines.INTERNAL_ERROR)

    def say_run(self, participant: Participant, room: Room, texts: list[str]) -> None:
        """
        Several plain lines in a row (one read's worth) to ``room``: what
        :meth:`say` does for each, but the room hears them as one entry,
        formatted and encoded in one go, so a pipelined or pasted burst
        costs one pass of the fan-out's Python per read, not per line.
        Members see exactly the lines :meth:`say` would have sent.  Only
        for a room of line users with no speech rules (:meth:`run` sends
        the others line by line).
        """
        participant.last_active = self._seconds()
        participant.said += len(texts)
        prefix = f"[{room.name.display}] <{participant.nick.display}> "
        data = (prefix + ("\r\n" + prefix).join(texts) + "\r\n").encode(
            "utf-8", "replace"
        )
        self._say_run_in(room, data, participant, len(texts))

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
        if recipient.remote and server.cluster is not None:
            server.cluster.private(participant, recipient, text)
        else:
            self.deliver(participant, recipient, text)

    def deliver(self, sender: Participant, recipient: Participant, text: str) -> None:
        """
        A private message to ``recipient``, a user of this node, in their
        format; ``sender`` may be a user of another node (``--cluster``).
        """
        server = self._server
        if server.outbox.busy:
            server.outbox.catch_up(recipient)
        fmt = wire_format_of(recipient)
        if fmt is None:
            recipient.client.send(lines.private_message(sender.nick.display, text))
        else:
            recipient.client.send_wire(  # type: ignore[attr-defined]
                fmt.render_private(sender, recipient, text)
            )
