"""Forms: every format units send, and hostile files, end to end through read_document."""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import formfiles as ff  # noqa: E402

from pipeline.forms import isolation, precheck, read_document  # noqa: E402
from intake_demo import samples
from pipeline.model import Unit  # noqa: E402
from pipeline.forms.rules import default_rules  # noqa: E402

UNIT_NAME = "Công đoàn Trường Tiểu học Ái Mộ"
UNIT = Unit("th014", UNIT_NAME, "truong_hoc", ())
E2 = [("Tổ Văn phòng", "Dọn vệ sinh ngõ xóm", "bvmt"), ("Nguyễn Văn An", "Vận động bàn giao mặt bằng", "gpmb")]
DATA = Path(__file__).resolve().parent / "data" / "forms"


def summary(r):  # type: ignore[no-untyped-def]
    return (r.kind, r.state, r.format, [(f.code, f.location) for f in r.findings])


def entries(r):  # type: ignore[no-untyped-def]
    return [(e.section, e.name, e.categories) for e in r.entries]


EXPECTED = [("collective", n, (c,)) for n, _, c in E2]


def test_xls() -> None:
    r = read_document("dang ky.xls", ff.registration_xls(UNIT_NAME, E2), unit=UNIT)
    assert summary(r) == ("registration", "accepted", "xls", [])
    assert entries(r) == EXPECTED
    assert r.entries[0].location == "Sheet1!B7"


def test_ods() -> None:
    r = read_document("dang ky.ods", ff.registration_ods(UNIT_NAME, E2), unit=UNIT)
    assert summary(r) == ("registration", "accepted", "ods", [])
    assert entries(r) == EXPECTED
    assert r.entries[1].location == "'Trang tính1'!B8"


def test_xlsm_read_as_data() -> None:
    r = read_document("dang ky.xlsm", ff.with_macro(samples.registration_xlsx(UNIT_NAME, E2)), unit=UNIT)
    assert summary(r) == ("registration", "accepted", "xlsm", [])
    assert entries(r) == EXPECTED


def test_format_from_content_not_name() -> None:
    r = read_document("dang ky.xls", samples.registration_xlsx(UNIT_NAME, E2), unit=UNIT)
    assert summary(r) == ("registration", "accepted", "xlsx", [])


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (lambda: samples.registration_docx(UNIT_NAME, E2), "registration"),
        (lambda: samples.summary_docx(UNIT_NAME, E2[:1], E2[1:]), "summary"),
        (lambda: samples.commendation_docx(UNIT_NAME, [(*E2[0], "Tốt")], [(*E2[1], "Xuất sắc")]), "commendation"),
    ],
)
def test_word_tables(build, kind: str) -> None:  # type: ignore[no-untyped-def]
    r = read_document("bieu.docx", build(), unit=UNIT)
    assert summary(r) == (kind, "accepted", "docx", [])
    assert [e.name for e in r.entries] == [n for n, _, _ in E2]


def test_word_table_merged_name_and_word_findings() -> None:
    from docx import Document

    doc = Document()
    doc.add_paragraph("ĐƠN VỊ: " + UNIT_NAME)
    doc.add_paragraph("BIỂU ĐĂNG KÝ")
    t = doc.add_table(rows=5, cols=11)
    heads = ["TT", "Tên tập thể, cá nhân", "Tên mô hình"]
    for j, h in enumerate(heads):
        t.cell(0, j).text = h
        t.cell(0, j).merge(t.cell(1, j))
    t.cell(0, 3).merge(t.cell(0, 9)).text = "PHÂN LOẠI MÔ HÌNH"
    for j, c in enumerate(samples.REG_CATEGORIES):
        t.cell(1, 3 + j).text = c
    t.cell(0, 10).text = "Ghi chú"
    t.cell(2, 1).text = "Tổ Văn phòng"
    t.cell(2, 1).merge(t.cell(3, 1))
    t.cell(2, 2).text = "Mô hình 1"
    t.cell(2, 6).text = "x"
    t.cell(3, 2).text = "Mô hình 2"  # no mark
    t.cell(4, 2).text = "Mô hình 3"
    t.cell(4, 1).text = "Nguyễn Văn An"
    t.cell(4, 3).text = "✓"
    import io

    buf = io.BytesIO()
    doc.save(buf)
    r = read_document("dk.docx", buf.getvalue(), unit=UNIT)
    assert summary(r) == ("registration", "rejected", "docx", [("no-category", "Bảng 1, dòng 4")])
    assert [(e.name, e.model, e.categories) for e in r.entries] == [
        ("Tổ Văn phòng", "Mô hình 1", ("bvmt",)),
        ("Tổ Văn phòng", "Mô hình 2", ()),
        ("Nguyễn Văn An", "Mô hình 3", ("gpmb",)),
    ]
    assert r.findings[0].column == "PHÂN LOẠI MÔ HÌNH"


def test_encrypted_workbook() -> None:
    r = read_document("dang ky.xlsx", ff.encrypted(samples.registration_xlsx(UNIT_NAME, E2)))
    assert summary(r) == ("registration", "rejected", "xlsx", [("file-encrypted", None)])
    assert "mật khẩu" in r.findings[0].message


def test_corrupt_zip() -> None:
    r = read_document("x.xlsx", ff.corrupt_zip(samples.registration_xlsx(UNIT_NAME, E2)))
    assert summary(r) == ("unknown", "rejected", "xlsx", [("file-corrupt", None)])


def test_garbage_inside_a_good_zip() -> None:
    data = ff.rewrite_part(samples.registration_xlsx(UNIT_NAME, E2), "xl/workbook.xml", lambda b: b"<not xml")
    r = read_document("x.xlsx", data)
    assert summary(r) == ("unknown", "rejected", "xlsx", [("file-corrupt", None)])


def test_empty_and_truncated_files() -> None:
    assert summary(read_document("x.xlsx", b"")) == ("unknown", "rejected", "xlsx", [("file-corrupt", None)])
    assert summary(read_document("x.docx", b"PK\x03\x04garbage"))[1] == "rejected"
    assert summary(read_document("x.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600))[1] == "rejected"


def test_precheck_verdicts_on_unusual_and_broken_packages() -> None:
    """The format comes from the package, not the name; packages in shapes office programs rarely write
    (zip64, stored, data before the zip) pass; broken copies get a verdict, never an exception."""
    import io
    import random
    import zipfile

    limits = default_rules().limits
    xlsx = samples.registration_xlsx(UNIT_NAME, E2)
    with zipfile.ZipFile(io.BytesIO(xlsx)) as src:
        parts = [(i.filename, src.read(i)) for i in src.infolist()]
    z64, stored = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(z64, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in parts:
            with z.open(name, "w", force_zip64=True) as fh:
                fh.write(body)
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as z:
        for name, body in parts:
            z.writestr(name, body)
    prefixed = xlsx[:4] + b"\0" * 8 + xlsx
    for data in (xlsx, z64.getvalue(), stored.getvalue(), prefixed):
        assert precheck.check("a.xlsx", data, limits) == precheck.Verdict("xlsx")
    assert precheck.check("a.ods", xlsx, limits) == precheck.Verdict("xlsx")
    assert precheck.check("a", ff.registration_ods(UNIT_NAME, E2), limits) == precheck.Verdict("ods")
    assert precheck.check("a.xlsx", xlsx[: len(xlsx) // 2], limits).problem == "file-corrupt"
    assert precheck.check("a.xlsx", xlsx, {**limits, "max_zip_members": 3}).problem == "file-bomb"

    rng = random.Random(20221)
    seen = set()
    for base in (xlsx, stored.getvalue(), samples.registration_docx(UNIT_NAME, E2), ff.far_cell_sheet()):
        for _ in range(100):
            data = bytearray(base)
            if rng.random() < 0.3:
                data = data[: rng.randrange(len(data))]
            else:
                for _ in range(rng.choice((1, 2, 5))):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            verdict = precheck.check("a.xlsx", bytes(data), limits)
            assert verdict.problem in (None, "file-corrupt", "file-encrypted", "file-too-large", "file-bomb")
            seen.add(verdict.problem)
    assert {None, "file-corrupt"} <= seen


def test_zip_bomb_rejected_fast() -> None:
    data = ff.zip_bomb(60)
    t = time.perf_counter()
    r = read_document("dang ky.xlsx", data)
    assert time.perf_counter() - t < 1
    assert summary(r) == ("registration", "rejected", "xlsx", [("file-bomb", None)])


def test_far_cell_sheet_rejected_by_precheck() -> None:
    r = read_document("x.xlsx", ff.far_cell_sheet())
    assert summary(r) == ("unknown", "rejected", "xlsx", [("file-too-large", None)])
    assert "XFD1048576" in r.findings[0].message


def test_far_cell_sheet_without_dimension_kills_only_the_worker() -> None:
    t = time.perf_counter()
    r = read_document("x.xlsx", ff.far_cell_sheet(keep_dimension=False))
    assert time.perf_counter() - t < 5
    assert summary(r) == ("unknown", "rejected", "xlsx", [("file-too-large", None)])
    # The next document is read by a fresh worker.
    r = read_document("dk.xlsx", samples.registration_xlsx(UNIT_NAME, E2))
    assert summary(r) == ("registration", "accepted", "xlsx", [])


def test_timeout_is_a_finding() -> None:
    rules = default_rules()
    slow = replace(rules, limits={**rules.limits, "worker_timeout_seconds": 0.05})
    r = read_document("dang ky.xlsx", ff.big_registration(20_000), rules=slow)
    assert summary(r) == ("registration", "rejected", "xlsx", [("file-timeout", None)])
    assert summary(read_document("dk.xlsx", samples.registration_xlsx(UNIT_NAME, E2)))[1] == "accepted"


def test_hundred_thousand_rows() -> None:
    data = ff.big_registration(100_000)
    r = read_document("dang ky.xlsx", data)  # how long it takes: bench/bench_parse.py
    assert summary(r) == ("registration", "accepted", "xlsx", [])
    assert len(r.entries) == 100_000 and r.entries[-1].location == "Sheet1!B100006"
    assert isolation.reader().last_stats["maxrss"] < 400 * 2**20


def test_pdf_report_text_and_pdf_form() -> None:
    pdf = ff.text_pdf(["CONG DOAN TRUONG TIEU HOC AI MO", "BAO CAO", "Ket qua thuc hien 9 thang nam 2022"])
    r = read_document("scan.pdf", pdf)
    assert (r.kind, r.period, r.state, r.format) == ("report", "2022-Q3", "accepted", "pdf")
    r = read_document("dang ky mo hinh.pdf", ff.text_pdf(["BIEU DANG KY"]))
    assert summary(r) == ("registration", "needs_review", "pdf", [("needs-review", None)])
    r = read_document("scan.pdf", b"%PDF-1.4\n garbage")
    assert r.state in ("rejected", "needs_review")


def test_images_and_other_formats_need_review() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    r = read_document("bao cao quy 1.png", png)
    assert (r.kind, r.period, r.state, r.format) == ("report", "2022-Q1", "needs_review", "png")
    r = read_document("IMG_0001.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 64)
    assert summary(r) == ("unknown", "needs_review", "jpg", [("needs-review", None)])
    doc = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "WordDocument".encode("utf-16-le") + b"\0" * 600
    r = read_document("dang ky.doc", doc)
    assert (r.kind, r.state, r.format) == ("registration", "needs_review", "doc")
    assert read_document("notes.txt", b"hello").state == "needs_review"


def test_never_raises_on_junk() -> None:
    import random

    rng = random.Random(7)
    base = samples.registration_xlsx(UNIT_NAME, E2)
    for i in range(30):
        data = bytearray(base)
        for _ in range(20):
            data[rng.randrange(len(data))] = rng.randrange(256)
        r = read_document(f"f{i}.xlsx", bytes(data))
        assert r.state in ("accepted", "rejected", "needs_review")


def test_committed_fixtures() -> None:
    import json

    expected = json.loads((DATA / "expected.json").read_text(encoding="utf-8"))
    for name, want in expected.items():
        r = read_document(name, (DATA / name).read_bytes(), unit=UNIT)
        got = {
            "kind": r.kind,
            "state": r.state,
            "period": r.period,
            "findings": [[f.code, f.location] for f in r.findings],
            "entries": [[e.section, e.name, list(e.categories)] for e in r.entries],
        }
        assert got == want, name
