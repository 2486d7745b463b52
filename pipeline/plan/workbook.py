"""The consolidated workbook for district staff: Tổng hợp, Khen thưởng, Tiến độ, Chỉ tiêu (with a chart).

Pure: ReportData in (see reports.py), .xlsx bytes out. No clock: the same data gives the same bytes.
The category columns and the lists' extra columns are those of the campaign's form definitions
(ReportData.categories, .registered_columns, .commendation_columns). Every count comes from reports.py,
the same figures the desk and the staff mail show.

Every sheet prints on A4, one page wide, its header rows repeated on every page (xlsx.print_setup);
Chỉ tiêu, with its chart beside the table it draws, prints on one page.

Text that came from a unit (names, models, results, notes, even unit names from the units file)
is written as an inline string with Excel's quotePrefix set, never as a formula: openpyxl would
otherwise store any str starting with "=" as a formula.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.chart import BarChart, Reference
from openpyxl.chart.label import DataLabelList
from openpyxl.drawing.spreadsheet_drawing import AnchorMarker, TwoCellAnchor
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.forms.definitions import Column
from pipeline.model import GROUPS, Entry, Unit
from pipeline.plan.progress_sheet import fill, progress_sheet
from pipeline.plan.reports import GROUP_LABELS, ReportData, category_table, group_table, headline, percent
from pipeline.plan.vn import vn_date
from pipeline.plan.xlsx import (CENTER, DATE_FORMAT, LEFT, fit_row, font, merge, note_row, print_setup, put, save,
                                tall_heads, title_block, widths)

SECTION_HEADERS = (("collective", "I", "TẬP THỂ"), ("individual", "II", "CÁ NHÂN"))
SHEET_NAMES = ("Tổng hợp", "Khen thưởng", "Tiến độ", "Chỉ tiêu")


# --------------------------------------------------------------------------- form-like sheets


def _extra_value(entry: Entry, col: Column) -> Any:
    """The value of an extra column as the unit wrote it; a whole number of an integer column as a number."""
    text = dict(entry.extra).get(col.key)
    if text is None:
        return None
    if col.type == "integer":
        try:
            return int(text.strip())
        except ValueError:
            return text
    return text


def _form_sheet(ws: Worksheet, data: ReportData, pairs: Sequence[tuple[Unit, Entry]], *, title: str,
                subtitle: str, last_header: str, last_value: str, extras: Sequence[Column] = ()) -> dict[str, int]:
    """BIỂU TỔNG HỢP / DANH SÁCH layout: sections I/II, a sub-header row per unit, totals row. The forms'
    extra columns (``extras``) come after the categories, before the last column.

    Returns the totals written in the Tổng cộng row (per category, plus "models")."""
    categories = data.categories
    ncat = len(categories)
    first_extra = 4 + ncat
    last_col = 3 + ncat + len(extras) + 1
    unit_count = len({u.unit_id for u, _ in pairs})
    col_widths = ([6, 34, 46] + [10] * ncat + [col.width or 16 for col in extras]
                  + [40 if last_value == "result" else 18])
    row = title_block(ws, data.organisation, data.today, last_col, title, subtitle,
                      f"(Số liệu tổng hợp đến ngày {vn_date(data.today)}: {unit_count} đơn vị, {len(pairs)} mô hình)")
    top = row
    headers = [(1, "TT"), (2, "Tên tập thể, cá nhân"), (3, "Tên mô hình"),
               *((first_extra + i, col.label) for i, col in enumerate(extras)), (last_col, last_header)]
    tall_heads(ws, top, headers)
    merge(ws, top, 4, 3 + ncat, "PHÂN LOẠI MÔ HÌNH", bold=True, align=CENTER, border=True)
    for i, (_, label) in enumerate(categories):
        put(ws, top + 1, 4 + i, label, bold=True, align=CENTER, border=True)
    ws.row_dimensions[top + 1].height = 32
    fit_row(ws, top + 1, [(label, 10) for _, label in categories], bold=True)
    fit_row(ws, top, [(col.label, col_widths[first_extra + i - 1]) for i, col in enumerate(extras)], bold=True)
    row = top + 2

    totals = {cat: 0 for cat, _ in categories}
    for section, roman, label in SECTION_HEADERS:
        put(ws, row, 1, roman, bold=True, align=CENTER, border=True)
        merge(ws, row, 2, last_col, label, bold=True, border=True)
        row += 1
        number = 0
        current: str | None = None
        for unit, entry in pairs:
            if entry.section != section:
                continue
            if unit.unit_id != current:
                current = unit.unit_id
                put(ws, row, 1, None, border=True)
                merge(ws, row, 2, last_col, f"Đơn vị: {unit.name}", bold=True, italic=True, border=True)
                fit_row(ws, row, [(f"Đơn vị: {unit.name}", sum(col_widths[1:]))], bold=True)
                row += 1
            number += 1
            put(ws, row, 1, number, border=True, align=CENTER)
            put(ws, row, 2, entry.name, border=True)
            put(ws, row, 3, entry.model, border=True)
            for i, (cat, _) in enumerate(categories):
                mark = 1 if cat in entry.categories else None
                put(ws, row, 4 + i, mark, border=True, align=CENTER)
                if mark:
                    totals[cat] += 1
            for i, col in enumerate(extras):
                put(ws, row, first_extra + i, _extra_value(entry, col), border=True)
            put(ws, row, last_col, getattr(entry, last_value) or "", border=True)
            fit_row(ws, row, [(entry.name, col_widths[1]), (entry.model, col_widths[2]),
                              *((ws.cell(row, first_extra + i).value, col_widths[first_extra + i - 1])
                                for i in range(len(extras))),
                              (getattr(entry, last_value), col_widths[-1])])
            row += 1
    put(ws, row, 1, None, border=True)
    put(ws, row, 2, "Tổng cộng", bold=True, border=True, align=CENTER)
    put(ws, row, 3, f"{len(pairs)} mô hình", bold=True, border=True, align=CENTER)
    for i, (cat, _) in enumerate(categories):
        put(ws, row, 4 + i, totals[cat], bold=True, border=True, align=CENTER)
    for c in range(first_extra, last_col + 1):
        put(ws, row, c, None, border=True)
    row += 2
    note_row(ws, row, last_col, "Lưu ý: số (1) ở cột phân loại đánh dấu lĩnh vực của mô hình; tổng hợp tự động "
                                "từ các biểu đã được tiếp nhận.", lines=1)
    widths(ws, col_widths)
    ws.freeze_panes = ws.cell(row=top + 2, column=1)
    print_setup(ws, last_col=last_col, last_row=row, title_rows=(top, top + 1))
    return {**totals, "models": len(pairs)}


def _sorted_pairs(data: ReportData, pairs: Sequence[tuple[Unit, Entry]]) -> list[tuple[Unit, Entry]]:
    """Grouped by unit in the units file's order, entries in their order within the unit."""
    order = {u.unit_id: i for i, u in enumerate(data.units)}
    indexed = list(enumerate(pairs))
    indexed.sort(key=lambda p: (order.get(p[1][0].unit_id, len(order)), p[1][0].unit_id, p[0]))
    return [p for _, p in indexed]


# --------------------------------------------------------------------------- Chỉ tiêu

_TABLE_COLS = 9        # the widest table (section 3)
_TARGET_WIDTHS = [40] + [12] * 6 + [15, 12]  # column H holds "300 (quá hạn)"
_CHART_COLS = (11, 18)  # K..R: the chart stands beside section 2, after a narrow gap (J)
_CHART_ROWS = 17


def _targets_sheet(ws: Worksheet, data: ReportData) -> None:
    last_col = _CHART_COLS[1]
    row = title_block(ws, data.organisation, data.today, last_col, "THEO DÕI THỰC HIỆN CHỈ TIÊU",
                      f"Kế hoạch thực hiện chủ đề công tác năm {data.year} – phong trào thi đua “Dân vận khéo”",
                      f"(Tính đến ngày {vn_date(data.today)})")

    # 1. Units that registered (reports: ReportData.registered_unit_ids), against the campaign's target.
    target = data.registration_share
    merge(ws, row, 1, _TABLE_COLS, "1. Công đoàn cơ sở đăng ký ít nhất 01 mô hình “Dân vận khéo” "
                                   f"(chỉ tiêu: {percent(target)})", bold=True, align=LEFT)
    row += 1
    headers = ["Khối", "Số CĐCS", "Số CĐCS đã đăng ký", "Số mô hình", "Tỷ lệ đăng ký", "Chỉ tiêu", "Đánh giá"]
    _header_row(ws, row, headers)
    groups = group_table(data)
    for key in [*GROUPS, "all"]:
        row += 1
        r = groups.loc[key]
        is_all = key == "all"
        put(ws, row, 1, "Toàn quận" if is_all else GROUP_LABELS[key], bold=is_all, border=True)
        put(ws, row, 2, int(r["units"]), bold=is_all, border=True)
        put(ws, row, 3, int(r["registered"]), bold=is_all, border=True)
        put(ws, row, 4, int(r["models"]), bold=is_all, border=True)
        put(ws, row, 5, float(r["share"]), bold=is_all, border=True, number_format="0.0%")
        put(ws, row, 6, target, bold=is_all, border=True, number_format="0%")
        if int(r["units"]) == 0:
            verdict = "Không có đơn vị"
        else:
            verdict = "Đạt" if float(r["share"]) >= target else "Chưa đạt"
        put(ws, row, 7, verdict, bold=is_all, border=True, align=CENTER)
    without = headline(data).units_without_entries
    if without:
        row += 1
        note_row(ws, row, _TABLE_COLS, f"Trong đó {without} đơn vị đã đăng ký nhưng chưa có số liệu mô hình (văn bản "
                                       "đã được chấp nhận nhưng chưa nhập các dòng).", lines=1)
    row += 2

    # 2. Models per category, by section and by unit group; the chart beside it reads this table.
    chart_top = row
    merge(ws, row, 1, _TABLE_COLS, "2. Số mô hình đăng ký theo lĩnh vực", bold=True, align=LEFT)
    row += 1
    headers = ["Lĩnh vực", "Tập thể", "Cá nhân", *(GROUP_LABELS[g] for g in GROUPS), "Tổng số"]
    _header_row(ws, row, headers)
    header_row = row
    table = category_table(data)
    for cat, label in data.categories:
        row += 1
        put(ws, row, 1, label, border=True)
        for col, key in enumerate(["collective", "individual", *GROUPS, "total"], start=2):
            put(ws, row, col, int(table.loc[cat, key]), border=True, bold=key == "total")
    first_data, last_data = header_row + 1, row
    row += 1
    put(ws, row, 1, "Cộng", bold=True, border=True)
    for col, key in enumerate(["collective", "individual", *GROUPS, "total"], start=2):
        put(ws, row, col, int(table[key].sum()), bold=True, border=True)
    chart_bottom = max(row, chart_top + _CHART_ROWS - 1)
    _chart(ws, header_row, first_data, last_data, chart_top, chart_bottom)
    row += 2

    # 3. Reports per period (reports: ObligationCounts; its counts add up to the units that owe it).
    merge(ws, row, 1, _TABLE_COLS, "3. Báo cáo định kỳ gửi đúng hạn theo kỳ", bold=True, align=LEFT)
    row += 1
    headers = ["Kỳ báo cáo", "Hạn nộp", "Số đơn vị phải nộp", "Đúng hạn", "Nộp quá hạn", "Chưa đạt",
               "Chờ xem xét", "Chưa nộp", "Tỷ lệ đúng hạn"]
    _header_row(ws, row, headers)
    for p in data.reports_on_time:
        row += 1
        put(ws, row, 1, p.title, border=True)
        fit_row(ws, row, [(p.title, _TARGET_WIDTHS[0])])
        if p.due_date is not None:
            put(ws, row, 2, p.due_date, border=True, align=CENTER, number_format=DATE_FORMAT)
        else:
            put(ws, row, 2, "Chưa quy định", border=True, align=CENTER)
        for col, value in enumerate([p.owed, p.on_time, p.late, p.rejected, p.under_review], start=3):
            put(ws, row, col, value, border=True)
        # "3 (quá hạn)" stays a number: the words come from the number format, the cell adds up.
        overdue = p.not_sent_standing == "overdue" and p.not_sent > 0
        cell = put(ws, row, 8, p.not_sent, border=True, number_format='0" (quá hạn)"' if overdue else "0")
        if overdue:
            cell.font = font(bold=True, color="9C0006")
            cell.fill = fill("overdue")
        put(ws, row, 9, p.share_on_time, border=True, number_format="0.0%")
    row += 2
    note_row(ws, row, _TABLE_COLS, "Chỉ tiêu trên 45% thỏa ước lao động tập thể xếp loại B trở lên: các biểu mẫu "
                                   "gửi qua hộp thư không có số liệu này, cần theo dõi riêng.")
    widths(ws, _TARGET_WIDTHS + [2] + [8] * (_CHART_COLS[1] - _CHART_COLS[0] + 1))
    print_setup(ws, last_col=last_col, last_row=max(row, chart_bottom), title_rows=None, one_page=True)


def _header_row(ws: Worksheet, row: int, headers: Sequence[str]) -> None:
    for col, text in enumerate(headers, start=1):
        put(ws, row, col, text, bold=True, border=True, align=CENTER)
    fit_row(ws, row, [(text, _TARGET_WIDTHS[i]) for i, text in enumerate(headers)], bold=True)


def _chart(ws: Worksheet, header_row: int, first_data: int, last_data: int, top: int, bottom: int) -> None:
    """The bar chart of models per category, held by its cells (K..R, rows ``top``..``bottom``), so that it
    prints within the print area beside its table, never cut by a page edge."""
    chart = BarChart()
    chart.type = "col"
    chart.title = "Số mô hình theo lĩnh vực"
    chart.y_axis.title = "Số mô hình"
    chart.x_axis.title = "Lĩnh vực"
    # openpyxl ≥ 3.1 marks axes deleted by default; recent Excel then draws none.
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    chart.y_axis.majorGridlines = None
    chart.legend = None
    values = Reference(ws, min_col=2 + len(GROUPS) + 2, min_row=header_row, max_row=last_data)
    labels = Reference(ws, min_col=1, min_row=first_data, max_row=last_data)
    chart.add_data(values, titles_from_data=True)
    chart.set_categories(labels)
    # Only the value: LibreOffice adds the category and series names to a label that does not say otherwise.
    chart.dataLabels = DataLabelList(showVal=True, showCatName=False, showSerName=False, showLegendKey=False,
                                     showPercent=False)
    anchor = TwoCellAnchor(editAs="oneCell")
    anchor._from = AnchorMarker(col=_CHART_COLS[0] - 1, row=top - 1)  # zero-based: column K, row ``top``
    anchor.to = AnchorMarker(col=_CHART_COLS[1], row=bottom)           # up to the end of column R, row ``bottom``
    ws.add_chart(chart, anchor)


# --------------------------------------------------------------------------- workbook


def build_workbook(data: ReportData) -> bytes:
    """The .xlsx for district staff: Tổng hợp, Khen thưởng, Tiến độ, Chỉ tiêu (with a bar chart)."""
    wb = Workbook()
    summary = wb.active
    summary.title = SHEET_NAMES[0]
    _form_sheet(
        summary, data, _sorted_pairs(data, data.registered),
        title="BIỂU TỔNG HỢP",
        subtitle=f"Đăng ký mô hình thực hiện phong trào thi đua “Dân vận khéo” năm {data.year}",
        last_header="Ghi chú", last_value="note", extras=data.registered_columns,
    )
    _form_sheet(
        wb.create_sheet(SHEET_NAMES[1]), data, _sorted_pairs(data, data.commendations),
        title="DANH SÁCH",
        subtitle=f"Đề xuất khen thưởng phong trào thi đua “Dân vận khéo” năm {data.year}",
        last_header="KẾT QUẢ THỰC HIỆN", last_value="result", extras=data.commendation_columns,
    )
    progress_sheet(wb.create_sheet(SHEET_NAMES[2]), data)
    _targets_sheet(wb.create_sheet(SHEET_NAMES[3]), data)
    # Dated the figures' day: the same data gives the same workbook (the core never reads the clock).
    return save(wb, data.today, creator=data.organisation, title=f"Tổng hợp “Dân vận khéo” năm {data.year}")


__all__ = ["SHEET_NAMES", "build_workbook"]
