"""Forms: the plan's three forms and the reports, read end to end through read_document."""
from __future__ import annotations

import pytest

from pipeline.forms import read_document, summarise
from intake_demo import samples
from pipeline.model import Unit

UNIT = Unit("th014", "Công đoàn Trường Tiểu học Ái Mộ", "truong_hoc", ("thaimo.longbien@gmail.com",))
ENTRIES = [
    ("Tổ Văn phòng", "Dọn vệ sinh ngõ xóm cùng nhân dân", "bvmt"),
    ("Nguyễn Văn An", "Vận động gia đình bàn giao mặt bằng", "gpmb"),
    ("Tổ chuyên môn khối 5", "Tuyên truyền an toàn giao thông", "anqp"),
]


def flat(reading):  # type: ignore[no-untyped-def]
    return [(f.code, f.location) for f in reading.findings]


@pytest.mark.parametrize("variant", samples.VARIANTS)
def test_registration_xlsx_variants_read_back(variant: str) -> None:
    data = samples.registration_xlsx(UNIT.name, ENTRIES, variant=variant)
    r = read_document("dang ky mo hinh.xlsx", data, unit=UNIT)
    assert (r.kind, r.state, r.format, r.period) == ("registration", "accepted", "xlsx", None)
    assert flat(r) == []
    assert [(e.section, e.name, e.model, e.categories) for e in r.entries] == [
        ("collective", n, m, (c,)) for n, m, c in ENTRIES
    ]
    assert r.unit_line == UNIT.name


def test_registration_docx_reads_back() -> None:
    r = read_document("dangky.docx", samples.registration_docx(UNIT.name, ENTRIES), unit=UNIT)
    assert (r.kind, r.state, r.format) == ("registration", "accepted", "docx")
    assert [(e.name, e.categories, e.location) for e in r.entries] == [
        (n, (c,), f"Bảng 1, dòng {i}") for i, (n, _, c) in enumerate(ENTRIES, start=3)
    ]


def test_summary_and_commendation_sections() -> None:
    ind = [("Trần Thị Bình", "Nhắn tin nhắc nộp quỹ", "vhxh")]
    r = read_document("m2.xlsx", samples.summary_xlsx(UNIT.name, ENTRIES, ind), unit=UNIT)
    assert (r.kind, r.state) == ("summary", "accepted")
    assert [e.section for e in r.entries] == ["collective"] * 3 + ["individual"]
    counts = summarise(r)
    assert counts["collective"]["bvmt"] == 1 and counts["individual"]["vhxh"] == 1

    col = [(*e, "Hoàn thành xuất sắc") for e in ENTRIES]
    r = read_document("de xuat.xlsx", samples.commendation_xlsx(UNIT.name, col, []), unit=UNIT)
    assert (r.kind, r.state) == ("commendation", "accepted")
    assert {e.result for e in r.entries} == {"Hoàn thành xuất sắc"}


def test_report_docx_period() -> None:
    r = read_document("bc.docx", samples.report_docx(UNIT.name), unit=UNIT)
    assert (r.kind, r.period, r.state) == ("report", "2022-Q1", "accepted")


def test_unknown_is_needs_review() -> None:
    r = read_document("anh.jpg", b"\xff\xd8\xff\xe0" + b"0" * 100)
    assert (r.kind, r.state) == ("unknown", "needs_review")
    r = read_document("x.txt", b"hello")
    assert r.state == "needs_review"
