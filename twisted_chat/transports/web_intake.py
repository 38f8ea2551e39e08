"""
A read's text messages judged together: the web front-end's counterpart of
the stream intake's fast way (:meth:`~twisted_chat.core.intake.LineIntake.
verdicts`).

A browser flat out sends many messages a read, one text frame each.
Taken one at a time (:meth:`~twisted_chat.transports.web_session.WebSession.
line_received`), each costs a chain of calls (the session's checks, the
clock, :func:`~twisted_chat.core.intake.judge`, the bucket) that a line of
the stream front-ends does not pay: they judge a read's lines in one go.
So here: when nothing is held and the bucket can pay for every message of
the read (or flood control is off), the verdicts :func:`judge` would give
one at a time (no message can find the bucket empty), in one loop and for
one charge; else one at a time, as before.  The order is
:func:`judge`'s: too long (refused, no token), flood, then decoding and
cleaning (blank once clean: paid, nothing said).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from twisted_chat.core.cleaning import clean_text
from twisted_chat.transports.web_session import MAX_FRAME

if TYPE_CHECKING:
    from twisted_chat.transports.web_session import WebSession

__all__ = ["take_read"]

#: A bucket's rounding slack (as the intake's).
_EPSILON: Final = 1e-9


def take_read(session: WebSession, lines: list[bytes]) -> None:
    """``lines``, whole text messages of one read (valid UTF-8), in order."""
    bucket = session.bucket
    now = session.factory.reactor.seconds()
    participant = session.participant
    if (
        session.holding
        or participant is None
        or (bucket is not None and len(lines) > bucket.level(now) + _EPSILON)
    ):
        for data in lines:
            session.line_received(data)
        return
    server = session.factory.server
    limit = server.settings.max_line
    receive = server.receive
    paid = len(lines)
    for data in lines:
        if session.closing:
            break  # a /quit, a kill: the rest goes with the connection
        if len(data) > limit:
            paid -= 1  # a refused line costs no token
            if len(data) > MAX_FRAME:
                session.too_big()
                break
            session.refuse_line()
            continue
        text = clean_text(data.decode("utf-8", "replace"))
        if not text or text.isspace():
            continue  # blank once clean: it has paid
        receive(participant, text)
        if text[0] == "/":
            session.after_command(participant)
    if bucket is not None:
        bucket.spend(now, paid)
