"""What the desk's route modules share: the one blueprint, the desk's state on the app, request helpers.

Every route module (pipeline.desk.security and pipeline.desk.pages.*) attaches its views to the same
blueprint ``bp``, so every endpoint stays ``desk.<view>`` as the templates' ``url_for`` and the
navigation expect; pipeline.desk.app imports those modules and registers ``bp`` once per app.

The campaign in view: config.yaml's ``year`` unless the request asks for another (``?year=2022``, or a
form's ``year`` field); ``view_ctx()`` is the Context looking at it, built once per request. A link to
a page that shows figures keeps that year (``_keep_year``), so moving around the desk stays in 2022.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, has_request_context, request, url_for
from werkzeug.exceptions import HTTPException

from pipeline.desk.auth import DeskSession, Flashes, LoginThrottle, Sessions

MAX_UPLOAD = 2 * 1024 * 1024
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

bp = Blueprint("desk", __name__)

# Pages that show the figures of one campaign (they carry the year switch) ...
YEAR_PAGES = frozenset({"desk.overview", "desk.units_page", "desk.unit", "desk.reports_page"})
# ... and every endpoint whose links keep the year in view: those pages, their downloads, and the review
# queue (one queue for every year, but from it staff come back to the year they were looking at).
KEEPS_YEAR = YEAR_PAGES | {"desk.reports_workbook", "desk.blank_form", "desk.review_page"}


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


def view_ctx() -> Any:
    """The Context looking at the campaign this request asks for (the configured one by default).

    A year that is not a number is a 400, one the desk has no campaign or records for a 404: the desk's
    error page, in Vietnamese."""
    if "view_ctx" not in g:
        g.view_ctx = _view_ctx()
    return g.view_ctx


def _view_ctx() -> Any:
    ctx = desk().ctx
    text = (request.values.get("year") or "").strip()
    if not text:
        return ctx
    if not (text.isascii() and text.isdigit() and len(text) == 4):
        abort(400, f"Năm không hợp lệ: “{text[:20]}” (ghi năm bằng 4 chữ số, ví dụ 2022).")
    year = int(text)
    years = ctx.years()
    if year not in years:
        abort(404, f"Không có số liệu năm {year}; có thể xem các năm: {', '.join(map(str, years))}.")
    return ctx.for_year(year)


def shown_year() -> int | None:
    """The year in view when it is not the configured one (links and forms carry it); None otherwise,
    and None on a request whose year was refused (its error page links back to the default year)."""
    if not has_request_context():
        return None
    try:
        ctx = view_ctx()
    except HTTPException:
        return None
    return ctx.year if ctx.year != ctx.cfg.year else None


@bp.url_defaults
def _keep_year(endpoint: str, values: dict[str, Any]) -> None:
    if endpoint in KEEPS_YEAR and "year" not in values:  # an explicit year (None: the configured one) wins
        year = shown_year()
        if year is not None:
            values["year"] = year


def flash(category: str, text: str) -> None:
    sess: DeskSession | None = g.get("session")
    if sess is not None:
        desk().flashes.add(sess.token_hash, category, text)


def safe_next(target: str | None) -> str:
    if not target:
        return url_for("desk.overview")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("desk.overview")
    return target


def cookie_secure() -> bool:
    return request.is_secure
