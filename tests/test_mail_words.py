"""The mail units get, read as text: what to do and by when, no contradiction, the office's phone, dates
written as Decree 30/2020 writes them."""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipeline.config import load_config, place_of
from pipeline.forms.rules import load_rules
from pipeline.model import DocumentReading, Finding, Unit
from pipeline.outbox.compose import template_env
from pipeline.outbox.receipts import document_view, receipt_view
from pipeline.plan.campaigns import load_campaigns
from pipeline.plan.deadlines import ObligationState
from pipeline.plan.reminder_text import ReminderPart, render_reminder
from pipeline.plan.vn import vn_date_line, vn_date_long

ROOT = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
ORG = "Liên đoàn Lao động quận Long Biên"
PHONE = "024 3872 1234"


@pytest.fixture(scope="module")
def rules():
    return load_rules(ROOT / "rules")


@pytest.fixture(scope="module")
def env():
    env = template_env(ROOT / "templates")
    env.globals.update(office_phone=PHONE, office_place="Long Biên")
    return env


@pytest.fixture(scope="module")
def registration():
    obligations = load_campaigns(ROOT / "rules", "Asia/Ho_Chi_Minh")[2022].obligations
    return next(o for o in obligations if o.id == "registration")


def _receipt(env, rules, reading: DocumentReading, received: datetime, due: datetime | None) -> tuple[str, str]:
    doc = document_view("tep.xlsx", reading, None, due, arrival=2022, rules=rules)
    view = receipt_view(organisation=ORG, unit_name="CĐCS Phường Ngọc Thụy", received_at=received,
                        subject="Đăng ký", documents=[doc])
    return env.get_template("receipt.txt.j2").render(**view), env.get_template("receipt.html.j2").render(**view)


def _rejected() -> DocumentReading:
    f = Finding("no-category", "error", "Chưa đánh số (1) vào cột phân loại", "ô F9", 9, "GPMB")
    return DocumentReading(kind="registration", period=None, state="rejected", findings=(f,), format="xlsx",
                           campaign=2022)


@pytest.mark.parametrize(("day", "month", "words"), [
    (5, 2, "ngày 05 tháng 02 năm 2022"),
    (20, 3, "ngày 20 tháng 3 năm 2022"),
    (1, 12, "ngày 01 tháng 12 năm 2022"),
    (15, 10, "ngày 15 tháng 10 năm 2022"),
])
def test_decree_30_dates(day: int, month: int, words: str) -> None:
    assert vn_date_long(date(2022, month, day)) == words
    assert vn_date_line("Long Biên", datetime(2022, month, day, 9, 0)) == f"Long Biên, {words}"
    assert vn_date_line("", date(2022, month, day)) == "N" + words[1:]


def test_place_comes_from_the_organisation_and_phone_from_config(tmp_path: Path) -> None:
    assert place_of(ORG) == "Long Biên"
    assert place_of("Liên đoàn Lao động huyện Gia Lâm") == "Gia Lâm"
    assert place_of("Công đoàn ngành Giáo dục") == ""
    text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    text = text.replace("units: units.csv", f"units: {ROOT / 'units.csv'}")
    (tmp_path / "config.yaml").write_text(text + f'\nphone: "{PHONE}"\n', encoding="utf-8")
    cfg = load_config(tmp_path / "config.yaml")
    assert (cfg.phone, cfg.place) == (PHONE, "Long Biên")
    (tmp_path / "config.yaml").write_text(text + '\nplace: "Hà Nội"\n', encoding="utf-8")
    cfg = load_config(tmp_path / "config.yaml")
    assert (cfg.phone, cfg.place) == (None, "Hà Nội")


def test_rejection_on_21_02_says_resend_by_22_02(env, rules, registration) -> None:
    assert registration.due_at is not None and registration.due_at.date() == date(2022, 2, 22)
    text, html = _receipt(env, rules, _rejected(), datetime(2022, 2, 21, 9, 15, tzinfo=TZ), registration.due_at)
    assert "Đề nghị đơn vị gửi lại trước hết ngày 22/02/2022." in text
    assert "Đề nghị đơn vị gửi lại trước hết ngày 22/02/2022." in html
    assert "quá hạn" not in text
    assert text.startswith("Long Biên, ngày 21 tháng 02 năm 2022\n")
    assert "Long Biên, ngày 21 tháng 02 năm 2022" in html


def test_rejection_after_the_deadline_says_it_is_late(env, rules, registration) -> None:
    text, _ = _receipt(env, rules, _rejected(), datetime(2022, 3, 1, 8, 0, tzinfo=TZ), registration.due_at)
    assert "Hạn gửi là ngày 22/02/2022, đến nay đã quá hạn; đề nghị đơn vị gửi lại sớm nhất có thể." in text
    assert "trước hết ngày" not in text
    assert text.startswith("Long Biên, ngày 01 tháng 3 năm 2022\n")


def test_photo_receipt_does_not_contradict_itself(env, rules) -> None:
    finding = rules.finding("needs-review", detail="ảnh .jpg")
    assert finding is not None and "Excel" in finding.message
    photo = DocumentReading(kind="unknown", period=None, state="needs_review", findings=(finding,), format="jpg")
    text, html = _receipt(env, rules, photo, datetime(2022, 2, 21, 9, 15, tzinfo=TZ), None)
    for body in (text, html):
        assert "chưa cần làm gì" not in body and "không cần" not in body
        assert body.count("Excel") == 1  # one invitation to send the spreadsheet, nowhere a "nothing needed"
        assert "ảnh chụp" in body and "báo kết quả cho đơn vị" in body


def test_phone_in_every_signature(env, rules, registration) -> None:
    text, html = _receipt(env, rules, _rejected(), datetime(2022, 2, 21, 9, 15, tzinfo=TZ), registration.due_at)
    assert f"Điện thoại: {PHONE}" in text and f"Điện thoại: {PHONE}" in html
    unit = Unit("cd01", "Công đoàn Phường Bồ Đề", "hcsn", ("a@b.vn",))
    _, text, html = render_reminder(env, unit, [ReminderPart(registration, ObligationState("cd01", "registration",
                                                                                        "missing"), "before-2")],
                                    organisation=ORG, today=date(2022, 2, 20))
    assert f"Điện thoại: {PHONE}" in text and f"Điện thoại: {PHONE}" in html
    notice = dict(action="reject", unit_name=unit.name, organisation=ORG, filename="anh.jpg",
                  received_at=datetime(2022, 2, 21, 9, 15), kind_label="", period_label=None, on_time=None,
                  due=None, reason="Ảnh mờ, không đọc được", form_attached=True)
    for name in ("review_notice.txt.j2", "review_notice.html.j2"):
        assert f"Điện thoại: {PHONE}" in env.get_template(name).render(**notice)
    # without a phone in config, no empty phone line
    bare = template_env(ROOT / "templates")
    assert "Điện thoại" not in bare.get_template("review_notice.txt.j2").render(**notice)


def test_reminder_words_stage_form_and_date(env, registration) -> None:
    unit = Unit("cd01", "Công đoàn Phường Bồ Đề", "hcsn", ("a@b.vn",))
    missing = ObligationState("cd01", "registration", "missing")
    _, text, html = render_reminder(env, unit, [ReminderPart(registration, missing, "before-2")], organisation=ORG,
                                    today=date(2022, 2, 20), form_attached=True)
    for body in (text, html):
        assert "nhắc trước hạn 2 ngày" in body and "before-2" not in body and "mã nhắc" not in body
        assert "gửi kèm thư này" in body
        assert "Long Biên, ngày 20 tháng 02 năm 2022" in body
    _, text, _ = render_reminder(env, unit, [ReminderPart(registration, missing, "after-1")], organisation=ORG,
                                 today=date(2022, 2, 23))
    assert "nhắc sau hạn 1 ngày" in text and "gửi kèm thư này" not in text


def test_review_notice_of_a_rejection_says_by_when_and_is_dated(env, registration) -> None:
    from pipeline.outbox.receipts import resend_by

    decided = datetime(2022, 2, 21, 10, 0, tzinfo=TZ)
    notice = dict(action="reject", unit_name="CĐCS Phường Bồ Đề", organisation=ORG, filename="anh.jpg",
                  received_at=datetime(2022, 2, 20, 9, 15, tzinfo=TZ), kind_label="", period_label=None,
                  on_time=None, due=None, reason="Ảnh mờ, không đọc được", form_attached=True,
                  resend=resend_by(registration.due_at, decided), decided_at=decided)
    for name in ("review_notice.txt.j2", "review_notice.html.j2"):
        body = env.get_template(name).render(**notice)
        assert "Đề nghị đơn vị gửi lại trước hết ngày 22/02/2022." in body
        assert "Long Biên, ngày 21 tháng 02 năm 2022" in body
