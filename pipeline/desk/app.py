"""The district office's web desk: a small Flask application, served by waitress (pipeline.desk.server).

Pages (Vietnamese): Tổng quan (overview), Cần xử lý (review queue), Đơn vị (units), Báo cáo (reports),
and a page per unit with its whole history. Every page needs a logged-in staff account from config;
every POST needs the session's CSRF token; every template is autoescaped (nothing from a unit is
ever marked safe); responses carry a strict Content-Security-Policy (no script at all).
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import jinja2
from flask import Blueprint, Flask, Response, abort, current_app, g, redirect, render_template, request, send_file, \
    url_for
from werkzeug.exceptions import HTTPException
from werkzeug.security import check_password_hash

from pipeline.desk import review
from pipeline.desk import unitsadmin
from pipeline.config import DeskAccount, load_config
from pipeline.plan.deadlines import STATE_LABELS_VI
from pipeline.desk import charts, queries
from pipeline.desk.auth import CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE, DeskSession, Flashes, LoginThrottle, \
    Sessions, dummy_hash, same
from pipeline.model import DOC_STATE_LABELS, KIND_LABELS, MAIL_STATE_LABELS, period_label
from pipeline.ledger.store import from_iso
from pipeline.textnorm import fold

log = logging.getLogger(__name__)

PROJECT_TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "desk"
STATIC = Path(__file__).resolve().parent / "static"
MAX_UPLOAD = 2 * 1024 * 1024
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")

OUTBOX_STATE_LABELS = {"pending": "chờ gửi", "sending": "đang gửi", "sent": "đã gửi",
                       "failed": "gửi lỗi", "uncertain": "chưa rõ đã gửi chưa", "cancelled": "đã huỷ"}
DOC_LABELS = {**DOC_STATE_LABELS, "ignored": "cán bộ đã bỏ qua"}
PURPOSE_LABELS = {"receipt": "Thư báo nhận", "reminder": "Thư nhắc hạn", "report": "Báo cáo cho cán bộ",
                  "alert": "Cảnh báo", "notice": "Thông báo"}
QUEUE_KIND_LABELS = {"quarantined": "Thư chưa rõ đơn vị", "spoof": "Nghi giả mạo",
                     "needs_review": "Văn bản chờ xem xét", "bounce": "Thư gửi đi bị trả lại",
                     "error": "Thư lỗi"}
ACTION_LABELS = {"assign": "Gán cho đơn vị", "release": "Cho qua", "accept": "Chấp nhận", "reject": "Trả lại",
                 "ignore": "Bỏ qua", "undo": "Hoàn tác", "units_replace": "Thay danh sách đơn vị"}
GROUP_LABELS = {"hcsn": "Khối HCSN", "doanh_nghiep": "Khối doanh nghiệp", "truong_hoc": "Khối trường học"}
ACCEPT_KINDS = review.ACCEPT_KINDS


class DeskFlask(Flask):
    jinja_options = {**Flask.jinja_options, "undefined": jinja2.StrictUndefined,
                     "trim_blocks": True, "lstrip_blocks": True}

    def select_jinja_autoescape(self, filename: str | None) -> bool:
        return True  # every template, whatever its name: unit text is never trusted


@dataclass
class Desk:
    ctx: Any
    clock: Callable[[], datetime]
    sessions: Sessions
    throttle: LoginThrottle
    flashes: Flashes

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        return self.now().astimezone(self.ctx.cfg.tz).date()


def desk() -> Desk:
    return current_app.extensions["intake_desk"]  # type: ignore[no-any-return]


def create_app(source: Any, *, clock: Callable[[], datetime] | None = None,
               login_delay: float = 0.5) -> Flask:
    """The desk for a worker Context, or for a config file path (a Context is built from it)."""
    from pipeline.context import Context

    ctx = Context(load_config(source)) if isinstance(source, (str, Path)) else source
    clock = clock or (lambda: datetime.now(timezone.utc))
    app = DeskFlask(__name__, static_folder=str(STATIC), static_url_path="/static", template_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=MAX_UPLOAD, SESSION_COOKIE_NAME="intake_desk_unused",
                      SEND_FILE_MAX_AGE_DEFAULT=0)
    folders = [str(p) for p in (ctx.cfg.templates_dir / "desk", PROJECT_TEMPLATES) if p.is_dir()]
    app.jinja_loader = jinja2.FileSystemLoader(list(dict.fromkeys(folders)))  # type: ignore[assignment]
    app.extensions["intake_desk"] = Desk(ctx, clock, Sessions(ctx.store, ctx.cfg.desk.session_minutes, clock),
                                         LoginThrottle(delay=login_delay), Flashes())
    _filters(app, ctx)
    app.register_blueprint(bp)
    return app


# --------------------------------------------------------------------------- filters


def _filters(app: Flask, ctx: Any) -> None:
    tz = ctx.cfg.tz

    def as_dt(value: Any) -> datetime | None:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            return from_iso(value)
        return value  # type: ignore[no-any-return]

    def vn_time(value: Any) -> str:
        dt = as_dt(value)
        return dt.astimezone(tz).strftime("%d/%m/%Y %H:%M") if dt else ""

    def vn_date(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            value = value.astimezone(tz).date()
        return value.strftime("%d/%m/%Y")  # type: ignore[no-any-return]

    app.jinja_env.filters.update(
        vn_time=vn_time, vn_date=vn_date,
        state_label=lambda s: STATE_LABELS_VI.get(s, s),
        kind_label=lambda k: KIND_LABELS.get(k, k or ""),
        period_label=lambda p: period_label(p) or "",
        mail_state=lambda s: MAIL_STATE_LABELS.get(s, s),
        doc_state=lambda s: DOC_LABELS.get(s, s),
        outbox_state=lambda s: OUTBOX_STATE_LABELS.get(s, s or ""),
        purpose=lambda s: PURPOSE_LABELS.get(s, s),
        queue_kind=lambda s: QUEUE_KIND_LABELS.get(s, s),
        action_label=lambda s: ACTION_LABELS.get(s, s),
        group_label=lambda s: GROUP_LABELS.get(s, s),
        recipients=lambda row: ", ".join(queries.recipients(row)),
        percent=lambda x: f"{x * 100:.1f}%".replace(".", ","),
        num=lambda x: f"{x:.1f}".replace(".", ","),
    )


# --------------------------------------------------------------------------- session, CSRF, headers

bp = Blueprint("desk", __name__)
PUBLIC = {"desk.login", "static"}


def _account(username: str) -> DeskAccount | None:
    return desk().ctx.cfg.desk.account(username)


@bp.before_app_request
def _authenticate() -> Any:
    g.session = None
    g.account = None
    if request.endpoint == "static":
        return None
    d = desk()
    sess, expired = d.sessions.lookup(request.cookies.get(SESSION_COOKIE))
    if sess is not None:
        account = _account(sess.username)
        if account is None:  # the account was removed from config: its sessions end
            d.sessions.delete(request.cookies.get(SESSION_COOKIE))
            sess = None
        else:
            g.session, g.account = sess, account
    g.expired = expired
    if request.endpoint in PUBLIC:
        return None
    if g.session is None:
        if request.method in ("GET", "HEAD"):
            target = request.full_path if request.query_string else request.path
            return redirect(url_for("desk.login", next=target, expired=1 if expired else None))
        abort(403, "Cần đăng nhập trước khi thực hiện thao tác này.")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        if not same(request.form.get(CSRF_FIELD), g.session.csrf):
            abort(403, "Thiếu hoặc sai mã bảo vệ biểu mẫu (CSRF). Hãy tải lại trang rồi thử lại.")
    return None


@bp.after_app_request
def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.endpoint != "static":
        resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.app_context_processor
def _common() -> dict[str, Any]:
    d = desk()
    sess: DeskSession | None = g.get("session")
    out: dict[str, Any] = {
        "organisation": d.ctx.cfg.organisation, "year": d.ctx.cfg.year, "account": g.get("account"),
        "csrf_field": CSRF_FIELD, "csrf_token": sess.csrf if sess else "", "flashes": [], "health": None,
        "now": d.now(), "nav": request.endpoint or "", "queue_count": 0,
    }
    if sess is not None:
        out["flashes"] = d.flashes.take(sess.token_hash)
        try:
            out["health"] = queries.health(d.ctx)
        except Exception:  # the page still renders when the database is busy
            log.exception("health")
        try:
            out["queue_count"] = len(review.queue(d.ctx))
        except Exception:
            log.exception("queue count")
    return out


def flash(category: str, text: str) -> None:
    sess: DeskSession | None = g.get("session")
    if sess is not None:
        desk().flashes.add(sess.token_hash, category, text)


def _safe_next(target: str | None) -> str:
    if not target:
        return url_for("desk.overview")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("desk.overview")
    return target


def _cookie_secure() -> bool:
    return request.is_secure


# --------------------------------------------------------------------------- log in / out


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    d = desk()
    if request.method == "GET":
        if g.session is not None:
            return redirect(_safe_next(request.args.get("next")))
        return _login_page(expired=bool(request.args.get("expired")) or g.get("expired", False))
    if not same(request.form.get(CSRF_FIELD), request.cookies.get(LOGIN_COOKIE)):
        abort(403, "Thiếu hoặc sai mã bảo vệ biểu mẫu đăng nhập. Hãy tải lại trang đăng nhập rồi thử lại.")
    username = (request.form.get("username") or "").strip()[:120]
    password = request.form.get("password") or ""
    keys = (f"user:{fold(username)}", f"addr:{request.remote_addr or '?'}")
    wait = d.throttle.wait_seconds(keys)
    if wait:
        return _login_page(error=f"Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {wait} giây.",
                           username=username, status=429)
    account = _account(username) if username else None
    ok = check_password_hash(account.password_hash if account else dummy_hash(), password)
    if account is None or not ok or not password:
        d.throttle.failed(keys)
        log.warning("desk: failed log-in for %r from %s", username, request.remote_addr)
        return _login_page(error="Tên đăng nhập hoặc mật khẩu không đúng.", username=username, status=401)
    d.throttle.succeeded(keys)
    d.sessions.delete(request.cookies.get(SESSION_COOKIE))  # a session from before never lives on beside the new one
    token, _sess = d.sessions.create(account.username)
    log.info("desk: %s logged in from %s", account.username, request.remote_addr)
    resp = redirect(_safe_next(request.args.get("next") or request.form.get("next")))
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", secure=_cookie_secure(), path="/")
    resp.delete_cookie(LOGIN_COOKIE, path="/login", samesite="Strict", httponly=True, secure=_cookie_secure())
    return resp


def _login_page(*, error: str | None = None, username: str = "", expired: bool = False, status: int = 200) -> Any:
    import secrets

    token = request.cookies.get(LOGIN_COOKIE)
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(32)
    html = render_template("login.html", error=error, username=username, expired=expired, login_token=token,
                           next=request.args.get("next") or "", no_accounts=not desk().ctx.cfg.desk.accounts)
    resp = Response(html, status=status, mimetype="text/html")
    resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", secure=_cookie_secure(), path="/login")
    return resp


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    d = desk()
    d.sessions.delete(request.cookies.get(SESSION_COOKIE))
    d.flashes.drop(g.session.token_hash)
    resp = redirect(url_for("desk.login"))
    resp.delete_cookie(SESSION_COOKIE, path="/", samesite="Strict", httponly=True, secure=_cookie_secure())
    return resp


# --------------------------------------------------------------------------- errors


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    messages = {
        400: "Yêu cầu không hợp lệ.",
        403: "Yêu cầu bị từ chối.",
        404: "Không tìm thấy trang hoặc dữ liệu được yêu cầu.",
        405: "Thao tác không được phép ở địa chỉ này.",
        413: f"Tệp tải lên quá lớn (tối đa {MAX_UPLOAD // (1024 * 1024)} MB).",
        429: "Quá nhiều yêu cầu.",
    }
    code = exc.code or 500
    detail = exc.description if exc.description and exc.description != type(exc).description else None
    html = render_template("error.html", code=code, title=messages.get(code, "Có lỗi xảy ra."), detail=detail)
    return Response(html, status=code, mimetype="text/html")


@bp.app_errorhandler(Exception)
def _server_error(exc: Exception) -> Any:
    if isinstance(exc, HTTPException):  # pragma: no cover - handled above
        return _http_error(exc)
    log.exception("desk: error on %s %s", request.method, request.path)
    html = render_template("error.html", code=500, title="Lỗi hệ thống.",
                           detail="Thao tác chưa thực hiện được do lỗi nội bộ; chi tiết đã được ghi vào nhật ký "
                                  "(log) của dịch vụ.")
    return Response(html, status=500, mimetype="text/html")


# --------------------------------------------------------------------------- Tổng quan


@bp.route("/")
def overview() -> Any:
    from pipeline.plan import reports
    from pipeline.plan.staffreport import report_data

    d = desk()
    ctx = d.ctx
    today = d.today()
    docs = ctx.store.document_records()
    st = queries.states(ctx, docs)
    views = queries.obligation_views(ctx, st)
    data = report_data(ctx, today)
    head = reports.headline(data)
    category_chart = charts.hbar_chart(list(head.models_by_category))
    week_charts, no_documents = [], []
    for ob in ctx.obligations:
        series = queries.weekly_submissions(ob, docs, ctx.cfg.tz)
        if series.total and series.weeks:
            week_charts.append(charts.week_chart(series, ctx.cfg.tz))
        else:
            no_documents.append(ob)
    return render_template("overview.html", views=views, head=head, data=data, today=today,
                           category_chart=category_chart, week_charts=week_charts, no_documents=no_documents,
                           units=queries.sort_units(ctx.units.units))


# --------------------------------------------------------------------------- a unit


@bp.route("/units/<unit_id>")
def unit(unit_id: str) -> Any:
    from pipeline.forms.blank import FORMS

    ctx = desk().ctx
    u = ctx.units.by_id(unit_id)
    if u is None:
        abort(404, f"Không có đơn vị mã {unit_id} trong danh sách hiện tại.")
    st = queries.states(ctx)
    rows = [(ob, queries.short_title(ob), st.get((u.unit_id, ob.id))) for ob in ctx.obligations]
    history = queries.unit_history(ctx, u)
    actions = queries.review_history(ctx, unit_id=u.unit_id)
    obligations = {ob.id: ob for ob in ctx.obligations}
    return render_template("unit.html", unit=u, rows=rows, history=history, actions=actions,
                           obligations=obligations, forms=FORMS)


@bp.route("/mail/<int:pk>.eml")
def original(pk: int) -> Any:
    ctx = desk().ctx
    row = queries.message_row(ctx, pk)
    if row is None:
        abort(404, f"Không có thư #{pk}.")
    try:
        raw = ctx.archive.get(row.sha256)
    except OSError as exc:
        log.error("desk: archived copy of message %s unreadable: %s", pk, exc)
        abort(404, f"Không đọc được bản lưu trữ của thư #{pk}.")
    return send_file(io.BytesIO(raw), mimetype="message/rfc822", as_attachment=True,
                     download_name=f"thu-{pk}.eml", max_age=0)


# --------------------------------------------------------------------------- Cần xử lý


def _periods() -> list[tuple[str, str]]:
    return list(review.period_choices(desk().ctx.cfg.year))


@bp.route("/review")
def review_page() -> Any:
    ctx = desk().ctx
    items = review.queue(ctx)
    history = review.history(ctx, limit=100)
    units_by_id = {u.unit_id: u for u in ctx.units.units}
    return render_template("review.html", items=items, history=history,
                           units=queries.sort_units(ctx.units.units), units_by_id=units_by_id,
                           kinds=[(k, KIND_LABELS[k]) for k in ACCEPT_KINDS], periods=_periods())


def _sentence(text: str) -> str:
    """review's messages start in lower case (they are also used mid-sentence): capitalise for a banner."""
    return text[:1].upper() + text[1:] if text else text


def _int_field(name: str) -> int:
    try:
        return int(request.form.get(name, ""))
    except ValueError:
        abort(400, f"Thiếu hoặc sai trường {name}.")


@bp.route("/review/<action>", methods=["POST"])
def review_action(action: str) -> Any:
    d = desk()
    ctx = d.ctx
    actor = g.account.username
    form = request.form
    now = d.now()
    try:
        if action == "assign":
            unit_id = form.get("unit_id", "")
            if ctx.units.by_id(unit_id) is None:
                flash("error", "Hãy chọn một đơn vị trong danh sách.")
                return redirect(url_for("desk.review_page"))
            result = review.assign(ctx, _int_field("message_pk"), unit_id, actor=actor,
                                   add_address=form.get("add_address") in ("1", "on", "yes"), now=now)
        elif action == "release":
            result = review.release(ctx, _int_field("message_pk"), actor=actor, now=now)
        elif action == "accept":
            kind = form.get("kind", "")
            if kind not in ACCEPT_KINDS:
                flash("error", "Hãy chọn loại văn bản.")
                return redirect(url_for("desk.review_page"))
            period = form.get("period") or None
            if kind == "report" and period not in {p for p, _ in _periods()}:
                flash("error", "Báo cáo cần chọn kỳ báo cáo (quý I, 6 tháng, quý III hoặc năm).")
                return redirect(url_for("desk.review_page"))
            result = review.accept(ctx, _int_field("document_id"), kind=kind,
                                   period=period if kind == "report" else None, actor=actor, now=now)
        elif action == "reject":
            reason = (form.get("reason") or "").strip()
            if not reason:
                flash("error", "Cần ghi lý do trả lại để gửi cho đơn vị.")
                return redirect(url_for("desk.review_page"))
            result = review.reject(ctx, _int_field("document_id"), reason=reason[:2000], actor=actor, now=now)
        elif action == "ignore":
            target = form.get("target", "")
            if target not in ("message", "document", "bounce"):
                abort(400, "Sai loại đối tượng.")
            result = review.ignore(ctx, target, _int_field("target_id"), actor=actor,
                                   reason=(form.get("reason") or "").strip()[:2000], now=now)
        elif action == "undo":
            result = review.undo(ctx, _int_field("action_id"), actor=actor, now=now)
        else:
            abort(404)
    except review.ReviewError as exc:
        flash("error", _sentence(str(exc)))
    else:
        flash("ok", result.message)
    back = request.form.get("back")
    return redirect(_safe_next(back) if back else url_for("desk.review_page"))


# --------------------------------------------------------------------------- Đơn vị


def _units_page(check: Any = None, status: int = 200) -> Any:
    ctx = desk().ctx
    q = request.args.get("q", "")
    st = queries.states(ctx)
    shown = queries.search_units(ctx.units.units, q)
    obligations = [(ob, queries.short_title(ob)) for ob in ctx.obligations]
    replacements = unitsadmin.last_replacements(ctx, 5)
    html = render_template("units.html", units=shown, total=len(ctx.units.units), q=q, states=st,
                           obligations=obligations, check=check, units_file=ctx.cfg.units_file.name,
                           replacements=replacements, max_mb=MAX_UPLOAD // (1024 * 1024))
    return Response(html, status=status, mimetype="text/html")


@bp.route("/units")
def units_page() -> Any:
    return _units_page()


@bp.route("/units/upload", methods=["POST"])
def units_upload() -> Any:
    f = request.files.get("file")
    if f is None or not f.filename:
        flash("error", "Hãy chọn tệp danh sách đơn vị (.csv hoặc .xlsx) để tải lên.")
        return redirect(url_for("desk.units_page"))
    data = f.read(MAX_UPLOAD + 1)
    check = unitsadmin.replace_units(desk().ctx, data, f.filename, actor=g.account.username)
    if not check.ok:
        return _units_page(check, status=422)
    n = len(check.units.units) if check.units else 0
    text = (f"Đã thay danh sách đơn vị ({n} đơn vị): thêm {len(check.added)}, bỏ {len(check.removed)}, "
            f"sửa {len(check.changed)}.")
    for label, ids in (("Thêm", check.added), ("Bỏ", check.removed), ("Sửa", check.changed)):
        if ids:
            text += f" {label}: {', '.join(ids)}."
    flash("ok", text)
    for w in getattr(check, "warnings", ()):
        flash("warn", w)
    return redirect(url_for("desk.units_page"))


@bp.route("/units/download")
def units_download() -> Any:
    data, name, mime = unitsadmin.units_file_bytes(desk().ctx)
    return send_file(io.BytesIO(data), mimetype=mime, as_attachment=True, download_name=name, max_age=0)


# --------------------------------------------------------------------------- Báo cáo


def _day(text: str | None) -> date:
    if not text:
        return desk().today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        abort(400, f"Ngày không hợp lệ: {text[:20]} (chọn ngày trên lịch).")


@bp.route("/reports")
def reports_page() -> Any:
    from pipeline.forms.blank import FORMS, form_filename

    ctx = desk().ctx
    forms = [(k, form_filename(k, year=ctx.cfg.year)) for k in FORMS]
    return render_template("reports.html", today=desk().today(), forms=forms, staff=ctx.cfg.staff,
                           units=queries.sort_units(ctx.units.units))


@bp.route("/reports/workbook")
def reports_workbook() -> Any:
    from pipeline.plan import reports
    from pipeline.plan.staffreport import report_data, workbook_name

    day = _day(request.args.get("date"))
    data = reports.build_workbook(report_data(desk().ctx, day))
    return send_file(io.BytesIO(data), mimetype=XLSX, as_attachment=True, download_name=workbook_name(day),
                     max_age=0)


@bp.route("/reports/send", methods=["POST"])
def reports_send() -> Any:
    from pipeline.plan.staffreport import run_report

    d = desk()
    ctx = d.ctx
    day = _day(request.form.get("date"))
    if not ctx.cfg.staff:
        flash("error", "Chưa cấu hình địa chỉ cán bộ nhận báo cáo (mục staff trong config.yaml).")
        return redirect(url_for("desk.reports_page"))
    summary = run_report(ctx, today=day, send=True, clock=d.clock)
    log.info("desk: %s asked for the report of %s: %s", g.account.username, day, summary.text())
    if summary.queued:
        sent = summary.outbox.get("sent", 0)
        flash("ok", f"Đã gửi báo cáo tổng hợp ngày {day:%d/%m/%Y} tới {', '.join(ctx.cfg.staff)}."
              if sent else f"Báo cáo tổng hợp ngày {day:%d/%m/%Y} đã vào hộp thư đi; sẽ gửi khi máy chủ thư sẵn sàng.")
    else:
        flash("warn", f"Báo cáo tổng hợp ngày {day:%d/%m/%Y} đã được gửi cho cán bộ trước đó "
                      "(mỗi ngày gửi một lần); có thể tải tệp về ở trên.")
    return redirect(url_for("desk.reports_page"))


@bp.route("/forms/<kind>.xlsx")
def blank_form(kind: str) -> Any:
    from pipeline.forms.blank import FORMS, blank_form as make, form_filename

    ctx = desk().ctx
    if kind not in FORMS:
        abort(404, "Không có biểu mẫu này.")
    unit_name = None
    unit_id = request.args.get("unit")
    if unit_id:
        u = ctx.units.by_id(unit_id)
        if u is None:
            abort(404, f"Không có đơn vị mã {unit_id}.")
        unit_name = u.name
    data = make(kind, year=ctx.cfg.year, unit_name=unit_name)
    return send_file(io.BytesIO(data), mimetype=XLSX, as_attachment=True,
                     download_name=form_filename(kind, year=ctx.cfg.year, unit_name=unit_name), max_age=0)
