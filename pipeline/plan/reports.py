"""The consolidated workbook for district staff, and the view-model of the staff email.

Pure: data in, bytes and strings out. No database, no clock (``today`` is in ReportData).

Which entries count (``build_report_data``): per unit, the entries of its accepted,
non-superseded Mẫu M2 summary when it has one (the summary is the unit's own consolidation of
its registrations, so adding both would count every model twice); otherwise the entries of all its
accepted, non-superseded registration forms. Commendation entries come from accepted,
non-superseded commendation lists.

Text that came from a unit (names, models, results, notes, even unit names from the units file)
is written as an inline string with Excel's quotePrefix set, never as a formula: openpyxl would
otherwise store any str starting with "=" as a formula.
"""
from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.chart import BarChart, Reference
from openpyxl.chart.label import DataLabelList
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from pipeline.plan.deadlines import STATE_LABELS_VI, Obligation, ObligationState, vn_date
from pipeline.model import CATEGORIES, CATEGORY_LABELS, GROUPS, DocumentRecord, Entry, Unit

if TYPE_CHECKING:
    import jinja2

CATEGORY_HEADERS = CATEGORY_LABELS  # the headers as the plan prints them, corrected
CATEGORY_NAMES_VI = {
    "gpmb": "Giải phóng mặt bằng",
    "kinh_te": "Kinh tế",
    "chinh_trang_do_thi": "Chỉnh trang đô thị",
    "bvmt": "Bảo vệ môi trường",
    "vhxh": "Văn hóa – xã hội",
    "anqp": "An ninh – quốc phòng",
    "khac": "Lĩnh vực khác",
}
GROUP_LABELS = {"hcsn": "Khối HCSN", "doanh_nghiep": "Khối doanh nghiệp", "truong_hoc": "Khối trường học"}
SECTION_HEADERS = (("collective", "I", "TẬP THỂ"), ("individual", "II", "CÁ NHÂN"))
SHEET_NAMES = ("Tổng hợp", "Khen thưởng", "Tiến độ", "Chỉ tiêu")
REGISTRATION_TARGET = 1.0  # the plan: every CĐCS registers at least one model

# Characters that make Excel (or a CSV import of the sheet) start a formula.
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ComplianceRow:
    unit: Unit
    obligation: Obligation
    state: str  # missing | rejected | on_time | late
    received_at: datetime | None = None
    reminders_sent: int = 0
    document_id: int | None = None


@dataclass(frozen=True)
class PeriodOnTime:
    """How units did on one report obligation."""

    obligation_id: str
    title: str
    period: str | None
    due_date: date | None
    owed: int
    on_time: int
    late: int
    rejected: int
    missing: int

    @property
    def share_on_time(self) -> float:
        return self.on_time / self.owed if self.owed else 0.0


@dataclass(frozen=True)
class ReportData:
    organisation: str
    year: int
    today: date
    units: tuple[Unit, ...]
    registered: tuple[tuple[Unit, Entry], ...] = ()
    commendations: tuple[tuple[Unit, Entry], ...] = ()
    compliance: tuple[ComplianceRow, ...] = ()
    reports_on_time: tuple[PeriodOnTime, ...] = ()
    timezone: str = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True)
class Headline:
    units_total: int
    units_registered: int
    models_total: int
    collective_models: int
    individual_models: int
    models_by_category: tuple[tuple[str, int], ...]  # (Vietnamese header, count), in form order
    commendations_total: int
    obligations: tuple[tuple[str, str, int, int, int, int], ...] = field(default=())
    # (title, deadline dd/mm/yyyy, on_time, late, rejected, missing) for obligations with a date

    @property
    def share_registered(self) -> float:
        return self.units_registered / self.units_total if self.units_total else 0.0


@dataclass(frozen=True)
class MissingRow:
    obligation_title: str
    deadline: str
    unit_name: str
    group: str
    state: str  # Vietnamese
    overdue: bool


def periods_on_time(compliance: Iterable[ComplianceRow]) -> tuple[PeriodOnTime, ...]:
    """Per report obligation (those with "report" among their kinds), counts of each state."""
    rows: dict[str, list[ComplianceRow]] = {}
    order: list[Obligation] = []
    for row in compliance:
        if "report" not in row.obligation.kinds:
            continue
        if row.obligation.id not in rows:
            order.append(row.obligation)
        rows.setdefault(row.obligation.id, []).append(row)
    result = []
    for ob in order:
        states = [r.state for r in rows[ob.id]]
        result.append(PeriodOnTime(
            ob.id, ob.title, ob.period, ob.due_date, len(states), states.count("on_time"),
            states.count("late"), states.count("rejected"), states.count("missing"),
        ))
    return tuple(result)


def build_report_data(
    *,
    organisation: str,
    year: int,
    today: date,
    units: Iterable[Unit],
    obligations: Sequence[Obligation],
    documents: Iterable[DocumentRecord],
    entries: Mapping[int, Sequence[Entry]],
    states: Mapping[tuple[str, str], ObligationState],
    reminders_sent: Mapping[tuple[str, str], int] | None = None,
    timezone: str = "Asia/Ho_Chi_Minh",
) -> ReportData:
    """Assemble ReportData from the ledger: documents, their entries (by document_id), the states
    from deadlines.unit_states, and the count of reminders sent per (unit_id, obligation_id)."""
    units = tuple(units)
    by_id = {u.unit_id: u for u in units}
    counting = [d for d in documents if d.state == "accepted" and not d.superseded and d.unit_id in by_id]
    counting.sort(key=lambda d: (d.received_at, d.document_id))
    registered: list[tuple[Unit, Entry]] = []
    commendations: list[tuple[Unit, Entry]] = []
    for unit in units:
        own = [d for d in counting if d.unit_id == unit.unit_id]
        summaries = [d for d in own if d.kind == "summary"]
        sources = summaries or [d for d in own if d.kind == "registration"]
        for d in sources:
            registered.extend((unit, e) for e in entries.get(d.document_id, ()))
        for d in own:
            if d.kind == "commendation":
                commendations.extend((unit, e) for e in entries.get(d.document_id, ()))
    sent = reminders_sent or {}
    compliance = []
    for ob in obligations:
        for unit in units:
            state = states.get((unit.unit_id, ob.id))
            if state is None:
                continue
            compliance.append(ComplianceRow(
                unit, ob, state.state, state.received_at, sent.get((unit.unit_id, ob.id), 0), state.document_id
            ))
    return ReportData(
        organisation=organisation, year=year, today=today, units=units,
        registered=tuple(registered), commendations=tuple(commendations),
        compliance=tuple(compliance), reports_on_time=periods_on_time(compliance), timezone=timezone,
    )


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


def _form_sheet(ws: Worksheet, data: ReportData, pairs: Sequence[tuple[Unit, Entry]], *, title: str,
                subtitle: str, last_header: str, last_value: str) -> dict[str, int]:
    """BIỂU TỔNG HỢP / DANH SÁCH layout: sections I/II, a sub-header row per unit, totals row.

    Returns the totals written in the Tổng cộng row (per category, plus "models")."""
    ncat = len(CATEGORIES)
    last_col = 3 + ncat + 1
    unit_count = len({u.unit_id for u, _ in pairs})
    row = _title_block(ws, data, last_col, title, subtitle,
                       f"(Số liệu tổng hợp đến ngày {vn_date(data.today)}: {unit_count} đơn vị, {len(pairs)} mô hình)")
    top = row
    for col, text in ((1, "TT"), (2, "Tên tập thể, cá nhân"), (3, "Tên mô hình"), (last_col, last_header)):
        put(ws, top, col, text, bold=True, align=_CENTER, border=True)
        put(ws, top + 1, col, None, border=True)
        ws.merge_cells(start_row=top, start_column=col, end_row=top + 1, end_column=col)
    _merge(ws, top, 4, 3 + ncat, "PHÂN LOẠI MÔ HÌNH", bold=True, align=_CENTER, border=True)
    for i, cat in enumerate(CATEGORIES):
        put(ws, top + 1, 4 + i, CATEGORY_HEADERS[cat], bold=True, align=_CENTER, border=True)
    ws.row_dimensions[top + 1].height = 32
    row = top + 2

    totals = {cat: 0 for cat in CATEGORIES}
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
            for i, cat in enumerate(CATEGORIES):
                mark = 1 if cat in entry.categories else None
                put(ws, row, 4 + i, mark, border=True, align=_CENTER)
                if mark:
                    totals[cat] += 1
            put(ws, row, last_col, getattr(entry, last_value) or "", border=True)
            row += 1
    put(ws, row, 1, None, border=True)
    put(ws, row, 2, "Tổng cộng", bold=True, border=True, align=_CENTER)
    put(ws, row, 3, f"{len(pairs)} mô hình", bold=True, border=True, align=_CENTER)
    for i, cat in enumerate(CATEGORIES):
        put(ws, row, 4 + i, totals[cat], bold=True, border=True, align=_CENTER)
    put(ws, row, last_col, None, border=True)
    row += 2
    put(ws, row, 1, "Lưu ý: số (1) ở cột phân loại đánh dấu lĩnh vực của mô hình; tổng hợp tự động "
                    "từ các biểu đã được tiếp nhận.", italic=True, align=Alignment(horizontal="left"))
    _widths(ws, [6, 34, 46] + [10] * ncat + [40 if last_value == "result" else 18])
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


def entries_frame(data: ReportData) -> pd.DataFrame:
    """One row per (entry, category) of the registered models: unit_id, group, section, category."""
    rows = [
        {"unit_id": unit.unit_id, "group": unit.group, "section": entry.section, "category": cat, "entry": i}
        for i, (unit, entry) in enumerate(data.registered)
        for cat in entry.categories
    ]
    return pd.DataFrame(rows, columns=["unit_id", "group", "section", "category", "entry"])


def category_table(data: ReportData) -> pd.DataFrame:
    """Models per category (rows, form order) by section and by unit group, with a total."""
    frame = entries_frame(data)
    columns = ["collective", "individual", *GROUPS]
    by_section = frame.groupby(["category", "section"]).size().unstack(fill_value=0)
    by_group = frame.groupby(["category", "group"]).size().unstack(fill_value=0)
    table = pd.concat([by_section, by_group], axis=1).reindex(index=list(CATEGORIES), columns=columns).fillna(0)
    table = table.astype(int)
    table["total"] = frame.groupby("category").size().reindex(list(CATEGORIES)).fillna(0).astype(int)
    return table


def group_table(data: ReportData) -> pd.DataFrame:
    """Per unit group: units, units with at least one registered model, models, share."""
    units = pd.DataFrame([{"unit_id": u.unit_id, "group": u.group} for u in data.units], columns=["unit_id", "group"])
    models = pd.DataFrame(
        [{"unit_id": u.unit_id, "group": u.group} for u, _ in data.registered], columns=["unit_id", "group"]
    )
    table = pd.DataFrame(index=list(GROUPS))
    table["units"] = units.groupby("group")["unit_id"].nunique()
    table["registered"] = models.groupby("group")["unit_id"].nunique()
    table["models"] = models.groupby("group").size()
    table = table.fillna(0).astype(int)
    table.loc["all"] = [len(units["unit_id"].unique()), models["unit_id"].nunique(), len(models)]
    table["share"] = (table["registered"] / table["units"].where(table["units"] > 0)).fillna(0.0)
    return table


def _targets_sheet(ws: Worksheet, data: ReportData) -> None:
    last_col = 8
    row = _title_block(ws, data, last_col, "THEO DÕI THỰC HIỆN CHỈ TIÊU",
                       f"Kế hoạch thực hiện chủ đề công tác năm {data.year} – phong trào thi đua “Dân vận khéo”",
                       f"(Tính đến ngày {vn_date(data.today)})")

    # 1. Units with at least one registered model, against 100%.
    _merge(ws, row, 1, last_col, "1. Công đoàn cơ sở đăng ký ít nhất 01 mô hình “Dân vận khéo” (chỉ tiêu: 100%)",
           bold=True, align=_LEFT)
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
        put(ws, row, 6, REGISTRATION_TARGET, bold=is_all, border=True, number_format="0%")
        if int(r["units"]) == 0:
            verdict = "Không có đơn vị"
        else:
            verdict = "Đạt" if float(r["share"]) >= REGISTRATION_TARGET else "Chưa đạt"
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
    for cat in CATEGORIES:
        row += 1
        put(ws, row, 1, CATEGORY_HEADERS[cat], border=True)
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
        last_header="Ghi chú", last_value="note",
    )
    _form_sheet(
        wb.create_sheet(SHEET_NAMES[1]), data, _sorted_pairs(data, data.commendations),
        title="DANH SÁCH",
        subtitle=f"Đề xuất khen thưởng phong trào thi đua “Dân vận khéo” năm {data.year}",
        last_header="KẾT QUẢ THỰC HIỆN", last_value="result",
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


# --------------------------------------------------------------------------- staff email


def headline(data: ReportData) -> Headline:
    frame = entries_frame(data)
    per_cat = frame.groupby("category")["entry"].nunique() if len(frame) else pd.Series(dtype=int)
    obligations: list[tuple[str, str, int, int, int, int]] = []
    seen: dict[str, list[ComplianceRow]] = {}
    for row in data.compliance:
        seen.setdefault(row.obligation.id, []).append(row)
    for rows in seen.values():
        ob = rows[0].obligation
        if ob.due_date is None:
            continue
        states = [r.state for r in rows]
        obligations.append((ob.title, vn_date(ob.due_date), states.count("on_time"), states.count("late"),
                            states.count("rejected"), states.count("missing")))
    return Headline(
        units_total=len(data.units),
        units_registered=len({u.unit_id for u, _ in data.registered}),
        models_total=len(data.registered),
        collective_models=sum(1 for _, e in data.registered if e.section == "collective"),
        individual_models=sum(1 for _, e in data.registered if e.section == "individual"),
        models_by_category=tuple((CATEGORY_HEADERS[c], int(per_cat.get(c, 0))) for c in CATEGORIES),
        commendations_total=len(data.commendations),
        obligations=tuple(obligations),
    )


def missing_rows(data: ReportData, *, upcoming_days: int = 14) -> tuple[MissingRow, ...]:
    """Units still owing (missing or rejected): every overdue obligation, and those due within
    ``upcoming_days`` of ``data.today``."""
    result = []
    for row in data.compliance:
        due = row.obligation.due_date
        if due is None or row.state not in ("missing", "rejected"):
            continue
        overdue = due < data.today
        if not overdue and (due - data.today).days > upcoming_days:
            continue
        result.append(MissingRow(row.obligation.title, vn_date(due), row.unit.name,
                                 GROUP_LABELS.get(row.unit.group, row.unit.group),
                                 STATE_LABELS_VI[row.state], overdue))
    return tuple(result)


def render_staff_email(
    env: jinja2.Environment,
    data: ReportData,
    *,
    headline_figures: Headline | None = None,
    missing: Sequence[MissingRow] | None = None,
    attachment_name: str | None = None,
) -> tuple[str, str, str]:
    """Subject, HTML (templates/report_email.html.j2, autoescaped) and plain text of the staff email."""
    figures = headline_figures or headline(data)
    owing = tuple(missing) if missing is not None else missing_rows(data)
    subject = (f"[{data.organisation}] Tổng hợp “Dân vận khéo” năm {data.year} – "
               f"số liệu đến ngày {vn_date(data.today)}")
    context = {
        "organisation": data.organisation,
        "year": data.year,
        "today": vn_date(data.today),
        "h": figures,
        "share_registered": f"{figures.share_registered * 100:.1f}%".replace(".", ","),
        "overdue": [m for m in owing if m.overdue],
        "upcoming": [m for m in owing if not m.overdue],
        "attachment_name": attachment_name,
    }
    html = env.get_template("report_email.html.j2").render(**context)

    lines = [
        f"Kính gửi: Thường trực {data.organisation}",
        "",
        f"Tổng hợp phong trào thi đua “Dân vận khéo” năm {data.year}, số liệu đến ngày {vn_date(data.today)}:",
        f"- CĐCS đã đăng ký mô hình: {figures.units_registered}/{figures.units_total} "
        f"({context['share_registered']}; chỉ tiêu 100%)",
        f"- Tổng số mô hình: {figures.models_total} (tập thể {figures.collective_models}, "
        f"cá nhân {figures.individual_models})",
        "- Theo lĩnh vực: " + ", ".join(f"{name} {n}" for name, n in figures.models_by_category),
        f"- Đề xuất khen thưởng: {figures.commendations_total}",
    ]
    if figures.obligations:
        lines += ["", "Tiến độ theo từng nội dung (đúng hạn / quá hạn / chưa đạt / chưa nộp):"]
        lines += [f"- {t} (hạn {d}): {a} / {b} / {c} / {e}" for t, d, a, b, c, e in figures.obligations]
    for label, rows in (("Đơn vị chưa gửi, đã quá hạn:", context["overdue"]),
                        ("Đơn vị chưa gửi, sắp đến hạn:", context["upcoming"])):
        if rows:
            lines += ["", label]
            lines += [f"- {m.unit_name} ({m.group}) – {m.obligation_title}, hạn {m.deadline}: {m.state}" for m in rows]
    if attachment_name:
        lines += ["", f"Chi tiết xem tệp đính kèm {attachment_name}."]
    lines += ["", "(Thư tổng hợp tự động)"]
    return subject.replace("\n", " "), html, "\n".join(lines) + "\n"


__all__ = [
    "CATEGORY_HEADERS", "GROUP_LABELS", "SHEET_NAMES", "ComplianceRow", "PeriodOnTime", "ReportData",
    "Headline", "MissingRow", "build_report_data", "periods_on_time", "build_workbook", "entries_frame",
    "category_table", "group_table", "headline", "missing_rows", "render_staff_email", "put",
]
