"""The workbook's Tiến độ sheet: one row per unit, one column per obligation, each cell the unit's standing on the
day of the figures with the day its document arrived ("Đúng hạn 14/02"); the deadlines as dates in the second
header row; under the grid, how many units stand where (reports.ObligationCounts, the desk's and the mail's
figures). Prints on A4, one page wide, the two header rows on every page.
"""
from __future__ import annotations

import math
from zoneinfo import ZoneInfo

from openpyxl.styles import PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.plan.deadlines import SENT_STANDINGS, STANDING_LABELS_VI, STANDING_SHORT_VI, STANDINGS
from pipeline.plan.reports import GROUP_LABELS, ComplianceRow, ReportData
from pipeline.plan.vn import vn_date
from pipeline.plan.xlsx import (CENTER, DATE_FORMAT, RIGHT, fit_row, font, merge, note_row, print_setup, put,
                                tall_heads, title_block, widths)

# Colour says the same as the cell's words (never colour alone): the overdue stand out in red and bold.
STANDING_FILLS = {
    "on_time": "E2EFDA", "submitted": "E2EFDA", "late": "FFF2CC", "rejected": "FCE4D6",
    "under_review": "DDEBF7", "overdue": "F4B183", "not_due": "FFFFFF", "missing": "EDEDED",
}


def fill(standing: str) -> PatternFill:
    return PatternFill("solid", fgColor=STANDING_FILLS[standing])


def progress_cell(row: ComplianceRow, zone: ZoneInfo) -> str:
    """A unit's standing on one obligation as the grid shows it: "Đúng hạn 14/02", "Quá hạn, chưa nộp · nhắc 3"."""
    text = STANDING_SHORT_VI[row.standing]
    if row.received_at is not None and row.standing in (*SENT_STANDINGS, "rejected"):
        text += f" {row.received_at.astimezone(zone):%d/%m}"
    if row.reminders_sent:
        text += f" · nhắc {row.reminders_sent}"
    return text


def progress_sheet(ws: Worksheet, data: ReportData) -> None:
    """One row per unit (units file order), one column per obligation; the deadlines as dates in the
    second header row; under the grid, the units of each standing per obligation (reports.ObligationCounts)."""
    obligations = data.obligations
    first = 4
    last_col = first + len(obligations) - 1 if obligations else 3
    # The name column as wide as the longest name needs (within reason): a row of one line prints a third
    # more units on a page than one that wraps, and fitting to the page width pays for the width.
    longest = max((len(u.name) for u in data.units), default=0)
    name_w, cell_w = min(70, max(30, math.ceil(longest / 1.03) + 2)), 22
    row = title_block(ws, data.organisation, data.today, last_col,
                      "TIẾN ĐỘ GỬI BIỂU MẪU, BÁO CÁO CỦA CÁC CÔNG ĐOÀN CƠ SỞ",
                      f"Phong trào thi đua “Dân vận khéo” năm {data.year}",
                      f"(Tính đến ngày {vn_date(data.today)}; ngày nhận theo giờ Việt Nam)")
    top = row
    tall_heads(ws, top, ((1, "TT"), (2, "Tên đơn vị")))
    put(ws, top, 3, "Khối", bold=True, border=True, align=CENTER)
    put(ws, top + 1, 3, "Hạn nộp", italic=True, border=True, align=RIGHT)
    for i, counts in enumerate(obligations):
        put(ws, top, first + i, counts.title, bold=True, border=True, align=CENTER, size=11)
        if counts.due_date is not None:
            put(ws, top + 1, first + i, counts.due_date, bold=True, border=True, align=CENTER,
                number_format=DATE_FORMAT)
        else:
            put(ws, top + 1, first + i, "Chưa quy định", italic=True, border=True, align=CENTER)
    fit_row(ws, top, [(c.title, cell_w) for c in obligations], size=11, bold=True)

    zone = ZoneInfo(data.timezone)
    cells = {(r.unit.unit_id, r.obligation.id): r for r in data.compliance}
    row = top + 1
    for number, unit in enumerate(data.units, start=1):
        row += 1
        put(ws, row, 1, number, border=True, size=11)
        put(ws, row, 2, unit.name, border=True, size=11)
        put(ws, row, 3, GROUP_LABELS.get(unit.group, unit.group), border=True, size=11)
        texts = [(unit.name, name_w)]
        for i, counts in enumerate(obligations):
            item = cells.get((unit.unit_id, counts.obligation_id))
            if item is None:  # the unit's group does not owe it
                put(ws, row, first + i, "—", border=True, align=CENTER, size=11)
                continue
            text = progress_cell(item, zone)
            texts.append((text, cell_w))
            cell = put(ws, row, first + i, text, border=True, align=CENTER, size=11)
            cell.fill = fill(item.standing)
            if item.standing == "overdue":
                cell.font = font(bold=True, size=11, color="9C0006")
        fit_row(ws, row, texts, size=11)
    grid_end = row
    if obligations:
        ws.auto_filter.ref = f"A{top + 1}:{get_column_letter(last_col)}{max(grid_end, top + 1)}"

    # How many units stand where, per obligation: the figures of the desk's overview and the staff mail.
    row += 2
    merge(ws, row, 1, 3, "Số đơn vị theo tình trạng", bold=True, border=True, align=CENTER)
    for i in range(len(obligations)):
        put(ws, row, first + i, None, border=True)
    for which in STANDINGS:
        row += 1
        put(ws, row, 1, None, border=True)
        label = merge(ws, row, 2, 3, STANDING_LABELS_VI[which], border=True, size=11)
        label.fill = fill(which)
        for i, counts in enumerate(obligations):
            put(ws, row, first + i, counts.count(which), border=True, size=11)
    row += 1
    put(ws, row, 1, None, border=True)
    merge(ws, row, 2, 3, "Số đơn vị phải nộp", bold=True, border=True, size=11)
    for i, counts in enumerate(obligations):
        put(ws, row, first + i, counts.owed, bold=True, border=True, size=11)
    row += 2
    note_row(ws, row, last_col, "Ghi chú: ngày ghi sau tình trạng là ngày nhận văn bản; “nhắc 3”: đã gửi 3 thư nhắc; "
                                "“Chờ xem xét”: đơn vị đã gửi, văn bản chờ cán bộ xem xét; “—”: khối của đơn vị "
                                "không phải nộp.")
    widths(ws, [6, name_w, 18] + [cell_w] * len(obligations))
    ws.freeze_panes = ws.cell(row=top + 2, column=first)
    print_setup(ws, last_col=last_col, last_row=row, title_rows=(top, top + 1))


__all__ = ["STANDING_FILLS", "fill", "progress_cell", "progress_sheet"]
