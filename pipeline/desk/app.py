"""The district office's web desk: a small Flask application, served by waitress (pipeline.desk.server).

Pages (Vietnamese): Tổng quan (overview), Cần xử lý (review queue), Đơn vị (units), Báo cáo (reports),
and a page per unit with its whole history; each group is a module of pipeline.desk.pages, log-in and
the security checks are pipeline.desk.security. Every template is autoescaped (nothing from a unit is
ever marked safe).
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import jinja2
from flask import Flask, Response, g, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from pipeline.config import load_config
from pipeline.plan.deadlines import STATE_LABELS_VI
from pipeline.desk import queries, sending
from pipeline.desk import security  # noqa: F401 - attaches the log-in and the checks on every request to bp
from pipeline.desk.pages import overview, preview, reports, review, units  # noqa: F401 - attach their views to bp
from pipeline.desk.auth import CSRF_FIELD, DeskSession, Flashes, LoginThrottle, Sessions
from pipeline.desk.queue import queue
from pipeline.desk.web import MAX_UPLOAD, YEAR_PAGES, Desk, bp, desk, shown_year, view_ctx
from pipeline.forms.rules import cell_label
from pipeline.model import DOC_STATE_LABELS, MAIL_STATE_LABELS, period_label
from pipeline.ledger.schema import from_iso
from pipeline.plan.reminder_text import stage_label

log = logging.getLogger(__name__)

PROJECT_TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "desk"
STATIC = Path(__file__).resolve().parent / "static"

OUTBOX_STATE_LABELS = {"pending": "chờ gửi", "sending": "đang gửi", "sent": "đã gửi",
                       "failed": "gửi lỗi", "uncertain": "chưa rõ đã gửi chưa", "cancelled": "đã huỷ",
                       "dropped": "đã huỷ (không còn cần gửi)"}
DOC_LABELS = {**DOC_STATE_LABELS, "ignored": "cán bộ đã bỏ qua"}
PURPOSE_LABELS = {"receipt": "Thư báo nhận", "reminder": "Thư nhắc hạn", "report": "Báo cáo cho cán bộ",
                  "alert": "Cảnh báo", "notice": "Thông báo"}
QUEUE_KIND_LABELS = {"quarantined": "Thư chưa rõ đơn vị", "spoof": "Nghi giả mạo",
                     "needs_review": "Văn bản chờ xem xét", "bounce": "Thư gửi đi bị trả lại",
                     "error": "Thư lỗi"}
ACTION_LABELS = {"assign": "Gán cho đơn vị", "release": "Cho qua", "accept": "Chấp nhận", "reject": "Trả lại",
                 "ignore": "Bỏ qua", "undo": "Hoàn tác", "units_replace": "Thay danh sách đơn vị"}
GROUP_LABELS = {"hcsn": "Khối HCSN", "doanh_nghiep": "Khối doanh nghiệp", "truong_hoc": "Khối trường học"}


class DeskFlask(Flask):
    jinja_options = {**Flask.jinja_options, "undefined": jinja2.StrictUndefined,
                     "trim_blocks": True, "lstrip_blocks": True}

    def select_jinja_autoescape(self, filename: str | None) -> bool:
        return True  # every template, whatever its name: unit text is never trusted


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
        kind_label=lambda k: ctx.rules.kind_label(k) if k else "",
        period_label=lambda p: period_label(p) or "",
        cell_label=cell_label,
        mail_state=lambda s: MAIL_STATE_LABELS.get(s, s),
        doc_state=lambda s: DOC_LABELS.get(s, s),
        outbox_state=lambda s: OUTBOX_STATE_LABELS.get(s, s or ""),
        purpose=lambda s: PURPOSE_LABELS.get(s, s),
        leaves=lambda at, now: sending.when_text(at, now, tz),
        sending_line=lambda s: sending.bar_line(s, PURPOSE_LABELS, tz),
        queue_kind=lambda s: QUEUE_KIND_LABELS.get(s, s),
        action_label=lambda s: ACTION_LABELS.get(s, s),
        group_label=lambda s: GROUP_LABELS.get(s, s),
        stage=stage_label,
        recipients=lambda row: ", ".join(queries.recipients(row)),
        percent=lambda x: f"{x * 100:.1f}%".replace(".", ","),
        num=lambda x: f"{x:.1f}".replace(".", ","),
    )


# --------------------------------------------------------------------------- what every page gets


@bp.app_context_processor
def _common() -> dict[str, Any]:
    d = desk()
    sess: DeskSession | None = g.get("session")
    out: dict[str, Any] = {
        "organisation": d.ctx.cfg.organisation, "account": g.get("account"),
        "csrf_field": CSRF_FIELD, "csrf_token": sess.csrf if sess else "", "flashes": [], "health": None,
        "sending": None,
        "now": d.now(), "nav": request.endpoint or "", "queue_count": 0,
    }
    try:
        out.update(_campaign_in_view(d))
    except Exception:  # the page (an error page, too) still renders when the database is busy
        log.exception("campaign in view")
        out.update(year=d.ctx.cfg.year, current_year=d.ctx.cfg.year, year_param=None, year_links=[],
                   campaign_title=d.ctx.campaigns[d.ctx.cfg.year].title)
    if sess is not None:
        out["flashes"] = d.flashes.take(sess.token_hash)
        try:
            out["health"] = queries.health(d.ctx)
        except Exception:  # the page still renders when the database is busy
            log.exception("health")
        try:  # one forecast per page view, spared when nothing waits
            pending = out["health"].outbox.get("pending") if out["health"] is not None else None
            out["sending"] = sending.sending(d.ctx, out["now"], pending=pending)
        except Exception:
            log.exception("sending forecast")
        try:
            out["queue_count"] = len(queue(d.ctx))
        except Exception:
            log.exception("queue count")
    return out


def _campaign_in_view(d: Desk) -> dict[str, Any]:
    """The header's campaign: its title, the year in view, and on pages with figures the year switch
    (links to the same page in every year the desk can show)."""
    other = shown_year()  # None on a request whose year was refused: its error page shows the default year
    ctx = view_ctx() if other is not None else d.ctx
    links: list[tuple[int, str, bool]] = []
    if g.get("account") is not None and request.endpoint in YEAR_PAGES:
        args = {k: v for k, v in request.args.items() if k != "year"}
        for y in ctx.years():
            url = url_for(request.endpoint, **(request.view_args or {}), **args,
                          year=None if y == ctx.cfg.year else y)
            links.append((y, url, y == ctx.year))
    return {"year": ctx.year, "current_year": ctx.cfg.year, "year_param": other,
            "campaign_title": ctx.campaign.title, "year_links": links}


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


