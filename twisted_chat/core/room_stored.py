"""
A room's rules as read back from storage: what a stored row still holds
that makes sense today.

Apart from the live tables (:mod:`twisted_chat.core.room_tables`) because
reading is forgiving in a way nothing else is: a row written by an older
version, or damaged, loses only its bad records (each logged), never the
room, and bans and mutes that ended while the daemon was down are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from attrs import define, field
from twisted.logger import Logger

from .bans import Ban
from .errors import ChatError
from .names import name_key
from .room_records import RoomSettings
from .room_tables import Mute

__all__ = ["StoredRules"]

_log = Logger(namespace="twisted_chat.room_rules")
_T = TypeVar("_T")


@define
class StoredRules:
    """The persistent part of a room's rules, as read back from plain values."""

    founder: str | None = None
    founder_name: str = ""
    operator_accounts: dict[str, str] = field(factory=dict)
    settings: RoomSettings = field(factory=RoomSettings)
    bans: list[Ban] = field(factory=list)
    mutes: list[Mute] = field(factory=list)

    @classmethod
    def parse(
        cls, data: Mapping[str, object], room: str, now: float, operators_max: int
    ) -> StoredRules:
        """
        What ``data`` holds that still makes sense: unknown keys, records of
        the wrong shape and bans or mutes ended by ``now`` are left out (the
        bad ones logged).  Account keys are derived again from the names.
        """
        stored = cls()
        founder = data.get("founder")
        if isinstance(founder, str) and founder:
            stored.founder, stored.founder_name = name_key(founder), founder
        for name in _list(data.get("operators"))[:operators_max]:
            if isinstance(name, str) and name and name_key(name) != stored.founder:
                stored.operator_accounts[name_key(name)] = name
        settings = data.get("settings")
        if isinstance(settings, Mapping):
            stored.settings = RoomSettings.from_dict(settings)
        for row in _list(data.get("bans")):
            ban = _read(Ban.from_dict, row, room)
            if ban is not None and not ban.expired(now):
                stored.bans.append(ban)
        for row in _list(data.get("mutes")):
            mute = _read(Mute.from_dict, row, room)
            if (
                mute is not None
                and mute.pattern is not None
                and mute.pattern.kind != "network"
                and not mute.expired(now)
            ):
                stored.mutes.append(mute)
        return stored


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _read(
    read: Callable[[Mapping[str, object]], _T], row: object, room: str
) -> _T | None:
    if not isinstance(row, Mapping):
        _log.warn(
            "a stored rule of {room} is not a record: {row!r}", room=room, row=row
        )
        return None
    try:
        return read(row)
    except (ChatError, ValueError, KeyError, TypeError) as error:
        _log.warn(
            "a stored rule of {room} was left out ({error}): {row!r}",
            room=room,
            error=error,
            row=dict(row),
        )
        return None
