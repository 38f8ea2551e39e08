"""
Nicknames and room names: what is valid, and when two names are the same.

Uniqueness is decided on a *key*: the name after Unicode NFKC normalisation
and case folding, so ``Alice``, ``ALICE`` and the full-width ``ＡＬＩＣＥ``
are one person, while the spelling the user typed is kept for display.
"""

from __future__ import annotations

import unicodedata

from attrs import frozen

from twisted_chat.errors import InvalidName

NICK_MAX = 24
ROOM_MAX = 32


def name_key(text: str) -> str:
    """
    The identity of a name: NFKC, case folded, NFKC again.

    Case folding can undo NFKC's work (``ß`` folds to ``ss`` but some folds
    produce compatibility characters), so normalise on both sides.
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _is_letter(char: str) -> bool:
    return unicodedata.category(char).startswith("L") and char not in _BLANK_LETTERS


#: Letters that render as blank space: a name made of them could pass for
#: nobody, or for somebody else.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


def _is_name_char(char: str, extra: str) -> bool:
    # Marks (M*) are allowed after the first letter so that scripts such as
    # Devanagari, whose vowels are combining marks, can spell names.
    if char in _BLANK_LETTERS:
        return False
    category = unicodedata.category(char)
    return category[0] in "LM" or category == "Nd" or char in extra


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
        if not _is_letter(text[0]):
            raise InvalidName(f"A nickname starts with a letter, not {text[0]!r}.")
        for char in text:
            if not _is_name_char(char, "_-"):
                raise InvalidName(
                    f"A nickname holds letters, digits, '_' and '-' only, not {char!r}."
                )
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
        if unicodedata.category(bare[0]).startswith("M"):
            raise InvalidName("A room name cannot start with a combining mark.")
        for char in bare:
            if not _is_name_char(char, "_-."):
                raise InvalidName(
                    f"A room name holds letters, digits, '_', '-' and '.' only, "
                    f"not {char!r}."
                )
        return cls(display="#" + bare, key=name_key("#" + bare))
