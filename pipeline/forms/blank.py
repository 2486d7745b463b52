"""Blank, fillable .xlsx versions of the plan's three forms, made to read back with no finding.

    FORMS                                   ("registration", "summary", "commendation")
    blank_form(kind, *, year, unit_name, rows) -> bytes      one form as .xlsx
    form_filename(kind, *, year, unit_name) -> str           its Vietnamese filename
    write_forms(out_dir, *, year, unit_name) -> list[Path]   all three into a folder
    read_marker(data) -> dict | None                         the hidden marker of a workbook we made

Layout follows the forms at the end of the 2022 plan (``ke-hoach-2022.md``): the ``ĐƠN VỊ`` line
(the unit's name goes in the cell right of the label, pre-filled when given), the date line, "Mẫu M2"
on the summary, the two title rows, a two-row header with ``PHÂN LOẠI MÔ HÌNH`` merged over the
category columns (seven on the registration form, with "Lĩnh vực khác"; six on M2 and the
commendation list), ``Ghi chú`` or ``KẾT QUẢ THỰC HIỆN`` last, the ``I TẬP THỂ`` / ``II CÁ NHÂN``
section rows on M2 and the commendation list with empty rows under each, the "Lưu ý" line and the
signature block. The header uses the corrected spellings ("Chỉnh trang đô thị", "VHXH"), not the
plan's typos.

What makes the form hard to fill wrongly:
- category cells accept only the whole number 1 (or nothing): data validation with a Vietnamese
  message, in Excel and LibreOffice alike;
- the sheet is protected WITHOUT a password (a guard against accidental edits, not a lock: Review →
  Unprotect Sheet removes it). Title, header, section rows, note and signature block are locked;
  the unit cell, the date line, TT, name, model, categories and note/result cells are not. Rows may
  be inserted and deleted, and rows and columns resized, while protected;
- the ``ĐƠN VỊ`` row, the date row and the "Mẫu M2" row hold nothing else, so an unfilled unit cell
  reads as "no unit" and never as some other text of the row.

The marker: hidden workbook-level defined names ``_intake_form``, ``_intake_version``,
``_intake_year`` and ``_intake_unit`` (string constants, no cells, so the readers never see them as
data), also repeated in the document properties (keywords ``intake:<kind>:v<version>:<year>``).
"""
from __future__ import annotations

import functools

import io
import re
import unicodedata
from pathlib import Path
from typing import Any

from pipeline.model import CATEGORIES, CATEGORY_LABELS

FORMS = ("registration", "summary", "commendation")
FORM_VERSION = 1
MAX_ROWS = 500
FONT = "Times New Roman"
NOTE = "Lưu ý: Đánh số (1) vào ô tương ứng trong mục phân loại mô hình"
DATE_LINE = "….. ngày …tháng …năm {year}"
MARKER_NAMES = ("_intake_form", "_intake_version", "_intake_year", "_intake_unit")


def _spec(kind: str, year: int) -> dict[str, Any]:
    """Everything that differs between the three forms."""
    if kind == "registration":
        return {
            "sheet": "Biểu đăng ký",
            "title": ("BIỂU ĐĂNG KÝ", f'Mô hình "Dân vận khéo" năm {year}'),
            "mau": None,
            "cats": CATEGORIES,  # seven, with "Lĩnh vực khác"
            "last": "Ghi chú",
            "sections": False,
            "signer": ("ĐẠI DIỆN TẬP THỂ/CÁ NHÂN ĐĂNG KÝ MÔ HÌNH", "(Ký, ghi rõ họ tên)"),
            "filename": f"Biểu đăng ký mô hình Dân vận khéo năm {year}",
            "description": f'Biểu đăng ký mô hình "Dân vận khéo" năm {year}',
        }
    if kind == "summary":
        return {
            "sheet": "Mẫu M2",
            "title": ("BIỂU TỔNG HỢP",
                      f'Đăng ký mô hình thực hiện phong trào thi đua "Dân vận khéo" năm {year}'),
            "mau": "Mẫu M2",
            "cats": CATEGORIES[:6],
            "last": "Ghi chú",
            "sections": True,
            "signer": ("THỦ TRƯỞNG ĐƠN VỊ", "(Ký, đóng dấu)"),
            "filename": f"Mẫu M2 - Biểu tổng hợp đăng ký mô hình Dân vận khéo năm {year}",
            "description": f'Mẫu M2 - Biểu tổng hợp đăng ký mô hình "Dân vận khéo" năm {year}',
        }
    if kind == "commendation":
        return {
            "sheet": "Danh sách đề xuất khen thưởng",
            "title": ("DANH SÁCH",
                      f'Đề xuất khen thưởng phong trào thi đua "Dân vận khéo" năm {year}'),
            "mau": None,
            "cats": CATEGORIES[:6],
            "last": "KẾT QUẢ THỰC HIỆN",
            "sections": True,
            "signer": ("THỦ TRƯỞNG ĐƠN VỊ", "(Ký, đóng dấu)"),
            "filename": f"Danh sách đề xuất khen thưởng Dân vận khéo năm {year}",
            "description": f'Danh sách đề xuất khen thưởng phong trào thi đua "Dân vận khéo" năm {year}',
        }
    raise ValueError(f"unknown form {kind!r}; one of {', '.join(FORMS)}")


def _check(kind: str, year: int, rows: int) -> None:
    if kind not in FORMS:
        raise ValueError(f"unknown form {kind!r}; one of {', '.join(FORMS)}")
    if not isinstance(year, int) or isinstance(year, bool) or not 2000 <= year <= 2100:
        raise ValueError(f"year must be a year such as 2022, not {year!r}")
    if not isinstance(rows, int) or isinstance(rows, bool) or not 1 <= rows <= MAX_ROWS:
        raise ValueError(f"rows must be between 1 and {MAX_ROWS}, not {rows!r}")


def _clean_unit(unit_name: str | None) -> str | None:
    if unit_name is None:
        return None
    name = " ".join(unicodedata.normalize("NFC", str(unit_name)).split())
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return name or None


def blank_form(kind: str, *, year: int = 2022, unit_name: str | None = None, rows: int = 20) -> bytes:
    """One of the plan's forms as a blank, protected, fillable .xlsx.

    ``rows``: empty entry rows (on M2 and the commendation list: under EACH of I TẬP THỂ and
    II CÁ NHÂN). ``unit_name`` pre-fills the cell after ``ĐƠN VỊ:`` (the unit can still edit it).
    Raises ValueError for an unknown kind, an implausible year or a row count outside 1..500.
    """
    _check(kind, year, rows)
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, Protection, Side
    from openpyxl.utils import get_column_letter
    from openpyxl.workbook.defined_name import DefinedName
    from openpyxl.worksheet.datavalidation import DataValidation
    from openpyxl.worksheet.properties import PageSetupProperties

    spec = _spec(kind, year)
    unit = _clean_unit(unit_name)
    cats = spec["cats"]
    ncols = 3 + len(cats) + 1
    last_col = ncols
    cat_first, cat_last = 4, 3 + len(cats)
    L = get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = spec["sheet"]

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

    # Every cell of the form area in the form's font, so typed text is Times New Roman too.
    right_from = max(cat_first, last_col - 4)  # the right-hand block: date line, "Mẫu M2", signature

    r = 1
    if spec["mau"]:
        put(r, right_from, spec["mau"], font=font(12, bold=True),
            alignment=Alignment(horizontal="right"))
        merge(r, right_from, last_col)
        r += 1
    if kind == "summary":
        # The plan prints M2 as: Mẫu M2 / date / ĐƠN VỊ.
        date_row, unit_row = r, r + 1
    else:
        unit_row, date_row = r, r + 1
    put(unit_row, 1, "ĐƠN VỊ:", font=font(13, bold=True), alignment=Alignment(vertical="bottom"))
    put(unit_row, 2, unit, font=font(13, bold=True), protection=unlocked, border=dotted,
        alignment=Alignment(horizontal="left", vertical="bottom", shrink_to_fit=True))
    put(unit_row, 3, None, font=font(13, bold=True), protection=unlocked, border=dotted)
    merge(unit_row, 2, 3)
    put(date_row, right_from, DATE_LINE.format(year=year), font=font(12, italic=True), protection=unlocked,
        alignment=Alignment(horizontal="center"))
    merge(date_row, right_from, last_col)
    r = max(unit_row, date_row) + 2

    # Title
    for i, text in enumerate(spec["title"]):
        put(r, 1, text, font=font(14 if i == 0 else 13, bold=True),
            alignment=Alignment(horizontal="center", vertical="center", wrap_text=True))
        merge(r, 1, last_col)
        r += 1
    r += 1

    # Two-row header
    top = r
    heads = {1: "TT", 2: "Tên tập thể, cá nhân", 3: "Tên mô hình", cat_first: "PHÂN LOẠI MÔ HÌNH",
             last_col: spec["last"]}
    for c in range(1, ncols + 1):
        put(top, c, heads.get(c), font=font(12, bold=True), border=box,
            alignment=Alignment(horizontal="center", vertical="center", wrap_text=True))
        label = CATEGORY_LABELS[cats[c - cat_first]] if cat_first <= c <= cat_last else None
        put(top + 1, c, label, font=font(12, bold=True), border=box,
            alignment=Alignment(horizontal="center", vertical="center", wrap_text=True))
    for c in (1, 2, 3, last_col):
        merge(top, c, c, top + 1)
    merge(top, cat_first, cat_last)
    ws.row_dimensions[top].height = 22
    ws.row_dimensions[top + 1].height = 34
    r = top + 2

    # Body: entry rows (unlocked), under section rows on M2 and the commendation list.
    entry_ranges: list[tuple[int, int]] = []

    def entry_rows(first: int) -> int:
        for rr in range(first, first + rows):
            for c in range(1, ncols + 1):
                centred = c == 1 or cat_first <= c <= cat_last
                put(rr, c, None, border=box, protection=unlocked,
                    alignment=Alignment(horizontal="center" if centred else "left", vertical="center",
                                        wrap_text=not centred))
        entry_ranges.append((first, first + rows - 1))
        return first + rows

    if spec["sections"]:
        for roman, label in (("I", "TẬP THỂ"), ("II", "CÁ NHÂN")):
            for c in range(1, ncols + 1):
                put(r, c, None, font=font(12, bold=True), border=box,
                    alignment=Alignment(horizontal="center" if c == 1 else "left", vertical="center"))
            ws.cell(r, 1).value = roman
            ws.cell(r, 2).value = label
            r = entry_rows(r + 1)
    else:
        r = entry_rows(r)

    # Note and signature block (the reader stops at "Lưu ý").
    r += 1
    put(r, 1, NOTE, font=font(12, italic=True), alignment=Alignment(horizontal="left"))
    merge(r, 1, last_col)
    r += 2
    signer, sign_note = spec["signer"]
    put(r, right_from, signer, font=font(12, bold=True),
        alignment=Alignment(horizontal="center", vertical="center", wrap_text=True))
    merge(r, right_from, last_col)
    ws.row_dimensions[r].height = 32
    put(r + 1, right_from, sign_note, font=font(12, italic=True), alignment=Alignment(horizontal="center"))
    merge(r + 1, right_from, last_col)
    put(r + 5, right_from, None, protection=unlocked, alignment=Alignment(horizontal="center"))
    merge(r + 5, right_from, last_col)  # the signer's name, typed under the signature
    end_row = r + 5

    # Category cells: the whole number 1, or nothing.
    dv = DataValidation(
        type="whole", operator="equal", formula1="1", allow_blank=True,
        showErrorMessage=True, errorStyle="stop",
        errorTitle="Chỉ điền số 1",
        error="Ô phân loại mô hình chỉ nhận số 1 (hoặc để trống). "
              "Đánh số (1) vào một ô tương ứng với lĩnh vực của mô hình.",
        showInputMessage=True, promptTitle="Phân loại mô hình",
        prompt="Gõ số 1 nếu mô hình thuộc lĩnh vực này; để trống nếu không.",
    )
    dv.sqref = " ".join(f"{L(cat_first)}{a}:{L(cat_last)}{b}" for a, b in entry_ranges)  # type: ignore[assignment]
    ws.add_data_validation(dv)

    # Columns, print setup, protection.
    widths = {1: 5, 2: 30, 3: 38}
    for c in range(cat_first, cat_last + 1):
        widths[c] = 11 if cats[c - cat_first] in ("chinh_trang_do_thi", "khac") else 9
    widths[last_col] = 36 if kind == "commendation" else 20
    for c, w in widths.items():
        ws.column_dimensions[L(c)].width = w

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
    ws.sheet_view.selection[0].activeCell = f"B{entry_ranges[0][0]}"
    ws.sheet_view.selection[0].sqref = f"B{entry_ranges[0][0]}"

    # The hidden marker.
    values = {"_intake_form": kind, "_intake_version": str(FORM_VERSION), "_intake_year": str(year),
              "_intake_unit": (unit or "")[:200]}
    for name, value in values.items():
        wb.defined_names[name] = DefinedName(name, attr_text='"' + value.replace('"', '""') + '"', hidden=True)
    props = wb.properties
    props.title = spec["description"]
    props.subject = spec["description"] + (f" - {unit}" if unit else "")
    props.creator = "LĐLĐ quận Long Biên"
    props.keywords = f"intake:{kind}:v{FORM_VERSION}:{year}"
    props.description = "Biểu mẫu điền sẵn của LĐLĐ quận Long Biên; giữ nguyên dòng tiêu đề các cột."

    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]+')


def form_filename(kind: str, *, year: int = 2022, unit_name: str | None = None) -> str:
    """"Biểu đăng ký mô hình Dân vận khéo năm 2022[ - <unit>].xlsx" and its siblings (NFC)."""
    _check(kind, year, 1)
    stem = _spec(kind, year)["filename"]
    unit = _clean_unit(unit_name)
    if unit:
        safe = " ".join(_UNSAFE.sub(" ", unit).split()).strip(" .")[:80].strip(" .")
        if safe:
            stem += f" - {safe}"
    return unicodedata.normalize("NFC", stem + ".xlsx")


def write_forms(out_dir: Path, *, year: int, unit_name: str | None = None) -> list[Path]:
    """Write the three blank forms into ``out_dir`` (created if needed); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in FORMS:
        path = out / form_filename(kind, year=year, unit_name=unit_name)
        data = blank_form(kind, year=year, unit_name=unit_name)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        paths.append(path)
    return paths


def read_marker(data: bytes) -> dict[str, str] | None:
    """{"form", "version", "year", "unit"} from a workbook made here (also after a unit saved it),
    or None when the marker is absent or the bytes are no workbook."""
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
        return found if found.get("form") in FORMS else None
    finally:
        wb.close()


__all__ = ["FORMS", "FORM_VERSION", "blank_form", "form_filename", "write_forms", "read_marker"]


XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@functools.lru_cache(maxsize=64)  # building a form takes ~80 ms; a pass may reject many files of one unit
def form_attachment(kind: str, *, year: int, unit_name: str | None = None) -> tuple[str, bytes, str] | None:
    """The blank form a reminder or a rejection should carry, as (filename, bytes, MIME type); None for reports."""
    if kind not in FORMS:
        return None
    return (form_filename(kind, year=year, unit_name=unit_name), blank_form(kind, year=year, unit_name=unit_name),
            XLSX_MIME)
