"""Forms: what a person sees wrong in a filled form, each issue at the cell the unit sees."""
from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import formfiles as ff  # noqa: E402

from pipeline.errors import ConfigError  # noqa: E402
from pipeline.forms import read_document  # noqa: E402
from intake_demo import samples
from pipeline.forms.kinds import detect_period  # noqa: E402
from pipeline.model import Unit  # noqa: E402
from pipeline.forms.rules import default_rules, load_rules  # noqa: E402

UNIT_NAME = "Công đoàn Trường Tiểu học Ái Mộ"
UNIT = Unit("th014", UNIT_NAME, "truong_hoc", ("thaimo.longbien@gmail.com",))
E2 = [("Tổ Văn phòng", "Dọn vệ sinh ngõ xóm", "bvmt"), ("Nguyễn Văn An", "Vận động bàn giao mặt bằng", "gpmb")]
RULES_DIR = Path(__file__).resolve().parents[1] / "rules"


def xlsx(rows: list[list[Any]], merges: list[str] = (), title: str = "Sheet1") -> bytes:  # type: ignore[assignment]
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = title
    for row in rows:
        ws.append(row)
    for m in merges:
        ws.merge_cells(m)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def reg_rows(entries: list[tuple[str, str, str]] = E2) -> list[list[Any]]:  # type: ignore[assignment]
    return ff.rows_of(UNIT_NAME, entries)


def read(rows: list[list[Any]], name: str = "dang ky.xlsx", **kw: Any):  # type: ignore[no-untyped-def]
    return read_document(name, xlsx(rows), unit=UNIT, **kw)


def flat(r) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    return [(f.code, f.location) for f in r.findings]


# Rows of ff.rows_of: header on rows 5-6, entries from row 7; columns A TT, B name, C model,
# D GPMB, E Kinh tế, F Chính trang, G BVMT, H VHXII, I ANQP, J Lĩnh vực khác, K Ghi chú.


def test_no_category() -> None:
    rows = reg_rows()
    rows[7][3] = None  # Nguyễn Văn An's GPMB mark
    r = read(rows)
    assert flat(r) == [("no-category", "Sheet1!D8")]
    assert r.state == "rejected"
    assert r.findings[0].row == 8 and "Vận động bàn giao mặt bằng" in r.findings[0].message


def test_multiple_categories_and_bad_mark() -> None:
    rows = reg_rows()
    rows[6][5] = "x"  # a second mark on row 7
    rows[7][4] = "có"  # not a mark
    r = read(rows)
    assert flat(r) == [("multiple-categories", "Sheet1!G7"), ("bad-mark", "Sheet1!E8")]
    assert r.findings[1].column == "Kinh tế"
    assert "«có»" in r.findings[1].message


@pytest.mark.parametrize("mark", [1, 1.0, "1", "x", "X", "✓", "v", " x ", "✔"])
def test_marks_accepted(mark: Any) -> None:
    rows = reg_rows()
    rows[6][6] = None
    rows[6][5] = mark
    r = read(rows)
    assert flat(r) == [] and r.entries[0].categories == ("chinh_trang_do_thi",)


@pytest.mark.parametrize("mark", [2, 0, "?", "có", "xx"])
def test_marks_refused(mark: Any) -> None:
    rows = reg_rows()
    rows[6][6] = mark
    assert flat(read(rows)) == [("bad-mark", "Sheet1!G7")]


def test_empty_name_and_model() -> None:
    rows = reg_rows()
    rows[6][1] = None
    rows[7][2] = "  "
    r = read(rows)
    assert flat(r) == [("empty-name", "Sheet1!B7"), ("empty-model", "Sheet1!C8")]


def test_duplicate_entry() -> None:
    rows = reg_rows([*E2, ("TỔ VĂN PHÒNG", "Dọn vệ sinh ngõ xóm", "bvmt")])
    r = read(rows)
    assert flat(r) == [("duplicate-entry", "Sheet1!B9")]
    assert "dòng 7" in r.findings[0].message


def test_no_entries() -> None:
    r = read(reg_rows([]))
    assert (r.kind, r.state, flat(r)) == ("registration", "rejected", [("no-entries", None)])


def test_header_not_found_names_missing_columns() -> None:
    rows = [["ĐƠN VỊ: " + UNIT_NAME], ["BIỂU ĐĂNG KÝ"], ["TT", "Họ và tên", "Nội dung", "Ghi chú"], [1, "A", "B"]]
    r = read(rows)
    assert (r.kind, r.state, flat(r)) == ("registration", "rejected", [("header-not-found", None)])
    assert "Tên mô hình" in r.findings[0].message and "GPMB" in r.findings[0].message


def test_unrelated_workbook_is_unknown() -> None:
    r = read([["Danh sách đoàn viên"], ["Họ tên", "Ngày sinh"], ["A", "1990"]], name="doan vien.xlsx")
    assert (r.kind, r.state, flat(r)) == ("unknown", "needs_review", [("kind-unknown", None)])


def test_unit_mismatch_is_a_warning() -> None:
    other = Unit("dn027", "Công đoàn Công ty Cổ phần May Đức Giang", "doanh_nghiep", ())
    r = read_document("dk.xlsx", samples.registration_xlsx(UNIT_NAME, E2), unit=other)
    assert (r.state, flat(r)) == ("accepted", [("unit-mismatch", None)])
    assert r.unit_line == UNIT_NAME
    # Same unit written differently: case, "CĐCS" instead of "Công đoàn", NFD.
    import unicodedata

    line = unicodedata.normalize("NFD", "CĐCS TRƯỜNG TIỂU HỌC ÁI MỘ")
    r = read_document("dk.xlsx", samples.registration_xlsx(line, E2), unit=UNIT)
    assert flat(r) == []


def test_blank_unit_line_is_a_warning() -> None:
    rows = reg_rows()
    rows[0][0] = "ĐƠN VỊ....................."
    r = read(rows)
    assert (r.state, flat(r), r.unit_line) == ("accepted", [("unit-missing", None)], None)


def test_sections_totals_signature_blank_rows() -> None:
    rows = [
        ["Mẫu M2"],
        ["ĐƠN VỊ:", UNIT_NAME],
        ["BIỂU TỔNG HỢP"],
        ["TT", "Tên tập thể, cá nhân", "Tên mô hình", "PHÂN LOẠI MÔ HÌNH", None, None, None, None, None, "Ghi chú"],
        [None, None, None, "GPMB", "Kinh tế", "Chỉnh trang đô thị", "BVMT", "VHXH", "ANQP", None],
        ["I.", "tập thể"],
        [1, "Tổ Văn phòng", "Dọn vệ sinh", None, None, None, "x"],
        [],
        [2, "Tổ Bảo vệ", "Tuần tra", None, None, None, None, None, "x"],
        ["ii. cá nhân"],
        [1, "Nguyễn Văn An", "Bàn giao mặt bằng", 1],
        [None, "Tổng cộng", None, 1, 0, 0, 1, 0, 1],
        [],
        ["Lưu ý: Đánh số (1) vào ô tương ứng trong mục phân loại mô hình"],
        [None, None, None, None, None, None, "THỦ TRƯỞNG ĐƠN VỊ"],
        [None, None, None, None, None, None, "(Ký, đóng dấu)"],
        [None, None, None, None, None, None, "Nguyễn Thị Hoa"],
    ]
    r = read(rows, name="tong hop.xlsx")
    assert (r.kind, r.state, flat(r)) == ("summary", "accepted", [])
    assert [(e.section, e.name, e.categories, e.location) for e in r.entries] == [
        ("collective", "Tổ Văn phòng", ("bvmt",), "Sheet1!B7"),
        ("collective", "Tổ Bảo vệ", ("anqp",), "Sheet1!B9"),
        ("individual", "Nguyễn Văn An", ("gpmb",), "Sheet1!B11"),
    ]
    assert r.unit_line == UNIT_NAME


def test_vertically_merged_name_belongs_to_each_row() -> None:
    rows = reg_rows([("Tổ Văn phòng", "Mô hình 1", "bvmt"), ("", "Mô hình 2", "vhxh")])
    r = read_document("dk.xlsx", xlsx(rows, merges=["A5:A6", "B5:B6", "C5:C6", "D5:J5", "B7:B8"]), unit=UNIT)
    assert flat(r) == []
    assert [(e.name, e.model) for e in r.entries] == [("Tổ Văn phòng", "Mô hình 1"), ("Tổ Văn phòng", "Mô hình 2")]


def test_missing_category_column() -> None:
    cats = ["GPMB", "Kinh tế", "Chỉnh trang đô thị", "BVMT", "VHXH"]  # no ANQP
    r = read(ff.rows_of(UNIT_NAME, E2, cats))
    assert (r.state, flat(r)) == ("accepted", [("missing-column", None)])
    assert "ANQP" in r.findings[0].message


def test_m2_without_other_field_is_fine() -> None:
    r = read_document("m2.xlsx", samples.summary_xlsx(UNIT_NAME, E2, []), unit=UNIT)
    assert (r.kind, r.state, flat(r)) == ("summary", "accepted", [])


def test_title_decides_before_filename_and_subject() -> None:
    data = samples.summary_xlsx(UNIT_NAME, E2, [])
    assert read_document("dang_ky.xlsx", data, subject="Báo cáo quý I").kind == "summary"
    data = samples.registration_xlsx(UNIT_NAME, E2, variant="no-title")
    assert read_document("Bieu tong hop.xlsx", data).kind == "summary"
    assert read_document("x.xlsx", data, subject="Gửi danh sách đề xuất khen thưởng").kind == "commendation"
    assert read_document("x.xlsx", data).kind == "registration"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BÁO CÁO Kết quả thực hiện quý I năm 2022", "Q1"),
        ("bao cao quy 1", "Q1"),
        ("BC_Q1_2022", "Q1"),
        ("Báo cáo QUÝ II", "H1"),
        ("Báo cáo sơ kết 6 tháng đầu năm 2022", "H1"),
        ("BAO CAO 6 THANG", "H1"),
        ("Báo cáo quý III", "Q3"),
        ("bao cao 9 thang nam 2022", "Q3"),
        ("Báo cáo quý 3", "Q3"),
        ("Báo cáo tổng kết năm 2022", "Y"),
        ("Báo cáo kết quả thực hiện năm 2022", "Y"),
        ("Báo cáo quý IV", "Y"),
        ("Báo cáo kết quả", None),
    ],
)
def test_periods(text: str, expected: str | None) -> None:
    import unicodedata

    assert detect_period(text)[0] == expected
    assert detect_period(unicodedata.normalize("NFD", text))[0] == expected


def test_report_period_from_filename_then_subject() -> None:
    data = samples.report_docx(UNIT_NAME, "BÁO CÁO Kết quả thực hiện chủ đề công tác")
    r = read_document("BC 6 thang.docx", data)
    assert (r.kind, r.period, r.state) == ("report", "2022-H1", "accepted")
    r = read_document("baocao.docx", data, subject="Báo cáo quý III năm 2022")
    assert (r.kind, r.period, r.state) == ("report", "2022-Q3", "accepted")
    r = read_document("baocao.docx", data, subject="gửi báo cáo")
    assert (r.kind, r.period, r.state, flat(r)) == ("report", None, "needs_review", [("period-not-found", None)])


def test_report_year_typo_is_a_warning() -> None:
    r = read_document("bc.docx", samples.report_docx(UNIT_NAME, "BÁO CÁO Kết quả thực hiện quý I năm 2021"))
    assert (r.period, r.state, flat(r)) == ("2022-Q1", "accepted", [("year-mismatch", None)])


def test_many_findings_are_capped() -> None:
    rows = reg_rows([("Tổ %d" % i, "Mô hình %d" % i, "bvmt") for i in range(100)])
    for row in rows[6:106]:
        row[6] = None
    r = read(rows)
    codes = [f.code for f in r.findings]
    assert codes.count("no-category") == 30 and codes[-1] == "too-many-findings"
    assert "70" in r.findings[-1].message


# ---------------------------------------------------------------- rules as data
def _rules_copy(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    shutil.copytree(RULES_DIR, d)
    return d


def test_rules_load_and_are_data(tmp_path: Path) -> None:
    d = _rules_copy(tmp_path)
    v = d / "validation.yaml"
    v.write_text(v.read_text(encoding="utf-8").replace(
        "  - type: unit-mismatch\n    code: unit-mismatch\n    severity: warning",
        "  - type: unit-mismatch\n    code: unit-mismatch\n    severity: error"), encoding="utf-8")
    s = d / "synonyms.yaml"
    s.write_text(s.read_text(encoding="utf-8").replace('anqp: ["ANQP"', 'anqp: ["An ninh trật tự", "ANQP"'),
                 encoding="utf-8")
    rules = load_rules(d)
    other = Unit("x", "Công đoàn khác hẳn", "hcsn", ())
    r = read_document("dk.xlsx", samples.registration_xlsx(UNIT_NAME, E2), unit=other, rules=rules)
    assert (r.state, flat(r)) == ("rejected", [("unit-mismatch", None)])
    cats = ["GPMB", "Kinh tế", "Chỉnh trang đô thị", "BVMT", "VHXH", "An ninh trật tự"]
    r = read_document("dk.xlsx", xlsx(ff.rows_of(UNIT_NAME, E2, cats)), rules=rules)
    assert flat(r) == []


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("- type: no-entries", "- type: no-such-check", "no-such-check"),
        ("    code: bad-mark\n", "    code: bad-mark\n    colour: red\n", "colour"),
        ("    severity: warning\n", "    severity: fatal\n", "severity"),
        ("Sửa: xoá dòng lặp lại.", "Sửa: {nonsense}", "nonsense"),
    ],
)
def test_bad_rules_fail_at_load_naming_file_and_rule(tmp_path: Path, old: str, new: str, needle: str) -> None:
    d = _rules_copy(tmp_path)
    v = d / "validation.yaml"
    text = v.read_text(encoding="utf-8")
    assert old in text
    v.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_rules(d)
    assert "validation.yaml" in str(exc.value) and needle in str(exc.value)


def test_unknown_synonym_column_fails(tmp_path: Path) -> None:
    d = _rules_copy(tmp_path)
    s = d / "synonyms.yaml"
    s.write_text(s.read_text(encoding="utf-8").replace("  tt: [", "  stt_typo: [", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match="synonyms.yaml.*stt_typo"):
        load_rules(d)


def test_default_rules_cached() -> None:
    assert default_rules() is default_rules()


@pytest.mark.parametrize(
    ("line", "unit", "same"),
    [
        ("CĐCS Trường TH Ái Mộ", UNIT_NAME, True),
        ("Công đoàn cơ sở trường Tiểu học Ái Mộ", UNIT_NAME, True),
        ("CĐ Cty CP May Đức Giang", "Công đoàn Công ty Cổ phần May Đức Giang", True),
        ("Trường THCS Ái Mộ", UNIT_NAME, False),
        ("Công đoàn Công ty Cổ phần May Đức Giang", UNIT_NAME, False),
    ],
)
def test_unit_line_matching(line: str, unit: str, same: bool) -> None:
    from pipeline.forms.core import unit_matches

    assert unit_matches(line, unit, default_rules()) is same
