"""The rows below a header, read as the entries of one form (its definition says which columns count).

Section rows (I TẬP THỂ / II CÁ NHÂN) set the section, blank rows, totals rows and the column-numbering row
are skipped, and the note / signature block ends the table. Each entry's category marks are checked, its
required and typed cells too (``bad-integer``, ``bad-date``, ``empty-required``), and the form's extra
columns are kept as written in ``Entry.extra``.

What the reader left out is said too: hidden rows between the header and the end of the table
(``hidden-rows``, a warning: they are not entries, and the unit may have hidden this year's rows by mistake),
and formulas with no stored result (files written by some tools). Such a formula in a column that decides
what is recorded (the name, the model, a category, a required column) is an error, ``formula-no-value``: the
entry as read would be wrong or incomplete, and the blank cell's own finding (empty-name, no-category, ...)
would give the wrong advice, so it is replaced. Anywhere else (TT, notes, optional columns, the title) the
entries are right without it: one warning per table, ``formula-no-value-other``, with the count and the
first cell.
"""
from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from pipeline.forms.definitions import Column, FormDef
from pipeline.forms.layout import TableReading, text_of
from pipeline.forms.rules import Rules
from pipeline.model import Entry
from pipeline.textnorm import fold, fold_compact

_NUMBERING = re.compile(r"^\(?[0-9]{1,2}\)?$|^\([a-z]\)$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_DATE = re.compile(r"^(\d{1,2})\s*[/.\-]\s*(\d{1,2})\s*[/.\-]\s*(\d{4})$")
_OWN = ("tt", "group", "name", "model")  # read by the loop itself


def read_body(t: TableReading, rules: Rules, form: FormDef) -> None:
    """Fill ``t.entries``, ``t.findings`` and ``t.sections_seen`` from the rows below ``t.header``."""
    header = t.header
    assert header is not None
    grid = t.grid
    cols = header.columns
    cat_cols = [(c, cols[c]) for c in form.category_codes if c in cols]
    name_c, model_c = cols.get("name"), cols.get("model")
    result_c = cols.get("result") if form.column("result") else None
    note_c = cols.get("note") if form.column("note") else None
    # The form's other columns: checked when required or typed, kept when extra.
    checked = [(col, cols[col.key]) for col in form.columns
               if col.key in cols and col.key not in _OWN and (col.required or col.type != "text")]
    extra = [(col.key, cols[col.key]) for col in form.extra_columns if col.key in cols]
    name_col, model_col = form.column("name"), form.column("model")
    section = form.default_section
    marks = rules.marks
    limit = rules.limits["max_rows"]
    seen: dict[tuple[str, str, str], int] = {}
    fills: dict[int, tuple[Any, int]] = {}  # column → (value, last row) of an open vertical merge
    starts_by_row: dict[int, list[tuple[int, int]]] = {}
    for (r, c), last in grid.vmerges.items():
        starts_by_row.setdefault(r, []).append((c, last))
    findings = t.findings
    mark_cache: dict[str, bool] = {}
    empty = ("", None)
    no_value = grid.no_value
    nv_rows = {r for r, _ in no_value}
    matter = sorted({c for c in (name_c, model_c) if c is not None} | {c for _, c in cat_cols}
                    | {c for col, c in checked if col.required})
    reported: set[tuple[int, int]] = set()  # formulas without a result already named by formula-no-value
    last_row: int | None = None  # where the table ended (the note or signature block), None: at the grid's end

    def finding(type_: str, **kw: Any) -> None:
        findings.append(rules.finding(type_, form=form, **kw))

    def cell(cells: list[Any], c: int | None) -> Any:
        if c is None or c >= len(cells):
            return None
        return cells[c]

    for count, (rno, cells) in enumerate(t.body()):
        if count > limit:
            last_row = rno
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
        blank_formulas: set[int] = set()
        if rno in nv_rows:
            blank_formulas = {c for c in matter if (rno, c) in no_value}
            for c in sorted(blank_formulas):
                reported.add((rno, c))
                finding("formula-no-value", location=grid.locate(rno, c), row=rno,
                        column=header.printed.get(_key_at(cols, c), ""))
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
                section, t.sections_seen = "collective", True
                continue
            if joined in rules.sections.get("individual", ()):
                section, t.sections_seen = "individual", True
                continue
            first = fold_compact(nonempty[0])
            if any(first.startswith(s) for s in rules.stops):
                last_row = rno
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
                f = fold(v)
                ok = mark_cache[v] = (f in marks) if f else None  # type: ignore[assignment]
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
        if not name and name_col is not None and name_col.required and name_c not in blank_formulas:
            finding(name_col.if_blank, location=loc(rno, name_c or 0), row=rno, column=header.printed.get("name"),
                    name=name, model=model)
        if not model and model_col is not None and model_col.required and model_c not in blank_formulas:
            finding(model_col.if_blank, location=loc(rno, model_c or 0), row=rno,
                    column=header.printed.get("model"), name=name, model=model)
        for c, code, value in bad:
            finding("bad-mark", location=loc(rno, c), row=rno, column=header.printed.get(code), value=value,
                    name=name, model=model)
        if not found_cats and not bad and cat_cols and not any(c in blank_formulas for _, c in cat_cols):
            c0 = cat_cols[0][1]
            finding("no-category", location=loc(rno, c0), row=rno,
                    column=header.printed.get("group") or header.printed.get(cat_cols[0][0]), name=name, model=model)
        elif len(found_cats) > 1:
            c0 = cols[found_cats[1]]
            finding("multiple-categories", location=loc(rno, c0), row=rno, column=header.printed.get(found_cats[1]),
                    name=name, model=model, found=", ".join(header.printed.get(k, k) for k in found_cats))
        for col, c in checked:
            if c in blank_formulas:
                continue
            problem = _check_cell(col, cell(cells, c))
            if problem:
                finding(problem, location=loc(rno, c), row=rno, column=header.printed.get(col.key, col.label),
                        value=text_of(cell(cells, c)), name=name, model=model, min=_bound(col.min),
                        max=_bound(col.max), expected=_expected(col))
        key = (section, name.casefold(), model.casefold())
        if name or model:
            if key in seen:
                finding("duplicate-entry", location=row_loc, row=rno, column=header.printed.get("name"),
                        first_row=seen[key], name=name, model=model)
            else:
                seen[key] = rno
        t.entries.append(
            Entry(
                section=section,
                name=name,
                model=model,
                categories=tuple(found_cats),
                result=text_of(cell(cells, result_c)) or None,
                note=text_of(cell(cells, note_c)) or None,
                row=rno,
                location=row_loc,
                extra=tuple((k, v) for k, c in extra if (v := text_of(cell(cells, c)))) if extra else (),
            )
        )
    _left_out(t, rules, form, header.row, last_row, reported)


def _left_out(t: TableReading, rules: Rules, form: FormDef, header_row: int, last_row: int | None,
              reported: set[tuple[int, int]]) -> None:
    """The warnings for what the reader left out of the table: hidden rows, formulas without a result."""
    grid = t.grid
    hidden = [r for r in grid.hidden if r > header_row and (last_row is None or r < last_row)]
    if hidden:
        t.findings.append(rules.finding("hidden-rows", form=form, location=grid.locate(hidden[0], 0), row=hidden[0],
                                        where=grid.name, count=len(hidden)))
    others = sorted(k for k in grid.no_value if k not in reported)
    if others:
        t.findings.append(rules.finding("formula-no-value-other", form=form, location=grid.locate(*others[0]),
                                        row=others[0][0], where=grid.name, count=len(others)))


def _key_at(cols: dict[str, int], c: int) -> str:
    """The header key of column ``c`` (the first, should two keys share it)."""
    return next((k for k, i in cols.items() if i == c), "")


def _check_cell(col: Column, value: Any) -> str | None:
    """The rule a cell breaks (its column's if_blank, bad-integer, bad-date), or None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return col.if_blank if col.required else None
    if col.type == "integer":
        n = _integer(value)
        if n is None or (col.min is not None and n < col.min) or (col.max is not None and n > col.max):
            return "bad-integer"
    elif col.type == "date" and not _is_date(value):
        return "bad-date"
    return None


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        return int(value.strip())
    return None


def _is_date(value: Any) -> bool:
    if isinstance(value, (datetime, date)):
        return True
    m = _DATE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        return False
    try:
        date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        return False
    return True


def _bound(value: int | None) -> str:
    return "" if value is None else str(value)


def _expected(col: Column) -> str:
    """What an integer column takes, as a message says it: "số nguyên từ 1 trở lên"."""
    if col.min is not None and col.max is not None:
        return f"số nguyên từ {col.min} đến {col.max}"
    if col.min is not None:
        return f"số nguyên từ {col.min} trở lên"
    if col.max is not None:
        return f"số nguyên không quá {col.max}"
    return "số nguyên"
