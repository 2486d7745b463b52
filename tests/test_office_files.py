"""What real offices send (issue 12): Word 97-2003 .doc, LibreOffice .odt, .rtf, hidden rows and columns,
zip members that fail their CRC check, formulas without a stored result, and documents that cannot be read at
all, which take their kind, period and year from their name and the mail's subject.

The files are made at test time by LibreOffice headless from the project's sample forms (tests/officefiles.py).
The last test mails them to the real Dovecot and reads the receipts from the SMTP sink.
"""
from __future__ import annotations

import os
from datetime import datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import officefiles as of
from conftest import DISTRICT, Harness
from intake_demo import samplemail, samples
from pipeline.desk import actions
from pipeline.forms import convert, isolation, precheck, read_document, summarise
from pipeline.forms.readers import read_spreadsheet
from pipeline.forms.rules import default_rules
from pipeline.model import Unit

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
UNIT_NAME = "Công đoàn Trường Tiểu học Ái Mộ"
UNIT = Unit("th014", UNIT_NAME, "truong_hoc", ())
THIS_YEAR = [("Tổ Văn phòng", "Một cửa thân thiện", "gpmb"), ("Nguyễn Văn An", "Sổ sách minh bạch", "kinh_te")]
LAST_YEAR = [("Tổ cũ 1", "Mô hình năm 2021 A", "bvmt"), ("Tổ cũ 2", "Mô hình năm 2021 B", "vhxh"),
             ("Tổ cũ 3", "Mô hình năm 2021 C", "anqp")]
EXPECTED = [("collective", n, m, (c,)) for n, m, c in THIS_YEAR]
Q1_TITLE = "BÁO CÁO Kết quả thực hiện quý I năm 2022"


def entries(r: Any) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(e.section, e.name, e.model, e.categories) for e in r.entries]


def codes(r: Any) -> list[str]:
    return [f.code for f in r.findings]


# ---------------------------------------------------------------- .doc, .odt, .rtf read like .docx
@pytest.mark.parametrize("ext", ["doc", "odt", "rtf"])
def test_a_word_form_saved_by_libreoffice_reads_like_the_docx(ext: str) -> None:
    docx = samples.registration_docx(UNIT_NAME, THIS_YEAR)
    r = read_document(f"Biểu đăng ký.{ext}", of.convert(docx, "docx", ext), unit=UNIT)
    assert (r.kind, r.state, r.format, r.campaign, codes(r)) == ("registration", "accepted", ext, 2022, [])
    assert entries(r) == EXPECTED
    assert r.unit_line == UNIT_NAME
    assert r.entries[1].location == "Bảng 1, dòng 4"
    assert summarise(r)["collective"]["kinh_te"] == 1


@pytest.mark.parametrize("ext", ["doc", "odt"])
def test_sections_and_merged_header_of_a_summary_in_doc_and_odt(ext: str) -> None:
    docx = samples.summary_docx(UNIT_NAME, THIS_YEAR[:1], THIS_YEAR[1:])
    r = read_document(f"M2.{ext}", of.convert(docx, "docx", ext), unit=UNIT)
    assert (r.kind, r.state, codes(r)) == ("summary", "accepted", [])
    assert [(e.section, e.name, e.categories) for e in r.entries] == [
        ("collective", THIS_YEAR[0][0], ("gpmb",)), ("individual", THIS_YEAR[1][0], ("kinh_te",))]


@pytest.mark.parametrize("ext", ["doc", "odt", "rtf"])
def test_a_report_in_doc_odt_rtf_has_its_kind_period_and_year(ext: str) -> None:
    data = of.convert(samples.report_docx(UNIT_NAME, title=Q1_TITLE), "docx", ext)
    r = read_document(f"bc.{ext}", data, year=2023, campaigns=((2022, ("report",)), (2023, ("report",))))
    assert (r.kind, r.period, r.campaign, r.state, r.format) == ("report", "2022-Q1", 2022, "accepted", ext)
    assert r.title and "quý I năm 2022" in r.title


def test_formats_are_told_by_their_bytes() -> None:
    docx = samples.registration_docx(UNIT_NAME, THIS_YEAR)
    xlsx = samples.registration_xlsx(UNIT_NAME, THIS_YEAR)
    limits = default_rules().limits
    # The name says nothing: a .doc sent as "form.xls", an .odt as "form.docx".
    assert precheck.check("form.xls", of.convert(docx, "docx", "doc"), limits).format == "doc"
    assert precheck.check("form.docx", of.convert(docx, "docx", "odt"), limits).format == "odt"
    assert precheck.check("form.doc", of.convert(docx, "docx", "rtf"), limits).format == "rtf"
    assert precheck.check("form.doc", of.convert(xlsx, "xlsx", "xls"), limits).format == "xls"
    assert precheck.check("form.xlsx", of.convert(xlsx, "xlsx", "ods"), limits).format == "ods"


def test_a_password_protected_doc_is_said_to_be_so() -> None:
    doc = of.marked_encrypted(of.convert(samples.registration_docx(UNIT_NAME, THIS_YEAR), "docx", "doc"))
    r = read_document("Biểu đăng ký.doc", doc)
    assert (r.kind, r.state, r.format, codes(r)) == ("registration", "rejected", "doc", ["file-encrypted"])


def test_without_libreoffice_a_doc_goes_to_a_person(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    form = of.convert(samples.registration_docx(UNIT_NAME, THIS_YEAR), "docx", "doc")
    report = of.convert(samples.report_docx(UNIT_NAME, title="BÁO CÁO 6 tháng đầu năm 2022"), "docx", "rtf")
    odt = of.convert(samples.registration_docx(UNIT_NAME, THIS_YEAR), "docx", "odt")
    monkeypatch.setenv("PATH", str(tmp_path))  # no soffice on it; read in this process, which sees this PATH
    assert convert.soffice() is None
    r = read_document("Biểu đăng ký.doc", form, isolated=False)
    assert (r.kind, r.state, r.format, codes(r)) == ("registration", "needs_review", "doc", ["unsupported-format"])
    assert "chưa đọc tự động được" in r.findings[0].message and ".doc" in r.findings[0].message
    r = read_document("tep.rtf", report, subject="Báo cáo 6 tháng năm 2022", isolated=False)
    assert (r.kind, r.period, r.state, r.format) == ("report", "2022-H1", "needs_review", "rtf")
    # .odt needs no LibreOffice.
    assert read_document("dk.odt", odt, isolated=False).state == "accepted"


def test_a_doc_libreoffice_cannot_open_goes_to_a_person() -> None:
    junk = precheck.OLE_MAGIC + "WordDocument".encode("utf-16-le") + b"\x07" * 4000
    r = read_document("Báo cáo quý III.doc", junk)
    assert (r.kind, r.period, r.state, r.format, codes(r)) == (
        "report", "2022-Q3", "needs_review", "doc", ["unsupported-format"])
    r = read_document("Báo cáo quý III.doc", b"")
    assert (r.kind, r.period, r.state, codes(r)) == ("report", "2022-Q3", "rejected", ["file-corrupt"])


def test_a_web_page_saved_as_doc_is_read_through_libreoffice() -> None:
    # Programs that "export to Word" often write HTML under a .doc name; Word and LibreOffice open it.
    head = "".join(f"<td>{c}</td>" for c in samples.REG_CATEGORIES)
    html = ("<html><head><meta charset='utf-8'></head><body>"
            f"<p>ĐƠN VỊ: {UNIT_NAME}</p><p>BIỂU ĐĂNG KÝ</p><p>Mô hình \"Dân vận khéo\" năm 2022</p>"
            "<table border=1><tr><td rowspan=2>TT</td><td rowspan=2>Tên tập thể, cá nhân</td>"
            "<td rowspan=2>Tên mô hình</td><td colspan=7>PHÂN LOẠI MÔ HÌNH</td><td rowspan=2>Ghi chú</td></tr>"
            f"<tr>{head}</tr>"
            f"<tr><td>1</td><td>{THIS_YEAR[0][0]}</td><td>{THIS_YEAR[0][1]}</td><td>1</td>{'<td></td>' * 7}</tr>"
            "</table></body></html>").encode()
    r = read_document("Biểu đăng ký.doc", html, unit=UNIT)
    assert (r.kind, r.state, r.format, codes(r)) == ("registration", "accepted", "doc", [])
    assert entries(r) == EXPECTED[:1]


def test_libreoffice_overrunning_its_time_is_killed_with_its_whole_group() -> None:
    doc = of.convert(samples.registration_docx(UNIT_NAME, THIS_YEAR), "docx", "doc")
    exe = of.soffice()
    with pytest.raises(TimeoutError):
        convert.to_docx(exe, doc, "doc", 0.2)
    profile = convert._profile()
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if profile.encode() in cmdline and state != "Z":
            alive.append(pid)
    assert alive == [], "LibreOffice processes left running"
    # The conversion's share of the document's time leaves the reader time to answer before its parent gives up.
    assert convert.conversion_seconds(20) == 15 and convert.conversion_seconds(2) == 1.5
    assert convert.conversion_seconds(0.5) == 1.0


def test_libreoffice_runs_under_the_reading_process_memory_limit() -> None:
    rules = default_rules()
    assert rules.limits["worker_memory_bytes"] <= 2**30
    r = read_document("dk.doc", of.convert(samples.registration_docx(UNIT_NAME, THIS_YEAR), "docx", "doc"),
                      rules=rules)
    assert r.state == "accepted" and isolation.reader().memory_bytes == rules.limits["worker_memory_bytes"]


# ---------------------------------------------------------------- hidden rows and columns
@pytest.mark.parametrize("ext", ["xlsx", "xlsx-libreoffice", "xls", "ods"])
def test_hidden_rows_are_not_entries_and_the_receipt_says_how_many(ext: str) -> None:
    data = of.with_hidden_rows(UNIT_NAME, LAST_YEAR, THIS_YEAR)
    if ext != "xlsx":  # saved again by LibreOffice: the hidden flag as office software writes it
        data = of.convert(data, "xlsx", ext.split("-")[0])
    r = read_document("Biểu đăng ký." + ext.split("-")[0], data, unit=UNIT)
    assert (r.kind, r.state) == ("registration", "accepted")
    assert entries(r) == EXPECTED
    [f] = r.findings
    assert (f.code, f.severity, f.location) == ("hidden-rows", "warning", "Sheet1!A8")
    assert "Bỏ qua 3 dòng bị ẩn trong Sheet1" in f.message and "bỏ ẩn" in f.message
    assert sum(summarise(r)["collective"].values()) == 2


@pytest.mark.parametrize("ext", ["xlsx", "xls", "ods"])
def test_a_hidden_column_is_not_read(ext: str) -> None:
    # A stray mark in the hidden column "Lĩnh vực khác" would make two categories on the second entry.
    data = of.with_hidden_column(UNIT_NAME, THIS_YEAR, stray_row=1)
    if ext != "xlsx":
        data = of.convert(data, "xlsx", ext)
    r = read_document("dk." + ext, data, unit=UNIT)
    assert (r.state, codes(r), entries(r)) == ("accepted", [], EXPECTED)


def test_hidden_rows_outside_the_table_are_not_counted() -> None:
    def hide(ws: Any) -> None:
        ws.row_dimensions[4].hidden = True  # the title's second line, above the header
        ws.row_dimensions[13].hidden = True  # the signature block, below the table's end (the "Lưu ý" line)
    data = of._edit(samples.registration_xlsx(UNIT_NAME, THIS_YEAR), hide)
    r = read_document("dk.xlsx", data, unit=UNIT)
    assert (r.state, codes(r), entries(r)) == ("accepted", [], EXPECTED)


# ---------------------------------------------------------------- formulas without a stored result
def test_formulas_without_results_outside_the_entries_are_a_warning() -> None:
    r = read_document("dk.xlsx", of.with_formulas(UNIT_NAME, THIS_YEAR), unit=UNIT)
    assert (r.state, entries(r)) == ("accepted", EXPECTED)
    [f] = r.findings
    assert (f.code, f.severity, f.location) == ("formula-no-value-other", "warning", "Sheet1!A8")
    assert f.message.startswith("2 ô trong Sheet1 có công thức") and "Excel hoặc LibreOffice" in f.message


@pytest.mark.parametrize("strip", [False, True], ids=["empty-v", "no-v"])
def test_a_name_that_is_a_formula_without_result_is_an_error_naming_the_cell(strip: bool) -> None:
    data = of.with_formulas(UNIT_NAME, THIS_YEAR, name_row=1)
    if strip:
        data = of.without_v(data)
    r = read_document("dk.xlsx", data, unit=UNIT)
    assert r.state == "rejected"
    assert [(f.code, f.severity, f.location) for f in r.findings] == [
        ("formula-no-value", "error", "Sheet1!B9"), ("formula-no-value-other", "warning", "Sheet1!A8")]
    message = r.findings[0].message
    assert "Ô B9, trang Sheet1 (cột Tên tập thể, cá nhân) có công thức" in message
    assert "mở tệp bằng Excel hoặc LibreOffice rồi lưu lại" in message
    # Saved by LibreOffice, as the finding says: the results are stored and the file is accepted.
    saved = of.convert(data, "xlsx", "xlsx")
    r = read_document("dk.xlsx", saved, unit=UNIT)
    assert (r.state, codes(r), entries(r)) == ("accepted", [], EXPECTED)


def test_a_formula_giving_empty_text_has_a_stored_value() -> None:
    def empty_text(ws: Any) -> None:
        ws.cell(of.TOP + 1, 11, '=""')  # Ghi chú
    data = of._edit(samples.registration_xlsx(UNIT_NAME, THIS_YEAR), empty_text)
    # As Excel stores it: t="str" and an empty <v>.
    data = of.rewrite(data, "xl/worksheets/sheet1.xml",
                      lambda xml: xml.replace(b'<c r="K9"', b'<c t="str" r="K9"').replace(b't="str" r="K9" t="n"',
                                                                                      b't="str" r="K9"'))
    r = read_document("dk.xlsx", data, unit=UNIT)
    assert (r.state, codes(r)) == ("accepted", [])


# ---------------------------------------------------------------- corrupt zip members
def test_a_member_failing_its_crc_is_a_corrupt_file() -> None:
    xlsx = samples.registration_xlsx(UNIT_NAME, THIS_YEAR)
    broken = of.crc_broken_stored(xlsx, old=b"minh b", new=b"minh c")
    # Without the check the damage goes unseen: the reader gives the altered text as the unit's.
    rows = dict(read_spreadsheet(broken).grids[0].rows)
    assert rows[9][2] == "Sổ sách minh cạch"
    r = read_document("Biểu đăng ký.xlsx", broken, unit=UNIT)
    assert (r.kind, r.state, codes(r)) == ("registration", "rejected", ["file-corrupt"])
    assert "xl/worksheets/sheet1.xml sai mã kiểm tra CRC-32" in r.findings[0].message
    r = read_document("dk.xlsx", of.crc_broken_deflated(xlsx), unit=UNIT)
    assert (r.state, codes(r)) == ("rejected", ["file-corrupt"])
    r = read_document("dk.xlsx", of.crc_broken_deflated(xlsx, "xl/styles.xml"), unit=UNIT)
    assert (r.state, codes(r)) == ("rejected", ["file-corrupt"])
    odt = of.convert(samples.registration_docx(UNIT_NAME, THIS_YEAR), "docx", "odt")
    r = read_document("dk.odt", of.crc_broken_deflated(odt, "content.xml"), unit=UNIT)
    assert (r.state, r.format, codes(r)) == ("rejected", "odt", ["file-corrupt"])
    assert read_document("dk.xlsx", xlsx, unit=UNIT).state == "accepted"


# ---------------------------------------------------------------- kind, period and year without reading
def test_a_document_that_cannot_be_read_takes_kind_period_and_year_from_its_name_and_subject() -> None:
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64
    r = read_document("Báo cáo 6 tháng.heic", heic)
    assert (r.kind, r.period, r.campaign, r.state, codes(r)) == (
        "report", "2022-H1", 2022, "needs_review", ["unsupported-format"])
    jpg = b"\xff\xd8\xff\xe0" + b"\0" * 64
    r = read_document("IMG_2031.jpg", jpg, subject="Báo cáo quý I năm 2022")
    assert (r.kind, r.period, r.state) == ("report", "2022-Q1", "needs_review")
    r = read_document("Bao cao quy III.docx", b"PK\x03\x04 not a zip")
    assert (r.kind, r.period, r.state, codes(r)) == ("report", "2022-Q3", "rejected", ["file-corrupt"])
    r = read_document("scan.pdf", of.text_free_pdf(), subject="Gửi báo cáo năm 2022 (tổng kết)")
    assert (r.kind, r.period, r.state) == ("report", "2022-Y", "accepted")
    # The year the name gives chooses the campaign; a year no campaign has is a warning.
    cands = ((2022, ("registration", "report")), (2023, ("registration", "report")))
    r = read_document("Báo cáo quý IV năm 2022.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, year=2023, campaigns=cands)
    assert (r.kind, r.period, r.campaign) == ("report", "2022-Y", 2022)
    r = read_document("Bao cao quy II 2019.heic", heic, year=2023, campaigns=cands)
    assert (r.period, r.campaign, codes(r)) == ("2023-H1", 2023, ["year-mismatch", "unsupported-format"])
    r = read_document("Đăng ký.heic", heic)
    assert (r.kind, r.period, r.state) == ("registration", None, "needs_review")


# ---------------------------------------------------------------- end to end
UBND = "cdcs.ubnd@longbien.gov.vn"      # cq001
AIMO = "thaimo.longbien@gmail.com"      # th014
MAYDG = "congdoan@maydg.com.vn"         # dn027
NAMES = {UBND: "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên", AIMO: "Công đoàn Trường Tiểu học Ái Mộ",
         MAYDG: "Công đoàn Công ty Cổ phần May Đức Giang"}


def _mail(h: Harness, sender: str, subject: str, files: list[tuple[str, bytes, str]], when: datetime,
          mid: str) -> None:
    h.deliver(samplemail.gmail_message(sender, DISTRICT, subject, "Kính gửi LĐLĐ quận.", files,
                                       message_id=mid, date=when.strftime("%a, %d %b %Y %H:%M:%S %z")), when)


def _receipt_bodies(h: Harness) -> dict[str, str]:
    out = {}
    for m in h.smtp.messages:
        msg = BytesParser(policy=policy.default).parsebytes(m.raw)
        if msg["In-Reply-To"]:
            out[msg["In-Reply-To"]] = msg.get_body(("plain",)).get_content()
    return out


def test_units_mail_a_doc_form_an_odt_report_a_reused_sheet_and_a_photographed_report(intake: Harness) -> None:
    doc = of.convert(samples.registration_docx(NAMES[UBND], [("Tổ Văn phòng", "Một cửa thân thiện", "khac")]),
                     "docx", "doc")
    odt = of.convert(samples.report_docx(NAMES[AIMO], title=Q1_TITLE), "docx", "odt")
    photo = samplemail._png(40, 30)
    reused = of.with_hidden_rows(NAMES[AIMO], LAST_YEAR, THIS_YEAR)  # last year's file, last year's rows hidden
    _mail(intake, UBND, "Đăng ký mô hình Dân vận khéo", [("Biểu đăng ký.doc", doc, "application/msword")],
          datetime(2022, 2, 10, 9, tzinfo=TZ), "<doc@ubnd>")
    _mail(intake, AIMO, "Báo cáo quý I và biểu đăng ký",
          [("Bao cao quy I.odt", odt, "application/vnd.oasis.opendocument.text"),
           ("Biểu đăng ký 2022.xlsx", reused, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")],
          datetime(2022, 3, 10, 9, tzinfo=TZ), "<odt@aimo>")
    _mail(intake, MAYDG, "Báo cáo 6 tháng đầu năm 2022 (ảnh chụp)", [("IMG_2031.png", photo, "image/png")],
          datetime(2022, 6, 10, 9, tzinfo=TZ), "<photo@maydg>")
    intake.poll()

    docs = {m["message_id"]: m["documents"][0] for m in intake.export()["messages"]}
    [aimo] = [m for m in intake.export()["messages"] if m["message_id"] == "<odt@aimo>"]
    reg = aimo["documents"][1]
    assert (reg["kind"], reg["state"], [e["name"] for e in reg["entries"]]) == (
        "registration", "accepted", [n for n, _, _ in THIS_YEAR])
    assert [i["code"] for i in reg["issues"]] == ["hidden-rows"]
    form = docs["<doc@ubnd>"]
    assert (form["kind"], form["state"], form["on_time"]) == ("registration", "accepted", True)
    assert [(e["name"], e["categories"]) for e in form["entries"]] == [("Tổ Văn phòng", ["khac"])]
    report = docs["<odt@aimo>"]
    assert (report["kind"], report["period"], report["state"], report["on_time"]) == ("report", "2022-Q1", "accepted",
                                                                                      True)
    photo_doc = docs["<photo@maydg>"]
    assert (photo_doc["kind"], photo_doc["period"], photo_doc["state"]) == ("report", "2022-H1", "needs_review")

    bodies = _receipt_bodies(intake)
    assert set(bodies) == {"<doc@ubnd>", "<odt@aimo>", "<photo@maydg>"}
    assert '"Biểu đăng ký.doc" — đọc là: Biểu đăng ký' in bodies["<doc@ubnd>"]
    assert "Kết quả: đã ghi nhận, đúng hạn" in bodies["<doc@ubnd>"] and "Đã ghi nhận 1 mô hình" in bodies["<doc@ubnd>"]
    assert '"Bao cao quy I.odt" — đọc là: Báo cáo kết quả thực hiện (quý I/2022)' in bodies["<odt@aimo>"]
    assert "Kết quả: đã ghi nhận, đúng hạn" in bodies["<odt@aimo>"]
    assert "Đã ghi nhận 2 mô hình" in bodies["<odt@aimo>"] and "Bỏ qua 3 dòng bị ẩn" in bodies["<odt@aimo>"]
    assert "(6 tháng đầu năm 2022)" in bodies["<photo@maydg>"] and "sẽ xem trực tiếp" in bodies["<photo@maydg>"]

    # The officer accepts the photo with the period it was given: its on-time mark follows.
    res = actions.accept(intake.ctx, photo_doc["id"], kind="report", period=photo_doc["period"], actor="hoa")
    assert "đúng hạn" in res.message
    after = {m["message_id"]: m["documents"][0] for m in intake.export()["messages"]}["<photo@maydg>"]
    assert (after["state"], after["period"], after["on_time"]) == ("accepted", "2022-H1", True)
    assert len([m for m in intake.smtp.messages if MAYDG in m.rcpt_tos]) == 2

