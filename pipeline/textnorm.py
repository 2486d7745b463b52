"""Vietnamese text normalisation for matching. Shown text is never altered by these functions."""
from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")
_NOT_ALNUM = re.compile(r"[^0-9a-z]")
# Letters that do not decompose under NFD.
_FOLD = str.maketrans({"đ": "d", "Đ": "d", "ð": "d", "Ð": "d"})


def nfc(text: str) -> str:
    """NFC form with collapsed whitespace: for storing and showing text that came from a unit."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def fold(text: str) -> str:
    """Key for matching: NFD, diacritics removed, đ→d, lower case, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFD", text.translate(_FOLD))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACE.sub(" ", stripped.translate(_FOLD).casefold()).strip()


def fold_compact(text: str) -> str:
    """Like fold, but with everything except letters and digits removed ("Tên  mô-hình:" → "tenmohinh")."""
    return _NOT_ALNUM.sub("", fold(text))
