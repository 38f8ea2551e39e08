"""
What nodes of a cluster tell each other through Redis, as bytes.

One message is a header line naming the node that sent it (and the room,
for what a room heard), then one JSON line per event: compact, so a
room's turn costs one publish of a few short lines, and plain JSON so an
operator can read the traffic with ``redis-cli subscribe``.  Events name
people by a user id that lives as long as the connection (``node/N``),
not by nickname: a rename in the same turn must not lose a message.

Anything that does not parse is dropped by the reader (:func:`decode`),
never raised: a node must not be brought down by another's message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, get_args

from twisted_chat.core.events import (
    Acted,
    Joined,
    Kicked,
    Left,
    Moderated,
    RoomEvent,
    RoomNotice,
    Said,
    TopicSet,
)
from twisted_chat.core.room import ELSEWHERE, Participant, Room
from twisted_chat.core.room_records import Change, ChangeKind

__all__ = [
    "Header",
    "change_of",
    "decode",
    "encode",
    "encode_event",
    "line",
    "person",
    "rules_line",
    "rules_of",
    "texts",
]

#: Header and events decoded: plain dicts of short keys (see :func:`encode_event`).
Header = dict[str, Any]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def line(obj: dict[str, Any]) -> bytes:
    """One JSON line."""
    return _dumps(obj).encode("utf-8") + b"\n"


def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
    """A message: its header line, then ``body`` (event lines)."""
    return line(header) + body


def encode_event(
    event: RoomEvent,
    sender: Participant | None,
    uid_of: Callable[[Participant], str],
) -> bytes:
    """
    One room event as a line, or b"" for what other nodes must not get
    again: what they said (``ELSEWHERE``), and quits and renames, which
    go to them once per person rather than once per room.
    """
    if sender is ELSEWHERE:
        return b""
    kind = type(event)
    if kind is Said:
        said: Any = event
        obj: dict[str, Any] = {
            "k": "say",
            "u": uid_of(said.who),
            "n": said.nick,
            "t": said.text,
        }
        if said.notice:
            obj["o"] = 1
        return line(obj)
    if kind is Acted:
        acted: Any = event
        return line(
            {"k": "act", "u": uid_of(acted.who), "n": acted.nick, "t": acted.text}
        )
    if kind is Joined:
        joined: Any = event
        return line({"k": "join", **person(joined.who, uid_of(joined.who))})
    if kind is Left:
        left: Any = event
        return line(
            {"k": "part", "u": uid_of(left.who), "n": left.nick, "t": left.reason}
        )
    if kind is Kicked:
        kicked: Any = event
        return line(
            {
                "k": "kick",
                "u": uid_of(kicked.who),
                "n": kicked.nick,
                "b": kicked.by_nick,
                "t": kicked.reason,
            }
        )
    if kind is TopicSet:
        topic: Any = event
        return line(
            {"k": "topic", "u": uid_of(topic.who), "n": topic.nick, "t": topic.text}
        )
    if kind is Moderated:
        moderated: Any = event
        change = moderated.change
        return line(
            {
                "k": "mod",
                "t": moderated.text,
                "b": moderated.by_nick,
                "ck": change.kind,
                "ct": change.target,
                "cv": change.value,
                "cr": change.reason,
            }
        )
    if kind is RoomNotice:
        notice: Any = event
        return line({"k": "note", "t": notice.text})
    return b""  # Quit, Renamed: told once per person (ClusterNode)


def rules_of(room: Room, uid_of: Callable[[Participant], str]) -> dict[str, Any]:
    """
    A room's moderation as it stands: the stored form (bans, mutes,
    settings, a registered room's accounts) and who is an operator or
    voiced now, so every node decides the next join or message alike;
    {} for a room nobody moderates.
    """
    rules = room.rules
    if rules is None:
        return {}
    members = room.members
    return {
        "k": "rules",
        "d": rules.to_dict(),
        "ops": [uid_of(p) for p in rules.operators if p in members],
        "v": [uid_of(p) for p in rules.voiced if p in members],
    }


def rules_line(room: Room, uid_of: Callable[[Participant], str]) -> bytes:
    """:func:`rules_of` as a line (b"" for none), after a turn's changes."""
    rules = rules_of(room, uid_of)
    return line(rules) if rules else b""


def person(participant: Participant, uid: str) -> dict[str, Any]:
    """What another node needs to show a user of this one (``/whois``, bans)."""
    return {
        "u": uid,
        "n": participant.nick.display,
        "h": participant.host,
        "tr": participant.transport,
        "a": participant.account,
        "op": participant.oper,
    }


def decode(data: bytes) -> tuple[Header, list[dict[str, Any]]] | None:
    """A message's header and events; None for anything malformed."""
    try:
        text = data.decode("utf-8")
        head, _, body = text.partition("\n")
        header = json.loads(head)
        # Event lines hold no raw newline (JSON escapes them): one array,
        # one parse for the whole batch.
        body = body.rstrip("\n")
        events = json.loads("[" + body.replace("\n", ",") + "]") if body else []
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not all(isinstance(e, dict) for e in events):
        return None
    return header, events


def texts(value: object) -> list[str]:
    """The strings of a decoded list (anything else left out)."""
    return (
        [item for item in value if isinstance(item, str)]
        if isinstance(value, list)
        else []
    )


def change_of(event: dict[str, Any]) -> Change | None:
    """The change a ``mod`` event names (for IRC's MODE lines), if it reads."""
    kind: Any = event.get("ck")
    if kind not in get_args(ChangeKind):
        return None
    return Change(
        kind, _str(event.get("ct")), _str(event.get("cv")), _str(event.get("cr"))
    )


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""
