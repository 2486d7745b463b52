"""A form the 2022 plan does not have, added as data only, end to end on the real Dovecot and SMTP servers.

The office copies rules/, adds ``forms/dang-ky-2023.yaml`` (the registration's columns plus "Số người tham
gia", a whole number ≥ 1, and "Thời gian thực hiện", with its own category names) and ``campaigns/2023.yaml``
(the 2022 plan listing the new form instead of the registration), and sets ``year: 2023``. No code changes:
`intake forms` offers the new blank form; a unit fills it, sends it with a bad cell and is told which cell,
with the blank form attached; sends it corrected and it counts, on time, against the registration
obligation; the other units are reminded with the new form attached; the workbook lists the unit's models
with the new columns and the definition's category names. A 2022 registration on the old form, sent in
2023, counts for 2022.
"""
from __future__ import annotations

import email
import io
import shutil
from datetime import datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter

from conftest import DISTRICT, Harness
from formfiles import blank_columns, fill_blank
from intake_demo import samplemail, samples
from pipeline import cli
from pipeline.errors import ConfigError
from pipeline.forms.blank import read_marker
from pipeline.forms.rules import load_rules

pytestmark = pytest.mark.servers

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
ROOT = Path(__file__).resolve().parents[1]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
AIMO, AIMO_NAME = "thaimo.longbien@gmail.com", "Công đoàn Trường Tiểu học Ái Mộ"            # th014
MAYDG, MAYDG_NAME = "congdoan@maydg.com.vn", "Công đoàn Công ty Cổ phần May Đức Giang"     # dn027
UBND = "cdcs.ubnd@longbien.gov.vn"                                                          # cq001
NEW_FILE = "Phiếu đăng ký mô hình Dân vận khéo năm 2023"

# What staff write: the registration's columns, two more, the categories under their full names.
DANG_KY_2023 = """\
# Phiếu đăng ký mô hình "Dân vận khéo" (mẫu 2023): the 2022 form, plus how many take part and when.
id: dang-ky-2023
name: "Phiếu đăng ký mô hình “Dân vận khéo” (mẫu 2023)"
short_name: "Phiếu đăng ký 2023"
type: table
report_as: registration
recognise:
  order: 30
  phrases: ["phiếu đăng ký", "biểu đăng ký", "đăng ký mô hình", "đăng ký"]
  shape: {}
columns:
  - {key: tt, label: "TT", width: 5}
  - {key: name, label: "Tên tập thể, cá nhân", required: true, width: 30}
  - {key: model, label: "Tên mô hình", required: true, width: 38}
  - {key: group, label: "PHÂN LOẠI MÔ HÌNH"}
  - {key: so_nguoi, label: "Số người tham gia", synonyms: ["Số người"], type: integer, min: 1, required: true}
  - {key: thoi_gian, label: "Thời gian thực hiện", synonyms: ["Thời gian"], width: 18}
  - {key: note, label: "Ghi chú", width: 20}
categories:
  - {code: gpmb, label: "Giải phóng mặt bằng", width: 12}
  - {code: kinh_te, label: "Kinh tế"}
  - {code: chinh_trang_do_thi, label: "Chỉnh trang đô thị", width: 11}
  - {code: bvmt, label: "Bảo vệ môi trường", width: 12}
  - {code: vhxh, label: "Văn hóa xã hội", width: 12}
  - {code: anqp, label: "An ninh quốc phòng", width: 12}
  - {code: khac, label: "Lĩnh vực khác", required: false, width: 11}
blank:
  order: 1
  sheet: "Phiếu đăng ký"
  file_name: "Phiếu đăng ký mô hình Dân vận khéo năm {year}"
  description: "Phiếu đăng ký mô hình \\"Dân vận khéo\\" năm {year}"
  title: ["PHIẾU ĐĂNG KÝ", "Mô hình \\"Dân vận khéo\\" năm {year}"]
  note: "Lưu ý: Đánh số (1) vào ô tương ứng trong mục phân loại mô hình"
  signature:
    title: "ĐẠI DIỆN TẬP THỂ/CÁ NHÂN ĐĂNG KÝ MÔ HÌNH"
    note: "(Ký, ghi rõ họ tên)"
  rows: 10
"""
NEW_CATEGORIES = ["Giải phóng mặt bằng", "Kinh tế", "Chỉnh trang đô thị", "Bảo vệ môi trường", "Văn hóa xã hội",
                  "An ninh quốc phòng", "Lĩnh vực khác"]


def rules_2023(tmp: Path) -> Path:
    """A copy of rules/ with the new form and a 2023 plan that uses it: files only."""
    rules = tmp / "rules-2023"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "forms" / "dang-ky-2023.yaml").write_text(DANG_KY_2023, encoding="utf-8")
    plan = (rules / "campaigns" / "2022.yaml").read_text(encoding="utf-8")
    for old, new in (("year: 2022", "year: 2023"),
                     ("forms: [registration, summary, commendation, report]",
                      "forms: [dang-ky-2023, summary, commendation, report]"),
                     ("kinds: [registration, summary]", "kinds: [dang-ky-2023, summary]")):
        assert plan.count(old) == 1, old
        plan = plan.replace(old, new)
    (rules / "campaigns" / "2023.yaml").write_text(plan, encoding="utf-8")
    return rules


def set_config(h: Harness, **changes: object) -> None:
    data = yaml.safe_load(h.cfg_path.read_text(encoding="utf-8"))
    data.update(changes)
    h.cfg_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    h.reopen()


@pytest.fixture
def office(intake: Harness) -> Harness:
    """The intake of the fixture, moved to 2023 with the new form."""
    set_config(intake, rules=str(rules_2023(intake.cfg_path.parent)), year=2023)
    return intake


def at(m: int, d: int, hh: int = 9) -> datetime:
    return datetime(2023, m, d, hh, 0, tzinfo=TZ)


def send(h: Harness, sender: str, subject: str, filename: str, data: bytes, when: datetime, mid: str) -> None:
    h.deliver(samplemail.gmail_message(sender, DISTRICT, subject, "Kính gửi LĐLĐ quận.", [(filename, data, XLSX)],
                                       message_id=mid, date=when.strftime("%a, %d %b %Y %H:%M:%S %z")), when)


def mails(h: Harness) -> list[EmailMessage]:
    return [email.message_from_bytes(m.raw, policy=policy.default) for m in h.smtp.messages]


def receipt_to(h: Harness, mid: str) -> EmailMessage:
    [m] = [m for m in mails(h) if m["In-Reply-To"] == mid]
    return m


def text(m: EmailMessage) -> str:
    return m.get_body(("plain",)).get_content()


def html(m: EmailMessage) -> str:
    return m.get_body(("html",)).get_content()


def attachments(m: EmailMessage) -> list[tuple[str, bytes]]:
    return [(p.get_filename(), p.get_content()) for p in m.iter_attachments()]


def fill(blank: bytes, rows: list[tuple[str, str, str, Any, str | None]]) -> tuple[bytes, int, dict[str, int]]:
    """The blank form as the unit fills it in Excel: its name after ĐƠN VỊ, one model per row."""
    return fill_blank(blank, rows, unit_name=AIMO_NAME, extra=("Số người tham gia", "Thời gian thực hiện"))


def states(h: Harness, year: int) -> dict[tuple[str, str], str]:
    from pipeline.plan.reminders import current_states

    return {k: v.state for k, v in current_states(h.ctx.for_year(year)).items()}


def test_a_form_added_as_data_goes_end_to_end(office: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(office.cfg_path)
    rules = office.ctx.rules
    assert office.ctx.campaign.forms == ("dang-ky-2023", "summary", "commendation", "report")

    # Offered as a blank form: `intake forms` writes the campaign's forms from their definitions.
    out = office.cfg_path.parent / "forms"
    capsys.readouterr()
    assert cli.main(["--config", cfg, "forms", "--year", "2023", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    written = sorted(p.name for p in out.glob("*.xlsx"))
    assert written == sorted([f"{NEW_FILE}.xlsx",
                              "Mẫu M2 - Biểu tổng hợp đăng ký mô hình Dân vận khéo năm 2023.xlsx",
                              "Danh sách đề xuất khen thưởng Dân vận khéo năm 2023.xlsx"])
    assert str(out / f"{NEW_FILE}.xlsx") in printed.splitlines()
    blank = (out / f"{NEW_FILE}.xlsx").read_bytes()
    assert read_marker(blank, rules) == {"form": "dang-ky-2023", "version": "1", "year": "2023", "unit": ""}
    _, cols = blank_columns(load_workbook(io.BytesIO(blank)).active)
    assert list(cols) == ["TT", "Tên tập thể, cá nhân", "Tên mô hình", "PHÂN LOẠI MÔ HÌNH", *NEW_CATEGORIES,
                          "Số người tham gia", "Thời gian thực hiện", "Ghi chú"]
    # The 2022 plan's forms are still there on request.
    old = office.cfg_path.parent / "forms-2022"
    assert cli.main(["--config", cfg, "forms", "--year", "2022", "--out", str(old)]) == 0
    assert "Biểu đăng ký mô hình Dân vận khéo năm 2022.xlsx" in {p.name for p in old.glob("*.xlsx")}
    capsys.readouterr()

    # A bad "Số người tham gia": rejected, the receipt names the cell in Vietnamese and carries the blank form.
    good = [("Tổ Văn phòng", "Dọn vệ sinh ngõ xóm cùng nhân dân", "Bảo vệ môi trường", 12, "Quý II/2023"),
            ("Tổ chuyên môn khối 5", "Tuyên truyền an toàn giao thông", "An ninh quốc phòng", 25, "Cả năm")]
    bad_rows = [good[0], (*good[1][:3], "mười", "Cả năm")]
    bad, header, cols = fill(blank, bad_rows)
    send(office, AIMO, "Phiếu đăng ký mô hình năm 2023", "Phieu dang ky.xlsx", bad, at(2, 10), "<bad@aimo>")
    office.poll()
    receipt = receipt_to(office, "<bad@aimo>")
    cell = f"{get_column_letter(cols['Số người tham gia'])}{header + 3}, trang Phiếu đăng ký"
    body = text(receipt)
    assert "đọc là: Phiếu đăng ký mô hình “Dân vận khéo” (mẫu 2023)." in body
    assert "Kết quả: chưa ghi nhận, cần sửa và gửi lại." in body
    assert "gửi lại tệp đã sửa (Phiếu đăng ký 2023)" in body
    # the finding names its cell once, as people name it
    assert (f"* [Lỗi]: Ô {cell} (cột Số người tham gia): «mười» không phải số nguyên từ 1 trở lên."
            in body), body
    [(name, data)] = attachments(receipt)
    assert name == f"{NEW_FILE} - {AIMO_NAME}.xlsx"
    assert read_marker(data, rules) == {"form": "dang-ky-2023", "version": "1", "year": "2023", "unit": AIMO_NAME}
    [doc] = [d for m in office.export()["messages"] if m["message_id"] == "<bad@aimo>" for d in m["documents"]]
    assert (doc["kind"], doc["campaign"], doc["state"], doc["entries"]) == ("dang-ky-2023", 2023, "rejected", [])
    # the export keeps the cell reference itself
    ref = f"'Phiếu đăng ký'!{get_column_letter(cols['Số người tham gia'])}{header + 3}"
    assert [(i["code"], i["location"]) for i in doc["issues"]] == [("bad-integer", ref)]

    # Corrected: accepted, on time, its categories named as the form prints them.
    fixed, _, _ = fill(blank, good)
    send(office, AIMO, "Phiếu đăng ký mô hình năm 2023 (đã sửa)", "Phieu dang ky.xlsx", fixed, at(2, 12),
         "<fixed@aimo>")
    # Another unit sends the old 2022 registration form in 2023.
    old_form = samples.registration_xlsx(MAYDG_NAME, [("Tổ may 3", "Giờ nghỉ trưa an toàn", "vhxh")], year=2022)
    send(office, MAYDG, "Đăng ký mô hình năm 2022", "Biểu đăng ký 2022.xlsx", old_form, at(2, 11), "<old@maydg>")
    office.poll()
    receipt = receipt_to(office, "<fixed@aimo>")
    body = text(receipt)
    assert "Kết quả: đã ghi nhận, đúng hạn." in body
    assert "Đã ghi nhận 2 mô hình:" in body
    assert "- I. Tập thể: 2 (Bảo vệ môi trường: 1; An ninh quốc phòng: 1)" in body
    assert "".join(f"<th>{c}</th>" for c in NEW_CATEGORIES) in html(receipt)
    assert attachments(receipt) == []
    docs = {m["message_id"]: m["documents"] for m in office.export()["messages"]}
    [new] = docs["<fixed@aimo>"]
    assert (new["kind"], new["campaign"], new["state"], new["on_time"]) == ("dang-ky-2023", 2023, "accepted", True)
    assert [e["extra"] for e in new["entries"]] == [{"so_nguoi": "12", "thoi_gian": "Quý II/2023"},
                                                    {"so_nguoi": "25", "thoi_gian": "Cả năm"}]
    [old_doc] = docs["<old@maydg>"]
    assert (old_doc["kind"], old_doc["campaign"], old_doc["state"], old_doc["on_time"]) == (
        "registration", 2022, "accepted", False)
    assert "tính cho kế hoạch năm 2022" in text(receipt_to(office, "<old@maydg>"))

    # Counted against its obligation: the new form meets 2023's registration; the old form meets 2022's only.
    now = states(office, 2023)
    assert now[("th014", "registration")] == "on_time"
    assert now[("dn027", "registration")] == "missing"
    assert states(office, 2022)[("dn027", "registration")] == "late"

    # Reminded: every unit that owes 2023's registration, with the new blank form; not the one that sent it.
    office.smtp.clear()
    assert cli.main(["--config", cfg, "remind", "--today", "2023-02-15"]) == 0
    reminded = {r.unit_id for r in office.ctx.store.reminder_rows(2023)
                if r.obligation_id == "registration" and r.outbox_id is not None}
    assert reminded == {"cq001", "dn027", "peer1", "peer2"}
    sent = mails(office)
    assert sent and all(AIMO not in (m["To"] or "") for m in sent)
    to_maydg = [m for m in sent if MAYDG in (m["To"] or "")]
    assert len(to_maydg) == 1
    [(name, data)] = attachments(to_maydg[0])
    assert name == f"{NEW_FILE} - {MAYDG_NAME}.xlsx"
    assert read_marker(data, rules)["form"] == "dang-ky-2023"  # type: ignore[index]
    capsys.readouterr()

    # Consolidated: the workbook of 2023 lists the unit's models with the new columns and category names.
    reports = office.cfg_path.parent / "reports"
    assert cli.main(["--config", cfg, "report", "--year", "2023", "--today", "2023-02-25", "--out", str(reports)]) == 0
    wb = load_workbook(reports / "bao-cao-tong-hop-2023-02-25.xlsx")
    ws = wb["Tổng hợp"]
    assert [ws.cell(7, c).value for c in (1, 2, 3, 4, 11, 12, 13)] == [
        "TT", "Tên tập thể, cá nhân", "Tên mô hình", "PHÂN LOẠI MÔ HÌNH", "Số người tham gia", "Thời gian thực hiện",
        "Ghi chú"]
    assert [ws.cell(8, c).value for c in range(4, 11)] == NEW_CATEGORIES
    body_rows = [tuple(ws.cell(r, c).value for c in range(1, 14)) for r in range(9, ws.max_row + 1)]
    models = [r for r in body_rows if isinstance(r[0], int)]
    assert models == [
        (1, "Tổ Văn phòng", "Dọn vệ sinh ngõ xóm cùng nhân dân", None, None, None, 1, None, None, None, 12,
         "Quý II/2023", None),
        (2, "Tổ chuyên môn khối 5", "Tuyên truyền an toàn giao thông", None, None, None, None, None, 1, None, 25,
         "Cả năm", None),
    ]
    assert (None, f"Đơn vị: {AIMO_NAME}") in [r[:2] for r in body_rows]
    total = next(r for r in body_rows if r[1] == "Tổng cộng")
    assert total[2:10] == ("2 mô hình", 0, 0, 0, 1, 0, 1, 0)
    targets = wb["Chỉ tiêu"]
    assert [targets.cell(r, 1).value for r in range(16, 23)] == NEW_CATEGORIES
    progress_ws = wb["Tiến độ"]  # one row per unit, one column per obligation
    titles = [progress_ws.cell(7, c).value for c in range(1, progress_ws.max_column + 1)]
    registration = titles.index(next(t for t in titles if t and t.startswith("Đăng ký mô hình"))) + 1
    progress = {r[1]: r[registration - 1] for r in progress_ws.iter_rows(min_row=9, values_only=True)
                if isinstance(r[0], int)}
    assert progress[AIMO_NAME].startswith("Đúng hạn ")
    assert progress[MAYDG_NAME].startswith("Quá hạn, chưa nộp")  # 25/02/2023: after the deadline
    # The old form counts in 2022's workbook, under 2022's category names.
    assert cli.main(["--config", cfg, "report", "--year", "2022", "--today", "2023-02-25", "--out",
                     str(reports)]) == 0
    ws = load_workbook(reports / "bao-cao-tong-hop-2022-ngay-2023-02-25.xlsx")["Tổng hợp"]
    assert [ws.cell(8, c).value for c in range(4, 11)] == [
        "GPMB", "Kinh tế", "Chỉnh trang đô thị", "BVMT", "VHXH", "ANQP", "Lĩnh vực khác"]
    assert ws.cell(7, 11).value == "Ghi chú"
    names = [ws.cell(r, 2).value for r in range(9, ws.max_row + 1) if isinstance(ws.cell(r, 1).value, int)]
    assert names == ["Tổ may 3"]
    capsys.readouterr()


def test_review_accepts_a_photo_as_the_new_form(office: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    """Staff may count a document as any form of its campaign, the new one too, and no form of another."""
    office.deliver(samplemail.gmail_message(UBND, DISTRICT, "Ảnh chụp", "Kính gửi LĐLĐ.",
                                            [("anh chup.png", samplemail.SIGNATURE_PNG, "image/png")],
                                            message_id="<photo@ubnd>"), at(2, 14))
    office.poll()
    [doc] = [d for m in office.export()["messages"] if m["message_id"] == "<photo@ubnd>" for d in m["documents"]]
    assert (doc["state"], doc["campaign"]) == ("needs_review", 2023)
    cfg = str(office.cfg_path)
    capsys.readouterr()
    assert cli.main(["--config", cfg, "review", "accept", str(doc["id"]), "--kind", "registration"]) == 1
    assert "registration" in capsys.readouterr().err
    assert cli.main(["--config", cfg, "review", "accept", str(doc["id"]), "--kind", "dang-ky-2023"]) == 0
    [doc] = [d for m in office.export()["messages"] if m["message_id"] == "<photo@ubnd>" for d in m["documents"]]
    assert (doc["kind"], doc["state"], doc["on_time"]) == ("dang-ky-2023", "accepted", True)
    assert states(office, 2023)[("cq001", "registration")] == "on_time"
    capsys.readouterr()


@pytest.mark.parametrize(("change", "fragment"), [
    (("report_as: registration\n", ""), "report_as: "),
    (("report_as: registration\n", "report_as: tong-hop\n"), "report_as: "),
])
def test_a_new_table_form_must_say_how_the_report_counts_it(tmp_path: Path, change: tuple[str, str],
                                                            fragment: str) -> None:
    rules = rules_2023(tmp_path)
    path = rules / "forms" / "dang-ky-2023.yaml"
    path.write_text(DANG_KY_2023.replace(*change), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_rules(rules)
    assert f"{path}: {fragment}" in str(info.value)


def test_a_report_is_never_consolidated(tmp_path: Path) -> None:
    rules = rules_2023(tmp_path)
    path = rules / "forms" / "report.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("report_as: none", "report_as: registration"),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="report_as"):
        load_rules(rules)
    path.write_text(path.read_text(encoding="utf-8").replace("report_as: registration\n", ""), encoding="utf-8")
    assert load_rules(rules).forms["report"].report_as == "none"  # the shipped ids default to their role
