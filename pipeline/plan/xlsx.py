"""Writing the staff workbook's cells and pages: text that never turns into a formula, the shared styles,
the title block, the page setup that makes a sheet print on A4, and a save that does not read the clock.

workbook.py lays the sheets out with these.
"""
from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.styles import Alignment, Border, Font, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.page import PageMargins
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

FONT = "Times New Roman"
THIN = Side(style="thin", color="000000")
BORDER = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)
LEFT = Alignment(horizontal="left", vertical="center", wrap_text=True)
RIGHT = Alignment(horizontal="right", vertical="center", wrap_text=True)
DATE_FORMAT = "dd/mm/yyyy"

# Characters that make Excel (or a CSV import of the sheet) start a formula.
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def font(bold: bool = False, italic: bool = False, size: int = 12, color: str | None = None) -> Font:
    return Font(name=FONT, size=size, bold=bold, italic=italic, color=color)


def _clean(text: str) -> str:
    return ILLEGAL_CHARACTERS_RE.sub("", text)


def put(ws: Worksheet, row: int, col: int, value: Any, *, bold: bool = False, italic: bool = False,
        size: int = 12, align: Alignment | None = None, border: bool = False,
        number_format: str | None = None) -> Cell:
    """Write one cell. A str is always stored as text, never as a formula."""
    cell = ws.cell(row=row, column=col)
    if isinstance(value, str):
        value = _clean(value)
        cell.value = value
        if cell.data_type != "s" or value.startswith(_FORMULA_TRIGGERS):
            # openpyxl turns a str starting with "=" into a formula: force text, and set
            # quotePrefix so Excel keeps it text even when a user edits the cell.
            cell.data_type = "s"
            cell.quotePrefix = True
    else:
        cell.value = value
    cell.font = font(bold, italic, size)
    cell.alignment = align or (CENTER if not isinstance(value, str) else LEFT)
    if border:
        cell.border = BORDER
    if number_format:
        cell.number_format = number_format
    return cell


def merge(ws: Worksheet, row: int, col1: int, col2: int, value: Any, **kw: Any) -> Cell:
    cell = put(ws, row, col1, value, **kw)
    if col2 > col1:
        ws.merge_cells(start_row=row, start_column=col1, end_row=row, end_column=col2)
        if kw.get("border"):
            for c in range(col1 + 1, col2 + 1):
                ws.cell(row=row, column=c).border = BORDER
    return cell


def title_block(ws: Worksheet, organisation: str, day: date, last_col: int, title: str, subtitle: str,
                note: str) -> int:
    """ĐƠN VỊ line, date line, title, subtitle, note, each merged within columns 1..``last_col`` (the print
    width, so no title is cut by a page edge); returns the next free row."""
    left = min(max(3, last_col // 2), last_col - 1)
    merge(ws, 1, 1, left, f"ĐƠN VỊ: {organisation.upper()}", bold=True, align=LEFT)
    put(ws, 1, left + 1, f"Ngày {day:%d} tháng {day:%m} năm {day:%Y}",
        italic=True, align=Alignment(horizontal="right", vertical="center"))
    ws.merge_cells(start_row=1, start_column=left + 1, end_row=1, end_column=last_col)
    merge(ws, 3, 1, last_col, title, bold=True, size=14, align=CENTER)
    merge(ws, 4, 1, last_col, subtitle, bold=True, align=CENTER)
    merge(ws, 5, 1, last_col, note, italic=True, align=CENTER)
    for row, lines in ((3, 1), (4, 2), (5, 1)):  # a subtitle may wrap on a narrow sheet: room for two lines
        ws.row_dimensions[row].height = 18.0 * lines
    return 7


def note_row(ws: Worksheet, row: int, last_col: int, text: str, *, lines: int = 2) -> None:
    """A note under a table, merged over the print width and wrapped (a long line in one cell would run past
    the page edge)."""
    merge(ws, row, 1, last_col, text, italic=True, align=Alignment(horizontal="left", vertical="top", wrap_text=True))
    ws.row_dimensions[row].height = 16.0 * lines


def text_lines(text: str, width: float, *, size: int = 12, bold: bool = False) -> int:
    """About how many lines ``text`` takes wrapped in a column ``width`` wide (Excel's unit: a digit of the
    default 11 pt font). On the generous side: Times New Roman is narrower than the serif LibreOffice puts
    in its place where it is not installed, and a line too many is better than a line cut off."""
    per_line = max(1.0, width * 12 / size * (0.95 if bold else 1.0))
    return sum(_wrapped(part, per_line) for part in text.split("\n"))


def _wrapped(line: str, per_line: float) -> int:
    """Lines of a greedy word wrap (as the spreadsheet wraps: at spaces; a word longer than a line is cut)."""
    lines, used = 1, 0
    for word in line.split():
        need = len(word) if used == 0 else used + 1 + len(word)
        if need <= per_line:
            used = need
            continue
        if used:
            lines += 1
        lines += max(0, math.ceil(len(word) / per_line) - 1)
        used = len(word) % math.ceil(per_line) or min(len(word), math.ceil(per_line))
    return lines


def fit_row(ws: Worksheet, row: int, cells: Sequence[tuple[Any, float]], *, size: int = 12,
            bold: bool = False) -> None:
    """Make ``row`` tall enough for its wrapped text: (value, width of its column or merged columns) pairs.

    Neither Excel nor LibreOffice fits a row to wrapped text when it opens a file: without a height the
    lines overlap the next row, on screen and on paper."""
    lines = max((text_lines(v, w, size=size, bold=bold) for v, w in cells if isinstance(v, str) and v), default=1)
    if lines > 1:
        ws.row_dimensions[row].height = lines * (size + 3.5) + 2


def widths(ws: Worksheet, values: Sequence[float]) -> None:
    for i, w in enumerate(values, start=1):
        ws.column_dimensions[get_column_letter(i)].width = w


def print_setup(ws: Worksheet, *, last_col: int, last_row: int, title_rows: tuple[int, int] | None,
                landscape: bool = True, one_page: bool = False) -> None:
    """Print on A4, scaled to one page wide (and as many pages tall as it takes, or a single page with
    ``one_page``), the header rows ``title_rows`` on every page, sheet name and page number in the footer.

    fitToWidth/fitToHeight only take effect with the sheet's fitToPage flag; without it Excel and
    LibreOffice print at 100% on as many pages as the columns need."""
    setup = ws.page_setup
    setup.paperSize = ws.PAPERSIZE_A4
    setup.orientation = "landscape" if landscape else "portrait"
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    setup.fitToWidth = 1
    setup.fitToHeight = 1 if one_page else 0
    if title_rows is not None:
        ws.print_title_rows = f"{title_rows[0]}:{title_rows[1]}"
    ws.print_area = f"A1:{get_column_letter(last_col)}{max(last_row, 1)}"
    # Inches: 1.5 cm left and right, room above and below for the footer.
    ws.page_margins = PageMargins(left=0.6, right=0.6, top=0.6, bottom=0.7, header=0.3, footer=0.3)
    ws.print_options.horizontalCentered = True
    # Pages numbered from 1 on every sheet (LibreOffice otherwise numbers on across the workbook).
    setup.firstPageNumber = 1
    setup.useFirstPageNumber = True
    ws.oddFooter.center.text = "&A – trang &P"
    ws.oddFooter.center.font = FONT
    ws.oddFooter.center.size = 9


def tall_heads(ws: Worksheet, top: int, heads: Sequence[tuple[int, str]]) -> None:
    """Column headings that stand over both header rows (TT, the name column), merged and boxed."""
    for col, text in heads:
        put(ws, top, col, text, bold=True, border=True, align=CENTER)
        put(ws, top + 1, col, None, border=True)
        ws.merge_cells(start_row=top, start_column=col, end_row=top + 1, end_column=col)


def save(wb: Workbook, day: date, *, creator: str, title: str) -> bytes:
    """The workbook's bytes, with its author and title, dated ``day``, without reading the clock: openpyxl's
    save() stamps docProps "modified" and every zip entry with the current time; the same data giving the
    same bytes is worth the few lines."""
    stamp = datetime(day.year, day.month, day.day)
    wb.properties.creator = creator
    wb.properties.title = title
    wb.properties.created = stamp
    wb.properties.modified = stamp
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        ExcelWriter(wb, archive).write_data()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw.getvalue())) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=stamp.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


__all__ = ["FONT", "BORDER", "CENTER", "LEFT", "RIGHT", "DATE_FORMAT", "font", "put", "merge", "title_block",
           "note_row", "text_lines", "fit_row", "widths", "print_setup", "tall_heads", "save"]
