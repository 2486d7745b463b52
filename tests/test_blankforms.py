"""Blank forms: written, filled through openpyxl as a person would, read back with no finding."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from pipeline.forms.blank import FORMS, blank_form, form_filename, read_marker, write_forms
from pipeline.forms import kinds, read_document
from pipeline.model import CATEGORY_LABELS
from pipeline.forms.rules import default_rules
from pipeline.textnorm import fold_compact

UNIT_NAME = "Công đoàn Trường Tiểu học Ái Mộ"


def _unit() -> Any:
    from pipeline.model import Unit

    return Unit("th014", UNIT_NAME, "truong_hoc", ("thaimo.longbien@gmail.com",))


COLLECTIVE = [
    ("Tổ Văn phòng", "Dọn vệ sinh ngõ xóm cùng nhân dân", "bvmt", "Hoàn thành xuất sắc"),
    ("Tổ chuyên môn khối 5", "Tuyên truyền an toàn giao thông cho phụ huynh", "anqp", "Giảm 50% vi phạm"),
    ("Tổ Hành chính – Kế toán", "Vận động các hộ bàn giao mặt bằng đúng hạn", "gpmb", "12 hộ bàn giao"),
]
INDIVIDUAL = [
    ("Nguyễn Văn An", "Nhắn tin nhắc đoàn viên nộp kinh phí", "kinh_te", "100% đoàn viên"),
    ("Trần Thị Bình", "Trồng cây xanh trên tuyến phố Ái Mộ", "chinh_trang_do_thi", "200 cây"),
    ("Lê Thị Cúc", "Câu lạc bộ đọc sách cho con em đoàn viên", "vhxh", "Duy trì hằng tháng"),
]
REGISTRATION = [
    *[e[:3] for e in COLLECTIVE],
    ("Tổ Bảo vệ", "Sáng kiến tiết kiệm điện nước", "khac"),
    ("Nguyễn Thị Dung", "Vận động phụ huynh tham gia Tết trồng cây", "chinh_trang_do_thi"),
]


# ---------------------------------------------------------------- filling, as a person does
def _layout(ws: Any) -> dict[str, Any]:
    """Find, by its printed words, what a person looks for: header columns, sections, blank rows."""
    cols: dict[str, int] = {}
    header_row = None
    for row in ws.iter_rows(min_row=1, max_row=30):
        for cell in row:
            if cell.value == "Tên tập thể, cá nhân":
                header_row = cell.row
    assert header_row, "header not found"
    labels = {v: k for k, v in CATEGORY_LABELS.items()}
    for c in range(1, ws.max_column + 1):
        top, sub = ws.cell(header_row, c).value, ws.cell(header_row + 1, c).value
        if top == "Tên tập thể, cá nhân":
            cols["name"] = c
        elif top == "Tên mô hình":
            cols["model"] = c
        elif top in ("Ghi chú", "KẾT QUẢ THỰC HIỆN"):
            cols["last"] = c
        elif sub in labels:
            cols[labels[sub]] = c
    sections: dict[str, int] = {}
    for r in range(header_row + 2, ws.max_row + 1):
        if ws.cell(r, 2).value == "TẬP THỂ":
            sections["collective"] = r
        elif ws.cell(r, 2).value == "CÁ NHÂN":
            sections["individual"] = r
    return {"header": header_row, "cols": cols, "sections": sections}


def _fill(ws: Any, first_row: int, cols: dict[str, int], items: list[tuple[str, ...]], start_no: int = 1) -> None:
    for i, item in enumerate(items):
        r = first_row + i
        assert ws.cell(r, cols["name"]).value is None, "typing over something that is not a blank row"
        ws.cell(r, 1).value = start_no + i
        ws.cell(r, cols["name"]).value = item[0]
        ws.cell(r, cols["model"]).value = item[1]
        ws.cell(r, cols[item[2]]).value = 1
        if len(item) > 3:
            ws.cell(r, cols["last"]).value = item[3]


def _save(wb: Any) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _filled(kind: str, *, unit_name: str | None = UNIT_NAME, type_unit: str | None = None) -> bytes:
    wb = load_workbook(io.BytesIO(blank_form(kind, unit_name=unit_name)))
    ws = wb.active
    lay = _layout(ws)
    cols = lay["cols"]
    if type_unit:
        _unit_cell(ws).value = type_unit
    for row in ws.iter_rows(min_row=1, max_row=6):  # the date line, typed over
        for cell in row:
            if isinstance(cell.value, str) and cell.value.startswith("….. ngày"):
                cell.value = "Long Biên, ngày 18 tháng 02 năm 2022"
    if kind == "registration":
        _fill(ws, lay["header"] + 2, cols, [e[:3] + ("Đăng ký lần đầu",) for e in REGISTRATION])
    else:
        take = 4 if kind == "commendation" else 3
        col = [e[:take] for e in COLLECTIVE]
        ind = [e[:take] for e in INDIVIDUAL]
        _fill(ws, lay["sections"]["collective"] + 1, cols, col)
        _fill(ws, lay["sections"]["individual"] + 1, cols, ind, start_no=len(col) + 1)
    return _save(wb)


def _unit_cell(ws: Any) -> Any:
    for row in ws.iter_rows(min_row=1, max_row=6):
        for cell in row:
            if cell.value == "ĐƠN VỊ:":
                return ws.cell(cell.row, cell.column + 1)
    raise AssertionError("no ĐƠN VỊ line")


def _expected(kind: str) -> list[tuple[Any, ...]]:
    if kind == "registration":
        return [("collective", n, m, (c,), None, "Đăng ký lần đầu") for n, m, c in REGISTRATION]
    out = []
    for section, items in (("collective", COLLECTIVE), ("individual", INDIVIDUAL)):
        for n, m, c, res in items:
            out.append((section, n, m, (c,), res if kind == "commendation" else None, None))
    return out


def _got(reading: Any) -> list[tuple[Any, ...]]:
    return [(e.section, e.name, e.model, e.categories, e.result, e.note) for e in reading.entries]


# ---------------------------------------------------------------- read back
@pytest.mark.parametrize("kind", FORMS)
def test_filled_form_reads_back_with_no_finding(kind: str) -> None:
    data = _filled(kind)
    r = read_document(form_filename(kind, year=2022), data, unit=_unit())
    assert [(f.code, f.location, f.message) for f in r.findings] == []
    assert (r.kind, r.state, r.format, r.period) == (kind, "accepted", "xlsx", None)
    assert _got(r) == _expected(kind)
    assert r.unit_line == UNIT_NAME


@pytest.mark.parametrize("kind", FORMS)
def test_kind_comes_from_the_title_not_the_filename(kind: str) -> None:
    r = read_document("bieu.xlsx", _filled(kind), unit=_unit())
    assert (r.kind, r.state, r.findings) == (kind, "accepted", ())


@pytest.mark.parametrize("kind", FORMS)
def test_unit_typed_by_hand_reads_back(kind: str) -> None:
    data = _filled(kind, unit_name=None, type_unit=UNIT_NAME)
    r = read_document("x.xlsx", data, unit=_unit())
    assert (r.kind, r.state, r.findings, r.unit_line) == (kind, "accepted", (), UNIT_NAME)
    assert _got(r) == _expected(kind)


@pytest.mark.parametrize("kind", FORMS)
def test_unit_left_blank_is_only_the_unit_missing_warning(kind: str) -> None:
    r = read_document("x.xlsx", _filled(kind, unit_name=None), unit=_unit())
    assert (r.kind, r.state) == (kind, "accepted")
    assert [f.code for f in r.findings] == ["unit-missing"]
    assert _got(r) == _expected(kind)


@pytest.mark.parametrize("kind", FORMS)
def test_blank_form_is_rejected_as_empty(kind: str) -> None:
    for unit_name in (UNIT_NAME, None):
        r = read_document(form_filename(kind), blank_form(kind, unit_name=unit_name), unit=_unit())
        assert (r.kind, r.state, r.entries) == (kind, "rejected", ())
        codes = [f.code for f in r.findings]
        assert "no-entries" in codes
        assert set(codes) <= {"no-entries", "unit-missing"}
        msg = next(f.message for f in r.findings if f.code == "no-entries")
        assert "không có dòng nào được điền" in msg


def test_registration_other_field_and_summary_sections_count() -> None:
    from pipeline.forms import summarise

    r = read_document("x.xlsx", _filled("registration"), unit=_unit())
    assert summarise(r)["collective"]["khac"] == 1
    r = read_document("x.xlsx", _filled("summary"), unit=_unit())
    counts = summarise(r)
    assert counts["collective"]["bvmt"] == 1 and counts["individual"]["vhxh"] == 1


# ---------------------------------------------------------------- the form itself
@pytest.mark.parametrize("kind", FORMS)
def test_layout_matches_the_printed_form(kind: str) -> None:
    ws = load_workbook(io.BytesIO(blank_form(kind, year=2023))).active
    lay = _layout(ws)
    h = lay["header"]
    texts = [str(c.value) for row in ws.iter_rows() for c in row if c.value is not None]
    assert "….. ngày …tháng …năm 2023" in texts
    assert ("Mẫu M2" in texts) == (kind == "summary")
    title = {
        "registration": ["BIỂU ĐĂNG KÝ", 'Mô hình "Dân vận khéo" năm 2023'],
        "summary": ["BIỂU TỔNG HỢP", 'Đăng ký mô hình thực hiện phong trào thi đua "Dân vận khéo" năm 2023'],
        "commendation": ["DANH SÁCH", 'Đề xuất khen thưởng phong trào thi đua "Dân vận khéo" năm 2023'],
    }[kind]
    assert [ws.cell(h - 3, 1).value, ws.cell(h - 2, 1).value] == title
    ncats = 7 if kind == "registration" else 6
    top = [ws.cell(h, c).value for c in range(1, 5 + ncats)]
    last = "KẾT QUẢ THỰC HIỆN" if kind == "commendation" else "Ghi chú"
    assert top == ["TT", "Tên tập thể, cá nhân", "Tên mô hình", "PHÂN LOẠI MÔ HÌNH", *[None] * (ncats - 1), last]
    subs = [ws.cell(h + 1, c).value for c in range(4, 4 + ncats)]
    assert subs == ["GPMB", "Kinh tế", "Chỉnh trang đô thị", "BVMT", "VHXH", "ANQP", "Lĩnh vực khác"][:ncats]
    merged = {str(m) for m in ws.merged_cells.ranges}
    from openpyxl.utils import get_column_letter as L

    assert f"D{h}:{L(3 + ncats)}{h}" in merged
    assert {f"A{h}:A{h + 1}", f"B{h}:B{h + 1}", f"C{h}:C{h + 1}", f"{L(4 + ncats)}{h}:{L(4 + ncats)}{h + 1}"} <= merged
    assert ws.cell(h, 2).font.name == "Times New Roman" and ws.cell(h, 2).font.b
    assert ws.cell(h + 2, 2).font.name == "Times New Roman"
    assert ws.cell(h, 2).border.left.style == "thin"
    assert ws.cell(h + 3, 3).alignment.wrap_text
    assert ws.column_dimensions["C"].width > ws.column_dimensions["A"].width
    assert any(t.startswith("Lưu ý: Đánh số (1) vào ô tương ứng") for t in texts)
    signer = "ĐẠI DIỆN TẬP THỂ/CÁ NHÂN ĐĂNG KÝ MÔ HÌNH" if kind == "registration" else "THỦ TRƯỞNG ĐƠN VỊ"
    assert signer in texts
    assert not any(t in texts for t in ("VHXII", "VHXXH", "Chính trang đô thị"))
    if kind != "registration":
        assert set(lay["sections"]) == {"collective", "individual"}
        assert ws.cell(lay["sections"]["collective"], 1).value == "I"
        assert ws.cell(lay["sections"]["individual"], 1).value == "II"
        # 20 empty rows under each section by default
        assert lay["sections"]["individual"] - lay["sections"]["collective"] == 21
    ps = ws.page_setup
    assert ps.orientation == "landscape" and ps.fitToWidth == 1 and ps.fitToHeight == 0
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.print_title_rows.replace("$", "") == f"{h}:{h + 1}"


@pytest.mark.parametrize("kind", FORMS)
def test_category_cells_only_take_one(kind: str) -> None:
    ws = load_workbook(io.BytesIO(blank_form(kind, rows=5))).active
    lay = _layout(ws)
    cats = [c for k, c in lay["cols"].items() if k in CATEGORY_LABELS]
    dvs = ws.data_validations.dataValidation
    assert len(dvs) == 1
    dv = dvs[0]
    assert (dv.type, dv.operator, dv.formula1, dv.allow_blank, dv.showErrorMessage, dv.errorStyle) == (
        "whole", "equal", "1", True, True, "stop")
    assert "số 1" in dv.error and dv.errorTitle
    if kind == "registration":
        rows = range(lay["header"] + 2, lay["header"] + 7)
    else:
        s = lay["sections"]
        rows = [*range(s["collective"] + 1, s["collective"] + 6), *range(s["individual"] + 1, s["individual"] + 6)]
    from openpyxl.utils import get_column_letter as L

    for r in rows:
        for c in cats:
            assert f"{L(c)}{r}" in dv.sqref
    # not on header, section rows or the name column
    assert f"{L(cats[0])}{lay['header'] + 1}" not in dv.sqref
    assert f"B{lay['header'] + 2}" not in dv.sqref
    for r in lay["sections"].values():
        assert f"{L(cats[0])}{r}" not in dv.sqref


@pytest.mark.parametrize("kind", FORMS)
def test_protection_locks_header_not_entry_cells(kind: str) -> None:
    ws = load_workbook(io.BytesIO(blank_form(kind, rows=3))).active
    assert ws.protection.sheet is True
    assert not ws.protection.password  # no password: Review → Unprotect Sheet
    assert ws.protection.insertRows is False and ws.protection.deleteRows is False  # allowed
    lay = _layout(ws)
    h = lay["header"]
    for c in range(1, ws.max_column + 1):
        assert ws.cell(h, c).protection.locked and ws.cell(h + 1, c).protection.locked
    assert ws.cell(h - 3, 1).protection.locked  # title
    first = h + 2 if kind == "registration" else lay["sections"]["collective"] + 1
    for key, c in lay["cols"].items():
        assert not ws.cell(first, c).protection.locked, key
    assert not _unit_cell(ws).protection.locked
    for r in lay["sections"].values():
        assert ws.cell(r, 2).protection.locked


@pytest.mark.parametrize("kind", FORMS)
def test_hidden_marker(kind: str) -> None:
    data = blank_form(kind, year=2023, unit_name=UNIT_NAME)
    assert read_marker(data) == {"form": kind, "version": "1", "year": "2023", "unit": UNIT_NAME}
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == [wb.active.title]  # no extra sheet the reader could mistake for data
    assert all(wb.defined_names[n].hidden for n in ("_intake_form", "_intake_version"))
    assert wb.properties.keywords == f"intake:{kind}:v1:2023"
    # the marker survives a unit's save, and is absent elsewhere
    assert read_marker(_filled(kind))["form"] == kind  # type: ignore[index]
    assert read_marker(b"not a workbook") is None
    assert read_marker(blank_form(kind))["unit"] == ""  # type: ignore[index]


@pytest.mark.parametrize("kind", FORMS)
def test_unit_prefilled_when_given(kind: str) -> None:
    ws = load_workbook(io.BytesIO(blank_form(kind, unit_name="  Công đoàn  Trường Tiểu học Ái Mộ "))).active
    assert _unit_cell(ws).value == UNIT_NAME
    ws = load_workbook(io.BytesIO(blank_form(kind))).active
    assert _unit_cell(ws).value is None


def test_rows_and_bad_arguments() -> None:
    ws = load_workbook(io.BytesIO(blank_form("registration", rows=3))).active
    h = _layout(ws)["header"]
    assert str(ws.cell(h + 2 + 3 + 1, 1).value).startswith("Lưu ý")
    with pytest.raises(ValueError):
        blank_form("report")
    with pytest.raises(ValueError):
        blank_form("summary", rows=0)
    with pytest.raises(ValueError):
        blank_form("summary", year=22)


def test_write_forms(tmp_path: Path) -> None:
    paths = write_forms(tmp_path / "out", year=2022, unit_name="Công đoàn Trường A/B: “mới”")
    assert [p.name for p in paths] == [
        "Biểu đăng ký mô hình Dân vận khéo năm 2022 - Công đoàn Trường A B “mới”.xlsx",
        "Mẫu M2 - Biểu tổng hợp đăng ký mô hình Dân vận khéo năm 2022 - Công đoàn Trường A B “mới”.xlsx",
        "Danh sách đề xuất khen thưởng Dân vận khéo năm 2022 - Công đoàn Trường A B “mới”.xlsx",
    ]
    rules = default_rules()
    for kind, p in zip(FORMS, paths):
        assert read_marker(p.read_bytes())["form"] == kind  # type: ignore[index]
        # a unit that keeps the filename still names the kind
        assert kinds.detect_kind(p.stem, rules) == kind
    assert [p.name for p in write_forms(tmp_path, year=2024)][0] == "Biểu đăng ký mô hình Dân vận khéo năm 2024.xlsx"
    assert not list(tmp_path.glob("**/*.tmp"))
    assert fold_compact(paths[0].name)  # plain NFC text


# Advance widths of Times Bold (Adobe AFM, 1/1000 em) for the label's letters; Vietnamese marks add none.
_TIMES_BOLD = {"Đ": 722, "Ơ": 778, "N": 722, " ": 250, "V": 722, "Ị": 389, ":": 333}


@pytest.mark.parametrize("kind", FORMS)
def test_unit_label_is_whole(kind: str) -> None:
    ws = load_workbook(io.BytesIO(blank_form(kind, unit_name=UNIT_NAME))).active
    label = next(c for row in ws.iter_rows(min_row=1, max_row=6) for c in row if c.value == "ĐƠN VỊ:")
    size = label.font.sz
    text_px = sum(_TIMES_BOLD[ch] for ch in label.value) / 1000 * size * 96 / 72
    # Excel: a column of width w is w * 7 + 5 pixels (the default font's digit is 7 px wide).
    col_px = ws.column_dimensions[label.column_letter].width * 7 + 5
    assert label.font.b and size == 13
    assert col_px >= text_px + 8, (col_px, text_px)  # a few pixels of cell padding on each side
    # The unit name is in the next cell, so the label cannot overflow into it.
    assert ws.cell(label.row, label.column + 1).value == UNIT_NAME
