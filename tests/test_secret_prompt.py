"""The password prompt (twisted_chat.core.secret_prompt) and the telnet replies."""

from __future__ import annotations

import pytest

from twisted_chat.core.cleaning import TelnetFilter
from twisted_chat.core.secret_prompt import (
    IAC_WILL_ECHO,
    IAC_WONT_ECHO,
    Secret,
    SecretPrompt,
    after_bytes,
    prompt_bytes,
)

IAC_DO_ECHO = bytes((255, 253, 1))
IAC_DONT_ECHO = bytes((255, 254, 1))


def test_the_echo_control_bytes() -> None:
    assert IAC_WILL_ECHO == b"\xff\xfb\x01"
    assert IAC_WONT_ECHO == b"\xff\xfc\x01"


def test_a_stream_prompt_turns_echo_off_then_on() -> None:
    assert not SecretPrompt().waiting
    prompt = SecretPrompt()
    sent = prompt.start("login alice")
    assert sent == b"\xff\xfb\x01\r* Password:\r\n"
    assert prompt.waiting
    assert prompt.for_what == "login alice"
    taken = prompt.take("hunter22")
    assert taken.for_what == "login alice"
    assert taken.secret.value == "hunter22"
    assert taken.send == b"\xff\xfc\x01\r  \r"
    assert not prompt.waiting


def test_a_line_client_gets_the_prompt_only() -> None:
    prompt = SecretPrompt(telnet=False)
    assert prompt.start("oper alice") == b"* Password:\r\n"
    assert prompt.take("pw").send == b""
    assert prompt_bytes(telnet=False) == b"* Password:\r\n"
    assert after_bytes(telnet=False) == b""


def test_what_a_plain_nc_user_is_left_with() -> None:
    """Every non-text byte is followed by a CR and then overwritten."""
    for data in (prompt_bytes(), after_bytes()):
        iac = data.index(b"\xff")
        assert data[iac + 3 : iac + 4] == b"\r"
    # The text of the lines is the prompt, and nothing else but blanks.
    visible = (prompt_bytes() + after_bytes()).replace(IAC_WILL_ECHO, b"")
    visible = visible.replace(IAC_WONT_ECHO, b"")
    assert visible.replace(b"\r", b"").replace(b" ", b"") == b"*Password:\n"


def test_a_second_start_replaces_the_first_without_a_second_control() -> None:
    prompt = SecretPrompt()
    prompt.start("login alice")
    assert prompt.start("login bob") == b"* Password:\r\n"
    assert prompt.take("pw").for_what == "login bob"


def test_take_without_start_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        SecretPrompt().take("pw")


def test_cancel_turns_echo_back_on_once() -> None:
    prompt = SecretPrompt()
    assert prompt.cancel() == b""
    prompt.start("login alice")
    assert prompt.cancel() == IAC_WONT_ECHO + b"\r  \r"
    assert not prompt.waiting
    assert prompt.cancel() == b""


def test_the_secret_never_shows_in_a_repr() -> None:
    taken = SecretPrompt()
    taken.start("login alice")
    got = taken.take("hunter22")
    for shown in (repr(got), str(got), repr(got.secret), str(got.secret), f"{got!r}"):
        assert "hunter22" not in shown
    assert Secret("a") == Secret("a")


@pytest.mark.parametrize("reply", [IAC_DO_ECHO, IAC_DONT_ECHO])
def test_the_telnet_filter_swallows_the_clients_answers(reply: bytes) -> None:
    assert TelnetFilter().feed(reply) == b""
    assert TelnetFilter().feed(reply + b"hunter22\r\n") == b"hunter22\r\n"
    assert TelnetFilter().feed(b"hun" + reply + b"ter22\r\n") == b"hunter22\r\n"


def test_the_telnet_filter_swallows_an_answer_split_across_reads() -> None:
    telnet = TelnetFilter()
    out = b"".join(telnet.feed(bytes([byte])) for byte in IAC_DO_ECHO + b"pw\r\n")
    assert out == b"pw\r\n"
