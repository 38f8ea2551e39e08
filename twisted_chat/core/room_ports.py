"""
What the core asks of the registered-rooms store (issue 14).

A registered room (``/room register``) outlives its members and a
restart: its founder, topic and rules (operators by account, settings,
bans, mutes with their expiry: `twisted_chat.core.room_rules`' plain
form) are kept by the storage layer (`twisted_chat.accounts.rooms`, in
the accounts file).  The seam is declared here, as the account store's
is (`twisted_chat.core.account_ports`), because the core calls it and
may import no other layer.

Like `AccountStore`, a `RoomStore` holds everything in memory: a change
is seen by the next look-up at once and written later; ``done`` is told
on a later reactor turn whether the write was kept, and a failed write
is undone in memory.  Changes to one room made before its previous write
was taken by the writer are folded into one write (the last state wins,
every ``done`` gets that write's answer), so a burst of ``/ban`` costs a
few writes, not one each, and the queue holds at most one write a room.

The rules are opaque here: any JSON object up to `MAX_RULES_BYTES`
encoded.  The store checks that bound and that it is JSON (a caller's
bug otherwise: ``ValueError``), never what it means.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import attrs

from twisted_chat.core.account_ports import Refusal

__all__ = [
    "KEEP",
    "MAX_RULES_BYTES",
    "Keep",
    "Refusal",
    "RegisteredRoom",
    "RoomStore",
    "RoomTopic",
    "check_rules",
    "encode_rules",
]

#: The most bytes a room's rules take as JSON.  A room's ban list holds up
#: to a thousand bans (`twisted_chat.core.bans.BAN_LIST_SIZE`), each with a
#: reason of up to a line (about a kilobyte): 64 KiB would refuse a full
#: list, 2 MiB takes it with room for the mutes and operators.
MAX_RULES_BYTES: Final = 2 * 1024 * 1024
#: The longest topic text kept (characters); longer is the caller's bug.
MAX_TOPIC_CHARS: Final = 4096


class Keep(enum.Enum):
    """The type of `KEEP`: "leave this field as it is" in `RoomStore.update`."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


def encode_rules(rules: Mapping[str, Any]) -> str:
    """``rules`` as the JSON text the store keeps.

    :raises ValueError: not a JSON object with string keys, NaN or
        infinity inside, or more than `MAX_RULES_BYTES` encoded.
    """
    if not isinstance(rules, Mapping) or not all(isinstance(k, str) for k in rules):
        raise ValueError("a room's rules are a mapping with string keys")
    try:
        text = json.dumps(
            rules, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"a room's rules must be plain JSON: {e}") from None
    if len(text) > MAX_RULES_BYTES // 4 and len(text.encode()) > MAX_RULES_BYTES:
        raise ValueError(f"a room's rules take at most {MAX_RULES_BYTES} bytes as JSON")
    return text


def check_rules(rules: Mapping[str, Any]) -> dict[str, Any]:
    """A private copy of ``rules`` (see `encode_rules` for what is refused)."""
    copy: dict[str, Any] = json.loads(encode_rules(rules))
    return copy


def _check_number(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be finite")


def _check_text(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{attribute.name} must be text, not {type(value).__name__}")


def _check_topic_text(_: object, __: attrs.Attribute[Any], value: str) -> None:
    if len(value) > MAX_TOPIC_CHARS:
        raise ValueError(f"a topic is at most {MAX_TOPIC_CHARS} characters")


@attrs.frozen
class RoomTopic:
    """A registered room's topic: what, who set it (a nick), when."""

    text: str = attrs.field(validator=[_check_text, _check_topic_text])
    set_by: str = attrs.field(validator=_check_text)
    set_at: float = attrs.field(validator=_check_number)


def _check_topic(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, RoomTopic):
        raise ValueError(f"{attribute.name} must be a RoomTopic or None")


@attrs.frozen
class RegisteredRoom:
    """
    One registered room as kept.

    :ivar key: the room name's key (`twisted_chat.core.names.RoomName.key`,
        with its ``#``), what rooms are found by.
    :ivar name: the display spelling, ``#Lobby``.
    :ivar founder: the founder's account key (`Account.key`).
    :ivar created_at: when it was registered (Unix seconds).
    :ivar topic: its topic, or None.
    :ivar rules: the room's rules in plain form (`RoomRules.to_dict`): a
        private copy, checked by `check_rules`; do not change it.
    """

    key: str = attrs.field(validator=_check_text)
    name: str = attrs.field(validator=_check_text)
    founder: str = attrs.field(validator=_check_text)
    created_at: float = attrs.field(validator=_check_number)
    topic: RoomTopic | None = attrs.field(default=None, validator=_check_topic)
    rules: Mapping[str, Any] = attrs.field(
        factory=dict, converter=check_rules, repr=False
    )


class RoomStore(Protocol):
    """
    The registered rooms, all in memory; changes apply at once, written later.

    Every method runs on the reactor thread.  ``done`` (when given) is told
    on a later reactor turn whether the write was kept, never before the
    method returned; a refused change writes nothing and never calls it.
    """

    def get(self, key: str) -> RegisteredRoom | None:
        """The registered room whose name key is ``key`` (`RoomName.key`)."""

    def __len__(self) -> int:
        """How many rooms are registered."""

    def all(self) -> list[RegisteredRoom]:
        """Every registered room, by key (for ``/rooms`` and the start)."""

    def founded_by(self, account_key: str) -> list[RegisteredRoom]:
        """The rooms whose founder is ``account_key``, oldest first."""

    def register(
        self, room: RegisteredRoom, done: Callable[[bool], None] | None = None
    ) -> RegisteredRoom | Refusal:
        """Keep ``room`` (EXISTS, FULL, TOO_MANY_FOUNDED, CLOSED)."""

    def update(
        self,
        key: str,
        *,
        rules: Mapping[str, Any] | Keep = KEEP,
        topic: RoomTopic | Keep | None = KEEP,
        done: Callable[[bool], None] | None = None,
    ) -> RegisteredRoom | Refusal:
        """Replace the rules and/or the topic (NO_SUCH_ROOM, CLOSED).

        :raises ValueError: ``rules`` that `check_rules` refuses (nothing
            is changed).
        """

    def drop(
        self, key: str, done: Callable[[bool], None] | None = None
    ) -> RegisteredRoom | Refusal:
        """Forget the room; returns what was dropped (NO_SUCH_ROOM, CLOSED)."""

    def close(self) -> None:
        """Refuse further changes; what is queued is still written."""
