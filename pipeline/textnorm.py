"""Vietnamese text normalisation for matching. Shown text is never altered by these functions."""
from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")
# Letters that do not decompose under NFD.
_FOLD = str.maketrans({"đ": "d", "Đ": "d", "ð": "d", "Ð": "d"})


def nfc(text: str) -> str:
    """NFC form with collapsed whitespace: for storing and showing text that came from a unit."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


# How fold works, and why the table gives the same answer as folding the whole text:
# the key is "đ→d, NFD, drop every combining mark (unicodedata.combining != 0), đ→d, casefold,
# collapse whitespace". NFD decomposes each code point on its own and then only reorders runs of
# combining marks; dropping all combining marks makes that reordering invisible. đ→d and casefold
# are per code point (casefold has no context rules). So everything before the whitespace collapse
# maps each code point independently, and the text can be folded with one str.translate over a
# table of per-code-point answers. The table is filled on first sight of each code point (ASCII
# up front); a character-by-character generator costs 15-20 us a line, the table ~1 us.
# tests/test_textnorm_speed.py compares this with the old implementation over every code point.


def _fold_char(ch: str) -> str:
    """The old whole-text fold, without the whitespace collapse, applied to one code point."""
    decomposed = unicodedata.normalize("NFD", ch.translate(_FOLD))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.translate(_FOLD).casefold()


_TABLE_LIMIT = 1 << 16  # code points remembered; past this, unseen ones are worked out each time


class _FoldTable(dict):
    """Code point → its folded text, for str.translate; a code point not in it yet is folded and kept."""

    def __missing__(self, cp: int) -> str:
        got = _fold_char(chr(cp))
        if len(self) < _TABLE_LIMIT:
            self[cp] = got
        return got


# Every code point seen gets an entry, including those that fold to themselves: a key missing
# from a plain dict costs str.translate a KeyError per character.
_TABLE = _FoldTable((cp, chr(cp).lower()) for cp in range(128))
# ASCII text for fold_compact: upper case lowered, other letters and digits kept, the rest dropped.
_ASCII_COMPACT = {cp: (chr(cp).lower() if chr(cp).isalnum() else None) for cp in range(128)}
# Bytes fold_compact drops from the ASCII part of a folded text: all but 0-9 and a-z.
_NOT_ALNUM = bytes(b for b in range(256) if not (0x30 <= b <= 0x39 or 0x61 <= b <= 0x7A))


def fold(text: str) -> str:
    """Key for matching: NFD, diacritics removed, đ→d, lower case, whitespace collapsed."""
    # str.split() with no argument splits on exactly what the regex \s matches (str.isspace) and
    # drops the ends, so the join is _SPACE.sub(" ", ...).strip().
    if text.isascii():  # NFD and the marks are no-ops; casefold of ASCII is lower
        return " ".join(text.lower().split())
    return " ".join(text.translate(_TABLE).split())


def fold_compact(text: str) -> str:
    """Like fold, but with everything except letters and digits removed ("Tên  mô-hình:" → "tenmohinh")."""
    if text.isascii():
        return text.translate(_ASCII_COMPACT)
    # Only 0-9 and a-z are kept, so whitespace needs no collapsing; "ignore" drops every
    # non-ASCII code point (lone surrogates included), the byte translate the rest.
    return text.translate(_TABLE).encode("ascii", "ignore").translate(None, _NOT_ALNUM).decode("ascii")
