"""
The one intake (core/intake.py): the verdicts every transport acts on.

Sans-IO: bytes and explicit times in, verdicts out.  The transports' side of
the same rules (TCP pauses, UDP drops) is tested in test_tcp.py and
test_udp.py, and that both give a burst the same verdicts in test_udp.py.
"""

from __future__ import annotations

import pytest

from twisted_chat.core import lines
from twisted_chat.core.flood import TokenBucket
from twisted_chat.core.intake import (
    REFUSE,
    LineIntake,
    Verdict,
    Wait,
    datagram_verdicts,
    frame_datagram,
    judge,
    line_too_long,
    reloaded_bucket,
)
from twisted_chat.core.settings import Settings

LIMIT = 16
LONG = b"z" * (LIMIT + 1)

#: Lines that exercise every step: empty runs, blanks, a refused line,
#: controls that clean away, invalid UTF-8, and plain text.
MIXED = [
    b"a",
    LONG,
    b"",
    b"",
    b"  ",
    b"\x1b[2J",
    b"b\xc3c",
    b"/me waves",
    LONG,
    b"d",
    b"e",
    b"f",
]


def through_a_stream(
    lines: list[bytes], bucket: TokenBucket | None, now: float = 0.0
) -> list[Verdict]:
    intake = LineIntake(bucket)
    intake.feed(b"\r\n".join(lines) + b"\r\n", now)
    return list(intake.verdicts(now, LIMIT))


def through_a_datagram(
    lines: list[bytes], bucket: TokenBucket | None, now: float = 0.0
) -> list[Verdict]:
    framed = frame_datagram(b"\r\n".join(lines))
    return list(datagram_verdicts(framed, bucket, now, LIMIT))


@pytest.mark.parametrize("burst", [0, 1, 2, 3, 5, 8, 100])
def test_a_stream_and_a_datagram_judge_the_same_lines_alike(burst: int) -> None:
    """
    One order for both framings, whether the stream takes its fast path
    (the bucket pays for everything) or judges one line at a time.
    """
    stream_bucket = TokenBucket(burst, 1.0) if burst else None
    datagram_bucket = TokenBucket(burst, 1.0) if burst else None
    stream = through_a_stream(MIXED, stream_bucket)
    assert stream == through_a_datagram(MIXED, datagram_bucket)
    if stream_bucket is not None and datagram_bucket is not None:
        assert stream_bucket.tokens == pytest.approx(datagram_bucket.tokens)


def test_the_order_is_length_then_flood_then_cleaning() -> None:
    """
    A refused line costs no token; a line that cleans to nothing costs one
    and says nothing; the line that finds the bucket empty waits, and is last.
    """
    bucket = TokenBucket(3, 1.0)
    verdicts = through_a_datagram(MIXED, bucket)
    assert verdicts == [
        "a",
        REFUSE,
        # b"  " and the escape sequence paid the 2nd and 3rd tokens.
        Wait(1.0),
    ]
    assert bucket.tokens == 0.0


def test_without_flood_control_every_line_gets_its_verdict() -> None:
    """No bucket, no wait: the text is decoded (U+FFFD) and cleaned."""
    assert through_a_stream(MIXED, None) == [
        "a",
        REFUSE,
        "b\ufffdc",
        "/me waves",
        REFUSE,
        "d",
        "e",
        "f",
    ]


def test_a_refused_line_goes_even_when_the_bucket_is_empty() -> None:
    """It costs nothing, so an empty bucket does not hold it back."""
    bucket = TokenBucket(1, 1.0)
    assert judge(b"a", bucket, 0.0, LIMIT) == "a"
    assert judge(LONG, bucket, 0.0, LIMIT) is REFUSE
    assert isinstance(judge(b"b", bucket, 0.0, LIMIT), Wait)


def test_held_lines_come_back_whole_and_in_order() -> None:
    """After a wait the stream goes on from the line that waited."""
    intake = LineIntake(TokenBucket(2, 1.0))
    assert intake.feed(b"a\nb\nc\n" + LONG + b"\nd\ne", 0.0) is None
    assert list(intake.verdicts(0.0, LIMIT)) == ["a", "b", Wait(1.0)]
    assert list(intake.verdicts(1.0, LIMIT)) == ["c", REFUSE, Wait(1.0)]
    assert list(intake.verdicts(2.0, LIMIT)) == ["d"]
    assert intake.held == 1  # "e" has no line ending yet


def test_an_unfinished_stream_line_over_the_limit_is_refused_at_once() -> None:
    """It is never buffered; what follows it up to a line ending is dropped."""
    intake = LineIntake(None)
    intake.feed(LONG, 0.0)
    assert list(intake.verdicts(0.0, LIMIT)) == [REFUSE]
    assert intake.held == 0
    intake.feed(b"rest of it\nnext\n", 0.0)
    assert list(intake.verdicts(0.0, LIMIT)) == ["next"]


def test_telnet_negotiation_in_a_stream_is_charged() -> None:
    """64 bytes of it cost a token, and spending the bucket asks for a wait."""
    intake = LineIntake(TokenBucket(10, 5.0))
    wait = intake.feed(b"\xff\xf1" * 32 * 10, 0.0)
    assert isinstance(wait, Wait)
    assert wait.delay == pytest.approx(0.2)


def test_a_datagram_stands_alone() -> None:
    """
    No telnet state or partial line carries over, and the last line needs
    no line ending.
    """
    assert frame_datagram(b"one\rtwo\r\nthree\xff") == [b"one", b"two", b"three"]
    assert frame_datagram(b"\xfbfour") == [b"\xfbfour"]
    assert frame_datagram(b"\xff\xfd\x03five") == [b"five"]


def test_datagram_verdicts_judge_nothing_after_they_are_left() -> None:
    """A caller that stops (a /quit) has not paid for the lines after it."""
    bucket = TokenBucket(5, 1.0)
    verdicts = datagram_verdicts(frame_datagram(b"/quit\nb\nc"), bucket, 0.0, LIMIT)
    assert next(verdicts) == "/quit"
    assert bucket.tokens == 4.0


def test_the_refusal_text() -> None:
    """The same line-too-long error whatever the transport."""
    assert lines.error(line_too_long(1024)) == (
        b"! line-too-long: Lines are at most 1024 bytes; that one was not sent.\r\n"
    )


# -- a reload -------------------------------------------------------------------


def test_a_reload_retunes_the_bucket_and_keeps_its_tokens() -> None:
    """A reload must not hand out a fresh burst, nor keep the old numbers."""
    bucket = TokenBucket(10, 5.0)
    for _ in range(8):
        bucket.take(0.0)
    same = reloaded_bucket(bucket, Settings(flood_burst=20, flood_rate=1.0))
    assert same is bucket
    assert (bucket.burst, bucket.rate) == (20, 1.0)
    assert bucket.level(0.0) == pytest.approx(2.0)
    reloaded_bucket(bucket, Settings(flood_burst=1, flood_rate=1.0))
    assert bucket.level(0.0) == pytest.approx(1.0)


def test_a_reload_turns_flood_control_off_and_on() -> None:
    """Off: no bucket.  On again: a full one."""
    assert reloaded_bucket(TokenBucket(10, 5.0), Settings(flood_rate=0.0)) is None
    fresh = reloaded_bucket(None, Settings(flood_burst=4, flood_rate=2.0))
    assert fresh is not None
    assert (fresh.burst, fresh.rate, fresh.level(0.0)) == (4, 2.0, 4.0)
