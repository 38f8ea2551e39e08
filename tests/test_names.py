# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Nickname and room-name rules from PROTOCOL.md ("Names")."""

from __future__ import annotations

import pytest

from twisted_chat.errors import InvalidName
from twisted_chat.names import NICK_MAX, ROOM_MAX, Nick, RoomName, name_key


def wide(text: str) -> str:
    """The full-width form of ASCII ``text`` (``A`` becomes U+FF21)."""
    return "".join(chr(ord(char) + 0xFEE0) for char in text)


# -- nicknames: valid ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Alice",
        "小明",
        "Ärger",
        "नमस्ते",  # Devanagari: virama and vowel sign are combining marks
        "प्रिया",  # ... including spacing marks (Mc)
        wide("ALICE"),
        "Οδυσσευς",
        "bob_42",
        "x-ray",
        "a",
    ],
)
def test_nick_accepts_letters_of_any_script(text: str) -> None:
    """A nickname of letters (any script), marks, digits, '_' and '-' is valid."""
    nick = Nick.parse(text)
    assert nick.display == text


def test_nick_keeps_the_spelling_as_typed() -> None:
    """The display form is what the user typed; only the key is normalised."""
    nick = Nick.parse("ÄRger")
    assert (nick.display, nick.key) == ("ÄRger", "ärger")


def test_nick_of_24_characters_is_valid() -> None:
    """Exactly NICK_MAX (24) characters is allowed."""
    text = "a" * 24
    assert NICK_MAX == 24
    assert Nick.parse(text).display == text


# -- nicknames: invalid -------------------------------------------------------


def test_nick_of_25_characters_is_too_long() -> None:
    """25 characters is one too many, and the reason says the limit."""
    with pytest.raises(InvalidName, match="at most 24"):
        Nick.parse("a" * 25)


def test_empty_nick_is_invalid() -> None:
    """An empty nickname is refused with a reason."""
    with pytest.raises(InvalidName, match="at least one"):
        Nick.parse("")


@pytest.mark.parametrize(
    "text", ["9lives", "_under", "-dash", wide("1") + "abc", "#bob", "<bob>"]
)
def test_nick_must_start_with_a_letter(text: str) -> None:
    """A nickname starting with a digit (any script), '_', '-' or '#' is refused."""
    with pytest.raises(InvalidName, match="starts with a letter"):
        Nick.parse(text)


def test_nick_cannot_start_with_a_combining_mark() -> None:
    """A mark alone is not a letter, so it cannot start a nickname."""
    with pytest.raises(InvalidName, match="starts with a letter"):
        Nick.parse("\u0301abc")


@pytest.mark.parametrize(
    "text",
    [
        "a b",
        "a\tb",
        "bob!",
        "a.b",
        "a@b",
        "bob*",
        "bob😀",
        "bob\u200b",  # zero-width space: a format character, not a letter
        "bob\x07",
    ],
)
def test_nick_refuses_spaces_punctuation_and_symbols(text: str) -> None:
    """Anything but letters, marks, digits, '_' and '-' is refused, naming it."""
    with pytest.raises(InvalidName, match="letters, digits, '_' and '-' only"):
        Nick.parse(text)


# -- nicknames: sameness ------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Alice", "ALICE"),
        ("Alice", "alice"),
        ("Alice", wide("ALICE")),  # full-width: NFKC makes it plain ASCII
        ("Straße", "STRASSE"),  # case folding, not just lower()
        ("Οδυσσευς", "ΟΔΥΣΣΕΥΣ"),  # final sigma folds like sigma
        ("Á", "A\u0301"),  # composed and decomposed accents
        ("ﬁsh", "fish"),  # compatibility ligature
    ],
)
def test_nicks_that_normalise_alike_are_the_same_person(one: str, other: str) -> None:
    """NFKC plus case folding gives one key, so these two nicks collide."""
    assert Nick.parse(one).key == Nick.parse(other).key
    assert Nick.parse(one) != Nick.parse(other)


def test_different_nicks_have_different_keys() -> None:
    """Names that merely look related (Alice, Alicé, Alice2) stay distinct."""
    keys = {Nick.parse(text).key for text in ["Alice", "Alicé", "Alice2", "小明"]}
    assert len(keys) == 4


def test_name_key_is_stable_when_applied_twice() -> None:
    """A key is already normalised: keying it again changes nothing."""
    for text in [wide("ALICE"), "Straße", "ﬁsh", "ΟΔΥΣΣΕΥΣ", "नमस्ते", "#Dev"]:
        key = name_key(text)
        assert name_key(key) == key


# -- room names ---------------------------------------------------------------


def test_room_hash_is_optional_on_input() -> None:
    """``dev`` and ``#dev`` are the same room, always shown with its '#'."""
    assert RoomName.parse("dev") == RoomName.parse("#dev")
    assert RoomName.parse("dev").display == "#dev"


def test_room_keeps_its_spelling_but_compares_folded() -> None:
    """``#Dev``, ``#DEV`` and a full-width ``#DEV`` share a key, not a display."""
    dev, upper, full = (RoomName.parse(t) for t in ["#Dev", "#DEV", "#" + wide("DEV")])
    assert dev.key == upper.key == full.key
    assert (dev.display, upper.display) == ("#Dev", "#DEV")


def test_room_of_32_characters_is_valid() -> None:
    """Exactly ROOM_MAX (32) characters after the '#' is allowed."""
    assert ROOM_MAX == 32
    assert RoomName.parse("#" + "r" * 32).display == "#" + "r" * 32


def test_room_of_33_characters_is_too_long() -> None:
    """33 characters after the '#' is refused, with or without the '#'."""
    with pytest.raises(InvalidName, match="at most 32"):
        RoomName.parse("#" + "r" * 33)
    with pytest.raises(InvalidName, match="at most 32"):
        RoomName.parse("r" * 33)


@pytest.mark.parametrize("text", ["#a.b", "#a-b", "#a_b", "#2024", "#.hidden", "#小組"])
def test_room_allows_dots_dashes_underscores_and_digits(text: str) -> None:
    """Letters, digits, '.', '-' and '_' are all fine in a room name."""
    assert RoomName.parse(text).display == text


@pytest.mark.parametrize("text", ["", "#"])
def test_empty_room_name_is_invalid(text: str) -> None:
    """A room name needs at least one character after the '#'."""
    with pytest.raises(InvalidName, match="at least one"):
        RoomName.parse(text)


@pytest.mark.parametrize("text", ["#a b", "##dev", "#dev!", "#a/b", "#a,b", "#😀"])
def test_room_refuses_spaces_and_other_punctuation(text: str) -> None:
    """Spaces, a second '#', and other punctuation are refused, naming the char."""
    with pytest.raises(InvalidName, match="only, not"):
        RoomName.parse(text)
