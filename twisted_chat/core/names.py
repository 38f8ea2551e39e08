"""
Nicknames and room names: what is valid, and when two names are the same.

Uniqueness is decided on a *key*, and the spelling the user typed is kept
for display. Two names have the same key when they differ only by

- Unicode compatibility forms and case: ``Alice``, ``ALICE`` and the
  full-width ``ＡＬＩＣＥ`` (NFKC and case folding), and
- look-alike characters: ``Аlice`` with a Cyrillic ``А``, ``b0b`` and
  ``bob``, ``#1obby`` and ``#lobby`` (the UTS #39 confusable skeleton).

Characters that draw nothing at all (default-ignorable code points such as
U+034F or the variation selectors, and format characters such as U+200B) are
refused outright rather than folded away, so that no two visible names can
differ by them, and so are long stacks of combining marks.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from attrs import frozen

from twisted_chat.core.confusables import DATA_VERSION, PROTOTYPES, skeleton
from twisted_chat.core.errors import InvalidName

__all__ = ["KEY_VERSION", "NICK_MAX", "ROOM_MAX", "Nick", "RoomName", "name_key"]

NICK_MAX = 24
ROOM_MAX = 32

#: The most combining marks allowed in a row (after NFD). Real orthographies
#: need two or three (Vietnamese ``ễ`` is e + two marks, Devanagari a
#: virama and a vowel sign); a tower of marks ("zalgo") draws over the
#: neighbouring lines and hides what the name really is.
MAX_MARKS_IN_A_ROW: Final = 4

#: Names the function that :func:`name_key` computes. Keys are stored (room
#: keys in the history file), so whoever changes the key function or the
#: confusables table bumps this, and stored keys must be computed again.
KEY_VERSION: Final = f"nfkc-casefold-tr39-{DATA_VERSION}"

# Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt,
# Unicode 15.0): characters a renderer shows as nothing. Many are letters or
# marks by category (U+3164 HANGUL FILLER, U+034F, the variation selectors),
# so the category rules alone would let them in.
_DEFAULT_IGNORABLE: Final = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)

_ASCII_PROTOTYPES: Final = {
    code: prototype for code, prototype in PROTOTYPES.items() if code < 128
}

# Valid ASCII names, so that they skip the per-character checks below.
_ASCII_NICK: Final = re.compile("[A-Za-z][A-Za-z0-9_-]*")
_ASCII_ROOM: Final = re.compile("[A-Za-z0-9_.-]+")

# The most iterations of skeleton-then-fold before a key is stable. Every
# code point is stable after two (tests/test_names.py checks them all).
_KEY_ROUNDS: Final = 4


def _fold(text: str) -> str:
    # Case folding can undo NFKC's work (some folds produce compatibility
    # characters), so normalise on both sides.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def name_key(text: str) -> str:
    """
    The identity of a name: NFKC and case folded, then its confusable skeleton.

    Folding comes first so that ``ALICE`` and ``alice`` meet; the skeleton
    then maps look-alikes to one prototype (``а`` to ``a``, ``0`` to ``O``,
    ``m`` to ``rn``), and the result is folded again because some
    prototypes are capitals. The pair is repeated until nothing changes,
    which makes the key idempotent: ``name_key(name_key(x)) == name_key(x)``.

    A consequence of folding first: a capital ``I`` counts as ``i``, not as
    the ``l`` it resembles in some fonts; treating it as both would make every
    ``i`` the same as every ``l``.

    Keys are opaque (``guest10`` has the key ``guestlo``): compare them, never
    show them.
    """
    if text.isascii() and "%" not in text:
        # The same result, without the normalisations: ASCII is its own
        # NFKC and NFD, folds by lower(), and its prototypes are ASCII
        # (all but that of '%'), and stable once lowered.
        return text.lower().translate(_ASCII_PROTOTYPES).lower()
    key = _fold(text)
    for _ in range(_KEY_ROUNDS):
        again = _fold(skeleton(key))
        if again == key:
            break
        key = again
    return key


def _describe(char: str) -> str:
    """A character as a person can identify it, even if it draws nothing."""
    if char.isprintable() and not _DEFAULT_IGNORABLE.match(char):
        return repr(char)
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} {name}".rstrip()


def _refuse_invisible(text: str, what: str) -> None:
    """Refuse default-ignorable and format characters, naming the first one.

    Checked before anything else, so the reason is about the character the
    user cannot see rather than, say, "starts with a letter".
    """
    for char in text:
        if _DEFAULT_IGNORABLE.match(char) or unicodedata.category(char) == "Cf":
            raise InvalidName(
                f"{what} cannot contain invisible characters, and {_describe(char)}"
                " is one; type the name without it."
            )


def _check_characters(text: str, what: str, allowed: str, extra: str) -> None:
    """Refuse characters outside ``allowed``, and towers of combining marks."""
    for char in text:
        category = unicodedata.category(char)
        if not (category[0] in "LM" or category == "Nd" or char in extra):
            raise InvalidName(f"{what} holds {allowed} only, not {_describe(char)}.")
    run = 0
    for char in unicodedata.normalize("NFD", text):
        run = run + 1 if unicodedata.category(char).startswith("M") else 0
        if run > MAX_MARKS_IN_A_ROW:
            raise InvalidName(
                f"{what} cannot stack more than {MAX_MARKS_IN_A_ROW} combining "
                "marks on one character."
            )


@frozen
class Nick:
    """A valid nickname: how it was typed, and the key it is unique by."""

    display: str
    key: str

    @classmethod
    def parse(cls, text: str) -> Nick:
        """Validate once, at the edge, with a reason a person can act on."""
        if not text:
            raise InvalidName("A nickname needs at least one character.")
        if len(text) > NICK_MAX:
            raise InvalidName(
                f"A nickname is at most {NICK_MAX} characters; {text[:40]!r} "
                f"has {len(text)}."
            )
        if _ASCII_NICK.fullmatch(text):  # the common case, in one C call
            return cls(display=text, key=name_key(text))
        _refuse_invisible(text, "A nickname")
        if not unicodedata.category(text[0]).startswith("L"):
            raise InvalidName(
                f"A nickname starts with a letter, not {_describe(text[0])}."
            )
        _check_characters(text, "A nickname", "letters, digits, '_' and '-'", "_-")
        return cls(display=text, key=name_key(text))


@frozen
class RoomName:
    """A valid room name, always with its leading ``#``."""

    display: str
    key: str

    @classmethod
    def parse(cls, text: str) -> RoomName:
        """Accept ``#room`` or ``room``; the ``#`` is optional on input."""
        bare = text.removeprefix("#")
        if not bare:
            raise InvalidName("A room name needs at least one character after '#'.")
        if len(bare) > ROOM_MAX:
            raise InvalidName(
                f"A room name is at most {ROOM_MAX} characters after '#'; "
                f"{bare[:40]!r} has {len(bare)}."
            )
        if _ASCII_ROOM.fullmatch(bare):
            return cls(display="#" + bare, key=name_key("#" + bare))
        _refuse_invisible(bare, "A room name")
        if unicodedata.category(bare[0]).startswith("M"):
            raise InvalidName("A room name cannot start with a combining mark.")
        _check_characters(
            bare, "A room name", "letters, digits, '_', '-' and '.'", "_-."
        )
        return cls(display="#" + bare, key=name_key("#" + bare))
