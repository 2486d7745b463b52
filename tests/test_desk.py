"""The desk without a browser (Flask's test client): log-in, sessions, CSRF, headers, escaping, every page."""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from desk_helpers import offline_cfg  # noqa: F401  (fixture)
from desk_helpers import ACCOUNTS, Clock, client_login, csrf_in, ingest, local, png, registration
from conftest import DISTRICT, UNITS_CSV
from intake_demo import samplemail
from pipeline.forms.blank import read_marker
from pipeline.config import load_config
from pipeline.desk import create_app
from pipeline.desk.auth import LOGIN_COOKIE, SESSION_COOKIE
from pipeline.ledger.schema import desk_sessions, outbox
from pipeline.context import Context

XLSX = samplemail.XLSX_TYPE
PAGES = ("/", "/review", "/units", "/reports", "/units/cq001")


@pytest.fixture
def desk(offline_cfg: Path) -> Any:
    ctx = Context(load_config(offline_cfg))
    clock = Clock()
    app = create_app(ctx, clock=clock, login_delay=0)
    app.testing = False  # errors go through the desk's own handlers, as in production
    app.clock = clock  # type: ignore[attr-defined]
    app.ctx = ctx  # type: ignore[attr-defined]
    return app


@pytest.fixture
def client(desk: Any) -> Any:
    c = desk.test_client()
    r = client_login(c)
    assert r.status_code == 302 and r.headers["Location"] == "/"
    return c


def session_rows(ctx: Context) -> list[Any]:
    with ctx.store.tx() as c:
        return list(c.execute(sa.select(desk_sessions)))


# --------------------------------------------------------------------------- log-in and sessions


def test_pages_need_a_session(desk: Any) -> None:
    c = desk.test_client()
    for path in (*PAGES, "/mail/1.eml", "/reports/workbook?date=2022-02-25", "/units/download",
                 "/forms/registration.xlsx"):
        r = c.get(path)
        assert r.status_code == 302, path
        assert r.headers["Location"].startswith("/login?next=")
    for path in ("/review/assign", "/review/undo", "/units/upload", "/reports/send", "/logout"):
        r = c.post(path, data={"csrf_token": "x", "message_pk": "1", "unit_id": "cq001"})
        assert r.status_code == 403, path
        assert "Cần đăng nhập" in r.get_data(as_text=True)


def test_login_form_needs_its_csrf_token(desk: Any) -> None:
    c = desk.test_client()
    user, pw = "hoa", ACCOUNTS["hoa"][1]
    assert c.post("/login", data={"username": user, "password": pw}).status_code == 403
    page = c.get("/login")
    token = csrf_in(page.get_data(as_text=True))
    assert c.post("/login", data={"csrf_token": token + "x", "username": user, "password": pw}).status_code == 403
    # the token only counts together with its cookie: another browser cannot replay it
    other = desk.test_client()
    assert other.post("/login", data={"csrf_token": token, "username": user, "password": pw}).status_code == 403
    r = c.post("/login", data={"csrf_token": token, "username": user, "password": pw})
    assert r.status_code == 302
    assert session_rows(desk.ctx)


def test_wrong_password_is_refused_and_repeated_failures_slow_down(desk: Any) -> None:
    c = desk.test_client()
    r = client_login(c, "hoa", "sai-mat-khau")
    assert r.status_code == 401
    assert "Tên đăng nhập hoặc mật khẩu không đúng." in r.get_data(as_text=True)
    assert not any(h.startswith(SESSION_COOKIE + "=") for h in r.headers.getlist("Set-Cookie"))
    assert client_login(c, "khong-co-ai", "x").status_code == 401
    for _ in range(4):
        client_login(c, "hoa", "sai-mat-khau")
    r = client_login(c, "hoa")  # the right password, but too many failures just now
    assert r.status_code == 429
    assert "thử lại sau" in r.get_data(as_text=True)
    assert not session_rows(desk.ctx)
    desk.extensions["intake_desk"].throttle.clock = lambda: 10**9  # a while later
    assert client_login(c, "hoa").status_code == 302


def test_session_cookie_is_httponly_strict_and_only_its_hash_is_stored(desk: Any) -> None:
    c = desk.test_client()
    r = client_login(c)
    cookies = r.headers.getlist("Set-Cookie")
    sess = next(h for h in cookies if h.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in sess and "SameSite=Strict" in sess and "Path=/" in sess
    token = sess.split(";", 1)[0].split("=", 1)[1]
    assert len(token) >= 40
    [row] = session_rows(desk.ctx)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (row.token_hash, row.csrf)
    assert row.username == "hoa"
    # the log-in double-submit cookie is gone once logged in
    assert any(h.startswith(LOGIN_COOKIE + "=;") for h in cookies)


def test_post_without_the_csrf_token_is_refused(client: Any, desk: Any) -> None:
    page = client.get("/reports").get_data(as_text=True)
    token = csrf_in(page)
    before = desk.ctx.store.outbox_rows()
    for data in ({"date": "2022-02-25"}, {"date": "2022-02-25", "csrf_token": ""},
                 {"date": "2022-02-25", "csrf_token": token[:-2] + "xx"}):
        r = client.post("/reports/send", data=data)
        assert r.status_code == 403
        assert "CSRF" in r.get_data(as_text=True)
    assert desk.ctx.store.outbox_rows() == before
    r = client.post("/logout", data={})
    assert r.status_code == 403
    assert client.get("/").status_code == 200  # still logged in


def test_session_expiry_slides_and_then_ends(desk: Any, client: Any) -> None:
    clock = desk.clock
    clock.advance(minutes=20)
    assert client.get("/").status_code == 200  # used: expiry moves 30 minutes ahead
    clock.advance(minutes=20)
    assert client.get("/units").status_code == 200
    clock.advance(minutes=31)
    r = client.get("/units")
    assert r.status_code == 302
    assert "expired=1" in r.headers["Location"]
    assert not session_rows(desk.ctx)
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Phiên làm việc đã hết hạn" in page
    assert client.post("/reports/send", data={"csrf_token": "x"}).status_code == 403


def test_logout_ends_the_session(client: Any, desk: Any) -> None:
    token = csrf_in(client.get("/").get_data(as_text=True))
    r = client.post("/logout", data={"csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"] == "/login"
    assert not session_rows(desk.ctx)
    assert client.get("/").status_code == 302


def test_next_after_login_stays_on_the_desk(desk: Any) -> None:
    c = desk.test_client()
    page = c.get("/login?next=//evil.example/x")
    token = csrf_in(page.get_data(as_text=True))
    r = c.post("/login?next=//evil.example/x", data={"csrf_token": token, "username": "hoa",
                                                     "password": ACCOUNTS["hoa"][1]})
    assert r.headers["Location"] == "/"
    c2 = desk.test_client()
    r = c2.get("/units?q=ai")
    assert r.headers["Location"] == "/login?next=/units?q%3Dai"
    token = csrf_in(c2.get(r.headers["Location"]).get_data(as_text=True))
    r = c2.post(r.headers["Location"], data={"csrf_token": token, "username": "HOA", "password": ACCOUNTS["hoa"][1]})
    assert r.headers["Location"] == "/units?q=ai"


def test_security_headers_on_every_response(client: Any, desk: Any) -> None:
    for path in (*PAGES, "/login", "/static/desk.css", "/nope"):
        r = client.get(path)
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "same-origin"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/nope").status_code == 404
    assert "no-store" in client.get("/").headers["Cache-Control"]
    # no script anywhere: the CSP would block inline script, and none is needed
    for path in PAGES:
        assert "<script" not in client.get(path).get_data(as_text=True)


# --------------------------------------------------------------------------- content


EVIL_NAME = "Công đoàn <script>alert('tên')</script> Phường"
EVIL_SUBJECT = "Gửi biểu <img src=x onerror=alert(1)> đăng ký"
EVIL_FILE = "<b>dk</b>\"'.xlsx"


@pytest.fixture
def evil(desk: Any) -> Any:
    ctx = desk.ctx
    units = ctx.cfg.units_file
    units.write_text(UNITS_CSV + f"ev001,\"{EVIL_NAME}\",hcsn,evil@unit.example.com\n", encoding="utf-8")
    ingest(ctx, samplemail.gmail_message("evil@unit.example.com", DISTRICT, EVIL_SUBJECT, "<script>x</script>",
                                         [(EVIL_FILE, registration(EVIL_NAME), XLSX)], message_id="<ev1@x>",
                                         sender_name="<script>alert('ten')</script>"),
           local(2022, 2, 18))
    ingest(ctx, samplemail.gmail_message("stranger@example.net", DISTRICT, EVIL_SUBJECT, "hi",
                                         [("<svg onload=alert(1)>.png", png(50, 60), "image/png")],
                                         message_id="<ev2@x>", sender_name="<i>Người lạ</i>"),
           local(2022, 2, 19))
    return desk


def test_nothing_from_a_unit_is_rendered_unescaped(evil: Any, client: Any) -> None:
    pages = {p: client.get(p).get_data(as_text=True) for p in (*PAGES, "/units/ev001", "/units?q=script")}
    for path, html in pages.items():
        assert "<script" not in html, path
        assert "<img src=x" not in html, path
        assert "<svg onload" not in html, path
        assert "<b>dk</b>" not in html, path
        assert "<i>Người lạ</i>" not in html, path
    unit = pages["/units/ev001"]
    assert "Công đoàn &lt;script&gt;alert(&#39;tên&#39;)&lt;/script&gt; Phường" in unit
    assert "&lt;img src=x onerror=alert(1)&gt;" in unit
    assert "&lt;script&gt;alert(&#39;ten&#39;)&lt;/script&gt;" in unit
    assert "&lt;script&gt;" in pages["/"] and "&lt;script&gt;" in pages["/units"]
    assert "&lt;script&gt;" in pages["/units?q=script"]


def test_every_page_renders_with_mail_in_the_ledger(desk: Any, client: Any, tmp_path: Path) -> None:
    ctx = desk.ctx
    pk_ok = ingest(ctx, samplemail.gmail_message(
        "cdcs.ubnd@longbien.gov.vn", DISTRICT, "Gửi biểu đăng ký", "Kính gửi",
        [("Biểu đăng ký.xlsx", registration("Công đoàn cơ quan Ủy ban nhân dân quận Long Biên", [
            ("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac"), ("Phòng TN-MT", "Phân loại rác", "bvmt")]),
          XLSX)], message_id="<ok@x>"), local(2022, 2, 16))
    ingest(ctx, samplemail.gmail_message("la@example.net", DISTRICT, "Biểu đăng ký", "x",
                                         [("dk.xlsx", registration("Công đoàn lạ"), XLSX)], message_id="<q@x>"),
           local(2022, 2, 20))
    pages = {p: client.get(p) for p in (*PAGES, "/units/th014")}
    for path, r in pages.items():
        assert r.status_code == 200, path
        assert r.mimetype == "text/html"
    overview = pages["/"].get_data(as_text=True)
    for title in ("Tổng quan", "Tiến độ nộp theo từng nội dung", "Chỉ tiêu của kế hoạch", "Mô hình theo lĩnh vực",
                  "Văn bản nhận được theo tuần", "Tình trạng hệ thống"):
        assert title in overview
    assert overview.count("<svg") >= 2 and "Hạn 22/02" in overview
    assert "1/5 đơn vị" in overview  # one unit of five has registered
    # registration: cq001 on time; the four others missing
    row = re.search(r'<tr id="ob-registration">(.*?)</tr>', overview, re.S).group(1)
    assert [int(n) for n in re.findall(r'class="n[^"]*">(\d+)<', row)] == [1, 0, 0, 4, 0]
    unit = pages["/units/cq001"].get_data(as_text=True)
    assert "Biểu đăng ký.xlsx" in unit and "đã ghi nhận" in unit and "Đúng hạn" in unit
    assert "2 dòng được ghi nhận" in unit
    assert "Thư báo nhận" in unit and "Re: Gửi biểu đăng ký" in unit  # the receipt, still waiting in the outbox
    assert f'href="/mail/{pk_ok}.eml"' in unit
    assert "16/02/2022 09:00" in unit  # local time, dd/mm/yyyy HH:MM

    # the archived original, byte for byte
    r = client.get(f"/mail/{pk_ok}.eml")
    assert r.status_code == 200 and r.mimetype == "message/rfc822"
    assert r.headers["Content-Disposition"] == f"attachment; filename=thu-{pk_ok}.eml"
    assert r.data == ctx.archive.get(ctx.store.message(pk_ok).sha256)
    assert client.get("/mail/9999.eml").status_code == 404

    # the workbook for any date, and the blank forms
    r = client.get("/reports/workbook?date=2022-02-25")
    assert r.status_code == 200 and "bao-cao-tong-hop-2022-02-25.xlsx" in r.headers["Content-Disposition"]
    wb = load_workbook(io.BytesIO(r.data))
    assert wb.sheetnames == ["Tổng hợp", "Khen thưởng", "Tiến độ", "Chỉ tiêu"]
    assert client.get("/reports/workbook?date=25/02/2022").status_code == 400
    for kind in ("registration", "summary", "commendation"):
        r = client.get(f"/forms/{kind}.xlsx")
        assert r.status_code == 200 and read_marker(r.data)["form"] == kind
    r = client.get("/forms/registration.xlsx?unit=th014")
    assert read_marker(r.data)["unit"] == "Công đoàn Trường Tiểu học Ái Mộ"
    assert "filename*=UTF-8''" in r.headers["Content-Disposition"]
    assert client.get("/forms/nope.xlsx").status_code == 404
    r = client.get("/units/download")
    assert r.status_code == 200 and r.data == ctx.cfg.units_file.read_bytes()
    assert client.get("/units/zz999").status_code == 404


def test_units_search_ignores_diacritics_and_sorts_by_name(client: Any) -> None:
    html = client.get("/units?q=ai mo").get_data(as_text=True)
    assert "Công đoàn Trường Tiểu học Ái Mộ" in html and "May Đức Giang" not in html
    html = client.get("/units?q=DUC GIANG").get_data(as_text=True)
    assert "May Đức Giang" in html
    html = client.get("/units").get_data(as_text=True)
    names = re.findall(r'<a href="/units/[^"]+">([^<]+)</a>', html)
    from pipeline.textnorm import fold

    assert names == sorted(names, key=fold)


def test_health_shows_last_poll_last_error_and_outbox_backlog(desk: Any, client: Any) -> None:
    from datetime import datetime, timezone

    from pipeline.ledger.schema import iso

    ctx = desk.ctx
    now = datetime(2022, 2, 21, 2, 0, tzinfo=timezone.utc)
    ctx.store.set_kv("poll.last_ok", iso(now), now)
    html = client.get("/").get_data(as_text=True)
    assert "21/02/2022 09:00" in html
    assert "chờ gửi 0" in html
    ingest(ctx, samplemail.gmail_message("cdcs.ubnd@longbien.gov.vn", DISTRICT, "Biểu", "x",
                                         [("dk.xlsx", registration("Công đoàn cơ quan"), XLSX)], message_id="<h@x>"),
           local(2022, 2, 16))
    ctx.store.set_kv("poll.last_error", "không kết nối được imap.gmail.com:993", now)
    ctx.store.set_kv("poll.failing_since", iso(now), now)
    with ctx.store.tx() as c:
        c.execute(outbox.update().values(state="uncertain"))
    html = client.get("/").get_data(as_text=True)
    assert "không kết nối được imap.gmail.com:993" in html
    assert "đang lỗi từ 21/02/2022 09:00" in html
    assert "chưa rõ đã gửi chưa 1" in html
    assert 'class="healthbar bad"' in html


def test_upload_too_large_is_refused_in_vietnamese(client: Any, desk: Any) -> None:
    token = csrf_in(client.get("/units").get_data(as_text=True))
    before = desk.ctx.cfg.units_file.read_bytes()
    big = b"unit_id,name,group,emails\n" + b"x" * (3 * 1024 * 1024)
    r = client.post("/units/upload", data={"csrf_token": token, "file": (io.BytesIO(big), "units.csv")},
                    content_type="multipart/form-data")
    assert r.status_code == 413
    assert "Tệp tải lên quá lớn" in r.get_data(as_text=True)
    assert desk.ctx.cfg.units_file.read_bytes() == before


def test_weekly_chart_counts_documents_per_week_and_marks_the_deadline(desk: Any) -> None:
    from datetime import timezone

    from pipeline.desk import charts, queries
    from pipeline.model import DocumentRecord

    ob = next(o for o in desk.ctx.obligations if o.id == "registration")
    tz = desk.ctx.cfg.tz

    def doc(i: int, when: Any, kind: str = "registration") -> DocumentRecord:
        return DocumentRecord(document_id=i, unit_id="cq001", kind=kind, period=None, state="accepted",
                              received_at=when.astimezone(timezone.utc))

    docs = [doc(1, local(2022, 2, 14)), doc(2, local(2022, 2, 20, 23, 0)), doc(3, local(2022, 2, 22, 23, 59)),
            doc(4, local(2022, 2, 23, 0, 1)), doc(5, local(2022, 3, 2)), doc(6, local(2022, 2, 15), "report")]
    series = queries.weekly_submissions(ob, docs, tz)
    assert series.total == 5
    weeks = {w.start.isoformat(): (w.before, w.after) for w in series.weeks}
    assert weeks["2022-02-14"] == (2, 0)  # Monday 14/02 to Sunday 20/02
    assert weeks["2022-02-21"] == (1, 1)  # 22/02 23:59 counts, 23/02 00:01 is late
    assert weeks["2022-02-28"] == (0, 1)
    assert series.weeks[0].start.isoformat() == "2022-01-24"  # four weeks before the deadline's week
    chart = charts.week_chart(series, tz)
    i = [w.start.isoformat() for w in series.weeks].index("2022-02-21")
    bar = chart.bars[i]
    assert chart.deadline_label == "Hạn 22/02"
    assert bar.x < chart.deadline_x < bar.x + chart.bar_width + chart.plot_width / len(series.weeks)
    assert bar.h_before == bar.h_after > 0



def test_logging_in_again_replaces_the_old_session(desk: Any, client: Any) -> None:
    [old] = session_rows(desk.ctx)
    # a log-in form left open in another tab, submitted while still logged in
    client.set_cookie(LOGIN_COOKIE, "token-of-the-open-form", path="/login")
    r = client.post("/login", data={"csrf_token": "token-of-the-open-form", "username": "lan",
                                    "password": ACCOUNTS["lan"][1]})
    assert r.status_code == 302
    [new] = session_rows(desk.ctx)
    assert new.token_hash != old.token_hash and new.username == "lan"
    assert "Trần Thị Lan" in client.get("/").get_data(as_text=True)


def test_a_removed_account_loses_its_session(desk: Any, client: Any) -> None:
    import dataclasses

    ctx = desk.ctx
    cfg = ctx.cfg
    ctx.cfg = dataclasses.replace(cfg, desk=dataclasses.replace(
        cfg.desk, accounts=tuple(a for a in cfg.desk.accounts if a.username != "hoa")))
    try:
        assert client.get("/").status_code == 302
        assert not session_rows(ctx)
    finally:
        ctx.cfg = cfg


def test_a_bounced_reminder_is_in_the_queue_and_on_the_units_page(desk: Any, client: Any) -> None:
    from datetime import date

    from pipeline.plan.reminders import run_reminders

    ctx = desk.ctx
    run_reminders(ctx, today=date(2022, 2, 15), flush=False)
    [reminder] = [o for o in ctx.store.outbox_rows("reminder") if o.unit_id == "th014"]
    pk = ingest(ctx, samplemail.bounce(reminder.raw, "hieutruong.aimo@gmail.com", to=DISTRICT,
                                       message_id="<dsn1@mx.google.com>"), local(2022, 2, 15, 8, 5))
    page = client.get("/review").get_data(as_text=True)
    assert 'data-kind="bounce"' in page and "Thư gửi đi bị trả lại" in page
    assert '<span class="count" id="queue-count">1</span>' in client.get("/").get_data(as_text=True)
    assert "hieutruong.aimo@gmail.com" in page and "Công đoàn Trường Tiểu học Ái Mộ" in page
    unit = client.get("/units/th014").get_data(as_text=True)
    assert "Thư gửi đi bị trả lại" in unit and f"thư báo #{pk}" in unit
    assert "Thư nhắc hạn" in unit and "nhắc trước hạn 7 ngày" in unit and "before-7" not in unit
    m = re.search(r'name="target" value="bounce"><input type="hidden" name="target_id" value="(\d+)"', page)
    r = client.post("/review/ignore", data={"csrf_token": csrf_in(page), "target": "bounce",
                                            "target_id": m.group(1), "reason": "đã gọi điện cho đơn vị"})
    assert r.status_code == 302
    page = client.get("/review").get_data(as_text=True)
    assert "đã được bỏ qua" in page and 'data-kind="bounce"' not in page
    assert 'id="queue-count"' not in page  # nothing left: no badge
    assert "đã gọi điện cho đơn vị" in page  # in the history


# --------------------------------------------------------------------------- mail waiting to leave


def _item(key: str, purpose: str, unit_id: str | None = None) -> Any:
    from pipeline.ledger.outbox import OutboxItem

    return OutboxItem(key=key, purpose=purpose, recipients=("cdcs.ubnd@longbien.gov.vn",), subject=f"Thư {key}",
                      smtp_message_id=f"<{key}@x>", raw=b"x", unit_id=unit_id, campaign=2022)


def test_the_desk_shows_what_waits_to_leave_and_when(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small sending limit (2 a minute, 10 a day, 4 of them kept for receipts) with 3 mails sent 20 hours
    ago: the receipts leave now; the reminders only as the day's mail ages out of the 24 hours (3 at 14:00,
    the rest tomorrow at 10:00) and the staff report after them; a stale reminder is shown dropped, with why."""
    from datetime import timedelta

    from conftest import write_config
    from desk_helpers import desk_section

    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "unused")
    path = write_config(tmp_path, imap_port=1, smtp_port=1, extra={"desk": desk_section()},
                        smtp_extra={"per_minute": 2, "per_day": 10, "reserve_for_receipts": 4})
    ctx = Context(load_config(path))
    now = local(2022, 2, 21, 10, 0)
    app = create_app(ctx, clock=Clock(now), login_delay=0)
    client = app.test_client()
    client_login(client)
    html = client.get("/").get_data(as_text=True)
    assert 'id="health-sending"' not in html  # nothing waits: no line in the bar
    assert "Không có thư nào đang chờ gửi." in html
    assert "2 thư/phút, 10 thư trong 24 giờ, trong đó giữ 4 thư cho thư báo nhận" in html

    for n in range(3):
        ctx.store.enqueue(_item(f"old{n}", "receipt"), now - timedelta(hours=20))
    for row in ctx.store.outbox_rows():
        assert ctx.store.claim_outbox(row.id, now - timedelta(hours=20))
        ctx.store.finish_outbox(row.id, "sent", now - timedelta(hours=20))
    for n in range(3):
        ctx.store.enqueue(_item(f"r{n}", "receipt"), now)
    for n in range(5):
        ctx.store.enqueue(_item(f"m{n}", "reminder"), now)
    ctx.store.enqueue(_item("weekly", "report"), now)
    ctx.store.record_reminder("cq001", "registration", "before-7", _item("stale", "reminder", "cq001"), now,
                              campaign=2022)
    [stale] = [o for o in ctx.store.outbox_rows("reminder") if o.unit_id == "cq001"]
    reason = "đơn vị đã gửi Đăng ký mô hình (đã nộp đúng hạn)"
    assert ctx.store.drop_outbox(stale.id, reason, now)

    html = client.get("/").get_data(as_text=True)
    bar = re.search(r'<div class="sending-line" id="health-sending">(.*?)</div>', html, re.S)
    assert bar, "the health bar says what waits"
    assert bar.group(1) == ("9 thư đang chờ gửi — thư báo nhận đi trong vòng 1 phút, thư nhắc hạn cuối cùng dự kiến đi "
                            "ngày mai 10:00, báo cáo cho cán bộ dự kiến đi ngày mai 10:01")
    rows = {m.group(1): re.sub(r"<[^>]+>", "|", m.group(2)) for m in re.finditer(
        r'<tr data-purpose="(\w+)">(.*?)</tr>', html.split('id="sending-kinds"')[1].split("</table>")[0], re.S)}
    assert list(rows) == ["receipt", "reminder", "report"]  # most awaited first
    cells = {p: [c.strip() for c in r.split("|") if c.strip()] for p, r in rows.items()}
    assert cells["receipt"] == ["Thư báo nhận", "3", "trong vòng 1 phút", "trong vòng 1 phút"]
    assert cells["reminder"] == ["Thư nhắc hạn", "5", "hôm nay 14:00", "ngày mai 10:00"]
    assert cells["report"] == ["Báo cáo cho cán bộ", "1", "ngày mai 10:01", "ngày mai 10:01"]
    assert '<b id="sending-sent">3</b> thư' in html  # sent in the last 24 hours
    assert "đã huỷ vì không còn cần gửi 1" in html  # the health box counts it; it waits no more

    unit = client.get("/units/cq001").get_data(as_text=True)
    assert f'<td class="o-dropped" data-label="Tình trạng">đã huỷ (không còn cần gửi) <span class="muted reason">' \
           f'(lý do: {reason})</span></td>' in unit
    assert f'<span class="o-dropped">đã huỷ (không còn cần gửi)</span> <span class="muted reason">(lý do: {reason})' \
           in unit  # and in the unit's reminder stages


def test_when_a_mail_leaves_is_said_as_staff_say_it() -> None:
    from datetime import timedelta

    from pipeline.desk.sending import when_text
    from desk_helpers import TZ

    now = local(2022, 2, 21, 23, 50)
    assert when_text(now, now, TZ) == "trong vòng 1 phút"
    assert when_text(now + timedelta(minutes=5), now, TZ) == "hôm nay 23:55"
    assert when_text(now + timedelta(minutes=25), now, TZ) == "ngày mai 00:15"
    assert when_text(now + timedelta(days=2), now, TZ) == "23/02 23:50"
    assert when_text(None, now, TZ) == "sau 14 ngày"
    from pipeline.desk.app import PURPOSE_LABELS
    from pipeline.desk.sending import KindWaiting, Sending, bar_line

    soon = Sending(now, (KindWaiting("receipt", 2, now, now, 0), KindWaiting("alert", 1, now + timedelta(minutes=1),
                                                                               now + timedelta(minutes=1), 0)),
                   20, 400, 160, 0)
    assert bar_line(soon, PURPOSE_LABELS, TZ) == "3 thư đang chờ gửi — tất cả dự kiến đi trong vòng 1 phút"
    far = Sending(now, (KindWaiting("reminder", 4, now + timedelta(minutes=5), now + timedelta(days=3), 1),), 20, 400,
                  160, 0)
    assert bar_line(far, PURPOSE_LABELS, TZ) == "4 thư đang chờ gửi — thư nhắc hạn cuối cùng dự kiến đi sau 14 ngày"
