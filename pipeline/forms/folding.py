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


def fold(text: str) -> str:
    got = _FOLDED.get(text)
    if got is None:
        got = textnorm.fold(text)
        if len(text) <= _LONGEST:
            if len(_FOLDED) >= _LIMIT:
                _FOLDED.clear()
            _FOLDED[text] = got
    return got


def fold_compact(text: str) -> str:
    got = _COMPACT.get(text)
    if got is None:
        got = textnorm.fold_compact(text)
        if len(text) <= _LONGEST:
            if len(_COMPACT) >= _LIMIT:
                _COMPACT.clear()
            _COMPACT[text] = got
    return got


__all__ = ["fold", "fold_compact"]
