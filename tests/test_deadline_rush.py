"""The deadline rush on the real Dovecot and SMTP servers, with a low sending limit: receipts leave before
queued reminders, a unit that sends after its reminder was queued never receives it, several obligations due
the same day make one reminder."""
from __future__ import annotations

import email
import json
from datetime import datetime, timedelta, timezone
from email import policy
from zoneinfo import ZoneInfo

import pytest
import yaml

from conftest import DISTRICT, Harness
from intake_demo import samplemail, samples
from pipeline.plan.reminders import run_reminders
from pipeline.plan.sending import send_due
from pipeline.worker.jobs import run_job

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAYDG = "congdoan@maydg.com.vn"
BACKENDS = ("sqlite", "postgresql")  # the rush runs on both ledgers (conftest.py)


def set_config(h: Harness, **sections: dict[str, object]) -> None:
    data = yaml.safe_load(h.cfg_path.read_text(encoding="utf-8"))
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    h.cfg_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    h.reopen()


def live_at(h: Harness, local: datetime) -> None:
    """The harness's clock (stamps, sending windows, today's date) set to this local time."""
    h.clock_offset = local.astimezone(timezone.utc) - datetime.now(timezone.utc)


def tick(h: Harness, minutes: float = 1) -> None:
    h.clock_offset += timedelta(minutes=minutes)


def sent_purposes(h: Harness) -> list[tuple[str, tuple[str, ...]]]:
    """(purpose, recipients) of every mail the SMTP server accepted, in order."""
    by_mid = {r.smtp_message_id: r.purpose for r in h.ctx.store.outbox_rows()}
    out = []
    for m in h.smtp.messages:
        msg = email.message_from_bytes(m.raw, policy=policy.default)
        out.append((by_mid[msg["Message-ID"]], tuple(sorted(a.lower() for a in m.rcpt_tos))))
    return out


def send_registration(h: Harness, sender: str, unit_name: str, when: datetime, mid: str) -> None:
    data = samples.registration_xlsx(unit_name, [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac")])
    h.deliver(samplemail.gmail_message(sender, DISTRICT, "Đăng ký mô hình Dân vận khéo", "Kính gửi LĐLĐ quận.",
                                       [("Biểu đăng ký.xlsx", data, XLSX)], message_id=mid), when)


@pytest.fixture
def slow(intake: Harness) -> Harness:
    """Sending limited to one mail a minute, as when the account's limit is reached."""
    set_config(intake, smtp={"per_minute": 1, "per_day": 400})
    return intake


def test_receipt_leaves_before_queued_reminders_and_the_unit_never_gets_its_stale_reminder(slow: Harness) -> None:
    h = slow
    morning = datetime(2022, 2, 15, 8, 0, tzinfo=TZ)
    live_at(h, morning)
    summary = run_reminders(h.ctx, clock=h.now)
    assert summary.queued == 5 and summary.outbox["sent"] == 1  # the limit: one this minute, four wait
    first = sent_purposes(h)
    assert first == [("reminder", ("cdcs.ubnd@longbien.gov.vn",))]

    # May Đức Giang sends its form while its reminder waits; it is recorded at once.
    tick(h, 0.2)
    send_registration(h, MAYDG, "Công đoàn Công ty Cổ phần May Đức Giang", h.now(), "<reg@maydg>")
    got = h.poll()
    assert got.new == 1 and got.outbox["sent"] == 0 and got.outbox["waiting"] == 5

    # Minute by minute, as the worker's outbox job does: the receipt first, then the reminders still owed.
    for _ in range(6):
        tick(h)
        send_due(h.ctx, h.now())
    order = sent_purposes(h)
    assert order[1] == ("receipt", (MAYDG,))
    assert [p for p, _ in order[2:]] == ["reminder"] * 3
    assert all(MAYDG not in to for p, to in order if p == "reminder")
    dropped = [r for r in h.ctx.store.outbox_rows("reminder") if r.state == "dropped"]
    assert [json.loads(r.recipients) for r in dropped] == [[MAYDG]]
    assert "đơn vị đã gửi Đăng ký mô hình" in dropped[0].last_error
    # Dropped is kept and shown, never retried: the stage stays recorded, so no later run sends it either.
    tick(h, 60)
    assert run_reminders(h.ctx, clock=h.now).queued == 0
    assert len(h.smtp.messages) == 5


def test_two_obligations_due_the_same_day_make_one_reminder(intake: Harness) -> None:
    h = intake
    # 16/03/2022: the registration's weekly-3 and the Q1 report's after-1 fall on the same day.
    live_at(h, datetime(2022, 3, 16, 8, 0, tzinfo=TZ))
    summary = run_reminders(h.ctx, clock=h.now)
    assert summary.queued == 5 and len(summary.planned) == 10
    assert len(h.smtp.messages) == 5
    msg = next(email.message_from_bytes(m.raw, policy=policy.default) for m in h.smtp.messages
               if [a.lower() for a in m.rcpt_tos] == [MAYDG])
    text = msg.get_body(("plain",)).get_content()
    assert "Nhắc gửi 2 văn bản" in msg["Subject"]
    assert "1. Đăng ký mô hình" in text and "2. Báo cáo kết quả thực hiện quý I" in text
    assert "hạn 22/02/2022 (đã quá hạn)" in text and "hạn 15/03/2022 (đã quá hạn)" in text
    # The registration's blank form with the unit's name filled in; a report has no blank form.
    assert [p.get_filename() for p in msg.iter_attachments()] == [
        "Biểu đăng ký mô hình Dân vận khéo năm 2022 - Công đoàn Công ty Cổ phần May Đức Giang.xlsx"]
    rows = [r for r in h.ctx.store.reminder_rows() if r.unit_id == "dn027" and r.outbox_id is not None]
    assert {(r.obligation_id, r.stage) for r in rows} == {("registration", "weekly-3"), ("report-q1", "after-1")}
    assert len({r.outbox_id for r in rows}) == 1


def test_a_reminder_left_over_night_is_rewritten_for_the_day_and_stops_at_the_next_stage(slow: Harness) -> None:
    h = slow
    set_config(h, smtp={"per_minute": 1, "per_day": 3, "reserve_for_receipts": 2})
    live_at(h, datetime(2022, 2, 15, 8, 0, tzinfo=TZ))
    run_reminders(h.ctx, clock=h.now)
    assert len(h.smtp.messages) == 1  # 3 a day, 2 kept for receipts: one reminder today
    for _ in range(5):
        tick(h)
        send_due(h.ctx, h.now())
    assert len(h.smtp.messages) == 1
    # Next morning the day has room again: the reminder goes, written for that day ("còn 6 ngày").
    tick(h, 24 * 60)
    send_due(h.ctx, h.now())
    assert len(h.smtp.messages) == 2
    text = email.message_from_bytes(h.smtp.messages[1].raw, policy=policy.default).get_body(("plain",)).get_content()
    assert "(còn 6 ngày)" in text
    # On 20/02 "before-2" is the stage: the "before-7" reminders still waiting are dropped, never sent late.
    live_at(h, datetime(2022, 2, 20, 7, 0, tzinfo=TZ))
    send_due(h.ctx, h.now())
    states = sorted(r.state for r in h.ctx.store.outbox_rows("reminder"))
    assert states == ["dropped"] * 3 + ["sent"] * 2 and len(h.smtp.messages) == 2
    assert all("lần nhắc “nhắc trước hạn 7 ngày” đã qua thời điểm gửi" in r.last_error
               for r in h.ctx.store.outbox_rows("reminder") if r.state == "dropped")


def test_the_worker_outbox_job_sends_the_receipt_first(slow: Harness) -> None:
    h = slow
    live_at(h, datetime(2022, 2, 15, 8, 0, tzinfo=TZ))
    run_reminders(h.ctx, clock=h.now)
    tick(h, 0.1)
    send_registration(h, "thaimo.longbien@gmail.com", "Công đoàn Trường Tiểu học Ái Mộ", h.now(), "<reg@aimo>")
    h.poll()
    tick(h)
    run_job("outbox", h.cfg_path, clock=h.now)
    assert sent_purposes(h)[1][0] == "receipt"


def test_staff_get_one_alert_when_receipts_would_wait_too_long(slow: Harness) -> None:
    h = slow
    set_config(h, worker={"receipt_delay_alert_minutes": 2})
    live_at(h, datetime(2022, 2, 21, 9, 0, tzinfo=TZ))
    units = [(u.emails[0], u.name) for u in h.ctx.units.units]
    for i, (addr, name) in enumerate(units):
        send_registration(h, addr, name, h.now(), f"<reg{i}@x>")
    h.poll()  # five receipts, one a minute: the last would leave after four minutes
    alerts = h.ctx.store.outbox_rows("alert")
    assert len(alerts) == 1 and "Thư báo nhận đang phải chờ lâu" in alerts[0].subject
    assert json.loads(alerts[0].recipients) == ["staff@example.org"]
    for _ in range(8):
        tick(h)
        send_due(h.ctx, h.now())
    assert len(h.ctx.store.outbox_rows("alert")) == 1  # one alert for the episode, however long it lasts
    order = [p for p, _ in sent_purposes(h)]
    assert order == ["receipt"] * 5 + ["alert"]  # the alert does not push a receipt back
    assert h.ctx.store.get_kv("alert.receipt_delay") == ""  # over: the next delay alerts again
