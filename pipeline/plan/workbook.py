"""The consolidated workbook for district staff: Tổng hợp, Khen thưởng, Tiến độ, Chỉ tiêu (with a chart).

Pure: ReportData in (see reports.py), .xlsx bytes out. No clock: the same data gives the same bytes.
The category columns and the lists' extra columns are those of the campaign's form definitions
(ReportData.categories, .registered_columns, .commendation_columns).

Text that came from a unit (names, models, results, notes, even unit names from the units file)
is written as an inline string with Excel's quotePrefix set, never as a formula: openpyxl would
otherwise store any str starting with "=" as a formula.
"""
from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.chart import BarChart, Reference
from openpyxl.chart.label import DataLabelList
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from pipeline.forms.definitions import Column
from pipeline.model import GROUPS, Entry, Unit
from pipeline.plan.deadlines import STATE_LABELS_VI
from pipeline.plan.reports import GROUP_LABELS, ReportData, category_table, group_table, percent
from pipeline.plan.vn import vn_date

SECTION_HEADERS = (("collective", "I", "TẬP THỂ"), ("individual", "II", "CÁ NHÂN"))
SHEET_NAMES = ("Tổng hợp", "Khen thưởng", "Tiến độ", "Chỉ tiêu")

# Characters that make Excel (or a CSV import of the sheet) start a formula.
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


# --------------------------------------------------------------------------- styles

_FONT = "Times New Roman"
_THIN = Side(style="thin", color="000000")
_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)
_LEFT = Alignment(horizontal="left", vertical="center", wrap_text=True)
_STATE_FILLS = {
    "on_time": PatternFill("solid", fgColor="E2EFDA"),
    "late": PatternFill("solid", fgColor="FFF2CC"),
    "rejected": PatternFill("solid", fgColor="F8CBAD"),
    "missing": PatternFill("solid", fgColor="EDEDED"),
}


def _font(bold: bool = False, italic: bool = False, size: int = 12) -> Font:
    return Font(name=_FONT, size=size, bold=bold, italic=italic)


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
    cell.font = _font(bold, italic, size)
    cell.alignment = align or (_CENTER if not isinstance(value, str) else _LEFT)
    if border:
        cell.border = _BORDER
    if number_format:
        cell.number_format = number_format
    return cell


def _merge(ws: Worksheet, row: int, col1: int, col2: int, value: Any, **kw: Any) -> Cell:
    cell = put(ws, row, col1, value, **kw)
    if col2 > col1:
        ws.merge_cells(start_row=row, start_column=col1, end_row=row, end_column=col2)
        if kw.get("border"):
            for c in range(col1 + 1, col2 + 1):
                ws.cell(row=row, column=c).border = _BORDER
    return cell


def _title_block(ws: Worksheet, data: ReportData, last_col: int, title: str, subtitle: str, note: str) -> int:
    """ĐƠN VỊ line, date line, title, subtitle, note; returns the next free row."""
    left = max(3, last_col // 2)
    _merge(ws, 1, 1, left, f"ĐƠN VỊ: {data.organisation.upper()}", bold=True, align=_LEFT)
    put(ws, 1, left + 1, f"Ngày {data.today:%d} tháng {data.today:%m} năm {data.today:%Y}",
        italic=True, align=Alignment(horizontal="right", vertical="center"))
    ws.merge_cells(start_row=1, start_column=left + 1, end_row=1, end_column=last_col)
    _merge(ws, 3, 1, last_col, title, bold=True, size=14, align=_CENTER)
    _merge(ws, 4, 1, last_col, subtitle, bold=True, align=_CENTER)
    _merge(ws, 5, 1, last_col, note, italic=True, align=_CENTER)
    return 7


def _widths(ws: Worksheet, widths: Sequence[float]) -> None:
    for i, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = w


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
    row = _title_block(ws, data, last_col, title, subtitle,
                       f"(Số liệu tổng hợp đến ngày {vn_date(data.today)}: {unit_count} đơn vị, {len(pairs)} mô hình)")
    top = row
    headers = [(1, "TT"), (2, "Tên tập thể, cá nhân"), (3, "Tên mô hình"),
               *((first_extra + i, col.label) for i, col in enumerate(extras)), (last_col, last_header)]
    for col, text in headers:
        put(ws, top, col, text, bold=True, align=_CENTER, border=True)
        put(ws, top + 1, col, None, border=True)
        ws.merge_cells(start_row=top, start_column=col, end_row=top + 1, end_column=col)
    _merge(ws, top, 4, 3 + ncat, "PHÂN LOẠI MÔ HÌNH", bold=True, align=_CENTER, border=True)
    for i, (_, label) in enumerate(categories):
        put(ws, top + 1, 4 + i, label, bold=True, align=_CENTER, border=True)
    ws.row_dimensions[top + 1].height = 32
    row = top + 2

    totals = {cat: 0 for cat, _ in categories}
    for section, roman, label in SECTION_HEADERS:
        put(ws, row, 1, roman, bold=True, align=_CENTER, border=True)
        _merge(ws, row, 2, last_col, label, bold=True, border=True)
        row += 1
        number = 0
        current: str | None = None
        for unit, entry in pairs:
            if entry.section != section:
                continue
            if unit.unit_id != current:
                current = unit.unit_id
                put(ws, row, 1, None, border=True)
                _merge(ws, row, 2, last_col, f"Đơn vị: {unit.name}", bold=True, italic=True, border=True)
                row += 1
            number += 1
            put(ws, row, 1, number, border=True, align=_CENTER)
            put(ws, row, 2, entry.name, border=True)
            put(ws, row, 3, entry.model, border=True)
            for i, (cat, _) in enumerate(categories):
                mark = 1 if cat in entry.categories else None
                put(ws, row, 4 + i, mark, border=True, align=_CENTER)
                if mark:
                    totals[cat] += 1
            for i, col in enumerate(extras):
                put(ws, row, first_extra + i, _extra_value(entry, col), border=True)
            put(ws, row, last_col, getattr(entry, last_value) or "", border=True)
            row += 1
    put(ws, row, 1, None, border=True)
    put(ws, row, 2, "Tổng cộng", bold=True, border=True, align=_CENTER)
    put(ws, row, 3, f"{len(pairs)} mô hình", bold=True, border=True, align=_CENTER)
    for i, (cat, _) in enumerate(categories):
        put(ws, row, 4 + i, totals[cat], bold=True, border=True, align=_CENTER)
    for c in range(first_extra, last_col + 1):
        put(ws, row, c, None, border=True)
    row += 2
    put(ws, row, 1, "Lưu ý: số (1) ở cột phân loại đánh dấu lĩnh vực của mô hình; tổng hợp tự động "
                    "từ các biểu đã được tiếp nhận.", italic=True, align=Alignment(horizontal="left"))
    _widths(ws, [6, 34, 46] + [10] * ncat + [col.width or 16 for col in extras]
            + [40 if last_value == "result" else 18])
    ws.freeze_panes = ws.cell(row=top + 2, column=1)
    ws.print_title_rows = f"{top}:{top + 1}"
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = 1
    return {**totals, "models": len(pairs)}


def _sorted_pairs(data: ReportData, pairs: Sequence[tuple[Unit, Entry]]) -> list[tuple[Unit, Entry]]:
    """Grouped by unit in the units file's order, entries in their order within the unit."""
    order = {u.unit_id: i for i, u in enumerate(data.units)}
    indexed = list(enumerate(pairs))
    indexed.sort(key=lambda p: (order.get(p[1][0].unit_id, len(order)), p[1][0].unit_id, p[0]))
    return [p for _, p in indexed]


# --------------------------------------------------------------------------- Tiến độ


def _progress_sheet(ws: Worksheet, data: ReportData) -> None:
    headers = ["TT", "Nội dung", "Hạn nộp", "Đơn vị", "Khối", "Thời điểm nhận", "Tình trạng", "Số lần đã nhắc"]
    last_col = len(headers)
    row = _title_block(ws, data, last_col, "TIẾN ĐỘ GỬI BIỂU MẪU, BÁO CÁO CỦA CÁC CÔNG ĐOÀN CƠ SỞ",
                       f"Phong trào thi đua “Dân vận khéo” năm {data.year}",
                       f"(Tính đến ngày {vn_date(data.today)}; giờ Việt Nam)")
    for col, text in enumerate(headers, start=1):
        put(ws, row, col, text, bold=True, border=True, align=_CENTER)
    header_row = row
    zone = ZoneInfo(data.timezone)
    for number, item in enumerate(data.compliance, start=1):
        row += 1
        ob = item.obligation
        put(ws, row, 1, number, border=True)
        put(ws, row, 2, ob.title, border=True)
        put(ws, row, 3, vn_date(ob.due_date) if ob.due_date else "Chưa quy định", border=True, align=_CENTER)
        put(ws, row, 4, item.unit.name, border=True)
        put(ws, row, 5, GROUP_LABELS.get(item.unit.group, item.unit.group), border=True)
        received = item.received_at.astimezone(zone).strftime("%d/%m/%Y %H:%M") if item.received_at else ""
        put(ws, row, 6, received, border=True, align=_CENTER)
        # With no deadline set nothing can be on time or late: it was simply sent.
        label = "Đã nộp" if ob.due_date is None and item.state in ("on_time", "late") else STATE_LABELS_VI[item.state]
        cell = put(ws, row, 7, label, border=True, align=_CENTER)
        cell.fill = _STATE_FILLS[item.state]
        put(ws, row, 8, item.reminders_sent, border=True)
    ws.auto_filter.ref = f"A{header_row}:{get_column_letter(last_col)}{max(row, header_row)}"
    ws.freeze_panes = ws.cell(row=header_row + 1, column=1)
    _widths(ws, [6, 44, 13, 36, 20, 18, 22, 10])


# --------------------------------------------------------------------------- Chỉ tiêu


def _targets_sheet(ws: Worksheet, data: ReportData) -> None:
    last_col = 8
    row = _title_block(ws, data, last_col, "THEO DÕI THỰC HIỆN CHỈ TIÊU",
                       f"Kế hoạch thực hiện chủ đề công tác năm {data.year} – phong trào thi đua “Dân vận khéo”",
                       f"(Tính đến ngày {vn_date(data.today)})")

    # 1. Units with at least one registered model, against the campaign's target.
    target = data.registration_share
    _merge(ws, row, 1, last_col, "1. Công đoàn cơ sở đăng ký ít nhất 01 mô hình “Dân vận khéo” "
                                 f"(chỉ tiêu: {percent(target)})", bold=True, align=_LEFT)
    row += 1
    headers = ["Khối", "Số CĐCS", "Số CĐCS đã đăng ký", "Số mô hình", "Tỷ lệ đăng ký", "Chỉ tiêu", "Đánh giá"]
    for col, text in enumerate(headers, start=1):
        put(ws, row, col, text, bold=True, border=True, align=_CENTER)
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
        put(ws, row, 7, verdict, bold=is_all, border=True, align=_CENTER)
    row += 2

    # 2. Models per category, by section and by unit group; the chart reads this table.
    _merge(ws, row, 1, last_col, "2. Số mô hình đăng ký theo lĩnh vực", bold=True, align=_LEFT)
    row += 1
    headers = ["Lĩnh vực", "Tập thể", "Cá nhân", *(GROUP_LABELS[g] for g in GROUPS), "Tổng số"]
    for col, text in enumerate(headers, start=1):
        put(ws, row, col, text, bold=True, border=True, align=_CENTER)
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
    chart_anchor_row = header_row
    row += 2

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
    chart.dataLabels = DataLabelList()
    chart.dataLabels.showVal = True
    chart.width, chart.height = 18, 9
    ws.add_chart(chart, f"J{chart_anchor_row}")

    # 3. Reports on time per period.
    _merge(ws, row, 1, last_col, "3. Báo cáo định kỳ gửi đúng hạn theo kỳ", bold=True, align=_LEFT)
    row += 1
    headers = ["Kỳ báo cáo", "Hạn nộp", "Số đơn vị phải nộp", "Đúng hạn", "Quá hạn", "Chưa đạt",
               "Chưa nộp", "Tỷ lệ đúng hạn"]
    for col, text in enumerate(headers, start=1):
        put(ws, row, col, text, bold=True, border=True, align=_CENTER)
    for p in data.reports_on_time:
        row += 1
        put(ws, row, 1, p.title, border=True)
        put(ws, row, 2, vn_date(p.due_date) if p.due_date else "Chưa quy định", border=True, align=_CENTER)
        for col, value in enumerate([p.owed, p.on_time, p.late, p.rejected, p.missing], start=3):
            put(ws, row, col, value, border=True)
        put(ws, row, 8, p.share_on_time, border=True, number_format="0.0%")
    row += 2
    put(ws, row, 1, "Chỉ tiêu trên 45% thỏa ước lao động tập thể xếp loại B trở lên: các biểu mẫu "
                    "gửi qua hộp thư không có số liệu này, cần theo dõi riêng.",
        italic=True, align=Alignment(horizontal="left"))
    _widths(ws, [44, 12, 14, 14, 14, 14, 14, 14])


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
    _progress_sheet(wb.create_sheet(SHEET_NAMES[2]), data)
    _targets_sheet(wb.create_sheet(SHEET_NAMES[3]), data)
    wb.properties.creator = data.organisation
    wb.properties.title = f"Tổng hợp “Dân vận khéo” năm {data.year}"
    # Fixed timestamps: the same data gives the same workbook (the core never reads the clock).
    stamp = datetime(data.today.year, data.today.month, data.today.day)
    wb.properties.created = stamp
    wb.properties.modified = stamp
    return _save(wb, stamp)


def _save(wb: Workbook, stamp: datetime) -> bytes:
    """Save without reading the clock: openpyxl's save() stamps docProps "modified" and every zip
    entry with the current time; same data, same bytes is worth the few lines."""
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


__all__ = ["SHEET_NAMES", "build_workbook", "put"]
