"""Reminders end to end: real Dovecot + SMTP, `intake remind --today …` moved across 2022."""
from __future__ import annotations

import email
import re
from datetime import datetime
from email import policy
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest
import yaml
from openpyxl import load_workbook

from conftest import DISTRICT, Harness
from pipeline import cli
from intake_demo import samplemail
from intake_demo import samples

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UBND = "cdcs.ubnd@longbien.gov.vn"
AIMO = "thaimo.longbien@gmail.com"
MAYDG = "congdoan@maydg.com.vn"
ALL_UNITS = ["cq001", "dn027", "peer1", "peer2", "th014"]


def reg_xlsx(unit: str) -> bytes:
    return samples.registration_xlsx(unit, [
        ("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac"),
        ("Phòng TN-MT", "Phân loại rác tại nguồn", "bvmt"),
    ])


def send_form(h: Harness, sender: str, unit: str, when: datetime, mid: str, data: bytes | None = None) -> None:
    raw = samplemail.gmail_message(sender, DISTRICT, "Đăng ký mô hình Dân vận khéo", "Kính gửi LĐLĐ quận.",
                                   [("Biểu đăng ký.xlsx", data or reg_xlsx(unit), XLSX)], message_id=mid)
    h.deliver(raw, when)


def sent(h: Harness) -> list[EmailMessage]:
    return [email.message_from_bytes(m.raw, policy=policy.default) for m in h.smtp.messages]


def reminders_sent(h: Harness) -> list[EmailMessage]:
    return [m for m in sent(h) if "Thư nhắc gửi tự động" in m.get_body(("plain",)).get_content()]


def remind(h: Harness, today: str, *extra: str, capsys: pytest.CaptureFixture[str] | None = None) -> str:
    rc = cli.main(["--config", str(h.cfg_path), "remind", "--today", today, *extra])
    assert rc == 0
    return capsys.readouterr().out if capsys is not None else ""


def stages(h: Harness) -> set[tuple[str, str, str, bool]]:
    return {(r.unit_id, r.obligation_id, r.stage, r.outbox_id is not None) for r in h.ctx.store.reminder_rows()}


def test_reminders_across_the_year_each_stage_once(intake: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    # Before the first stage (15/02 = 7 days before 22/02) nothing is due.
    remind(intake, "2022-02-10")
    assert intake.smtp.messages == [] and stages(intake) == set()

    # 15/02: "before-7" of the registration to every unit, at every address of the unit.
    out = remind(intake, "2022-02-15", capsys=capsys)
    assert "5 thư nhắc" in out
    msgs = reminders_sent(intake)
    assert len(msgs) == 5
    by_to = {m["To"]: m for m in msgs}
    assert set(by_to) == {UBND, AIMO + ", hieutruong.aimo@gmail.com", MAYDG,
                          "doug@example.com, dwsauder@example.com", "doug@penguin.example.com, sender@email.test"}
    first = by_to[UBND]
    assert first["Subject"].startswith("[Liên đoàn Lao động quận Long Biên] Nhắc gửi Đăng ký mô hình")
    assert "22/02/2022" in first["Subject"]
    assert first["Auto-Submitted"] == "auto-generated"
    text = first.get_body(("plain",)).get_content()
    assert "còn 7 ngày" in text and "nhắc trước hạn 7 ngày" in text and "before-7" not in text
    assert {(u, o, s) for u, o, s, _ in stages(intake)} == {(u, "registration", "before-7") for u in ALL_UNITS}

    # The same day again, and after a restart: nothing more.
    remind(intake, "2022-02-15")
    intake.reopen()
    remind(intake, "2022-02-16")
    assert len(reminders_sent(intake)) == 5

    # cq001 sends an accepted form; dn027 sends one with a missing mark (rejected).
    send_form(intake, UBND, "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên", datetime(2022, 2, 18, 9, 0, tzinfo=TZ),
              "<ok-cq001@mail.gmail.com>")
    bad = samples.without_mark(reg_xlsx("Công đoàn Công ty Cổ phần May Đức Giang"), "Phòng TN-MT")
    send_form(intake, MAYDG, "Công đoàn Công ty Cổ phần May Đức Giang", datetime(2022, 2, 19, 10, 0, tzinfo=TZ),
              "<bad-dn027@mail.gmail.com>", bad)
    summary = intake.poll()
    assert summary.error is None and summary.states == {"processed": 2}
    docs = {m["unit_id"]: m["documents"][0] for m in intake.export()["messages"]}
    assert (docs["cq001"]["state"], docs["cq001"]["on_time"]) == ("accepted", True)
    assert docs["dn027"]["state"] == "rejected"
    intake.smtp.clear()

    # 20/02: "before-2" to the units that still owe it: not cq001; dn027 is told what to fix.
    remind(intake, "2022-02-20")
    msgs = reminders_sent(intake)
    assert sorted(m["To"].split(",")[0] for m in msgs) == sorted([AIMO, MAYDG, "doug@example.com",
                                                                   "doug@penguin.example.com"])
    fix = next(m for m in msgs if m["To"] == MAYDG)
    assert "Đề nghị gửi lại" in fix["Subject"]
    fix_text = fix.get_body(("plain",)).get_content()
    assert "chưa đạt yêu cầu" in fix_text and "nhắc trước hạn 2 ngày" in fix_text
    assert "Sheet" in fix_text or "dòng" in fix_text  # where to fix
    intake.smtp.clear()

    # th014 sends after the deadline: recorded, marked late, and never reminded again.
    send_form(intake, AIMO, "Công đoàn Trường Tiểu học Ái Mộ", datetime(2022, 2, 25, 14, 0, tzinfo=TZ),
              "<late-th014@mail.gmail.com>")
    intake.poll()
    late = next(m for m in intake.export()["messages"] if m["unit_id"] == "th014")
    assert (late["documents"][0]["state"], late["documents"][0]["on_time"]) == ("accepted", False)
    intake.smtp.clear()

    # 05/03: the worker was away on 23/02 ("after-1"); the current stage "weekly-1" (02/03) is sent
    # once and "after-1" is recorded as passed over, never sent later.
    remind(intake, "2022-03-05")
    msgs = reminders_sent(intake)
    assert sorted(m["To"].split(",")[0] for m in msgs) == sorted([MAYDG, "doug@example.com",
                                                                   "doug@penguin.example.com"])
    assert all("nhắc hằng tuần lần 1 sau hạn" in m.get_body(("plain",)).get_content() for m in msgs)
    assert all(("gửi lại" if m["To"] == MAYDG else "đã quá hạn") in m["Subject"] for m in msgs)
    rows = stages(intake)
    for unit in ("dn027", "peer1", "peer2"):
        assert (unit, "registration", "after-1", False) in rows
        assert (unit, "registration", "weekly-1", True) in rows
    assert not any(u in ("cq001", "th014") and s in ("after-1", "weekly-1") for u, _, s, _ in rows)
    remind(intake, "2022-03-06")
    assert len(reminders_sent(intake)) == 3

    # The compliance sheet of the staff workbook counts the reminders and shows the late unit.
    rc = cli.main(["--config", str(intake.cfg_path), "report", "--today", "2022-03-06"])
    assert rc == 0
    wb = load_workbook(intake.cfg_path.parent / "reports" / "bao-cao-tong-hop-2022-03-06.xlsx")
    ws = wb["Tiến độ"]  # one row per unit; the registration in column D: standing, day received, reminders
    assert ws.cell(7, 4).value == "Đăng ký mô hình “Dân vận khéo” năm 2022"
    progress = {r[1]: r[3] for r in ws.iter_rows(min_row=9, values_only=True) if isinstance(r[0], int)}
    names = {u.unit_id: u.name for u in intake.ctx.units.units}
    assert re.fullmatch(r"Nộp quá hạn \d\d/\d\d · nhắc 2", progress[names["th014"]])
    assert re.fullmatch(r"Đúng hạn \d\d/\d\d · nhắc 1", progress[names["cq001"]])
    assert re.fullmatch(r"Chưa đạt \d\d/\d\d · nhắc 3", progress[names["dn027"]])
    assert progress[names["peer1"]] == "Quá hạn, chưa nộp · nhắc 3"


def test_dry_run_lists_and_sends_nothing(intake: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    out = remind(intake, "2022-03-08", "--dry-run", capsys=capsys)
    # 08/03: "before-7" of the Q1 report for all five units; the registration's weekly-1 (02/03)
    # would go too. Nothing is recorded or sent.
    assert "[dry-run]" in out
    lines = [line.split("\t") for line in out.splitlines()[1:]]
    assert sorted((u.strip(), o, s) for u, o, s, *_ in lines) == sorted(
        [(u, "registration", "weekly-1") for u in ALL_UNITS] + [(u, "report-q1", "before-7") for u in ALL_UNITS])
    assert any(AIMO in line[-1] and "hieutruong.aimo@gmail.com" in line[-1] for line in lines)
    assert stages(intake) == set()
    assert intake.ctx.store.outbox_rows() == [] and intake.smtp.messages == []
    # The real run afterwards sends them, and Cc's staff when configured to.
    cfg = yaml.safe_load(intake.cfg_path.read_text(encoding="utf-8"))
    cfg["worker"] = {"remind_cc_staff": True}
    intake.cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    intake.reopen()
    remind(intake, "2022-03-08")
    msgs = reminders_sent(intake)
    # One mail per unit: its registration (weekly-1) and its Q1 report (before-7) are due the same day.
    assert len(msgs) == 5 and all("Nhắc gửi 2 văn bản" in m["Subject"] for m in msgs)
    assert all(m["Cc"] == "staff@example.org" for m in msgs)
    assert all("staff@example.org" in r.rcpt_tos for r in intake.smtp.messages)


def test_bounced_reminder_is_recorded_against_the_unit(intake: Harness) -> None:
    remind(intake, "2022-02-15")
    original = next(m for m in intake.smtp.messages if m.rcpt_tos[0] == "congdoan@maydg.com.vn")
    bounce = samplemail.bounce(original.raw, "congdoan@maydg.com.vn", to=DISTRICT,
                               message_id="<bounce-1@mx.google.com>")
    intake.deliver(bounce, datetime(2022, 2, 15, 8, 5, tzinfo=TZ))
    summary = intake.poll()
    assert summary.states == {"ignored": 1}
    [b] = intake.ctx.store.snapshot()["bounces"]
    row = next(o for o in intake.ctx.store.outbox_rows("reminder") if o.unit_id == "dn027")
    assert (b.unit_id, b.outbox_id) == ("dn027", row.id)
    from pipeline.ledger.export import status_text

    status = status_text(intake.ctx.store, intake.ctx.units, intake.ctx.cfg.tz)
    assert "[bounce]" in status and "congdoan@maydg.com.vn" in status and "(đơn vị dn027)" in status
