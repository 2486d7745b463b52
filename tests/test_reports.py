from __future__ import annotations

import io
import re
import zipfile
from datetime import date, datetime
from pathlib import Path
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import jinja2
import openpyxl
import pytest

from pipeline.plan.deadlines import STANDING_LABELS_VI, unit_states
from pipeline.plan.campaigns import load_campaigns
from pipeline.model import CATEGORIES, DocumentRecord, Entry, Unit
from pipeline.plan.reports import (
    build_report_data,
    category_table,
    group_table,
    headline,
    missing_rows,
)
from pipeline.plan.staffmail import render_staff_email
from pipeline.plan.workbook import SHEET_NAMES, build_workbook

ROOT = Path(__file__).resolve().parents[1]
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
ORG = "Liên đoàn Lao động quận Long Biên"
NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
EVIL = '=HYPERLINK("http://evil.example/x","Bấm vào đây")'

UNITS = (
    Unit("cd01", EVIL, "hcsn", ("evil@example.vn",)),
    Unit("cd02", "Trường THCS Gia Thụy", "truong_hoc", ("giathuy@example.vn",)),
    Unit("cd03", "Công ty CP May Đức Giang", "doanh_nghiep", ("may@example.vn",)),
    Unit("cd04", "Công đoàn Phường <Bồ Đề>", "hcsn", ("bode@example.vn",)),
)


def at(m: int, d: int, hh: int = 9, mm: int = 0) -> datetime:
    return datetime(2022, m, d, hh, mm, tzinfo=HCM)


def E(section, name, model, *cats, result=None, note=None):
    return Entry(section, name, model, tuple(cats), result=result, note=note)


DOCUMENTS = [
    DocumentRecord(1, "cd01", "registration", None, "accepted", at(2, 20)),
    DocumentRecord(2, "cd02", "registration", None, "accepted", at(2, 18)),
    # cd02's M2 summary consolidates its registrations: only the summary counts.
    DocumentRecord(3, "cd02", "summary", None, "accepted", at(2, 23, 0, 0)),
    DocumentRecord(4, "cd03", "summary", None, "rejected", at(2, 21)),
    DocumentRecord(5, "cd01", "registration", None, "accepted", at(2, 10), superseded=True),
    DocumentRecord(6, "cd02", "commendation", None, "accepted", at(11, 3)),
    DocumentRecord(7, "cd01", "report", "2022-Q1", "accepted", at(3, 15, 23, 59)),
    DocumentRecord(8, "cd02", "report", "2022-Q1", "accepted", at(3, 16, 0, 0)),
]
ENTRIES = {
    1: [E("collective", "Tổ dân phố số 5", "Vận động hiến đất mở đường", "gpmb"),
        E("collective", "-Ban nữ công", "Phân loại rác tại nguồn", "bvmt", note="+ghi chú"),
        E("individual", "@Nguyễn Văn An", "=1+1", "anqp")],
    2: [E("collective", "Tổ Toán", "Không được tính (đã có Mẫu M2)", "kinh_te")],
    3: [E("collective", "Tổ Toán", "Trường học xanh", "bvmt"),
        E("collective", "Tổ Văn", "Thư viện thân thiện", "vhxh"),
        E("individual", "Cô Trần Thị Lan", "Dạy học gắn với di sản", "vhxh"),
        E("individual", "Thầy Lê Văn Bình", "Khác", "khac")],
    4: [E("collective", "Không được tính (bị trả lại)", "X", "gpmb")],
    5: [E("collective", "Không được tính (đã thay thế)", "Y", "gpmb")],
    6: [E("individual", "Cô Trần Thị Lan", "Dạy học gắn với di sản", "vhxh",
          result="=Hoàn thành xuất sắc, được Sở GD&ĐT biểu dương")],
    8: [],
}


@pytest.fixture(scope="module")
def data():
    obligations = load_campaigns(ROOT / "rules", "Asia/Ho_Chi_Minh")[2022].obligations
    states = unit_states(obligations, UNITS, DOCUMENTS)
    return build_report_data(
        organisation=ORG, year=2022, today=date(2022, 3, 10), units=UNITS, obligations=obligations,
        documents=DOCUMENTS, entries=ENTRIES, states=states,
        reminders_sent={("cd03", "registration"): 3, ("cd04", "registration"): 4},
    )


@pytest.fixture(scope="module")
def xlsx(data) -> bytes:
    return build_workbook(data)


@pytest.fixture(scope="module")
def wb(xlsx):
    return openpyxl.load_workbook(io.BytesIO(xlsx))


def rows(ws):
    return [tuple(r) for r in ws.iter_rows(values_only=True)]


def find_row(ws, col: int, value) -> int:
    for row in ws.iter_rows():
        if row[col - 1].value == value:
            return row[0].row
    raise AssertionError(f"{value!r} not found in column {col} of {ws.title}")


def test_registered_entries_follow_the_counting_rules(data):
    assert [(u.unit_id, e.name) for u, e in data.registered] == [
        ("cd01", "Tổ dân phố số 5"), ("cd01", "-Ban nữ công"), ("cd01", "@Nguyễn Văn An"),
        ("cd02", "Tổ Toán"), ("cd02", "Tổ Văn"), ("cd02", "Cô Trần Thị Lan"), ("cd02", "Thầy Lê Văn Bình"),
    ]
    assert [(u.unit_id, e.result) for u, e in data.commendations] == [
        ("cd02", "=Hoàn thành xuất sắc, được Sở GD&ĐT biểu dương")
    ]


def test_sheet_names_and_chart(wb, xlsx):
    assert wb.sheetnames == list(SHEET_NAMES) == ["Tổng hợp", "Khen thưởng", "Tiến độ", "Chỉ tiêu"]
    with zipfile.ZipFile(io.BytesIO(xlsx)) as z:
        chart = z.read("xl/charts/chart1.xml").decode()
        assert "<barChart>" in chart or "<c:barChart>" in chart
        # Series "Tổng số" over the seven category rows of section 2 of Chỉ tiêu.
        assert re.findall(r"<f>([^<]*)</f>", chart) == [
            "'Chỉ tiêu'!G15", "'Chỉ tiêu'!$A$16:$A$22", "'Chỉ tiêu'!$G$16:$G$22"
        ]
        rels = z.read("xl/worksheets/_rels/sheet4.xml.rels").decode()
        assert "drawing1.xml" in rels


def test_summary_sheet_layout(wb):
    ws = wb["Tổng hợp"]
    assert ws["A1"].value == "ĐƠN VỊ: LIÊN ĐOÀN LAO ĐỘNG QUẬN LONG BIÊN"
    assert ws["A3"].value == "BIỂU TỔNG HỢP"
    assert ws["A4"].value == "Đăng ký mô hình thực hiện phong trào thi đua “Dân vận khéo” năm 2022"
    assert "D7:J7" in {str(r) for r in ws.merged_cells.ranges}
    assert {"A7:A8", "B7:B8", "C7:C8", "K7:K8", "A3:K3"} <= {str(r) for r in ws.merged_cells.ranges}
    assert ws["D7"].value == "PHÂN LOẠI MÔ HÌNH"
    assert [ws.cell(8, c).value for c in range(4, 11)] == [
        "GPMB", "Kinh tế", "Chỉnh trang đô thị", "BVMT", "VHXH", "ANQP", "Lĩnh vực khác"
    ]
    assert [ws.cell(7, c).value for c in (1, 2, 3, 11)] == ["TT", "Tên tập thể, cá nhân", "Tên mô hình", "Ghi chú"]
    header = ws["D7"]
    assert (header.font.name, header.font.bold, header.alignment.horizontal) == ("Times New Roman", True, "center")
    assert header.border.left.style == "thin" and ws["D11"].font.name == "Times New Roman"
    # Sections and unit sub-headers, in order.
    body = [r[:3] for r in rows(ws)[8:]]
    assert body[:10] == [
        ("I", "TẬP THỂ", None),
        (None, f"Đơn vị: {EVIL}", None),
        (1, "Tổ dân phố số 5", "Vận động hiến đất mở đường"),
        (2, "-Ban nữ công", "Phân loại rác tại nguồn"),
        (None, "Đơn vị: Trường THCS Gia Thụy", None),
        (3, "Tổ Toán", "Trường học xanh"),
        (4, "Tổ Văn", "Thư viện thân thiện"),
        ("II", "CÁ NHÂN", None),
        (None, f"Đơn vị: {EVIL}", None),
        (1, "@Nguyễn Văn An", "=1+1"),
    ]


def test_summary_totals_equal_the_entries(wb, data):
    ws = wb["Tổng hợp"]
    total_row = find_row(ws, 2, "Tổng cộng")
    totals = [ws.cell(total_row, c).value for c in range(4, 11)]
    expected = [sum(1 for _, e in data.registered if cat in e.categories) for cat in CATEGORIES]
    assert expected == [1, 0, 0, 2, 2, 1, 1]
    assert totals == expected
    assert ws.cell(total_row, 3).value == "7 mô hình"
    # The marks in the body add up to the totals row, column by column.
    entry_rows = [r for r in range(10, total_row) if isinstance(ws.cell(r, 1).value, int)]
    assert len(entry_rows) == len(data.registered) == 7
    for i, c in enumerate(range(4, 11)):
        marks = [ws.cell(r, c).value for r in entry_rows]
        assert set(marks) <= {1, None}
        assert marks.count(1) == totals[i]


def test_commendation_sheet(wb):
    ws = wb["Khen thưởng"]
    assert (ws["A3"].value, ws["K7"].value) == ("DANH SÁCH", "KẾT QUẢ THỰC HIỆN")
    row = find_row(ws, 2, "Cô Trần Thị Lan")
    assert ws.cell(row, 8).value == 1  # VHXH
    assert ws.cell(row, 11).value == "=Hoàn thành xuất sắc, được Sở GD&ĐT biểu dương"
    assert ws.cell(row, 11).data_type == "s"
    total_row = find_row(ws, 2, "Tổng cộng")
    assert [ws.cell(total_row, c).value for c in range(4, 11)] == [0, 0, 0, 0, 1, 0, 0]


def test_progress_sheet_is_a_grid_of_units_by_obligation(wb, data):
    ws = wb["Tiến độ"]
    assert [ws.cell(7, c).value for c in range(1, 10)] == [
        "TT", "Tên đơn vị", "Khối", "Đăng ký mô hình “Dân vận khéo” năm 2022",
        "Danh sách đề xuất khen thưởng phong trào thi đua “Dân vận khéo” năm 2022",
        "Báo cáo kết quả thực hiện quý I năm 2022", "Báo cáo kết quả thực hiện 6 tháng đầu năm 2022",
        "Báo cáo kết quả thực hiện quý III (9 tháng) năm 2022", "Báo cáo kết quả thực hiện năm 2022",
    ]
    # The deadlines are dates, in the second header row.
    assert [ws.cell(8, c).value for c in range(3, 7)] == ["Hạn nộp", datetime(2022, 2, 22), "Chưa quy định",
                                                          datetime(2022, 3, 15)]
    assert ws.cell(8, 4).number_format == ws.cell(8, 6).number_format == "dd/mm/yyyy"
    # One row per unit, in the units file's order: state, the day it arrived, the reminders sent.
    assert [[ws.cell(r, c).value for c in range(1, 7)] for r in range(9, 13)] == [
        [1, EVIL, "Khối HCSN", "Đúng hạn 20/02", "Chưa nộp", "Đúng hạn 15/03"],
        [2, "Trường THCS Gia Thụy", "Khối trường học", "Nộp quá hạn 23/02", "Đã nộp 03/11", "Nộp quá hạn 16/03"],
        [3, "Công ty CP May Đức Giang", "Khối doanh nghiệp", "Chưa đạt 21/02 · nhắc 3", "Chưa nộp", "Chưa đến hạn"],
        [4, "Công đoàn Phường <Bồ Đề>", "Khối HCSN", "Quá hạn, chưa nộp · nhắc 4", "Chưa nộp", "Chưa đến hạn"],
    ]
    assert ws.cell(13, 2).value is None  # nothing but the units in the grid
    # Overdue stands out: in words, in bold, on its own colour; not yet due does not.
    overdue, not_due = ws.cell(12, 4), ws.cell(12, 6)
    assert overdue.font.b and not not_due.font.b
    assert overdue.fill.fgColor.rgb != not_due.fill.fgColor.rgb
    # Under the grid, the units of each standing per obligation: the report's own counts.
    counts = {ws.cell(r, 2).value: [ws.cell(r, c).value for c in range(4, 10)] for r in range(14, ws.max_row + 1)
              if ws.cell(r, 2).value}
    assert counts["Đúng hạn"] == [1, 0, 1, 0, 0, 0]
    assert counts["Nộp quá hạn"] == [1, 0, 1, 0, 0, 0]
    assert counts["Đã nộp"] == [0, 1, 0, 0, 0, 0]
    assert counts["Quá hạn, chưa nộp"] == [1, 0, 0, 0, 0, 0]
    assert counts["Chưa đến hạn"] == [0, 0, 2, 4, 4, 4]
    assert counts["Số đơn vị phải nộp"] == [o.owed for o in data.obligations] == [4] * 6
    for o, column in zip(data.obligations, range(4, 10)):
        assert {s: counts[label][column - 4] for s, label in STANDING_LABELS_VI.items()} == dict(o.counts)


def test_targets_sheet(wb, data):
    ws = wb["Chỉ tiêu"]
    assert [ws.cell(r, 1).value for r in (15, 16, 22)] == ["Lĩnh vực", "GPMB", "Lĩnh vực khác"]
    assert ws.cell(15, 7).value == "Tổng số"
    row = find_row(ws, 1, "Toàn quận")
    assert [ws.cell(row, c).value for c in range(1, 8)] == ["Toàn quận", 4, 2, 7, 0.5, 1, "Chưa đạt"]
    assert ws.cell(row, 5).number_format == "0.0%"
    row = find_row(ws, 1, "Khối HCSN")
    assert [ws.cell(row, c).value for c in range(2, 8)] == [2, 1, 3, 0.5, 1, "Chưa đạt"]
    row = find_row(ws, 1, "Khối trường học")
    assert [ws.cell(row, c).value for c in range(2, 8)] == [1, 1, 4, 1, 1, "Đạt"]
    # Models per category: Tập thể, Cá nhân, HCSN, DN, TH, Tổng số.
    row = find_row(ws, 1, "VHXH")
    assert [ws.cell(row, c).value for c in range(2, 8)] == [1, 1, 0, 0, 2, 2]
    row = find_row(ws, 1, "Cộng")
    assert [ws.cell(row, c).value for c in range(2, 8)] == [4, 3, 3, 0, 4, 7]
    row = find_row(ws, 1, "Báo cáo kết quả thực hiện quý I năm 2022")
    # due, owed, on time, late, rejected, waiting for staff, not sent, share on time
    assert [ws.cell(row, c).value for c in range(2, 10)] == [datetime(2022, 3, 15), 4, 1, 1, 0, 0, 2, 0.25]
    assert ws.cell(row, 2).number_format == "dd/mm/yyyy" and ws.cell(row, 8).number_format == "0"
    assert [p.period for p in data.reports_on_time] == ["2022-Q1", "2022-H1", "2022-Q3", "2022-Y"]


def test_pandas_tables(data):
    table = category_table(data)
    assert table["total"].to_dict() == {
        "gpmb": 1, "kinh_te": 0, "chinh_trang_do_thi": 0, "bvmt": 2, "vhxh": 2, "anqp": 1, "khac": 1
    }
    groups = group_table(data)
    assert groups.loc["all", ["units", "registered", "models"]].tolist() == [4, 2, 7]


def test_text_from_units_is_never_a_formula(xlsx, wb):
    with zipfile.ZipFile(io.BytesIO(xlsx)) as z:
        sheets = [n for n in z.namelist() if n.startswith("xl/worksheets/sheet")]
        assert len(sheets) == 4
        texts = []
        for name in sheets:
            root = ET.fromstring(z.read(name))
            assert root.findall(".//m:f", NS) == [], name
            for c in root.iterfind(".//m:c", NS):
                t = c.find("m:is/m:t", NS)
                if t is not None and t.text and t.text[0] in "=+-@":
                    assert c.get("t") == "inlineStr"
                    texts.append((name, c.get("r"), t.text))
        styles = z.read("xl/styles.xml").decode()
        assert 'quotePrefix="1"' in styles
    assert ("xl/worksheets/sheet3.xml", "B9", EVIL) in texts
    assert ("xl/worksheets/sheet1.xml", "C18", "=1+1") in texts
    assert {t for _, _, t in texts} >= {"-Ban nữ công", "+ghi chú", "@Nguyễn Văn An", "=1+1", EVIL}
    cell = wb["Tiến độ"]["B9"]
    assert (cell.value, cell.data_type, cell.quotePrefix) == (EVIL, "s", True)


def test_headline_and_missing(data):
    h = headline(data)
    assert (h.units_total, h.units_registered, h.models_total) == (4, 2, 7)
    assert (h.collective_models, h.individual_models, h.commendations_total) == (4, 3, 1)
    assert h.models_by_category == (
        ("GPMB", 1), ("Kinh tế", 0), ("Chỉnh trang đô thị", 0), ("BVMT", 2), ("VHXH", 2), ("ANQP", 1),
        ("Lĩnh vực khác", 1),
    )
    c = h.obligations[0]
    assert (c.title, c.due_date, c.on_time, c.late, c.rejected, c.under_review, c.not_sent, c.owed) == (
        "Đăng ký mô hình “Dân vận khéo” năm 2022", date(2022, 2, 22), 1, 1, 1, 0, 1, 4)
    assert (c.past_due, c.not_sent_standing, c.not_sent_label) == (True, "overdue", "Quá hạn, chưa nộp")
    assert [(m.unit_name, m.obligation_title[:22], m.state, m.overdue) for m in missing_rows(data)] == [
        ("Công ty CP May Đức Giang", "Đăng ký mô hình “Dân v", "Chưa đạt, chờ gửi lại", True),
        ("Công đoàn Phường <Bồ Đề>", "Đăng ký mô hình “Dân v", "Quá hạn, chưa nộp", True),
        ("Công ty CP May Đức Giang", "Báo cáo kết quả thực h", "Chưa đến hạn", False),
        ("Công đoàn Phường <Bồ Đề>", "Báo cáo kết quả thực h", "Chưa đến hạn", False),
    ]


def test_staff_email(data):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "templates"))
    subject, html, text = render_staff_email(env, data, attachment_name="tong-hop-2022-03-10.xlsx")
    assert subject == f"[{ORG}] Tổng hợp “Dân vận khéo” năm 2022 – số liệu đến ngày 10/03/2022"
    assert "CĐCS đã đăng ký mô hình: 2/4 (50,0%; chỉ tiêu 100%)" in text
    assert ("- Công đoàn Phường <Bồ Đề> (Khối HCSN) – Đăng ký mô hình “Dân vận khéo” năm 2022, hạn 22/02/2022: "
            "Quá hạn, chưa nộp") in text
    assert "Công đoàn Phường &lt;Bồ Đề&gt;" in html and "<Bồ Đề>" not in html
    assert "<strong>2/4</strong>" in html
    assert "Đơn vị chưa gửi, đã quá hạn" in html and "Đơn vị chưa gửi, sắp đến hạn" in html
    assert "tong-hop-2022-03-10.xlsx" in html


def test_workbook_is_deterministic(data, xlsx):
    assert build_workbook(data) == xlsx


def test_empty_year_still_builds():
    data = build_report_data(
        organisation=ORG, year=2022, today=date(2022, 1, 5), units=UNITS[:1], obligations=(),
        documents=(), entries={}, states={},
    )
    wb = openpyxl.load_workbook(io.BytesIO(build_workbook(data)))
    ws = wb["Tổng hợp"]
    row = find_row(ws, 2, "Tổng cộng")
    assert [ws.cell(row, c).value for c in range(3, 11)] == ["0 mô hình", 0, 0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("text", ["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "\tindented", "\rcarriage", "=1+1"])
def test_put_keeps_every_trigger_as_text(text):
    from openpyxl import Workbook

    from pipeline.plan.xlsx import put

    wb = Workbook()
    cell = put(wb.active, 1, 1, text)
    assert (cell.value, cell.data_type, cell.quotePrefix) == (text, "s", True)
    out = io.BytesIO()
    wb.save(out)
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as z:
        root = ET.fromstring(z.read("xl/worksheets/sheet1.xml"))
    assert root.findall(".//m:f", NS) == []
    (c,) = root.findall(".//m:c", NS)
    assert c.get("t") == "inlineStr" and c.find("m:is/m:t", NS).text == text


def test_put_drops_control_characters_openpyxl_refuses():
    from openpyxl import Workbook

    from pipeline.plan.xlsx import put

    cell = put(Workbook().active, 1, 1, "Tổ\x07 dân phố")
    assert cell.value == "Tổ dân phố"
