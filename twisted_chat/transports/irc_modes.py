"""
IRC channel modes as the room moderation commands they stand for.

``MODE #dev +o-v alice bob`` is ``/op alice`` then ``/devoice bob`` in
``#dev``: the core decides (who may, what is valid) and announces, and IRC
clients see the change as the room's notice.  The modes are those
PROTOCOL.md lists for IRC: ``o v`` (prefixes), ``b`` (bans), ``m i t``
(flags), ``l`` and ``k`` (with an argument when set, ``k`` also when
unset, as RFC 2811 has it).  At most :data:`MODES_PER_LINE` changes with
an argument in one ``MODE`` (ISUPPORT ``MODES``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["MODES_PER_LINE", "mode_lines"]

#: Changes with an argument one MODE may make (ISUPPORT MODES).
MODES_PER_LINE: Final = 4

_FLAGS: Final = {"m": "moderated", "i": "invite-only", "t": "topic-lock"}
_PEOPLE: Final = {
    ("+", "o"): "/op",
    ("-", "o"): "/deop",
    ("+", "v"): "/voice",
    ("-", "v"): "/devoice",
    ("+", "b"): "/ban",
    ("-", "b"): "/unban",
}
#: Modes servers set by default that mean nothing here (no outside messages:
#: only members speak in a room; no secret rooms): accepted and ignored.
_IGNORED: Final = frozenset("nsp")


def mode_lines(modes: str, args: tuple[str, ...]) -> list[str | None]:
    """
    The line commands ``modes`` (``+o-v``) with ``args`` stand for; None
    for a mode letter we do not know (the caller answers 472 for it).
    """
    out: list[str | None] = []
    sign = "+"
    queue = list(args)
    with_argument = 0
    for letter in modes:
        if letter in "+-":
            sign = letter
            continue
        if letter in _FLAGS:
            out.append(f"/room {_FLAGS[letter]} {'on' if sign == '+' else 'off'}")
        elif (sign, letter) in _PEOPLE or letter in "lk":
            needs = letter != "l" or sign == "+"
            if needs and not queue:
                continue  # a missing argument: nothing to do (as servers do)
            with_argument += 1
            if with_argument > MODES_PER_LINE:
                break
            arg = queue.pop(0) if needs else ""
            if letter == "l":
                out.append(f"/room limit {arg}" if sign == "+" else "/room limit off")
            elif letter == "k":
                out.append(f"/room key {arg}" if sign == "+" else "/room key off")
            else:
                out.append(f"{_PEOPLE[sign, letter]} {arg}")
        elif letter not in _IGNORED:
            out.append(None)
    return out
