"""Rate-limited logging: a flood of one kind of event is summed up, not written."""

from __future__ import annotations

from typing import cast

import pytest
from conftest import FakeClock, summaries
from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent
from twisted.python.failure import Failure

from twisted_chat.core.logs import LogLimiter, RateLimitedLogger


def recorder(events: list[LogEvent]) -> ILogObserver:
    return cast("ILogObserver", events.append)


def logger(
    limit: int = 5, window: float = 10.0
) -> tuple[RateLimitedLogger, list[LogEvent], FakeClock, LogLimiter]:
    clock = FakeClock()
    events: list[LogEvent] = []
    limiter = LogLimiter(limit=limit, window=window, clock=clock)
    return (
        RateLimitedLogger(observer=recorder(events), limiter=limiter),
        events,
        clock,
        limiter,
    )


def test_ten_thousand_refusals_are_a_bounded_number_of_events() -> None:
    """10,000 refusals in 30 s: K per window plus one summary per window."""
    limited, events, clock, limiter = logger(limit=20)
    for n in range(10_000):
        clock.now = 1000.0 + n * 0.003  # 30 s of them
        limited.warn(
            "refused connection peer={peer} reason={reason}", peer=n, reason="x"
        )
    limiter.flush(everything=True)
    # Three 10-second windows (and a sliver of a fourth): 20 each, one summary.
    assert len(events) <= 4 * 21
    written = [event for event in events if "suppressed" not in event]
    held = sum(int(event["suppressed"]) for event in summaries(events))
    assert len(written) + held == 10_000
    assert limiter.suppressed == held


def test_summary_says_how_many_what_and_the_last_one() -> None:
    """One line: the count, the window, the format and the last event in full."""
    limited, events, clock, _ = logger(limit=2)
    for n in range(7):
        limited.warn("refused connection peer={peer}", peer=f"tcp 192.0.2.{n}:5")
    assert len(events) == 2
    clock.now += 10
    limited.warn("refused connection peer={peer}", peer="tcp 192.0.2.99:5")
    summary = events[2]
    assert summary["log_level"] == LogLevel.warn
    assert formatEvent(summary) == (
        "suppressed 5 similar events in 10 s: refused connection peer={peer}; "
        "the last: refused connection peer=tcp 192.0.2.6:5"
    )
    # The new window lets the next one through.
    assert formatEvent(events[3]) == "refused connection peer=tcp 192.0.2.99:5"


def test_flush_writes_counts_of_windows_that_are_over() -> None:
    """A kind that stops being logged still gets its summary, from the timer."""
    limited, events, clock, limiter = logger(limit=1)
    limited.info("{nick} connected", nick="a")
    limited.info("{nick} connected", nick="b")
    limiter.flush()
    assert len(events) == 1  # the window is not over yet
    clock.now += 10
    limiter.flush()
    assert [event["suppressed"] for event in summaries(events)] == [1]
    limiter.flush(everything=True)
    assert len(summaries(events)) == 1  # counted once


def test_shutdown_flush_writes_what_is_still_in_its_window() -> None:
    """At shutdown nothing held back goes uncounted."""
    limited, events, clock, limiter = logger(limit=1)
    for _ in range(4):
        limited.info("{nick} quit", nick="a")
    clock.now += 2.5
    limiter.flush(everything=True)
    (summary,) = summaries(events)
    assert summary["suppressed"] == 3
    assert formatEvent(summary).startswith("suppressed 3 similar events in 2.5 s:")


def test_kinds_are_counted_apart_and_rare_events_pass() -> None:
    """A flood of one format does not hold back another, nor another module's."""
    limited, events, _, limiter = logger(limit=3)
    other = RateLimitedLogger("elsewhere", observer=recorder(events), limiter=limiter)
    for _ in range(100):
        limited.info("{nick} connected", nick="x")
    limited.info("reloaded settings from {config}", config="chat.toml")
    for _ in range(3):
        other.info("{nick} connected", nick="y")
    assert len(events) == 3 + 1 + 3


def test_a_class_attribute_logger_shares_one_limit_for_all_instances() -> None:
    """Per connection objects cannot each get a fresh allowance."""
    clock = FakeClock()
    events: list[LogEvent] = []
    limiter = LogLimiter(limit=2, clock=clock)

    class Connection:
        limited = RateLimitedLogger(observer=recorder(events), limiter=limiter)

    for _ in range(10):
        Connection().limited.warn("dropping slow reader")
    assert len(events) == 2
    assert events[0]["log_namespace"] == f"{__name__}.Connection"
    assert isinstance(Connection().limited, RateLimitedLogger)


def test_failures_are_limited_and_the_traceback_is_not_kept() -> None:
    """Failure traces count like any event; the summary holds no traceback."""
    limited, events, _, limiter = logger(limit=1)
    for _ in range(3):
        limited.failure(
            "while handling a line from {nick}", Failure(ValueError("boom")), nick="b"
        )
    assert len(events) == 1
    assert isinstance(events[0]["log_failure"], Failure)
    limiter.flush(everything=True)
    (summary,) = summaries(events)
    assert "log_failure" not in summary
    assert summary["log_level"] == LogLevel.critical


def test_the_module_name_is_the_callers() -> None:
    """Like Logger(), the namespace is the module that made the logger."""
    assert RateLimitedLogger().namespace == __name__


def test_summary_format_with_braces_is_not_formatted_twice() -> None:
    """The held-back format is a value in the summary, not part of its format."""
    limited, events, _, limiter = logger(limit=0)
    limited.warn("odd {{literal}} {x}", x=1)
    limiter.flush(everything=True)
    assert formatEvent(events[0]).startswith(
        "suppressed 1 similar events in 0 s: odd {{literal}} {x}; the last: odd "
        "{literal} 1"
    )


def test_the_table_of_kinds_is_bounded() -> None:
    """Formats made from data cannot grow the table without bound."""
    clock = FakeClock()
    events: list[LogEvent] = []
    limiter = LogLimiter(limit=1, clock=clock, max_kinds=10)
    limited = RateLimitedLogger(observer=recorder(events), limiter=limiter)
    for n in range(1000):
        made_from_data = f"event {n}"
        limited.info(made_from_data)
        limited.info(made_from_data)
    assert len(limiter._windows) <= 10
    limiter.flush(everything=True)
    held = sum(int(event["suppressed"]) for event in summaries(events))
    assert held == 1000


def test_a_failure_held_back_is_not_captured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Capturing a traceback costs; one that will not be written is not taken."""
    from twisted_chat.core import logs

    captured: list[Failure] = []

    def counting_failure() -> Failure:
        captured.append(Failure())
        return captured[-1]

    monkeypatch.setattr(logs, "Failure", counting_failure)
    limited, events, _, _ = logger(limit=1)
    for _ in range(5):
        try:
            int("not a number")
        except ValueError:
            limited.failure("while handling a line from {nick}", nick="b")
    assert len(captured) == 1
    assert len(events) == 1
    assert isinstance(events[0]["log_failure"].value, ValueError)


def test_the_summary_has_the_highest_level_held_back() -> None:
    """One kind at several levels: the summary is as loud as the loudest."""
    limited, events, _, limiter = logger(limit=1)
    for level in (LogLevel.info, LogLevel.error, LogLevel.warn, LogLevel.debug):
        limited.emit(level, "disk trouble on {path}", path="/var/lib/chat")
    limiter.flush(everything=True)
    (summary,) = summaries(events)
    assert summary["log_level"] == LogLevel.error
