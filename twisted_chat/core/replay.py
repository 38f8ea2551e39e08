"""
Replaying a room's history: on ``/join`` and with ``/history [N]``.

Both are bounded (``HISTORY_LIMIT`` lines) and charged to the reply budget
(:mod:`twisted_chat.core.budget`), so joining and leaving a room, or asking for
its history, over and over cannot make the server send without end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted_chat.core import lines, listing
from twisted_chat.core.bounds import HISTORY_LIMIT
from twisted_chat.core.foreign import wire_format_of

if TYPE_CHECKING:
    from twisted_chat.core.budget import ReplyBudgets
    from twisted_chat.core.room import Participant, Room
    from twisted_chat.core.store import IMessageStore


class Replay:
    """
    Sends people the last messages of a room.

    :param store: where the messages are.
    :param budgets: what replays are charged to.
    :param seconds: the current time (replayed lines show their time).
    :param remember: gives the store a room's pending messages.
    """

    def __init__(
        self,
        store: IMessageStore,
        budgets: ReplyBudgets,
        seconds: Callable[[], float],
        remember: Callable[[Room, bytes], None],
    ) -> None:
        self._store = store
        self._budgets = budgets
        self._seconds = seconds
        self._remember = remember

    def on_join(self, participant: Participant, room: Room, count: int) -> None:
        """What a joiner sees of the room's past; skipped while over budget."""
        if count <= 0:
            return
        if self._budgets.over(participant):
            participant.client.send(
                lines.notice(
                    "History is not replayed now: you asked for a lot in a "
                    "short time; /history shows it later."
                )
            )
            return
        self._budgets.charge(participant, self.send(participant, room, count))

    def history(self, participant: Participant, room: Room, count: int) -> None:
        """``/history N`` (``count`` already defaulted; may be over the cap)."""
        self._budgets.refuse_if_over(participant)
        send = participant.client.send
        if count > HISTORY_LIMIT:
            send(
                lines.notice(f"/history shows at most the last {HISTORY_LIMIT} lines.")
            )
        replayed = self.send(participant, room, count)
        if not replayed:
            send(lines.notice(f"No history yet in {room.name.display}."))
        self._budgets.charge(participant, replayed)

    def send(self, participant: Participant, room: Room, count: int) -> int:
        """Send the last ``count`` messages (at most the cap) in one write."""
        if room.pending:
            # This turn's lines are not in the store yet; the reader must
            # see them (the replaying member got or will get none live).
            said = room.unstored()
            if said:
                self._remember(room, said)
        messages = self._store.recent(room.name.key, min(count, HISTORY_LIMIT))
        if messages:
            fmt = wire_format_of(participant)
            if fmt is not None:
                client: Any = participant.client
                client.send_wire(fmt.render_history(room, messages))
            else:
                participant.client.send(
                    b"".join(listing.history_reply(messages, room, self._seconds()))
                )
        return len(messages)
