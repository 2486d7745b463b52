"""A workbook that prints: every sheet on A4, one page wide, its header rows on every page, titles within the print
width; Tiến độ a grid of units by obligation with its deadlines as dates; Chỉ tiêu with the chart beside its table,
on one page. Read back with openpyxl, and printed to PDF by LibreOffice for a district of 300 units, its pages
counted sheet by sheet (the footer names the sheet and the page)."""
from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
import zipfile
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from pipeline.model import GROUPS, DocumentRecord, Entry, Unit
from pipeline.plan.campaigns import load_campaigns
from pipeline.plan.deadlines import unit_states
from pipeline.plan.reports import build_report_data
from pipeline.plan.workbook import SHEET_NAMES, build_workbook

ROOT = Path(__file__).resolve().parents[1]
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
ORG = "Liên đoàn Lao động quận Long Biên"
UNITS = 300
CATS = ("gpmb", "kinh_te", "chinh_trang_do_thi", "bvmt", "vhxh", "anqp", "khac")
XDR = {"xdr": "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing"}


def at(m: int, d: int, hh: int = 9) -> datetime:
    return datetime(2022, m, d, hh, tzinfo=HCM)


def district(n: int = UNITS):
    """A district of ``n`` units with long real-looking names: registrations on time, late, rejected and waiting,
    models in every category, commendations, first-quarter reports; figures of 20/03/2022."""
    units = [Unit(f"u{i:03d}", f"Công đoàn cơ sở Công ty Cổ phần Đầu tư và Phát triển Long Biên số {i}",
                  GROUPS[i % 3], (f"u{i}@example.vn",)) for i in range(n)]
    docs: list[DocumentRecord] = []
    entries: dict[int, list[Entry]] = {}

    def add(unit: Unit, kind: str, when: datetime, state: str = "accepted", period: str | None = None,
            rows: list[Entry] | None = None) -> None:
        docs.append(DocumentRecord(len(docs) + 1, unit.unit_id, kind, period, state, when))
        entries[len(docs)] = rows or []

    for i, unit in enumerate(units):
        k = i % 10
        if k < 7:
            rows = [Entry("collective" if j % 2 == 0 else "individual", f"Tổ công đoàn số {j + 1}",
                          f"Mô hình “Dân vận khéo” số {j + 1} về {CATS[(i + j) % 7]} của đơn vị {i}",
                          (CATS[(i + j) % 7],)) for j in range(1 + i % 3)]
            add(unit, "registration", at(2, 10 + k * 2), rows=rows)  # k 6: 22/02, on time; none late here
        elif k == 7:
            add(unit, "registration", at(2, 25), rows=[Entry("collective", "Tổ 1", "Mô hình muộn", ("khac",))])
        elif k == 8:
            add(unit, "registration", at(2, 21), state="rejected")
        else:
            add(unit, "registration", at(2, 23), state="needs_review")
        if i % 4 == 0:
            add(unit, "commendation", at(3, 1), rows=[Entry("individual", "Chị Nguyễn Thị Lan", "Tổ may",
                                                            ("vhxh",), result="Hoàn thành xuất sắc nhiệm vụ")])
        if i % 3 == 0:
            add(unit, "report", at(3, 12 + i % 6), period="2022-Q1")
    campaign = load_campaigns(ROOT / "rules", "Asia/Ho_Chi_Minh")[2022]
    states = unit_states(campaign.obligations, units, docs)
    return build_report_data(organisation=ORG, year=2022, today=date(2022, 3, 20), units=units,
                             obligations=campaign.obligations, documents=docs, entries=entries, states=states,
                             reminders_sent={(u.unit_id, "registration"): 2 for u in units[::5]})


@pytest.fixture(scope="module")
def xlsx() -> bytes:
    return build_workbook(district())


@pytest.fixture(scope="module")
def wb(xlsx: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(xlsx))


# --------------------------------------------------------------------------- page setup, read back


def print_range(ws) -> tuple[int, int]:
    """(last column, last row) of the sheet's print area."""
    [area] = ws.print_area if isinstance(ws.print_area, list) else [ws.print_area]
    m = re.fullmatch(r"'?[^!]*'?!\$A\$1:\$([A-Z]+)\$(\d+)", area)
    assert m, area
    return openpyxl.utils.column_index_from_string(m.group(1)), int(m.group(2))


def test_every_sheet_is_set_up_for_a4_one_page_wide(wb) -> None:
    for name in SHEET_NAMES:
        ws = wb[name]
        setup = ws.page_setup
        assert int(setup.paperSize) == 9, name  # A4
        assert setup.orientation == "landscape", name
        assert ws.sheet_properties.pageSetUpPr.fitToPage is True, name  # without it fitToWidth does nothing
        assert (int(setup.fitToWidth), int(setup.fitToHeight)) == ((1, 1) if name == "Chỉ tiêu" else (1, 0)), name
        margins = ws.page_margins
        assert 0.4 <= margins.left <= 1.0 and 0.4 <= margins.right <= 1.0, name
        assert 0.4 <= margins.top <= 1.0 and 0.4 <= margins.bottom <= 1.0, name
        assert ws.print_options.horizontalCentered
        assert "&A" in ws.oddFooter.center.text and "&P" in ws.oddFooter.center.text
        last_col, last_row = print_range(ws)
        assert last_row >= ws.max_row - 1, name
        # titles whole: every merged cell (the title block included) lies within the print width
        assert all(r.max_col <= last_col for r in ws.merged_cells.ranges), name
        assert any(r.min_col == 1 and r.max_col == last_col and r.min_row == 3 for r in ws.merged_cells.ranges), name
        used = max(c.column for row in ws.iter_rows() for c in row if c.value is not None)
        assert used <= last_col, name
    for name in ("Tổng hợp", "Khen thưởng", "Tiến độ"):
        assert wb[name].print_title_rows == "$7:$8", name  # the two header rows on every page


def test_progress_is_one_row_per_unit_with_deadlines_as_dates(wb) -> None:
    ws = wb["Tiến độ"]
    assert (ws["A7"].value, ws["B7"].value, ws["C8"].value) == ("TT", "Tên đơn vị", "Hạn nộp")
    deadlines = [ws.cell(8, c).value for c in range(4, 10)]
    assert deadlines == [datetime(2022, 2, 22), "Chưa quy định", datetime(2022, 3, 15), datetime(2022, 6, 15),
                         datetime(2022, 9, 15), datetime(2022, 12, 15)]
    assert all(ws.cell(8, c).number_format == "dd/mm/yyyy" for c in (4, 6, 7, 8, 9))
    numbers = [ws.cell(r, 1).value for r in range(9, 9 + UNITS)]
    assert numbers == list(range(1, UNITS + 1)) and ws.cell(9 + UNITS, 1).value is None
    assert ws.cell(9, 4).value == "Đúng hạn 10/02 · nhắc 2" and ws.cell(16, 4).value == "Nộp quá hạn 25/02"
    assert ws.cell(17, 4).value == "Chưa đạt 21/02" and ws.cell(18, 4).value == "Chờ xem xét"
    assert ws.cell(10, 6).value == "Quá hạn, chưa nộp" and ws.cell(10, 7).value == "Chưa đến hạn"
    assert ws.freeze_panes == "D9"


def test_the_chart_stands_beside_its_table_within_the_print_area(wb, xlsx) -> None:
    ws = wb["Chỉ tiêu"]
    last_col, last_row = print_range(ws)
    table_cols = max(c.column for row in ws.iter_rows(max_col=10) for c in row if c.value is not None)
    section2 = next(r for r in range(1, ws.max_row + 1) if str(ws.cell(r, 1).value).startswith("2. "))
    cong = next(r for r in range(section2, ws.max_row + 1) if ws.cell(r, 1).value == "Cộng")
    with zipfile.ZipFile(io.BytesIO(xlsx)) as z:
        drawing = ET.fromstring(z.read("xl/drawings/drawing1.xml"))
    [anchor] = drawing.findall("xdr:twoCellAnchor", XDR)

    def marker(tag: str) -> tuple[int, int]:
        m = anchor.find(f"xdr:{tag}", XDR)
        return int(m.find("xdr:col", XDR).text), int(m.find("xdr:row", XDR).text)

    (col0, row0), (col1, row1) = marker("from"), marker("to")
    assert col0 >= table_cols  # to the right of every table (zero-based: col0 is column col0 + 1)
    assert col1 <= last_col and row1 <= last_row  # wholly inside the print area
    assert row0 + 1 <= section2 + 1 and row1 + 1 >= cong  # beside the table it draws


# --------------------------------------------------------------------------- printed by LibreOffice


def soffice() -> str:
    path = shutil.which("soffice") or shutil.which("libreoffice")
    if path is None:
        pytest.fail("printing the workbook to PDF needs LibreOffice Calc (soffice): install the Debian package "
                    "libreoffice-calc-nogui, e.g. with scripts/install-system-deps.sh as root", pytrace=False)
    return path


@pytest.fixture(scope="module")
def printed(xlsx: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[str, tuple[float, float]]]]:
    """The workbook printed to PDF by LibreOffice: per sheet, each page's text and size (points)."""
    from pypdf import PdfReader

    exe = soffice()
    folder = tmp_path_factory.mktemp("print")
    book = folder / "bao-cao.xlsx"
    book.write_bytes(xlsx)
    profile = folder / "lo-profile"  # a profile of its own: parallel LibreOffice runs do not collide
    done = subprocess.run([exe, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore",
                           "--convert-to", "pdf", "--outdir", str(folder), str(book)],
                          capture_output=True, text=True, timeout=300)
    pdf = folder / "bao-cao.pdf"
    assert done.returncode == 0 and pdf.exists(), f"LibreOffice did not print the workbook: {done.stderr[-2000:]}"
    pages: dict[str, list[tuple[str, tuple[float, float]]]] = defaultdict(list)
    for page in PdfReader(str(pdf)).pages:
        text = re.sub(r"\s+", " ", page.extract_text())
        footer = re.findall(r"(Tổng hợp|Khen thưởng|Tiến độ|Chỉ tiêu) – trang (\d+)", text)
        assert footer, f"a page without its footer: {text[:200]}"
        sheet, number = footer[-1]
        assert int(number) == len(pages[sheet]) + 1, (sheet, number)  # numbered from 1 on every sheet
        pages[sheet].append((text, (float(page.mediabox.width), float(page.mediabox.height))))
    return pages


def test_every_printed_page_is_a4_landscape(printed) -> None:
    assert set(printed) == set(SHEET_NAMES)
    for sheet, pages in printed.items():
        for _, (w, h) in pages:
            assert abs(w - 841.9) < 2 and abs(h - 595.3) < 2, sheet  # A4 landscape, in points


def test_progress_for_300_units_prints_one_page_wide(printed, wb) -> None:
    pages = printed["Tiến độ"]
    # one page wide: each page has the header rows, from the first column to the last (the year report's date)
    assert 2 <= len(pages) <= math.ceil(UNITS / 40), len(pages)
    for text, _ in pages:
        assert "TT" in text and "Tên đơn vị" in text and "Hạn nộp" in text and "15/12/2022" in text
    first = pages[0][0]
    assert "TIẾN ĐỘ GỬI BIỂU MẪU, BÁO CÁO CỦA CÁC CÔNG ĐOÀN CƠ SỞ" in first  # the title whole, on one page
    # every unit printed, once
    printed_numbers = re.findall(r"Long Biên số (\d+)\b", " ".join(t for t, _ in pages))
    assert sorted(map(int, printed_numbers)) == list(range(UNITS))


def test_form_sheets_print_one_page_wide(printed, wb) -> None:
    for sheet, last_header in (("Tổng hợp", "Ghi chú"), ("Khen thưởng", "KẾT QUẢ THỰC HIỆN")):
        pages = printed[sheet]
        rows = wb[sheet].max_row
        assert 1 <= len(pages) <= math.ceil(rows / 30), (sheet, len(pages), rows)
        for text, _ in pages:
            assert "Tên tập thể, cá nhân" in text and last_header in text, sheet  # first and last column
        assert "BIỂU TỔNG HỢP" in pages[0][0] or "DANH SÁCH" in pages[0][0]


def test_targets_and_chart_print_whole_on_one_page(printed) -> None:
    [(text, _)] = printed["Chỉ tiêu"]
    assert "THEO DÕI THỰC HIỆN CHỈ TIÊU" in text
    assert "Số mô hình theo lĩnh vực" in text  # the chart's title ...
    for label in ("GPMB", "Kinh tế", "BVMT", "VHXH", "ANQP"):  # ... and its categories, on the same page
        assert text.count(label) >= 2, label  # in the table and on the chart's axis
    assert "3. Báo cáo định kỳ gửi đúng hạn theo kỳ" in text and "cần theo dõi riêng" in text
