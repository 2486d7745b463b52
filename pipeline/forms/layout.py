"""Layout: find a form's header in any reader's grid, the way a person does.

The header is found by its words (folded, with the synonyms and misspellings of rules/synonyms.yaml and
the candidate forms' definitions), anywhere in the first rows, over one or two rows, columns in any order.
Which form the table is decides how its body is read (body.py); the header is found before that is known,
with the words of every form the document may be.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Iterable, Iterator

from pipeline.forms.definitions import FormDef
from pipeline.forms.readers import Grid
from pipeline.forms.rules import Vocabulary
from pipeline.model import Entry, Finding
from pipeline.textnorm import fold, fold_compact, nfc

HEADER_SCAN_ROWS = 40
_UNIT_LABEL = re.compile(r"^\s*(?:tên\s+)?(?:đơn\s*vị|don\s*vi)\s*[:.…\-–]*\s*", re.IGNORECASE)
_DOTS = re.compile(r"^[\s.…_:\-–]*$")


_TEXTS: dict[str, str] = {}  # cell text → shown text: headers, titles and notes repeat across forms


def text_of(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is str:
        got = _TEXTS.get(value)
        if got is None:
            if not value:
                got = ""
            elif unicodedata.is_normalized("NFC", value):
                got = " ".join(value.split())
            else:
                got = nfc(value)
            if len(value) <= 400:
                if len(_TEXTS) >= 20_000:
                    _TEXTS.clear()
                _TEXTS[value] = got
        return got
    if isinstance(value, bool):
        return "x" if value else ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, (datetime, date)):
        return value.strftime("%d/%m/%Y")
    return nfc(str(value))


_MATCH_CACHE: dict[tuple[str, str], str | None] = {}


def match_column(cell: str, vocab: Vocabulary) -> str | None:
    """The column key a header cell names, or None. Cached: forms repeat the same header words."""
    ck = (vocab.key, cell)
    if ck in _MATCH_CACHE:
        return _MATCH_CACHE[ck]
    if len(_MATCH_CACHE) > 20_000:
        _MATCH_CACHE.clear()
    found = _match_column(cell, vocab)
    _MATCH_CACHE[ck] = found
    return found


def _match_column(cell: str, vocab: Vocabulary) -> str | None:
    key = fold_compact(cell)
    if not key:
        return None
    best: tuple[int, str] | None = None
    for col, synonyms in vocab.columns.items():
        if key in synonyms:
            return col
        for syn in synonyms:
            # "Tên tập thể, cá nhân (1)" and "GPMB (*)": a long synonym followed by a marker.
            if len(syn) >= 5 and key.startswith(syn) and len(key) - len(syn) <= 3:
                if best is None or len(syn) > best[0]:
                    best = (len(syn), col)
    return best[1] if best else None


@dataclass
class Header:
    row: int  # last header row
    columns: dict[str, int]  # key → column index
    printed: dict[str, str]  # key → header text as printed


@dataclass
class TableReading:
    """One grid: its header (found by every candidate form's words), the lines above it, and once a form is
    chosen (body.read_body) its entries and findings."""

    grid: Grid
    header: Header | None
    seen: set[str] = field(default_factory=set)  # keys of the header, or of the best candidate row
    score: int = 0
    title_lines: list[str] = field(default_factory=list)
    unit_line: str | None = None
    unit_seen: bool = False
    entries: list[Entry] = field(default_factory=list)
    findings: list[Finding | None] = field(default_factory=list)
    sections_seen: bool = False
    pending: list[tuple[int, list[Any]]] = field(default_factory=list)  # rows read past the header
    rest: Iterable[tuple[int, list[Any]]] = ()  # the rows below

    @property
    def grid_name(self) -> str:
        return self.grid.name

    def missing(self, form: FormDef) -> list[str]:
        """The form's required columns and categories this header (or best candidate) lacks, in order."""
        return [k for k in (*form.required_columns, *form.required_categories) if k not in self.seen]

    def body(self) -> Iterator[tuple[int, list[Any]]]:
        yield from self.pending
        yield from self.rest

    def keep_rows(self) -> None:
        """Hold the rows below the header in a list, so that the body can be read more than once."""
        if not isinstance(self.rest, list):
            self.rest = list(self.rest)


def _row_keys(cells: list[Any], vocab: Vocabulary) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for i, v in enumerate(cells):
        if v is None or v == "":
            continue  # text_of gives "" (calamine's empty cells are "")
        t = text_of(v)
        if not t or len(t) > 80:
            continue
        key = match_column(t, vocab)
        if key and key not in found:
            found[key] = (i, t)
    return found


def _score(keys: dict[str, Any], vocab: Vocabulary) -> int:
    return sum(1 for k in keys if k in vocab.scored)


def unit_from_cells(texts: list[str]) -> tuple[bool, str | None]:
    """(label seen, unit name) from a row or paragraph: "ĐƠN VỊ: Công đoàn trường X"."""
    for i, t in enumerate(texts):
        f = fold(t)
        if not (f.startswith("don vi") or f.startswith("ten don vi")):
            continue
        rest = _UNIT_LABEL.sub("", t, count=1).strip(" .…:_-–")
        if rest and not _DOTS.match(rest):
            return True, nfc(rest)
        for later in texts[i + 1 :]:
            if later and not _DOTS.match(later):
                return True, nfc(later.strip(" .…:_-–"))
        return True, None
    return False, None


def find_header(grid: Grid, vocab: Vocabulary) -> TableReading:
    """The header row(s) of ``grid`` and the lines above it; the rows below are left for body.read_body.

    A row is the header when it holds every required column of one of the candidate forms (name and model),
    or four of their required and category columns."""
    out = TableReading(grid, None)
    buffered: list[tuple[int, list[Any]]] = []
    rows = grid.rows
    header: Header | None = None
    best_keys: set[str] = set()
    best_score = -1
    for rno, cells in rows:
        buffered.append((rno, cells))
        keys = _row_keys(cells, vocab)
        sc = _score(keys, vocab)
        if sc > best_score:
            best_score = sc
            best_keys = set(keys)
        if any(n <= keys.keys() for n in vocab.needed) or sc >= 4:
            header = Header(rno, {k: c for k, (c, _) in keys.items()}, {k: t for k, (_, t) in keys.items()})
            break
        if len(buffered) >= HEADER_SCAN_ROWS:
            break
    for rno, cells in buffered[:-1] if header else buffered:
        texts = [t for v in cells if v is not None and v != "" and (t := text_of(v))]
        if texts:
            out.title_lines.append(" ".join(texts))
            if not out.unit_seen:
                out.unit_seen, out.unit_line = unit_from_cells(texts)
    out.score = max(best_score, 0)
    if header is None:
        out.seen = best_keys
        return out

    # A second header row: the category words under "PHÂN LOẠI MÔ HÌNH".
    nxt = next(rows, None)
    if nxt is not None:
        keys2 = _row_keys(nxt[1], vocab)
        new = {k: v for k, v in keys2.items() if k not in header.columns}
        filled = sum(1 for v in nxt[1] if v is not None and v != "" and text_of(v))
        if new and 2 * len(keys2) >= filled and (not vocab.identity & set(new) or _score(new, vocab) >= 2):
            for k, (c, t) in new.items():
                header.columns[k] = c
                header.printed[k] = t
            header.row = nxt[0]
        else:
            out.pending.append(nxt)
    out.header = header
    out.seen = set(header.columns)
    out.rest = rows
    return out
