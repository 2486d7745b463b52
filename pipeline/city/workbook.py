"""The city's workbook: one sheet, one row per district, a total row for the city.

Pure: CityFigures in (figures.py), .xlsx bytes out, no clock. The house style of the district workbook
(pipeline/plan/xlsx.py): Vietnamese headings, Times New Roman, the title block, A4 landscape one page wide
with the two header rows on every page, the header and the district column frozen.

Columns: TT, Quận/huyện; registration (units, registered, of which on time, late, rejected or waiting for
staff, not sent, share, target, verdict); per report due by the day of the figures: sent, of which late,
not sent. Counts are numbers (a total adds up in the spreadsheet too); "(quá hạn)" is a number format.
"""
from __future__ import annotations


from openpyxl import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.city.figures import CityFigures, DistrictFigures, notes, on_time, verdict
from pipeline.plan.progress_sheet import fill
from pipeline.plan.vn import vn_date
from pipeline.plan.xlsx import (CENTER, fit_row, font, merge, note_row, print_setup, put, save, tall_heads,
                                title_block, widths)

SHEET_NAME = "Tổng hợp thành phố"
REGISTRATION_HEADERS = ("Số CĐCS phải đăng ký", "Đã đăng ký", "Trong đó đúng hạn", "Nộp quá hạn",
                        "Chưa đạt, chờ xem xét", "Chưa gửi", "Tỷ lệ đăng ký", "Chỉ tiêu", "Đánh giá")
REPORT_HEADERS = ("Đã nộp", "Trong đó quá hạn", "Chưa nộp")
FIRST = 3  # the first figure's column
NAME_WIDTH, CELL_WIDTH, NOT_SENT_WIDTH = 26, 11, 15
OVERDUE_FORMAT = '0" (quá hạn)"'


def _years(figures: CityFigures) -> str:
    return ", ".join(str(y) for y in figures.years)


def _not_sent(ws: Worksheet, row: int, col: int, value: int, overdue: bool, *, bold: bool = False) -> None:
    """Units that sent nothing; past the deadline they are overdue, and say so (the number stays a number)."""
    late = overdue and value > 0
    cell = put(ws, row, col, value, border=True, bold=bold, number_format=OVERDUE_FORMAT if late else "0")
    if late:
        cell.font = font(bold=True, color="9C0006")
        cell.fill = fill("overdue")


def _district_row(ws: Worksheet, row: int, number: int, d: DistrictFigures, figures: CityFigures,
                  last_col: int) -> None:
    put(ws, row, 1, number, border=True)
    # districts looking at different years (each its own `year`) say which
    put(ws, row, 2, d.label if len(figures.years) == 1 else f"{d.label} (năm {d.year})", border=True)
    if not d.ok or d.head is None:
        merge(ws, row, FIRST, last_col, f"Chưa có số liệu: {d.error}", italic=True, border=True)
        fit_row(ws, row, [(f"Chưa có số liệu: {d.error}", CELL_WIDTH * (last_col - FIRST + 1))])
        return
    head, reg = d.head, d.registration
    values: list[object] = [head.units_total, head.units_registered]
    values += [on_time(reg), reg.late, reg.rejected + reg.under_review] if reg else [None, None, None]
    for i, value in enumerate(values):
        put(ws, row, FIRST + i, value, border=True)
    if reg is not None:
        _not_sent(ws, row, FIRST + 5, reg.not_sent, reg.not_sent_standing == "overdue")
    else:
        put(ws, row, FIRST + 5, None, border=True)
    put(ws, row, FIRST + 6, head.share_registered, border=True, number_format="0.0%")
    put(ws, row, FIRST + 7, d.target, border=True, number_format="0%")
    put(ws, row, FIRST + 8, verdict(head.share_registered, d.target, head.units_total), border=True, align=CENTER)
    for j, col in enumerate(figures.reports):
        at = FIRST + len(REGISTRATION_HEADERS) + 3 * j
        counts = d.report(col.obligation_id)
        if counts is None:  # this district's plan has no such report
            for k in range(3):
                put(ws, row, at + k, "—", border=True, align=CENTER)
            continue
        put(ws, row, at, counts.sent, border=True)
        put(ws, row, at + 1, counts.late, border=True)
        _not_sent(ws, row, at + 2, counts.not_sent, counts.not_sent_standing == "overdue")


def build_city_workbook(figures: CityFigures) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = SHEET_NAME
    nreg = len(REGISTRATION_HEADERS)
    last_col = FIRST + nreg + 3 * len(figures.reports) - 1
    row = title_block(ws, figures.name, figures.today, last_col,
                      "TỔNG HỢP TIẾN ĐỘ ĐĂNG KÝ MÔ HÌNH VÀ BÁO CÁO CỦA CÁC QUẬN, HUYỆN, THỊ XÃ",
                      f"Phong trào thi đua “Dân vận khéo” năm {_years(figures)}",
                      f"(Tính đến ngày {vn_date(figures.today)}; số liệu từ sổ ghi của từng quận, huyện)")
    top = row
    tall_heads(ws, top, ((1, "TT"), (2, "Quận, huyện, thị xã")))
    merge(ws, top, FIRST, FIRST + nreg - 1, "ĐĂNG KÝ MÔ HÌNH “DÂN VẬN KHÉO”", bold=True, border=True, align=CENTER)
    subheads = list(REGISTRATION_HEADERS)
    for j, col in enumerate(figures.reports):
        at = FIRST + nreg + 3 * j
        title = f"{col.title} (hạn {vn_date(col.due_date)})" if col.due_date else col.title
        merge(ws, top, at, at + 2, title, bold=True, border=True, align=CENTER, size=11)
        subheads += REPORT_HEADERS
    for i, text in enumerate(subheads):
        put(ws, top + 1, FIRST + i, text, bold=True, border=True, align=CENTER, size=11)
    fit_row(ws, top + 1, [(t, CELL_WIDTH) for t in subheads], size=11, bold=True)
    fit_row(ws, top, [(f"{c.title} (hạn dd/mm/yyyy)", CELL_WIDTH * 3) for c in figures.reports], size=11, bold=True)

    row = top + 1
    for number, d in enumerate(figures.districts, start=1):
        row += 1
        _district_row(ws, row, number, d, figures, last_col)
        fit_row(ws, row, [(ws.cell(row, 2).value, NAME_WIDTH)])

    row += 1
    t = figures.totals
    put(ws, row, 1, None, border=True)
    put(ws, row, 2, "Toàn thành phố", bold=True, border=True)
    for i, value in enumerate([t.units, t.registered, t.on_time, t.late, t.pending]):
        put(ws, row, FIRST + i, value, bold=True, border=True)
    put(ws, row, FIRST + 5, t.not_sent, bold=True, border=True)
    put(ws, row, FIRST + 6, t.share, bold=True, border=True, number_format="0.0%")
    put(ws, row, FIRST + 7, t.target, bold=True, border=True, number_format="0%")
    put(ws, row, FIRST + 8, verdict(t.share, t.target, t.units), bold=True, border=True, align=CENTER)
    for j, (sent, late, not_sent) in enumerate(t.reports):
        at = FIRST + nreg + 3 * j
        for k, value in enumerate((sent, late, not_sent)):
            put(ws, row, at + k, value, bold=True, border=True)

    row += 2
    said = notes(figures)
    note_row(ws, row, last_col, "Ghi chú: " + " ".join(said), lines=3 if len(said) == 1 else 4)
    # the "not sent" columns hold "3 (quá hạn)"
    wide = {FIRST + 5, *(FIRST + nreg + 3 * j + 2 for j in range(len(figures.reports)))}
    widths(ws, [6, NAME_WIDTH] + [NOT_SENT_WIDTH if c in wide else CELL_WIDTH for c in range(FIRST, last_col + 1)])
    ws.freeze_panes = ws.cell(row=top + 2, column=FIRST)
    print_setup(ws, last_col=last_col, last_row=row, title_rows=(top, top + 1))

    return save(wb, figures.today, creator=figures.name, title=f"Tổng hợp các quận, huyện năm {_years(figures)}")


def workbook_name(figures: CityFigures) -> str:
    return f"tong-hop-thanh-pho-{figures.today:%Y-%m-%d}.xlsx"


__all__ = ["SHEET_NAME", "REGISTRATION_HEADERS", "REPORT_HEADERS", "build_city_workbook", "workbook_name"]
