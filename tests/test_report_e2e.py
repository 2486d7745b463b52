"""The staff report end to end: forms through real Dovecot, `intake report`, the workbook opened again."""
from __future__ import annotations

import email
import re
import zipfile
from datetime import datetime
from email import policy
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from conftest import DISTRICT, UNITS_CSV, Harness
from pipeline import cli
from intake_demo import samplemail
from intake_demo import samples
from pipeline.model import CATEGORIES

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EVIL = '=HYPERLINK("http://evil.example/x","Bấm vào đây") Công đoàn'
EVIL_ADDR = "evil@unit.example.com"


def deliver(h: Harness, sender: str, filename: str, data: bytes, when: datetime, mid: str) -> None:
    h.deliver(samplemail.gmail_message(sender, DISTRICT, "Gửi biểu mẫu Dân vận khéo", "Kính gửi LĐLĐ quận.",
                                       [(filename, data, XLSX)], message_id=mid), when)


@pytest.fixture
def loaded(intake: Harness) -> Harness:
    csv_name = EVIL.replace('"', '""')
    (intake.cfg_path.parent / "units.csv").write_text(
        UNITS_CSV + f'eq001,"{csv_name}",hcsn,{EVIL_ADDR}\n', encoding="utf-8")
    intake.reopen()
    deliver(intake, "cdcs.ubnd@longbien.gov.vn", "dk.xlsx", samples.registration_xlsx(
        "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên",
        [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac"), ("Phòng TN-MT", "Phân loại rác", "bvmt")]),
        datetime(2022, 2, 16, 9, 0, tzinfo=TZ), "<r1@mail.gmail.com>")
    # A correction replaces the first form: only the newer one counts.
    deliver(intake, "cdcs.ubnd@longbien.gov.vn", "dk-sua.xlsx", samples.registration_xlsx(
        "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên",
        [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac"), ("Phòng TN-MT", "Phân loại rác", "bvmt"),
         ("Phòng Kinh tế", "Hỗ trợ hộ kinh doanh", "kinh_te")]),
        datetime(2022, 2, 17, 9, 0, tzinfo=TZ), "<r2@mail.gmail.com>")
    deliver(intake, "congdoan@maydg.com.vn", "m2.xlsx", samples.summary_xlsx(
        "Công đoàn Công ty Cổ phần May Đức Giang",
        [("Tổ may 3", "Giờ nghỉ trưa an toàn", "vhxh"), ("Tổ bảo vệ", "Tuần tra an ninh", "anqp")],
        [("Chị Nguyễn Thị Lan", "Vận động giải phóng mặt bằng", "gpmb")]),
        datetime(2022, 2, 21, 9, 0, tzinfo=TZ), "<m2@mail.gmail.com>")
    deliver(intake, EVIL_ADDR, "dk.xlsx", samples.registration_xlsx(
        EVIL, [("-Tổ dân phòng", "@SUM(A1)", "bvmt")]), datetime(2022, 2, 24, 9, 0, tzinfo=TZ), "<e1@mail.gmail.com>")
    summary = intake.poll()
    assert summary.error is None and summary.states == {"processed": 4}
    intake.smtp.clear()
    return intake


def counted_entries(h: Harness) -> list[dict]:
    out = []
    for m in h.export()["messages"]:
        for d in m["documents"]:
            if d["state"] == "accepted" and not d["superseded"] and d["kind"] in ("registration", "summary"):
                out.extend(d["entries"])
    return out


def test_workbook_totals_equal_the_entries_recorded(loaded: Harness, tmp_path) -> None:
    out = tmp_path / "out"
    rc = cli.main(["--config", str(loaded.cfg_path), "report", "--today", "2022-02-25", "--out", str(out)])
    assert rc == 0
    path = out / "bao-cao-tong-hop-2022-02-25.xlsx"
    wb = load_workbook(path)
    ws = wb["Tổng hợp"]
    total_row = next(r for r in range(1, ws.max_row + 1) if ws.cell(r, 2).value == "Tổng cộng")
    entries = counted_entries(loaded)
    assert len(entries) == 3 + 3 + 1
    expected = [sum(1 for e in entries if cat in e["categories"]) for cat in CATEGORIES]
    assert [ws.cell(total_row, c).value for c in range(4, 4 + len(CATEGORIES))] == expected
    assert ws.cell(total_row, 3).value == f"{len(entries)} mô hình"
    names = [ws.cell(r, 2).value for r in range(1, total_row) if isinstance(ws.cell(r, 1).value, int)]
    assert sorted(names) == sorted(e["name"] for e in entries)
    # Compliance (a grid: one row per unit, the registration in column D): the unit that sent after 22/02 is
    # late, the one that sent nothing is overdue on 25/02.
    progress_ws = wb["Tiến độ"]
    assert progress_ws.cell(7, 4).value.startswith("Đăng ký")
    progress = {r[1]: r[3] for r in progress_ws.iter_rows(min_row=9, values_only=True) if isinstance(r[0], int)}
    assert progress[EVIL].startswith("Nộp quá hạn ")
    assert progress["Công đoàn Công ty Cổ phần May Đức Giang"].startswith("Đúng hạn ")
    assert progress["Công đoàn Trường Tiểu học Ái Mộ"].startswith("Quá hạn, chưa nộp")
    late = next(m for m in loaded.export()["messages"] if m["unit_id"] == "eq001")
    assert late["documents"][0]["on_time"] is False
    assert loaded.smtp.messages == []  # without --send nothing is mailed


def test_unit_name_starting_with_equals_stays_text(loaded: Harness) -> None:
    assert cli.main(["--config", str(loaded.cfg_path), "report", "--today", "2022-02-25"]) == 0
    path = loaded.cfg_path.parent / "reports" / "bao-cao-tong-hop-2022-02-25.xlsx"
    wb = load_workbook(path)
    values = [c.value for ws in wb for row in ws.iter_rows() for c in row]
    assert EVIL in values and f"Đơn vị: {EVIL}" in values and "-Tổ dân phòng" in values and "@SUM(A1)" in values
    with zipfile.ZipFile(path) as z:
        xml = "".join(z.read(n).decode("utf-8") for n in z.namelist()
                      if n.startswith("xl/worksheets/sheet") or n == "xl/sharedStrings.xml")
    formulas = re.findall(r"<f[ >].*?</f>", xml)
    assert not any("HYPERLINK" in f or "Tổ dân" in f or "SUM(A1)" in f for f in formulas), formulas
    # The text is there, as a string cell.
    cells = re.findall(r'<c [^>]*t="(?:inlineStr|s|str)"[^>]*>.*?</c>', xml)
    assert any("=HYPERLINK(&quot;http://evil.example/x&quot;" in c or '=HYPERLINK("http://evil' in c for c in cells)


def test_report_send_mails_staff_once_per_occasion(loaded: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        assert cli.main(["--config", str(loaded.cfg_path), "report", "--today", "2022-02-25", "--send"]) == 0
    out = capsys.readouterr().out
    assert "đưa vào hộp thư đi" in out and "đã gửi trước đó" in out
    [sent] = loaded.smtp.messages
    assert sent.rcpt_tos == ["staff@example.org"]
    mail = email.message_from_bytes(sent.raw, policy=policy.default)
    assert "số liệu đến ngày 25/02/2022" in mail["Subject"]
    html = mail.get_body(("html",)).get_content()
    assert "Đơn vị chưa gửi, đã quá hạn" in html and "Công đoàn Trường Tiểu học Ái Mộ" in html
    text = mail.get_body(("plain",)).get_content()
    assert "Tổng số mô hình: 7" in text and "Công đoàn Trường Tiểu học Ái Mộ" in text
    [att] = list(mail.iter_attachments())
    assert att.get_filename() == "bao-cao-tong-hop-2022-02-25.xlsx"
    assert att.get_content_type() == XLSX
    assert att.get_content()[:2] == b"PK"
    assert [(o.purpose, o.key) for o in loaded.ctx.store.outbox_rows("report")] == [
        ("report", "report:manual:2022-02-25")]
