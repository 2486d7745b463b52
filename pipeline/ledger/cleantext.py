"""Text the ledger stores, made storable on every backend before it is written.

Mail is written by anyone: a decoded subject or display name can hold NUL (``=?utf-8?q?=00?=``), a header
decoded with ``surrogateescape`` lone surrogates, and a Content-Type or sender can run to hundreds of
characters. SQLite stores all of it; PostgreSQL refuses NUL and unencodable text and raises on a value
longer than its ``VARCHAR(n)``, which would leave the mail in ``error`` without a receipt. So NUL and lone
surrogates are dropped and a value longer than its column keeps its first n characters. What the ledger
keeps is for finding and showing; the archived mail keeps every byte.
"""
from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str, length: int | None = None) -> str:
    """``value`` without NUL and lone surrogates, cut to ``length`` characters when given."""
    if _UNSTORABLE.search(value):
        value = _UNSTORABLE.sub("", value)
    return value[:length] if length is not None and len(value) > length else value


class CleanString(sa.types.TypeDecorator[str]):
    """``VARCHAR(n)`` whose values are made storable (and cut to n) on the way in; same DDL as String(n)."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        return storable(value, self.impl.length) if isinstance(value, str) else value


class CleanText(sa.types.TypeDecorator[str]):
    """``TEXT`` whose values are made storable on the way in; same DDL as Text."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        return storable(value) if isinstance(value, str) else value
