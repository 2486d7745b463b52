from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import pytest

from pipeline.plan.deadlines import ObligationState, document_on_time, is_on_time, obligation_for, unit_states
from pipeline.plan.campaigns import load_campaigns
from pipeline.plan.reminder_rules import ReminderPolicy, load_reminder_policy, reminder_schedule, reminders_due
from pipeline.plan.reminder_text import ReminderPart, render_reminder
from pipeline.errors import ConfigError
from pipeline.model import DocumentRecord, Finding, Unit

ROOT = Path(__file__).resolve().parents[1]
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
ORG = "Liên đoàn Lao động quận Long Biên"


def local(y: int, m: int, d: int, hh: int = 9, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=HCM)


CAMPAIGN_HEAD = "year: 2022\ntitle: T\nopens: '26/01'\nforms: [registration, summary, commendation, report]\n"


def load_obligations(path: Path, year: int, tz: str):
    """The obligations of ``year`` from the campaign file at ``path`` (rules/campaigns/<year>.yaml)."""
    return load_campaigns(path.parent.parent, tz)[year].obligations


@pytest.fixture(scope="module")
def obligations():
    return load_campaigns(ROOT / "rules", "Asia/Ho_Chi_Minh")[2022].obligations


@pytest.fixture(scope="module")
def policy():
    return load_reminder_policy(ROOT / "rules" / "reminders.yaml")


def by_id(obligations, oid):
    return next(o for o in obligations if o.id == oid)


UNITS = (
    Unit("cd01", "Công đoàn Phường Bồ Đề", "hcsn", ("bode@example.vn",)),
    Unit("cd02", "Công ty CP May Đức Giang", "doanh_nghiep", ("may@example.vn",)),
    Unit("cd03", "Trường THCS Gia Thụy", "truong_hoc", ("giathuy@example.vn",)),
)


def doc(doc_id, unit_id, kind, received, state="accepted", period=None, superseded=False,
        first_attempt_at=None, findings=()):
    return DocumentRecord(doc_id, unit_id, kind, period, state, received, superseded, first_attempt_at, findings)


def write(tmp_path: Path, text: str) -> Path:
    """A campaign file of 2022 holding ``text`` (its obligations) under the usual head."""
    path = tmp_path / "rules" / "campaigns" / "2022.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CAMPAIGN_HEAD + text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- loading


def test_default_file_loads_the_plans_dates(obligations):
    flat = [(o.id, o.kinds, o.period, o.due_date, o.groups) for o in obligations]
    all_groups = ("hcsn", "doanh_nghiep", "truong_hoc")
    assert flat == [
        ("registration", ("registration", "summary"), None, date(2022, 2, 22), all_groups),
        ("commendation", ("commendation",), None, None, all_groups),
        ("report-q1", ("report",), "2022-Q1", date(2022, 3, 15), all_groups),
        ("report-h1", ("report",), "2022-H1", date(2022, 6, 15), all_groups),
        ("report-q3", ("report",), "2022-Q3", date(2022, 9, 15), all_groups),
        ("report-year", ("report",), "2022-Y", date(2022, 12, 15), all_groups),
    ]
    reg = by_id(obligations, "registration")
    assert reg.due_at == datetime(2022, 2, 22, 23, 59, 59, 999999, tzinfo=HCM)
    assert reg.deadline_text == "chậm nhất ngày 22/02/2022"
    assert reg.title == "Đăng ký mô hình “Dân vận khéo” năm 2022"
    assert not by_id(obligations, "commendation").enabled


def test_year_is_a_parameter(tmp_path):
    obs = load_campaigns(ROOT / "rules", "Asia/Ho_Chi_Minh")[2023].obligations
    assert by_id(obs, "report-h1").period == "2023-H1"
    assert by_id(obs, "report-h1").due_date == date(2023, 6, 15)


def test_inclusive_end_of_day_of_22_02_in_ho_chi_minh(obligations):
    reg = by_id(obligations, "registration")
    assert is_on_time(reg, local(2022, 2, 22, 23, 59)) is True
    assert is_on_time(reg, local(2022, 2, 22, 23, 59, 59)) is True
    assert is_on_time(reg, local(2022, 2, 23, 0, 0)) is False
    # 16:59 UTC is 23:59 in Hanoi (UTC+7): still on time; 17:00 UTC is midnight: late.
    assert is_on_time(reg, datetime(2022, 2, 22, 16, 59, tzinfo=timezone.utc)) is True
    assert is_on_time(reg, datetime(2022, 2, 22, 17, 0, tzinfo=timezone.utc)) is False


def test_report_deadlines_across_the_year(obligations):
    expected = {"report-q1": (3, 15), "report-h1": (6, 15), "report-q3": (9, 15), "report-year": (12, 15)}
    for oid, (month, day) in expected.items():
        ob = by_id(obligations, oid)
        assert is_on_time(ob, local(2022, month, day, 23, 59)), oid
        assert not is_on_time(ob, local(2022, month, day, 23, 59) + timedelta(minutes=1)), oid
        assert is_on_time(ob, local(2022, month, day - 14)), oid


def test_no_date_is_never_late(obligations):
    assert is_on_time(by_id(obligations, "commendation"), local(2022, 12, 31, 23, 0)) is True


def test_naive_time_is_refused(obligations):
    with pytest.raises(ValueError):
        is_on_time(by_id(obligations, "registration"), datetime(2022, 2, 22, 12, 0))


def test_time_exclusive_and_date_forms(tmp_path):
    path = write(tmp_path, """
obligations:
  - {id: a, title: A, kinds: [report], period: "{year}-Q1", due: "15/03", exclusive: true}
  - {id: b, title: B, kinds: [report], period: "{year}-H1", due: "{year}-06-15", time: "17:00"}
  - {id: c, title: C, kinds: [commendation], due: "30/11/{year}", groups: [truong_hoc]}
  - {id: d, title: D, kinds: [report], period: "{year}-Y", due: 2022-12-15}
""")
    a, b, c, d = load_obligations(path, 2022, "Asia/Ho_Chi_Minh")
    assert a.due_at == datetime(2022, 3, 14, 23, 59, 59, 999999, tzinfo=HCM)
    assert a.deadline_text == "trước ngày 15/03/2022"
    assert is_on_time(a, local(2022, 3, 14, 23, 59)) and not is_on_time(a, local(2022, 3, 15, 0, 0))
    assert b.due_at == datetime(2022, 6, 15, 17, 0, tzinfo=HCM)
    assert is_on_time(b, local(2022, 6, 15, 17, 0)) and not is_on_time(b, local(2022, 6, 15, 17, 1))
    assert b.deadline_text == "chậm nhất 17:00 ngày 15/06/2022"
    assert (c.due_date, c.groups) == (date(2022, 11, 30), ("truong_hoc",))
    assert d.due_date == date(2022, 12, 15)


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ("  - {id: q1, title: Q, kinds: [report], period: 2022-Q1, due: '02-30'}",
         ["obligation 'q1'", ".due", "02-30"]),
        ("  - {id: q1, title: Q, kinds: [report], period: 2022-Q1, due: '03-15', colour: red}",
         ["obligation 'q1'", ".colour", "unknown key"]),
        ("  - {id: q1, title: Q, kinds: [memo], due: '03-15'}",
         ["obligation 'q1'", ".kinds", "'memo'"]),
        ("  - {id: q1, title: Q, kinds: [report], period: 2022-Q1, due: '03-15', groups: [xa_phuong]}",
         ["obligation 'q1'", ".groups", "'xa_phuong'"]),
        ("  - {id: q1, title: Q, kinds: [report], due: '03-15'}",
         ["obligation 'q1'", ".period"]),
        ("  - {id: q1, title: Q, kinds: [report], period: 2022-Q1, due: '03-15', time: '25:00'}",
         ["obligation 'q1'", ".time"]),
        ("  - {id: q1, title: Q, kinds: [commendation], exclusive: true}",
         ["obligation 'q1'", ".due", "without a due date"]),
        ("  - {id: q1, title: Q, kinds: [commendation]}\n  - {id: q1, title: R, kinds: [report]}",
         ["obligation 'q1' (obligations[1])", "duplicate id"]),
        ("  - {id: Q 1, title: Q, kinds: [commendation]}",
         ["obligations[0].id", "'Q 1'"]),
        ("  - {id: q1, title: Q, kinds: [commendation]}\ncolour: red",
         ["colour", "unknown key"]),
        ("  - {id: q1, title: Q, kinds: [commendation]}\nreminders: {before_days: [7, -2]}",
         ["reminders.before_days"]),
    ],
)
def test_config_errors_name_file_and_obligation(tmp_path, body, fragments):
    path = write(tmp_path, "obligations:\n" + body + "\n")
    with pytest.raises(ConfigError) as info:
        load_obligations(path, 2022, "Asia/Ho_Chi_Minh")
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_policy_errors_and_defaults(tmp_path):
    path = tmp_path / "reminders.yaml"
    path.write_text("before_days: [7, -2]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="before_days"):
        load_reminder_policy(path)
    path.write_text("every_day: true\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="every_day"):
        load_reminder_policy(path)
    path.write_text("before_days: [7, -2]\nweekly_every_days: -1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_reminder_policy(path)
    assert str(info.value).startswith(f"{path}: before_days[1]: ")
    assert f"{path}: weekly_every_days: " in str(info.value)
    path.write_text("", encoding="utf-8")
    assert load_reminder_policy(path) == ReminderPolicy()
    path.write_text("# all defaults\n", encoding="utf-8")
    assert load_reminder_policy(path) == ReminderPolicy()
    path.write_text("before_days: [2, 7, 7]\nafter_days:\n", encoding="utf-8")
    assert load_reminder_policy(path) == ReminderPolicy(before_days=(7, 2), after_days=())


def test_obligation_for(obligations):
    assert obligation_for("summary", None, obligations).id == "registration"
    assert obligation_for("registration", None, obligations).id == "registration"
    assert obligation_for("report", "2022-H1", obligations).id == "report-h1"
    assert obligation_for("report", None, obligations) is None
    assert obligation_for("report", "2021-Q1", obligations) is None
    assert obligation_for("unknown", None, obligations) is None


# ----------------------------------------------------------------------------- states


def test_states(obligations):
    finding = Finding("no-category", "error", "Dòng chưa đánh dấu phân loại", "Sheet1!F9", 9, "GPMB")
    documents = [
        # cd01: rejected first, then an accepted correction on 21/02 -> on time.
        doc(1, "cd01", "registration", local(2022, 2, 20), "rejected", findings=(finding,)),
        doc(2, "cd01", "registration", local(2022, 2, 21), first_attempt_at=local(2022, 2, 20)),
        # cd02: only a rejected summary.
        doc(3, "cd02", "summary", local(2022, 2, 21, 10), "rejected", findings=(finding,)),
        # cd03: a summary accepted on 23/02 00:00 -> late; an older superseded one does not count.
        doc(4, "cd03", "summary", local(2022, 2, 10), superseded=True),
        doc(5, "cd03", "summary", local(2022, 2, 23, 0, 0)),
        # reports: cd01 on time for Q1, cd02 late for Q1, cd03's report waits for review.
        doc(6, "cd01", "report", local(2022, 3, 15, 23, 59), period="2022-Q1"),
        doc(7, "cd02", "report", local(2022, 3, 16, 8, 0), period="2022-Q1"),
        doc(8, "cd03", "report", local(2022, 3, 14), "needs_review", period="2022-Q1"),
        doc(9, "cd01", "unknown", local(2022, 3, 1)),
    ]
    states = unit_states(obligations, UNITS, documents)
    assert len(states) == 3 * 6
    flat = {k: (s.state, s.document_id) for k, s in states.items() if k[1] in ("registration", "report-q1")}
    assert flat == {
        ("cd01", "registration"): ("on_time", 2),
        ("cd02", "registration"): ("rejected", 3),
        ("cd03", "registration"): ("late", 5),
        ("cd01", "report-q1"): ("on_time", 6),
        ("cd02", "report-q1"): ("late", 7),
        ("cd03", "report-q1"): ("missing", None),
    }
    rejected = states[("cd02", "registration")]
    assert [(f.code, f.location) for f in rejected.findings] == [("no-category", "Sheet1!F9")]
    assert states[("cd03", "report-q1")].under_review_document_id == 8
    assert states[("cd01", "report-h1")].state == "missing"
    assert states[("cd01", "registration")].received_at == local(2022, 2, 21)


def test_first_attempt_date_only_when_configured(obligations):
    documents = [
        doc(1, "cd01", "registration", local(2022, 2, 22, 20), "rejected"),
        doc(2, "cd01", "registration", local(2022, 2, 24), first_attempt_at=local(2022, 2, 22, 20)),
    ]
    units = UNITS[:1]
    assert unit_states(obligations, units, documents)[("cd01", "registration")].state == "late"
    kept = unit_states(obligations, units, documents, keep_first_attempt_date=True)[("cd01", "registration")]
    assert (kept.state, kept.received_at, kept.counted_at) == ("on_time", local(2022, 2, 24), local(2022, 2, 22, 20))
    assert document_on_time(documents[1], obligations) is False
    assert document_on_time(documents[1], obligations, keep_first_attempt_date=True) is True
    assert document_on_time(documents[0], obligations) is None


def test_groups_limit_who_owes(tmp_path):
    path = write(tmp_path, "obligations:\n  - {id: c, title: C, kinds: [commendation], due: '11-30', groups: [truong_hoc]}\n")
    obs = load_obligations(path, 2022, "Asia/Ho_Chi_Minh")
    assert list(unit_states(obs, UNITS, [])) == [("cd03", "c")]


# ----------------------------------------------------------------------------- reminders


def run_year(obligations, policy, documents_by_day, days):
    """Move `today` across the calendar, feeding back what was recorded, like the worker does."""
    sent: set[tuple[str, str, str]] = set()
    log: list[tuple[date, str, str, str]] = []
    superseded: list[tuple[date, str, str, str]] = []
    documents: list[DocumentRecord] = []
    for today in days:
        documents.extend(documents_by_day.get(today, []))
        states = unit_states(obligations, UNITS, documents)
        for item in reminders_due(obligations, policy, states, UNITS, today, sent):
            sent.add((item.unit_id, item.obligation_id, item.stage))
            target = superseded if item.superseded else log
            target.append((today, item.unit_id, item.obligation_id, item.stage))
    return log, superseded


def every_day(start: date, end: date):
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def test_schedule_of_the_registration(obligations, policy):
    schedule = reminder_schedule(by_id(obligations, "registration"), policy)
    assert [(s, d.strftime("%d/%m")) for s, d in schedule] == [
        ("before-7", "15/02"), ("before-2", "20/02"), ("after-1", "23/02"),
        ("weekly-1", "02/03"), ("weekly-2", "09/03"), ("weekly-3", "16/03"), ("weekly-4", "23/03"),
        ("weekly-5", "30/03"), ("weekly-6", "06/04"), ("weekly-7", "13/04"), ("weekly-8", "20/04"),
    ]
    assert reminder_schedule(by_id(obligations, "commendation"), policy) == ()


def test_reminders_across_registration_season(obligations, policy):
    documents_by_day = {
        # cd01 sends on time on 18/02: gets before-7 only.
        date(2022, 2, 18): [doc(1, "cd01", "registration", local(2022, 2, 18))],
        # cd02 sends a rejected summary on 21/02, then an accepted one on 03/03.
        date(2022, 2, 21): [doc(2, "cd02", "summary", local(2022, 2, 21), "rejected")],
        date(2022, 3, 3): [doc(3, "cd02", "summary", local(2022, 3, 3))],
        # cd03 never sends.
    }
    log, superseded = run_year(obligations, policy, documents_by_day, every_day(date(2022, 2, 1), date(2022, 5, 31)))
    registration = [(d.strftime("%d/%m"), u, s) for d, u, o, s in log if o == "registration"]
    assert registration == [
        ("15/02", "cd01", "before-7"), ("15/02", "cd02", "before-7"), ("15/02", "cd03", "before-7"),
        ("20/02", "cd02", "before-2"), ("20/02", "cd03", "before-2"),
        ("23/02", "cd02", "after-1"), ("23/02", "cd03", "after-1"),
        ("02/03", "cd02", "weekly-1"), ("02/03", "cd03", "weekly-1"),
        ("09/03", "cd03", "weekly-2"), ("16/03", "cd03", "weekly-3"), ("23/03", "cd03", "weekly-4"),
        ("30/03", "cd03", "weekly-5"), ("06/04", "cd03", "weekly-6"), ("13/04", "cd03", "weekly-7"),
        ("20/04", "cd03", "weekly-8"),
    ]
    assert superseded == []
    # Each (unit, obligation, stage) at most once, ever.
    keys = [(u, o, s) for _, u, o, s in log]
    assert len(keys) == len(set(keys))
    # Report Q1 (15/03): everyone is missing it in this run.
    q1 = [(d.strftime("%d/%m"), s) for d, s in sorted({(d, s) for d, u, o, s in log if o == "report-q1"})]
    assert q1[:3] == [("08/03", "before-7"), ("13/03", "before-2"), ("16/03", "after-1")]
    # Nothing for the commendation list: the district has set no date.
    assert not [entry for entry in log if entry[2] == "commendation"]


def test_unit_that_submits_is_not_reminded_again(obligations, policy):
    documents = [doc(1, "cd02", "summary", local(2022, 2, 16))]
    states = unit_states(obligations, UNITS, documents)
    due = reminders_due(obligations, policy, states, UNITS, date(2022, 2, 20), set())
    assert [(r.unit_id, r.stage, r.superseded) for r in due if r.obligation_id == "registration"] == [
        ("cd01", "before-7", True), ("cd01", "before-2", False),
        ("cd03", "before-7", True), ("cd03", "before-2", False),
    ]


def test_catch_up_after_missed_days(obligations, policy):
    reg = [by_id(obligations, "registration")]
    states = unit_states(reg, UNITS[:1], [])
    # Worker down from 14/02 to 17/02: before-7 (15/02) is still due on 17/02, before-2 not yet.
    due = reminders_due(reg, policy, states, UNITS[:1], date(2022, 2, 17), set())
    assert [(r.stage, r.stage_date, r.superseded) for r in due] == [("before-7", date(2022, 2, 15), False)]
    # Worker down until 21/02: before-2 has come; before-7 is superseded, never sent.
    due = reminders_due(reg, policy, states, UNITS[:1], date(2022, 2, 21), set())
    assert [(r.stage, r.superseded) for r in due] == [("before-7", True), ("before-2", False)]
    # Once recorded, nothing more that day or the next.
    sent = {("cd01", "registration", "before-7"), ("cd01", "registration", "before-2")}
    assert reminders_due(reg, policy, states, UNITS[:1], date(2022, 2, 21), sent) == []
    assert reminders_due(reg, policy, states, UNITS[:1], date(2022, 2, 22), sent) == []
    # Down from 20/02 to 05/03: only weekly-1 goes out; after-1 is superseded.
    due = reminders_due(reg, policy, states, UNITS[:1], date(2022, 3, 5), sent)
    assert [(r.stage, r.superseded) for r in due] == [("after-1", True), ("weekly-1", False)]


def test_cut_off_and_before_first_stage(obligations, policy):
    reg = [by_id(obligations, "registration")]
    states = unit_states(reg, UNITS[:1], [])
    assert reminders_due(reg, policy, states, UNITS[:1], date(2022, 2, 14), set()) == []
    all_sent = {("cd01", "registration", s) for s, _ in reminder_schedule(reg[0], policy)}
    assert reminders_due(reg, policy, states, UNITS[:1], date(2022, 4, 21), all_sent) == []
    # After the cut-off (22/02 + 60 days = 23/04) nothing is sent, even if a stage was missed.
    late = reminders_due(reg, policy, states, UNITS[:1], date(2022, 4, 24), all_sent - {("cd01", "registration", "weekly-8")})
    assert [(r.stage, r.superseded) for r in late] == [("weekly-8", True)]


def test_needs_review_is_not_reminded_unless_policy_says(obligations, policy):
    q1 = [by_id(obligations, "report-q1")]
    documents = [doc(1, "cd01", "report", local(2022, 3, 10), "needs_review", period="2022-Q1")]
    states = unit_states(q1, UNITS[:1], documents)
    assert reminders_due(q1, policy, states, UNITS[:1], date(2022, 3, 13), set()) == []
    eager = ReminderPolicy(remind_under_review=True)
    assert [r.stage for r in reminders_due(q1, eager, states, UNITS[:1], date(2022, 3, 13), set())] == [
        "before-7", "before-2"
    ]


# ----------------------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def env():
    return jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "templates"))


def test_render_reminder_for_rejected_document(obligations, env):
    unit = Unit("cd03", "Trường THCS <Gia Thụy>", "truong_hoc", ("a@b.vn",))
    state = ObligationState(
        "cd03", "registration", "rejected", 5, local(2022, 2, 20, 8, 30),
        (Finding("no-category", "error", "Chưa đánh số (1) vào cột phân loại", "Sheet1!F9", 9, "GPMB"),
         Finding("empty-model", "error", "Thiếu tên mô hình", None, 11, "Tên mô hình")),
    )
    subject, text, html = render_reminder(env, unit, [ReminderPart(by_id(obligations, "registration"), state, "before-2")], organisation=ORG, today=date(2022, 2, 20)
    )
    assert subject == f"[{ORG}] Đề nghị gửi lại Đăng ký mô hình “Dân vận khéo” năm 2022 (hạn 22/02/2022)"
    assert "Kính gửi: Ban Chấp hành Công đoàn cơ sở Trường THCS <Gia Thụy>" in text
    assert "Sheet1!F9: Chưa đánh số (1) vào cột phân loại" in text
    assert "dòng 11, cột Tên mô hình: Thiếu tên mô hình" in text
    assert "gửi lúc 20/02/2022 08:30" in text
    assert "chậm nhất ngày 22/02/2022" in text
    assert "Trường THCS &lt;Gia Thụy&gt;" in html and "<Gia Thụy>" not in html
    assert "<td style=\"border: 1px solid #000;\">Sheet1!F9</td>" in html


def test_render_reminder_missing_before_and_after(obligations, env):
    unit = Unit("cd01", "Công đoàn Phường Bồ Đề", "hcsn", ("a@b.vn",))
    report = by_id(obligations, "report-h1")
    missing = ObligationState("cd01", "report-h1", "missing")
    subject, text, _ = render_reminder(env, unit, [ReminderPart(report, missing, "before-7")], organisation=ORG, today=date(2022, 6, 8))
    assert subject == f"[{ORG}] Nhắc gửi Báo cáo kết quả thực hiện 6 tháng đầu năm 2022 – hạn 15/06/2022"
    assert text.startswith("Kính gửi: Ban Chấp hành Công đoàn Phường Bồ Đề\n")
    assert "(còn 7 ngày)" in text
    subject, text, _ = render_reminder(env, unit, [ReminderPart(report, missing, "weekly-2")], organisation=ORG)
    assert subject == f"[{ORG}] Đề nghị gửi Báo cáo kết quả thực hiện 6 tháng đầu năm 2022 – đã quá hạn 15/06/2022"
    assert "đã quá hạn" in text and "nhắc hằng tuần lần 2 sau hạn" in text and "weekly-2" not in text
