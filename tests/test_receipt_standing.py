"""Every receipt tells the unit where it stands in the campaign (issue 15, item 5): what is recorded, what
waits for staff, what it still owes and by when.

The view-model (pipeline/outbox/standing.py) is tested directly on the 2022 plan; then end to end on the real
Dovecot and SMTP servers: receipts of mail in one batch and in later passes, and a review notice.
"""
from __future__ import annotations

import email
from datetime import date, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from conftest import DISTRICT, Harness
from intake_demo import samplemail, samples
from pipeline.desk import actions
from pipeline.desk.queue import queue
from pipeline.model import DocumentReading, DocumentRecord, Unit
from pipeline.outbox.compose import template_env
from pipeline.outbox.receipts import receipt_view
from pipeline.outbox.standing import reading_records, standing_view
from pipeline.plan.campaigns import load_campaigns

ROOT = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
CAMPAIGN = load_campaigns(ROOT / "rules", "Asia/Ho_Chi_Minh")[2022]
TITLE = CAMPAIGN.title
UNIT = Unit("cq001", "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên", "hcsn", ("cdcs.ubnd@longbien.gov.vn",))
REG_FORM = "Biểu đăng ký mô hình “Dân vận khéo” năm 2022 (hoặc Biểu tổng hợp Mẫu M2)"
Q1_FORM = "Báo cáo kết quả thực hiện chủ đề công tác năm 2022 – quý I"
H1_FORM = "Báo cáo kết quả thực hiện chủ đề công tác năm 2022 – 6 tháng đầu năm"


def at(m: int, d: int, hh: int = 9, y: int = 2022) -> datetime:
    return datetime(y, m, d, hh, 0, tzinfo=TZ)


def doc(i: int, kind: str, state: str, when: datetime, period: str | None = None) -> DocumentRecord:
    return DocumentRecord(document_id=i, unit_id=UNIT.unit_id, kind=kind, period=period, state=state,
                          received_at=when, campaign=2022)


def view(docs: list[DocumentRecord], today: date, **kw: object) -> dict:
    got = standing_view(CAMPAIGN.obligations, UNIT, docs, today, title=TITLE, **kw)
    assert got is not None
    return got


def lines(v: dict) -> dict[str, str]:
    return {line["obligation"]: line["status"] for line in v["lines"]}


# -- the view-model ----------------------------------------------------------------------------------

def test_registered_in_february_owes_the_first_quarter_report_and_not_the_year_end_one() -> None:
    v = view([doc(1, "registration", "accepted", at(2, 10))], date(2022, 2, 10))
    assert v["heading"] == f"Tình hình gửi văn bản của đơn vị theo {TITLE} (đến ngày 10/02/2022)"
    assert TITLE == "Kế hoạch thực hiện chủ đề công tác năm 2022"
    # the next report (15/03) is within reach; June's, September's, December's and the undated list are not
    assert lines(v) == {"registration": "đã ghi nhận (nhận ngày 10/02/2022), đúng hạn",
                        "report-q1": "chưa gửi, hạn 15/03/2022"}
    assert [line["title"] for line in v["lines"]] == ["Đăng ký mô hình “Dân vận khéo” năm 2022",
                                                      "Báo cáo kết quả thực hiện quý I năm 2022"]
    assert v["summary"] == f"Đơn vị còn phải gửi: {Q1_FORM} (hạn 15/03/2022)."
    assert v["all_sent"] is False


def test_a_late_registration_and_an_overdue_report() -> None:
    v = view([doc(1, "registration", "accepted", at(2, 25))], date(2022, 3, 20))
    assert lines(v) == {"registration": "đã ghi nhận (nhận ngày 25/02/2022), nộp muộn so với hạn 22/02/2022",
                        "report-q1": "chưa gửi, đã quá hạn 15/03/2022"}
    assert v["summary"] == f"Đơn vị còn phải gửi: {Q1_FORM} (đã quá hạn 15/03/2022)."


def test_nothing_sent_yet_lists_what_is_due_first_by_deadline() -> None:
    v = view([], date(2022, 2, 1))
    assert [line["obligation"] for line in v["lines"]] == ["registration", "report-q1"]
    assert v["summary"] == (f"Đơn vị còn phải gửi: {REG_FORM} (hạn 22/02/2022); {Q1_FORM} (hạn 15/03/2022).")


def test_a_rejected_form_is_to_be_sent_again_by_its_deadline_or_at_once_after_it() -> None:
    docs = [doc(1, "registration", "rejected", at(2, 18))]
    v = view(docs, date(2022, 2, 18))
    assert lines(v)["registration"] == "chưa đạt (nhận ngày 18/02/2022), đề nghị gửi lại trước hết ngày 22/02/2022"
    assert v["owed"][0] == f"{REG_FORM} (gửi lại, hạn 22/02/2022)"
    late = view(docs, date(2022, 2, 24))
    assert lines(late)["registration"] == ("chưa đạt (nhận ngày 18/02/2022), đã quá hạn 22/02/2022, "
                                           "đề nghị gửi lại sớm nhất có thể")
    assert late["owed"][0] == f"{REG_FORM} (gửi lại, đã quá hạn 22/02/2022)"
    # accepted after the rejection: recorded, nothing to send again
    fixed = view([*docs, doc(2, "summary", "accepted", at(2, 20))], date(2022, 2, 20))
    assert lines(fixed)["registration"] == "đã ghi nhận (nhận ngày 20/02/2022), đúng hạn"
    assert REG_FORM not in fixed["summary"]


def test_a_document_waiting_for_staff_is_neither_owed_nor_recorded() -> None:
    v = view([doc(1, "registration", "accepted", at(2, 10)), doc(2, "report", "needs_review", at(3, 10), "2022-Q1")],
             date(2022, 3, 10))
    assert lines(v)["report-q1"] == "đã nhận (nhận ngày 10/03/2022), đang chờ cán bộ xem xét"
    assert v["owed"] == []
    assert v["summary"].startswith("Đơn vị đã gửi đủ các văn bản đến hạn.")
    assert ("Đang chờ cán bộ xem xét: Báo cáo kết quả thực hiện quý I năm 2022 (đơn vị sẽ nhận thư báo kết quả)."
            in v["summary"])


def test_everything_due_sent_names_the_next_deadline() -> None:
    docs = [doc(1, "registration", "accepted", at(2, 10)), doc(2, "report", "accepted", at(3, 10), "2022-Q1")]
    v = view(docs, date(2022, 3, 10))
    assert set(lines(v)) == {"registration", "report-q1"}
    assert v["all_sent"] is True and v["owed"] == []
    assert v["summary"] == f"Đơn vị đã gửi đủ các văn bản đến hạn. Văn bản tiếp theo: {H1_FORM} (hạn 15/06/2022)."
    # a month and a half before the next deadline, it is owed again
    assert view(docs, date(2022, 5, 2))["summary"] == f"Đơn vị còn phải gửi: {H1_FORM} (hạn 15/06/2022)."


def test_the_whole_year_sent_and_an_undated_list_sent_too() -> None:
    docs = [doc(1, "registration", "accepted", at(2, 10)), doc(6, "commendation", "accepted", at(11, 20))]
    docs += [doc(i, "report", "accepted", at(m, 10), f"2022-{p}")
             for i, m, p in ((2, 3, "Q1"), (3, 6, "H1"), (4, 9, "Q3"), (5, 12, "Y"))]
    v = view(docs, date(2022, 12, 10))
    assert len(v["lines"]) == 6
    # no deadline set for the commendation list: recorded, neither on time nor late
    assert lines(v)["commendation"] == "đã ghi nhận (nhận ngày 20/11/2022)"
    assert v["summary"] == "Đơn vị đã gửi đủ các văn bản đến hạn."


def test_first_attempt_date_counts_when_the_config_keeps_it() -> None:
    docs = [doc(1, "registration", "rejected", at(2, 20)), doc(2, "registration", "accepted", at(2, 25))]
    assert "nộp muộn" in lines(view(docs, date(2022, 2, 25)))["registration"]
    assert lines(view(docs, date(2022, 2, 25), keep_first_attempt_date=True))["registration"] == (
        "đã ghi nhận (nhận ngày 25/02/2022), đúng hạn")


def test_a_unit_no_obligation_applies_to_has_no_standing() -> None:
    other = Unit("x1", "Công đoàn khác", "khac", ("x@y.vn",))
    assert standing_view(CAMPAIGN.obligations, other, [], date(2022, 2, 10), title=TITLE) is None


def test_a_mails_readings_are_documents_not_recorded_yet() -> None:
    reading = DocumentReading(kind="report", period="2022-Q1", state="accepted", campaign=2022)
    [rec] = reading_records("cq001", [reading], at(3, 1))
    assert (rec.document_id, rec.kind, rec.period, rec.state, rec.campaign) == (0, "report", "2022-Q1", "accepted", 2022)
    assert reading_records(None, [reading], at(3, 1)) == []


def test_receipt_templates_show_the_section_and_leave_it_out_without_one() -> None:
    env = template_env(ROOT / "templates")
    v = view([doc(1, "registration", "accepted", at(2, 10))], date(2022, 2, 10))
    with_it = receipt_view(organisation="LĐLĐ", unit_name=UNIT.name, received_at=at(2, 10), subject="Đăng ký",
                           documents=[], standings=[v])
    text = env.get_template("receipt.txt.j2").render(**with_it)
    html = env.get_template("receipt.html.j2").render(**with_it)
    for body in (text, html):
        assert v["heading"] in body and "chưa gửi, hạn 15/03/2022" in body and v["summary"] in body
    assert "   - Báo cáo kết quả thực hiện quý I năm 2022: chưa gửi, hạn 15/03/2022." in text
    without = receipt_view(organisation="LĐLĐ", unit_name=UNIT.name, received_at=at(2, 10), subject="Đăng ký",
                           documents=[])
    assert "Tình hình gửi văn bản" not in env.get_template("receipt.txt.j2").render(**without)
    assert "Tình hình gửi văn bản" not in env.get_template("receipt.html.j2").render(**without)


# -- end to end ----------------------------------------------------------------------------------------

UBND = "cdcs.ubnd@longbien.gov.vn"      # cq001
AIMO = "thaimo.longbien@gmail.com"      # th014
NAMES = {UBND: UNIT.name, AIMO: "Công đoàn Trường Tiểu học Ái Mộ"}


def send_registration(h: Harness, sender: str, when: datetime, mid: str) -> None:
    data = samples.registration_xlsx(NAMES[sender], [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac")])
    h.deliver(samplemail.gmail_message(sender, DISTRICT, "Đăng ký mô hình Dân vận khéo năm 2022", "Kính gửi LĐLĐ.",
                                       [("Biểu đăng ký.xlsx", data, XLSX)], message_id=mid,
                                       date=when.strftime("%a, %d %b %Y %H:%M:%S %z")), when)


def send_report(h: Harness, sender: str, title: str, when: datetime, mid: str) -> None:
    data = samples.report_docx(NAMES[sender], title=title)
    h.deliver(samplemail.gmail_message(sender, DISTRICT, "Gửi báo cáo", "Kính gửi LĐLĐ.",
                                       [("Bao cao.docx", data, DOCX)], message_id=mid,
                                       date=when.strftime("%a, %d %b %Y %H:%M:%S %z")), when)


def mails_to(h: Harness, addr: str) -> list[EmailMessage]:
    return [email.message_from_bytes(m.raw, policy=policy.default) for m in h.smtp.messages if addr in m.rcpt_tos]


def plain(m: EmailMessage) -> str:
    return m.get_body(("plain",)).get_content()


def rich(m: EmailMessage) -> str:
    return m.get_body(("html",)).get_content()


def test_receipts_tell_each_unit_what_it_still_owes(intake: Harness) -> None:
    # One batch: the registration, then the first-quarter report two days later; the second receipt counts
    # the first mail's form although both are written together.
    send_registration(intake, UBND, at(2, 10), "<reg@ubnd>")
    send_report(intake, UBND, "BÁO CÁO Kết quả thực hiện quý I năm 2022", at(2, 12), "<q1@ubnd>")
    # Ái Mộ sends its report but never registered.
    send_report(intake, AIMO, "BÁO CÁO Kết quả thực hiện quý I năm 2022", at(3, 1), "<q1@aimo>")
    intake.poll()

    reg, q1 = sorted(mails_to(intake, UBND), key=lambda m: m["In-Reply-To"] == "<q1@ubnd>")
    assert reg["In-Reply-To"] == "<reg@ubnd>"
    for body in (plain(reg), rich(reg)):
        assert f"Tình hình gửi văn bản của đơn vị theo {TITLE} (đến ngày 10/02/2022)" in body
        assert "đã ghi nhận (nhận ngày 10/02/2022), đúng hạn" in body
        assert f"Đơn vị còn phải gửi: {Q1_FORM} (hạn 15/03/2022)." in body
    assert "Đăng ký mô hình “Dân vận khéo” năm 2022: đã ghi nhận (nhận ngày 10/02/2022), đúng hạn." in plain(reg)
    assert "Báo cáo kết quả thực hiện quý I năm 2022: chưa gửi, hạn 15/03/2022." in plain(reg)
    for body in (plain(q1), rich(q1)):
        assert "(đến ngày 12/02/2022)" in body
        assert "đã ghi nhận (nhận ngày 12/02/2022), đúng hạn" in body
        assert (f"Đơn vị đã gửi đủ các văn bản đến hạn. Văn bản tiếp theo: {H1_FORM} (hạn 15/06/2022)."
                in body)
        assert "Đơn vị còn phải gửi" not in body

    [aimo] = mails_to(intake, AIMO)
    assert "Đăng ký mô hình “Dân vận khéo” năm 2022: chưa gửi, đã quá hạn 22/02/2022." in plain(aimo)
    assert f"Đơn vị còn phải gửi: {REG_FORM} (đã quá hạn 22/02/2022)." in plain(aimo)

    # A later pass: what is already in the ledger counts, and June's report was due.
    send_report(intake, UBND, "BÁO CÁO Kết quả thực hiện 6 tháng đầu năm 2022", at(6, 20), "<h1@ubnd>")
    intake.poll()
    [h1] = [m for m in mails_to(intake, UBND) if m["In-Reply-To"] == "<h1@ubnd>"]
    text = plain(h1)
    assert "Đăng ký mô hình “Dân vận khéo” năm 2022: đã ghi nhận (nhận ngày 10/02/2022), đúng hạn." in text
    assert "Báo cáo kết quả thực hiện quý I năm 2022: đã ghi nhận (nhận ngày 12/02/2022), đúng hạn." in text
    assert ("Báo cáo kết quả thực hiện 6 tháng đầu năm 2022: đã ghi nhận (nhận ngày 20/06/2022), "
            "nộp muộn so với hạn 15/06/2022." in text)
    assert "Đơn vị đã gửi đủ các văn bản đến hạn. Văn bản tiếp theo:" in text and "(hạn 15/09/2022)." in text


def test_a_review_notice_tells_the_unit_where_it_stands_after_the_decision(intake: Harness) -> None:
    send_registration(intake, UBND, at(2, 10), "<reg@ubnd>")
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Báo cáo quý I (bản scan)", "x",
                                            [("Báo cáo quý I.png", samplemail._png(40, 30), "image/png")],
                                            message_id="<scan@ubnd>"), at(3, 10))
    intake.poll()
    [scan] = [m for m in mails_to(intake, UBND) if m["In-Reply-To"] == "<scan@ubnd>"]
    # the photo (read as the first-quarter report) waits for staff: the receipt does not ask for the report again
    text = plain(scan)
    assert ("Báo cáo kết quả thực hiện quý I năm 2022: đã nhận (nhận ngày 10/03/2022), đang chờ cán bộ xem xét."
            in text)
    assert "Đơn vị còn phải gửi" not in text
    assert "Đang chờ cán bộ xem xét: Báo cáo kết quả thực hiện quý I năm 2022 (đơn vị sẽ nhận thư báo kết quả)." in text
    [item] = queue(intake.ctx)
    actions.accept(intake.ctx, item.target_id, kind="report", period="2022-Q1", actor="hoa",
                   now=at(3, 11))
    [notice] = [m for m in mails_to(intake, UBND) if "đã được cán bộ" in plain(m)]
    # the notice is written before the decision is recorded: its standing counts the decision already
    for body in (plain(notice), rich(notice).replace("<b>", "").replace("</b>", "")):
        assert f"Tình hình gửi văn bản của đơn vị theo {TITLE} (đến ngày 11/03/2022)" in body
        assert "Báo cáo kết quả thực hiện quý I năm 2022: đã ghi nhận (nhận ngày 10/03/2022), đúng hạn" in body
        assert f"Đơn vị đã gửi đủ các văn bản đến hạn. Văn bản tiếp theo: {H1_FORM} (hạn 15/06/2022)." in body
        assert "đang chờ cán bộ xem xét" not in body


def test_a_late_form_of_last_year_shows_both_years(intake: Harness) -> None:
    data = yaml.safe_load(intake.cfg_path.read_text(encoding="utf-8"))
    data["year"] = 2023
    intake.cfg_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    intake.reopen()
    # a 2022 registration form in March 2023: it counts for 2022, and the unit also learns where it stands in 2023
    data = samples.registration_xlsx(UNIT.name, [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac")], year=2022)
    when = at(3, 1, y=2023)
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký mô hình năm 2022 (gửi muộn)", "Kính gửi LĐLĐ.",
                                            [("Biểu đăng ký 2022.xlsx", data, XLSX)], message_id="<late@ubnd>",
                                            date=when.strftime("%a, %d %b %Y %H:%M:%S %z")), when)
    intake.poll()
    [receipt] = mails_to(intake, UBND)
    text = plain(receipt)
    first = text.index(f"theo {TITLE} (đến ngày 01/03/2023)")
    second = text.index("theo Kế hoạch thực hiện chủ đề công tác năm 2023 (đến ngày 01/03/2023)")
    assert first < second
    assert "Đăng ký mô hình “Dân vận khéo” năm 2022: đã ghi nhận (nhận ngày 01/03/2023), nộp muộn so với hạn 22/02/2022." in text
    assert "Đăng ký mô hình “Dân vận khéo” năm 2023: chưa gửi, đã quá hạn 22/02/2023." in text
