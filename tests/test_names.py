# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""Nickname and room-name rules from PROTOCOL.md ("Names")."""

from __future__ import annotations

import unicodedata
from importlib.resources import files

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_chat.core.confusables import DATA_VERSION, PROTOTYPES, parse, skeleton
from twisted_chat.core.errors import InvalidName
from twisted_chat.core.names import (
    KEY_VERSION,
    NICK_MAX,
    ROOM_MAX,
    Nick,
    RoomName,
    name_key,
)
from twisted_chat.core.settings import Settings
from twisted_chat.testing import make_chat


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


# -- look-alike names (PROTOCOL.md "Names": TR39 confusable skeletons) --------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Alice", "\u0410lice"),  # Cyrillic capital A
        ("Alice", "\u0430lice"),  # Cyrillic small a
        ("Alice", "\u0391lice"),  # Greek capital alpha
        ("alice", "A1ice"),  # digit one for l
        ("bob", "b0b"),  # digit zero for o
        ("paypal", "\u0440\u0430ypal"),  # Cyrillic er and a
        ("Alice", wide("ALICE")),  # full width still folds
        ("Straße", "STRASSE"),
        ("Zoë", "Zoe\u0308"),  # composed and decomposed
        ("arnold", "amold"),  # rn and m: TR39's own example
    ],
)
def test_look_alike_nicks_are_the_same_person(one: str, other: str) -> None:
    """Two nicks whose folded TR39 skeletons are equal have one key."""
    assert Nick.parse(one).key == Nick.parse(other).key


@pytest.mark.parametrize(("one", "other"), [("#lobby", "#1obby"), ("#lobby", "#LOBBY")])
def test_look_alike_rooms_are_the_same_room(one: str, other: str) -> None:
    """``#1obby`` is ``#lobby``, as ``#LOBBY`` is."""
    assert RoomName.parse(one).key == RoomName.parse(other).key


REAL_NAMES = [
    "小明",
    "Zoë",
    "Zoe\u0308",
    "नमस्ते",
    "José",
    "محمد",  # Arabic
    "דוד",  # Hebrew
    "민수",  # Hangul
    "Nguye\u0302\u0303n",  # Vietnamese, two marks on one letter, decomposed
    "Οδυσσευς",
    "Алексей",
]


@pytest.mark.parametrize("text", REAL_NAMES)
def test_real_names_of_many_scripts_are_valid(text: str) -> None:
    """Names in scripts with marks, RTL scripts and Hangul stay valid."""
    assert Nick.parse(text).display == text
    assert RoomName.parse(text).display == "#" + text


def test_real_names_keep_distinct_keys() -> None:
    """The skeleton does not merge names that look different."""
    texts = ["Alice", "Alicé", "Alice2", "Bob", "小明", "民", "José", "Jose", "Zoe"]
    texts += ["नमस्ते", "नमस्त", "محمد", "דוד", "민수", "민스", "Алексей"]
    assert len({Nick.parse(text).key for text in texts}) == len(texts)


def test_guest_nicks_keep_distinct_keys() -> None:
    """guest10 and guestlo share a key, but no two guest numbers do."""
    keys = {Nick.parse(f"guest{number}").key for number in range(1, 5000)}
    assert len(keys) == 4999


# The Default_Ignorable_Code_Point property, Unicode 15.0
# (DerivedCoreProperties.txt), written out independently of names.py.
DEFAULT_IGNORABLE = [
    0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5,
    *range(0x180B, 0x1810), *range(0x200B, 0x2010), *range(0x202A, 0x202F),
    *range(0x2060, 0x2070), 0x3164, *range(0xFE00, 0xFE10), 0xFEFF, 0xFFA0,
    *range(0xFFF0, 0xFFF9), *range(0x1BCA0, 0x1BCA4), *range(0x1D173, 0x1D17B),
    *range(0xE0000, 0xE1000),
]  # fmt: skip


@pytest.mark.parametrize(
    "char", ["\u034f", "\ufe0f", "\u180b", "\U000e0100", "\u3164", "\u200d", "\u202e"]
)
def test_nick_with_an_invisible_character_is_refused(char: str) -> None:
    """The issue's cases: the reason names the invisible code point."""
    with pytest.raises(InvalidName, match=rf"invisible.*U\+{ord(char):04X}"):
        Nick.parse("Alice" + char)
    with pytest.raises(InvalidName, match="invisible"):
        Nick.parse(char + "Alice")


def test_room_with_an_invisible_mark_is_refused() -> None:
    """``#lobby`` plus U+034F is not a second ``#lobby``: it is refused."""
    with pytest.raises(InvalidName, match=r"invisible.*U\+034F"):
        RoomName.parse("#lobby\u034f")
    with pytest.raises(InvalidName, match="invisible"):
        RoomName.parse("#\u034flobby")


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["Alice", "#lobby", "小明", "नमस्ते", "Zoe\u0308"]),
    char=st.sampled_from(DEFAULT_IGNORABLE).map(chr),
    where=st.integers(min_value=0, max_value=10),
)
def test_any_default_ignorable_character_is_refused(
    name: str, char: str, where: int
) -> None:
    """A valid name with any default-ignorable code point anywhere is invalid."""
    bare = name.removeprefix("#")
    spot = min(where, len(bare))
    text = bare[:spot] + char + bare[spot:]
    with pytest.raises(InvalidName, match="invisible"):
        Nick.parse(text)
    with pytest.raises(InvalidName, match="invisible"):
        RoomName.parse("#" + text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=24))
def test_accepted_names_hold_no_invisible_character(text: str) -> None:
    """Whatever is accepted has no Cf and no default-ignorable code point."""
    for parse_name in (Nick.parse, RoomName.parse):
        try:
            parse_name(text)
        except InvalidName:
            continue
        ignorable = set(map(chr, DEFAULT_IGNORABLE))
        assert all(unicodedata.category(c) != "Cf" and c not in ignorable for c in text)


def test_four_combining_marks_in_a_row_are_allowed_five_are_not() -> None:
    """Zalgo towers are refused; counted after NFD, so precomposed ones too."""
    marks = "\u0301\u0302\u0303\u0304\u0305"
    assert Nick.parse("e" + marks[:4]).display == "e" + marks[:4]
    for text in ["e" + marks, "Zalgo" + marks * 3, "\u1ec5" + marks[:3]]:
        with pytest.raises(InvalidName, match="more than 4 combining marks"):
            Nick.parse(text)
        with pytest.raises(InvalidName, match="more than 4 combining marks"):
            RoomName.parse(text)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_name_key_is_idempotent(text: str) -> None:
    """Keying a key changes nothing, for any text."""
    key = name_key(text)
    assert name_key(key) == key


def test_name_key_is_idempotent_on_every_confusable_and_bmp_character() -> None:
    """Every code point in the table, and the whole BMP, gives a stable key."""
    chars = {chr(cp) for cp in range(0x10000) if not 0xD800 <= cp < 0xE000}
    chars |= {chr(cp) for cp in PROTOTYPES}
    chars |= set(PROTOTYPES.values())
    unstable = [c for c in chars if name_key(name_key(c)) != name_key(c)]
    assert unstable == []


def test_skeleton_follows_tr39() -> None:
    """skeleton = NFD, prototypes, NFD; ASCII look-alikes map as Unicode says."""
    assert skeleton("\u0410lice") == "Alice"
    assert skeleton("0") == "O"
    assert skeleton("I") == skeleton("1") == skeleton("|") == "l"
    assert skeleton("m") == "rn"
    assert skeleton("lobby") == "lobby"


def test_confusables_table_is_shipped_and_parses_both_formats() -> None:
    """The table is a package resource; Unicode's full format parses the same."""
    data = files("twisted_chat.core") / "data" / "confusables.txt"
    assert data.is_file()
    assert f"Version: {DATA_VERSION}" in data.read_text(encoding="utf-8")
    assert len(PROTOTYPES) > 6000
    full = ["\ufeff# confusables.txt", "0430 ;\t0061 ;\tMA\t# ( а → a ) CYRILLIC"]
    assert parse(full) == parse(["0430 ; 0061"]) == {0x430: "a"}
    assert KEY_VERSION.endswith(DATA_VERSION)


# -- through the chat core -----------------------------------------------------


def test_cyrillic_alice_is_in_use_while_alice_is_online() -> None:
    """``/nick Аlice`` (Cyrillic А) while Alice is here: ``! nick-in-use``."""
    chat = make_chat()
    chat.connect("Alice")
    bob, bob_p = chat.connect("Bob")
    chat.server.receive(bob_p, "/nick \u0410lice")
    [line] = bob.lines()
    assert line.startswith("! nick-in-use: ")
    assert bob_p.nick.display == "Bob"


def test_alice_with_a_variation_selector_is_an_invalid_name() -> None:
    """``/nick Alice`` + U+FE0F is refused as invalid, not taken as new."""
    chat = make_chat()
    bob, bob_p = chat.connect("Bob")
    chat.server.receive(bob_p, "/nick Alice\ufe0f")
    [line] = bob.lines()
    assert line.startswith("! invalid-name: ")
    assert "U+FE0F" in line


def test_joining_lobby_with_an_invisible_mark_is_an_invalid_name() -> None:
    """``/join #lobby`` + U+034F: ``! invalid-name``, and no second room."""
    chat = make_chat()
    alice, alice_p = chat.connect("Alice")
    chat.server.receive(alice_p, "/join #lobby\u034f")
    [line] = alice.lines()
    assert line.startswith("! invalid-name: ")
    assert len(chat.server.rooms) == 1


def test_joining_a_look_alike_room_joins_the_existing_one() -> None:
    """``/join #1obby`` while ``#lobby`` exists is ``#lobby``, as spelt first."""
    chat = make_chat(Settings(default_room=""))
    _, alice_p = chat.connect("Alice")
    _, bob_p = chat.connect("Bob")
    chat.server.receive(alice_p, "/join #lobby")
    chat.server.receive(bob_p, "/join #1obby")
    assert len(chat.server.rooms) == 1
    assert bob_p.current is alice_p.current
    assert bob_p.current is not None
    assert bob_p.current.name.display == "#lobby"


def test_a_private_message_to_a_look_alike_reaches_the_holder() -> None:
    """``/msg Аlice`` reaches Alice: there can be no other ``Аlice``."""
    chat = make_chat()
    alice, _ = chat.connect("Alice")
    _, bob_p = chat.connect("Bob")
    chat.clear_all()
    chat.server.receive(bob_p, "/msg \u0410lice hi")
    assert alice.lines() == ["[PM] <Bob> hi"]


def test_guest_numbers_skip_a_look_alike_of_a_held_nick() -> None:
    """If someone holds ``guestlO``, the next guest is not ``guest10``."""
    chat = make_chat(Settings(default_room=""))
    chat.connect("guestlO")  # was guest1
    nicks = [chat.connect()[1].nick.display for _ in range(9)]
    assert nicks == [f"guest{n}" for n in range(2, 10)] + ["guest11"]


def _reference_key(text: str) -> str:
    """name_key without its ASCII shortcut: fold, then skeleton-and-fold."""

    def fold(part: str) -> str:
        nfkc = unicodedata.normalize("NFKC", part)
        return unicodedata.normalize("NFKC", nfkc.casefold())

    key = fold(text)
    while (again := fold(skeleton(key))) != key:
        key = again
    return key


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.text(st.characters(max_codepoint=127))))
def test_ascii_shortcut_gives_the_general_key(text: str) -> None:
    """The ASCII fast path of name_key agrees with the general computation."""
    assert name_key(text) == _reference_key(text)
