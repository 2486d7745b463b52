"""``textnorm.fold`` and ``fold_compact`` for the readers, remembered per text.

A form folds the same texts on every copy a unit sends: the title lines, the ĐƠN VỊ line and the
unit's name, the note and signature rows, the subject, the file name. Folding one such line costs
15-20 us (a generator over its characters), and those folds were ~40% of reading a small form. The
answers are textnorm's own: a text is folded once by textnorm and then looked up.
"""
from __future__ import annotations

from pipeline import textnorm

_LIMIT = 20_000  # texts remembered per table; the table starts over when full
_LONGEST = 400  # longer texts (a cell holding a paragraph) are folded each time, not kept

_FOLDED: dict[str, str] = {}
_COMPACT: dict[str, str] = {}


def _remembered(table: dict[str, str], fn, text: str) -> str:  # type: ignore[no-untyped-def]
    got = table.get(text)
    if got is None:
        got = fn(text)
        if len(text) <= _LONGEST:
            if len(table) >= _LIMIT:
                table.clear()
            table[text] = got
    return got


def fold(text: str) -> str:
    return _remembered(_FOLDED, textnorm.fold, text)


def fold_compact(text: str) -> str:
    return _remembered(_COMPACT, textnorm.fold_compact, text)


__all__ = ["fold", "fold_compact"]
