"""Blank, fillable .xlsx versions of the table forms, built from their definitions (rules/forms/<id>.yaml,
``blank``), made to read back with no finding.

    FORMS                                   the shipped definitions' table forms ("registration", ...)
    blank_form(kind, *, year, unit_name, rows, rules) -> bytes      one form as .xlsx
    form_filename(kind, *, year, unit_name, rules) -> str           its Vietnamese filename
    write_forms(out_dir, *, year, unit_name, forms, rules) -> list[Path]   the forms into a folder
    read_marker(data, rules) -> dict | None                         the hidden marker of a workbook we made

Layout follows the forms at the end of the 2022 plan (``ke-hoach-2022.md``): the ``ĐƠN VỊ`` line
(the unit's name goes in the cell right of the label, pre-filled when given), the date line, the
definition's form number ("Mẫu M2") above it, the title rows, a two-row header with the ``group`` label
(``PHÂN LOẠI MÔ HÌNH``) merged over the printed category columns, the other columns in the definition's
order, the ``I TẬP THỂ`` / ``II CÁ NHÂN`` section rows when the definition has sections, with empty rows
under each, the note line ("Lưu ý") and the signature block. The header prints the definition's labels
(the corrected spellings "Chỉnh trang đô thị", "VHXH", not the plan's typos).

What makes the form hard to fill wrongly:
- category cells accept only the whole number 1 (or nothing), integer columns only a whole number within
  the definition's bounds: data validation with a Vietnamese message, in Excel and LibreOffice alike;
- the sheet is protected WITHOUT a password (a guard against accidental edits, not a lock: Review →
  Unprotect Sheet removes it). Title, header, section rows, note and signature block are locked;
  the unit cell, the date line and the entry cells are not. Rows may be inserted and deleted, and rows
  and columns resized, while protected;
- the ``ĐƠN VỊ`` row, the date row and the form-number row hold nothing else, so an unfilled unit cell
  reads as "no unit" and never as some other text of the row.

The marker: hidden workbook-level defined names ``_intake_form``, ``_intake_version``,
``_intake_year`` and ``_intake_unit`` (string constants, no cells, so the readers never see them as
data), also repeated in the document properties (keywords ``intake:<kind>:v<version>:<year>``).
"""
from __future__ import annotations

import io
import re
import unicodedata
from pathlib import Path
from typing import Any

from pipeline.forms.definitions import Column, FormDef
from pipeline.forms.rules import Rules, default_rules

FORM_VERSION = 1
MAX_ROWS = 500
FONT = "Times New Roman"
DATE_LINE = "….. ngày …tháng …năm {year}"
MARKER_NAMES = ("_intake_form", "_intake_version", "_intake_year", "_intake_unit")
_CATEGORY_WIDTH, _COLUMN_WIDTH = 9, 16
UNIT_LABEL, UNIT_LABEL_SIZE = "ĐƠN VỊ:", 13


def label_width(text: str, size: int) -> float:
    """Column width (Excel's units: one ``0`` of 11 pt Calibri) that holds ``text`` in bold ``size`` pt.

    Capitals of bold Times are about 1.25 of Calibri's ``0`` at the same size; plus a margin, because
    Excel clips a cell's text when the next cell is filled (the unit name sits right after the label)."""
    return round(len(text) * 1.25 * size / 11 + 2, 1)


# The shipped definitions' blank forms. Code that has the configured rules (a Context) asks them instead:
# ``rules.blank_forms(campaign.forms)``.
FORMS = default_rules().blank_forms()


def _form(kind: str, rules: Rules) -> FormDef:
    form = rules.forms.get(kind)
    if form is None or form.blank is None:
        raise ValueError(f"unknown form {kind!r}; one of {', '.join(rules.blank_forms())}")
    return form


def _check(kind: str, year: int, rows: int | None, rules: Rules) -> FormDef:
    form = _form(kind, rules)
    if not isinstance(year, int) or isinstance(year, bool) or not 2000 <= year <= 2100:
        raise ValueError(f"year must be a year such as 2022, not {year!r}")
    if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or not 1 <= rows <= MAX_ROWS):
        raise ValueError(f"rows must be between 1 and {MAX_ROWS}, not {rows!r}")
    return form


def _clean_unit(unit_name: str | None) -> str | None:
    if unit_name is None:
        return None
    name = " ".join(unicodedata.normalize("NFC", str(unit_name)).split())
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return name or None


def blank_form(kind: str, *, year: int = 2022, unit_name: str | None = None, rows: int | None = None,
               rules: Rules | None = None) -> bytes:
    """One table form as a blank, protected, fillable .xlsx, from its definition in ``rules``.

    ``rows``: empty entry rows (with sections: under EACH of I TẬP THỂ and II CÁ NHÂN; default: the
    definition's). ``unit_name`` pre-fills the cell after ``ĐƠN VỊ:`` (the unit can still edit it).
    Raises ValueError for a form without a blank (a report), an implausible year or a row count outside 1..500.
    """
    rules = rules or default_rules()
    form = _check(kind, year, rows, rules)
    spec = form.blank
    assert spec is not None
    rows = rows or spec.rows
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, Protection, Side
    from openpyxl.utils import get_column_letter
    from openpyxl.workbook.defined_name import DefinedName
    from openpyxl.worksheet.datavalidation import DataValidation
    from openpyxl.worksheet.properties import PageSetupProperties

    unit = _clean_unit(unit_name)
    cats = [c for c in form.categories if c.printed]
    # Printed columns, left to right: (Column, None) for one column, (group Column, category) under the group.
    layout: list[tuple[Column, Any]] = []
    for col in form.columns:
        if not col.printed:
            continue
        if col.key == "group":
            layout.extend((col, cat) for cat in cats)
        else:
            layout.append((col, None))
    ncols = last_col = len(layout)
    cat_cols = [i + 1 for i, (_, cat) in enumerate(layout) if cat is not None]
    cat_first, cat_last = (cat_cols[0], cat_cols[-1]) if cat_cols else (0, 0)
    key_col = {col.key: i + 1 for i, (col, cat) in enumerate(layout) if cat is None}
    L = get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = spec.sheet

    thin = Side(style="thin")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    dotted = Border(bottom=Side(style="dotted"))
    unlocked = Protection(locked=False)

    def font(size: int = 12, bold: bool = False, italic: bool = False) -> Font:
        return Font(name=FONT, size=size, bold=bold, italic=italic)

    def put(r: int, c: int, value: Any = None, **style: Any) -> Any:
        cell = ws.cell(r, c)
        if value is not None:
            cell.value = value
        cell.font = style.pop("font", font())
        for k, v in style.items():
            setattr(cell, k, v)
        return cell

    def merge(r: int, c1: int, c2: int, r2: int | None = None) -> None:
        if c2 > c1 or (r2 is not None and r2 > r):
            ws.merge_cells(start_row=r, start_column=c1, end_row=r2 or r, end_column=c2)

    # The right-hand block: date line, form number, signature.
    right_from = max(cat_first or 2, last_col - 4)

    r = 1
    if spec.form_number:
        put(r, right_from, spec.form_number, font=font(12, bold=True), alignment=Alignment(horizontal="right"))
        merge(r, right_from, last_col)
        r += 1
        # The plan prints M2 as: Mẫu M2 / date / ĐƠN VỊ.
        date_row, unit_row = r, r + 1
    else:
        unit_row, date_row = r, r + 1
    put(unit_row, 1, UNIT_LABEL, font=font(UNIT_LABEL_SIZE, bold=True), alignment=Alignment(vertical="bottom"))
    put(unit_row, 2, unit, font=font(13, bold=True), protection=unlocked, border=dotted,
        alignment=Alignment(horizontal="left", vertical="bottom", shrink_to_fit=True))
    put(unit_row, 3, None, font=font(13, bold=True), protection=unlocked, border=dotted)
    merge(unit_row, 2, 3)
    put(date_row, right_from, DATE_LINE.format(year=year), font=font(12, italic=True), protection=unlocked,
        alignment=Alignment(horizontal="center"))
    merge(date_row, right_from, last_col)
    r = max(unit_row, date_row) + 2

    # Title
    for i, text in enumerate(spec.title):
        put(r, 1, text.format(year=year), font=font(14 if i == 0 else 13, bold=True),
            alignment=Alignment(horizontal="center", vertical="center", wrap_text=True))
        merge(r, 1, last_col)
        r += 1
    r += 1

    # Two-row header: one column's label over both rows; the group's label over its category columns.
    top = r
    bold_centre = {"font": font(12, bold=True), "border": box,
                   "alignment": Alignment(horizontal="center", vertical="center", wrap_text=True)}
    for c, (col, cat) in enumerate(layout, start=1):
        put(top, c, col.label if cat is None or c == cat_first else None, **bold_centre)
        put(top + 1, c, cat.label if cat is not None else None, **bold_centre)
        if cat is None:
            merge(top, c, c, top + 1)
    if cat_cols:
        merge(top, cat_first, cat_last)
    ws.row_dimensions[top].height = 22
    ws.row_dimensions[top + 1].height = 34
    r = top + 2

    # Body: entry rows (unlocked), under the section rows when the form has them.
    entry_ranges: list[tuple[int, int]] = []
    centred = {c for c, (col, cat) in enumerate(layout, start=1)
               if cat is not None or col.key == "tt" or col.type != "text"}

    def entry_rows(first: int) -> int:
        for rr in range(first, first + rows):
            for c in range(1, ncols + 1):
                put(rr, c, None, border=box, protection=unlocked,
                    alignment=Alignment(horizontal="center" if c in centred else "left", vertical="center",
                                        wrap_text=c not in centred))
        entry_ranges.append((first, first + rows - 1))
        return first + rows

    if form.sections:
        for roman, label in (("I", "TẬP THỂ"), ("II", "CÁ NHÂN")):
            for c in range(1, ncols + 1):
                put(r, c, None, font=font(12, bold=True), border=box,
                    alignment=Alignment(horizontal="center" if c == 1 else "left", vertical="center"))
            ws.cell(r, 1).value = roman
            ws.cell(r, 2).value = label
            r = entry_rows(r + 1)
    else:
        r = entry_rows(r)

    # Note and signature block (the reader stops at "Lưu ý" and at the signature's title).
    r += 1
    if spec.note:
        put(r, 1, spec.note, font=font(12, italic=True), alignment=Alignment(horizontal="left"))
        merge(r, 1, last_col)
    r += 2
    put(r, right_from, spec.signer, font=font(12, bold=True),
        alignment=Alignment(horizontal="center", vertical="center", wrap_text=True))
    merge(r, right_from, last_col)
    ws.row_dimensions[r].height = 32
    put(r + 1, right_from, spec.signer_note, font=font(12, italic=True), alignment=Alignment(horizontal="center"))
    merge(r + 1, right_from, last_col)
    put(r + 5, right_from, None, protection=unlocked, alignment=Alignment(horizontal="center"))
    merge(r + 5, right_from, last_col)  # the signer's name, typed under the signature
    end_row = r + 5

    def cells(first: int, last: int) -> str:
        return " ".join(f"{L(first)}{a}:{L(last)}{b}" for a, b in entry_ranges)

    # Category cells: the whole number 1, or nothing.
    if cat_cols:
        dv = DataValidation(
            type="whole", operator="equal", formula1="1", allow_blank=True,
            showErrorMessage=True, errorStyle="stop",
            errorTitle="Chỉ điền số 1",
            error="Ô phân loại mô hình chỉ nhận số 1 (hoặc để trống). "
                  "Đánh số (1) vào một ô tương ứng với lĩnh vực của mô hình.",
            showInputMessage=True, promptTitle="Phân loại mô hình",
            prompt="Gõ số 1 nếu mô hình thuộc lĩnh vực này; để trống nếu không.",
        )
        dv.sqref = cells(cat_first, cat_last)  # type: ignore[assignment]
        ws.add_data_validation(dv)
    # Integer columns: a whole number within the definition's bounds.
    for col in form.columns:
        if col.type == "integer" and col.key in key_col:
            dv = _integer_validation(col, DataValidation)
            dv.sqref = cells(key_col[col.key], key_col[col.key])  # type: ignore[assignment]
            ws.add_data_validation(dv)

    # Columns, print setup, protection.
    for c, (col, cat) in enumerate(layout, start=1):
        width = (cat.width or _CATEGORY_WIDTH) if cat is not None else (col.width or _COLUMN_WIDTH)
        ws.column_dimensions[L(c)].width = width
    # The first column is narrow (TT) but holds the ĐƠN VỊ label: widen it so the label is never clipped.
    ws.column_dimensions["A"].width = max(ws.column_dimensions["A"].width, label_width(UNIT_LABEL, UNIT_LABEL_SIZE))

    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.print_options.horizontalCentered = True
    ws.page_margins.left = ws.page_margins.right = 0.5
    ws.page_margins.top = ws.page_margins.bottom = 0.6
    ws.print_title_rows = f"{top}:{top + 1}"
    ws.print_area = f"A1:{L(last_col)}{end_row}"

    p = ws.protection
    p.sheet = True  # no password: Review → Unprotect Sheet removes it
    p.selectLockedCells = False
    p.selectUnlockedCells = False
    p.formatColumns = False  # False = allowed while protected
    p.formatRows = False
    p.insertRows = False
    p.deleteRows = False
    first_cell = f"{L(key_col.get('name', 1))}{entry_ranges[0][0]}"
    ws.sheet_view.selection[0].activeCell = first_cell
    ws.sheet_view.selection[0].sqref = first_cell

    # The hidden marker.
    values = {"_intake_form": kind, "_intake_version": str(FORM_VERSION), "_intake_year": str(year),
              "_intake_unit": (unit or "")[:200]}
    for name, value in values.items():
        wb.defined_names[name] = DefinedName(name, attr_text='"' + value.replace('"', '""') + '"', hidden=True)
    props = wb.properties
    description = spec.description.format(year=year)
    props.title = description
    props.subject = description + (f" - {unit}" if unit else "")
    props.creator = "LĐLĐ quận Long Biên"
    props.keywords = f"intake:{kind}:v{FORM_VERSION}:{year}"
    props.description = "Biểu mẫu điền sẵn của LĐLĐ quận Long Biên; giữ nguyên dòng tiêu đề các cột."

    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _integer_validation(col: Column, DataValidation: Any) -> Any:
    """Excel's whole-number check for an integer column, with the bounds and a Vietnamese message."""
    if col.min is not None and col.max is not None:
        operator, f1, f2, words = "between", col.min, col.max, f"từ {col.min} đến {col.max}"
    elif col.min is not None:
        operator, f1, f2, words = "greaterThanOrEqual", col.min, None, f"từ {col.min} trở lên"
    elif col.max is not None:
        operator, f1, f2, words = "lessThanOrEqual", col.max, None, f"không quá {col.max}"
    else:
        operator, f1, f2, words = "between", -2147483648, 2147483647, ""
    return DataValidation(
        type="whole", operator=operator, formula1=str(f1), formula2=None if f2 is None else str(f2),
        allow_blank=not col.required, showErrorMessage=True, errorStyle="stop",
        errorTitle="Chỉ điền số nguyên", error=f"Ô «{col.label}» chỉ nhận số nguyên {words}".rstrip() + ".",
        showInputMessage=True, promptTitle=col.label[:32], prompt=f"Gõ một số nguyên {words}".rstrip() + ".",
    )


_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]+')


def form_filename(kind: str, *, year: int = 2022, unit_name: str | None = None, rules: Rules | None = None) -> str:
    """"Biểu đăng ký mô hình Dân vận khéo năm 2022[ - <unit>].xlsx" and its siblings (NFC)."""
    form = _check(kind, year, 1, rules or default_rules())
    assert form.blank is not None
    stem = form.blank.file_name.format(year=year)
    unit = _clean_unit(unit_name)
    if unit:
        safe = " ".join(_UNSAFE.sub(" ", unit).split()).strip(" .")[:80].strip(" .")
        if safe:
            stem += f" - {safe}"
    return unicodedata.normalize("NFC", stem + ".xlsx")


def write_forms(out_dir: Path, *, year: int, unit_name: str | None = None, forms: tuple[str, ...] | None = None,
                rules: Rules | None = None) -> list[Path]:
    """Write the blank forms of ``forms`` (default: every form with a blank) into ``out_dir`` (created if
    needed); return their paths."""
    rules = rules or default_rules()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in rules.blank_forms(forms):
        path = out / form_filename(kind, year=year, unit_name=unit_name, rules=rules)
        data = blank_form(kind, year=year, unit_name=unit_name, rules=rules)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        paths.append(path)
    return paths


def read_marker(data: bytes, rules: Rules | None = None) -> dict[str, str] | None:
    """{"form", "version", "year", "unit"} from a workbook made here (also after a unit saved it),
    or None when the marker is absent, names no form of ``rules`` or the bytes are no workbook."""
    try:
        from openpyxl import load_workbook

        wb = load_workbook(io.BytesIO(data), read_only=True)
    except Exception:  # noqa: BLE001 - anything that is not our workbook has no marker
        return None
    try:
        found: dict[str, str] = {}
        for name in MARKER_NAMES:
            dn = wb.defined_names.get(name)
            if dn is None or not dn.attr_text:
                continue
            text = dn.attr_text.strip()
            if text.startswith("="):
                text = text[1:]
            if len(text) >= 2 and text[0] == text[-1] == '"':
                text = text[1:-1].replace('""', '"')
            found[name.removeprefix("_intake_")] = text
        return found if found.get("form") in (rules or default_rules()).blank_forms() else None
    finally:
        wb.close()


XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_ATTACHMENTS: dict[tuple[str, str, int, str | None], tuple[str, bytes, str]] = {}


def form_attachment(kind: str, *, year: int, unit_name: str | None = None,
                    rules: Rules | None = None) -> tuple[str, bytes, str] | None:
    """The blank form a reminder or a rejection should carry, as (filename, bytes, MIME type); None for a
    form without a blank (a report)."""
    rules = rules or default_rules()
    form = rules.forms.get(kind)
    if form is None or form.blank is None:
        return None
    # Building a form takes ~80 ms; a pass may reject many files of one unit.
    key = (rules.digest, kind, year, unit_name)
    got = _ATTACHMENTS.get(key)
    if got is None:
        if len(_ATTACHMENTS) >= 64:
            _ATTACHMENTS.clear()
        got = _ATTACHMENTS[key] = (form_filename(kind, year=year, unit_name=unit_name, rules=rules),
                                   blank_form(kind, year=year, unit_name=unit_name, rules=rules), XLSX_MIME)
    return got


__all__ = ["FORMS", "FORM_VERSION", "blank_form", "form_filename", "write_forms", "read_marker", "form_attachment"]
