"""
The values of room moderation: a room's settings, a change an operator
(or the clock) made, and the ``*`` notice that announces it.

Apart from :mod:`twisted_chat.core.room_rules` (which holds and checks them)
so that every text a room hears about its rules is in one place, where a
reader can check them against PROTOCOL.md's "Room moderation", and so that
the rules module stays about decisions.  Texts are plain ``str`` without the
``* `` prefix: the caller wraps them with :func:`twisted_chat.core.lines.notice`.

A room's key is a shared word, not an account password, but it is still
never put in a notice or a usage error: a room hears that a key was set,
and ``/room`` shows it to operators only (:meth:`RoomSettings.describe`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Literal

from attrs import define, field, frozen

from .ban_listing import ban_listing
from .bans import Ban
from .errors import BadUsage

if TYPE_CHECKING:
    from .room import Participant

__all__ = [
    "KEY_MAX",
    "LIMIT_MAX",
    "SETTING_NAMES",
    "Change",
    "ChangeKind",
    "RoomSettings",
    "SettingValue",
    "invitation",
    "kick_notices",
    "notice_for",
    "parse_setting",
    "room_ban_listing",
    "unchanged",
]

#: The most members ``/room limit`` takes (the server's default client cap).
LIMIT_MAX: Final = 10_000
#: The longest room key, in characters.
KEY_MAX: Final = 32
#: The settings ``/room NAME VALUE`` changes, as users spell them.
SETTING_NAMES: Final = ("moderated", "invite-only", "topic-lock", "limit", "key")
FLAGS: Final = ("moderated", "invite-only", "topic-lock")

ChangeKind = Literal[
    "op",
    "deop",
    "voice",
    "devoice",
    "ban",
    "unban",
    "mute",
    "unmute",
    "invite",
    "set",
    "register",
    "drop",
    "ban-ended",
    "mute-ended",
    "auto-op",
]
#: A setting's new value as :func:`parse_setting` gives it.
SettingValue = bool | int | str | None


def parse_setting(name: str, value: str) -> tuple[str, SettingValue]:
    """
    ``/room NAME VALUE``: the setting's canonical name and its new value
    (None: ``off`` for ``limit`` and ``key``).

    :raises BadUsage: an unknown setting or a value it does not take; the
        text never repeats a key that was given.
    """
    setting, word = name.lower(), value.strip()
    off = word.lower() == "off"
    if setting in FLAGS:
        if off or word.lower() == "on":
            return setting, not off
        raise BadUsage(f"Say /room {setting} on, or /room {setting} off.")
    if setting == "limit":
        if off:
            return setting, None
        if word.isascii() and word.isdigit() and 1 <= int(word[:6]) <= LIMIT_MAX:
            return setting, int(word)
        raise BadUsage(
            f"Say /room limit N (N members, 1 to {LIMIT_MAX:,}), or /room limit off."
        )
    if setting == "key":
        if off:
            return setting, None
        if 0 < len(word) <= KEY_MAX and word.isprintable() and _one_word(word):
            return setting, word
        raise BadUsage(
            f"Say /room key KEY (one word of at most {KEY_MAX} characters, "
            "not starting with #), or /room key off."
        )
    raise BadUsage(
        f"{name[:30]!r} is not a room setting; the settings are "
        f"{', '.join(SETTING_NAMES)}."
    )


def _one_word(word: str) -> bool:
    # A key never starts with "#", so "/join #a #b" stays two rooms.
    return not word.startswith("#") and not any(char.isspace() for char in word)


@define(slots=True)
class RoomSettings:
    """What ``/room`` sets; the defaults are a room anyone may join and speak in."""

    moderated: bool = False
    invite_only: bool = False
    topic_lock: bool = False
    limit: int | None = None
    key: str | None = None

    @property
    def default(self) -> bool:
        """Whether nothing is set."""
        return self == RoomSettings()

    def value(self, setting: str) -> SettingValue:
        """The value of a canonical setting name (see :data:`SETTING_NAMES`)."""
        value: SettingValue = getattr(self, setting.replace("-", "_"))
        return value

    def apply(self, setting: str, value: SettingValue) -> bool:
        """Set one setting; whether that changed it."""
        if setting not in SETTING_NAMES:
            raise ValueError(f"no room setting {setting!r}")
        if self.value(setting) == value:
            return False
        setattr(self, setting.replace("-", "_"), value)
        return True

    def describe(self, show_key: bool) -> str:
        """``moderated off, invite-only on, topic-lock off, limit 20, key set``."""
        parts = [f"{flag} {_on_off(self.value(flag))}" for flag in FLAGS]
        parts.append(f"limit {self.limit}" if self.limit is not None else "no limit")
        if self.key is None:
            parts.append("no key")
        else:
            parts.append(f"key {self.key}" if show_key else "key set")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, SettingValue]:
        """As plain values, by the names users type."""
        return {setting: self.value(setting) for setting in SETTING_NAMES}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RoomSettings:
        """Read back :meth:`to_dict`; a value that no longer parses is left default."""
        settings = cls()
        for setting in SETTING_NAMES:
            stored = data.get(setting)
            if stored is None or stored is False:
                continue
            text = "on" if stored is True else str(stored)
            try:
                _, value = parse_setting(setting, text)
            except BadUsage:
                continue
            if isinstance(stored, bool) == isinstance(value, bool):
                settings.apply(setting, value)
        return settings


def _on_off(value: SettingValue) -> str:
    return "on" if value else "off"


@frozen
class Change:
    """
    What one operator action (or the clock) changed, for the room's notice
    (:func:`notice_for`) and the audit log.

    :ivar target: a nickname, a ban pattern's text, or a setting's name.
    :ivar value: a setting's new value (``on``, ``off``, ``20``; ``set`` for
        a key, never the key), a ban's or mute's duration (``30m``; "" for
        until lifted), or the founder account of ``register``.
    :ivar kicked: for ``ban``, the members it matches, for the caller to kick.
    :ivar banned: for ``invite``, the room ban the invitee is under (an
        invitation does not lift a ban), so the inviter can be told.
    """

    kind: ChangeKind
    target: str
    value: str = ""
    reason: str = ""
    replaced: bool = False
    # Participants' reprs are long and name their addresses: not in logs.
    kicked: tuple[Participant, ...] = field(default=(), repr=False)
    banned: Ban | None = None


def notice_for(change: Change, by_nick: str, room: str) -> str:
    """
    The notice everyone in ``room`` sees for ``change``, naming ``by_nick``
    (ignored for what the clock did: ``ban-ended``, ``mute-ended``, ``auto-op``).
    """
    kind, target, value = change.kind, change.target, change.value
    why = f" ({change.reason})" if change.reason else ""
    texts: dict[str, str] = {
        "op": f"{by_nick} made {target} an operator of {room}",
        "deop": f"{by_nick} took operator status in {room} from {target}",
        "voice": f"{by_nick} gave {target} a voice in {room}",
        "devoice": f"{by_nick} took the voice in {room} from {target}",
        "unban": f"{by_nick} lifted the ban on {target} in {room}",
        "unmute": f"{by_nick} unmuted {target} in {room}",
        "invite": f"{by_nick} invited {target} to {room}",
        "register": f"{by_nick} registered {room}; its founder is account {value}",
        "drop": f"{by_nick} dropped the registration of {room}",
        "ban-ended": f"The ban on {target} in {room} has ended",
        "mute-ended": f"{target} is no longer muted in {room}",
        "auto-op": f"{target} is now an operator of {room} (its last operator left)",
    }
    if kind == "ban":
        how_long = f"for {value}" if value else "until lifted"
        return f"{by_nick} banned {target} from {room} {how_long}{why}"
    if kind == "mute":
        how_long = f"for {value}" if value else "until unmuted"
        return f"{by_nick} muted {target} in {room} {how_long}"
    if kind == "set":
        return _setting_notice(target, value, by_nick, room)
    return texts[kind]


def _setting_notice(setting: str, value: str, by_nick: str, room: str) -> str:
    if setting == "limit":
        if value == "off":
            return f"{by_nick} removed the member limit of {room}"
        return f"{by_nick} limited {room} to {value} members"
    if setting == "key":
        if value == "off":
            return f"{by_nick} removed the key of {room}"
        return f"{by_nick} set a key on {room}; joining needs /join {room} KEY"
    return f"{by_nick} turned {setting} {value} in {room}"


def kick_notices(nick: str, by_nick: str, room: str, reason: str) -> tuple[str, str]:
    """What the room sees of a kick (or a ban's), and what the kicked member sees."""
    why = f" ({reason})" if reason else ""
    return (
        f"{nick} was kicked from {room} by {by_nick}{why}",
        f"You were kicked from {room} by {by_nick}{why}",
    )


def invitation(by_nick: str, room: str) -> str:
    """What the invitee is told (``/invite NICK``: "NICK is told")."""
    return f"{by_nick} invites you to {room}; /join {room} to accept."


def room_ban_listing(
    bans: list[Ban], room: str, now: float, shown_max: int
) -> list[str]:
    """``/bans``' lines (:func:`~twisted_chat.core.ban_listing.ban_listing`)."""
    return ban_listing(
        bans,
        now,
        shown_max,
        kind=("ban", "bans"),
        where=f" in {room}",
        empty=f"No bans in {room}.",
        unban="/unban",
    )


#: What an operator is told when a command changed nothing.
_UNCHANGED: Final = {
    "op": "{nick} is an operator of {room} already.",
    "deop": "{nick} is not an operator of {room}.",
    "voice": "{nick} has a voice in {room} already.",
    "devoice": "{nick} has no voice in {room}.",
    "unmute": "{nick} is not muted in {room}.",
    "unban": "There is no ban on {nick} in {room}.",
}


def unchanged(kind: str, nick: str, room: str) -> str:
    """What an operator is told when ``kind`` (``op``, ``unban``...) changed nothing."""
    text = _UNCHANGED.get(kind, "Nothing changed in {room}: it was so already.")
    return text.format(nick=nick, room=room)
