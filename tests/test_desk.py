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
    assert "Thư nhắc hạn" in unit and "before-7" in unit
    m = re.search(r'name="target" value="bounce"><input type="hidden" name="target_id" value="(\d+)"', page)
    r = client.post("/review/ignore", data={"csrf_token": csrf_in(page), "target": "bounce",
                                            "target_id": m.group(1), "reason": "đã gọi điện cho đơn vị"})
    assert r.status_code == 302
    page = client.get("/review").get_data(as_text=True)
    assert "đã được bỏ qua" in page and 'data-kind="bounce"' not in page
    assert 'id="queue-count"' not in page  # nothing left: no badge
    assert "đã gọi điện cho đơn vị" in page  # in the history


# --------------------------------------------------------------------------- campaigns: the year in view


def _campaign_2023(rules: Path) -> None:
    """A 2023 plan of its own, as data: another title, and no commendation form (nor its obligation)."""
    import yaml

    plan = yaml.safe_load((rules / "campaigns" / "2022.yaml").read_text(encoding="utf-8"))
    plan.update(year=2023, title="Kế hoạch “Dân vận khéo” năm {year}",
                forms=[f for f in plan["forms"] if f != "commendation"],
                obligations=[o for o in plan["obligations"] if "commendation" not in o["kinds"]])
    (rules / "campaigns" / "2023.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True), encoding="utf-8")


@pytest.fixture
def two_years(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The desk in 2023 (config.yaml's year) over a ledger holding documents of 2022 and 2023."""
    import shutil

    from conftest import write_config
    from desk_helpers import desk_section, record_document, utc
    from pipeline.model import Entry

    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "unused")
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parents[1] / "rules", rules)
    _campaign_2023(rules)
    path = write_config(tmp_path, imap_port=1, smtp_port=1,
                        extra={"year": 2023, "rules": str(rules), "desk": desk_section(session_minutes=30)})
    ctx = Context(load_config(path))
    ubnd, aimo = "cdcs.ubnd@longbien.gov.vn", "hieutruong.aimo@gmail.com"

    def model(name: str, cat: str) -> Entry:
        return Entry(section="collective", name="Tổ công đoàn Văn phòng", model=name, categories=(cat,))

    docs = {}  # message-id → document id
    for mid, kw in {
        "<r22a@x>": dict(sender=ubnd, unit_id="cq001", when=local(2022, 2, 16), campaign=2022, on_time=True,
                         entries=(model("Một cửa thân thiện 2022", "khac"), model("Phân loại rác 2022", "bvmt"))),
        "<r22b@x>": dict(sender=aimo, unit_id="th014", when=local(2022, 2, 18), campaign=2022, on_time=True,
                         entries=(model("Sân trường xanh 2022", "bvmt"),)),
        # 2022's annual report, sent late in January 2023 (before the 2023 plan opened): it counts for 2022
        "<y22@x>": dict(sender=ubnd, unit_id="cq001", when=local(2023, 1, 5), campaign=2022, kind="report",
                        period="2022-Y", on_time=False, filename="Báo cáo năm 2022.docx",
                        subject="Báo cáo tổng kết năm 2022"),
        "<r23@x>": dict(sender=ubnd, unit_id="cq001", when=local(2023, 2, 10), campaign=2023, on_time=True,
                        entries=(model("Mô hình mới 2023", "kinh_te"),)),
        # two photos of signed papers for staff to look at, one of each year
        "<s22@x>": dict(sender=aimo, unit_id="th014", when=local(2023, 1, 10), campaign=2022, kind="unknown",
                        state="needs_review", filename="Ảnh báo cáo 2022.png", subject="Báo cáo năm 2022 (ảnh)"),
        "<s23@x>": dict(sender=ubnd, unit_id="cq001", when=local(2023, 3, 1), campaign=2023, kind="unknown",
                        state="needs_review", filename="Ảnh 2023.png", subject="Ảnh chụp biểu"),
    }.items():
        docs[mid] = record_document(ctx, mid=mid, **kw)[1]
    clock = Clock(utc(local(2023, 3, 10)))
    app = create_app(ctx, clock=clock, login_delay=0)
    app.testing = False
    app.ctx, app.docs = ctx, docs  # type: ignore[attr-defined]
    app.scans = {2022: docs["<s22@x>"], 2023: docs["<s23@x>"]}  # type: ignore[attr-defined]
    c = app.test_client()
    assert client_login(c).status_code == 302
    app.client = c  # type: ignore[attr-defined]
    return app


def _counts(html: str, obligation_id: str) -> list[int]:
    row = re.search(rf'<tr id="ob-{obligation_id}">(.*?)</tr>', html, re.S).group(1)
    return [int(n) for n in re.findall(r'class="n[^"]*">(\d+)<', row)]


def _switch(html: str) -> dict[int, str | None]:
    """The year switch: year → its link (None for the year shown)."""
    box = re.search(r'<div class="years" id="year-switch">(.*?)</div>', html, re.S).group(1)
    out: dict[int, str | None] = {int(y): None for y in re.findall(r'<b aria-current="page" data-year="(\d+)">', box)}
    out.update({int(y): href.replace("&amp;", "&") for href, y in re.findall(r'<a href="([^"]*)" data-year="(\d+)">', box)})
    return out


def test_the_overview_shows_the_configured_year_and_another_on_request(two_years: Any) -> None:
    client = two_years.client
    now = client.get("/").get_data(as_text=True)
    assert "Kế hoạch “Dân vận khéo” năm 2023" in now and "Đang xem số liệu năm" not in now
    assert _switch(now) == {2022: "/?year=2022", 2023: None}
    assert _counts(now, "registration") == [1, 0, 0, 4, 0]  # 2022's registrations do not count for 2023
    assert "1/5 đơn vị" in now and 'id="ob-commendation"' not in now  # 2023's plan has no commendation
    assert "Tổng số mô hình đã đăng ký: <b>1</b>" in now
    assert "<title>Kinh tế: 1</title>" in now and "<title>BVMT: 0</title>" in now
    assert "Đăng ký mô hình “Dân vận khéo” năm 2023 (1 văn bản)" in now and "năm 2022 (" not in now
    assert 'href="/units/cq001"' in now and 'href="/review"' in now

    then = client.get("/?year=2022").get_data(as_text=True)
    assert "Kế hoạch thực hiện chủ đề công tác năm 2022" in then
    assert "Đang xem số liệu năm 2022 (năm hiện tại: 2023)" in then
    assert _switch(then) == {2022: None, 2023: "/"}
    assert _counts(then, "registration") == [2, 0, 0, 3, 0]
    assert _counts(then, "report-year")[:2] == [0, 1]  # the late annual report
    assert "2/5 đơn vị" in then and 'id="ob-commendation"' in then
    assert "Tổng số mô hình đã đăng ký: <b>3</b>" in then
    assert "<title>BVMT: 2</title>" in then and "<title>Kinh tế: 0</title>" in then
    assert "Đăng ký mô hình “Dân vận khéo” năm 2022 (2 văn bản)" in then
    assert "Báo cáo kết quả thực hiện năm 2022 (1 văn bản)" in then
    # every link to a page with figures keeps the year; the configured year explicitly is the default page
    for href in ('href="/?year=2022"', 'href="/units?year=2022"', 'href="/reports?year=2022"',
                 'href="/review?year=2022"', 'href="/units/cq001?year=2022"', 'href="/units/th014?year=2022"'):
        assert href in then, href
    assert 'href="/units/cq001"' not in then
    assert client.get("/?year=2023").get_data(as_text=True).count("Đang xem số liệu năm") == 0


def test_units_and_a_units_page_follow_the_year_and_mark_other_years(two_years: Any) -> None:
    client = two_years.client

    def cell(html: str, unit_id: str, obligation_id: str) -> str:
        row = re.search(rf'<tr id="unit-{unit_id}">(.*?)</tr>', html, re.S).group(1)
        return re.search(rf'<td class="([^"]*)" data-obligation="{obligation_id}">', row).group(1)

    now = client.get("/units").get_data(as_text=True)
    then = client.get("/units?year=2022").get_data(as_text=True)
    assert cell(now, "th014", "registration") == "s-missing" and cell(then, "th014", "registration") == "s-on_time"
    assert cell(now, "cq001", "registration") == "s-on_time" and cell(then, "cq001", "report-year") == "s-late"
    assert 'data-obligation="commendation"' in then and 'data-obligation="commendation"' not in now
    # the search keeps the year: a hidden field in its form, and the switch keeps the search
    searched = client.get("/units?q=ai&year=2022").get_data(as_text=True)
    assert '<input type="hidden" name="year" value="2022">' in searched
    assert _switch(searched) == {2022: None, 2023: "/units?q=ai"}
    assert '<input type="hidden" name="year"' not in now

    def state(html: str, obligation_id: str) -> str:
        return re.search(rf'<tr id="state-{obligation_id}" data-state="([^"]+)"', html).group(1)

    def doc_tag(html: str, doc_id: int) -> str | None:
        row = re.search(rf'<tr id="doc-{doc_id}"(.*?)</tr>', html, re.S).group(1)
        m = re.search(r'data-campaign="(\d+)">tính cho năm \1<', row)
        return m.group(1) if m else None

    docs = two_years.docs
    now = client.get("/units/cq001").get_data(as_text=True)
    then = client.get("/units/cq001?year=2022").get_data(as_text=True)
    assert (state(now, "registration"), state(now, "report-year")) == ("on_time", "missing")
    assert (state(then, "registration"), state(then, "report-year")) == ("on_time", "late")
    assert "Tình trạng nộp năm 2023" in now and "Tình trạng nộp năm 2022" in then
    # the whole mail history on both, each document marked with its year when it is not the one in view
    for html in (now, then):
        assert all(f'id="doc-{docs[m]}"' in html for m in ("<r22a@x>", "<y22@x>", "<r23@x>", "<s23@x>"))
        assert f'id="doc-{docs["<r22b@x>"]}"' not in html  # th014's
    assert doc_tag(now, docs["<y22@x>"]) == "2022" and doc_tag(now, docs["<r22a@x>"]) == "2022"
    assert doc_tag(then, docs["<y22@x>"]) is None and doc_tag(then, docs["<r22a@x>"]) is None
    assert doc_tag(now, docs["<r23@x>"]) is None and doc_tag(then, docs["<r23@x>"]) == "2023"
    assert _switch(then) == {2022: None, 2023: "/units/cq001"}
    assert 'href="/units?year=2022"' in then  # back to the list, same year
    assert 'href="/forms/commendation.xlsx?unit=cq001&amp;year=2022"' in then
    assert "commendation.xlsx" not in now  # not a form of 2023's plan


def test_reports_workbook_and_blank_forms_per_year(two_years: Any) -> None:
    client = two_years.client

    def models(data: bytes) -> set[str]:
        ws = load_workbook(io.BytesIO(data))["Tổng hợp"]
        return {str(v) for row in ws.iter_rows(values_only=True) for v in row if v and "20" in str(v)
                and str(v).startswith(("Một cửa", "Phân loại", "Sân trường", "Mô hình mới"))}

    r = client.get("/reports/workbook?date=2023-03-10")
    assert r.status_code == 200 and "bao-cao-tong-hop-2023-03-10.xlsx" in r.headers["Content-Disposition"]
    assert models(r.data) == {"Mô hình mới 2023"}
    r = client.get("/reports/workbook?date=2023-03-10&year=2022")
    assert r.status_code == 200 and "bao-cao-tong-hop-2022-ngay-2023-03-10.xlsx" in r.headers["Content-Disposition"]
    assert models(r.data) == {"Một cửa thân thiện 2022", "Phân loại rác 2022", "Sân trường xanh 2022"}
    r = client.get("/reports/workbook?date=2022-12-31&year=2022")
    assert "bao-cao-tong-hop-2022-12-31.xlsx" in r.headers["Content-Disposition"]

    page = client.get("/reports?year=2022").get_data(as_text=True)
    assert "Bảng tổng hợp năm 2022" in page and "Biểu mẫu trống năm 2022" in page
    form = re.search(r'<form method="get" action="/reports/workbook\?year=2022"[^>]*id="workbook-form">(.*?)</form>',
                     page, re.S).group(1)
    assert '<input type="hidden" name="year" value="2022">' in form  # a GET form drops its action's query
    assert 'href="/forms/commendation.xlsx?year=2022"' in page
    assert read_marker(client.get("/forms/registration.xlsx?year=2022").data)["year"] == "2022"
    assert read_marker(client.get("/forms/registration.xlsx").data)["year"] == "2023"
    assert client.get("/forms/commendation.xlsx?year=2022").status_code == 200
    r = client.get("/forms/commendation.xlsx")
    assert r.status_code == 404 and "Kế hoạch năm 2023 không có biểu mẫu này." in r.get_data(as_text=True)


@pytest.mark.parametrize("path, status, words", [
    ("/?year=1999", 404, "Không có số liệu năm 1999; có thể xem các năm: 2022, 2023."),
    ("/units?year=2024", 404, "Không có số liệu năm 2024"),
    ("/units/cq001?year=2021", 404, "Không có số liệu năm 2021"),
    ("/reports/workbook?date=2023-03-10&year=1999", 404, "Không có số liệu năm 1999"),
    ("/?year=abc", 400, "Năm không hợp lệ: “abc”"),
    ("/reports?year=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%92", 400, "Năm không hợp lệ"),  # full-width digits
    ("/units?year=20222", 400, "Năm không hợp lệ"),
])
def test_an_unknown_year_gets_the_desks_error_page(two_years: Any, path: str, status: int, words: str) -> None:
    r = two_years.client.get(path)
    html = r.get_data(as_text=True)
    assert r.status_code == status and r.mimetype == "text/html"
    assert words in html and f"Mã lỗi {status}." in html
    assert "Traceback" not in html and "Đang xem số liệu năm" not in html
    assert "Kế hoạch “Dân vận khéo” năm 2023" in html  # the header falls back to the configured year


def test_review_queue_holds_every_year_and_accepts_as_the_documents_campaign(two_years: Any) -> None:
    client, ctx, scans = two_years.client, two_years.ctx, two_years.scans
    page = client.get("/review").get_data(as_text=True)

    def item(html: str, doc_id: int) -> str:
        return re.search(rf'<article [^>]*id="item-needs_review-document-{doc_id}"(.*?)</article>', html, re.S).group(1)

    def options(html: str, name: str) -> list[str]:
        box = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S).group(1)
        return [v for v in re.findall(r'<option value="([^"]*)"', box) if v]

    old, new = item(page, scans[2022]), item(page, scans[2023])
    assert 'data-campaign="2022">năm 2022<' in old and 'data-campaign="2023">năm 2023<' in new
    assert "Ghi nhận cho kế hoạch năm 2022" in old and "Ghi nhận cho kế hoạch năm 2023" in new
    assert options(old, "kind") == ["registration", "summary", "commendation", "report"]
    assert options(new, "kind") == ["registration", "summary", "report"]
    assert options(old, "period") == ["2022-Q1", "2022-H1", "2022-Q3", "2022-Y"]
    assert options(new, "period") == ["2023-Q1", "2023-H1", "2023-Q3", "2023-Y"]
    assert client.get("/review?year=2022").get_data(as_text=True).count('id="item-needs_review-document-') == 2

    def accept(doc_id: int, kind: str, period: str = "") -> str:
        token = csrf_in(client.get("/review").get_data(as_text=True))
        r = client.post("/review/accept", data={"csrf_token": token, "document_id": str(doc_id), "kind": kind,
                                                "period": period})
        assert r.status_code == 302
        return client.get(r.headers["Location"]).get_data(as_text=True)

    assert "Loại văn bản &#39;commendation&#39; không có trong kế hoạch năm 2023" in accept(scans[2023], "commendation")
    refused = accept(scans[2022], "report", "2023-Y")
    assert "Báo cáo kết quả thực hiện cần chọn kỳ báo cáo của năm 2022" in refused
    assert [d.state for d in ctx.store.document_records() if d.document_id in scans.values()] == ["needs_review"] * 2

    done = accept(scans[2022], "report", "2022-Y")
    assert "đã được ghi nhận là Báo cáo kết quả thực hiện (năm 2022), nộp muộn" in done
    then = client.get("/units/th014?year=2022").get_data(as_text=True)
    assert re.search(r'<tr id="state-report-year" data-state="late"', then)
    now = client.get("/units/th014").get_data(as_text=True)
    assert re.search(r'<tr id="state-report-year" data-state="missing"', now)
    [rec] = [d for d in ctx.store.document_records() if d.document_id == scans[2022]]
    assert (rec.kind, rec.period, rec.campaign, rec.state) == ("report", "2022-Y", 2022, "accepted")
    done = accept(scans[2023], "registration")
    assert "đã được ghi nhận là Biểu đăng ký mô hình" in done
    [rec] = [d for d in ctx.store.document_records() if d.document_id == scans[2023]]
    assert (rec.kind, rec.period, rec.campaign) == ("registration", None, 2023)


def test_a_rejection_carries_the_blank_form_of_the_documents_year(two_years: Any) -> None:
    from email import message_from_bytes

    from pipeline.desk import actions

    ctx, scans = two_years.ctx, two_years.scans
    with ctx.store.tx() as c:  # the scan was taken for a registration form of 2022
        from pipeline.ledger.schema import documents

        c.execute(documents.update().where(documents.c.id == scans[2022]).values(kind="registration"))
    res = actions.reject(ctx, scans[2022], reason="Ảnh mờ, đề nghị gửi lại tệp Excel", actor="hoa")
    [row] = [o for o in ctx.store.outbox_rows() if o.id in res.outbox_ids]
    [form] = [p.get_payload(decode=True) for p in message_from_bytes(row.raw).walk() if p.get_filename()]
    assert read_marker(form)["year"] == "2022" and read_marker(form)["form"] == "registration"
