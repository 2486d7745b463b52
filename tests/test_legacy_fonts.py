"""Old Vietnamese font encodings (TCVN3/ABC and VNI) are recognised and read as Unicode.

The converter on real text (the district's 2022 plan, round-tripped), the detector on legacy, Unicode, English,
other European and mixed text, and real files: forms typed in .VnTime / VNI-Times made with openpyxl and
python-docx and saved again by LibreOffice headless (xlsx, xls, ods, docx, doc, odt), a TCVN3 form that names
no font, a Unicode form set in a legacy font, and the district's Unicode form with legacy entries typed in.
One mail goes end to end through the real Dovecot and SMTP servers.
"""
from __future__ import annotations

import copy
import email
import io
import unicodedata
from email import policy
from typing import Any

import pytest

import officefiles
from conftest import DISTRICT, SHARED, Harness
from intake_demo import samplemail, samples
from pipeline.forms import read_document
from pipeline.forms.fontnames import encoding_of_font, is_upper_font, read_fonts
from pipeline.forms.legacy_fonts import TCVN3, VNI, detect, from_unicode, to_unicode
from pipeline.forms.legacy_tables import TCVN3 as TCVN3_MAP
from pipeline.forms.legacy_tables import VNI as VNI_MAP
from pipeline.forms.syllables import is_syllable
from pipeline.model import DocumentReading, Finding, Unit

PLAN = SHARED / "reference" / "ke-hoach-2022.md"
UBND = Unit("cq001", "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên", "hcsn", ("cdcs.ubnd@longbien.gov.vn",))
ENTRIES = [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac"),
           ("Tổ công đoàn Trường học", "Người tốt việc tốt ở khu phố", "vhxh"),
           ("Nguyễn Thị Hoa", "Vận động hiến đất mở đường", "gpmb"),
           ("Tổ công đoàn Kế toán", "Chỉnh trang ngõ phố xanh sạch đẹp", "chinh_trang_do_thi")]
NAMES = [e[0] for e in ENTRIES]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def plan_text() -> str:
    if not PLAN.is_file():
        pytest.fail(f"the plan's text {PLAN} is missing: it is read from ../shared/reference beside the checkout",
                    pytrace=False)
    return unicodedata.normalize("NFC", PLAN.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the converter
def test_tables_hold_every_vietnamese_letter_once() -> None:
    letters = ("aáàảãạăắằẳẵặâấầẩẫậeéèẻẽẹêếềểễệiíìỉĩịoóòỏõọôốồổỗộơớờởỡợ"
               "uúùủũụưứừửữựyýỳỷỹỵđ")
    # TCVN3: the small letters (identity for the plain vowels and ý) and the bare capitals.
    assert set(TCVN3_MAP.values()) == set(letters) - set("aeiouyý") | set("ĂÂĐÊÔƠƯ")
    # VNI: every letter in both cases (í and ì are themselves).
    capitals = letters.upper()
    assert set(VNI_MAP.values()) == (set(letters) | set(capitals)) - set("aeiouyAEIOUYíìÍÌ")
    # Spot checks against the published tables.
    assert [TCVN3_MAP[c] for c in "®\u00ad¬«©¨ª§"] == list("đươôâăêĐ")
    assert [VNI_MAP[s] for s in ("öù", "ôï", "î", "ñ", "aâ", "aê", "AÙ", "ÖØ", "Ñ")] == list("ứợỵđâăÁỪĐ")


def test_the_plan_round_trips_through_vni() -> None:
    text = plan_text()
    legacy = from_unicode(text, VNI)
    assert legacy != text and "Keá hoaïch".upper() in legacy.upper()
    assert to_unicode(legacy, VNI) == text


def test_the_plan_round_trips_through_tcvn3_where_tcvn3_can_say_it() -> None:
    """TCVN3 has no capital toned vowels: a capitalised "Ủy" is stored as "ủy". Every line whose capitals TCVN3
    has comes back exactly; a line in capitals read through a capitals font (.VnTimeH) too; the rest letter
    for letter, whatever their case."""
    text = plan_text()
    own_capitals = set("ĂÂĐÊÔƠƯ")
    exact = capitals = 0
    for line in text.split("\n"):
        back = to_unicode(from_unicode(line, TCVN3), TCVN3)
        toned_capital = any(c.isupper() and not c.isascii() and c not in own_capitals for c in line)
        if not toned_capital:
            assert back == line
            exact += 1
        assert back.lower() == line.lower()
        if line.upper() == line and toned_capital:
            assert to_unicode(from_unicode(line.lower(), TCVN3), TCVN3, upper=True) == line
            capitals += 1
    assert exact > 100 and capitals >= 3
    # The whole plan, read as one text, still comes back letter for letter.
    assert to_unicode(from_unicode(text, TCVN3), TCVN3).lower() == text.lower()


@pytest.mark.parametrize(("legacy", "encoding", "unicode"), [
    ("Tªn tËp thÓ, c¸ nh©n", TCVN3, "Tên tập thể, cá nhân"),
    ("Tªn m« h×nh", TCVN3, "Tên mô hình"),
    ("ChØnh trang ®« thÞ", TCVN3, "Chỉnh trang đô thị"),
    ("VHXH", TCVN3, "VHXH"),
    ("Tæ c«ng ®oµn V¨n phßng", TCVN3, "Tổ công đoàn Văn phòng"),
    ("Ng\u00adêi tèt viÖc tèt", TCVN3, "Người tốt việc tốt"),
    ("PH¢N LO¹I M¤ H×NH", TCVN3, "PHÂN LOẠI MÔ HÌNH"),  # typed in capitals: no capital toned vowel in TCVN3
    ("§¥N VÞ: C«ng ®oµn", TCVN3, "ĐƠN VỊ: Công đoàn"),
    ("Teân taäp theå, caù nhaân", VNI, "Tên tập thể, cá nhân"),
    ("Teân moâ hình", VNI, "Tên mô hình"),
    ("Chænh trang ñoâ thò", VNI, "Chỉnh trang đô thị"),
    ("VHXH", VNI, "VHXH"),
    ("PHAÂN LOAÏI MOÂ HÌNH", VNI, "PHÂN LOẠI MÔ HÌNH"),
    ("Toå coâng ñoaøn Vaên phoøng", VNI, "Tổ công đoàn Văn phòng"),
    ("ÑÔN VÒ: Ngöôøi toát vieäc toát", VNI, "ĐƠN VỊ: Người tốt việc tốt"),
])
def test_header_words_and_names(legacy: str, encoding: str, unicode: str) -> None:
    assert to_unicode(legacy, encoding) == unicode
    assert unicodedata.is_normalized("NFC", to_unicode(legacy, encoding))


def test_a_capitals_font_draws_the_small_codes_as_capitals() -> None:
    assert to_unicode("tªn tËp thÓ, c¸ nh©n", TCVN3, upper=True) == "TÊN TẬP THỂ, CÁ NHÂN"
    assert to_unicode("biÓu ®¨ng ký", TCVN3, upper=True) == "BIỂU ĐĂNG KÝ"


@pytest.mark.parametrize(("font", "encoding", "upper"), [
    (".VnTime", TCVN3, False), (".VnTimeH", TCVN3, True), (".VnArial NarrowH", TCVN3, True),
    (".vnarial", TCVN3, False), ("VNI-Times", VNI, False), ("VNI-Helve", VNI, False),
    ("Times New Roman", None, False), ("Vni", None, False), ("Arial", None, False),
])
def test_fonts_name_their_encoding(font: str, encoding: str | None, upper: bool) -> None:
    assert encoding_of_font(font) == encoding
    assert is_upper_font(font) is upper


def test_syllables() -> None:
    for w in ("tên", "Người", "khuya", "quốc", "giêng", "gì", "kỹ", "thuở", "xoong", "Nghiêng", "ki", "ca"):
        assert is_syllable(w), w
    # Legacy text as it stands, and spellings Vietnamese does not use (ce, gha, a stop final with huyền, chy).
    for w in ("Tªn", "c¸", "ce", "ghà", "tàc", "chỳ", "GPMB", "quu", "hỡnh", "café"):
        assert not is_syllable(w), w


# ---------------------------------------------------------------- the detector
HEADER = ["TT", "Tên tập thể, cá nhân", "Tên mô hình", "PHÂN LOẠI MÔ HÌNH", "GPMB", "Kinh tế",
          "Chỉnh trang đô thị", "BVMT", "VHXH", "ANQP", "Ghi chú"]


def test_detects_tcvn3_and_vni_text() -> None:
    text = plan_text()
    assert detect([from_unicode(text, TCVN3)]) == (TCVN3, ())
    assert detect([from_unicode(text, VNI)]) == (VNI, ())
    # A form's header and two entries are enough.
    cells = [*HEADER, *NAMES[:2]]
    assert detect([from_unicode(c, TCVN3) for c in cells]) == (TCVN3, ())
    assert detect([from_unicode(c, VNI) for c in cells]) == (VNI, ())


@pytest.mark.parametrize("texts", [
    pytest.param([plan_text()], id="unicode-plan"),
    pytest.param(HEADER + NAMES, id="unicode-form"),
    pytest.param(["Tên mô hình", "cá nhân", "Ghi chú", "Hà Nội", "bàn ghế", "Có", "Tên"], id="unicode-latin1-only"),
    pytest.param(["The quick brown fox jumps over the lazy dog.", "Registration form for the 2022 campaign.",
                  "© 2022 ACME Corp. All rights reserved ®", "1ª edición, naïve café résumé"], id="english"),
    pytest.param(["Le système éducatif français est très développé; les élèves étudient à l'école.",
                  "El niño comió una manzana el año pasado; la señora está aquí, según él.",
                  "Die Größe der Straße ist für die Bürger schön, aber müde Männer gehen über die Brücke."],
                 id="french-spanish-german"),
    pytest.param([unicodedata.normalize("NFD", plan_text())], id="windows-1258-decomposed"),
    pytest.param([unicodedata.normalize("NFD", plan_text()).encode("cp1258", "replace").decode("cp1252", "replace")],
                 id="windows-1258-read-as-1252"),
    pytest.param(["Công ty TNHH ABC ©", "Nº 1ª", "Giá 5µm · đơn vị", "Tên ª", "© Bản quyền ® thuộc về ABC ª",
                  "« Tên mô hình »"], id="stray-signs"),
])
def test_does_not_fire_on(texts: list[str]) -> None:
    assert detect(texts) is None


def test_detects_legacy_entries_typed_into_a_unicode_form() -> None:
    cells = [*HEADER, *(from_unicode(n, TCVN3) for n in NAMES)]
    assert detect(cells) == (TCVN3, ())


# ---------------------------------------------------------------- files
def legacy_xlsx(data: bytes, encoding: str, font: str | None, capitals_font: str | None = None,
                only: set[str] | None = None) -> bytes:
    """A workbook as a unit types it in a legacy font: every text cell (or those in ``only``) in ``encoding``,
    set in ``font`` (None: the font left as it was); text in capitals set in ``capitals_font`` and typed with
    the small codes, as .VnTimeH is used."""
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(data))
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if not isinstance(cell.value, str) or (only is not None and cell.value not in only):
                    continue
                text, name = cell.value, font
                if capitals_font and text.isupper():
                    text, name = text.lower(), capitals_font
                cell.value = from_unicode(text, encoding)
                if name:
                    f = copy.copy(cell.font)
                    f.name = name
                    cell.font = f
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def legacy_docx(data: bytes, encoding: str, font: str, *, in_style: bool = False,
                only: set[str] | None = None) -> bytes:
    """A Word document typed in a legacy font: its runs' text (or the paragraphs' in ``only``) in ``encoding``,
    the font named on each such run or, ``in_style``, on the Normal style only."""
    from docx import Document

    doc = Document(io.BytesIO(data))
    if in_style:
        doc.styles["Normal"].font.name = font
    paragraphs = [*doc.paragraphs, *(p for t in doc.tables for row in t.rows for c in row.cells for p in c.paragraphs)]
    seen: set[int] = set()
    for p in paragraphs:
        if id(p._p) in seen or (only is not None and p.text not in only):  # a merged cell: once per column
            continue
        seen.add(id(p._p))
        for run in p.runs:
            run.text = from_unicode(run.text, encoding)
            if not in_style:
                run.font.name = font
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def tcvn3_form() -> bytes:
    return legacy_xlsx(samples.registration_xlsx(UBND.name, ENTRIES), TCVN3, ".VnTime", ".VnTimeH")


def legacy_finding(r: DocumentReading) -> Finding:
    found = [f for f in r.findings if f.code == "legacy-encoding"]
    assert len(found) == 1, [f.code for f in r.findings]
    assert found[0].severity == "warning"
    return found[0]


def assert_read_in_unicode(r: DocumentReading, encoding: str, font: str | None) -> None:
    assert (r.kind, r.state) == ("registration", "accepted"), [f.message for f in r.findings]
    assert [e.name for e in r.entries] == NAMES
    assert [e.model for e in r.entries] == [e[1] for e in ENTRIES]
    assert [e.categories for e in r.entries] == [(e[2],) for e in ENTRIES]
    assert all(unicodedata.is_normalized("NFC", e.name + e.model) for e in r.entries)
    assert r.unit_line is not None and r.unit_line.lower() == UBND.name.lower()  # TCVN3 writes "Ủy" as "ủy"
    codes = [f.code for f in r.findings]
    assert "unit-mismatch" not in codes and "header-not-found" not in codes, codes
    f = legacy_finding(r)
    label = "TCVN3/ABC" if encoding == TCVN3 else "VNI"
    assert f"bảng mã cũ ({label}, phông {font or 'không ghi trong tệp'}" in f.message
    assert "chuyển sang Unicode" in f.message and "Times New Roman" in f.message


def test_a_tcvn3_form_with_vntime_named_in_its_styles() -> None:
    data = tcvn3_form()
    assert read_fonts("xlsx", data).names == (".VnTime", ".VnTimeH")
    r = read_document("Bieu dang ky.xlsx", data, unit=UBND)
    assert_read_in_unicode(r, TCVN3, ".VnTime, .VnTimeH")
    assert r.title == 'BIỂU ĐĂNG KÝ Mô hình "Dân vận khéo" năm 2022'  # .VnTimeH: capitals


@pytest.mark.parametrize("target", ["xlsx", "xls", "ods"])
def test_a_tcvn3_form_saved_by_libreoffice_calc(target: str) -> None:
    data = officefiles.convert(tcvn3_form(), "xlsx", target)
    assert set(read_fonts(target, data).names) == {".VnTime", ".VnTimeH"}
    r = read_document(f"Bieu dang ky.{target}", data, unit=UBND)
    assert_read_in_unicode(r, TCVN3, ".VnTime, .VnTimeH")


def test_a_vni_word_table_saved_by_libreoffice_writer() -> None:
    made = legacy_docx(samples.registration_docx(UBND.name, ENTRIES), VNI, "VNI-Times")
    data = officefiles.convert(made, "docx", "docx")
    assert read_fonts("docx", data).names[0] == "VNI-Times"
    r = read_document("Bieu dang ky.docx", data, unit=UBND)
    assert_read_in_unicode(r, VNI, "VNI-Times")
    assert r.unit_line == UBND.name  # VNI has its capitals


@pytest.mark.parametrize("target", ["docx", "doc", "odt"])
def test_a_tcvn3_word_table_with_the_font_in_its_style(target: str) -> None:
    """LibreOffice writes the ư of TCVN3 (the soft hyphen's code) as <w:softHyphen/> in a .docx; the names keep it."""
    made = legacy_docx(samples.registration_docx(UBND.name, ENTRIES), TCVN3, ".VnTime", in_style=True)
    data = officefiles.convert(made, "docx", target)
    r = read_document(f"Bieu dang ky.{target}", data, unit=UBND)
    assert_read_in_unicode(r, TCVN3, ".VnTime")
    assert "Tổ công đoàn Trường học" in [e.name for e in r.entries]


def test_a_vni_report_has_its_period() -> None:
    made = legacy_docx(samples.report_docx(UBND.name), VNI, "VNI-Times")
    r = read_document("Bao cao.docx", officefiles.convert(made, "docx", "docx"), unit=UBND)
    assert (r.kind, r.period, r.state) == ("report", "2022-Q1", "accepted")
    assert r.title is not None and "Kết quả thực hiện quý I năm 2022" in r.title
    assert "VNI" in legacy_finding(r).message


def test_a_tcvn3_form_naming_no_font_is_known_by_its_characters() -> None:
    data = legacy_xlsx(samples.registration_xlsx(UBND.name, ENTRIES), TCVN3, None)
    assert read_fonts("xlsx", data).names == ()
    r = read_document("Bieu dang ky.xlsx", data, unit=UBND)
    assert_read_in_unicode(r, TCVN3, None)


def edit(data: bytes, fn: Any) -> bytes:
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(data))
    fn(wb.active)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_legacy_entries_typed_into_the_districts_unicode_form() -> None:
    """Only the entries' cells are in TCVN3 and .VnTime: the form's Unicode header, title and notes stay as
    they are: "Ghi chú" (which would read "Ghi chỳ"), and a note "Có" typed in Unicode, which would read "Cú",
    a word too."""
    unicode_form = samples.registration_xlsx(UBND.name, ENTRIES)

    def note(ws: Any) -> None:
        ws.cell(8, 11, "Có")  # K8: the first entry's Ghi chú, in the form's own font

    for font in (".VnTime", None):  # the font named in the file, or not (the characters alone)
        data = edit(legacy_xlsx(unicode_form, TCVN3, font, only={t for e in ENTRIES for t in e[:2]}), note)
        r = read_document("Bieu dang ky.xlsx", data, unit=UBND)
        assert_read_in_unicode(r, TCVN3, font)
        assert r.unit_line == UBND.name and r.title == 'BIỂU ĐĂNG KÝ Mô hình "Dân vận khéo" năm 2022'
        assert [e.note for e in r.entries] == ["Có", None, None, None]


def test_legacy_entries_typed_into_the_districts_unicode_word_form() -> None:
    """The entries typed in VNI-Times into the district's Unicode .docx: the runs say which text is VNI."""
    made = legacy_docx(samples.registration_docx(UBND.name, ENTRIES), VNI, "VNI-Times",
                       only={t for e in ENTRIES for t in e[:2]})
    data = officefiles.convert(made, "docx", "docx")
    r = read_document("Bieu dang ky.docx", data, unit=UBND)
    assert_read_in_unicode(r, VNI, "VNI-Times")
    assert r.unit_line == UBND.name and r.title == 'BIỂU ĐĂNG KÝ Mô hình "Dân vận khéo" năm 2022'


def test_a_rich_text_run_in_a_legacy_font() -> None:
    """Excel keeps a run's own font in the shared string ("rich text"): the cell's style names Calibri."""
    from openpyxl.cell.rich_text import CellRichText, TextBlock
    from openpyxl.cell.text import InlineFont

    def typed(ws: Any) -> None:
        ws.cell(8, 2).value = CellRichText([TextBlock(InlineFont(rFont=".VnTime"), from_unicode(NAMES[0], TCVN3))])

    # openpyxl keeps rich text in the cell; LibreOffice, as Excel does, in the shared strings.
    data = officefiles.convert(edit(samples.registration_xlsx(UBND.name, ENTRIES), typed), "xlsx", "xlsx")
    assert read_fonts("xlsx", data).cells == {"Sheet1": {(8, 1): ".VnTime"}}
    r = read_document("Bieu dang ky.xlsx", data, unit=UBND)
    assert_read_in_unicode(r, TCVN3, ".VnTime")
    assert r.unit_line == UBND.name


def test_unicode_text_in_a_legacy_font_is_left_as_it_is() -> None:
    """A template set in .VnTime, typed in Unicode (Windows draws the letters .VnTime lacks from another font)."""
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(samples.registration_xlsx(UBND.name, ENTRIES)))
    for row in wb.active.iter_rows():
        for cell in row:
            f = copy.copy(cell.font)
            f.name = ".VnTime"
            cell.font = f
    buf = io.BytesIO()
    wb.save(buf)
    data = buf.getvalue()
    assert read_fonts("xlsx", data).names == (".VnTime",)
    r = read_document("Bieu dang ky.xlsx", data, unit=UBND)
    assert [e.name for e in r.entries] == NAMES and r.state == "accepted"
    assert "legacy-encoding" not in [f.code for f in r.findings]


def test_an_ordinary_unicode_form_gets_no_warning() -> None:
    for name, data in (("a.xlsx", samples.registration_xlsx(UBND.name, ENTRIES)),
                       ("a.docx", samples.registration_docx(UBND.name, ENTRIES))):
        r = read_document(name, data, unit=UBND)
        assert [e.name for e in r.entries] == NAMES
        assert "legacy-encoding" not in [f.code for f in r.findings]


# ---------------------------------------------------------------- end to end
def test_a_tcvn3_form_by_mail_is_accepted_and_recorded_in_unicode(intake: Harness) -> None:
    sender = "cdcs.ubnd@longbien.gov.vn"
    intake.deliver(samplemail.gmail_message(sender, DISTRICT, "Đăng ký mô hình Dân vận khéo năm 2022",
                                            "Kính gửi LĐLĐ quận.", [("Bieu dang ky.xlsx", tcvn3_form(), XLSX)],
                                            message_id="<tcvn3@ubnd>"))
    summary = intake.poll()
    assert summary.new == 1
    [receipt] = [email.message_from_bytes(m.raw, policy=policy.default) for m in intake.smtp.messages
                 if email.message_from_bytes(m.raw, policy=policy.default)["In-Reply-To"] == "<tcvn3@ubnd>"]
    body = receipt.get_body(("plain",)).get_content()
    assert "Kết quả: đã ghi nhận" in body and f"Đã ghi nhận {len(ENTRIES)} mô hình" in body
    assert "Tệp dùng bảng mã cũ (TCVN3/ABC, phông .VnTime, .VnTimeH)" in body
    assert "chuyển sang Unicode" in body and "Times New Roman" in body
    assert "Không tìm thấy dòng tiêu đề" not in body
    [doc] = [d for m in intake.export()["messages"] for d in m["documents"]]
    assert doc["state"] == "accepted"
    assert [e["name"] for e in doc["entries"]] == NAMES
    assert [e["model"] for e in doc["entries"]] == [e[1] for e in ENTRIES]
    assert "legacy-encoding" in [f["code"] for f in doc["issues"]]
    assert doc["unit_line"].lower() == UBND.name.lower()
