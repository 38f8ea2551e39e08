"""
The IRC codec (transports/irc_wire.py): parse, format, the fast PRIVMSG
and the framer, on plain bytes.

Cases follow the Modern IRC client protocol ("Message format"), the IRCv3
message-tags escaping rules, and irctest's length tests (Ergo's numbers).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_chat.transports import irc_wire
from twisted_chat.transports.irc_message import IrcMessage
from twisted_chat.transports.irc_wire import (
    BAD_CHARACTER,
    BAD_COMMAND,
    EMPTY,
    INPUT_TOO_LONG,
    MAX_LINE_BYTES,
    NO_COMMAND,
    TAGS_TOO_LONG,
    TOO_LONG,
    IrcLineBuffer,
    IrcParseError,
    cut_utf8,
    escape_tag_value,
    format_tags,
    parse,
    privmsg_bytes,
    unescape_tag_value,
)

SOURCE = "alice!~alice@abcdefgh.ijklmnop.tc"


def reason(line: bytes) -> str:
    with pytest.raises(IrcParseError) as caught:
        parse(line)
    return caught.value.reason


# -- parse ---------------------------------------------------------------------


def test_a_full_message() -> None:
    message = parse(b"@id=1;+draft/x :nick!u@h privmsg #chan :hello  there ")
    assert message == IrcMessage(
        "PRIVMSG",
        ("#chan", "hello  there "),
        "nick!u@h",
        (("id", "1"), ("+draft/x", "")),
    )


@pytest.mark.parametrize(
    ("line", "params"),
    [
        (b"JOIN #chan", ("#chan",)),
        (b"JOIN :#chan", ("#chan",)),
        (b"AWAY", ()),
        (b"AWAY ", ()),
        (b"PRIVMSG #a :", ("#a", "")),
        (b"PRIVMSG #a ::-)", ("#a", ":-)")),
        (b"  USER   u  0   *  :Real  Name", ("u", "0", "*", "Real  Name")),
        (b"432  #momo :Bad: nick", ("#momo", "Bad: nick")),
    ],
)
def test_parameters_as_servers_split_them(line: bytes, params: tuple[str, ...]) -> None:
    assert parse(line).params == params


def test_numerics_and_the_source() -> None:
    message = parse(b":irc.example 001 bob :Welcome")
    assert (message.command, message.source) == ("001", "irc.example")


def test_the_fifteenth_parameter_is_the_rest_of_the_line() -> None:
    words = " ".join(str(n) for n in range(1, 18))
    message = parse(f"CMD {words}  end".encode())
    assert len(message.params) == 15
    assert message.params[:14] == tuple(str(n) for n in range(1, 15))
    assert message.params[14] == "15 16 17  end"


def test_invalid_utf8_becomes_the_replacement_character() -> None:
    assert parse(b"PRIVMSG #a :caf\xe9 \xff").params[1] == "caf\ufffd \ufffd"


@pytest.mark.parametrize("line", [b"", b" ", b"   \t "])
def test_empty(line: bytes) -> None:
    assert reason(line) == EMPTY


@pytest.mark.parametrize(
    "line", [b"@a=b", b"@a=b ", b":src", b"@a=b :src", b"   :src  "]
)
def test_no_command(line: bytes) -> None:
    assert reason(line) == NO_COMMAND


@pytest.mark.parametrize(
    "line", [b"12", b"1234", b"PR1VMSG #a", b"PRIV\xc3\xa9 x", b"+x"]
)
def test_bad_command(line: bytes) -> None:
    with pytest.raises(IrcParseError) as caught:
        parse(line)
    assert caught.value.reason == BAD_COMMAND
    assert caught.value.detail == line.split()[0].decode("utf-8", "replace")


@pytest.mark.parametrize("line", [b"PRIVMSG #a :a\x00b", b"PING\rx", b"PING\nx"])
def test_nul_cr_and_lf_are_refused(line: bytes) -> None:
    assert reason(line) == BAD_CHARACTER


def test_510_bytes_are_the_limit_without_the_tags() -> None:
    # irctest testLineAtLimit / testLineBeyondLimit (Ergo).
    at_limit = b"PING " + b"x" * (512 - 7)
    assert len(at_limit) == 510
    assert parse(at_limit).params == ("x" * 505,)
    assert reason(at_limit + b"x") == INPUT_TOO_LONG
    assert parse(b"@" + b"t" * 4000 + b" " + at_limit).command == "PING"


def test_4094_bytes_of_client_tags_are_the_limit() -> None:
    # irctest testLengthLimits: the tag data up to the space is 4094 bytes.
    at_limit = b"@foo=bar;+baz=" + b"a" * 4081 + b" TAGMSG #test"
    assert at_limit.index(b"TAGMSG") == 4096
    assert parse(at_limit).tag("+baz") == "a" * 4081
    over = b"@foo=bar;+baz=" + b"a" * 4082 + b" PRIVMSG #test " + b"b" * 495
    assert reason(over) == TAGS_TOO_LONG
    assert reason(b"@" + b"a" * 5000) == TAGS_TOO_LONG
    assert parse(over, tag_limit=8189).command == "PRIVMSG"


# -- tags ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("escaped", "plain"),
    [
        (r"b\\and\nk", "b\\and\nk"),
        (r"72\s45", "72 45"),
        (r"gh\:764", "gh;764"),
        (r"a\rb", "a\rb"),
        (r"value\b", "valueb"),  # an unknown escape is its character
        ("value\\", "value"),  # a trailing lone backslash is dropped
        (r"value\\", "value\\"),
        (r"\\\\", "\\\\"),
        ("", ""),
        ("plain", "plain"),
    ],
)
def test_tag_values_are_unescaped_as_ircv3_says(escaped: str, plain: str) -> None:
    assert unescape_tag_value(escaped) == plain
    assert parse(f"@k={escaped} CMD".encode()).tag("k") == plain


def test_the_ircv3_example_tags() -> None:
    message = parse(rb"@a=b\\and\nk;c=72\s45;d=gh\:764 foo")
    assert message.tags == (("a", "b\\and\nk"), ("c", "72 45"), ("d", "gh;764"))
    message = parse(b"@c;h=;a=b :quux ab cd")
    assert message.tags == (("c", ""), ("h", ""), ("a", "b"))
    assert (message.source, message.command, message.params) == ("quux", "AB", ("cd",))


def test_a_repeated_tag_keeps_its_last_value_and_empty_keys_are_skipped() -> None:
    message = parse(b"@t1=1;t2=3;;=x;t1=5 CMD")
    assert message.tags == (("t2", "3"), ("t1", "5"))
    assert message.tag("t1") == "5"


@given(st.text())
def test_escaping_round_trips(value: str) -> None:
    escaped = escape_tag_value(value)
    assert not set(escaped) & {";", " ", "\r", "\n"}
    assert unescape_tag_value(escaped) == value


def test_format_tags() -> None:
    assert (
        format_tags([("a", "x y;z"), ("b", ""), ("+c/d", "\\")])
        == r"a=x\sy\:z;b;+c/d=\\"
    )
    for bad in [("", "x"), ("a b", "x"), ("a=b", "x"), ("a;b", ""), ("a", "\x00")]:
        with pytest.raises(ValueError, match="cannot be sent"):
            format_tags([bad])


# -- format --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "wire"),
    [
        (("#a", "hi"), b"PRIVMSG #a hi\r\n"),
        (("#a", "hi there"), b"PRIVMSG #a :hi there\r\n"),
        (("#a", ""), b"PRIVMSG #a :\r\n"),
        (("#a", ":)"), b"PRIVMSG #a ::)\r\n"),
        ((), b"PRIVMSG\r\n"),
    ],
)
def test_format_puts_a_colon_where_needed(params: tuple[str, ...], wire: bytes) -> None:
    assert irc_wire.format(IrcMessage("PRIVMSG", params)) == wire


def test_format_with_tags_and_source() -> None:
    message = IrcMessage("PRIVMSG", ("#a", "x"), "n!u@h", (("time", "t 1"), ("m", "")))
    assert irc_wire.format(message) == b"@time=t\\s1;m :n!u@h PRIVMSG #a x\r\n"
    assert parse(irc_wire.format(message)[:-2]) == message


@pytest.mark.parametrize(
    "message",
    [
        IrcMessage("PRIVMSG", ("", "x")),
        IrcMessage("PRIVMSG", ("a b", "x")),
        IrcMessage("PRIVMSG", (":a", "x")),
        IrcMessage("PRIVMSG", ("#a", "x\r\nQUIT")),
        IrcMessage("PRIVMSG", ("#a\n", "x")),
        IrcMessage("PRIVMSG", ("#a", "x\x00")),
        IrcMessage("PRIV MSG", ("#a", "x")),
        IrcMessage("12", ()),
        IrcMessage("PRIVMSG", ("#a", "x"), source="a b"),
        IrcMessage("PRIVMSG", ("#a", "x"), source=""),
        IrcMessage("PRIVMSG", ("x" * 520, "y")),
    ],
)
def test_format_refuses_what_would_not_parse_back(message: IrcMessage) -> None:
    with pytest.raises(ValueError, match=r"cannot be sent|too long"):
        irc_wire.format(message)


def test_format_refuses_tags_over_8191_bytes() -> None:
    with pytest.raises(ValueError, match="8191"):
        irc_wire.format(IrcMessage("TAGMSG", ("#a",), tags=(("+a", "b" * 8200),)))


def test_format_cuts_the_last_parameter_not_the_tags() -> None:
    tags = (("+x", "y" * 3000),)
    line = irc_wire.format(IrcMessage("PRIVMSG", ("#a", "é" * 400), SOURCE, tags))
    tag_part, _, rest = line.partition(b" ")
    assert len(rest) in (511, 512)  # a 2-byte character may not fit
    assert rest.endswith(b"\r\n")
    assert parse(line[:-2]).tag("+x") == "y" * 3000
    assert tag_part == b"@+x=" + b"y" * 3000


def test_a_word_cut_to_nothing_keeps_its_colon() -> None:
    head = "x" * (510 - len("PRIVMSG  :"))
    line = irc_wire.format(IrcMessage("PRIVMSG", (head, "word")))
    assert line == f"PRIVMSG {head} :\r\n".encode()
    assert len(line) == 512
    assert parse(line[:-2]).params == (head, "")


def test_cut_utf8_never_splits_a_character() -> None:
    data = "a€b".encode()  # € is three bytes
    assert [cut_utf8(data, n) for n in range(6)] == [
        b"",
        b"a",
        b"a",
        b"a",
        "a€".encode(),
        data,
    ]


texts = st.text(
    st.characters(blacklist_characters="\r\n\x00", codec="utf-8"),
    max_size=700,
)


@settings(max_examples=300)
@given(texts, st.sampled_from(["", "time=2026-12-01T17:00:00.000Z;msgid=abc"]))
def test_privmsg_is_cut_to_512_bytes_on_a_character_boundary(
    text: str, tags: str
) -> None:
    line = privmsg_bytes(SOURCE, "#room", text, tags)
    body = line.partition(b" ")[2] if tags else line
    assert len(body) <= 512
    assert line.endswith(b"\r\n")
    sent = parse(line[:-2]).params[1]
    assert text.startswith(sent)
    assert len(body) == 512 or sent == text  # cut only when it must be
    body.decode("utf-8")  # strict: no character was split


@settings(max_examples=300)
@given(texts, st.lists(st.tuples(st.sampled_from(["time", "+a", "msgid"]), texts)))
def test_privmsg_bytes_is_what_format_gives(
    text: str, tags: list[tuple[str, str]]
) -> None:
    message = IrcMessage("PRIVMSG", ("#room", text), SOURCE, tuple(dict(tags).items()))
    wire = irc_wire.format(message)
    fast = privmsg_bytes(SOURCE, "#room", text, format_tags(message.tags))
    assert parse(fast[:-2]) == parse(wire[:-2])
    assert len(fast.partition(b" :")[2]) <= 512


words = st.text(
    st.characters(blacklist_characters="\r\n\x00 ", codec="utf-8"),
    min_size=1,
    max_size=20,
)
middles = words.filter(lambda w: not w.startswith(":"))


@given(
    st.sampled_from(["PRIVMSG", "NOTICE", "001", "MODE"]),
    st.lists(middles, max_size=14),
    st.one_of(st.none(), texts.map(lambda t: t[:200])),
    st.one_of(st.none(), middles),
)
def test_what_format_writes_parse_reads_back(
    command: str, middle: list[str], last: str | None, source: str | None
) -> None:
    params = (*middle, last) if last is not None else tuple(middle)
    message = IrcMessage(command, params, source)
    assert parse(irc_wire.format(message)[:-2]) == message


def test_privmsg_bytes_refuses_a_head_over_the_limit() -> None:
    with pytest.raises(ValueError, match="too long"):
        privmsg_bytes("x" * 600, "#a", "y")


# -- the framer ----------------------------------------------------------------


def all_lines(buffer: IrcLineBuffer) -> list[bytes | irc_wire.TooLong]:
    return list(buffer.lines())


def test_lf_crlf_and_a_bare_cr_end_lines() -> None:
    buffer = IrcLineBuffer()
    buffer.feed(b"NICK a\r\nUSER u 0 * :r\nPING x\rPING y")
    assert all_lines(buffer) == [b"NICK a", b"USER u 0 * :r", b"PING x"]
    buffer.feed(b"\r")
    buffer.feed(b"\n\n\n\r\nPING z\n")
    assert all_lines(buffer) == [b"PING y", b"PING z"]
    assert buffer.held == 0


def test_a_line_in_pieces() -> None:
    buffer = IrcLineBuffer()
    for piece in [b"PRIV", b"MSG #a :h", b"i\r", b"\nPI", b"NG\n"]:
        buffer.feed(piece)
    assert all_lines(buffer) == [b"PRIVMSG #a :hi", b"PING"]


def test_the_bound_exactly() -> None:
    buffer = IrcLineBuffer(limit=10)
    buffer.feed(b"a" * 10 + b"\n" + b"b" * 11 + b"\nok\n")
    assert all_lines(buffer) == [b"a" * 10, TOO_LONG, b"ok"]
    buffer.feed(b"c" * 10)
    assert all_lines(buffer) == []
    buffer.feed(b"c")
    buffer.feed(b"ccc\nafter\n")
    assert all_lines(buffer) == [TOO_LONG, b"after"]


def test_a_mebibyte_without_a_newline_stays_bounded_and_is_refused_once() -> None:
    buffer = IrcLineBuffer()
    assert buffer.limit == MAX_LINE_BYTES == 8191 + 510
    results: list[bytes | irc_wire.TooLong] = []
    for _ in range(256):
        buffer.feed(b"x" * 4096)
        assert buffer.held <= MAX_LINE_BYTES + 2
        results.extend(buffer.lines())
    buffer.feed(b"still the same line\nPING ok\n")
    results.extend(buffer.lines())
    assert results == [TOO_LONG, b"PING ok"]
    assert buffer.held == 0


def test_a_refusal_keeps_its_place_among_waiting_lines() -> None:
    buffer = IrcLineBuffer(limit=8)
    buffer.feed(b"one\ntwo\n" + b"z" * 20)
    buffer.feed(b"zz\nthree\n")
    assert all_lines(buffer) == [b"one", b"two", TOO_LONG, b"three"]


def test_a_caller_that_stops_leaves_the_rest() -> None:
    buffer = IrcLineBuffer()
    buffer.feed(b"a\nb\nc\npartial")
    assert buffer.next_line() == b"a"
    assert buffer.held == len(b"b\nc\npartial")
    buffer.feed(b" line\n")
    assert all_lines(buffer) == [b"b", b"c", b"partial line"]


def test_drain_gives_what_lines_gives() -> None:
    data = b"a\r\n\r\nb\n" + b"y" * 20 + b"\nc\rrest"
    one, two = IrcLineBuffer(limit=16), IrcLineBuffer(limit=16)
    one.feed(data)
    two.feed(data)
    assert one.drain() == all_lines(two) == [b"a", b"b", TOO_LONG, b"c"]
    assert one.held == two.held == len(b"rest")
    assert one.drain() == []
