"""Forms are data: a form the 2022 plan does not have, added as a definition only, gets a blank form, is
recognised and read with cell-level findings; every document is read as one of its campaign's forms."""
from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter

from intake_demo import samples
from formfiles import blank_columns, fill_blank
from pipeline.errors import ConfigError
from pipeline.forms import read_document
from pipeline.forms.blank import blank_form, form_attachment, form_filename, read_marker, write_forms
from pipeline.forms.rules import default_rules, load_rules
from pipeline.model import CATEGORY_LABELS, KIND_LABELS, Unit

RULES_DIR = Path(__file__).resolve().parents[1] / "rules"
UNIT = Unit("th014", "Công đoàn Trường Tiểu học Ái Mộ", "truong_hoc", ("thaimo.longbien@gmail.com",))
CAMPAIGNS = ((2022, ("registration", "summary", "commendation", "report")),
             (2023, ("dang-ky-2023", "summary", "commendation", "report")))
E2 = [("Tổ Văn phòng", "Dọn vệ sinh ngõ xóm", "bvmt"), ("Nguyễn Văn An", "Vận động bàn giao mặt bằng", "gpmb")]

# The 2023 registration form: the registration's columns plus two, written as staff would.
DANG_KY_2023 = """\
# Biểu đăng ký mô hình "Dân vận khéo" năm 2023: the 2022 form, plus how many people take part and when.
id: dang-ky-2023
name: "Biểu đăng ký mô hình “Dân vận khéo” (mẫu 2023)"
short_name: "Biểu đăng ký 2023"
type: table
report_as: registration   # the consolidated report counts its rows as the unit's registered models
recognise:
  order: 30
  phrases: ["biểu đăng ký", "bieu dang ky", "đăng ký mô hình", "phiếu đăng ký", "đăng ký"]
  shape: {}
columns:
  - {key: tt, label: "TT", width: 5}
  - {key: name, label: "Tên tập thể, cá nhân", required: true, width: 30}
  - {key: model, label: "Tên mô hình", required: true, width: 38}
  - {key: group, label: "PHÂN LOẠI MÔ HÌNH"}
  - key: so_nguoi
    label: "Số người tham gia"
    synonyms: ["Số người", "Số lượng người tham gia"]
    type: integer
    min: 1
    required: true
    width: 12
  - key: thoi_gian
    label: "Thời gian thực hiện"
    synonyms: ["Thời gian"]
    width: 18
  - {key: note, label: "Ghi chú", width: 20}
categories:
  - {code: gpmb, label: "GPMB"}
  - {code: kinh_te, label: "Kinh tế"}
  - {code: chinh_trang_do_thi, label: "Chỉnh trang đô thị", width: 11}
  - {code: bvmt, label: "BVMT"}
  - {code: vhxh, label: "VHXH"}
  - {code: anqp, label: "ANQP"}
  - {code: khac, label: "Lĩnh vực khác", required: false, width: 11}
sections: false
default_section: collective
checks: [no-category, multiple-categories, bad-mark, empty-name, empty-model, empty-required, bad-integer,
         header-not-found, missing-column, duplicate-entry, no-entries, unit-mismatch, unit-missing, year-mismatch]
blank:
  order: 1
  sheet: "Biểu đăng ký"
  file_name: "Biểu đăng ký mô hình Dân vận khéo năm {year}"
  description: "Biểu đăng ký mô hình \\"Dân vận khéo\\" năm {year}"
  title: ["BIỂU ĐĂNG KÝ", "Mô hình \\"Dân vận khéo\\" năm {year}"]
  note: "Lưu ý: Đánh số (1) vào ô tương ứng trong mục phân loại mô hình"
  signature:
    title: "ĐẠI DIỆN TẬP THỂ/CÁ NHÂN ĐĂNG KÝ MÔ HÌNH"
    note: "(Ký, ghi rõ họ tên)"
  rows: 10
"""


def _rules_dir(tmp_path: Path, definition: str = DANG_KY_2023) -> Path:
    d = tmp_path / "rules"
    shutil.copytree(RULES_DIR, d)
    (d / "forms" / "dang-ky-2023.yaml").write_text(definition, encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_rules(_rules_dir(tmp_path_factory.mktemp("r")))


GOOD = [("Tổ Văn phòng", "Dọn vệ sinh ngõ xóm cùng nhân dân", "BVMT", 12, "Quý II/2023"),
        ("Tổ chuyên môn khối 5", "Tuyên truyền an toàn giao thông", "ANQP", "25", None)]
BAD = [("Tổ Bảo vệ", "Tuần tra đêm cùng công an phường", "ANQP", "mười", "Cả năm"),
       ("Tổ Hành chính", "Vận động bàn giao mặt bằng", "GPMB", 0, None),
       ("Nguyễn Văn An", "Nhắn tin nhắc đoàn viên", "Kinh tế", None, "Tháng 5")]


def _filled(rules: Any, rows: list[tuple[Any, ...]]) -> tuple[bytes, int, dict[str, int]]:
    blank = blank_form("dang-ky-2023", year=2023, unit_name=UNIT.name, rules=rules)
    return fill_blank(blank, rows, extra=("Số người tham gia", "Thời gian thực hiện"))


# ---------------------------------------------------------------- the new form, end to end in the reader
def test_new_form_has_a_fillable_blank_form(rules: Any, tmp_path: Path) -> None:
    data = blank_form("dang-ky-2023", year=2023, unit_name=UNIT.name, rules=rules)
    assert read_marker(data, rules) == {"form": "dang-ky-2023", "version": "1", "year": "2023", "unit": UNIT.name}
    ws = load_workbook(io.BytesIO(data)).active
    header, cols = blank_columns(ws)
    assert ws.title == "Biểu đăng ký"
    assert [ws.cell(header - 3, 1).value, ws.cell(header - 2, 1).value] == [
        "BIỂU ĐĂNG KÝ", 'Mô hình "Dân vận khéo" năm 2023']
    assert list(cols) == ["TT", "Tên tập thể, cá nhân", "Tên mô hình", "PHÂN LOẠI MÔ HÌNH", "GPMB", "Kinh tế",
                          "Chỉnh trang đô thị", "BVMT", "VHXH", "ANQP", "Lĩnh vực khác", "Số người tham gia",
                          "Thời gian thực hiện", "Ghi chú"]
    people = get_column_letter(cols["Số người tham gia"])
    [whole] = [dv for dv in ws.data_validations.dataValidation if dv.operator == "greaterThanOrEqual"]
    assert (whole.type, whole.formula1, whole.showErrorMessage) == ("whole", "1", True)
    assert "số nguyên từ 1 trở lên" in whole.error
    assert f"{people}{header + 2}" in whole.sqref and f"{people}{header + 11}" in whole.sqref  # rows: 10
    assert f"{people}{header + 12}" not in whole.sqref
    assert not ws.cell(header + 2, cols["Số người tham gia"]).protection.locked
    # the blank form goes out with rejections and reminders, and `intake forms` writes it
    name, attached, _ = form_attachment("dang-ky-2023", year=2023, unit_name=UNIT.name, rules=rules)  # type: ignore[misc]
    assert name == form_filename("dang-ky-2023", year=2023, unit_name=UNIT.name, rules=rules)
    assert read_marker(attached, rules)["form"] == "dang-ky-2023"  # type: ignore[index]
    [path] = write_forms(tmp_path, year=2023, forms=("dang-ky-2023",), rules=rules)
    assert path.name == "Biểu đăng ký mô hình Dân vận khéo năm 2023.xlsx"
    assert form_attachment("report", year=2023, rules=rules) is None


def test_filled_new_form_reads_back_with_no_finding(rules: Any) -> None:
    data, header, _ = _filled(rules, GOOD)
    r = read_document("bieu.xlsx", data, unit=UNIT, year=2023, campaigns=CAMPAIGNS, rules=rules, isolated=True)
    assert [(f.code, f.location) for f in r.findings] == []
    assert (r.kind, r.campaign, r.state, r.period) == ("dang-ky-2023", 2023, "accepted", None)
    assert [(e.section, e.name, e.categories, e.extra, e.row) for e in r.entries] == [
        ("collective", "Tổ Văn phòng", ("bvmt",), (("so_nguoi", "12"), ("thoi_gian", "Quý II/2023")), header + 2),
        ("collective", "Tổ chuyên môn khối 5", ("anqp",), (("so_nguoi", "25"),), header + 3),
    ]
    assert r.unit_line == UNIT.name


def test_bad_cells_of_the_new_form_are_findings_at_the_cell(rules: Any) -> None:
    data, header, cols = _filled(rules, GOOD + BAD)
    r = read_document("dang ky 2023.xlsx", data, unit=UNIT, year=2023, campaigns=CAMPAIGNS, rules=rules,
                      isolated=True)
    people = get_column_letter(cols["Số người tham gia"])
    first_bad = header + 2 + len(GOOD)
    where = [f"'Biểu đăng ký'!{people}{first_bad + i}" for i in range(3)]
    # the message names the cell as people do, once: "ô I9, trang Biểu đăng ký"
    said = [f"{people}{first_bad + i}, trang Biểu đăng ký" for i in range(3)]
    assert (r.kind, r.campaign, r.state) == ("dang-ky-2023", 2023, "rejected")
    assert [(f.code, f.severity, f.location, f.row, f.column) for f in r.findings] == [
        ("bad-integer", "error", where[0], first_bad, "Số người tham gia"),
        ("bad-integer", "error", where[1], first_bad + 1, "Số người tham gia"),
        ("empty-required", "error", where[2], first_bad + 2, "Số người tham gia"),
    ]
    assert r.findings[0].message == (
        f"Ô {said[0]} (cột Số người tham gia): «mười» không phải số nguyên từ 1 trở lên. "
        "Sửa: ghi số nguyên từ 1 trở lên bằng chữ số (ví dụ 12), không ghi chữ hay dấu.")
    assert "«0» không phải số nguyên từ 1 trở lên" in r.findings[1].message
    assert r.findings[2].message.startswith(f"Ô {said[2]}: chưa ghi Số người tham gia cho mô hình "
                                            "«Nhắn tin nhắc đoàn viên»")
    # the values stay as written, for staff to see what the unit sent
    assert [e.extra for e in r.entries[len(GOOD):]] == [
        (("so_nguoi", "mười"), ("thoi_gian", "Cả năm")), (("so_nguoi", "0"),), (("thoi_gian", "Tháng 5"),)]


def test_old_layout_titled_2023_is_the_2023_form_missing_its_column(rules: Any) -> None:
    data = samples.registration_xlsx(UNIT.name, E2, year=2023)
    r = read_document("dk.xlsx", data, unit=UNIT, year=2023, campaigns=CAMPAIGNS, rules=rules, isolated=False)
    assert (r.kind, r.campaign, r.state, r.entries) == ("dang-ky-2023", 2023, "rejected", ())
    assert r.findings[0].code == "header-not-found"
    assert "thiếu các cột: Số người tham gia." in r.findings[0].message


# ---------------------------------------------------------------- the campaign a document belongs to
def test_2022_registration_arriving_in_2023_counts_for_2022(rules: Any) -> None:
    data = samples.registration_xlsx(UNIT.name, E2, year=2022)
    for isolated in (True, False):
        r = read_document("Đăng ký.xlsx", data, unit=UNIT, year=2023, campaigns=CAMPAIGNS, rules=rules,
                          isolated=isolated)
        assert (r.kind, r.campaign, r.state, r.findings) == ("registration", 2022, "accepted", ())
        assert [(e.name, e.categories, e.extra) for e in r.entries] == [(n, (c,), ()) for n, _, c in E2]


def test_late_2022_annual_report_counts_for_2022(rules: Any) -> None:
    data = samples.report_docx(UNIT.name, "BÁO CÁO Kết quả thực hiện quý IV năm 2022")
    r = read_document("bc.docx", data, unit=UNIT, year=2023, campaigns=CAMPAIGNS, rules=rules)
    assert (r.kind, r.period, r.campaign, r.state, r.findings) == ("report", "2022-Y", 2022, "accepted", ())
    # The year comes from the title, never from the date line ("Long Biên, ngày 10 tháng 03 năm 2022").
    r = read_document("bc.docx", samples.report_docx(UNIT.name, "BÁO CÁO Kết quả thực hiện quý I"),
                      year=2023, campaigns=CAMPAIGNS, rules=rules)
    assert (r.period, r.campaign, r.findings) == ("2023-Q1", 2023, ())


def test_a_year_before_every_campaign_is_the_arrival_campaign_with_a_warning(rules: Any) -> None:
    data = samples.report_docx(UNIT.name, "BÁO CÁO Kết quả thực hiện quý I năm 2021")
    r = read_document("bc.docx", data, year=2023, campaigns=CAMPAIGNS, rules=rules)
    assert (r.kind, r.period, r.campaign, r.state) == ("report", "2023-Q1", 2023, "accepted")
    assert [(f.code, f.severity) for f in r.findings] == [("year-mismatch", "warning")]
    assert "năm 2021" in r.findings[0].message and "năm 2023" in r.findings[0].message


def test_file_name_then_subject_name_the_year(rules: Any) -> None:
    data = samples.registration_xlsx(UNIT.name, E2, variant="no-title")
    r = read_document("Dang ky nam 2022.xlsx", data, unit=UNIT, year=2023, campaigns=CAMPAIGNS, rules=rules)
    assert (r.kind, r.campaign, r.state) == ("registration", 2022, "accepted")
    r = read_document("dk.xlsx", data, unit=UNIT, subject="Đăng ký năm 2022", year=2023, campaigns=CAMPAIGNS,
                      rules=rules)
    assert (r.kind, r.campaign) == ("registration", 2022)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    r = read_document("bao cao quy IV nam 2022.png", png, year=2023, campaigns=CAMPAIGNS, rules=rules)
    assert (r.kind, r.period, r.campaign, r.state) == ("report", "2022-Y", 2022, "needs_review")
    r = read_document("bao cao.png", png, subject="Báo cáo 6 tháng", year=2023, campaigns=CAMPAIGNS, rules=rules)
    assert (r.period, r.campaign) == ("2023-H1", 2023)
    r = read_document("dang ky 2022.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, year=2023,
                      campaigns=CAMPAIGNS, rules=rules)
    assert (r.kind, r.campaign) == ("registration", 2022)


def test_without_campaigns_the_arrival_year_and_every_form() -> None:
    r = read_document("dk.xlsx", samples.registration_xlsx(UNIT.name, E2), unit=UNIT)
    assert (r.kind, r.campaign, r.state) == ("registration", 2022, "accepted")
    r = read_document("x.xlsx", b"")
    assert (r.state, r.campaign) == ("rejected", 2022)


# ---------------------------------------------------------------- definitions: checked, and what people see
@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("short_name:", "colour: red\nshort_name:", "colour"),
        ('    type: integer\n', '    type: number\n', "columns[4].type"),
        ('  - {code: kinh_te, label: "Kinh tế"}', '  - {label: "Kinh tế"}', "categories[1].code"),
        ('  - {key: note, label: "Ghi chú", width: 20}', '  - {key: model, label: "Ghi chú"}', "columns[6].key"),
        ("    min: 1\n", "    min: 1\n    maxx: 5\n", "columns[4].maxx"),
        ("id: dang-ky-2023", "id: dang-ky-2024", "id"),
        ('synonyms: ["Thời gian"]', 'synonyms: ["Tên mô hình"]', "columns[5]"),
        ("checks: [no-category,", "checks: [no-such-check,", "checks[0]"),
    ],
)
def test_a_definition_with_a_mistake_is_refused_naming_file_and_key(tmp_path: Path, old: str, new: str,
                                                                     key: str) -> None:
    assert old in DANG_KY_2023
    d = _rules_dir(tmp_path, DANG_KY_2023.replace(old, new, 1))
    with pytest.raises(ConfigError) as exc:
        load_rules(d)
    assert f"dang-ky-2023.yaml: {key}" in str(exc.value)


def test_lookups_for_what_people_see(rules: Any) -> None:
    shipped = default_rules()
    for kind in ("registration", "summary", "commendation", "report", "unknown"):
        assert shipped.kind_label(kind) == KIND_LABELS[kind]
    assert shipped.forms["registration"].category_labels() == CATEGORY_LABELS
    assert shipped.category_labels(("report", "summary", "registration")) == CATEGORY_LABELS
    assert [c.code for c in shipped.forms["summary"].categories if c.printed] == list(CATEGORY_LABELS)[:6]
    assert shipped.blank_forms() == ("registration", "summary", "commendation")
    assert shipped.blank_forms(("report", "commendation", "registration")) == ("registration", "commendation")
    form = rules.forms["dang-ky-2023"]
    assert rules.kind_label("dang-ky-2023") == "Biểu đăng ký mô hình “Dân vận khéo” (mẫu 2023)"
    assert [(c.key, c.label, c.type) for c in form.extra_columns] == [
        ("so_nguoi", "Số người tham gia", "integer"), ("thoi_gian", "Thời gian thực hiện", "text")]
    assert [c.key for c in form.columns] == ["tt", "name", "model", "group", "so_nguoi", "thoi_gian", "note"]
    assert form.label("khac") == "Lĩnh vực khác" and form.short_name == "Biểu đăng ký 2023"


def _untitled(data: bytes) -> bytes:
    """The workbook without its title lines and form number: only the table's shape says what it is."""
    wb = load_workbook(io.BytesIO(data))
    ws = wb.active
    for row in ws.iter_rows(max_row=5):
        for c in row:
            if isinstance(c.value, str) and not c.value.startswith(("ĐƠN VỊ", ".....")):
                c.value = None
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_the_shape_decides_when_nothing_names_the_form() -> None:
    ind = [("Trần Thị Bình", "Nhắn tin nhắc nộp quỹ", "vhxh")]
    r = read_document("x.xlsx", _untitled(samples.summary_xlsx(UNIT.name, E2, ind)), unit=UNIT)
    assert (r.kind, r.state, r.findings, r.title) == ("summary", "accepted", (), None)
    assert [(e.section, e.name, e.categories) for e in r.entries] == [
        ("collective", n, (c,)) for n, _, c in E2] + [("individual", "Trần Thị Bình", ("vhxh",))]
    col = [(*e, "Tốt") for e in E2]
    r = read_document("x.xlsx", _untitled(samples.commendation_xlsx(UNIT.name, col, [])), unit=UNIT)
    assert (r.kind, r.state, [e.result for e in r.entries]) == ("commendation", "accepted", ["Tốt", "Tốt"])
