"""Layout: find a form's header, sections and marks in any reader's grid, the way a person does.

The header is found by its words (folded, with the synonyms and misspellings of
rules/synonyms.yaml), anywhere in the first rows, over one or two rows, columns in any order.
Below it: section rows (I TẬP THỂ / II CÁ NHÂN) set the section, blank rows, totals rows and the
column-numbering row are skipped, and the note / signature block ends the table.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pipeline.forms.readers import Grid
from pipeline.model import CATEGORIES, CATEGORY_LABELS, Entry, Finding
from pipeline.forms.rules import Rules
from pipeline.textnorm import fold, fold_compact, nfc

HEADER_SCAN_ROWS = 40
REQUIRED_CATEGORIES = CATEGORIES[:6]  # "Lĩnh vực khác" is missing from M2 and the commendation list
_NUMBERING = re.compile(r"^\(?[0-9]{1,2}\)?$|^\([a-z]\)$")
_UNIT_LABEL = re.compile(r"^\s*(?:tên\s+)?(?:đơn\s*vị|don\s*vi)\s*[:.…\-–]*\s*", re.IGNORECASE)
_DOTS = re.compile(r"^[\s.…_:\-–]*$")

# How each column is named in a Vietnamese message when it is missing.
COLUMN_LABELS = {
    "name": "Tên tập thể, cá nhân",
    "model": "Tên mô hình",
    **CATEGORY_LABELS,
    "result": "KẾT QUẢ THỰC HIỆN",
    "note": "Ghi chú",
}


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


def match_column(cell: str, rules: Rules) -> str | None:
    """The column key a header cell names, or None. Cached: forms repeat the same header words."""
    ck = (rules.digest, cell)
    if ck in _MATCH_CACHE:
        return _MATCH_CACHE[ck]
    if len(_MATCH_CACHE) > 20_000:
        _MATCH_CACHE.clear()
    found = _match_column(cell, rules)
    _MATCH_CACHE[ck] = found
    return found


def _match_column(cell: str, rules: Rules) -> str | None:
    key = fold_compact(cell)
    if not key:
        return None
    best: tuple[int, str] | None = None
    for col, synonyms in rules.columns.items():
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
    grid_name: str
    header: Header | None
    missing: list[str] = field(default_factory=list)  # keys missing from the best header candidate
    score: int = 0
    title_lines: list[str] = field(default_factory=list)
    unit_line: str | None = None
    unit_seen: bool = False
    entries: list[Entry] = field(default_factory=list)
    findings: list[Finding | None] = field(default_factory=list)
    sections_seen: bool = False


def _row_keys(cells: list[Any], rules: Rules) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for i, v in enumerate(cells):
        if v is None or v == "":
            continue  # text_of gives "" (calamine's empty cells are "")
        t = text_of(v)
        if not t or len(t) > 80:
            continue
        key = match_column(t, rules)
        if key and key not in found:
            found[key] = (i, t)
    return found


def _score(keys: dict[str, Any]) -> int:
    return sum(1 for k in keys if k in ("name", "model") or k in CATEGORIES)


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


def read_grid(grid: Grid, rules: Rules, default_section: str = "collective") -> TableReading:
    out = TableReading(grid.name, None)
    buffered: list[tuple[int, list[Any]]] = []
    rows = grid.rows
    header: Header | None = None
    best_missing: list[str] = []
    best_score = -1
    for rno, cells in rows:
        buffered.append((rno, cells))
        keys = _row_keys(cells, rules)
        sc = _score(keys)
        if sc > best_score:
            best_score = sc
            best_missing = _missing(keys)
        if ("name" in keys and "model" in keys) or sc >= 4:
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
        out.missing = best_missing
        return out

    # A second header row: the category words under "PHÂN LOẠI MÔ HÌNH".
    pending: list[tuple[int, list[Any]]] = []
    nxt = next(rows, None)
    if nxt is not None:
        keys2 = _row_keys(nxt[1], rules)
        new = {k: v for k, v in keys2.items() if k not in header.columns}
        filled = sum(1 for v in nxt[1] if v is not None and v != "" and text_of(v))
        if new and 2 * len(keys2) >= filled and (not {"name", "model"} & set(new) or _score(new) >= 2):
            for k, (c, t) in new.items():
                header.columns[k] = c
                header.printed[k] = t
            header.row = nxt[0]
        else:
            pending.append(nxt)
    out.header = header
    out.missing = _missing({k: None for k in header.columns})
    _read_body(grid, rules, header, pending, out, default_section)
    return out


def _missing(keys: dict[str, Any]) -> list[str]:
    return [k for k in ("name", "model", *REQUIRED_CATEGORIES) if k not in keys]


def _chain(first: list[tuple[int, list[Any]]], rest: Any) -> Any:
    yield from first
    yield from rest


def _read_body(
    grid: Grid, rules: Rules, header: Header, pending: list[tuple[int, list[Any]]], out: TableReading, section: str
) -> None:
    cols = header.columns
    cat_cols = [(c, cols[c]) for c in CATEGORIES if c in cols]
    name_c, model_c = cols.get("name"), cols.get("model")
    result_c, note_c = cols.get("result"), cols.get("note")
    marks = rules.marks
    limit = rules.limits["max_rows"]
    seen: dict[tuple[str, str, str], int] = {}
    fills: dict[int, tuple[Any, int]] = {}  # column → (value, last row) of an open vertical merge
    starts_by_row: dict[int, list[tuple[int, int]]] = {}
    for (r, c), last in grid.vmerges.items():
        starts_by_row.setdefault(r, []).append((c, last))
    findings = out.findings
    mark_cache: dict[str, bool] = {}
    empty = ("", None)

    def cell(cells: list[Any], c: int | None) -> Any:
        if c is None or c >= len(cells):
            return None
        return cells[c]

    for count, (rno, cells) in enumerate(_chain(pending, grid.rows)):
        if count > limit:
            break
        if starts_by_row or fills:
            for c, last in starts_by_row.get(rno, ()):
                if c < len(cells):
                    fills[c] = (cells[c], last)
            for c, (v, last) in list(fills.items()):
                if rno > last:
                    del fills[c]
                elif c < len(cells) and cells[c] in empty:
                    cells[c] = v
        if all(v in empty for v in cells):
            continue
        name = text_of(cell(cells, name_c))
        model = text_of(cell(cells, model_c))
        if not model:
            nonempty = [t for t in (text_of(v) for v in cells) if t]
            if not nonempty:
                continue
            joined = fold_compact("".join(nonempty))
            if joined in rules.sections.get("collective", ()):
                section, out.sections_seen = "collective", True
                continue
            if joined in rules.sections.get("individual", ()):
                section, out.sections_seen = "individual", True
                continue
            first = fold_compact(nonempty[0])
            if any(first.startswith(s) for s in rules.stops):
                break
            if any(first.startswith(s) for s in rules.totals):
                continue
        elif len(name) <= 4 and len(model) <= 4 and _NUMBERING.match(name) and _NUMBERING.match(model):
            continue  # the "(1) (2) (3)" row under the header
        elif len(name) <= 12 and fold_compact(name) in rules.totals:
            continue
        # Marks
        found_cats: list[str] = []
        bad: list[tuple[int, str, str]] = []
        for code, c in cat_cols:
            v = cell(cells, c)
            if v is None or v == "":
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if v == 1:
                    found_cats.append(code)
                else:
                    bad.append((c, code, text_of(v)))
                continue
            if v is True:
                found_cats.append(code)
                continue
            if not isinstance(v, str):
                bad.append((c, code, text_of(v)))
                continue
            ok = mark_cache.get(v)
            if ok is None:
                t = fold(v)
                ok = mark_cache[v] = (t in marks) if t else None  # type: ignore[assignment]
            if ok is None and not v.strip():
                continue
            if ok:
                found_cats.append(code)
            else:
                bad.append((c, code, text_of(v)))
        if not name and not model and not found_cats and not bad:
            continue  # a numbered blank line of the template, a date, a stray signature name
        loc = grid.locate
        row_loc = loc(rno, name_c if name_c is not None else 0)
        if not name:
            findings.append(rules.finding("empty-name", location=loc(rno, name_c or 0), row=rno,
                                          column=header.printed.get("name"), model=model))
        if not model:
            findings.append(rules.finding("empty-model", location=loc(rno, model_c or 0), row=rno,
                                          column=header.printed.get("model"), name=name))
        for c, code, value in bad:
            findings.append(rules.finding("bad-mark", location=loc(rno, c), row=rno,
                                          column=header.printed.get(code), value=value, name=name, model=model))
        if not found_cats and not bad and cat_cols:
            c0 = cat_cols[0][1]
            findings.append(rules.finding("no-category", location=loc(rno, c0), row=rno,
                                          column=header.printed.get("group") or header.printed.get(cat_cols[0][0]),
                                          name=name, model=model))
        elif len(found_cats) > 1:
            c0 = cols[found_cats[1]]
            findings.append(rules.finding("multiple-categories", location=loc(rno, c0), row=rno,
                                          column=header.printed.get(found_cats[1]), name=name, model=model,
                                          found=", ".join(header.printed.get(k, k) for k in found_cats)))
        key = (section, name.casefold(), model.casefold())
        if name or model:
            if key in seen:
                findings.append(rules.finding("duplicate-entry", location=row_loc, row=rno,
                                              column=header.printed.get("name"), first_row=seen[key],
                                              name=name, model=model))
            else:
                seen[key] = rno
        out.entries.append(
            Entry(
                section=section,
                name=name,
                model=model,
                categories=tuple(found_cats),
                result=text_of(cell(cells, result_c)) or None,
                note=text_of(cell(cells, note_c)) or None,
                row=rno,
                location=row_loc,
            )
        )
