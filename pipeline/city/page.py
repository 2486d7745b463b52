"""The city's page: the same table as the city workbook, as HTML (templates/city/report.html.j2).

Two ways, because a city officer uses both:

* a file, written by ``intake city report`` beside the workbook (``tong-hop-thanh-pho-<ngày>.html``). This is
  the main one: the city federation has no server of its own; a file of the day's figures opens in any
  browser, prints, goes as an attachment, and stays as the record of that day, like the workbook. It is
  one self-contained file (its style inside) that links to the workbook written beside it.
* ``intake city serve``: today's figures, read again from every district's ledger at each visit, for an
  officer on the machine that can reach the districts' databases. Read-only (GET and HEAD only, nothing
  is ever written) and on loopback only: city.yaml's ``serve.host`` must be a loopback address, and a
  request from elsewhere is refused as well. There is no log-in: the desk's log-in keeps its sessions in
  a district's ledger, and the city has none of its own; the page shows only counts per district (no
  unit's name, no person, no address). To look from another machine, use an SSH tunnel
  (``ssh -L 8770:127.0.0.1:8770 máy-chủ``) or the file. Responses carry the desk's security headers
  (pipeline/desk/security.py): no script at all, the inline style allowed by its hash only, no framing,
  never cached.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

import jinja2
from flask import Flask, Response, abort, request
from markupsafe import Markup

from pipeline.city.config import City
from pipeline.city.figures import CityFigures, city_figures, notes, on_time, verdict
from pipeline.city.workbook import REGISTRATION_HEADERS, REPORT_HEADERS, build_city_workbook, workbook_name
from pipeline.plan.vn import vn_date
from pipeline.settings_checks import PROJECT_ROOT

TEMPLATES = PROJECT_ROOT / "templates" / "city"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _pct(value: float | None, digits: int) -> str:
    if value is None:
        return ""
    return f"{value * 100:.{digits}f}".replace(".", ",") + "%"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(vn_date=vn_date, pct=lambda v: _pct(v, 1), pct0=lambda v: _pct(v, 0))
    env.globals.update(on_time=on_time, verdict=verdict)
    return env


def css() -> str:
    return (TEMPLATES / "city.css").read_text(encoding="utf-8")


def csp() -> str:
    """The desk's policy, with the page's own style (inline, so that the file stands alone) allowed by its hash."""
    digest = base64.b64encode(hashlib.sha256(css().encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self' data:; form-action 'none'; "
            "frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


def render_page(figures: CityFigures, *, workbook: str | None = None) -> str:
    """The page; ``workbook``: the link to the workbook (a file name beside the page, or a URL)."""
    return _env().get_template("report.html.j2").render(
        f=figures, years=", ".join(str(y) for y in figures.years), years_count=len(figures.years),
        reg_headers=REGISTRATION_HEADERS, report_headers=REPORT_HEADERS, notes=notes(figures),
        workbook=workbook, css=Markup(css()))  # our own file, not a unit's text


def page_name(figures: CityFigures) -> str:
    return f"tong-hop-thanh-pho-{figures.today:%Y-%m-%d}.html"


# --------------------------------------------------------------------------- the files


@dataclass(frozen=True)
class Written:
    figures: CityFigures
    workbook: Path
    page: Path

    def text(self) -> str:
        t = self.figures.totals
        lines = [f"{self.figures.name}: số liệu ngày {vn_date(self.figures.today)}, "
                 f"{sum(1 for d in self.figures.districts if d.ok)}/{len(self.figures.districts)} quận, huyện; "
                 f"toàn thành phố {t.registered}/{t.units} đơn vị đã đăng ký ({_pct(t.share, 1)})"]
        lines += [f"- {d.label}: chưa có số liệu ({d.error})" for d in self.figures.districts if not d.ok]
        lines += [f"bảng tính: {self.workbook}", f"trang: {self.page}"]
        return "\n".join(lines)


def write_report(city: City, *, year: int | None = None, today: date | None = None,
                 out_dir: Path | None = None) -> Written:
    """Write the workbook and the page of the day into ``out_dir`` (default: city.yaml's ``out``)."""
    from pipeline.mail.archive import write_atomically

    figures = city_figures(city, year=year, today=today)
    folder = out_dir or city.out_dir
    book = folder / workbook_name(figures)
    page = folder / page_name(figures)
    write_atomically(book, build_city_workbook(figures))
    write_atomically(page, render_page(figures, workbook=book.name).encode("utf-8"))
    return Written(figures, book, page)


# --------------------------------------------------------------------------- the served page


def _loopback(addr: str | None) -> bool:
    try:
        return addr is not None and ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


def create_city_app(city: City, *, year: int | None = None,
                    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> Flask:
    """The read-only page of today's figures (see the module's docstring for who may see it)."""
    app = Flask(__name__, static_folder=None, template_folder=None)

    def today() -> date:
        return clock().astimezone(city.tz).date()

    @app.before_request
    def _guard() -> Any:
        if not _loopback(request.remote_addr):
            abort(403)
        if request.method not in ("GET", "HEAD"):
            abort(405)
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = csp()
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/")
    def page() -> Response:
        figures = city_figures(city, year=year, today=today())
        return Response(render_page(figures, workbook="/bang-tinh.xlsx"), mimetype="text/html")

    @app.get("/bang-tinh.xlsx")
    def workbook() -> Response:
        figures = city_figures(city, year=year, today=today())
        return Response(build_city_workbook(figures), mimetype=XLSX,
                        headers={"Content-Disposition": f'attachment; filename="{workbook_name(figures)}"'})

    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(405)
    def _error(exc: Any) -> Response:
        words = {403: "Trang này chỉ mở trên máy chủ.", 404: "Không có trang này.",
                 405: "Trang tổng hợp chỉ để xem, không nhận thao tác nào."}
        code = getattr(exc, "code", 500)
        return Response(words.get(code, "Lỗi."), status=code, mimetype="text/plain")

    return app


__all__ = ["Written", "create_city_app", "csp", "page_name", "render_page", "write_report"]
