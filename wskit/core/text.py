"""Characters that show nothing: refused in user ids and room ids.

Unicode's general categories do not find them all: the *Default_Ignorable_Code_Point*
property (DerivedCoreProperties.txt, Unicode 15) lists the characters a renderer
shows as nothing, several of them letters or marks (U+115F HANGUL CHOSEONG FILLER is
a letter, U+034F COMBINING GRAPHEME JOINER a mark, U+FE0F a variation selector), so
``alice`` + U+034F displays as ``alice`` while being another name. Python's
``unicodedata`` has no such property, hence the table. U+2800 BRAILLE PATTERN BLANK
is not default-ignorable but renders as a blank, and is refused with them.
"""

from __future__ import annotations

__all__ = ["is_invisible", "first_invisible"]

#: Default_Ignorable_Code_Point ranges (inclusive), plus U+2800
_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x2800, 0x2800), (0x3164, 0x3164), (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)


def is_invisible(ch: str) -> bool:
    """Does ``ch`` (one character) render as nothing (or as a blank)?"""
    code = ord(ch)
    return any(low <= code <= high for low, high in _RANGES)


def first_invisible(text: str) -> str | None:
    """The first character of ``text`` that renders as nothing, or None."""
    for ch in text:
        if ord(ch) >= 0xAD and is_invisible(ch):
            return ch
    return None
