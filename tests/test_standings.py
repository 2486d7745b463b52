"""Overdue stands out: a report missing after its deadline ("Quá hạn, chưa nộp") is not one still to come
("Chưa đến hạn"), on the desk's overview, units list and unit page (words and style), and the health box turns
amber or red, saying what to do, when no worker runs, the mailbox was never read or the last pass failed."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from desk_helpers import offline_cfg  # noqa: F401  (fixture)
from desk_helpers import Clock, client_login, local, record_document, utc
from pipeline.config import load_config
from pipeline.context import Context
from pipeline.desk import create_app
from pipeline.ledger.schema import iso
from pipeline.plan.campaigns import load_campaigns
from pipeline.plan.deadlines import STANDING_LABELS_VI, STANDINGS, STATES, past_due, standing
from pipeline.ledger.leases import LOCK_NAME

ROOT = Path(__file__).resolve().parents[1]
CSS = ROOT / "pipeline" / "desk" / "static" / "desk.css"


@pytest.fixture(scope="module")
def obligations() -> dict[str, Any]:
    return {o.id: o for o in load_campaigns(ROOT / "rules", "Asia/Ho_Chi_Minh")[2022].obligations}


# --------------------------------------------------------------------------- the display rule, pure


def test_a_missing_report_is_not_due_up_to_its_last_day_and_overdue_the_day_after(obligations) -> None:
    q1 = obligations["report-q1"]  # due 15/03/2022, the 15th counts in full
    assert [standing("missing", q1, d) for d in (date(2022, 3, 14), date(2022, 3, 15), date(2022, 3, 16))] == [
        "not_due", "not_due", "overdue"]
    assert [past_due(q1, d) for d in (date(2022, 3, 15), date(2022, 3, 16))] == [False, True]
    assert STANDING_LABELS_VI["overdue"] == "Quá hạn, chưa nộp" and STANDING_LABELS_VI["not_due"] == "Chưa đến hạn"


def test_every_state_has_one_standing(obligations) -> None:
    q1, commendation = obligations["report-q1"], obligations["commendation"]
    after = date(2022, 4, 1)
    assert [standing(s, q1, after) for s in STATES] == ["overdue", "rejected", "on_time", "late"]
    # waiting for staff wins over "not sent" and "rejected": the unit has sent something
    assert standing("missing", q1, after, under_review=True) == "under_review"
    assert standing("rejected", q1, after, under_review=True) == "under_review"
    assert standing("on_time", q1, after, under_review=True) == "on_time"  # accepted stays accepted
    # no deadline set: neither late nor overdue
    assert [standing(s, commendation, after) for s in ("missing", "on_time")] == ["missing", "submitted"]
    assert not past_due(commendation, after)
    assert set(STANDING_LABELS_VI) == set(STANDINGS)
    with pytest.raises(ValueError):
        standing("lost", q1, after)


# --------------------------------------------------------------------------- the desk, in each state


def desk_on(cfg: Path, when: datetime, prepare: Any = None) -> Any:
    ctx = Context(load_config(cfg))
    if prepare is not None:
        prepare(ctx)
    app = create_app(ctx, clock=Clock(utc(when)), login_delay=0)
    app.testing = False
    client = app.test_client()
    assert client_login(client).status_code == 302
    return client


def unit_cell(html: str, unit_id: str, ob: str) -> tuple[str, str]:
    """(standing, words) of a unit's cell on the units page."""
    row = re.search(rf'<tr id="unit-{unit_id}">(.*?)</tr>', html, re.S).group(1)
    m = re.search(rf'data-obligation="{ob}">(?:<span class="cell-label">[^<]*</span>)?<span class="standing '
                  rf'st-(\w+)" data-standing="\w+"[^>]*>([^<]*)</span>', row)
    return m.group(1), m.group(2)


def test_units_unit_and_overview_pages_tell_overdue_from_not_yet_due(offline_cfg: Path) -> None:  # noqa: F811
    def ledger(ctx: Context) -> None:
        record_document(ctx, sender="cdcs.ubnd@longbien.gov.vn", unit_id="cq001", when=local(2022, 3, 10),
                        mid="<q1@x>", campaign=2022, kind="report", period="2022-Q1", on_time=True)

    # 15/03: the last day for the first quarter's report; 16/03: the day after (each desk logs in on its day:
    # the later log-in clears the sessions that have expired by then)
    before = desk_on(offline_cfg, local(2022, 3, 15, 20), ledger)
    units_before = before.get("/units").get_data(as_text=True)
    overview_before = before.get("/").get_data(as_text=True)
    after = desk_on(offline_cfg, local(2022, 3, 16, 8))
    units_after = after.get("/units").get_data(as_text=True)
    assert unit_cell(units_before, "th014", "report-q1") == ("not_due", "Chưa đến hạn")
    assert unit_cell(units_after, "th014", "report-q1") == ("overdue", "Quá hạn, chưa nộp")
    assert unit_cell(units_after, "cq001", "report-q1") == ("on_time", "Đúng hạn")
    assert unit_cell(units_after, "th014", "report-h1") == ("not_due", "Chưa đến hạn")
    assert unit_cell(units_after, "th014", "commendation") == ("missing", "Chưa nộp")  # no deadline set

    page = after.get("/units/th014").get_data(as_text=True)
    row = re.search(r'<tr id="state-report-q1" data-state="missing" data-standing="overdue">(.*?)</tr>', page, re.S)
    assert row and '<span class="standing st-overdue">Quá hạn, chưa nộp</span>' in row.group(1)
    assert re.search(r'<tr id="state-report-h1" data-state="missing" data-standing="not_due">', page)

    def missing_cell(html: str, ob: str) -> str:
        row = re.search(rf'<tr id="ob-{ob}">(.*?)</tr>', html, re.S).group(1)
        return re.search(r'<td data-standing="\w+" class="n s-missing[^"]*">.*?</td>', row).group(0)

    overview_after = after.get("/").get_data(as_text=True)
    assert missing_cell(overview_before, "report-q1") == (
        '<td data-standing="not_due" class="n s-missing st-not_due">4<span class="flag"> – chưa đến hạn</span></td>')
    assert missing_cell(overview_after, "report-q1") == (
        '<td data-standing="overdue" class="n s-missing st-overdue">4<span class="flag"> – quá hạn</span></td>')
    details = re.search(r'<details class="units-by-state" id="detail-report-q1">(.*?)</details>', overview_after,
                        re.S).group(1)
    assert '<span class="standing st-overdue">Quá hạn, chưa nộp</span> (4)' in details
    assert "Chưa đến hạn" not in details


def test_the_overdue_style_differs_from_not_yet_due_in_more_than_colour() -> None:
    css = CSS.read_text(encoding="utf-8")

    def rule(selector: str) -> str:
        m = re.search(rf"(?m)^[^{{}}]*{re.escape(selector)}\b[^{{]*\{{([^}}]*)\}}", css)
        assert m, f"no CSS rule for {selector}"
        return m.group(1)

    overdue, not_due = rule(".st-overdue"), rule(".st-not_due")
    assert "font-weight:700" in overdue and "background" in overdue and "border" in overdue
    assert "font-weight" not in not_due and "background" not in not_due


# --------------------------------------------------------------------------- the health box


def health_of(client: Any) -> tuple[str, str]:
    html = client.get("/").get_data(as_text=True)
    box = re.search(r'<section class="card health level-(\w+)" id="health"[^>]*>(.*?)</section>', html, re.S)
    assert box, "no health box on the overview"
    return box.group(1), re.sub(r"\s+", " ", box.group(2))


NOW = local(2022, 2, 21, 9)


def worker(ctx: Context, beat: datetime) -> None:
    assert ctx.store.acquire_lease(LOCK_NAME, "holder-1", "may-chu", 4242, 45, utc(beat))


def test_health_is_red_when_no_worker_runs_and_says_what_to_do(offline_cfg: Path) -> None:  # noqa: F811
    level, text = health_of(desk_on(offline_cfg, NOW))
    assert level == "bad"
    assert "Hệ thống đang có sự cố" in text
    assert "Dịch vụ tiếp nhận thư không chạy" in text and "Đề nghị khởi động dịch vụ" in text
    assert "chưa đọc được hộp thư lần nào" in text  # and the mailbox was never read


def test_health_is_amber_while_a_running_worker_has_not_read_the_mailbox_yet(offline_cfg: Path) -> None:  # noqa: F811
    level, text = health_of(desk_on(offline_cfg, NOW, lambda ctx: worker(ctx, NOW - timedelta(seconds=20))))
    assert level == "warn"
    assert "Cần chú ý" in text and "Hệ thống chưa đọc được hộp thư lần nào" in text
    assert "kiểm tra địa chỉ và mật khẩu ứng dụng" in text
    assert "đang chạy trên máy may-chu" in text


def test_health_is_green_when_the_worker_beats_and_reads(offline_cfg: Path) -> None:  # noqa: F811
    def ok(ctx: Context) -> None:
        worker(ctx, NOW - timedelta(seconds=20))
        ctx.store.set_kv("poll.last_ok", iso(utc(NOW - timedelta(minutes=1))), utc(NOW))

    level, text = health_of(desk_on(offline_cfg, NOW, ok))
    assert level == "ok" and "Hệ thống hoạt động bình thường" in text
    assert 'id="health-problems"' not in text


def test_health_is_red_when_the_worker_went_silent(offline_cfg: Path) -> None:  # noqa: F811
    def silent(ctx: Context) -> None:
        worker(ctx, NOW - timedelta(minutes=30))
        ctx.store.set_kv("poll.last_ok", iso(utc(NOW - timedelta(minutes=31))), utc(NOW))

    level, text = health_of(desk_on(offline_cfg, NOW, silent))
    assert level == "bad"
    assert "Không thấy tín hiệu của dịch vụ tiếp nhận thư từ 08:30 ngày 21/02/2022" in text
    assert "khởi động lại dịch vụ" in text


def test_health_is_red_when_the_last_pass_failed(offline_cfg: Path) -> None:  # noqa: F811
    def failing(ctx: Context) -> None:
        worker(ctx, NOW - timedelta(seconds=20))
        ctx.store.set_kv("poll.last_ok", iso(utc(NOW - timedelta(hours=2))), utc(NOW))
        ctx.store.set_kv("poll.last_error", "không kết nối được imap.gmail.com:993", utc(NOW))
        ctx.store.set_kv("poll.failing_since", iso(utc(NOW - timedelta(hours=1))), utc(NOW))

    level, text = health_of(desk_on(offline_cfg, NOW, failing))
    assert level == "bad"
    assert ("Không đọc được hộp thư từ 08:00 ngày 21/02/2022 (lỗi: không kết nối được imap.gmail.com:993)"
            in text)
    assert "mật khẩu ứng dụng của hộp thư Gmail" in text and "sẽ được xử lý khi đọc lại được" in text
    assert "Dịch vụ tiếp nhận thư không chạy" not in text


def test_health_verdict_levels_follow_the_worst_problem() -> None:
    from pipeline.desk.queries import Health

    now = datetime(2022, 2, 21, 2, 0, tzinfo=timezone.utc)
    fine = Health(last_ok=now, failing_since=None, last_error=None, last_error_at=None,
                  outbox={"pending": 0, "failed": 0, "uncertain": 0}, worker_heartbeat=now)
    assert fine.verdict(now).level == "ok" and fine.verdict(now).problems == ()
    stuck = Health(last_ok=now, failing_since=None, last_error=None, last_error_at=None,
                   outbox={"failed": 1, "uncertain": 1}, worker_heartbeat=now)
    assert stuck.verdict(now).level == "warn" and "Có 2 thư gửi đi" in stuck.verdict(now).problems[0]
    assert fine.verdict(now + timedelta(minutes=6)).level == "bad"  # the worker's heartbeat is stale


def test_the_health_bar_macro_says_the_verdict_in_words_and_class(offline_cfg: Path) -> None:  # noqa: F811
    """_health.html's bar (for the top of every page) carries the same verdict as the overview's box."""
    from pipeline.desk.queries import Health

    app = create_app(Context(load_config(offline_cfg)), clock=Clock(utc(NOW)), login_delay=0)
    now = utc(NOW)
    base = dict(last_error=None, last_error_at=None, outbox={"pending": 0, "failed": 0, "uncertain": 0}, tz=NOW.tzinfo)
    cases = {
        "bad": Health(last_ok=None, failing_since=None, **base),
        "warn": Health(last_ok=None, failing_since=None, worker_heartbeat=now, **base),
        "ok": Health(last_ok=now, failing_since=None, worker_heartbeat=now, **base),
    }
    with app.app_context():
        bar = app.jinja_env.get_template("_health.html").module.bar  # type: ignore[attr-defined]
        html = {level: re.sub(r"\s+", " ", str(bar(h, now))) for level, h in cases.items()}
    assert '<div class="healthbar bad" id="healthbar" role="status" data-level="bad">' in html["bad"]
    assert "Hệ thống đang có sự cố</b>: Dịch vụ tiếp nhận thư không chạy" in html["bad"]
    assert "(và 1 vấn đề khác, xem Tổng quan)" in html["bad"]
    assert '<div class="healthbar warn"' in html["warn"] and "Cần chú ý</b>: Hệ thống chưa đọc được" in html["warn"]
    assert '<div class="healthbar" id="healthbar"' in html["ok"] and "Hệ thống hoạt động bình thường" in html["ok"]
    assert "Hộp thư đọc thành công lần cuối: <b>21/02/2022 09:00</b>" in html["ok"]
