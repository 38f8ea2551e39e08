"""
The chat rules: nicknames, rooms, who hears what.

Nothing here knows about sockets or the reactor.  Time comes from an injected
``seconds`` callable (``reactor.seconds`` in the daemon, ``Clock.seconds`` in
tests), participants are reached only through
:class:`~twisted_chat.core.interfaces.IChatClient`, and history through an optional
:class:`~twisted_chat.core.store.IMessageStore`.  This module owns the
commands' effects: it reads a cleaned line, decides what it means, and
hands the work to the modules below.

Rooms and the fan-out are in :mod:`twisted_chat.core.room` (imported here, so
``from twisted_chat.core.chat import Participant, Room`` works), joins and
departures in :mod:`~twisted_chat.core.membership`, the queue in
:mod:`~twisted_chat.core.outbox`, listings in :mod:`~twisted_chat.core.listing`, help
in :mod:`~twisted_chat.core.help` and every bound in :mod:`~twisted_chat.core.bounds`.

Order: what a room hears in a reactor turn goes out at its end, one write
per member.  A direct reply (an error, a listing) must not overtake a room
line said before it, so the recipient is first handed their pending room
lines (:meth:`Room.catch_up`) instead of every room being flushed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted_chat.core import account_commands, commands, lines, listing, topics
from twisted_chat.core import help as helptext
from twisted_chat.core.accounts import AccountCommands
from twisted_chat.core.bounds import (
    HISTORY_DEFAULT,
    LOOKED_AT_PER_LINE,
    MAX_ROOMS_PER_GROUP,
)
from twisted_chat.core.budget import ReplyBudgets
from twisted_chat.core.errors import BadUsage, ChatError
from twisted_chat.core.events import Quit
from twisted_chat.core.foreign import wire_format_of
from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.core.membership import Membership, current_room
from twisted_chat.core.moderation import ModerationCommands
from twisted_chat.core.names import RoomName
from twisted_chat.core.operators import OperatorCommands
from twisted_chat.core.outbox import Outbox
from twisted_chat.core.people import Directory
from twisted_chat.core.replay import Replay
from twisted_chat.core.room import Participant, Room
from twisted_chat.core.room_commands import MODERATION_COMMANDS
from twisted_chat.core.settings import Settings
from twisted_chat.core.speech import Speech

if TYPE_CHECKING:
    from twisted_chat.core.account_ports import AccountServices
    from twisted_chat.core.cluster_port import ClusterPort
    from twisted_chat.core.interfaces import IChatClient
    from twisted_chat.core.store import IMessageStore

__all__ = ["ChatServer", "Participant", "Room"]

_log = RateLimitedLogger()

_INTERNAL_ERROR = lines.INTERNAL_ERROR
_PONG = lines.notice("pong")
#: Commands whose room lines may wait for the end of the reactor turn.
_QUEUED = (commands.Say, commands.Me)


class ChatServer:
    """
    Every rule of the chat: one instance is shared by all transports.

    :param settings: the live settings; replace the attribute to reload.
    :param seconds: the current time, for topics and history.
    :param store: where room messages and topics are kept, if anywhere.
    :param defer: runs a callable once the current reactor turn is done
        (``lambda f: reactor.callLater(0, f)``).  With it, what a room hears
        in one turn goes out as one write per member instead of one per line
        per member; without it, every line goes out at once.
    :param call_later: runs a callable after a delay
        (``reactor.callLater``).  With it (and ``defer``), a busy room's
        membership notices wait up to ``NOTICE_DELAY`` seconds and go out
        together; without it, at the end of the turn.
    :param accounts: the account store and password hasher; without them
        (``--accounts off``) account commands are refused.
    """

    def __init__(
        self,
        settings: Settings,
        seconds: Callable[[], float],
        store: IMessageStore | None = None,
        defer: Callable[[Callable[[], None]], object] | None = None,
        call_later: Callable[[float, Callable[[], None]], object] | None = None,
        *,
        accounts: AccountServices | None = None,
    ) -> None:
        self.settings = settings
        self.seconds = seconds
        self.store = store
        self.call_later = call_later
        self.outbox = Outbox(self._remember, defer, call_later)
        self.budgets = ReplyBudgets(seconds)
        self._replay = (
            Replay(store, self.budgets, seconds, self._remember)
            if store is not None
            else None
        )
        self.participants: dict[str, Participant] = {}
        self.rooms: dict[str, Room] = {}
        self.shutting_down = False
        #: The other nodes of the cluster (``--cluster``), or None.
        self.cluster: ClusterPort | None = None
        # The per-address room cap goes with the per-address connection cap.
        self.membership = Membership(
            self.rooms,
            self._create_room,
            self.outbox,
            lambda: MAX_ROOMS_PER_GROUP if self.settings.max_per_ip else 0,
        )
        self.directory = Directory(self.participants, self.membership.tell_neighbours)
        self.accounts = AccountCommands(self, accounts)
        self.operators = OperatorCommands(self, accounts)
        self.moderation = ModerationCommands(self, accounts)  # sets membership.hooks
        self.speech = Speech(self)
        # Bound once: plain text is most of the traffic.
        self._say = self.speech.say
        #: Several plain lines in a row, as one read brings them (Speech.run).
        self.receive_run = self.speech.run

    # -- the transports' API -------------------------------------------------

    def connect(
        self,
        client: IChatClient,
        group: str = "",
        host: str = "",
        transport: str = "tcp",
        *,
        join_default: bool = True,
    ) -> Participant:
        """
        Welcome a new participant: guest nickname, MOTD, default room.

        A server-banned ``host`` gets one ``! banned:`` line and is closed:
        a ban must not make the server say more.  Its participant comes
        back already ``gone``, in no table, so the transport's later calls
        (``receive``, ``disconnect``) do nothing.

        :param group: the client's address group
            (:func:`twisted_chat.core.admission.address_group`), "" for none.
        :param host: the client's address, for server bans and operators.
        :param transport: ``tcp``, ``udp``, ... for ``/whois`` and ``/stats``.
        :param join_default: False for IRC clients, who choose their rooms.
        """
        participant = Participant(
            client=client,
            nick=self.directory.guest_nick(),
            group=group,
            host=host,
            transport=transport,
        )
        refusal = self.operators.refusal(host, None)
        if refusal is not None:
            participant.gone = True
            client.send(refusal)
            client.close()
            return participant
        self.participants[participant.nick.key] = participant
        self.budgets.hold(participant)
        self.operators.stats.connected(transport)
        if self.cluster is not None:
            self.cluster.connected(participant)
        nick = participant.nick.display
        client.send(
            lines.notice(
                f"Welcome to twisted-chat, {nick}! Pick a name with /nick NAME; "
                f"/help lists the commands."
            )
        )
        for text in self.settings.motd:
            client.send(lines.notice(text))
        _log.info("{nick} connected from {peer}", nick=nick, peer=client.peer)
        if self.settings.default_room and join_default:
            try:
                self._join(participant, self.settings.default_room, None)
            except ChatError as problem:
                client.send(lines.error(problem))
        return participant

    def receive(self, participant: Participant, text: str) -> None:
        """
        Act on one cleaned line from ``participant``.

        A rule broken gets an ``!`` line; a bug is logged with its traceback
        and the user gets a short apology, never the traceback.
        """
        if participant.gone:
            return
        try:
            if participant.prompt is not None:
                self.accounts.take_secret(participant, text)
                return
            if not text.startswith("/"):
                # Plain text is most of the traffic: skip the command grammar.
                self._say(participant, current_room(participant), text)
                return
            command = commands.parse_line(text)
            if (
                type(command) is commands.Ping
                and participant.transport == "tcp"
                and wire_format_of(participant) is None
            ):
                # The pong goes with the turn's room lines, in one write
                # (a line stream's; a datagram each would gain nothing).
                token = command.token
                pong = lines.notice(f"pong {token}") if token else _PONG
                self.outbox.reply_later(participant, pong)
                return
            if self.outbox.busy and not isinstance(command, _QUEUED):
                # Direct replies must not overtake room lines queued
                # earlier in this turn.
                self.outbox.catch_up(participant)
            self._dispatch(participant, command)
        except ChatError as problem:
            participant.client.send(lines.error(problem))
        except Exception:
            _log.failure(
                "while handling a line from {nick}", nick=participant.nick.display
            )
            participant.client.send(_INTERNAL_ERROR)

    def disconnect(self, participant: Participant, reason: str) -> None:
        """The participant is gone (quit, lost, expired); tell their rooms."""
        if participant.gone:
            return
        cluster = self.cluster
        if cluster is not None and not participant.remote:
            cluster.disconnecting(participant, reason)
        participant.gone = True
        self.accounts.forget(participant)
        nick = participant.nick.display
        if not self.shutting_down:
            self.membership.tell_neighbours(
                participant,
                lines.notice(f"{nick} quit ({reason})"),
                Quit(participant, nick, reason),
            )
        for room in list(participant.rooms.values()):
            self.membership.leave(participant, room)
        if self.participants.get(participant.nick.key) is participant:
            del self.participants[participant.nick.key]
        self.operators.stats.retire(participant.transport, participant.said)
        self.budgets.release(participant)
        if cluster is not None and not participant.remote:
            cluster.disconnected(participant)
        _log.info("{nick} quit: {reason}", nick=nick, reason=reason)

    def broadcast_notice(self, text: str) -> None:
        """Tell everybody something, such as that the server is shutting down."""
        self.flush()
        data = lines.notice(text)
        for participant in list(self.participants.values()):
            try:
                participant.client.send(data)
            except Exception:
                _log.failure("while telling {nick}", nick=participant.nick.display)

    def shut_down(self, text: str) -> None:
        """
        Tell everybody ``text`` and stop telling anyone about departures.

        The transports close every client after this; without it each one
        would hear a ``quit (connection lost)`` line for every other user
        before its own connection closes.
        """
        self.broadcast_notice(text)
        self.shutting_down = True

    def flush(self) -> None:
        """Hand out every room's queued lines now, and give them to the store."""
        self.outbox.flush()

    def status(self) -> str:
        """A one-line summary for ``STATUS=`` and logs, with history trouble."""
        here = len(self.participants)
        if self.cluster is not None:  # this node's own, not the others'
            here -= sum(1 for p in self.participants.values() if p.remote)
        clients = lines.counted(here, "client", "clients")
        text = f"{clients} in {lines.counted(len(self.rooms), 'room', 'rooms')}"
        trouble = self.store.trouble() if self.store is not None else None
        if trouble:
            text += f"; HISTORY NOT SAVED: {trouble}"
        return text

    # -- commands --------------------------------------------------------------

    def _dispatch(self, participant: Participant, command: commands.AnyCommand) -> None:
        match command:
            case commands.Say(text):
                self._say(participant, current_room(participant), text)
            case commands.SetNick(name):
                self.directory.rename(participant, name)
            case commands.Join(room, key):
                self._join(participant, room, key)
            case commands.Part(args):
                self.membership.part(participant, args)
            case commands.ListRooms(pattern):
                self._list_rooms(participant, pattern)
            case commands.Who(room):
                self._who(participant, room)
            case commands.Msg(target, text):
                self.speech.message(participant, target, text)
            case commands.Me(text):
                self.speech.act(participant, current_room(participant), text)
            case commands.Topic(text):
                topics.show_or_set(self, participant, text)
            case commands.Ping(token):
                participant.client.send(
                    lines.notice(f"pong {token}") if token else _PONG
                )
            case commands.Help(topic):
                self._help(participant, topic)
            case commands.Quit(reason):
                participant.client.send(lines.notice("Bye!"))
                self.disconnect(participant, reason or "leaving")
                participant.client.close()
            case commands.History(count):
                self._history(participant, count)
            case commands.Hello():
                raise BadUsage("/hello is the UDP handshake; you are already in.")
            case _ if isinstance(command, account_commands.ACCOUNT_COMMANDS):
                self.accounts.dispatch(participant, command)
            case _ if isinstance(command, account_commands.OPERATOR_COMMANDS):
                self.operators.dispatch(participant, command)
            case _ if isinstance(command, MODERATION_COMMANDS):
                self.moderation.dispatch(participant, command)

    def _remember(self, room: Room, said: bytes) -> None:
        """Hand what ``room`` heard this turn to the store, as it was sent.

        The store keeps the wire lines as they are and takes them apart
        only when they are read back, so history costs the fan-out one
        call per room and turn, not a record per message.
        """
        if self.store is not None and said:
            name = room.name
            self.store.append_lines(name.key, name.display, self.seconds(), said)

    def _join(self, participant: Participant, text: str, key: str | None) -> None:
        room = self.membership.join(participant, text, key)
        if room is not None and self._replay is not None:
            self._replay.on_join(participant, room, self.settings.history_on_join)

    def _create_room(self, name: RoomName) -> Room:
        room = Room(name=name)
        # Read on demand: only live rooms hold a topic in memory.
        saved = self.store.topic(name.key) if self.store is not None else None
        if saved is not None:
            room.topic, room.topic_by, room.topic_at = (
                saved.text,
                saved.set_by,
                saved.set_at,
            )
        self.rooms[name.key] = room
        if self.cluster is not None:
            self.cluster.room_made(room)
        return room

    def _list_rooms(self, participant: Participant, pattern: str | None) -> None:
        self.budgets.refuse_if_over(participant)
        rooms = self.rooms
        reply = listing.rooms_reply(rooms.values(), len(rooms), pattern)
        self._reply(participant, reply, looked_at=len(rooms))

    def _who(self, participant: Participant, text: str | None) -> None:
        room = self.membership.find(participant, text)
        self.budgets.refuse_if_over(participant)
        self._reply(participant, listing.who_reply(room), looked_at=len(room.members))

    def _history(self, participant: Participant, count: int | None) -> None:
        room = current_room(participant)
        if self._replay is None:
            participant.client.send(lines.notice("History is turned off here."))
            return
        default = self.settings.history_on_join or HISTORY_DEFAULT
        self._replay.history(participant, room, count or default)

    def _help(self, participant: Participant, topic: str | None) -> None:
        self.budgets.refuse_if_over(participant)
        reply = helptext.overview() if topic is None else helptext.explain(topic)
        self._reply(participant, reply)

    def _reply(
        self, participant: Participant, reply: list[bytes], looked_at: int = 0
    ) -> None:
        """Send a listing as one write; charge its lines and the entries it read."""
        participant.client.send(b"".join(reply))
        self.budgets.charge(participant, len(reply), looked_at // LOOKED_AT_PER_LINE)
