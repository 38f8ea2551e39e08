"""ClusterUrl (issue 19): the --cluster URL is checked when the daemon starts.

A typo must be a clear error naming the form, never a node that reconnects
to nowhere, and the password must never show in what is logged.
"""

from __future__ import annotations

import pytest

from twisted_chat.cluster.url import ClusterUrl


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://127.0.0.1", ClusterUrl("127.0.0.1", 6379, 0, None, False)),
        ("redis://localhost:7000/3", ClusterUrl("localhost", 7000, 3, None, False)),
        ("redis://h/", ClusterUrl("h", 6379, 0, None, False)),
        ("rediss://h:6380/1", ClusterUrl("h", 6380, 1, None, True)),
        ("redis://:s3cret@h:1/2", ClusterUrl("h", 1, 2, "s3cret", False)),
        ("redis://:p%40ss%2Fw@h", ClusterUrl("h", 6379, 0, "p@ss/w", False)),
        ("redis://[::1]:6380/0", ClusterUrl("::1", 6380, 0, None, False)),
        ("  redis://h  ", ClusterUrl("h", 6379, 0, None, False)),
    ],
)
def test_parse(text: str, expected: ClusterUrl) -> None:
    assert ClusterUrl.parse(text) == expected


PASSWORD = "pw"  # noqa: S105 - a test password


def test_password_apart_is_used_when_the_url_has_none() -> None:
    assert ClusterUrl.parse("redis://h", password=PASSWORD).password == PASSWORD
    assert ClusterUrl.parse("redis://:pw@h", password=PASSWORD).password == PASSWORD


def test_two_different_passwords_are_refused() -> None:
    with pytest.raises(ValueError, match="two different cluster passwords"):
        ClusterUrl.parse("redis://:a@h", password=PASSWORD)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("http://h", "scheme"),
        ("h:6379", "scheme"),
        ("", "scheme"),
        ("redis://", "no host"),
        ("redis://h:port", "Port could not be cast"),
        ("redis://h:70000", "out of range"),
        ("redis://h:0", "port 0"),
        ("redis://h/x", "database must be a number"),
        ("redis://h/-1", "database must be a number"),
        ("redis://h/1/2", "database must be a number"),
        ("redis://h?db=1", "query"),
        ("redis://h#x", "fragment"),
        ("redis://user:pw@h", "user name"),
    ],
)
def test_bad_urls_say_why_and_the_form(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        ClusterUrl.parse(text)
    assert "redis://[:PASSWORD@]HOST[:PORT][/DB]" in str(caught.value)


def test_errors_do_not_show_the_password() -> None:
    with pytest.raises(ValueError) as caught:
        ClusterUrl.parse("redis://:hunter2@h/x")
    assert "hunter2" not in str(caught.value)
    assert "***@h" in str(caught.value)


def test_redacted() -> None:
    assert ClusterUrl.parse("redis://:pw@h:1/2").redacted() == "redis://:***@h:1/2"
    assert ClusterUrl.parse("rediss://h").redacted() == "rediss://h:6379/0"
    assert ClusterUrl.parse("redis://[::1]").redacted() == "redis://[::1]:6379/0"
    assert "hunter2" not in repr(ClusterUrl.parse("redis://:hunter2@h"))
